"""Training sets of millions (issue 20): the flat and the compressed feature index side by side, in one run.

What is measured, on this machine:

1. Build. A synthetic index of N tiny images is written through the index's own store (``IndexStore``: row files
   and SQLite, exactly as a build commits its chunks) and finished by the index's own ``finish_index``: duplicate
   counts, caption tables, content hash, and the feature index, once compressed (trained, encoded, calibrated)
   and once flat, over the same rows. The images are synthetic, not decoded from files: 32 x 32 "cloud" images
   (sums of bilinear noise octaves, amplitude falling 0.55x per octave: roughly the 1/f spectrum of natural
   images, with correlated colour channels), 5% of them near copies of others (a second image of the same thing:
   the distractors a near copy must be told apart from). Decoding real files is measured apart, on a small set
   of 640 x 480 JPEGs through ``build_index`` (files/s on this machine's cores), because at scale it is the
   build's bottleneck and it does not depend on the index size.
2. Disk: each file of the index folder.
3. Queries, each index in a fresh process: 16 near copies (JPEG 75, crop, shift, noise, colour: perturb.py) of
   training images, four nearest with the exact re-rank (l2, tiled l2, SSIM, calibrated l2 on the stored
   pixels), cold (first call) and warm (median of 3); peak resident memory (``ru_maxrss``) and what of it is
   anonymous and what file-backed (memory maps); recall: the source among the four nearest for ``--recall``
   further near copies, and whether the compressed index's four nearest are the flat index's.

The run is resumable (``--root`` keeps its folder: the rows written are kept, each finished phase is recorded in
``bench_state.json``), so a long run that was stopped continues. Usage::

    nohup python bench/bench_index_scale.py --n 1000000 --root /tmp/scale-bench > scale.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

# FAISS's OpenMP threads spin while they wait for each other; on a shared machine that wastes the other
# processes' CPU. Set before FAISS is loaded.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from inspector.training_index import TrainingIndex, build_index, store  # noqa: E402
from inspector.training_index.features import FEATURE_GRID, compact_features, feature_definition  # noqa: E402
from inspector.training_index.ingest import finish_index  # noqa: E402
from inspector.training_index.perturb import near_copies  # noqa: E402
from inspector.training_index.store import IndexStore, ItemRow, SourceRow  # noqa: E402

CHUNK = 10_000
NEAR_COPY_SHARE = 0.05
STATE = "bench_state.json"


# --- synthetic training images ------------------------------------------------------------------------------------

def _upsampler(g: int, size: int) -> np.ndarray:
    """size x g bilinear interpolation weights."""
    t = np.linspace(0, g - 1, size)
    lo = np.minimum(np.floor(t).astype(int), max(g - 2, 0))
    frac = t - lo
    a = np.zeros((size, g), dtype=np.float32)
    a[np.arange(size), lo] = 1 - frac
    if g > 1:
        a[np.arange(size), lo + 1] = frac
    return a


@lru_cache(maxsize=4)
def _octaves(size: int) -> tuple[np.ndarray, list[int]]:
    """One matrix mapping the coarse noise grids of every octave below ``size`` (2 x 2, 4 x 4, ...) to the
    bilinearly upsampled, amplitude-weighted sum at size x size: sum of g*g rows by size*size columns."""
    blocks, sides = [], []
    amp, g = 1.0, 2
    while g < size:
        a = _upsampler(g, size)
        blocks.append(amp * np.kron(a, a).T)  # (g*g, size*size): grid cell -> pixel weights
        sides.append(g)
        amp, g = amp * 0.55, g * 2
    return np.concatenate(blocks).astype(np.float32), sides


def cloud_images(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """n synthetic images: noise octaves (2, 4, ... size cells a side, amplitude x 0.55 per octave), channels
    mixed by a random colour matrix, random contrast and mean colour. N x size x size x 3 uint8."""
    matrix, sides = _octaves(size)
    grids = rng.standard_normal((n * 3, matrix.shape[0]), dtype=np.float32)
    field = grids @ matrix  # every octave below the finest, upsampled and summed: one matrix product
    field += (0.55 ** len(sides)) * rng.standard_normal(field.shape, dtype=np.float32)  # the finest octave
    field = field.reshape(n, 3, size * size)
    mix = rng.normal(0, 0.3, (n, 3, 3)).astype(np.float32) + np.eye(3, dtype=np.float32)
    field = np.matmul(mix, field)
    field *= (rng.uniform(0.08, 0.25, (n, 1, 1)) / (field.std(axis=(1, 2), keepdims=True) + 1e-6)).astype(np.float32)
    field += rng.uniform(0.2, 0.8, (n, 3, 1)).astype(np.float32)
    out = (np.clip(field, 0, 1) * 255).round().astype(np.uint8)
    return np.ascontiguousarray(out.reshape(n, 3, size, size).transpose(0, 2, 3, 1))


def chunk_images(chunk: int, size: int) -> np.ndarray:
    """The images of one chunk (deterministic per chunk, so an interrupted run writes the same rows again)."""
    rng = np.random.default_rng([20, chunk])
    images = cloud_images(rng, CHUNK, size)
    twins = rng.choice(CHUNK, int(CHUNK * NEAR_COPY_SHARE), replace=False)
    originals = rng.integers(0, CHUNK, len(twins))
    copies, _ = near_copies(images[originals], rng)
    images[twins] = copies
    return images


# --- phase 1: rows through the store ------------------------------------------------------------------------------

def write_rows(folder: Path, n: int, size: int) -> dict:
    """Write (or continue writing) n synthetic images through the store; returns timings."""
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / store.MANIFEST).is_file():
        manifest = store.read_manifest(folder)
    else:
        manifest = store.new_manifest(Path("synthetic-clouds"), size, feature_definition(FEATURE_GRID), True, None,
                                      compression={"compressed_above": 0, "chosen_by": "bench"})
        manifest["decode"] = {"need_side": size}
        store.write_json_atomic(folder / store.MANIFEST, manifest)
    st = IndexStore(folder, manifest)
    st.repair()
    done = st.item_count()
    gen_s = store_s = 0.0
    cpu0 = time.process_time()
    for chunk in range(done // CHUNK, (n + CHUNK - 1) // CHUNK):
        t = time.perf_counter()
        images = chunk_images(chunk, size)[: n - chunk * CHUNK]
        features = compact_features(images, FEATURE_GRID).astype("<f2")
        gen_s += time.perf_counter() - t
        t = time.perf_counter()
        first = chunk * CHUNK + 1
        ids = range(first, first + len(images))
        items = [ItemRow(i, f"{i:064x}", f"clouds/{i:07d}.png", f"synthetic cloud image {i}", size, size, "PNG", None,
                         f"https://example.org/clouds/{i}.png", f"thumbs/{i}.jpg", "the file name") for i in ids]
        sources = [SourceRow(i, f"clouds/{i:07d}.png", f"clouds/{i:07d}.png", None, None, None, 0,
                             f"synthetic cloud image {i}", None, f"https://example.org/clouds/{i}.png",
                             "the file name") for i in ids]
        st.commit_chunk(items, sources, [], {"features": features.tobytes(), "pixels": images.tobytes()})
        store_s += time.perf_counter() - t
        if chunk % 10 == 0:
            print(f"  rows: {first + len(images) - 1:,} of {n:,}", flush=True)
    st.close()
    return {"images_written_now": n - done, "generate_s": round(gen_s, 1), "store_s": round(store_s, 1),
            "cpu_s": round(time.process_time() - cpu0, 1)}


def finish(folder: Path) -> dict:
    """finish_index with the compressed feature index (threshold 0): duplicates, captions, hash, FAISS."""
    manifest = store.read_manifest(folder)
    manifest["compression"] = {"compressed_above": 0, "chosen_by": "bench: --compressed-above 0"}
    st = IndexStore(folder, manifest)
    t, cpu0 = time.perf_counter(), time.process_time()
    finish_index(st, manifest)
    st.close()
    record = manifest["faiss"]
    return {"finish_s": round(time.perf_counter() - t, 1), "cpu_s": round(time.process_time() - cpu0, 1),
            "train_s": record["training"]["seconds"], "encode_s": record["encode_seconds"],
            "calibration": {k: v for k, v in record["calibration"].items() if k != "definition"},
            "factory": record["factory"], "nprobe": record["nprobe"], "pool": record["pool"]}


def flat_sibling(folder: Path, flat: Path) -> dict:
    """The same rows with a flat feature index: the big files hard-linked, features.faiss built flat."""
    from inspector.training_index import vectors

    flat.mkdir(exist_ok=True)
    for name in (store.DATABASE, store.FEATURES, store.PIXELS):
        if not (flat / name).exists():
            os.link(folder / name, flat / name)
    manifest = store.read_manifest(folder)
    n = manifest["counts"]["unique_images"]
    rows = np.memmap(folder / store.FEATURES, dtype="<f2", mode="r", shape=(n, manifest["feature"]["dim"]))
    t, cpu0 = time.perf_counter(), time.process_time()
    index, description = vectors.build(rows, "l2", exact=True)
    vectors.write(index, flat / store.FEATURES_FAISS)
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu0
    manifest["faiss"] = {**description, "file": store.FEATURES_FAISS}
    manifest["compression"] = {"compressed_above": 10**12, "chosen_by": "bench: flat"}
    manifest["format_version"] = store.format_version(manifest)
    store.write_json_atomic(flat / store.MANIFEST, manifest)
    return {"build_s": round(seconds, 1), "cpu_s": round(cpu, 1)}


def ingest_rate(root: Path, n: int) -> dict:
    """build_index over n 640 x 480 JPEGs at comparison size 256 (pixels not stored): files/s on this machine."""
    from PIL import Image

    src = root / "jpegs"
    if not src.is_dir():
        src.mkdir()
        rng = np.random.default_rng(3)
        for i in range(n):
            im = Image.fromarray(cloud_images(rng, 1, 64)[0]).resize((640, 480), Image.Resampling.BICUBIC)
            im.save(src / f"{i:05d}.jpg", quality=90)
    shutil.rmtree(root / "jpeg-index", ignore_errors=True)
    t = time.perf_counter()
    report = build_index(src, root / "jpeg-index")
    seconds = time.perf_counter() - t
    return {"files": n, "seconds": round(seconds, 1), "files_per_s": round(n / seconds, 1),
            "cores": os.cpu_count(), "load_average": round(os.getloadavg()[0], 1),
            "bytes_per_image_on_disk": round(_disk(root / "jpeg-index")["total"] / report.unique_images)}


def reread_cost(root: Path) -> dict:
    """16 near copies queried against the JPEG index (256 px, pixels not stored): every candidate is decoded again
    from its file for the exact comparison. Cold (each candidate decoded once) and warm (the decoded cache)."""
    from PIL import Image

    files = sorted((root / "jpegs").iterdir())
    rng = np.random.default_rng(5)
    picks = rng.choice(len(files), 16, replace=False)
    originals = np.stack([np.asarray(Image.open(files[i]).convert("RGB").resize((256, 256))) for i in picks])
    queries, _ = near_copies(originals, rng)
    with TrainingIndex.open(root / "jpeg-index") as index:
        t, cpu = time.perf_counter(), time.process_time()
        index.query(list(queries), k=4)
        cold, cold_cpu = time.perf_counter() - t, time.process_time() - cpu
        t, cpu = time.perf_counter(), time.process_time()
        index.query(list(queries), k=4)
        warm, warm_cpu = time.perf_counter() - t, time.process_time() - cpu
        candidates = sum(len(c.ids) for c in index.candidates(list(queries), k=4))
    return {"queries": 16, "candidates_compared": candidates, "cold_s": round(cold, 2), "cold_cpu_s": round(cold_cpu, 2),
            "warm_s": round(warm, 3), "warm_cpu_s": round(warm_cpu, 3),
            "decode_ms_per_candidate": round(1000 * cold_cpu / max(1, candidates), 2)}


def _disk(folder: Path) -> dict:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            key = "thumbnails" if "thumbs" in p.parts else p.name
            out[key] = out.get(key, 0) + p.stat().st_size
    out["total"] = sum(out.values())
    return out


# --- phase 3: queries, in a fresh process per index --------------------------------------------------------------

def query_sets(folder: Path, n_recall: int) -> Path:
    """16 timing queries and n_recall recall queries: near copies of training images, with their source ids."""
    path = folder.parent / "queries.npz"
    if path.is_file():
        return path
    manifest = store.read_manifest(folder)
    n, size = manifest["counts"]["unique_images"], manifest["comparison_size"]
    rng = np.random.default_rng(99)
    ids = rng.choice(n, 16 + n_recall, replace=False)
    pixels = np.memmap(folder / store.PIXELS, dtype=np.uint8, mode="r", shape=(n, size, size, 3))
    originals = np.stack([np.array(pixels[i]) for i in ids])
    copies, kinds = near_copies(originals, rng)
    np.savez(path, queries=copies, sources=ids + 1, kinds=np.asarray(kinds))
    return path


def rss() -> dict:
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f if line.startswith(("Rss", "VmHWM", "VmRSS")))
    return {k: round(int(v.split()[0]) / 1024, 1) for k, v in fields.items()}


def run_queries(folder: Path, queries_path: Path, out: Path) -> None:
    """(In its own process.) Time 16 queries cold and warm, measure memory and recall; write JSON to ``out``."""
    data = np.load(queries_path)
    queries, sources = data["queries"], data["sources"]
    before = rss()
    t = time.perf_counter()
    index = TrainingIndex.open(folder)
    open_s = time.perf_counter() - t
    timing = list(queries[:16])
    t, cpu = time.perf_counter(), time.process_time()
    index.query(timing, k=4)
    cold, cold_cpu = time.perf_counter() - t, time.process_time() - cpu
    warm, warm_cpu = [], []
    for _ in range(3):
        t, cpu = time.perf_counter(), time.process_time()
        index.query(timing, k=4)
        warm.append(time.perf_counter() - t)
        warm_cpu.append(time.process_time() - cpu)
    after_timing = rss()
    answers = []
    t = time.perf_counter()
    for start in range(16, len(queries), 16):
        answers.extend([[n.item_id for n in found] for found in index.query(list(queries[start:start + 16]), k=4)])
    recall_s = time.perf_counter() - t
    found = [int(s) in a for s, a in zip(sources[16:], answers, strict=True)]
    t = time.perf_counter()
    index.candidates(timing[:1], k=4, prompts="synthetic cloud image 123")
    caption_s = time.perf_counter() - t
    index.close()
    result = {
        "open_s": round(open_s, 3), "queries_16_cold_s": round(cold, 3), "queries_16_warm_s": round(
            statistics.median(warm), 3), "queries_16_cold_cpu_s": round(cold_cpu, 3),
        "queries_16_warm_cpu_s": round(statistics.median(warm_cpu), 3),
        "recall": round(float(np.mean(found)), 4), "recall_queries": len(found),
        "recall_s": round(recall_s, 1), "caption_candidates_s": round(caption_s, 4), "answers": answers,
        "rss_mb_before_open": before, "rss_mb_after_16": after_timing, "rss_mb_end": rss(),
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
        "peak_rss_mb": rss().get("VmHWM"),
    }
    out.write_text(json.dumps(result), encoding="utf-8")


def measure(folder: Path, queries_path: Path, out: Path) -> dict:
    subprocess.run([sys.executable, __file__, "--query-only", str(folder), "--queries", str(queries_path),
                    "--result", str(out)], check=True)
    return json.loads(out.read_text(encoding="utf-8"))


# --- the run ------------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="synthetic images (default 1,000,000)")
    parser.add_argument("--size", type=int, default=32, help="side of the stored canonical pixels (default 32)")
    parser.add_argument("--root", type=Path, default=None, help="working folder, kept to resume (default: temp)")
    parser.add_argument("--recall", type=int, default=496, help="recall queries (default 496)")
    parser.add_argument("--ingest-n", type=int, default=600, help="JPEGs for the decoding rate (default 600)")
    parser.add_argument("--no-flat", action="store_true", help="skip the flat index (when it would not fit)")
    parser.add_argument("--query-only", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--queries", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.query_only:
        run_queries(args.query_only, args.queries, args.result)
        return
    root = args.root or Path(os.environ.get("TMPDIR", "/tmp")) / f"index-scale-{args.n}"
    root.mkdir(parents=True, exist_ok=True)
    state_path = root / STATE
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else {}

    def phase(name: str, fn, *a):
        if name not in state:
            print(f"{name}...", flush=True)
            state[name] = fn(*a)
            state_path.write_text(json.dumps(state, indent=1), encoding="utf-8")
        return state[name]

    index_dir, flat_dir = root / "compressed", root / "flat"
    t0 = time.perf_counter()
    phase("rows", write_rows, index_dir, args.n, args.size)
    phase("finish_compressed", finish, index_dir)
    if not args.no_flat:
        phase("flat", flat_sibling, index_dir, flat_dir)
    phase("ingest", ingest_rate, root, args.ingest_n)
    phase("reread", reread_cost, root)
    queries = query_sets(index_dir, args.recall)
    results = {"compressed": phase("query_compressed", measure, index_dir, queries, root / "q-compressed.json")}
    if not args.no_flat:
        results["flat"] = phase("query_flat", measure, flat_dir, queries, root / "q-flat.json")
    state["disk_compressed"] = _disk(index_dir)
    state_path.write_text(json.dumps(state, indent=1), encoding="utf-8")
    report(args, state, results, time.perf_counter() - t0)


def report(args: argparse.Namespace, state: dict, results: dict, seconds: float) -> None:
    n = args.n
    rows, fin, disk = state["rows"], state["finish_compressed"], state["disk_compressed"]
    cal = fin["calibration"]
    print(f"\nIndex of {n:,} synthetic {args.size} px cloud images (5% near copies of others), pixels stored; "
          f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"build: rows written at {n / max(1e-9, rows['generate_s'] + rows['store_s']):,.0f} images/s "
          f"(synthesis {rows['generate_s']} s + store {rows['store_s']} s); finish {fin['finish_s']} s, of it "
          f"compressed training {fin['train_s']} s, encoding {fin['encode_s']} s, calibration {cal['seconds']} s")
    if "flat" in state:
        print(f"       flat FAISS index over the same rows: {state['flat']['build_s']} s")
    ing = state["ingest"]
    print(f"decoding real files: {ing['files']} JPEGs 640x480 through build_index at {ing['files_per_s']} files/s "
          f"({ing['cores']} cores, load {ing['load_average']}), {ing['bytes_per_image_on_disk']:,} bytes/image on "
          "disk at 256 px (thumbnail included, pixels not stored)")
    rr = state["reread"]
    print(f"the same JPEGs at 256 px, pixels not stored: 16 near copies with their {rr['candidates_compared']} "
          f"candidates decoded again from the files {rr['cold_s']} s ({rr['cold_cpu_s']} s CPU, "
          f"{rr['decode_ms_per_candidate']} ms CPU a candidate), {rr['warm_s']} s once they are cached")
    print(f"compressed index {fin['factory']}: nprobe {fin['nprobe']}, pool {fin['pool']} (measured "
          f"{cal['measured']}), calibration recall {cal['recall']} of sources, {cal['candidate_recall']} of the flat "
          f"index's candidates")
    mb = {k: round(v / 1e6, 1) for k, v in disk.items()}
    print(f"disk (MB): {mb}")
    flat_answers = results.get("flat", {}).get("answers")
    header = f"{'':24}{'compressed':>14}{'flat':>14}"
    print("\n" + header)
    for key, label in (("queries_16_cold_s", "16 queries, cold (s)"), ("queries_16_warm_s", "16 queries, warm (s)"),
                       ("queries_16_cold_cpu_s", "  CPU time, cold (s)"), ("queries_16_warm_cpu_s",
                                                                            "  CPU time, warm (s)"),
                       ("recall", "recall of the source"), ("peak_rss_mb", "peak RSS (MB)"),
                       ("open_s", "open (s)"), ("caption_candidates_s", "caption match (s)")):
        row = f"{label:24}" + "".join(f"{results[k][key]!s:>14}" if k in results else f"{'-':>14}"
                                      for k in ("compressed", "flat"))
        print(row)
    for k in results:
        end = results[k]["rss_mb_end"]
        print(f"{k}: resident at the end {end.get('VmRSS', '?')} MB (anonymous {end.get('RssAnon')}, file-backed "
              f"{end.get('RssFile')})")
    if flat_answers:
        same = np.mean([a == b for a, b in zip(results["compressed"]["answers"], flat_answers, strict=True)])
        print(f"compressed four nearest = flat four nearest: {same * 100:.1f}% of "
              f"{len(flat_answers)} near-copy queries")
    print(f"whole run {seconds / 60:.1f} min (this call)")


if __name__ == "__main__":
    main()
