"""Casebook speed: recording findings one transaction each, and filter plus full-text search over many.

Goal (issue 6): a label filter plus a full-text search over 100k findings answers in at most 200 ms.
Prints measured figures and their ratio to the goal; asserts nothing about time.

    python bench/bench_casebook.py               # 10k recorded one by one, searches over 100k
    python bench/bench_casebook.py --n 1000 --search-n 10000   # a quick run
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inspector.casebook import Casebook  # noqa: E402
from inspector.findings import LABELS, Finding, Neighbour  # noqa: E402

GOAL_S = 0.200
WORDS = ("castle lighthouse portrait river forest city harbour mountain bridge tower garden street market"
         " painting photo drawing sketch oil watercolour night dawn dusk winter summer red blue golden old"
         " young woman man child dog cat horse ship train").split()


def _pngs(count: int, side: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def _finding(rng: random.Random, images: list[bytes], i: int) -> Finding:
    prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9)))
    neighbours = [
        Neighbour(rank=r + 1, item_id=rng.randrange(10**6), source=f"shard-{rng.randrange(100)}/{i}-{r}.jpg",
                  caption=" ".join(rng.choice(WORDS) for _ in range(6)), duplicate_count=rng.randint(1, 3),
                  l2=rng.random() * 0.5, tiled_l2=rng.random() * 0.6, ssim=rng.random(),
                  calibrated_l2=rng.random() * 2, thumbnail_png=images[(i + r + 1) % len(images)])
        for r in range(4)
    ]
    return Finding(prompt=prompt, seed=i, image_png=images[i % len(images)],
                   provenance={"model": {"id": f"model-{i % 3}", "sha256": f"{i % 3:x}" * 64}, "steps": 25},
                   neighbours=neighbours, suggested_verdict=rng.choice(("memorized", "likeness?", "novel")),
                   label=rng.choice((*LABELS, "unlabeled", "unlabeled")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="findings recorded one transaction each (10000)")
    parser.add_argument("--search-n", type=int, default=100_000, help="findings searched over (100000)")
    parser.add_argument("--side", type=int, default=16, help="side of the test images in pixels (16)")
    parser.add_argument("--repeat", type=int, default=20, help="repetitions of each query (20)")
    args = parser.parse_args(argv)
    rng = random.Random(0)
    images = _pngs(64, args.side)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        with Casebook.open(path) as book:
            findings = [_finding(rng, images, i) for i in range(args.n)]
            start = time.perf_counter()
            for f in findings:
                book.record(f)
            elapsed = time.perf_counter() - start
            print(f"record {args.n} findings, one transaction each (fsync, WAL): {elapsed:.2f} s,"
                  f" {elapsed / args.n * 1000:.2f} ms per finding, {args.n / elapsed:.0f} findings/s")

            remaining = max(0, args.search_n - args.n)
            start = time.perf_counter()
            batch = 1000
            for first in range(args.n, args.n + remaining, batch):
                book.record_many([_finding(rng, images, i) for i in range(first, min(first + batch, args.n + remaining))])
            if remaining:
                elapsed = time.perf_counter() - start
                print(f"fill to {args.search_n} findings with record_many (batches of {batch}): {elapsed:.1f} s,"
                      f" {remaining / elapsed:.0f} findings/s (includes building the findings)")
            print(f"casebook file: {path.stat().st_size / 1e6:.1f} MB for {len(book)} findings")

            queries = [
                ("label filter + text search, first page of 50",
                 lambda: book.findings(label="memorized", text="castle night", limit=50)),
                ("label filter + text search, count", lambda: book.count(label="memorized", text="castle night")),
                ("label + model filter + text search, all matches",
                 lambda: book.findings(label="memorized", model="model-1", text="castle night")),
                ("common word search, first page of 50", lambda: book.findings(text="photo", limit=50)),
                ("prefix search while typing, first page of 50", lambda: book.findings(text="ligh", limit=50)),
                ("counts per label", book.counts),
            ]
            for name, query in queries:
                query()  # warm the page cache, as a second keystroke would
                times = []
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    result = query()
                    times.append(time.perf_counter() - start)
                size = result if isinstance(result, int) else len(result)
                median, worst = statistics.median(times), max(times)
                print(f"{name} over {len(book)}: median {median * 1000:.1f} ms, worst {worst * 1000:.1f} ms"
                      f" ({size} results); ratio to the 200 ms goal {median / GOAL_S:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
