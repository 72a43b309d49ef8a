"""Safe image loading and the canonical comparison form.

Every distance in the product is computed on the *canonical* form of an image: RGB float32 in [0, 1],
centre-cropped to a square and resized to ``size`` x ``size`` pixels (DESIGN.md, "Distances").
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Largest image (in pixels) we agree to decode; larger files are treated as decompression bombs.
MAX_PIXELS = 16_000 * 16_000


class ImageLoadError(ValueError):
    """A file could not be used as an image; the message says why in plain words."""


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file safely and return it fully decoded, EXIF orientation applied.

    Raises
    ------
    ImageLoadError
        When the file is missing, empty, not an image, truncated or too large to decode safely.
    """
    path = Path(path)
    if not path.exists():
        raise ImageLoadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageLoadError(f"{path}: is a folder, not an image file")
    if path.stat().st_size == 0:
        raise ImageLoadError(f"{path}: the file is empty (0 bytes)")
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise ImageLoadError(
                    f"{path}: {im.width}x{im.height} pixels is too large to decode safely (decompression bomb?)"
                )
            im.load()
            return ImageOps.exif_transpose(im)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(f"{path}: not an image file PIL can read") from None
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{path}: refused as a decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"{path}: the image is damaged or truncated ({exc})") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode (palette, alpha, CMYK, 16-bit, grayscale) to 8-bit RGB.

    Transparent pixels are composited on white, which is how a viewer shows them.
    """
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        hi = arr.max() if arr.size else 1.0
        scale = 65535.0 if hi > 255 else 255.0
        arr = np.clip(arr / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def center_crop_square(im: Image.Image) -> Image.Image:
    """Crop the largest centred square out of ``im``."""
    w, h = im.size
    side = min(w, h)
    left = (w - side) // 2
    top = (h - side) // 2
    return im.crop((left, top, left + side, top + side))


def canonical(image: Image.Image | np.ndarray | str | os.PathLike, size: int = 256) -> np.ndarray:
    """Return the canonical comparison form of an image.

    Parameters
    ----------
    image
        A PIL image (any mode), an H x W x 3 array (uint8, or float in [0, 1]), or a path to an image file.
    size
        Side of the square output in pixels (default 256; the demo uses its native 32).

    Returns
    -------
    numpy.ndarray
        ``size`` x ``size`` x 3 float32 array with values in [0, 1].
    """
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(as_uint8(image))
    im = center_crop_square(to_rgb(image))
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None)
    return np.asarray(im, dtype=np.float32) / 255.0


def as_uint8(array: np.ndarray) -> np.ndarray:
    """Convert an H x W x 3 array (uint8, or float in [0, 1]) to uint8 RGB."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array
    return np.clip(np.round(array.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def as_float(array: np.ndarray) -> np.ndarray:
    """Convert an H x W x C array (uint8 means value / 255, or float in [0, 1]) to float64 in [0, 1]."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"images must be uint8 or float in [0, 1], got dtype {array.dtype}")
    return array.astype(np.float64)
