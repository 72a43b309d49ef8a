"""The price of thread-count invariant sampling on the CPU: oneDNN off (PyTorch's own convolutions) against on.

oneDNN's CPU convolutions pick their blocking by the torch thread count, so the same seed could come out a level
different with 1 and 2 threads; the engine's default (``thread_invariant``, with ``batch_invariant``) turns oneDNN
off for the sampling call. Both sides sample the same images x steps through the engine, per-image calls, timed
side by side in one run, interleaved (A B B A ...). Printed: the wall-time ratio invariant / oneDNN for the fastest
runs and as the median of the per-repeat ratios (goal: <= 1.10), and whether each side gives identical pixels
with 1 and with ``--threads`` threads. No asserts.

    python bench/bench_thread_invariance.py [--repeats 3] [--n 8] [--steps 25] [--threads 2] [--model demo]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOAL = 1.10


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="demo")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from inspector.generation import GenerationRequest, generate, load_model

    model = load_model(args.model, device="cpu")
    sides = {"invariant": True, "oneDNN": False}

    def run(invariant: bool, threads: int) -> tuple[float, list]:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            start = time.perf_counter()
            images = list(generate(model, GenerationRequest("a cup of coffee", n=args.n, steps=args.steps,
                                                            thread_invariant=invariant)))
            return time.perf_counter() - start, [np.asarray(i.image) for i in images]
        finally:
            torch.set_num_threads(before)

    print(f"model {args.model}, {args.n} images x {args.steps} steps, {args.threads} torch threads, "
          f"{args.repeats} repeats")
    for name, invariant in sides.items():
        _, one = run(invariant, 1)
        seconds, many = run(invariant, args.threads)  # also the warm-up of this side
        same = all(np.array_equal(a, b) for a, b in zip(one, many, strict=True))
        print(f"{name}: identical pixels with 1 and {args.threads} threads: {same}")
    wall: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(args.repeats):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for name in order:
            wall[name].append(run(sides[name], args.threads)[0])
        print(f"repeat {r + 1}: " + ", ".join(f"{name} {wall[name][-1]:.2f} s" for name in sides))
    fastest = min(wall["invariant"]) / min(wall["oneDNN"])
    median = statistics.median(a / b for a, b in zip(wall["invariant"], wall["oneDNN"], strict=True))
    print(f"invariant / oneDNN wall time: {fastest:.3f} fastest runs, {median:.3f} median of repeats "
          f"(goal <= {GOAL:.2f}: {'met' if median <= GOAL else 'missed'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
