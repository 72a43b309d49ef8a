"""Everyday changes that turn a training image into a near copy: what a compressed index must never lose.

A generation that copies a training image rarely matches it bit for bit; it is re-encoded, a little cropped or
shifted, noisier, its colours slightly off. The five perturbations here (the same as the recall test of issue 5)
produce such near copies from canonical pixels; a compressed index measures with them how many candidates it must
re-rank so that the source of a near copy is still found (``compressed.calibrate``), and the tests and the scale
bench measure recall with them.

Each function takes an S x S x 3 uint8 image and a numpy Generator and returns an S x S x 3 uint8 image.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image


def jpeg_75(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """JPEG at quality 75, decoded again."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=75)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def crop(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cut up to 4% off each side, then resize back to S x S (bicubic)."""
    h, w = pixels.shape[:2]
    left, top, right, bottom = (rng.uniform(0, 0.04, 4) * [w, h, w, h]).round().astype(int)
    im = Image.fromarray(pixels).crop((left, top, w - right, h - bottom))
    return np.asarray(im.resize((w, h), Image.Resampling.BICUBIC), dtype=np.uint8)


def shift(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Move the content 2-4% in x and y (at least a pixel), repeating the edge pixels into the gap."""
    h, w = pixels.shape[:2]
    dy, dx = (rng.choice([-1, 1], 2) * np.maximum(1, np.round(rng.uniform(0.02, 0.04, 2) * [h, w]))).astype(int)
    rows = np.clip(np.arange(h) - dy, 0, h - 1)
    cols = np.clip(np.arange(w) - dx, 0, w - 1)
    return np.ascontiguousarray(pixels[rows][:, cols])


def gaussian_noise(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of standard deviation 0.03 (on [0, 1] values)."""
    a = pixels.astype(np.float64) / 255.0 + rng.normal(0, 0.03, pixels.shape)
    return (np.clip(a, 0, 1) * 255).round().astype(np.uint8)


def colour_shift(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each channel scaled by 0.95-1.05 and offset by -0.03..0.03."""
    a = pixels.astype(np.float64) / 255.0 * rng.uniform(0.95, 1.05, 3) + rng.uniform(-0.03, 0.03, 3)
    return (np.clip(a, 0, 1) * 255).round().astype(np.uint8)


PERTURBATIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "jpeg quality 75": jpeg_75,
    "crop of a few percent": crop,
    "shift of a few percent": shift,
    "mild gaussian noise": gaussian_noise,
    "slight colour shift": colour_shift,
}


def near_copies(pixels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """One near copy of each of N images (N x S x S x 3 uint8), the perturbations taken in turn; returns the
    copies and the name of each one's perturbation."""
    names = list(PERTURBATIONS)
    out = np.empty_like(pixels)
    used = []
    for i, image in enumerate(pixels):
        name = names[i % len(names)]
        out[i] = PERTURBATIONS[name](np.ascontiguousarray(image), rng)
        used.append(name)
    return out, used
