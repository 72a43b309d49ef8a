"""``inspector evaluate``: how often the inspector's signals are right, on the benchmark world where the answer is
known (:mod:`inspector.demo.benchmark_world`).

For every benchmark prompt the benchmark model is sampled through the app's own path (seeds 0 .. n-1,
:func:`inspector.generation.generate`), and each signal is taken as the app takes it:

- the suggested verdict of each generation: its four nearest in an index of the training set built with the
  benchmark's image embedder, then :func:`inspector.extraction.suggest_verdict`;
- the prompt's largest clique of near-identical generations (:func:`inspector.extraction.largest_clique`);
- Wen et al.'s score (:func:`inspector.wen.wen_score`) averaged over the first 1, 5 and 10 of 25 sampling steps,
  with 1 and 4 generations;
- the nearest tiled l2 of the prompt's generations to the training set.

The ground truth is independent of all of them:

- per generation, from an exact brute-force distance to every training image (numpy, float64, at the model's
  32 px, no index): a *near copy* when some training image is within tiled l2 0.15 (Carlini et al.'s bar); else a
  *likeness* when the image nearest by plain l2 shows the prompt's own subject (its duplicated photograph or its
  crop family); else *novel*;
- per prompt, from construction (duplicate count, crop family, novel family) and from what its generations were
  (the fraction that are near copies: a prompt is *memorized* when at least half are, *not memorized* when none
  is, Wen et al.'s split of prompts known to reproduce training images against prompts that do not).

Everything but the timings is deterministic: a second run gives the same numbers (a test checks it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspector.demo.evaluate import l2_to_all, tiled_l2_to_all, training_pixels
from inspector.metrics import EXTRACTION_THRESHOLD

TRUTHS = ("memorized", "likeness", "novel")
#: The suggested verdicts, in the truth's order (the app's names: memorized, likeness?, novel).
SUGGESTED = ("memorized", "likeness?", "novel")
#: (first sampling steps averaged, generations) for Wen's score, as in Wen et al.'s detection table.
WEN_SETTINGS = ((1, 1), (1, 4), (5, 1), (5, 4), (10, 1), (10, 4))
SAMPLING_STEPS = 25
#: A prompt is memorized when at least this fraction of its generations are near copies (and not memorized
#: when none is; prompts in between are left out of the prompt-level AUC, and counted).
MEMORIZED_PROMPT_RATE = 0.5


@dataclass
class EvaluationConfig:
    n: int = 16  # generations per prompt (seeds 0 .. n-1)
    seed: int = 0
    sampling_steps: int = SAMPLING_STEPS
    prompts: Sequence[str] | None = None  # a subset of the benchmark's prompts (default: all)
    wen_settings: Sequence[tuple[int, int]] = WEN_SETTINGS
    threads: int = 2


@dataclass
class PromptResult:
    prompt: str
    kind: str
    copies: int
    truths: list[str]
    suggested: list[str]
    nearest_tiled_l2: list[float]  # the app's, per generation (index)
    exact_tiled_l2: list[float]  # the truth's: brute force over every training image
    clique_size: int
    clique_flagged: bool
    wen: dict[str, float]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def extraction_rate(self) -> float:
        return self.truths.count("memorized") / len(self.truths)


def wen_key(first_steps: int, generations: int) -> str:
    return f"wen_{first_steps}step_{generations}gen"


def truth_of(gen: np.ndarray, train: np.ndarray, captions: list[str], caption: str, kind: str) -> tuple[str, float]:
    """(ground truth, exact nearest tiled l2) of one generation (H x W x 3 float in [0, 1]) against every
    training image (N x H x W x 3)."""
    exact = float(tiled_l2_to_all(gen, train).min())
    if exact <= EXTRACTION_THRESHOLD:
        return "memorized", exact
    nearest = int(np.argmin(l2_to_all(gen, train)))
    if kind in ("duplicated", "likeness") and captions[nearest] == caption:
        return "likeness", exact
    return "novel", exact


def index_dir(bench: Path) -> Path:
    return Path(bench) / "index"


def ensure_index(bench: Path, log: Callable[[str], None] = print) -> tuple[Path, float]:
    """The training index of the benchmark (built once with the benchmark's embedder into ``bench/index``)."""
    from inspector.training_index import DEMO_COMPARISON_SIZE, TrainingIndex, TrainingIndexError, build_index

    out = index_dir(bench)
    try:
        with TrainingIndex.open(out, semantic=True):
            return out, 0.0
    except (TrainingIndexError, FileNotFoundError, OSError):
        pass
    log(f"indexing the benchmark training set into {out}")
    started = time.perf_counter()
    build_index(Path(bench) / "training", out, comparison_size=DEMO_COMPARISON_SIZE, clip=Path(bench) / "embedder",
                resume=True, workers=1)
    return out, time.perf_counter() - started


def evaluate_prompt(model: Any, index: Any, entry: dict, train: np.ndarray, captions: list[str],
                    cfg: EvaluationConfig) -> PromptResult:
    """Sample one prompt and take every signal and the ground truth of each generation."""
    from inspector.extraction import largest_clique, pairwise_tiled_l2, suggest_verdict
    from inspector.generation import GenerationRequest, generate
    from inspector.wen import wen_score

    prompt = entry["caption"]
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    images = [np.asarray(g.image.convert("RGB")) for g in generate(
        model, GenerationRequest(prompt, n=cfg.n, seed=cfg.seed, steps=cfg.sampling_steps))]
    seconds["generation"] = time.perf_counter() - t
    t = time.perf_counter()
    neighbours = index.query(images, k=4)
    suggestions = [suggest_verdict(nb, role=index.role) for nb in neighbours]
    seconds["nearest_and_verdict"] = time.perf_counter() - t
    t = time.perf_counter()
    clique = largest_clique(pairwise_tiled_l2(np.stack(images).astype(np.float64) / 255))
    seconds["clique"] = time.perf_counter() - t
    wen = {}
    for first, gens in cfg.wen_settings:
        t = time.perf_counter()
        result = wen_score(model.pipeline, prompt, seeds=range(cfg.seed, cfg.seed + gens),
                           num_inference_steps=cfg.sampling_steps, first_fraction=first / cfg.sampling_steps)
        seconds[wen_key(first, gens)] = time.perf_counter() - t
        wen[wen_key(first, gens)] = round(float(result.score), 6)
    truths, exact = [], []
    for img in images:
        truth, distance = truth_of(img.astype(np.float64) / 255, train, captions, prompt, entry["kind"])
        truths.append(truth)
        exact.append(round(distance, 6))
    return PromptResult(
        prompt=prompt, kind=entry["kind"], copies=int(entry["copies"]) if entry["kind"] == "duplicated" else 0,
        truths=truths, suggested=[s.verdict for s in suggestions],
        nearest_tiled_l2=[round(float(s.evidence["nearest_tiled_l2"]), 6) for s in suggestions],
        exact_tiled_l2=exact, clique_size=clique.size, clique_flagged=clique.flagged, wen=wen,
        seconds={k: round(v, 3) for k, v in seconds.items()})


# --- scores ---------------------------------------------------------------------------------------------------


def confusion(results: Sequence[PromptResult]) -> dict[str, Any]:
    """Truth x suggestion counts over every generation, with each suggested verdict's precision and recall."""
    matrix = {t: dict.fromkeys(SUGGESTED, 0) for t in TRUTHS}
    for r in results:
        for truth, suggested in zip(r.truths, r.suggested, strict=True):
            matrix[truth][suggested] += 1
    scores = {}
    for truth, suggested in zip(TRUTHS, SUGGESTED, strict=True):
        tp = matrix[truth][suggested]
        said = sum(matrix[t][suggested] for t in TRUTHS)
        real = sum(matrix[truth].values())
        scores[suggested] = {"precision": tp / said if said else None, "recall": tp / real if real else None,
                             "suggested": said, "true": real}
    return {"matrix": matrix, "scores": scores, "generations": sum(len(r.truths) for r in results)}


def prompt_labels(results: Sequence[PromptResult]) -> dict[str, list[int | None]]:
    """Per prompt: 1 / 0 / None (left out) under the outcome split (at least half near copies vs none) and the
    construction split (a duplicated subject vs a crop family or a novel family)."""
    outcome = [1 if r.extraction_rate >= MEMORIZED_PROMPT_RATE else 0 if r.extraction_rate == 0 else None
               for r in results]
    construction = [1 if r.kind == "duplicated" else 0 for r in results]
    return {"outcome": outcome, "construction": construction}


def prompt_signals(results: Sequence[PromptResult]) -> dict[str, list[float]]:
    """Each prompt-level signal, oriented so that higher means "more likely memorized"."""
    signals: dict[str, list[float]] = {
        "clique_size": [float(r.clique_size) for r in results],
        "nearest_tiled_l2 (lower is more likely)": [-min(r.nearest_tiled_l2) for r in results],
        "suggested_near_copies": [r.suggested.count("memorized") / len(r.suggested) for r in results],
    }
    for key in results[0].wen if results else ():
        signals[key] = [r.wen[key] for r in results]
    return signals


def aucs(results: Sequence[PromptResult]) -> dict[str, dict[str, Any]]:
    """ROC AUC (scikit-learn) of every prompt-level signal under both splits, with the prompts counted."""
    from sklearn.metrics import roc_auc_score

    out: dict[str, dict[str, Any]] = {}
    for split, labels in prompt_labels(results).items():
        kept = [i for i, y in enumerate(labels) if y is not None]
        y = [labels[i] for i in kept]
        row: dict[str, Any] = {"positives": sum(y), "negatives": len(y) - sum(y), "left_out": len(labels) - len(kept)}
        for name, values in prompt_signals(results).items():
            row[name] = (round(float(roc_auc_score(y, [values[i] for i in kept])), 4)
                         if 0 < sum(y) < len(y) else None)
        out[split] = row
    return out


def extraction_curve(results: Sequence[PromptResult]) -> list[dict[str, Any]]:
    """Per duplicate count: the fraction of generations that are near copies (truth), that the app suggests as
    near copies, and the prompts whose clique is flagged (Carlini et al.'s extraction against duplication)."""
    rows = []
    for copies in sorted({r.copies for r in results if r.kind == "duplicated"}):
        group = [r for r in results if r.kind == "duplicated" and r.copies == copies]
        gens = sum(len(r.truths) for r in group)
        rows.append({
            "copies": copies, "prompts": len(group), "generations": gens,
            "extraction_rate": sum(r.truths.count("memorized") for r in group) / gens,
            "suggested_rate": sum(r.suggested.count("memorized") for r in group) / gens,
            "prompts_flagged_by_clique": sum(r.clique_flagged for r in group),
            "prompts_extracted": sum(r.truths.count("memorized") > 0 for r in group),
        })
    return rows


def costs(results: Sequence[PromptResult]) -> dict[str, float]:
    """Mean seconds per prompt of each signal; a signal on generations includes sampling them."""
    if not results:
        return {}
    mean = {k: float(np.mean([r.seconds[k] for r in results])) for k in results[0].seconds}
    out = {"generation (n images)": mean["generation"],
           "suggested verdicts (sampling + four nearest)": mean["generation"] + mean["nearest_and_verdict"],
           "nearest tiled l2 (sampling + four nearest)": mean["generation"] + mean["nearest_and_verdict"],
           "clique (sampling + pairwise)": mean["generation"] + mean["clique"]}
    out.update({k: v for k, v in mean.items() if k.startswith("wen_")})
    return {k: round(v, 3) for k, v in out.items()}


def summarise(results: Sequence[PromptResult]) -> dict[str, Any]:
    return {"confusion": confusion(results), "auc": aucs(results), "extraction_curve": extraction_curve(results)}


# --- the run --------------------------------------------------------------------------------------------------


def evaluate_benchmark(bench: Path, cfg: EvaluationConfig | None = None,
                       log: Callable[[str], None] = print) -> dict[str, Any]:
    """Evaluate every signal on the benchmark world in ``bench``; return the results (``results``: deterministic;
    ``timing``: seconds, which vary from run to run)."""
    import torch

    from inspector.demo.benchmark import ensure_training_set
    from inspector.generation import load_model
    from inspector.training_index import TrainingIndex

    cfg = cfg or EvaluationConfig()
    bench = Path(bench)
    if not (bench / "model" / "model_index.json").is_file():
        raise FileNotFoundError(f"{bench} holds no benchmark model: run inspector demo build --benchmark first")
    torch.set_num_threads(cfg.threads)
    training = ensure_training_set(bench, log=log)
    entries = json.loads((bench / "prompts.json").read_text(encoding="utf-8"))
    if cfg.prompts is not None:
        unknown = sorted(set(cfg.prompts) - {e["caption"] for e in entries})
        if unknown:
            raise ValueError(f"not benchmark prompts: {', '.join(unknown)}")
        entries = [e for e in entries if e["caption"] in set(cfg.prompts)]
    index_path, index_seconds = ensure_index(bench, log=log)
    train, captions, _ = training_pixels(training, 32)
    train = train.astype(np.float64)
    model = load_model(str(bench / "model"), device="cpu")
    results = []
    started = time.perf_counter()
    with TrainingIndex.open(index_path, semantic=True) as index:
        for k, entry in enumerate(entries, 1):
            result = evaluate_prompt(model, index, entry, train, captions, cfg)
            results.append(result)
            log(f"[{k}/{len(entries)}] {entry['caption']!r} ({entry['kind']}, {result.copies or '-'} copies): "
                f"{result.truths.count('memorized')}/{cfg.n} near copies, suggested "
                f"{result.suggested.count('memorized')}/{cfg.n}; clique {result.clique_size}; "
                f"wen {result.wen.get(wen_key(1, 4), float('nan')):.3f}")
    config = asdict(cfg)
    config["wen_settings"] = [list(s) for s in cfg.wen_settings]
    record = json.loads((bench / "training_record.json").read_text(encoding="utf-8"))
    return {
        "config": config,
        "world": json.loads((bench / "world.json").read_text(encoding="utf-8")),
        "model": {"steps": record.get("steps_done"), "training_seconds": record.get("wall_seconds"),
                  "unet_parameters": record.get("unet_parameters")},
        "results": {"prompts": [asdict(r) | {"seconds": None} for r in results], **summarise(results)},
        "timing": {"seconds_per_prompt": costs(results), "total_seconds": round(time.perf_counter() - started, 1),
                   "index_build_seconds": round(index_seconds, 1)},
    }
