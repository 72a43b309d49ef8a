"""Does the demo model behave as the demo promises? Sample each demo prompt and measure against the training set.

- memorized prompts: how many seeds give a near copy (tiled l2 <= 0.15) of their duplicated training image;
- likeness-only prompts: how many seeds' nearest training image shows the subject, and how many are near copies;
- novel prompts: how many seeds fall within 0.15 of any training image.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from inspector.demo import world
from inspector.findings import SUGGESTIONS
from inspector.images import canonical
from inspector.metrics import EXTRACTION_THRESHOLD


def training_pixels(training: Path, size: int) -> tuple[np.ndarray, list[str], list[str]]:
    """Unique training images (by file bytes) at ``size``, with their captions and sources."""
    from inspector.fileio import sha256_file

    seen: dict[str, int] = {}
    pixels, captions, sources = [], [], []
    for png in sorted(Path(training).glob("*.png")):
        digest = sha256_file(png)
        if digest in seen:
            continue
        seen[digest] = len(pixels)
        meta = json.loads(png.with_suffix(".json").read_text(encoding="utf-8"))
        pixels.append(canonical(png, size))
        captions.append(meta["caption"])
        sources.append(meta["source"])
    return np.stack(pixels), captions, sources


def tiled_l2_to_all(gen: np.ndarray, train: np.ndarray, grid: int = 4) -> np.ndarray:
    """tiled l2 of one generation (H x W x 3) to every training image (N x H x W x 3), vectorised."""
    n, h, w, c = train.shape
    sq = (train.astype(np.float64) - gen[None].astype(np.float64)) ** 2
    tiles = sq.reshape(n, grid, h // grid, grid, w // grid, c).mean(axis=(2, 4, 5))
    return np.sqrt(tiles).reshape(n, -1).max(axis=1)


def l2_to_all(gen: np.ndarray, train: np.ndarray) -> np.ndarray:
    return np.sqrt(((train.astype(np.float64) - gen[None]) ** 2).reshape(len(train), -1).mean(axis=1))


def evaluate(model_dir: Path, training: Path, seeds: int = 16, steps: int = 25,
             guidance: float | None = None) -> dict:
    import torch

    from inspector.generation.demo_pipeline import DemoPipeline

    pipe = DemoPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    size = pipe.native_size
    train, captions, _ = training_pixels(training, size)
    report: dict = {"seeds": seeds, "steps": steps, "guidance": guidance or pipe.config.default_guidance_scale,
                    "prompts": []}
    timing = None
    for kind, prompts in world.PROMPTS.items():
        for prompt in prompts:
            gens = [torch.Generator("cpu").manual_seed(s) for s in range(seeds)]
            t0 = time.perf_counter()
            images = pipe(prompt, num_images_per_prompt=seeds, generator=gens, num_inference_steps=steps,
                          guidance_scale=guidance, output_type="np").images
            elapsed = time.perf_counter() - t0
            timing = timing or {"images": seeds, "steps": steps, "seconds": elapsed}
            own = [i for i, c in enumerate(captions) if c == prompt]
            within = 0
            subject = 0
            tl = []
            for img in images:
                img = np.round(img * 255) / 255  # as saved to PNG
                t_all = tiled_l2_to_all(img, train)
                nearest = int(np.argmin(l2_to_all(img, train)))
                if kind == "memorized":
                    value = float(t_all[own].min())
                else:
                    value = float(t_all.min())
                    subject += captions[nearest] == prompt
                tl.append(value)
                within += value <= EXTRACTION_THRESHOLD
            row = {"prompt": prompt, "kind": kind, "seeds": seeds, "within_threshold": int(within),
                   "median_tiled_l2": float(np.median(tl))}
            if kind == "likeness-only":
                row["nearest_is_subject"] = int(subject)
            report["prompts"].append(row)
    report["timing"] = timing
    return report


def evaluate_suggestions(demo: Path, seeds: int = 16, index: Any = None) -> dict:
    """The app's suggested verdicts for each demo prompt, through the app's own path: the demo model sampled by
    :func:`inspector.generation.generate` (seeds 0 .. seeds - 1), each image's four nearest from an index of
    ``demo/training`` built with the demo's image embedder, and :func:`inspector.extraction.suggest_verdict`.

    ``index``: an open index to use (e.g. the cached demo index); by default one is built in a temporary folder.
    Returns per prompt the count of each suggested verdict and the likeness scores (cosine, in [-1, 1]).
    """
    import tempfile

    from inspector.generation import load_model
    from inspector.training_index import DEMO_COMPARISON_SIZE, TrainingIndex, build_index

    demo = Path(demo)
    model = load_model(str(demo / "model"))
    if index is not None:
        return _suggestion_counts(model, index, seeds)
    with tempfile.TemporaryDirectory(prefix="demo-index-") as tmp:
        build_index(demo / "training", Path(tmp) / "index", comparison_size=DEMO_COMPARISON_SIZE,
                    clip=demo / "embedder")
        with TrainingIndex.open(Path(tmp) / "index", semantic=True) as built:
            return _suggestion_counts(model, built, seeds)


def _suggestion_counts(model: Any, index: Any, seeds: int) -> dict:
    from inspector.extraction import suggest_verdict
    from inspector.generation import GenerationRequest, generate

    started = time.perf_counter()
    rows = []
    threshold = None
    for kind, prompts in world.PROMPTS.items():
        for prompt in prompts:
            counts = dict.fromkeys(SUGGESTIONS, 0)
            scores = []
            for generated in generate(model, GenerationRequest(prompt, n=seeds, seed=0)):
                [neighbours] = index.query([np.asarray(generated.image.convert("RGB"))], k=4)
                counts[suggest_verdict(neighbours, role=index.role).verdict] += 1
                scores.append(neighbours[0].likeness_score)
                threshold = neighbours[0].likeness_threshold
            rows.append({"prompt": prompt, "kind": kind, "seeds": seeds, **counts,
                         "likeness_scores": [None if v is None else round(v, 4) for v in scores]})
    return {"seeds": seeds, "likeness_threshold": threshold, "prompts": rows,
            "seconds": round(time.perf_counter() - started, 1)}


if __name__ == "__main__":
    import sys

    model = Path(sys.argv[1])
    training = Path(sys.argv[2])
    g = float(sys.argv[3]) if len(sys.argv) > 3 else None
    print(json.dumps(evaluate(model, training, guidance=g), indent=1))
