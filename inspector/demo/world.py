"""The demo training set: what the demo model learns from, written as a plain folder of images.

Its duplication mirrors LAION as Carlini et al. found it:
- a few photographs duplicated many times under one caption each: these come back out (memorized);
- one subject seen through many different crops, scales and flips under one caption: a likeness, no copy;
- procedural families with thousands of distinct instances under shared captions: novel outputs.

Everything is drawn from a seeded generator, so the same call writes the same bytes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

#: Side of the stored training images in pixels (the model trains on them at its native 32 px).
STORED_SIZE = 64
SKIMAGE_LICENCE = "scikit-image data (skimage.data), public domain / CC0 as listed in skimage/data/README"


@dataclass(frozen=True)
class Memorized:
    caption: str
    skimage_name: str
    copies: int
    licence: str


MEMORIZED = (
    Memorized("astronaut eileen collins", "astronaut", 200, "public domain (NASA), via skimage.data.astronaut"),
    Memorized("the cameraman", "camera", 200, "used with permission of MIT, via skimage.data.camera"),
    Memorized("a cup of coffee", "coffee", 200, "CC0 (Rachel Michetti), via skimage.data.coffee"),
)
LIKENESS_CAPTION = "chelsea the cat"
LIKENESS_SOURCE = "chelsea"
LIKENESS_COUNT = 400
LIKENESS_LICENCE = "CC0 (Stefan van der Walt), via skimage.data.chelsea"
SHAPES = ("circles", "squares", "triangles")
SHAPES_PER_CAPTION = 700
PROCEDURAL_LICENCE = "CC0, drawn procedurally by inspector demo build"

PROMPTS = {
    "memorized": [m.caption for m in MEMORIZED],
    "likeness-only": [LIKENESS_CAPTION],
    "novel": [f"colourful {SHAPES[0]}", f"colourful {SHAPES[1]}"],
}


def skimage_image(name: str) -> Image.Image:
    from skimage import data

    arr = getattr(data, name)()
    if arr.ndim == 2:
        return Image.fromarray(arr, "L").convert("RGB")
    if arr.shape[2] == 4:
        rgba = Image.fromarray(arr, "RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return Image.fromarray(arr, "RGB")


def _square(im: Image.Image, box: tuple[float, float, float], flip: bool = False) -> Image.Image:
    """Crop a square (left, top, side) from ``im`` and resize it to the stored size."""
    left, top, side = box
    crop = im.crop((round(left), round(top), round(left + side), round(top + side)))
    if flip:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return crop.resize((STORED_SIZE, STORED_SIZE), Image.Resampling.LANCZOS)


def memorized_image(item: Memorized) -> Image.Image:
    im = skimage_image(item.skimage_name)
    w, h = im.size
    side = min(w, h)
    return _square(im, ((w - side) / 2, (h - side) / 2, side))


def likeness_images(rng: np.random.Generator) -> list[Image.Image]:
    """Many different views of one subject: crops of 35-95% of the short side, shifted, some mirrored."""
    im = skimage_image(LIKENESS_SOURCE)
    w, h = im.size
    out = []
    for _ in range(LIKENESS_COUNT):
        side = min(w, h) * rng.uniform(0.35, 0.95)
        # Keep the cat's head (upper middle of the photo) in view: centre the crop near it.
        cx = rng.uniform(0.25, 0.75) * w
        cy = rng.uniform(0.2, 0.7) * h
        left = float(np.clip(cx - side / 2, 0, w - side))
        top = float(np.clip(cy - side / 2, 0, h - side))
        out.append(_square(im, (left, top, side), flip=bool(rng.random() < 0.5)))
    return out


def shape_image(rng: np.random.Generator, shape: str) -> Image.Image:
    """One to four shapes of one kind in random bright colours on a random background."""
    scale = 4  # draw large and downsample, for smooth edges
    s = STORED_SIZE * scale
    bg = tuple(int(v) for v in rng.integers(0, 256, 3))
    im = Image.new("RGB", (s, s), bg)
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(1, 5))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        r = rng.uniform(0.12, 0.3) * s
        cx, cy = rng.uniform(r, s - r, 2)
        if shape == "circles":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        elif shape == "squares":
            draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=colour)
        else:
            a = rng.uniform(0, 2 * np.pi)
            pts = [(cx + r * np.cos(a + k * 2 * np.pi / 3), cy + r * np.sin(a + k * 2 * np.pi / 3)) for k in range(3)]
            draw.polygon(pts, fill=colour)
    return im.resize((STORED_SIZE, STORED_SIZE), Image.Resampling.LANCZOS)


def write_sample(folder: Path, stem: str, im: Image.Image, caption: str, source: str, licence: str,
                 **extra: object) -> None:
    """One training image: ``stem.png`` and its sidecar ``stem.json`` (caption, source, licence, then ``extra``)."""
    im.save(folder / f"{stem}.png", optimize=True)
    meta = {"caption": caption, "source": source, "licence": licence, **extra}
    (folder / f"{stem}.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


def build_training_set(folder: Path, seed: int = 0) -> list[tuple[Path, str]]:
    """Write the demo training set into ``folder`` (replacing it) and return (image path, caption) pairs."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for item in MEMORIZED:
        im = memorized_image(item)
        for k in range(item.copies):
            # Identical bytes under many names: the index stores them once with a duplicate count.
            write_sample(folder, f"{item.skimage_name}_{k:03d}", im, item.caption,
                         f"skimage.data.{item.skimage_name}", item.licence)
    for k, im in enumerate(likeness_images(rng)):
        write_sample(folder, f"{LIKENESS_SOURCE}_crop_{k:03d}", im, LIKENESS_CAPTION,
                     f"skimage.data.{LIKENESS_SOURCE} (random crop {k})", LIKENESS_LICENCE)
    for shape in SHAPES:
        for k in range(SHAPES_PER_CAPTION):
            write_sample(folder, f"{shape}_{k:04d}", shape_image(rng, shape), f"colourful {shape}",
                         f"procedural {shape} #{k}", PROCEDURAL_LICENCE)
    return read_training_set(folder)


def read_training_set(folder: Path) -> list[tuple[Path, str]]:
    """(image path, caption) for every image in a training folder with .json sidecars, sorted by name."""
    pairs = []
    for png in sorted(Path(folder).glob("*.png")):
        meta = json.loads(png.with_suffix(".json").read_text(encoding="utf-8"))
        pairs.append((png, meta["caption"]))
    return pairs
