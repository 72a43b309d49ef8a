"""The benchmark world: a training set whose right answers are known by construction.

Built like the demo world (:mod:`inspector.demo.world`), but with many prompts so that the inspector's signals can
be scored (``inspector evaluate``):

- **duplicated subjects**: distinct photographs (regions of scikit-image's public-domain pictures, grey ones tinted),
  each under its own caption "photo of <word>", written 1, 2, 5, 10, 20, 50, 100 or 200 times (four subjects per
  count). Carlini et al. found extraction grows with the duplicate count: the curve is measured here;
- **likeness families**: a subject seen only through many different crops, scales and flips under one caption
  "views of <word>": the model can learn the subject but no single image;
- **novel families**: procedural pictures with hundreds of distinct members under one caption "colourful <kind>":
  a category, nothing to copy.

Everything is drawn from a seeded generator, so the same seed gives the same pixels; the folder is written on
demand (it is not shipped) and :func:`pixel_digest` lets a rebuilt folder be checked against the one the
benchmark model was trained on.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from inspector.demo.world import (
    PROCEDURAL_LICENCE,
    STORED_SIZE,
    _square,
    shape_image,
    skimage_image,
    write_sample,
)

#: Copies per duplicated subject, four subjects each (the x axis of Carlini et al.'s extraction curve).
COPIES = (1, 2, 5, 10, 20, 50, 100, 200)
SUBJECTS_PER_COUNT = 4
LIKENESS_SOURCES = ("chelsea", "coffee", "rocket", "stereo_motorcycle")
LIKENESS_CROPS = 120
NOVEL_KINDS = ("circles", "squares", "triangles", "stripes", "rings", "checks", "dots", "waves")
NOVEL_PER_KIND = 180
#: One made-up-free, plain word per subject: the only thing that tells the model which subject a caption means.
WORDS = (
    "amber", "birch", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "indigo", "juniper", "kestrel",
    "lagoon", "marble", "nectar", "onyx", "pebble", "quartz", "raven", "sierra", "tundra", "umber", "violet",
    "willow", "yarrow", "zephyr", "alder", "basil", "clover", "dune", "flint", "glade", "heron", "jasper", "lotus",
    "maple", "orchid",
)
#: Least tiled l2 between two duplicated subjects (twice the extraction threshold of 0.15).
MIN_SUBJECT_DISTANCE = 0.3
SKIMAGE_LICENCE = "scikit-image data (skimage.data): public domain / CC0 as listed in skimage/data/README"
# Colours for tinting grey pictures (dark end, light end), so that each is a distinct colour image.
TINTS = (
    ((20, 30, 90), (250, 220, 140)), ((80, 10, 30), (200, 250, 220)), ((10, 60, 20), (255, 200, 230)),
    ((60, 30, 0), (180, 230, 255)), ((0, 40, 60), (255, 240, 120)), ((50, 0, 70), (230, 255, 180)),
    ((90, 40, 10), (200, 210, 255)), ((0, 70, 70), (255, 190, 170)), ((40, 40, 40), (255, 250, 200)),
    ((70, 0, 0), (170, 255, 255)), ((0, 0, 80), (255, 255, 255)), ((30, 60, 0), (255, 170, 210)),
    ((60, 60, 0), (160, 200, 255)),
)


@dataclass(frozen=True)
class Subject:
    """One picture of the world and how the training set shows it."""

    word: str
    caption: str
    kind: str  # "duplicated", "likeness" or "novel"
    source: str  # where its pixels come from, in words
    copies: int = 1  # files holding it (duplicated); members of the family (likeness, novel)


def _colour(name: str) -> Image.Image:
    if name == "stereo_motorcycle":
        from skimage import data

        return Image.fromarray(data.stereo_motorcycle()[0], "RGB")
    return skimage_image(name)


#: Pictures frozen as they were drawn when the benchmark model was trained: scikit-image draws binary_blobs at
#: random (no seed), so the build takes them from here (64 px, the stored size) instead of drawing new ones.
FROZEN = Path(__file__).resolve().parents[2] / "benchmark" / "sources"


def _frozen(name: str, tint: int) -> Image.Image:
    path = FROZEN / f"{name}_tint{tint}.png"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the benchmark world needs its frozen {name} pictures")
    with Image.open(path) as im:
        return im.convert("RGB")


def _grey(name: str, tint: tuple) -> Image.Image:
    from skimage import data

    arr = np.asarray(getattr(data, name)())
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    grey = Image.fromarray(arr.astype(np.uint8), "L")
    return ImageOps.colorize(grey, black=tint[0], white=tint[1])


def _centre_box(im: Image.Image) -> tuple[float, float, float]:
    w, h = im.size
    side = min(w, h)
    return (w - side) / 2, (h - side) / 2, side


def _regions() -> list[tuple[str, Image.Image, tuple[float, float, float]]]:
    """(description, picture, square box) of every candidate duplicated subject, in a fixed order."""
    out = []
    astronaut = _colour("astronaut")
    for x, y in ((0, 0), (256, 0), (0, 256), (256, 256)):
        out.append((f"skimage.data.astronaut region ({x}, {y}, 256)", astronaut, (x, y, 256)))
    hubble = _colour("hubble_deep_field")
    for y in (0, 291, 582):
        for x in (0, 355, 710):
            out.append((f"skimage.data.hubble_deep_field region ({x}, {y}, 290)", hubble, (x, y, 290)))
    retina = _colour("retina")
    for x, y in ((0, 0), (705, 0), (0, 705), (705, 705)):
        out.append((f"skimage.data.retina region ({x}, {y}, 705)", retina, (x, y, 705)))
    ihc = _colour("immunohistochemistry")
    for x, y in ((0, 0), (256, 0), (0, 256), (256, 256)):
        out.append((f"skimage.data.immunohistochemistry region ({x}, {y}, 256)", ihc, (x, y, 256)))
    for name in ("colorwheel", "logo"):
        im = _colour(name)
        out.append((f"skimage.data.{name}", im, _centre_box(im)))
    greys = ("camera", "moon", "coins", "clock", "brick", "grass", "gravel", "page", "text", "cell", "horse",
             "binary_blobs", "checkerboard")
    for shift in range(3):  # each grey picture in three tints: the pool the distinct subjects are chosen from
        for k, name in enumerate(greys):
            t = (k + 5 * shift) % len(TINTS)
            im = _frozen(name, t) if name == "binary_blobs" else _grey(name, TINTS[t])
            out.append((f"skimage.data.{name}, tint {t}", im, _centre_box(im)))
    colour = [r for r in out if "hubble" not in r[0] and "tint" not in r[0]]
    for roll in (1, 2):  # colour pictures with their channels rotated (RGB -> GBR -> BRG): new colour pictures
        for name, im, box in colour:
            rolled = Image.fromarray(np.roll(np.asarray(im.convert("RGB")), roll, axis=2), "RGB")
            out.append((f"{name}, channels rotated {roll}", rolled, box))
    return out


def _distinct_regions(count: int) -> list[str]:
    """The first ``count`` candidate regions (in :func:`_regions` order) that are all at least
    :data:`MIN_SUBJECT_DISTANCE` apart (tiled l2 at the model's 32 px), so that a copy of one subject is never a
    near copy of another: the ground truth stays unambiguous."""
    from inspector.extraction import pairwise_tiled_l2

    regions = _regions()
    pixels = np.stack([np.asarray(_square(im, box).resize((32, 32), Image.Resampling.BICUBIC), dtype=np.float64)
                       / 255 for _, im, box in regions])
    d = pairwise_tiled_l2(pixels)
    chosen: list[int] = []
    for i in range(len(regions)):
        if all(d[i, j] >= MIN_SUBJECT_DISTANCE for j in chosen):
            chosen.append(i)
    if len(chosen) < count:
        raise ValueError(f"only {len(chosen)} distinct subjects, {count} needed")
    return [regions[i][0] for i in chosen[:count]]


def _novel_image(rng: np.random.Generator, kind: str) -> Image.Image:
    if kind in ("circles", "squares", "triangles"):
        return shape_image(rng, kind)
    scale = 4
    s = STORED_SIZE * scale
    c1, c2 = (tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(2))
    im = Image.new("RGB", (s, s), c1)
    draw = ImageDraw.Draw(im)
    if kind == "stripes":
        width = rng.uniform(0.04, 0.15) * s
        offset = rng.uniform(0, 2 * width)
        horizontal = rng.random() < 0.5
        pos = -offset
        while pos < s:
            box = (0, pos, s, pos + width) if horizontal else (pos, 0, pos + width, s)
            draw.rectangle(box, fill=c2)
            pos += 2 * width
    elif kind == "rings":
        cx, cy = rng.uniform(0.2, 0.8, 2) * s
        step = rng.uniform(0.04, 0.1) * s
        r = 1.5 * s
        k = 0
        while r > 0:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=c2 if k % 2 else c1)
            r -= step
            k += 1
    elif kind == "checks":
        cell = rng.uniform(0.08, 0.25) * s
        ox, oy = rng.uniform(0, cell, 2)
        for i in range(-1, int(s / cell) + 2):
            for j in range(-1, int(s / cell) + 2):
                if (i + j) % 2:
                    x, y = i * cell - ox, j * cell - oy
                    draw.rectangle((x, y, x + cell, y + cell), fill=c2)
    elif kind == "dots":
        for _ in range(int(rng.integers(8, 30))):
            r = rng.uniform(0.02, 0.06) * s
            cx, cy = rng.uniform(0, s, 2)
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif kind == "waves":
        amp = rng.uniform(0.03, 0.1) * s
        period = rng.uniform(0.2, 0.6) * s
        phase = rng.uniform(0, 2 * np.pi)
        gap = rng.uniform(0.1, 0.2) * s
        xs = np.linspace(0, s, 64)
        base = -gap
        while base < s + gap:
            pts = [(float(x), float(base + amp * np.sin(2 * np.pi * x / period + phase))) for x in xs]
            draw.line(pts, fill=c2, width=max(2, int(gap / 3)))
            base += gap
    else:
        raise ValueError(f"unknown novel kind {kind!r}")
    return im.resize((STORED_SIZE, STORED_SIZE), Image.Resampling.LANCZOS)


def _likeness_crops(im: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
    """Many views of one picture: crops of 35-95% of the short side, anywhere in it, half of them mirrored."""
    w, h = im.size
    out = []
    for _ in range(LIKENESS_CROPS):
        side = min(w, h) * rng.uniform(0.35, 0.95)
        left = rng.uniform(0, w - side)
        top = rng.uniform(0, h - side)
        out.append(_square(im, (left, top, side), flip=bool(rng.random() < 0.5)))
    return out


def subjects(seed: int = 0) -> list[Subject]:
    """Every prompt of the benchmark with its answer by construction, in a fixed order."""
    rng = np.random.default_rng(seed)
    regions = _distinct_regions(len(COPIES) * SUBJECTS_PER_COUNT)
    chosen = rng.permutation(len(regions))
    words = list(WORDS)
    out = []
    for k, region in enumerate(chosen):
        word = words.pop(0)
        copies = COPIES[k // SUBJECTS_PER_COUNT]
        out.append(Subject(word, f"photo of {word}", "duplicated", regions[int(region)], copies))
    for name in LIKENESS_SOURCES:
        word = words.pop(0)
        out.append(Subject(word, f"views of {word}", "likeness", f"skimage.data.{name} (random crops)",
                           LIKENESS_CROPS))
    for kind in NOVEL_KINDS:
        out.append(Subject(kind, f"colourful {kind}", "novel", f"procedural {kind}", NOVEL_PER_KIND))
    return out


def _write(folder: Path, stem: str, im: Image.Image, subject: Subject, source: str, licence: str) -> None:
    write_sample(folder, stem, im, subject.caption, source, licence, benchmark_kind=subject.kind,
                 subject=subject.word, copies=subject.copies if subject.kind == "duplicated" else 1)


def build_training_set(folder: Path, seed: int = 0) -> list[tuple[Path, str]]:
    """Write the benchmark training set into ``folder`` (replacing it); return (image path, caption) pairs."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    every = subjects(seed)
    regions = {r[0]: r for r in _regions()}
    for subject in (s for s in every if s.kind == "duplicated"):
        _, im, box = regions[subject.source]
        picture = _square(im, box)
        for k in range(subject.copies):
            _write(folder, f"dup_{subject.word}_{k:03d}", picture, subject, subject.source, SKIMAGE_LICENCE)
    for subject, name in zip((s for s in every if s.kind == "likeness"), LIKENESS_SOURCES, strict=True):
        for k, im in enumerate(_likeness_crops(_colour(name), rng)):
            _write(folder, f"views_{subject.word}_{k:03d}", im, subject, f"skimage.data.{name} (random crop {k})",
                   SKIMAGE_LICENCE)
    for subject in (s for s in every if s.kind == "novel"):
        for k in range(NOVEL_PER_KIND):
            _write(folder, f"novel_{subject.word}_{k:04d}", _novel_image(rng, subject.word), subject,
                   f"procedural {subject.word} #{k}", PROCEDURAL_LICENCE)
    return read_training_set(folder)


def read_training_set(folder: Path) -> list[tuple[Path, str]]:
    from inspector.demo.world import read_training_set as read

    return read(folder)


def pixel_digest(folder: Path) -> str:
    """sha256 over every training image's name and decoded pixels: equal for two builds with the same content,
    whatever the PNG encoder's bytes."""
    h = hashlib.sha256()
    for png in sorted(Path(folder).glob("*.png")):
        with Image.open(png) as im:
            h.update(png.name.encode())
            h.update(np.asarray(im.convert("RGB")).tobytes())
    return h.hexdigest()


def prompts(seed: int = 0) -> list[dict]:
    """The benchmark's prompts with their answers by construction (what ``prompts.json`` holds)."""
    return [asdict(s) for s in subjects(seed)]
