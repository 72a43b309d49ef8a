"""One inspection of one prompt, end to end, with no Qt: generate N images, find each one's four nearest
training images, suggest a verdict, then look at the prompt as a whole (cliques, Wen score).

The window runs :func:`inspect_prompt` in a worker and shows each :class:`Inspected` as it arrives; the
``inspect`` and ``scan`` commands run the same code. Loading a model or an index is slow, so both are cached.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import UserError
from inspector.extraction import (
    CLIQUE_EDGE_THRESHOLD,
    CliqueResult,
    Suggestion,
    largest_clique,
    pairwise_tiled_l2,
    suggest_verdict,
)
from inspector.findings import UNLABELED, Finding, Neighbour
from inspector.progress import SAMPLING, Progress, ProgressCallback, no_progress
from inspector.resources import DEMO

#: The stages of one inspection's progress events, in order (sampling is the generation engine's).
LOADING_MODEL, LOADING_INDEX, CLIQUES, WEN = "loading model", "loading index", "finding cliques", "Wen score"
STAGES = (LOADING_MODEL, LOADING_INDEX, SAMPLING, CLIQUES, WEN)
#: The most neighbours one generation is shown with.
MAX_NEIGHBOURS = 100


@dataclass
class InspectRequest:
    """What the person asked for (the prompt panel's fields)."""

    prompt: str
    negative_prompt: str = ""
    n: int = 16
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    batch_size: int | None = None
    wen: bool = True
    k: int = 4
    clique_threshold: float = CLIQUE_EDGE_THRESHOLD

    def generation_request(self, seeds: list[int] | None = None) -> Any:
        """The :class:`inspector.generation.GenerationRequest` that makes this request's images (``seeds``: only
        those, for a scan that resumes)."""
        from inspector.generation import GenerationRequest

        return GenerationRequest(
            prompt=self.prompt, negative_prompt=self.negative_prompt, n=self.n, seed=self.seed, seeds=seeds,
            steps=self.steps, guidance=self.guidance, batch_size=self.batch_size,
        )

    def validate(self) -> None:
        """Check the prompt and every number before anything is loaded, so that a wrong value is refused at once
        rather than after a model load (the window's Generate button, ``inspect`` and ``scan`` call it first).

        Raises
        ------
        UserError
            An empty prompt; or (:class:`inspector.generation.GenerationError`) a setting out of its range, the
            message naming the setting, its range and the value: n in 1..10000 (``inspector.limits``), seed and
            seed + n - 1 in 0..2**63 - 1, steps in 1..1000, guidance in 0..100, k (neighbours) in 1..100, the clique threshold
            in (0, 1].
        """
        import math

        from inspector.generation import GenerationError

        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise UserError("type a prompt first")
        self.generation_request().validate()
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= MAX_NEIGHBOURS:
            raise GenerationError(f"the number of neighbours (k) must be between 1 and {MAX_NEIGHBOURS}, "
                                  f"got {self.k!r}")
        t = self.clique_threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0 < t <= 1:
            raise GenerationError(f"the clique threshold must be a tiled l2 in (0, 1], got {t!r}")


@dataclass(eq=False)
class Inspected:
    """One generation with its neighbours and suggestion, as the grid and comparison panel show it."""

    position: int
    seed: int
    image: np.ndarray  # H x W x 3 uint8, exactly as generated
    png: bytes
    provenance: dict[str, Any]
    neighbours: list[Neighbour]
    suggestion: Suggestion
    in_clique: bool = False
    finding_id: int | None = None
    label: str = UNLABELED
    notes: str = ""
    #: The index searched (``TrainingIndex.identity()``: role, source, images, built, content hash).
    index: dict[str, Any] | None = None
    #: The ``--index`` / ``--model`` values the generation came from (None for a finding read back from a
    #: casebook): its heatmaps are drawn with that index, whatever a picker shows later.
    index_source: str | None = None
    model_source: str | None = None

    @property
    def nearest_tiled_l2(self) -> float | None:
        """The distance the suggested verdict is about: the smallest tiled l2 of the neighbours (rank 1's, as
        the index orders them), in [0, 1]; 0.0 is an exact copy. None when there are no neighbours."""
        return min((nb.tiled_l2 for nb in self.neighbours), default=None)

    @property
    def comparison_size(self) -> int | None:
        """Side in pixels of the square the distances were computed at (None without neighbours)."""
        return self.neighbours[0].comparison_size if self.neighbours else None

    def tooltip(self) -> str:
        from inspector.provenance import QUERY_KIND, finding_kind

        name = f"seed {self.seed}"
        if finding_kind(self.provenance) == QUERY_KIND:  # an image a person asked about (inspector.image_query)
            name = f"{self.provenance.get('file_name', '')}: an image you asked about"
        lines = [name, f"suggested: {self.suggestion.verdict} — {self.suggestion.reason}"]
        if self.label != UNLABELED:
            lines.append(f"your label: {self.label}")
        return "\n".join(lines)


def strip_value(item: Inspected) -> float:
    """The nearest tiled l2 as the distance strip places it: 0.0 stays 0.0 (an exact copy); a generation with no
    neighbours sits at 1.0, the far end."""
    d = item.nearest_tiled_l2
    return 1.0 if d is None else d


@dataclass
class PromptSummary:
    """The prompt as a whole, after all its generations."""

    prompt: str
    n: int
    nearest: list[float]
    clique: CliqueResult | None
    wen_score: float | None = None
    wen_tokens: list[tuple[str, float]] | None = None
    cancelled: bool = False
    notes: list[str] = field(default_factory=list)
    #: prompt_words.PromptWords: words the model cannot read, words in no caption, best-matching captions
    words: Any = None
    #: The index searched (``TrainingIndex.identity()``), when known.
    index: dict[str, Any] | None = None
    #: The casebook run this inspection was recorded as (:mod:`inspector.runs`), when it was.
    run_id: int | None = None
    #: When the model ships an image embedder the index does not use (:func:`embedder_note`), else "";
    #: also one of ``notes``.
    embedder_note: str = ""

    def as_dict(self) -> dict[str, Any]:
        from inspector.prompt_words import PromptWords

        return {
            "prompt": self.prompt,
            "n": self.n,
            "clique_size": self.clique.size if self.clique else 0,
            "clique_members": self.clique.members if self.clique else [],
            "clique_medoid": self.clique.medoid if self.clique else None,
            "flagged": bool(self.clique and self.clique.flagged),
            "flag_min_size": self.clique.min_size if self.clique else None,
            "wen_score": self.wen_score,
            "wen_tokens": self.wen_tokens,
            "cancelled": self.cancelled,
            "notes": self.notes,
            "index": self.index,
            "run_id": self.run_id,
            **(self.words or PromptWords()).as_dict(),
        }


# --- caches: loading is slow, and the window reuses what it loaded --------------------------------------------


class _Cache:
    """One loaded value at a time (a model, an index), reused while the same ``key`` is asked for.

    Asking for another key drops the value held first, through ``drop`` when given, so that a model's memory
    (on the GPU above all) is free before the next model loads: two large models rarely fit at once.
    """

    def __init__(self, loader: Callable[..., Any], drop: Callable[[Any], None] | None = None):
        self._loader = loader
        self._drop = drop
        self._key: str | None = None
        self._value: Any = None
        self._lock = threading.Lock()

    def get(self, key: str, **kwargs: Any) -> Any:
        with self._lock:
            if self._key != key:
                old = self._value
                self._key, self._value = None, None  # a failed load must not leave the old key behind
                if old is not None and self._drop is not None:
                    self._drop(old)
                self._value = self._loader(key, **kwargs)
                self._key = key
            return self._value


def _load_model(source: str) -> Any:
    from inspector.generation import load_model

    return load_model(source)


def _release_model(model: Any) -> None:
    # The window runs one inspection at a time, so the model dropped here is idle; release waits for its
    # sampling lock all the same, and a sampler that still held it would get a "released" error, never garbage.
    model.release()


MODELS = _Cache(_load_model, drop=_release_model)
INDEXES = _Cache(lambda key, **kw: open_index(key, **kw))


def open_index(source: str, progress: ProgressCallback | None = None) -> Any:
    """Open a training index folder; ``demo`` opens the demo training set's index (built on first use into the
    user cache folder, or ``$INSPECTOR_CACHE_DIR``)."""
    import os

    from inspector.training_index import TrainingIndex, demo_index

    if source == DEMO:
        def building(event: Progress) -> None:
            if progress is not None:
                progress(Progress("building the demo index (first use only)", done=event.done,
                                  fraction=event.fraction, eta_s=event.eta_s))

        return demo_index(os.environ.get("INSPECTOR_CACHE_DIR"), progress=building)
    path = Path(source)
    if not path.is_dir():
        raise UserError(f"index folder not found: {source} (build one with `inspector index build`)")
    return TrainingIndex.open(path)


# --- the inspection ---------------------------------------------------------------------------------------------


def _to_array(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def inspect_prompt(
    model_source: str,
    index_source: str,
    request: InspectRequest,
    *,
    cancel: threading.Event | None = None,
    progress: ProgressCallback | None = None,
) -> Iterator[Inspected | PromptSummary]:
    """Yield each generation as an :class:`Inspected` as soon as it and its neighbours are ready, then one
    :class:`PromptSummary` (clique, Wen score). Stops early, keeping what was yielded, when ``cancel`` is set.

    ``progress`` receives :class:`inspector.progress.Progress` events, ``stage`` one of :data:`STAGES` in
    order ("sampling" is the generation engine's own event: images ``done`` of ``total``, ``step`` of
    ``steps``, ``fraction``, ``eta_s``).
    """
    items: list[Inspected] = []
    for item in inspect_generations(model_source, index_source, request, cancel=cancel, progress=progress):
        items.append(item)
        yield item
    cancelled = bool(cancel is not None and cancel.is_set())
    yield summarize_prompt(model_source, request, items, cancelled=cancelled, progress=progress,
                           index_source=index_source)


def inspect_generations(
    model_source: str,
    index_source: str,
    request: InspectRequest,
    *,
    seeds: list[int] | None = None,
    cancel: threading.Event | None = None,
    progress: ProgressCallback | None = None,
) -> Iterator[Inspected]:
    """The generations of :func:`inspect_prompt` without the prompt-level summary.

    ``seeds``: only these seeds of the request (each in ``request.seed .. request.seed + n - 1``), for a scan
    that resumes; an image depends on its seed alone, so it is the same image the whole request would make, at
    the same ``position`` (``seed - request.seed``).
    """
    from inspector.generation import generate

    request.validate()  # before the model loads: a wrong number is refused in a moment, not after seconds
    report = progress or no_progress
    report(Progress(LOADING_MODEL))
    model = MODELS.get(model_source)
    report(Progress(LOADING_INDEX))
    INDEXES.get(index_source, progress=report)  # loaded (or built) now, so the first image waits for nothing
    gen_request = request.generation_request(seeds)
    for generated in generate(model, gen_request, progress=report, cancel=cancel):
        position = generated.index if seeds is None else generated.seed - request.seed
        item = inspect_image(index_source, request, position, generated.seed, _to_array(generated.image),
                             generated.png, generated.provenance)
        item.model_source = model_source
        yield item


def inspect_image(index_source: str, request: InspectRequest, position: int, seed: int, image: np.ndarray,
                  png: bytes, provenance: dict[str, Any]) -> Inspected:
    """One generation (``image``: H x W x 3 uint8, ``png`` its file) with its ``request.k`` nearest training
    images and suggested verdict; also used to bring back a generation a scan recorded before a kill."""
    index = INDEXES.get(index_source)
    neighbours = index.query([image], k=request.k, prompts=request.prompt)[0]
    return Inspected(position=position, seed=seed, image=image, png=png, provenance=provenance,
                     neighbours=neighbours, suggestion=suggest_verdict(neighbours, role=index.role),
                     index=index.identity(), index_source=index_source)


def summarize_prompt(
    model_source: str,
    request: InspectRequest,
    items: list[Inspected],
    *,
    cancelled: bool = False,
    progress: ProgressCallback | None = None,
    index_source: str | None = None,
) -> PromptSummary:
    """The prompt as a whole over ``items`` (in position order): the words the model cannot read and, with
    ``index_source``, how the prompt matches the index's captions (:func:`prompt_word_facts`); the largest
    near-identical clique (marking its members ``in_clique``) and, unless cancelled or ``request.wen`` is off,
    the Wen score."""
    report = progress or no_progress
    summary = PromptSummary(prompt=request.prompt, n=len(items), nearest=[strip_value(i) for i in items],
                            clique=None, cancelled=cancelled)
    summary.words = prompt_word_facts(model_source, index_source, request.prompt)
    summary.notes.extend(summary.words.notes())
    if index_source is not None:
        summary.index = INDEXES.get(index_source).identity()
        summary.embedder_note = embedder_note(MODELS.get(model_source), INDEXES.get(index_source))
        if summary.embedder_note:
            summary.notes.append(summary.embedder_note)
    elif items:
        summary.index = items[0].index
    if len(items) >= 2:
        report(Progress(CLIQUES, done=len(items), total=request.n))
        summary.clique = largest_clique(pairwise_tiled_l2(np.stack([i.image for i in items])),
                                        request.clique_threshold)
        for k in summary.clique.members:
            items[k].in_clique = True
    if request.wen and not cancelled:
        report(Progress(WEN, done=len(items), total=request.n))
        summary.wen_score, summary.wen_tokens, note = prompt_wen_score(MODELS.get(model_source), request)
        if note:
            summary.notes.append(note)
    return summary


def embedder_note(model: Any, index: Any) -> str:
    """Plain words when the loaded model ships an image embedder the index does not use, else "".

    Stable Diffusion 1.x folders carry a CLIP ViT-L/14 vision tower in their safety checker: an index built with
    ``--clip`` on the model folder gets the likeness signal from it with nothing to download.
    """
    if index.manifest.get("semantic"):
        return ""
    identity = getattr(model, "identity", None)
    folder = None
    if identity is not None and identity.kind == "folder":
        folder = Path(identity.source)
    elif identity is not None and identity.kind == "hub-cache":
        from inspector.generation import find_in_hub_cache

        found = find_in_hub_cache(identity.source)
        folder = found[0] if found else None
    from inspector.training_index.semantic import has_safety_checker

    if folder is None or not has_safety_checker(folder):
        return ""
    return (f"the model ships an image embedder (the CLIP tower of its safety checker) but the index has no image "
            f"embeddings, so likeness is judged on pixel distances alone: build the index with --clip "
            f"{identity.source} to get the likeness signal")


def prompt_word_facts(model_source: str, index_source: str | None, prompt: str) -> Any:
    """:class:`inspector.prompt_words.PromptWords` for ``prompt``: the loaded model's tokenizers and, with
    ``index_source``, the index's captions (both already loaded by the inspection; a failing caption search
    becomes a note, never a lost inspection)."""
    import sqlite3

    from inspector.prompt_words import check_words
    from inspector.vocabulary import pipeline_tokenizers

    tokenizers = pipeline_tokenizers(MODELS.get(model_source).pipeline)
    index = INDEXES.get(index_source) if index_source is not None else None
    try:
        return check_words(tokenizers, index, prompt)
    except sqlite3.Error as exc:
        words = check_words(tokenizers, None, prompt)
        words.caption_note = f"the captions in the index could not be searched ({exc})"
        return words


def prompt_wen_score(model, request: InspectRequest) -> tuple[float | None, list | None, str]:
    """Wen et al.'s score for the prompt, with per-word attribution; (None, None, why) when not available."""
    from inspector.wen import WenUnsupported, wen_score

    try:
        with model.lock:
            result = wen_score(model.pipeline, request.prompt, seeds=[request.seed + i for i in range(4)],
                               num_inference_steps=request.steps or model.default_steps,
                               guidance_scale=request.guidance, negative_prompt=request.negative_prompt,
                               attribute_tokens=True)
    except WenUnsupported as exc:
        return None, None, str(exc)
    except (RuntimeError, ValueError) as exc:  # a model we cannot score: say so, keep the generations
        return None, None, f"the Wen score could not be computed: {exc}"
    return result.score, result.tokens, ""


def finding_from(item: Inspected, summary: PromptSummary | None = None) -> Finding:
    """The casebook record of one inspected generation; the prompt-level facts (clique, Wen score) only with the
    ``summary`` (a generation recorded as it is made has none yet: its run holds them)."""
    metrics: dict[str, Any] = dict(item.suggestion.evidence)
    if summary is not None:
        metrics.update({
            "in_clique": item.in_clique,
            "clique_size": summary.clique.size if summary.clique else 0,
            "clique_flagged": bool(summary.clique and summary.clique.flagged),
            "generations": summary.n,
            "wen_score": summary.wen_score,
        })
    prov = item.provenance
    return Finding(
        prompt=prov.get("prompt", ""), seed=item.seed, image_png=item.png, provenance=prov,
        neighbours=item.neighbours, negative_prompt=prov.get("negative_prompt", ""),
        suggested_verdict=item.suggestion.verdict, suggestion_reason=item.suggestion.reason, metrics=metrics,
        notes=item.notes, index=item.index or (summary.index if summary is not None else None),
    )


def comparison_arrays(index_source: str, item: Inspected, nb: Neighbour) -> tuple[np.ndarray, np.ndarray]:
    """The generation and the training image exactly as their distances were computed: two uint8 arrays of
    ``nb.comparison_size`` px (the neighbour's own pixels; the index's, reduced the same way, for a neighbour
    that does not carry them)."""
    from inspector.images import as_uint8, canonical

    size = nb.comparison_size or min(min(item.image.shape[:2]), INDEXES.get(index_source).comparison_size)
    train = nb.comparison_pixels()
    if train is None:
        train = INDEXES.get(index_source).pixels_at([nb.item_id], size)[0]
    return as_uint8(canonical(item.image, size)), train


def neighbour_views(index_source: str, item: Inspected, side: int = 150) -> list[dict[str, np.ndarray]]:
    """For each neighbour: the training image and its three heatmaps against the generation, as pictures,
    drawn from exactly the two arrays its distances came from (at its comparison size)."""
    from inspector.heatmap import heatmap_views

    return [heatmap_views(*comparison_arrays(index_source, item, nb), side) for nb in item.neighbours]
