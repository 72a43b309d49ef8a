"""The pictures a casebook stores: PNG bytes only, each with its sha256, and a small thumbnail per generation
(so that lists, Datasette and reports show images without decoding the full generation)."""

from __future__ import annotations

import hashlib
import io
import logging

from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Longest side of the thumbnail stored with each generation, in pixels.
THUMBNAIL_SIDE = 128


def sha256_hex(data: bytes) -> str:
    """sha256 of ``data`` as 64 lowercase hex characters."""
    return hashlib.sha256(data).hexdigest()


def png_or_none(data: bytes, what: str) -> bytes | None:
    """``data`` as PNG bytes (re-encoded when it is another image format), or None when it is no image."""
    if data.startswith(PNG_MAGIC):
        return data
    try:
        with Image.open(io.BytesIO(data)) as im:
            out = io.BytesIO()
            im.save(out, format="PNG")
            return out.getvalue()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        logger.warning("%s is not an image (%s); stored without it", what, exc)
        return None


def make_thumbnail(image_png: bytes, side: int = THUMBNAIL_SIDE) -> tuple[bytes, int, int]:
    """A PNG thumbnail at most ``side`` pixels on its longer side, and the image's width and height.

    Raises
    ------
    ValueError
        When ``image_png`` is not a PNG image Pillow can decode.
    """
    if not image_png.startswith(PNG_MAGIC):
        raise ValueError("a finding's image_png must hold PNG bytes (it starts with something else)")
    try:
        with Image.open(io.BytesIO(image_png)) as im:
            im.load()
            width, height = im.size
            thumb = im.convert("RGBA" if "A" in im.getbands() else "RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise ValueError(f"a finding's image_png is not a readable PNG image ({exc})") from None
    thumb.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, format="PNG")
    return out.getvalue(), width, height
