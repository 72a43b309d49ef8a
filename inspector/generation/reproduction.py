"""Regenerate an image from its provenance and say whether the pixels match.

A finding is evidence only if anyone can make exactly the same image again from its record. ``reproduce`` reads
the record (from the PNG's ``inspector`` chunk, or from a ``manifest.json`` entry), samples the seed again with
the recorded prompt, steps, guidance, scheduler (class and full config) and size, and compares pixels.

By default it rebuilds the very computation that made the image: the same torch thread count, and the same batch
of seeds when the image was sampled in a batch whose arithmetic was not batch-invariant (see
:mod:`inspector.generation.invariance`; an image sampled batch-invariantly is regenerated alone), because
kernels pick their blocking by batch shape and thread count. Same weights, libraries, device and dtype then give a maximum difference of 0. Another machine,
device or dtype usually gives small differences (a level or two in a few pixels), which the result reports
rather than hides.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspector.errors import UserError
from inspector.generation.sampling import GenerationError, GenerationRequest, generate
from inspector.resources import DEMO

if TYPE_CHECKING:
    from PIL import Image

    from inspector.generation.loading import LoadedModel


class ReproduceError(UserError):
    """The record cannot be reproduced (no provenance, missing image, unusable model); says what to do."""


@dataclass
class ReproduceResult:
    """The outcome of regenerating one image.

    ``max_abs_diff`` is the largest difference of any pixel channel, in 8-bit levels (0-255);
    ``mean_abs_diff`` the mean over all pixel channels; ``differing_fraction`` the fraction of pixels
    (0-1) with any channel different. ``match`` is ``max_abs_diff <= tolerance`` with equal sizes.
    """

    seed: int
    batch_seeds: list[int]  # the seeds regenerated together
    match: bool
    max_abs_diff: int
    mean_abs_diff: float
    differing_fraction: float
    tolerance: int
    reference: str  # the PNG that was compared
    recorded_model_sha256: str
    model_sha256: str
    recorded_device: str
    recorded_dtype: str
    device: str
    dtype: str
    image: Image.Image = field(repr=False)
    #: Weight files that differ from the record, one phrase each ("unet/x.safetensors changed (sha256 ...)").
    weight_changes: list[str] = field(default_factory=list)
    #: The configuration files (model_index.json, component configs, tokenizer) differ from the record.
    config_changed: bool = False

    @property
    def same_model(self) -> bool:
        return self.recorded_model_sha256 == self.model_sha256

    def summary(self) -> str:
        """One line in plain words."""
        verdict = "match" if self.match else "MISMATCH"
        text = (f"seed {self.seed}: {verdict} (max abs pixel difference {self.max_abs_diff} of 255, "
                f"{self.differing_fraction:.1%} of pixels differ)")
        notes = []
        if len(self.batch_seeds) > 1:
            notes.append(f"regenerated with its batch of {len(self.batch_seeds)} seeds")
        if not self.same_model:
            changes = self.weight_changes[:2] + ([f"{len(self.weight_changes) - 2} more"]
                                                 if len(self.weight_changes) > 2 else [])
            detail = f": {', '.join(changes)}" if changes else ""
            notes.append(f"different weights: made with {self.recorded_model_sha256[:10]}, "
                         f"regenerated with {self.model_sha256[:10]}{detail}")
        if self.config_changed:
            notes.append("the model's configuration files (model_index.json, component configs, tokenizer) "
                         "differ from the record")
        if (self.device, self.dtype) != (self.recorded_device, self.recorded_dtype):
            notes.append(f"made on {self.recorded_device}/{self.recorded_dtype}, regenerated on "
                         f"{self.device}/{self.dtype}: small differences are expected across devices")
        return text + "".join(f"; {n}" for n in notes)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "image"} | {"same_model": self.same_model}


def reproduce(
    source: str | os.PathLike | dict[str, Any],
    model: LoadedModel | str | None = None,
    *,
    base_dir: str | os.PathLike | None = None,
    device: str = "auto",
    dtype: Any = None,
    allow_pickle: bool = False,
    config: str | os.PathLike | None = None,
    tolerance: int = 0,
    exact_batch: bool = True,
) -> ReproduceResult:
    """Regenerate the image a PNG (or manifest entry) records and compare its pixels with the original.

    Parameters
    ----------
    source
        A PNG written by the inspector, or one entry of a ``manifest.json`` (``{"file", "provenance", ...}``),
        whose ``file`` is found relative to ``base_dir`` (default: the current folder).
    model
        A loaded model, a model source, or ``None`` to load the recorded source.
    device, dtype, allow_pickle, config
        Passed to :func:`load_model` when the model is loaded here. ``dtype=None`` uses the recorded dtype
        when sampling on the recorded kind of device, else the device's default.
    tolerance
        Largest max-abs difference (0-255) still called a match; 0 demands identical pixels.
    exact_batch
        Use the recorded torch thread count, and regenerate the whole recorded batch when the record says its
        pixels depended on the batch, so the arithmetic is the same as when the image was made (torch's thread
        count is set for the call, then restored); ``False`` samples the one seed alone with this process's
        threads.

    Raises
    ------
    ReproduceError
        No readable provenance, missing reference image, the model cannot be loaded (the message names a
        missing component), or the recorded settings cannot be replayed (it names the scheduler or setting).
    """
    import numpy as np

    from inspector.provenance import ProvenanceError, read_provenance

    if not isinstance(tolerance, int) or not 0 <= tolerance <= 255:
        raise ReproduceError(f"the tolerance must be a whole number of levels between 0 and 255, got {tolerance}")
    if isinstance(source, dict):
        record, reference = _manifest_entry(source, base_dir)
    else:
        reference = Path(source)
        try:
            record = read_provenance(reference)
        except ProvenanceError as exc:
            raise ReproduceError(str(exc)) from None
    original = _load_pixels(reference)
    recorded_model = record.get("model") or {}
    if model is None or isinstance(model, (str, os.PathLike)):
        model = load_recorded_model(record, model, device=device, dtype=dtype, allow_pickle=allow_pickle,
                                    config=config)
    request, index = request_from_provenance(record, exact_batch=exact_batch)
    try:
        with _torch_threads(record.get("torch_threads") if exact_batch else None):
            images = list(generate(model, request))
    except GenerationError as exc:
        # Name the recorded setting that failed (the scheduler, its config, the size ...), not just "the model".
        raise ReproduceError(f"cannot regenerate {reference.name} from its record: {exc}") from None
    regenerated = images[index]
    a = np.asarray(original, dtype=np.int16)
    b = np.asarray(regenerated.image, dtype=np.int16)
    if a.shape != b.shape:
        max_diff, mean_diff, frac = 255, 255.0, 1.0
    else:
        diff = np.abs(a - b)
        max_diff, mean_diff = int(diff.max()), float(diff.mean())
        frac = float((diff.max(axis=-1) > 0).mean())
    return ReproduceResult(
        seed=int(record["seed"]), batch_seeds=request.seed_list(), match=a.shape == b.shape and max_diff <= tolerance, max_abs_diff=max_diff,
        mean_abs_diff=mean_diff, differing_fraction=frac, tolerance=tolerance, reference=str(reference),
        recorded_model_sha256=str(recorded_model.get("sha256", "")), model_sha256=model.identity.sha256,
        recorded_device=str(record.get("device", "")), recorded_dtype=str(record.get("dtype", "")),
        device=model.device, dtype=model.dtype, image=regenerated.image,
        weight_changes=weight_changes(recorded_model.get("files"), model.identity.files),
        config_changed=bool(recorded_model.get("config_sha256"))
        and recorded_model.get("config_sha256") != model.identity.config_sha256,
    )


def weight_changes(recorded: Any, current: dict[str, str]) -> list[str]:
    """How the weight files differ from a record's ``{relative path: sha256}``, one phrase per file."""
    if not isinstance(recorded, dict):
        return []
    out = []
    for name in sorted(set(recorded) | set(current)):
        was, now = recorded.get(name), current.get(name)
        if was == now:
            continue
        if now is None:
            out.append(f"{name} is missing")
        elif was is None:
            out.append(f"{name} was not in the recorded model")
        else:
            out.append(f"{name} changed (sha256 {str(was)[:10]} when made, {now[:10]} now)")
    return out


def load_recorded_model(
    record: dict[str, Any],
    source: str | os.PathLike | None = None,
    *,
    device: str = "auto",
    dtype: Any = None,
    allow_pickle: bool = False,
    config: str | os.PathLike | None = None,
) -> LoadedModel:
    """Load the model a provenance record names (or ``source`` instead), set up as it was when sampling.

    The recorded memory savers are switched on again; ``dtype=None`` picks the recorded dtype when the
    device is of the recorded kind, else the device's default.

    Raises
    ------
    ReproduceError
        When the record names no model or it cannot be loaded.
    """
    from inspector.generation.loading import ModelLoadError, load_model, resolve_device

    src = source if source is not None else (record.get("model") or {}).get("source")
    if not src:
        raise ReproduceError("the record names no model; pass --model")
    try:
        if dtype is None and record.get("device") == resolve_device(device):
            dtype = record.get("dtype")
        return load_model(src, device=device, dtype=dtype, allow_pickle=allow_pickle, config=config,
                          **_recorded_options(record))
    except ModelLoadError as exc:
        hint = "" if source is not None else " (pass --model to use another copy of it)"
        missing = _missing_components(record, src)
        if missing:
            also = "" if source is not None else ", or pass --model with a complete copy"
            raise ReproduceError(f"cannot load the model {src} that made the image: {missing}; restore it "
                                 f"from the original model{also}") from None
        raise ReproduceError(f"cannot load the model {src} to regenerate the image: {exc}{hint}") from None


def _missing_components(record: dict[str, Any], source: str | os.PathLike) -> str | None:
    """What the model folder lacks of the weight files the record lists, in words; ``None`` if nothing."""
    from inspector.generation.loading import find_in_hub_cache

    files = (record.get("model") or {}).get("files")
    if not isinstance(files, dict) or not files:
        return None
    text = str(source)
    if text == DEMO:
        from inspector.resources import demo_model_dir

        folder: Path | None = demo_model_dir()
    elif Path(text).expanduser().is_dir():
        folder = Path(text).expanduser()
    else:
        found = find_in_hub_cache(text) if "/" in text and not Path(text).expanduser().exists() else None
        folder = found[0] if found else None
    if folder is None:
        return None
    missing = [name for name in sorted(files) if not (folder / name).is_file()]
    if not missing:
        return None
    phrases = []
    for component in dict.fromkeys(name.split("/")[0] for name in missing):
        names = [n for n in missing if n.split("/")[0] == component]
        if "/" in names[0] and not (folder / component).is_dir():
            phrases.append(f"its component {component!r} is missing (no folder {folder / component})")
        else:
            phrases.append(f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} missing from {folder}")
    return "; ".join(phrases)


def request_from_provenance(record: dict[str, Any], exact_batch: bool = True) -> tuple[GenerationRequest, int]:
    """The request that regenerates the image a provenance record describes, and the image's index in it.

    With ``exact_batch`` the request samples the recorded batch of seeds together, unless the record says the
    image was sampled batch-invariantly (see the module docstring); otherwise the one seed alone.
    """
    try:
        scheduler = record.get("scheduler") or {}
        seed = int(record["seed"])
        seeds, index = [seed], 0
        batch = record.get("batch") or {}
        if exact_batch and not record.get("batch_invariant") and isinstance(batch.get("seeds"), list) \
                and len(batch["seeds"]) > 1:
            seeds, index = [int(s) for s in batch["seeds"]], int(batch["index"])
            if seeds[index] != seed:
                raise ValueError(f"batch index {index} does not hold seed {seed}")
        request = GenerationRequest(
            prompt=record["prompt"],
            negative_prompt=record.get("negative_prompt") or "",
            seeds=seeds,
            steps=int(record["steps"]),
            guidance=None if record.get("guidance") is None else float(record["guidance"]),
            scheduler=scheduler.get("class"),
            scheduler_config=scheduler.get("config"),
            height=int(record["height"]),
            width=int(record["width"]),
            batch_size=len(seeds),
            batch_invariant=bool(record.get("batch_invariant", False)),
            # Records made before the field existed sampled with oneDNN (and name their thread count).
            thread_invariant=bool(record.get("thread_invariant", False)),
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ReproduceError(f"the provenance record is incomplete or damaged ({exc!r})") from None
    return request, index


@contextlib.contextmanager
def _torch_threads(threads: Any) -> Iterator[None]:
    """Run with ``threads`` torch threads (when given and different), then restore the previous count."""
    import torch

    before = torch.get_num_threads()
    change = isinstance(threads, int) and threads > 0 and threads != before
    if change:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(before)


def _recorded_options(record: dict[str, Any]) -> dict[str, bool]:
    options = record.get("options") or {}
    return {k: bool(options[k]) for k in ("attention_slicing", "vae_tiling") if k in options}


def _manifest_entry(entry: dict[str, Any], base_dir: str | os.PathLike | None) -> tuple[dict[str, Any], Path]:
    record, name = entry.get("provenance"), entry.get("file")
    if not isinstance(record, dict) or not isinstance(name, str):
        raise ReproduceError("a manifest entry needs 'file' and 'provenance'; pass an entry of manifest.json")
    return record, Path(base_dir or ".") / name


def _load_pixels(path: Path) -> Image.Image:
    from inspector.images import ImageLoadError, load_image, to_rgb

    try:
        return to_rgb(load_image(path))
    except ImageLoadError as exc:
        raise ReproduceError(f"cannot read the original image to compare with: {exc}") from None
