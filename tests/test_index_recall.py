"""Recall: a training image disguised by everyday changes is still among its four nearest (issue 5's target).

The index holds 2,000 small synthetic but varied pictures (shapes on gradients, smooth colour fields, waves,
grainy textures, 48-64 px, not all square). 100 sources are drawn per perturbation, perturbed, and queried; the
source must be among the 4 nearest at least 99% of the time.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from inspector.training_index import TrainingIndex, build_index

N_IMAGES = 2000
N_QUERIES = 100
SIZE = 64


def synthetic_picture(rng: np.random.Generator) -> Image.Image:
    w, h = (int(v) for v in rng.integers(48, 65, 2))
    kind = int(rng.integers(0, 4))
    if kind == 0:  # shapes on a gradient
        a, b = rng.integers(0, 256, (2, 3))
        t = np.linspace(0, 1, w)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, h)[:, None, None]
        im = Image.fromarray(((a * (1 - t) + b * t) * np.ones((h, w, 1))).astype(np.uint8))
        draw = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(1, 5))):
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            x0, y0 = int(rng.integers(-8, w - 8)), int(rng.integers(-8, h - 8))
            x1, y1 = x0 + int(rng.integers(10, 40)), y0 + int(rng.integers(10, 40))
            shape = int(rng.integers(0, 3))
            if shape == 0:
                draw.ellipse((x0, y0, x1, y1), fill=fill)
            elif shape == 1:
                draw.rectangle((x0, y0, x1, y1), fill=fill)
            else:
                draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=fill)
        return im
    if kind == 1:  # a smooth colour field
        g = int(rng.integers(3, 8))
        return Image.fromarray(rng.integers(0, 256, (g, g, 3), dtype=np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    if kind == 2:  # waves
        yy, xx = np.mgrid[0:h, 0:w] / 64.0
        out = np.empty((h, w, 3))
        for c in range(3):
            f, th, ph = rng.uniform(0.5, 3.0), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
            out[..., c] = 0.5 + 0.5 * np.sin(2 * np.pi * f * (xx * np.cos(th) + yy * np.sin(th)) + ph)
        return Image.fromarray((out * 255).astype(np.uint8))
    g = int(rng.integers(2, 5))  # a grainy texture with a blob
    base = np.asarray(Image.fromarray(rng.integers(0, 256, (g, g, 3), dtype=np.uint8)).resize(
        (w, h), Image.Resampling.BICUBIC), dtype=np.float64) + rng.normal(0, 12, (h, w, 3))
    im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    x0, y0 = int(rng.integers(0, w - 16)), int(rng.integers(0, h - 16))
    ImageDraw.Draw(im).ellipse((x0, y0, x0 + int(rng.integers(8, 30)), y0 + int(rng.integers(8, 30))),
                               fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return im


def jpeg_75(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=75)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def crop(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Cut up to 4% off each side."""
    w, h = im.size
    left, top, right, bottom = (rng.uniform(0, 0.04, 4) * [w, h, w, h]).round().astype(int)
    return im.crop((left, top, w - right, h - bottom))


def shift(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Move the content 2-4% in x and y, repeating the edge pixels into the gap."""
    a = np.asarray(im)
    h, w = a.shape[:2]
    dy, dx = (rng.choice([-1, 1], 2) * np.maximum(1, np.round(rng.uniform(0.02, 0.04, 2) * [h, w]))).astype(int)
    rows = np.clip(np.arange(h) - dy, 0, h - 1)
    cols = np.clip(np.arange(w) - dx, 0, w - 1)
    return Image.fromarray(a[rows][:, cols])


def gaussian_noise(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    a = np.asarray(im, dtype=np.float64) / 255.0 + rng.normal(0, 0.03, (im.height, im.width, 3))
    return Image.fromarray((np.clip(a, 0, 1) * 255).round().astype(np.uint8))


def colour_shift(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    a = np.asarray(im, dtype=np.float64) / 255.0 * rng.uniform(0.95, 1.05, 3) + rng.uniform(-0.03, 0.03, 3)
    return Image.fromarray((np.clip(a, 0, 1) * 255).round().astype(np.uint8))


PERTURBATIONS: dict[str, Callable[[Image.Image, np.random.Generator], Image.Image]] = {
    "jpeg quality 75": jpeg_75,
    "crop of a few percent": crop,
    "shift of a few percent": shift,
    "mild gaussian noise": gaussian_noise,
    "slight colour shift": colour_shift,
}


@pytest.fixture(scope="session")
def recall_index(tmp_path_factory) -> tuple[TrainingIndex, list[Path]]:
    root = tmp_path_factory.mktemp("recall")
    rng = np.random.default_rng(2024)
    paths = []
    for i in range(N_IMAGES):
        path = root / "training" / f"{i // 500}" / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic_picture(rng).save(path)
        paths.append(path)
    build_index(root / "training", root / "index", comparison_size=SIZE, workers=1, chunk_size=256)
    index = TrainingIndex.open(root / "index")
    yield index, paths
    index.close()


@pytest.mark.slow
def test_the_recall_index_holds_2000_distinct_images(recall_index):
    index, paths = recall_index
    assert len(index) == len(paths) == N_IMAGES


@pytest.mark.parametrize("name", list(PERTURBATIONS))
@pytest.mark.slow
def test_a_perturbed_training_image_finds_its_source_among_its_four_nearest(recall_index, name):
    index, paths = recall_index
    rng = np.random.default_rng(sum(map(ord, name)))
    picks = rng.choice(len(paths), N_QUERIES, replace=False)
    queries = [np.asarray(PERTURBATIONS[name](Image.open(paths[i]).convert("RGB"), rng)) for i in picks]
    results = index.query(queries, k=4)
    found = [any(n.source == str(paths[i]) for n in neighbours) for i, neighbours in zip(picks, results, strict=True)]
    assert sum(found) >= 0.99 * N_QUERIES, f"{name}: source among the 4 nearest for {sum(found)}/{N_QUERIES}"
