"""A compressed feature index for training sets that outgrow memory, and how large its candidate pool must be.

The flat index keeps every 768-value feature in float16: 1.5 KB per image, 1.5 GB per million. Past a size the
user sets (``--compressed-above N``; by default when the flat index would take more than a quarter of this
machine's RAM), the build makes a compressed FAISS index instead, chosen with FAISS's index factory:

    PCAR64,IVF{nlist},PQ32       (PQ32x6 or PQ32x4 for small sample sizes)

a PCA rotation to 64 dimensions (block-mean features of natural images are smooth: 64 principal components hold
almost all of their variance), an inverted file of nlist = sqrt(N) lists, and 32-byte product-quantizer codes. It
is trained on a seeded sample of the rows (``features.trained.faiss`` keeps the trained, empty index, so rows
added later are encoded without training again), and it is read memory-mapped: FAISS turns its inverted lists
into OnDiskInvertedLists over the file (``IO_FLAG_MMAP``), so a query touches only the lists it probes.

The guarantee that matters survives compression: a query takes a *pool* of candidates from the compressed index,
re-ranks the pool by the exact feature distance (rows read from ``features.f16`` on disk), and hands the same C
candidates the flat index would have handed on to the exact pixel comparison, whenever they are in the pool.
:func:`calibrate` measures how large the pool (and how many inverted lists probed, nprobe) must be: it perturbs
sampled training images into near copies (JPEG, crop, shift, noise, colour: :mod:`perturb`), queries the
compressed index with them and finds the smallest nprobe and pool that bring each copy's source into the pool at
least 99% of the time, then doubles both as a margin. The result is recorded in the manifest.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from inspector.training_index import vectors
from inspector.training_index.features import compact_features
from inspector.training_index.perturb import near_copies

#: The trained, empty compressed index (centroids, PCA and product quantizer): new rows are encoded with it.
TRAINED_FILE = "features.trained.faiss"
PCA_DIM = 64
PQ_BYTES = 32
#: The fewest images worth compressing (PCA and the quantizers need a sample to learn from).
MIN_IMAGES = 256
#: Rows the quantizers are trained on: 64 per inverted list, at least 20,000 and at most 200,000.
TRAIN_PER_LIST = 64
TRAIN_MIN = 20_000
TRAIN_MAX = 200_000
#: What "near copies are never lost" means, measured: the source of a perturbed copy is in the pool this often.
RECALL_TARGET = 0.99
#: Near copies queried when calibrating (fewer when the pixels must be decoded again from the source files), and
#: how many of them are also checked against the flat index's candidates (a brute-force scan each).
CALIBRATION_QUERIES = 500
CALIBRATION_QUERIES_DECODED = 200
TRUTH_QUERIES = 100
NPROBE_LADDER = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
POOL_MAX = 4096
#: The measured nprobe and pool are doubled: what was measured on a sample is not the whole index.
MARGIN = 2
#: Below this many rows FAISS works on one thread: its OpenMP threads spin while they wait for each other, and on
#: a busy machine that turned a 0.2 s training into 8 s (measured on two shared cores).
ONE_THREAD_BELOW = 50_000
#: Rows each product-quantizer centroid is trained on at most (FAISS's default is 256): 16,384 rows per
#: sub-quantizer are plenty for codes that only choose a pool re-ranked exactly, at a quarter of the time.
PQ_POINTS_PER_CENTROID = 64
_ADD_BATCH = 65_536


@contextmanager
def _threads(rows: int) -> Iterator[None]:
    """FAISS on one thread for small jobs (see :data:`ONE_THREAD_BELOW`), its own default otherwise."""
    faiss = _faiss()
    before = faiss.omp_get_max_threads()
    if rows < ONE_THREAD_BELOW:
        faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def ram_bytes() -> int:
    """This machine's physical memory in bytes (0 when the system does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 0


def default_threshold(dim: int) -> int:
    """Images above which the index is compressed by default: when the flat float16 index (``dim`` x 2 bytes per
    image) would take more than a quarter of RAM (24 GB: 3.9 million images of 768 values)."""
    ram = ram_bytes()
    return max(MIN_IMAGES, ram // 4 // (dim * 2)) if ram else 4_000_000


def threshold_setting(compressed_above: int | None, dim: int) -> dict[str, Any]:
    """The manifest's record of when the index is compressed: the threshold and who chose it."""
    if compressed_above is not None:
        return {"compressed_above": int(compressed_above), "chosen_by": "--compressed-above"}
    ram = ram_bytes()
    return {"compressed_above": default_threshold(dim),
            "chosen_by": f"default: the flat index would exceed a quarter of this machine's RAM "
                         f"({ram / 2**30:.0f} GiB) at {dim * 2} bytes per image"}


def wanted(count: int, compressed_above: int) -> bool:
    """Whether an index of ``count`` images is compressed under the threshold ``compressed_above``."""
    return count > compressed_above and count >= MIN_IMAGES


def factory_for(count: int, dim: int) -> tuple[str, int, int]:
    """The index factory string for ``count`` rows, the number of inverted lists and the training sample size."""
    nlist = int(max(4, min(65_536, round(np.sqrt(count)))))
    sample = int(min(count, max(TRAIN_MIN, min(TRAIN_MAX, TRAIN_PER_LIST * nlist))))
    nlist = max(1, min(nlist, sample // 8))
    # 256 centroids per sub-quantizer need thousands of training rows; a small index uses smaller codes.
    nbits = 8 if sample >= 256 * 16 else 6 if sample >= 64 * 8 else 4
    pca = min(PCA_DIM, dim)
    m = min(PQ_BYTES, pca)
    return f"PCAR{pca},IVF{nlist},PQ{m}x{nbits}", nlist, sample


def _faiss() -> Any:
    import faiss

    return faiss


def train(rows: np.ndarray, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """A trained, empty compressed index for ``rows`` (N x D float16, possibly a memory map) and its record."""
    faiss = _faiss()
    count, dim = rows.shape
    factory, nlist, sample = factory_for(count, dim)
    started = time.monotonic()
    index = faiss.index_factory(dim, factory, faiss.METRIC_L2)
    ivf = faiss.extract_index_ivf(index)
    # Small samples are fine for this use (a pool is re-ranked exactly); FAISS's warnings would only alarm.
    ivf.cp.min_points_per_centroid = 1
    ivfpq = faiss.downcast_index(ivf)
    # The factory turns on polysemous training (codes ordered for Hamming filtering, which a pool re-ranked
    # exactly never uses): it was 98% of the training time.
    ivfpq.do_polysemous_training = False
    pq = ivfpq.pq
    pq.cp.min_points_per_centroid = 1
    pq.cp.max_points_per_centroid = PQ_POINTS_PER_CENTROID
    chosen = np.sort(np.random.default_rng(seed).choice(count, size=sample, replace=False))
    with _threads(count):
        index.train(np.asarray(rows[chosen], dtype=np.float32))
    record = {
        "id": str(uuid.uuid4()),
        "factory": factory,
        "nlist": nlist,
        "code_bytes": int(faiss.downcast_index(ivf).pq.code_size),
        "sample": sample,
        "images_at_training": int(count),
        "seconds": round(time.monotonic() - started, 1),
    }
    return index, record


def add_rows(index: Any, rows: np.ndarray, start: int) -> None:
    """Encode rows[start:] into ``index`` (FAISS id = row), a batch at a time so memory stays bounded."""
    for first in range(start, rows.shape[0], _ADD_BATCH):
        index.add(np.ascontiguousarray(rows[first:first + _ADD_BATCH], dtype=np.float32))


def set_nprobe(index: Any, nprobe: int) -> None:
    """Inverted lists probed per query."""
    ivf = _faiss().extract_index_ivf(index)
    ivf.nprobe = int(max(1, min(int(nprobe), ivf.nlist)))


def build(folder: Path, rows: np.ndarray, previous: dict[str, Any] | None, retrain: bool) -> tuple[Any, dict]:
    """The compressed index over ``rows``, reusing what an earlier build of ``folder`` left.

    Without ``retrain``, the trained index of an earlier build is kept (``features.trained.faiss``) and only the
    rows the existing ``features.faiss`` lacks are encoded; with it (or when nothing usable is there), the
    quantizers are trained on a sample of ``rows`` first. ``previous`` is the manifest's FAISS record.
    Returns the index (in memory, to be written) and its record (without calibration).
    """
    faiss = _faiss()
    trained_path = folder / TRAINED_FILE
    features_path = folder / "features.faiss"
    training = (previous or {}).get("training") if (previous or {}).get("compressed") else None
    index = None
    trained_now = False
    if not retrain and training and trained_path.is_file():
        if features_path.is_file():
            # A compressed index file is self-contained (PCA, centroids, codebooks): one over no more rows than
            # there are now is extended with the rows it lacks (rows are append-only).
            existing = faiss.read_index(str(features_path))
            if existing.ntotal <= rows.shape[0] and existing.d == rows.shape[1] and existing.is_trained:
                index = existing
            else:
                del existing
        if index is None:
            index = faiss.read_index(str(trained_path))
    else:
        trained, training = train(rows)
        vectors.write(trained, trained_path)
        index = trained
        trained_now = True
    already = int(index.ntotal)
    started = time.monotonic()
    with _threads(rows.shape[0]):
        add_rows(index, rows, already)
    record = {
        "type": "IndexIVFPQ after a PCA (IndexPreTransform)", "compressed": True, "exact": False, "factory": training["factory"],
        "nlist": training["nlist"], "code_bytes": training["code_bytes"], "training": training,
        "trained_file": TRAINED_FILE, "trained_now": trained_now, "rows_encoded_now": int(rows.shape[0] - already),
        "encode_seconds": round(time.monotonic() - started, 1),
        "inverted_lists": "read memory-mapped (FAISS IO_FLAG_MMAP: OnDiskInvertedLists over features.faiss)",
        "refine": "the pool is re-ranked by the exact feature distance (features.f16 rows read from disk); "
                  "the nearest C of it go on to the exact pixel comparison",
    }
    return index, record


def calibrate(
    index: Any,
    rows: np.ndarray,
    pixels_of: Callable[[np.ndarray], list[np.ndarray | None]],
    grid: int,
    candidates: int,
    queries: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Measure the nprobe and pool that keep near copies (see the module docstring).

    Two recalls must reach :data:`RECALL_TARGET` at the chosen settings, before the margin: the share of near
    copies whose source is in the pool, and, for the first :data:`TRUTH_QUERIES` of them, the share of the flat
    index's C candidates (the C nearest by exact feature distance, found by a brute-force scan) that are in the
    pool, so that the exact pixel comparison sees what the flat index would have shown it.

    Parameters
    ----------
    index
        The compressed index over ``rows``.
    rows
        The float16 features (N x D), FAISS id = row.
    pixels_of
        Canonical pixels (S x S x 3 uint8 each) of the given 0-based rows, None where an image cannot be read.
    grid
        The feature grid (features.py).
    candidates
        C, the candidates handed on to the exact pixel comparison (the pool is never smaller).
    queries
        Near copies to make (one per sampled image; the perturbations are taken in turn).

    Returns
    -------
    dict
        ``nprobe`` and ``pool`` (with the margin), ``recall`` (sources) and ``candidate_recall`` measured at
        them, the smallest ``measured`` settings that met the target, the target, the numbers of queries and the
        perturbations, and ``target_met``.
    """
    count = rows.shape[0]
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(count, size=min(queries, count), replace=False))
    pixels = pixels_of(chosen)
    keep = [j for j, p in enumerate(pixels) if p is not None]
    sources = chosen[keep]
    images = np.stack([pixels[j] for j in keep]) if keep else np.zeros((0, 1, 1, 3), np.uint8)
    copies, used = near_copies(images, rng) if len(keep) else (images, [])
    feats = compact_features(copies, grid) if len(keep) else np.zeros((0, rows.shape[1]), np.float32)
    started = time.monotonic()
    nlist = _faiss().extract_index_ivf(index).nlist
    pool_max = int(min(count, max(POOL_MAX, candidates)))
    if not len(sources):
        # Nothing could be read to make near copies from (the source files are gone): no measurement, so the
        # widest settings, and the record says so.
        return {"nprobe": int(min(nlist, NPROBE_LADDER[-1])), "pool": pool_max, "recall": None,
                "candidate_recall": None, "target": RECALL_TARGET, "target_met": False, "queries": 0,
                "unreadable": int(len(chosen)), "images": int(count), "candidates": int(candidates),
                "note": "no indexed image could be read to calibrate with: the widest settings are used"}
    truth = exact_nearest(rows, feats[:TRUTH_QUERIES], candidates)
    ladder = [p for p in (candidates * 2 ** i for i in range(16)) if p < pool_max] + [pool_max]
    found: tuple[int, int, float, float] | None = None
    best: tuple[int, int, float, float] = (1, pool_max, 0.0, 0.0)
    for nprobe in [p for p in NPROBE_LADDER if p < nlist] + [nlist]:
        ids = _pool(index, feats, nprobe, pool_max)
        for pool in ladder:
            recall, in_pool = _recalls(ids[:, :pool], sources, truth)
            if min(recall, in_pool) >= RECALL_TARGET:
                found = (nprobe, pool, recall, in_pool)
                break
        best = max(best, (nprobe, pool_max, *_recalls(ids, sources, truth)), key=lambda t: min(t[2], t[3]))
        if found:
            break
    measured = found or best
    nprobe, pool = min(nlist, measured[0] * MARGIN), min(pool_max, max(candidates, measured[1] * MARGIN))
    recall, in_pool = _recalls(_pool(index, feats, nprobe, pool), sources, truth)
    return {
        "nprobe": int(nprobe),
        "pool": int(pool),
        "recall": round(recall, 4),
        "candidate_recall": round(in_pool, 4),
        "measured": {"nprobe": int(measured[0]), "pool": int(measured[1]), "recall": round(measured[2], 4),
                     "candidate_recall": round(measured[3], 4)},
        "margin": MARGIN,
        "target": RECALL_TARGET,
        "target_met": found is not None,
        "queries": int(len(sources)),
        "candidate_queries": int(len(truth)),
        "unreadable": int(len(chosen) - len(sources)),
        "perturbations": sorted(set(used)),
        "images": int(count),
        "candidates": int(candidates),
        "seconds": round(time.monotonic() - started, 1),
        "definition": "recall: share of near copies (perturbed training images) whose source is in the pool the "
                      "compressed index returns; candidate_recall: share of the flat index's C candidates (exact "
                      "feature distance) in that pool; the pool is then re-ranked by exact feature distance",
    }


def exact_nearest(rows: np.ndarray, queries: np.ndarray, k: int, block: int = 65_536) -> np.ndarray:
    """The k nearest rows of each query by exact (float16-decoded) squared l2, as the flat index finds them: a
    scan over ``rows`` a block at a time. Q x k row numbers, unordered."""
    if not len(queries):
        return np.zeros((0, k), dtype=np.int64)
    q = np.asarray(queries, dtype=np.float32)
    qn = (q * q).sum(axis=1)[:, None]
    best_d = np.full((len(q), 0), np.inf, dtype=np.float32)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    for first in range(0, rows.shape[0], block):
        chunk = np.asarray(rows[first:first + block], dtype=np.float32)
        d = qn - 2.0 * (q @ chunk.T) + (chunk * chunk).sum(axis=1)[None, :]
        d_all = np.concatenate([best_d, d], axis=1)
        i_all = np.concatenate([best_i, np.broadcast_to(np.arange(first, first + len(chunk)), d.shape)], axis=1)
        top = np.argpartition(d_all, min(k, d_all.shape[1] - 1), axis=1)[:, :k] if d_all.shape[1] > k else \
            np.argsort(d_all, axis=1)
        best_d = np.take_along_axis(d_all, top, axis=1)
        best_i = np.take_along_axis(i_all, top, axis=1)
    return best_i


def _pool(index: Any, feats: np.ndarray, nprobe: int, k: int) -> np.ndarray:
    """The compressed index's first k rows for each query, at ``nprobe``."""
    if not len(feats):
        return np.zeros((0, k), dtype=np.int64)
    set_nprobe(index, nprobe)
    with _threads(len(feats) * k):
        return vectors.search(index, feats, k)[1]


def _recalls(ids: np.ndarray, sources: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(share of queries whose source is among ``ids``, mean share of each query's true candidates among them)."""
    if not len(ids):
        return 1.0, 1.0
    recall = float(np.mean((ids == sources[:, None]).any(axis=1)))
    if not len(truth):
        return recall, 1.0
    shares = [np.isin(t, ids[j]).mean() for j, t in enumerate(truth)]
    return recall, float(np.mean(shares))


def refine(pool: np.ndarray, query: np.ndarray, read_rows: Callable[[np.ndarray], np.ndarray], keep: int) -> np.ndarray:
    """The ``keep`` rows of ``pool`` nearest to ``query`` by exact feature distance (ties by row), nearest first.

    ``read_rows`` gives the float16 feature rows of the given 0-based rows (read from disk).
    """
    pool = np.unique(pool[pool >= 0])
    if len(pool) == 0:
        return pool
    rows = read_rows(pool).astype(np.float32)
    d = ((rows - np.asarray(query, dtype=np.float32)[None, :]) ** 2).sum(axis=1)
    order = np.lexsort((pool, d))[:keep]
    return pool[order]
