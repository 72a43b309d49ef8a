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

DEMO = "demo"


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

    @property
    def nearest_tiled_l2(self) -> float | None:
        return min((nb.tiled_l2 for nb in self.neighbours), default=None)

    def tooltip(self) -> str:
        lines = [f"seed {self.seed}", f"suggested: {self.suggestion.verdict} — {self.suggestion.reason}"]
        if self.label != UNLABELED:
            lines.append(f"your label: {self.label}")
        return "\n".join(lines)


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

    def as_dict(self) -> dict[str, Any]:
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
        }


# --- caches: loading is slow, and the window reuses what it loaded --------------------------------------------


class _Cache:
    def __init__(self, loader: Callable[[str], Any]):
        self._loader = loader
        self._key: str | None = None
        self._value: Any = None
        self._lock = threading.Lock()

    def get(self, key: str, **kwargs: Any) -> Any:
        with self._lock:
            if self._key != key:
                self._key, self._value = None, None  # a failed load must not leave the old key behind
                self._value = self._loader(key, **kwargs)
                self._key = key
            return self._value

    def forget(self) -> None:
        with self._lock:
            self._key, self._value = None, None


def _load_model(source: str) -> Any:
    from inspector.generation import load_model

    return load_model(source)


MODELS = _Cache(_load_model)
INDEXES = _Cache(lambda key, **kw: open_index(key, **kw))


def open_index(source: str, progress: Callable[[dict], None] | None = None) -> Any:
    """Open a training index folder; ``demo`` opens the demo training set's index (built on first use into the
    user cache folder, or ``$INSPECTOR_CACHE_DIR``)."""
    import os

    from inspector.training_index import TrainingIndex, demo_index

    if source == DEMO:
        def building(event) -> None:
            if progress is not None:
                progress({"stage": "building the demo index (first use only)", "done": event.files_done,
                          "n": None, "fraction": event.fraction, "eta": event.eta_s})

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
    progress: Callable[[dict], None] | None = None,
) -> Iterator[Inspected | PromptSummary]:
    """Yield each generation as an :class:`Inspected` as soon as it and its neighbours are ready, then one
    :class:`PromptSummary` (clique, Wen score). Stops early, keeping what was yielded, when ``cancel`` is set.

    ``progress`` receives dicts: ``{"stage": "loading model" | "loading index" | "sampling" | "cliques" | "wen",
    "done": images done, "n": n, "step": step, "steps": steps, "eta": seconds or None}``.
    """
    from inspector.generation import GenerationRequest, generate

    if not request.prompt.strip():
        raise UserError("type a prompt first")
    report = progress or (lambda _info: None)
    report({"stage": "loading model", "done": 0, "n": request.n})
    model = MODELS.get(model_source)
    report({"stage": "loading index", "done": 0, "n": request.n})
    index = INDEXES.get(index_source, progress=report)
    gen_request = GenerationRequest(
        prompt=request.prompt, negative_prompt=request.negative_prompt, n=request.n, seed=request.seed,
        steps=request.steps, guidance=request.guidance, batch_size=request.batch_size,
    )

    def on_step(done: int, n: int, step: int, steps: int, eta: float | None) -> None:
        report({"stage": "sampling", "done": done, "n": n, "step": step, "steps": steps, "eta": eta})

    items: list[Inspected] = []
    for generated in generate(model, gen_request, progress=on_step, cancel=cancel):
        image = _to_array(generated.image)
        neighbours = index.query([image], k=request.k)[0]
        items.append(Inspected(
            position=generated.index, seed=generated.seed, image=image, png=generated.png,
            provenance=generated.provenance, neighbours=neighbours, suggestion=suggest_verdict(neighbours),
        ))
        yield items[-1]
    cancelled = bool(cancel is not None and cancel.is_set())
    summary = PromptSummary(prompt=request.prompt, n=len(items), nearest=[i.nearest_tiled_l2 or 1.0 for i in items],
                            clique=None, cancelled=cancelled)
    if len(items) >= 2:
        report({"stage": "cliques", "done": len(items), "n": request.n})
        summary.clique = largest_clique(pairwise_tiled_l2(np.stack([i.image for i in items])),
                                        request.clique_threshold)
        for k in summary.clique.members:
            items[k].in_clique = True
    if request.wen and not cancelled:
        report({"stage": "wen", "done": len(items), "n": request.n})
        summary.wen_score, summary.wen_tokens, note = prompt_wen_score(model, request)
        if note:
            summary.notes.append(note)
    yield summary


def prompt_wen_score(model, request: InspectRequest) -> tuple[float | None, list | None, str]:
    """Wen et al.'s score for the prompt, with per-token attribution; (None, None, why) when not available."""
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
    """The casebook record of one inspected generation."""
    metrics: dict[str, Any] = {"in_clique": item.in_clique, **item.suggestion.evidence}
    if summary is not None:
        metrics.update({
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
        notes=item.notes,
    )


def neighbour_views(index_source: str, item: Inspected, side: int = 150) -> list[dict[str, np.ndarray]]:
    """For each neighbour: the training image and its three heatmaps against the generation, as pictures."""
    from inspector.heatmap import heatmap_views
    from inspector.images import canonical

    index = INDEXES.get(index_source)
    gen = canonical(item.image, index.comparison_size)
    return [heatmap_views(gen, index.canonical_image(nb.item_id), side) for nb in item.neighbours]
