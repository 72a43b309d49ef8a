"""The compact retrieval feature: the canonical image averaged down to a small grid of colour blocks.

Definition (recorded in every index's manifest): take the canonical form of the image (``inspector.images``:
centre crop, resize to the comparison size S, RGB in [0, 1]) and average it over a ``grid`` x ``grid`` split of
equal areas (exact area weights when S is not a multiple of ``grid``). The feature is the resulting
grid x grid x 3 array, flattened row-major (row, column, channel), values in [0, 1], stored as float16.

Why this feature: block averaging is a contraction, so for any two images a and b

    sqrt(||f(a) - f(b)||^2 / D)  <=  l2(a, b)          (D = grid * grid * 3)

(Jensen's inequality on each block). The feature distance therefore never overestimates the exact normalized l2
of Carlini et al. that the results are ranked by: an image whose feature distance exceeds the exact l2 of the
best candidate found can never be nearer in l2, which is what makes "retrieve on features, re-rank exactly" safe.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: Side of the block grid; D = 16 * 16 * 3 = 768 dimensions.
FEATURE_GRID = 16
FEATURE_NAME = "block-mean-rgb"
FEATURE_VERSION = 1


def feature_dim(grid: int = FEATURE_GRID) -> int:
    """Number of values in a feature: grid * grid * 3."""
    return grid * grid * 3


def feature_definition(grid: int = FEATURE_GRID) -> dict:
    """The feature's definition as stored in the manifest."""
    return {
        "name": FEATURE_NAME,
        "version": FEATURE_VERSION,
        "grid": grid,
        "dim": feature_dim(grid),
        "dtype": "float16",
        "range": [0.0, 1.0],
        "definition": (
            f"canonical image (centre crop, resize to the comparison size, RGB in [0, 1]) averaged over a "
            f"{grid} x {grid} grid of equal areas, flattened as (row, column, channel); no normalisation, so "
            f"sqrt(squared feature distance / {feature_dim(grid)}) is a lower bound of the exact normalized l2"
        ),
    }


@lru_cache(maxsize=16)
def _area_matrix(size: int, grid: int) -> np.ndarray:
    """grid x size matrix whose row i holds the area weights of output block i (each row sums to 1)."""
    edges = np.arange(grid + 1, dtype=np.float64) * (size / grid)
    pixels = np.arange(size + 1, dtype=np.float64)
    lo = np.maximum(edges[:-1, None], pixels[None, :-1])
    hi = np.minimum(edges[1:, None], pixels[None, 1:])
    weights = np.clip(hi - lo, 0.0, None) / (size / grid)
    weights.setflags(write=False)
    return weights


def compact_features(canonical: np.ndarray, grid: int = FEATURE_GRID) -> np.ndarray:
    """Compact features of canonical images.

    Parameters
    ----------
    canonical
        One S x S x 3 image or an N x S x S x 3 batch; uint8 (value / 255) or float in [0, 1].
    grid
        Side of the block grid (default 16); must not exceed S.

    Returns
    -------
    numpy.ndarray
        float32 array of shape (D,) or (N, D), D = grid * grid * 3, values in [0, 1].
    """
    arr = np.asarray(canonical)
    single = arr.ndim == 3
    if single:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1] != arr.shape[2] or arr.shape[3] != 3:
        raise ValueError(f"expected S x S x 3 canonical images, got shape {np.asarray(canonical).shape}")
    n, size = arr.shape[0], arr.shape[1]
    if grid < 1 or grid > size:
        raise ValueError(f"feature grid must be between 1 and {size}, got {grid}")
    scale = 1.0 / 255.0 if arr.dtype == np.uint8 else 1.0
    if size % grid == 0:
        # The common case: sum the rows of each block, then its columns. Contiguous reductions (exact in integers
        # for uint8) are an order of magnitude faster than one strided mean, and need no BLAS threads.
        step = size // grid
        acc = np.uint32 if arr.dtype == np.uint8 else np.float64
        rows = arr.reshape(n, grid, step, size * 3).sum(axis=2, dtype=acc)
        blocks = rows.reshape(n, grid, grid, step, 3).sum(axis=3, dtype=acc)
        out = blocks * (scale / (step * step))
    else:
        a = _area_matrix(size, grid)
        out = np.einsum("is,nstc,jt->nijc", a, arr.astype(np.float64), a, optimize=True) * scale
    out = out.reshape(arr.shape[0], -1).astype(np.float32)
    return out[0] if single else out
