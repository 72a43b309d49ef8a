"""The literature's image distances (Carlini et al. 2023) and their heatmaps.

All functions take two H x W x 3 arrays of equal shape, uint8 (value / 255) or float in [0, 1].
Distances are in [0, 1]; 0 means identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from skimage.metrics import structural_similarity

from inspector.images import as_float

#: Carlini et al.: a generation is an extraction when its tiled l2 to a training image is at most this.
EXTRACTION_THRESHOLD = 0.15
#: A tiled l2 this close to the extraction threshold, on either side, is called borderline: a little blur,
#: a crop or another comparison size moves a distance by about this much.
BORDERLINE_MARGIN = 0.02
#: Calibration constants of Carlini et al. (CIFAR-10).
CALIBRATION_ALPHA = 0.5
CALIBRATION_N = 50


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {a.shape} and {b.shape}")
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"images must be H x W x 3 arrays, got shape {a.shape}")
    return as_float(a), as_float(b)


def l2(a: np.ndarray, b: np.ndarray) -> float:
    """Normalized l2 distance: sqrt(mean((a - b)^2)), in [0, 1]."""
    a, b = _pair(a, b)
    return float(np.sqrt(np.mean((a - b) ** 2)))


def _tile_bounds(n: int, grid: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, n, grid + 1).round().astype(int)
    return [(int(edges[i]), int(edges[i + 1])) for i in range(grid)]


def tile_l2_grid(a: np.ndarray, b: np.ndarray, grid: int = 4) -> np.ndarray:
    """The l2 distance of each tile of a ``grid`` x ``grid`` split, as a grid x grid array in [0, 1]."""
    a, b = _pair(a, b)
    h, w = a.shape[:2]
    if grid < 1 or grid > min(h, w):
        raise ValueError(f"grid must be between 1 and {min(h, w)} for {h}x{w} images, got {grid}")
    sq = (a - b) ** 2
    out = np.empty((grid, grid), dtype=np.float64)
    for i, (r0, r1) in enumerate(_tile_bounds(h, grid)):
        for j, (c0, c1) in enumerate(_tile_bounds(w, grid)):
            out[i, j] = np.sqrt(sq[r0:r1, c0:c1].mean())
    return out


def tiled_l2(a: np.ndarray, b: np.ndarray, grid: int = 4) -> float:
    """Carlini et al.'s tiled l2: the largest l2 over a grid x grid split; extraction when <= 0.15."""
    return float(tile_l2_grid(a, b, grid).max())


def calibrated_l2(
    gen: np.ndarray, nearest: np.ndarray, others: Sequence[np.ndarray], alpha: float = CALIBRATION_ALPHA
) -> float:
    """l2(gen, nearest) / (alpha * mean l2(gen, y) for y in others).

    ``others`` are the generation's n nearest training images (n = 50 in Carlini et al.). A value below 1 means
    the nearest image is far closer than the crowd of near neighbours: a sign of copying, not of a common look.
    """
    if len(others) == 0:
        raise ValueError("calibrated_l2 needs at least one image in 'others'")
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    crowd = float(np.mean([l2(gen, y) for y in others]))
    near = l2(gen, nearest)
    if crowd == 0.0:
        return 0.0 if near == 0.0 else float("inf")
    return near / (alpha * crowd)


def _ssim_full(a: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray]:
    a, b = _pair(a, b)
    side = min(a.shape[:2])
    win = min(7, side if side % 2 == 1 else side - 1)
    if win < 3:
        raise ValueError(f"images of {a.shape[0]}x{a.shape[1]} pixels are too small for SSIM (need 3x3)")
    score, full = structural_similarity(a, b, channel_axis=2, data_range=1.0, full=True, win_size=win)
    return float(score), full.mean(axis=2)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (scikit-image), 1 for identical images, lower for less similar ones."""
    return _ssim_full(a, b)[0]


# --- heatmaps -------------------------------------------------------------------------------------------------


def pixel_difference_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel |a - b| averaged over the colour channels: H x W in [0, 1]."""
    a, b = _pair(a, b)
    return np.abs(a - b).mean(axis=2)


@dataclass(frozen=True)
class TileGrid:
    """Tile l2 values of a grid x grid split and the position (row, column) of the worst tile."""

    values: np.ndarray
    worst: tuple[int, int]


def tile_grid_map(a: np.ndarray, b: np.ndarray, grid: int = 4) -> TileGrid:
    """The grid of tile l2 values with the worst tile marked."""
    values = tile_l2_grid(a, b, grid)
    worst = np.unravel_index(int(np.argmax(values)), values.shape)
    return TileGrid(values=values, worst=(int(worst[0]), int(worst[1])))


def ssim_dissimilarity_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - SSIM map (mean over channels): H x W, 0 where the images agree in structure."""
    _, full = _ssim_full(a, b)
    return np.clip(1.0 - full, 0.0, 2.0)


@dataclass(frozen=True)
class Distances:
    """The distances of one generation to one training image."""

    l2: float
    tiled_l2: float
    ssim: float
    calibrated_l2: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {"l2": self.l2, "tiled_l2": self.tiled_l2, "ssim": self.ssim, "calibrated_l2": self.calibrated_l2}


def distances(a: np.ndarray, b: np.ndarray, others: Sequence[np.ndarray] | None = None) -> Distances:
    """l2, tiled l2 and SSIM of a pair, plus calibrated l2 when the crowd ``others`` is given."""
    cal = calibrated_l2(a, b, others) if others else None
    return Distances(l2=l2(a, b), tiled_l2=tiled_l2(a, b), ssim=ssim(a, b), calibrated_l2=cal)


def tiled_l2_words(value: float, threshold: float = EXTRACTION_THRESHOLD) -> str:
    """What a tiled l2 value says, in the one set of words every view, export and command uses.

    Four bands around the extraction ``threshold`` (0.15), borderline within :data:`BORDERLINE_MARGIN` of it
    (the same rule as ``extraction.threshold_margin``): "near copy" (<= 0.13), "near copy (borderline)"
    (0.13, 0.15], "not a near copy (borderline)" (0.15, 0.17], "not a near copy" (> 0.17). A tiled l2 above the
    line never says "similar": the worst tile of two unrelated images can be that close too.
    """
    margin = round(threshold - value, 6)  # as extraction.threshold_margin rounds it
    borderline = -BORDERLINE_MARGIN <= margin < BORDERLINE_MARGIN
    words = "near copy" if margin >= 0 else "not a near copy"
    return f"{words} (borderline)" if borderline else words


def describe_tiled_l2(value: float, threshold: float = EXTRACTION_THRESHOLD) -> str:
    """Plain words for a tiled l2 value, e.g. 'tiled l2 0.06: near copy (threshold 0.15)'."""
    return f"tiled l2 {value:.2f}: {tiled_l2_words(value, threshold)} (threshold {threshold:.2f})"
