"""Carlini et al.'s clique filter on 500 generations: pairwise tiled l2, then the largest clique.

Prints the time of each part and the clique time as a ratio of the 1 s goal (issue: extraction scan). A naive
pairwise loop over metrics.tiled_l2 on a sample of pairs is timed side by side for scale.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from inspector import metrics
from inspector.extraction import largest_clique, pairwise_tiled_l2


def generations(n: int, size: int, copies: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    base = out[0].astype(np.int16)
    for k in range(1, copies):  # a memorized group: near-identical copies of one image
        out[k] = np.clip(base + rng.integers(-5, 6, base.shape), 0, 255).astype(np.uint8)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 256])
    args = ap.parse_args()
    for size in args.sizes:
        ims = generations(args.n, size, copies=12)
        t0 = time.perf_counter()
        d = pairwise_tiled_l2(ims)
        t_pair = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = largest_clique(d)
        t_clique = time.perf_counter() - t0
        pairs = 200
        t0 = time.perf_counter()
        for k in range(pairs):
            metrics.tiled_l2(ims[k % args.n], ims[(k * 7 + 1) % args.n])
        t_naive = (time.perf_counter() - t0) / pairs * args.n * (args.n - 1) / 2
        print(f"{args.n} generations at {size} px: pairwise tiled l2 {t_pair:.2f} s "
              f"(a loop over metrics.tiled_l2 would take ~{t_naive:.0f} s: {t_naive / t_pair:.0f}x), "
              f"largest clique {t_clique * 1000:.0f} ms = {t_clique:.3f}x the 1 s goal "
              f"(clique size {result.size}, flagged {result.flagged})")


if __name__ == "__main__":
    main()
