"""Load a text-to-image model from one ``model`` argument, offline and without running code from the model.

Sources (DESIGN.md, "Model SRC"):

- ``demo``: the embedded demo model (``resources/demo/model``);
- a local diffusers folder holding ``model_index.json`` (any text-to-image pipeline diffusers knows, or ours);
- a single-file ``.safetensors`` checkpoint with a local diffusers config folder for the same architecture;
- a Hub id (``owner/name``) only when it is already in the local Hugging Face cache.

Never the network: Hugging Face offline mode is switched on for the whole process before diffusers is used.
Never code from the model: ``trust_remote_code`` is never set, and a ``model_index.json`` that names custom code
or a library other than diffusers/transformers is refused before anything is imported. Pickle-based weights
(``.ckpt .bin .pt .pth .pkl .pickle``) are refused, because unpickling can run arbitrary code; with
``allow_pickle=True`` they are read only through torch's ``weights_only`` unpickler (forced for the whole load).

torch and diffusers are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inspector.errors import UserError
from inspector.resources import DEMO

#: Weight files that are Python pickles: loading them can execute code.
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl", ".pickle")
#: Weight files that hold tensors only.
SAFE_SUFFIXES = (".safetensors",)
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16", "half": "float16",
          "bfloat16": "bfloat16", "bf16": "bfloat16"}
#: Libraries a model_index.json may name for its components (anything else would mean importing its code).
TRUSTED_LIBRARIES = ("diffusers", "transformers")
_DEMO_CLASS = "DemoPipeline"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_load_lock = threading.Lock()


class ModelLoadError(UserError):
    """A model could not be found, was refused, or failed to load; the message says what to do."""


@dataclass(frozen=True)
class ModelIdentity:
    """Which model made an image: where it came from and the sha256 of its weights.

    Attributes
    ----------
    source
        ``"demo"``, an absolute path, or a Hub id, as it should be passed to :func:`load_model` again.
    kind
        ``"demo"``, ``"folder"``, ``"single-file"`` or ``"hub-cache"``.
    class_name
        The pipeline class, e.g. ``"StableDiffusionPipeline"``.
    sha256
        Weights identity: a single file's sha256, or for a folder the sha256 of its ``sha256sum`` listing.
    files
        ``{relative path: sha256}`` of every weight file that was hashed.
    config_sha256
        sha256 listing of the configuration files (model_index.json, component configs, tokenizer files).
    name
        A short name for people and for A1111's ``Model:`` field.
    revision
        The Hub commit of a cached snapshot, else ``None``.
    """

    source: str
    kind: str
    class_name: str
    sha256: str
    files: dict[str, str]
    config_sha256: str
    name: str
    revision: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadedModel:
    """A pipeline ready to sample, with what provenance needs to know about it.

    Use one ``LoadedModel`` from any thread: sampling calls are serialised by an internal lock.
    :meth:`release` frees its memory; the session's model cache calls it before it loads another model.
    """

    pipeline: Any
    identity: ModelIdentity
    device: str  # "cpu", "cuda", "mps"
    dtype: str  # "float32", "float16", "bfloat16"
    native_size: int  # side in pixels the model was trained for
    size_step: int  # heights and widths must be multiples of this
    fixed_size: bool  # True when only native_size x native_size is possible (the demo)
    default_steps: int
    default_guidance: float | None
    options: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    base_scheduler: Any = field(default=None, repr=False, compare=False)

    def release(self) -> None:
        """Drop the pipeline and return its memory (GPU caches included)."""
        with self.lock:
            self.pipeline = None
            self.base_scheduler = None
        import gc

        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------ device and dtype


def resolve_device(device: str = "auto") -> str:
    """The device to use: ``auto`` picks cuda, then mps, then cpu; an explicit one must be present.

    Raises
    ------
    ModelLoadError
        For an unknown device name, or one this machine does not have.
    """
    if device not in DEVICES:
        raise ModelLoadError(f"unknown device {device!r}: use one of {', '.join(DEVICES)}")
    import torch

    has_cuda = torch.cuda.is_available()
    has_mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if device == "auto":
        return "cuda" if has_cuda else "mps" if has_mps else "cpu"
    if device == "cuda" and not has_cuda:
        raise ModelLoadError("CUDA is not available on this machine (no NVIDIA GPU, or a CPU-only torch): "
                             "use --device cpu or auto")
    if device == "mps" and not has_mps:
        raise ModelLoadError("Apple MPS is not available on this machine: use --device cpu or auto")
    return device


def resolve_dtype(dtype: Any, device: str) -> str:
    """The dtype name to use: ``None``/``"auto"`` gives float16 on a GPU and float32 on the CPU."""
    if dtype is None or dtype == "auto":
        return "float32" if device == "cpu" else "float16"
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}: use auto, float32, float16 or bfloat16")
    return DTYPES[name]


# ------------------------------------------------------------------------------------------ offline and safety


def go_offline() -> None:
    """Switch Hugging Face libraries to offline mode for this process (the inspector never downloads)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
    import huggingface_hub.constants as hub_constants

    # The constants are read at import time; the libraries may already have been imported.
    hub_constants.HF_HUB_OFFLINE = True
    hub_constants.HF_HUB_DISABLE_TELEMETRY = True
    import diffusers.utils.hub_utils as diffusers_hub

    diffusers_hub.HF_HUB_OFFLINE = True
    diffusers_hub.HF_HUB_DISABLE_TELEMETRY = True


@contextlib.contextmanager
def _weights_only_unpickling() -> Iterator[None]:
    """Force torch.load's ``weights_only`` unpickler for every call made inside (libraries included)."""
    old = {k: os.environ.get(k) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Hide the libraries' loading bars (the inspector reports progress itself), then restore them."""
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    was = dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        if was[0]:
            dlog.enable_progress_bar()
        if was[1]:
            tlog.enable_progress_bar()


def _pickle_refusal(what: str) -> ModelLoadError:
    return ModelLoadError(
        f"{what}: pickle-based weights are refused, because unpickling a file can run any code hidden in it. "
        "Use a .safetensors version of the model, or, if you trust where it came from, pass --allow-pickle "
        "(it is then read with torch's weights-only loader)"
    )


def _read_model_index(folder: Path) -> dict[str, Any]:
    path = folder / "model_index.json"
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ModelLoadError(f"{path}: is not valid JSON ({exc}); the model folder is damaged") from None
    if not isinstance(index, dict):
        raise ModelLoadError(f"{path}: expected a JSON object; the model folder is damaged")
    return index


def _components(folder: Path, index: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """``{component: (library, class)}`` from model_index.json, refusing anything that would import code."""
    import diffusers.pipelines

    class_name = index.get("_class_name")
    if not isinstance(class_name, str):
        raise ModelLoadError(
            f"{folder}: model_index.json names custom pipeline code ({class_name!r}); the inspector never runs "
            "code that comes with a model. Use a model built from standard diffusers pipelines"
        )
    found: dict[str, tuple[str, str]] = {}
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list):
            continue
        if len(value) != 2:
            raise ModelLoadError(f"{folder}: model_index.json entry {name!r} is malformed: {value!r}")
        library, cls = value
        if library is None or cls is None:
            continue  # an optional component that is absent (e.g. no safety checker)
        if not isinstance(library, str) or not isinstance(cls, str):
            raise ModelLoadError(f"{folder}: model_index.json entry {name!r} is malformed: {value!r}")
        if library not in TRUSTED_LIBRARIES and not hasattr(diffusers.pipelines, library):
            raise ModelLoadError(
                f"{folder}: component {name!r} comes from {library!r}, which is neither diffusers nor "
                "transformers; the inspector never imports code named by a model"
            )
        if (folder / name / f"{library}.py").exists():
            # diffusers would treat <component>/<library>.py as custom code for that component.
            raise ModelLoadError(
                f"{folder}: component {name!r} ships Python code ({name}/{library}.py); the inspector never "
                "runs code that comes with a model"
            )
        found[name] = (library, cls)
    return found


def _pipeline_class(folder: Path, class_name: str) -> type:
    """The pipeline class named by model_index.json: ours (the demo) or a diffusers text-to-image pipeline."""
    if class_name == _DEMO_CLASS:
        from inspector.generation.demo_pipeline import DemoPipeline

        return DemoPipeline
    import inspect

    import diffusers

    cls = getattr(diffusers, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, diffusers.DiffusionPipeline)):
        raise ModelLoadError(
            f"{folder}: diffusers {diffusers.__version__} does not know the pipeline class {class_name!r}; "
            "update diffusers, or pick a text-to-image model it supports"
        )
    params = inspect.signature(cls.__call__).parameters
    needed = [n for n, p in params.items() if n not in ("self", "prompt") and p.default is inspect.Parameter.empty
              and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    # Image-to-image, inpainting and control pipelines take an input image: the inspector has none to give.
    if "prompt" not in params or "image" in params or needed:
        raise ModelLoadError(
            f"{folder}: {class_name} is not a text-to-image pipeline (it needs an input image or other inputs); "
            "pick a text-to-image model"
        )
    return cls


def _component_files(folder: Path, components: dict[str, tuple[str, str]]) -> dict[str, list[Path]]:
    """``{component: files}`` for each component folder that exists (files inside, at any depth)."""
    out: dict[str, list[Path]] = {}
    for name in components:
        sub = folder / name
        if sub.is_dir():
            out[name] = sorted(p for p in sub.rglob("*") if p.is_file())
    return out


def _check_component_folders(folder: Path, components: dict[str, tuple[str, str]]) -> None:
    """Refuse a model folder that lacks a component model_index.json lists (diffusers would fail deep inside
    with an unrelated error, e.g. an OverflowError for a missing tokenizer)."""
    missing = [name for name in components if not (folder / name).is_dir()]
    if missing:
        listed = ", ".join(f"{name!r} (no folder {folder / name})" for name in missing)
        which = "its component" if len(missing) == 1 else "its components"
        raise ModelLoadError(f"{folder}: {which} {listed} {'is' if len(missing) == 1 else 'are'} missing: "
                             "restore the model folder from where it came from (model_index.json lists every "
                             "component)")


def _weight_files(folder: Path, components: dict[str, tuple[str, str]], allow_pickle: bool) -> list[Path]:
    """The weight files a load will read; refuses a component whose weights exist only as pickles."""
    weights: list[Path] = []
    for name, files in _component_files(folder, components).items():
        safe = [f for f in files if f.name.endswith(SAFE_SUFFIXES)]
        pickles = [f for f in files if f.name.endswith(PICKLE_SUFFIXES)]
        if safe:
            weights += safe  # pickles beside safetensors are never opened (use_safetensors=True)
        elif pickles:
            if not allow_pickle:
                listed = ", ".join(p.relative_to(folder).as_posix() for p in pickles[:3])
                raise _pickle_refusal(f"{folder}: component {name!r} has only pickle weights ({listed})")
            weights += pickles
    return weights


def _config_files(folder: Path, components: dict[str, tuple[str, str]]) -> list[Path]:
    files = [folder / "model_index.json"]
    for comp_files in _component_files(folder, components).values():
        files += [f for f in comp_files if not f.name.endswith(SAFE_SUFFIXES + PICKLE_SUFFIXES)
                  and f.suffix in (".json", ".txt", ".model", ".yaml")]
    return files


def _config_sha256(root: Path, files: list[Path]) -> str:
    from inspector.fileio import sha256_file
    from inspector.provenance import listing_sha256

    return listing_sha256({f.relative_to(root).as_posix(): sha256_file(f) for f in files})


# ------------------------------------------------------------------------------------------ finding the source


@dataclass
class _Source:
    kind: str  # demo, folder, single-file, hub-cache
    path: Path  # the folder (or file) to load
    source: str  # what to record
    name: str
    config: Path | None = None  # single-file: its config folder
    revision: str | None = None


def _hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    import huggingface_hub.constants as hub_constants

    return Path(hub_constants.HF_HUB_CACHE)


def find_in_hub_cache(repo_id: str) -> tuple[Path, str] | None:
    """The cached snapshot folder of a Hub model and its commit, or ``None`` when it is not cached.

    Reads the cache layout directly (``models--owner--name/refs/main`` -> ``snapshots/<commit>``), so a
    partially downloaded repository (e.g. safetensors only) is still usable. Never touches the network.
    """
    storage = _hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    snapshots = storage / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = storage / "refs" / "main"
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8").strip()
        if (snapshots / commit).is_dir():
            return snapshots / commit, commit
    candidates = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    if candidates:
        return candidates[-1], candidates[-1].name
    return None


def _resolve_source(source: str | os.PathLike, config: str | os.PathLike | None) -> _Source:
    text = str(source)
    if not text.strip():
        raise ModelLoadError("no model given: pass demo, a model folder, a .safetensors file or a Hub id")
    if text == DEMO:
        from inspector.resources import demo_model_dir

        folder = demo_model_dir()
        if not (folder / "model_index.json").is_file():
            raise ModelLoadError(
                f"the demo model is not built yet ({folder} is missing): run `inspector demo build`, "
                "or pass --model with your own model"
            )
        return _Source(DEMO, folder, DEMO, DEMO)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            nested = sorted(p.parent for p in path.glob("*/model_index.json"))
            hint = f" (found one in {nested[0]})" if nested else ""
            raise ModelLoadError(
                f"model folder {path} has no model_index.json{hint}: pick the folder that holds it "
                "(a diffusers pipeline saved with save_pretrained)"
            )
        return _Source("folder", path.resolve(), str(path.resolve()), path.resolve().name)
    if path.is_file():
        if path.name.endswith(PICKLE_SUFFIXES) or path.name.endswith(SAFE_SUFFIXES):
            cfg = _resolve_config(path, config)
            return _Source("single-file", path.resolve(), str(path.resolve()), path.stem, config=cfg)
        raise ModelLoadError(
            f"{path}: not a model the inspector can load; pass a diffusers folder (with model_index.json) "
            "or a single-file .safetensors checkpoint"
        )
    if _HUB_ID.match(text) and not text.startswith((".", "~")):
        found = find_in_hub_cache(text)
        if found is None:
            raise ModelLoadError(
                f"{text!r} is neither a local file or folder nor a model in the local Hugging Face cache "
                f"({_hub_cache_dir()}); the inspector never downloads: fetch it first, e.g. "
                f"`huggingface-cli download {text}`, or pass a local folder"
            )
        folder, commit = found
        if not (folder / "model_index.json").is_file():
            raise ModelLoadError(
                f"the cached copy of {text!r} ({folder}) has no model_index.json: it is not a diffusers "
                "pipeline, or its download is incomplete"
            )
        return _Source("hub-cache", folder, text, text, revision=commit)
    raise ModelLoadError(f"model {text!r}: no such file or folder; pass demo, a model folder, a .safetensors "
                         "file, or a Hub id from the local cache")


def config_folder(source: str | os.PathLike, config: str | os.PathLike | None = None) -> Path:
    """The folder holding a model's ``model_index.json`` and tokenizer, found without loading anything
    (a single-file checkpoint's config folder). Raises :class:`ModelLoadError` as :func:`load_model` would."""
    found = _resolve_source(source, config)
    return found.config if found.kind == "single-file" and found.config is not None else found.path


def _resolve_config(checkpoint: Path, config: str | os.PathLike | None) -> Path:
    """The config folder of a single-file checkpoint: ``config`` (folder or cached Hub id), or the file's folder."""
    if config is None:
        if (checkpoint.parent / "model_index.json").is_file():
            return checkpoint.parent.resolve()
        raise ModelLoadError(
            f"{checkpoint.name}: a single-file checkpoint needs a local config folder (a diffusers folder with "
            "model_index.json for the same architecture, e.g. a saved Stable Diffusion 1.5): pass --config DIR"
        )
    path = Path(config).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(f"config folder {path} has no model_index.json: pick the diffusers folder "
                                 "that holds it")
        return path.resolve()
    if _HUB_ID.match(str(config)):
        found = find_in_hub_cache(str(config))
        if found is not None and (found[0] / "model_index.json").is_file():
            return found[0]
    raise ModelLoadError(f"config {str(config)!r}: no such folder and not in the local Hugging Face cache")


# ------------------------------------------------------------------------------------------------ loading


def load_model(
    source: str | os.PathLike = DEMO,
    device: str = "auto",
    dtype: Any = None,
    allow_pickle: bool = False,
    attention_slicing: bool = False,
    vae_tiling: bool = False,
    config: str | os.PathLike | None = None,
) -> LoadedModel:
    """Load a text-to-image model for sampling, offline, and hash its weights for provenance.

    Parameters
    ----------
    source
        ``"demo"``, a diffusers folder (with ``model_index.json``), a single-file ``.safetensors`` checkpoint,
        or a Hub id present in the local Hugging Face cache.
    device
        ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"`` or ``"mps"``.
    dtype
        ``None``/``"auto"`` (float16 on a GPU, float32 on the CPU), ``"float32"``, ``"float16"``,
        ``"bfloat16"``, or a ``torch.dtype``.
    allow_pickle
        Also accept pickle-based weights (.ckpt .bin .pt .pth); they are read with torch's weights-only
        unpickler, which refuses anything but tensors and plain containers.
    attention_slicing, vae_tiling
        Memory savers for large images or small GPUs (slower); a no-op where the model has no such part.
    config
        Single-file checkpoints only: the diffusers config folder (or cached Hub id) of the same architecture;
        default: the checkpoint's own folder when it holds a model_index.json.

    Returns
    -------
    LoadedModel

    Raises
    ------
    ModelLoadError
        Missing or refused model, unknown device or dtype, or a load failure; the message says what to do.
    """
    src = _resolve_source(source, config)
    device = resolve_device(device)
    dtype_name = resolve_dtype(dtype, device)
    go_offline()
    with _load_lock:
        if src.kind == "single-file":
            pipe, identity = _load_single_file(src, dtype_name, allow_pickle)
        else:
            pipe, identity = _load_folder(src, dtype_name, allow_pickle)
    try:
        pipe.to(device)
    except RuntimeError as exc:
        raise ModelLoadError(f"cannot move the model to {device}: {_first_line(exc)}; "
                             "try --device cpu or a smaller dtype") from exc
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    if attention_slicing and hasattr(pipe, "enable_attention_slicing"):
        pipe.enable_attention_slicing()
    if vae_tiling and getattr(pipe, "vae", None) is not None and hasattr(pipe.vae, "enable_tiling"):
        pipe.vae.enable_tiling()
    return _describe(pipe, identity, device, dtype_name, {
        "allow_pickle": allow_pickle, "attention_slicing": attention_slicing, "vae_tiling": vae_tiling})


def _torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def _load_folder(src: _Source, dtype_name: str, allow_pickle: bool) -> tuple[Any, ModelIdentity]:
    index = _read_model_index(src.path)
    components = _components(src.path, index)
    _check_component_folders(src.path, components)
    cls = _pipeline_class(src.path, index["_class_name"])
    weights = _weight_files(src.path, components, allow_pickle)
    if not weights:
        raise ModelLoadError(f"{src.path}: no weight files found in its component folders; the download or "
                             "save is incomplete")
    identity = _identity(src, index["_class_name"], src.path, weights, _config_files(src.path, components))
    kwargs = {"local_files_only": True, "use_safetensors": None if allow_pickle else True,
              _dtype_kwarg(): _torch_dtype(dtype_name)}
    pipe = _guarded_load(src.path, lambda: cls.from_pretrained(str(src.path), **kwargs), allow_pickle)
    return pipe, identity


def _load_single_file(src: _Source, dtype_name: str, allow_pickle: bool) -> tuple[Any, ModelIdentity]:
    if src.path.name.endswith(PICKLE_SUFFIXES) and not allow_pickle:
        raise _pickle_refusal(f"{src.path.name}")
    assert src.config is not None
    index = _read_model_index(src.config)
    components = _components(src.config, index)
    cls = _pipeline_class(src.config, index["_class_name"])
    if not hasattr(cls, "from_single_file"):
        raise ModelLoadError(f"{cls.__name__} cannot be loaded from a single-file checkpoint: "
                             "pass its diffusers folder instead")
    # Components the checkpoint lacks (tokenizer, scheduler, sometimes a text encoder) come from the config
    # folder, so it must pass the same pickle check.
    _weight_files(src.config, components, allow_pickle)
    from inspector.provenance import file_sha256

    sha = file_sha256(src.path)
    identity = ModelIdentity(
        source=src.source, kind=src.kind, class_name=cls.__name__, sha256=sha, files={src.path.name: sha},
        config_sha256=_config_sha256(src.config, _config_files(src.config, components)), name=src.name,
    )
    kwargs = {"config": str(src.config), "local_files_only": True, _dtype_kwarg(): _torch_dtype(dtype_name)}
    pipe = _guarded_load(src.path, lambda: cls.from_single_file(str(src.path), **kwargs), allow_pickle)
    return pipe, identity


def _identity(src: _Source, class_name: str, root: Path, weights: list[Path], configs: list[Path]) -> ModelIdentity:
    from inspector.provenance import files_sha256, listing_sha256

    hashes = files_sha256(root, weights)
    return ModelIdentity(
        source=src.source, kind=src.kind, class_name=class_name, sha256=listing_sha256(hashes), files=hashes,
        config_sha256=_config_sha256(root, configs), name=src.name, revision=src.revision,
    )


def _dtype_kwarg() -> str:
    """diffusers renamed ``torch_dtype`` to ``dtype`` (0.36); pass whichever this version takes."""
    import diffusers.utils.deprecation_utils as dep

    return "dtype" if hasattr(dep, "_resolve_dtype") else "torch_dtype"


def _guarded_load(where: Path, load: Any, allow_pickle: bool) -> Any:
    """Run a diffusers load and turn its failures into one ModelLoadError that says what to do."""
    import pickle

    guard = _weights_only_unpickling() if allow_pickle else contextlib.nullcontext()
    try:
        with guard, _no_progress_bars():
            return load()
    except ModelLoadError:
        raise
    except MemoryError as exc:
        raise ModelLoadError(f"{where}: not enough memory to load the model; close other programs or use a "
                             "smaller model") from exc
    except Exception as exc:  # noqa: BLE001 - diffusers raises many types; each becomes one clear line
        chain = _cause_chain(exc)
        if any(isinstance(e, pickle.UnpicklingError) or "weights_only" in str(e) or "Weights only" in str(e)
               for e in chain):
            raise ModelLoadError(
                f"{where}: torch's weights-only loader refused a pickle in this model: it holds more than "
                "tensors (possibly code that would run on loading). Use a .safetensors version"
            ) from exc
        root = chain[-1]
        detail = _first_line(exc) if root is exc else f"{_first_line(exc)} ({_first_line(root)})"
        raise ModelLoadError(f"{where}: cannot load the model: {detail}") from exc


def _cause_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    return chain


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _describe(pipe: Any, identity: ModelIdentity, device: str, dtype: str, options: dict) -> LoadedModel:
    """Read the sampling defaults and size rules off a loaded pipeline."""
    import inspect

    params = inspect.signature(pipe.__call__).parameters
    steps = params["num_inference_steps"].default if "num_inference_steps" in params else 25
    guidance = params["guidance_scale"].default if "guidance_scale" in params else None
    if guidance is None or guidance is inspect.Parameter.empty:
        guidance = pipe.config.get("default_guidance_scale") if hasattr(pipe, "config") else None
    if hasattr(pipe, "native_size"):  # our demo pipeline: pixel space, one size
        native, step, fixed = int(pipe.native_size), int(pipe.native_size), True
    else:
        denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        scale = int(getattr(pipe, "vae_scale_factor", 8) or 8)
        sample = getattr(getattr(denoiser, "config", None), "sample_size", None)
        sample = sample[0] if isinstance(sample, (list, tuple)) else sample
        default = getattr(pipe, "default_sample_size", None)
        native = int((sample or default or 64) * scale)
        patch = getattr(getattr(denoiser, "config", None), "patch_size", None)
        step, fixed = scale * (int(patch) if isinstance(patch, int) and patch > 1 else 1), False
    return LoadedModel(
        pipeline=pipe, identity=identity, device=device, dtype=dtype, native_size=native, size_step=step,
        fixed_size=fixed, default_steps=int(steps if isinstance(steps, int) else 25),
        default_guidance=None if guidance is None else float(guidance), options=options,
        base_scheduler=getattr(pipe, "scheduler", None),
    )
