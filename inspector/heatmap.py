"""Turn heatmaps (2-D arrays) into pictures a person can read: a perceptually uniform colour map, an RGBA
overlay, a colour-scale legend, and the side-by-side comparison sheet of ``inspector compare --heatmap``.

numpy and Pillow only (no Qt), so the GUI, the command line and the HTML report draw the same pictures.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from inspector import metrics
from inspector.images import as_uint8

# Viridis as a 6th-degree polynomial per channel (fit of matplotlib's table, max error < 0.5%).
_VIRIDIS = np.array(
    [
        [0.2777273272234177, 0.005407344544966578, 0.3340998053353061],
        [0.1050930431085774, 1.404613529898575, 1.384590162594685],
        [-0.3308618287255563, 0.214847559468213, 0.09509516302823659],
        [-4.634230498983486, -5.799100973351585, -19.33244095627987],
        [6.228269936347081, 14.17993336680509, 56.69055260068105],
        [4.776384997670288, -13.74514537774601, -65.35303263337234],
        [-5.435455855934631, 4.645852612178535, 26.3124352495832],
    ]
)


def viridis(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB uint8 with viridis (dark blue = 0, yellow = 1)."""
    t = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)[..., None]
    rgb = np.zeros(t.shape[:-1] + (3,))
    for k in range(_VIRIDIS.shape[0] - 1, -1, -1):
        rgb = rgb * t + _VIRIDIS[k]
    return np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)


def colourize(heat: np.ndarray, vmax: float = 1.0, alpha: float = 1.0) -> Image.Image:
    """An RGBA picture of ``heat`` (H x W, >= 0) scaled so that ``vmax`` is the top of the colour map."""
    if vmax <= 0:
        raise ValueError(f"vmax must be positive, got {vmax}")
    rgb = viridis(np.asarray(heat, dtype=np.float64) / vmax)
    a = np.full(rgb.shape[:2] + (1,), int(round(alpha * 255)), dtype=np.uint8)
    return Image.fromarray(np.concatenate([rgb, a], axis=2), "RGBA")


def overlay(base: np.ndarray, heat: np.ndarray, vmax: float = 1.0, alpha: float = 0.6) -> Image.Image:
    """The heatmap laid over a (greyed) image, both at the image's size, as RGB."""
    base_im = Image.fromarray(as_uint8(base)).convert("L").convert("RGBA")
    heat_im = colourize(heat, vmax, alpha).resize(base_im.size, Image.Resampling.NEAREST)
    return Image.alpha_composite(base_im, heat_im).convert("RGB")


def font(size: int = 14) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType
        return ImageFont.load_default()


def legend(height: int, vmax: float, title: str, width: int = 70, low: str = "same", high: str = "different") -> Image.Image:
    """A vertical colour scale from 0 (bottom) to ``vmax`` (top), with numbers and words at both ends."""
    im = Image.new("RGB", (width, height), "white")
    bar_w = 14
    top, bottom = 18, height - 18
    ramp = np.linspace(1, 0, max(2, bottom - top))[:, None].repeat(bar_w, axis=1)
    im.paste(Image.fromarray(viridis(ramp)), (4, top))
    d = ImageDraw.Draw(im)
    f = font(11)
    d.text((2, 2), title, fill="black", font=f)
    d.text((bar_w + 8, top - 2), f"{vmax:.2f} {high}", fill="black", font=f)
    d.text((bar_w + 8, bottom - 12), f"0 {low}", fill="black", font=f)
    return im


def upscale(arr_or_im, side: int) -> Image.Image:
    im = arr_or_im if isinstance(arr_or_im, Image.Image) else Image.fromarray(as_uint8(arr_or_im))
    return im.resize((side, side), Image.Resampling.NEAREST if im.width < side / 2 else Image.Resampling.BICUBIC)


def tile_grid_picture(a: np.ndarray, b: np.ndarray, side: int, grid: int = 4, vmax: float = 0.5) -> Image.Image:
    """Tile l2 values as coloured squares over image ``b``, each with its number; the worst tile outlined red."""
    tiles = metrics.tile_grid_map(a, b, grid)
    heat = np.kron(tiles.values, np.ones((side // grid, side // grid)))
    im = overlay(np.asarray(upscale(b, heat.shape[0])), heat, vmax=vmax, alpha=0.75).resize((side, side))
    d = ImageDraw.Draw(im)
    cell = side / grid
    f = font(max(9, int(cell / 4)))
    for i in range(grid):
        for j in range(grid):
            v = tiles.values[i, j]
            x, y = j * cell, i * cell
            d.text((x + 3, y + 3), f"{v:.2f}", fill="white" if v < vmax * 0.6 else "black", font=f)
    wi, wj = tiles.worst
    d.rectangle((wj * cell, wi * cell, (wj + 1) * cell - 1, (wi + 1) * cell - 1), outline=(255, 0, 0), width=3)
    return im


def _resized_map(heat: np.ndarray, side: int) -> np.ndarray:
    """A heatmap in [0, 1] resized to ``side`` x ``side`` (bilinear), for laying over an upscaled picture."""
    im = Image.fromarray((np.clip(heat, 0, 1) * 255).astype(np.uint8))
    return np.asarray(im.resize((side, side), Image.Resampling.BILINEAR)) / 255.0


def heatmap_views(gen: np.ndarray, train: np.ndarray, side: int) -> dict[str, np.ndarray]:
    """The training image and its three heatmaps against the generation, each a ``side`` px RGB picture:
    "none" (the image), "pixel" (|a - b|), "tiles" (tile l2 grid, worst in red), "ssim" (1 - SSIM)."""
    big = np.asarray(upscale(train, side))
    return {
        "none": big,
        "pixel": np.asarray(overlay(big, _resized_map(metrics.pixel_difference_map(gen, train), side), vmax=0.5)),
        "tiles": np.asarray(tile_grid_picture(gen, train, side)),
        "ssim": np.asarray(overlay(big, _resized_map(metrics.ssim_dissimilarity_map(gen, train), side), vmax=1.0)),
    }


def comparison_sheet(a: np.ndarray, b: np.ndarray, name_a: str = "A", name_b: str = "B", side: int = 256) -> Image.Image:
    """A side-by-side picture: A, B, the pixel difference, the tile grid and the SSIM map, each with a title and
    the colour scale, and the four distances in words underneath. Inputs are canonical arrays of equal shape."""
    d_all = metrics.distances(a, b)
    views = heatmap_views(a, b, side)
    panels = [
        (upscale(a, side), f"A: {name_a}"),
        (Image.fromarray(views["none"]), f"B: {name_b}"),
        (Image.fromarray(views["pixel"]), "where they differ (pixel difference)"),
        (Image.fromarray(views["tiles"]), "tile grid (worst tile in red)"),
        (Image.fromarray(views["ssim"]), "structure differs (1 - SSIM)"),
    ]
    pad, title_h, foot_h, leg_w = 10, 22, 70, 90
    width = pad + len(panels) * (side + pad) + leg_w
    height = pad + title_h + side + foot_h
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    f = font(13)
    for k, (im, title) in enumerate(panels):
        x = pad + k * (side + pad)
        draw.text((x, pad), title, fill="black", font=f)
        sheet.paste(im, (x, pad + title_h))
    half = side // 2 - 4
    x_leg = pad + len(panels) * (side + pad)
    sheet.paste(legend(half, 0.5, "pixels, tiles", width=leg_w), (x_leg, pad + title_h))
    sheet.paste(legend(half, 1.0, "1 - SSIM", width=leg_w), (x_leg, pad + title_h + half + 8))
    verdict = metrics.describe_tiled_l2(d_all.tiled_l2)
    lines = [
        f"{verdict}.   l2 {d_all.l2:.3f} (0 = identical).   SSIM {d_all.ssim:.3f} (1 = identical structure).",
        "Dark blue = the two images agree there; yellow = they differ. The tile grid shows the l2 of each of the",
        "16 tiles; the largest one is the tiled l2 of Carlini et al. 2023 (a near copy when it is "
        f"{metrics.EXTRACTION_THRESHOLD:g} or less).",
    ]
    for k, line in enumerate(lines):
        draw.text((pad, pad + title_h + side + 8 + k * 18), line, fill="black", font=f)
    return sheet
