"""The generation engine's overhead over a bare ``pipe(...)`` call on the same model, seeds and steps.

Both sides sample the same 16 images x 25 steps, in the same batches, with one CPU generator per image; the
engine adds per-step progress and cancel checks, provenance and PNG encoding. The engine runs with
``batch_invariant=False`` here, so both sides do the same arithmetic (one network call per batch). They are timed
side by side in one run, interleaved (A B B A ...). Printed: the ratio engine / bare of the process CPU time (one
torch thread, so CPU time is the work done, even when other programs share the cores) and of the wall time, each
for the fastest runs and as the median of the per-repeat ratios (goal: <= 1.05). The engine's own work is also
measured directly: its time minus the time spent inside the pipeline calls.

A third contender, timed in the same rounds, is the engine's default: batch-invariant sampling (networks called
image by image inside the batch, so an image's pixels do not depend on the batch). Its ratio to the bare call is
the price of that guarantee at this batch size (at batch size 1, the CPU default, there is nothing to split).
No asserts.

Model: the shipped demo model when it has been built, else a randomly initialised pipeline of the demo's real
size (same architecture and cost per step).

    python bench/bench_generation.py [--repeats 3] [--batch-size 4] [--threads 1] [--model SRC]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

N_IMAGES = 16
STEPS = 25
PROMPT = "a photo of a red fox in the snow"


def _model_source(tmp: Path) -> str:
    from inspector.resources import demo_model_dir

    if (demo_model_dir() / "model_index.json").is_file():
        return "demo"
    from inspector.demo.tokenizer import save_tokenizer
    from inspector.demo.train import TrainConfig, make_pipeline

    captions = [PROMPT, "a blue car on a road", "a portrait of a woman", "a painting of a castle"]
    tokenizer = save_tokenizer(tmp / "tokenizer", captions)
    make_pipeline(tokenizer, TrainConfig()).save_pretrained(tmp / "model", safe_serialization=True)
    return str(tmp / "model")


def _bare(model, batch_size: int) -> list:
    import torch

    pipe, images = model.pipeline, []
    for start in range(0, N_IMAGES, batch_size):
        seeds = range(start, min(N_IMAGES, start + batch_size))
        out = pipe(PROMPT, num_images_per_prompt=len(seeds), num_inference_steps=STEPS,
                   generator=[torch.Generator("cpu").manual_seed(s) for s in seeds], output_type="pil")
        images += out.images
    return images


def _engine(model, batch_size: int, invariant: bool = False) -> list:
    import threading

    from inspector.generation import GenerationRequest, generate

    request = GenerationRequest(PROMPT, n=N_IMAGES, seed=0, steps=STEPS, batch_size=batch_size,
                                batch_invariant=invariant)
    return [g.image for g in generate(model, request, progress=lambda *a: None, cancel=threading.Event())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each side (default 5)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per pipeline call (default 4)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--model", help="model source (default: demo, else a random demo-sized pipeline)")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from inspector.generation import load_model

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        source = args.model or _model_source(Path(tmp))
        model = load_model(source, device="cpu")
        print(f"model {source} ({model.identity.class_name}, {model.native_size}px), {N_IMAGES} images x "
              f"{STEPS} steps, batch size {args.batch_size}, {args.threads} torch thread(s)")
        same = all(np.array_equal(np.asarray(a), np.asarray(b))  # warm-up, and a check that both do the same
                   for a, b in zip(_bare(model, args.batch_size), _engine(model, args.batch_size), strict=True))
        print(f"identical pixels engine vs bare: {same}")
        alone = _engine(model, 1, invariant=True)
        invariant = _engine(model, args.batch_size, invariant=True)
        same = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(alone, invariant, strict=True))
        print(f"identical pixels batch-invariant batch {args.batch_size} vs batch 1: {same}")
        sides = ("bare", "engine", "invariant")
        wall: dict[str, list[float]] = {side: [] for side in sides}
        cpu: dict[str, list[float]] = {side: [] for side in sides}
        own: list[float] = []
        for r in range(args.repeats):
            order = sides if r % 2 == 0 else sides[::-1]
            for side in order:
                w, c = time.perf_counter(), time.process_time()
                if side == "bare":
                    _bare(model, args.batch_size)
                elif side == "invariant":
                    _engine(model, args.batch_size, invariant=True)
                else:
                    with _timed_pipeline(model) as spans:
                        _engine(model, args.batch_size)
                    own.append(sum(total - inside for total, inside in spans))
                wall[side].append(time.perf_counter() - w)
                cpu[side].append(time.process_time() - c)
            print(f"repeat {r + 1}: " + ", ".join(f"{side} {cpu[side][-1]:.2f} s CPU / {wall[side][-1]:.2f} s wall"
                                                   for side in sides))
    for name, t in (("CPU time", cpu), ("wall time", wall)):
        for side, what in (("engine", "overhead ratio engine/bare"),
                           ("invariant", "batch-invariant engine/bare")):
            ratios = [e / b for e, b in zip(t[side], t["bare"], strict=True)]
            goal = " (goal <= 1.05)" if side == "engine" else ""
            print(f"{what}, {name}: {min(t[side]) / min(t['bare']):.3f} fastest runs, "
                  f"{statistics.median(ratios):.3f} median of repeats{goal}")
    share = statistics.median(o / c for o, c in zip(own, cpu["engine"], strict=True))
    print(f"engine's own CPU work outside the pipeline: {statistics.median(own) * 1000:.0f} ms per run "
          f"({share * 100:.2f}% of the run)")
    return 0


@contextlib.contextmanager
def _timed_pipeline(model):
    """Collect (CPU seconds of the whole run so far, CPU seconds inside the pipeline's ``__call__``) pairs."""
    cls = type(model.pipeline)
    original = cls.__call__
    inside: list[float] = []
    start = time.process_time()

    @functools.wraps(original)
    def timed(self, *args, **kwargs):
        before = time.process_time()
        try:
            return original(self, *args, **kwargs)
        finally:
            inside.append(time.process_time() - before)

    spans: list[tuple[float, float]] = []
    cls.__call__ = timed
    try:
        yield spans
    finally:
        cls.__call__ = original
        spans.append((time.process_time() - start, sum(inside)))


if __name__ == "__main__":
    sys.exit(main())
