"""FAISS indexes over the row files: which kind for which size, and how they are written and read.

The compact features get an exact flat index up to the size where it would crowd memory, and a compressed one
beyond it (compressed.py); CLIP embeddings get the flat index up to :data:`EXACT_LIMIT` rows, an inverted file
beyond.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from inspector.fileio import write_atomic

#: Up to this many rows the index is an exact scan over float16 rows (100k x 768: about 0.1 s for 16 queries on
#: two cores); beyond it an inverted file over the same float16 rows keeps searches fast at some recall cost.
EXACT_LIMIT = 2_000_000
_ADD_BATCH = 65_536
_TRAIN_SAMPLE = 100_000


def _faiss() -> Any:
    import faiss

    return faiss


def build(rows: np.ndarray, metric: str, exact: bool | None = None) -> tuple[Any, dict[str, Any]]:
    """A FAISS index over ``rows`` (N x D float16, possibly a memory map) and its manifest description.

    Parameters
    ----------
    rows
        The vectors, added in row order so that FAISS id = row = item id - 1.
    metric
        "l2" (squared Euclidean) or "ip" (inner product, cosine for unit vectors).
    exact
        True: always the flat float16 scan (the caller decided, e.g. below the compression threshold); None: flat
        up to :data:`EXACT_LIMIT` rows, an inverted file beyond.
    """
    faiss = _faiss()
    n, d = rows.shape
    metric_type = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    if exact or n <= EXACT_LIMIT:
        index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, metric_type)
        description = {"type": "IndexScalarQuantizer", "codec": "fp16", "exact": True}
    else:
        nlist = int(4 * np.sqrt(n))
        quantizer = faiss.IndexFlat(d, metric_type)
        index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, faiss.ScalarQuantizer.QT_fp16, metric_type)
        sample = np.sort(np.random.default_rng(0).choice(n, size=min(n, _TRAIN_SAMPLE), replace=False))
        index.train(np.asarray(rows[sample], dtype=np.float32))
        nprobe = max(16, nlist // 64)
        description = {"type": "IndexIVFScalarQuantizer", "codec": "fp16", "exact": False, "nlist": nlist,
                       "nprobe": nprobe}
    for start in range(0, n, _ADD_BATCH):
        index.add(np.ascontiguousarray(rows[start:start + _ADD_BATCH], dtype=np.float32))
    description.update({"metric": metric, "dim": d, "count": n})
    return index, description


def write(index: Any, path: Path) -> None:
    """Write an index atomically (:func:`inspector.fileio.write_atomic`), streamed in blocks."""
    faiss = _faiss()
    write_atomic(path, lambda stream: faiss.write_index(index, faiss.PyCallbackIOWriter(stream.write)))


def read(path: Path, description: dict[str, Any]) -> Any:
    """Read an index memory-mapped (pages load as searches touch them) and apply its search settings."""
    faiss = _faiss()
    index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    if description.get("nprobe"):
        # extract_index_ivf also reaches an inverted file behind a transform (a compressed index's PCA).
        faiss.extract_index_ivf(index).nprobe = int(description["nprobe"])
    return index


def search(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS search returning (scores, ids), ids of -1 removed by the caller."""
    k = max(1, min(int(k), int(index.ntotal)))
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
