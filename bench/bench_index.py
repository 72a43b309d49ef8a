"""Training index benchmarks (issue 5). Prints figures; asserts nothing about time.

1. Ingest: ``build_index`` over N JPEG files vs a plain single-process PIL decode-and-resize loop over the same
   files (goal: at least 0.8x the loop's rate).
2. Query: 4 nearest with exact re-rank for 16 queries over a synthetic 100k-image index (goal: at most 1 s), vs
   numpy brute force on the same compact features, and vs exact l2 over every image (the ground truth).
3. Memory: bytes per 100k images of features + FAISS + database (+ stored pixels, listed apart).

The 100k index is written through the index's own store from synthetic canonical images (smooth colour fields),
not from 100k image files. Usage::

    python bench/bench_index.py [--n 100000] [--ingest-n 2000] [--size 32] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from inspector.training_index import TrainingIndex, build_index, store
from inspector.training_index.features import FEATURE_GRID, compact_features, feature_definition
from inspector.training_index.ingest import finish_index
from inspector.training_index.search import _distances_many
from inspector.training_index.store import IndexStore, ItemRow, SourceRow


def smooth_images(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """n smooth random colour fields (bilinear from 4 x 4 grids) with a little grain: N x S x S x 3 uint8."""
    grids = rng.random((n, 4, 4, 3))
    t = np.linspace(0, 3, size)
    lo = np.minimum(np.floor(t).astype(int), 2)
    frac = t - lo
    a = np.zeros((size, 4))
    a[np.arange(size), lo] = 1 - frac
    a[np.arange(size), lo + 1] = frac
    images = np.einsum("is,nstc,jt->nijc", a, grids, a, optimize=True)
    images += rng.normal(0, 0.02, images.shape)
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)


def bench_ingest(root: Path, n: int, workers: int | None) -> None:
    src = root / "ingest"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        base = smooth_images(rng, 1, 64)[0]
        im = Image.fromarray(base).resize((640, 480), Image.Resampling.BILINEAR)
        im.save(src / f"{i:05d}.jpg", quality=90)
    files = sorted(src.iterdir())
    total_mb = sum(f.stat().st_size for f in files) / 1e6

    def plain_loop() -> float:
        t = time.perf_counter()
        for f in files:
            with Image.open(f) as im:
                im.convert("RGB").resize((256, 256), Image.Resampling.BICUBIC)
        return time.perf_counter() - t

    plain_loop()  # warm the page cache for both contenders
    loop_s = plain_loop()
    t = time.perf_counter()
    build_index(src, root / "ingest-index", workers=workers)  # default comparison size 256, pixels not stored
    build_s = time.perf_counter() - t
    print(f"1. ingest of {n} JPEGs 640x480 ({total_mb:.0f} MB), comparison size 256, workers "
          f"{workers or os.cpu_count()} (CPU cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f})")
    print(f"   plain PIL decode + resize loop: {n / loop_s:8.0f} images/s")
    print(f"   build_index (hash, decode, canonical, feature, thumbnail, SQLite, FAISS): {n / build_s:8.0f} images/s")
    print(f"   ratio build / plain loop: {loop_s / build_s:.2f}x (goal >= 0.8x)")


def write_synthetic_index(folder: Path, n: int, size: int) -> np.ndarray:
    """An index of n synthetic images written through the store; returns 16 of its images (uint8)."""
    folder.mkdir()
    manifest = store.new_manifest(Path("synthetic"), size, feature_definition(FEATURE_GRID), True, None)
    manifest["decode"] = {"need_side": size}
    st = IndexStore(folder, manifest)
    rng = np.random.default_rng(1)
    keep = None
    chunk = 5000
    for start in range(0, n, chunk):
        count = min(chunk, n - start)
        images = smooth_images(rng, count, size)
        if keep is None:
            keep = images[:16].copy()
        features = compact_features(images).astype("<f2")
        ids = range(start + 1, start + count + 1)
        items = [ItemRow(i, f"{i:064x}", f"synthetic/{i}.png", f"synthetic image {i}", size, size, "PNG", None,
                         None, f"thumbs/{i}.jpg") for i in ids]
        sources = [SourceRow(i, f"synthetic/{i}.png", f"synthetic/{i}.png", None, None, None, 0, "", None, None)
                   for i in ids]
        st.commit_chunk(items, sources, [], {"features": features.tobytes(), "pixels": images.tobytes()})
    finish_index(st, manifest)
    st.close()
    return keep


def rss_mb() -> dict[str, float]:
    """Resident memory of this process in MB: anonymous (heap) and file-backed (memory-mapped files)."""
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f if line.startswith("Rss"))
    return {key: int(value.split()[0]) / 1024 for key, value in fields.items()}


def bench_query(root: Path, n: int, size: int) -> None:
    t = time.perf_counter()
    originals = write_synthetic_index(root / "big", n, size)
    print(f"\n2. query: synthetic index of {n} images at {size} px written in {time.perf_counter() - t:.1f} s")
    rng = np.random.default_rng(2)
    queries = np.clip(originals.astype(np.float64) / 255 + rng.normal(0, 0.03, originals.shape), 0, 1)
    queries = (queries * 255).round().astype(np.uint8)

    rss_before = rss_mb()
    t = time.perf_counter()
    index = TrainingIndex.open(root / "big")
    open_s = time.perf_counter() - t
    index.query(queries[:1], k=4)  # first touch of the memory maps
    t = time.perf_counter()
    results = index.query(list(queries), k=4)
    query_s = time.perf_counter() - t
    rss_after = rss_mb()
    print(f"   open: {open_s * 1000:.0f} ms; 16 queries, 4 nearest with exact re-rank (FAISS + l2/tiled/SSIM/"
          f"calibrated): {query_s:.3f} s (goal <= 1 s)")

    features = np.asarray(np.memmap(root / "big" / store.FEATURES, dtype="<f2", mode="r"), dtype=np.float32)
    features = features.reshape(n, -1)
    qf = compact_features(queries)
    t = time.perf_counter()
    d = (qf ** 2).sum(1)[:, None] - 2 * qf @ features.T + (features ** 2).sum(1)[None, :]
    brute_ids = np.argsort(d, axis=1)[:, :4] + 1
    brute_s = time.perf_counter() - t
    print(f"   numpy brute force on the same features (top 4, no re-rank): {brute_s:.3f} s")

    pixels = np.memmap(root / "big" / store.PIXELS, dtype=np.uint8, mode="r", shape=(n, size, size, 3))
    t = time.perf_counter()
    exact = [np.argsort(_distances_many(q, pixels)[0])[:4] + 1 for q in queries]
    exact_s = time.perf_counter() - t
    # The index orders by tiled l2 by default; the ground truth here is the exact l2, so compare with its l2 order.
    by_l2 = index.query(list(queries), k=4, rank_by="l2")
    agree = np.mean([len({nb.item_id for nb in r} & set(e.tolist())) / 4 for r, e in zip(by_l2, exact, strict=True)])
    found = np.mean([r[0].item_id == i + 1 for i, r in enumerate(results)])
    feature_agree = np.mean([len(set(b.tolist()) & set(e.tolist())) / 4 for b, e in zip(brute_ids, exact, strict=True)])
    print(f"   exact l2 over all {n} images (ground truth): {exact_s:.2f} s")
    print(f"   index top 4 = exact top 4: {agree * 100:.0f}%; feature-only brute force top 4 = exact top 4: "
          f"{feature_agree * 100:.0f}%; source ranked first: {found * 100:.0f}%")
    index.close()

    sizes = {name: (root / "big" / name).stat().st_size for name in
             (store.FEATURES, store.FEATURES_FAISS, store.DATABASE, store.PIXELS)}
    per = 100_000 / n
    core = sizes[store.FEATURES] + sizes[store.FEATURES_FAISS] + sizes[store.DATABASE]
    print(f"\n3. memory per 100k images: {core * per / 1e6:.0f} MB on disk (features {sizes[store.FEATURES] * per / 1e6:.0f}"
          f" + FAISS {sizes[store.FEATURES_FAISS] * per / 1e6:.0f} + database {sizes[store.DATABASE] * per / 1e6:.0f} MB)"
          f"; stored pixels at {size} px: {sizes[store.PIXELS] * per / 1e6:.0f} MB more")
    anon = rss_after["RssAnon"] - rss_before["RssAnon"]
    mapped = rss_after["RssFile"] - rss_before["RssFile"]
    print(f"   resident memory added by opening the index and querying it: {anon:.0f} MB heap (the FAISS index) + "
          f"{mapped:.0f} MB of memory-mapped pixel rows (page cache) for {n} images; peak RSS of this process "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="images in the synthetic query index")
    parser.add_argument("--ingest-n", type=int, default=2000, help="JPEG files for the ingest benchmark")
    parser.add_argument("--size", type=int, default=32, help="comparison size of the synthetic index")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes for the ingest benchmark")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-index-"))
    try:
        if args.ingest_n > 0:
            bench_ingest(root, args.ingest_n, args.workers)
        if args.n > 0:
            bench_query(root, args.n, args.size)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
