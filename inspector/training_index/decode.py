"""Turning a source's bytes into what the index stores: sha256, canonical pixels, feature, thumbnail, caption.

This runs in the decoding worker processes, so it imports nothing heavy (no torch, no faiss). Every failure
becomes a plain-words reason, never an exception out of :func:`decode_chunk`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import struct
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from inspector.fileio import write_atomic
from inspector.images import MAX_PIXELS, center_crop_square, to_rgb
from inspector.training_index.features import compact_features
from inspector.training_index.sources import (
    MissingImageError,
    SourceRef,
    TruncatedError,
    read_bytes,
    read_source,
)

#: Longest side of a display thumbnail, in pixels.
THUMBNAIL_SIDE = 128
THUMBNAIL_QUALITY = 88
#: JPEGs are decoded in DCT draft mode to no less than this many times the largest size needed. Two keeps the
#: canonical form within about 0.003 normalized l2 of a full decode (measured on a 2048 px photograph).
DRAFT_MARGIN = 2
#: Keys read from a JSON sidecar, in order of preference (img2dataset writes "caption" and "url"). A caption
#: comes from the first of: these keys in a .json sidecar, the whole .txt sidecar, the file's name (README).
CAPTION_KEYS = ("caption", "text", "TEXT", "title")
#: Parquet rows: img2dataset's parquet output keeps the caption in "txt" as well as in "caption".
PARQUET_CAPTION_KEYS = (*CAPTION_KEYS, "txt")
LICENCE_KEYS = ("licence", "license", "LICENSE", "LICENCE")
ORIGIN_KEYS = ("url", "URL", "source", "origin")
#: How many sha256 values a worker remembers, to skip decoding exact duplicates it has already decoded.
_SEEN_LIMIT = 200_000
_seen: set[str] = set()


class DecodeError(ValueError):
    """An image that cannot be used. ``kind``: empty, not-an-image, damaged, too-large, unsupported, unreadable."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class DecodeSettings:
    """What the decoder produces for each new image."""

    comparison_size: int
    feature_grid: int
    keep_pixels: bool  # send the canonical uint8 pixels back (the index stores them)
    index_dir: str | None  # the index folder thumbnails are written into (``None``: do not write them)
    semantic_size: int | None = None  # side of the CLIP input, when a semantic model is configured


@dataclass
class Decoded:
    """The result for one source. ``kind``/``reason`` are set when it was skipped.

    When ``sha256`` is set but ``feature`` is ``None``, the worker had already decoded these exact bytes and
    only the hash, size and caption came back.
    """

    ref: SourceRef
    sha256: str | None = None
    kind: str | None = None
    reason: str | None = None
    width: int = 0
    height: int = 0
    format: str = ""
    caption: str = ""
    caption_source: str | None = None  # where the caption came from, in words (e.g. "the file name")
    licence: str | None = None
    origin: str | None = None
    feature: np.ndarray | None = None  # float16 (D,)
    pixels: np.ndarray | None = None  # uint8 S x S x 3
    semantic_input: np.ndarray | None = None  # uint8 R x R x 3
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.kind is None


def open_image(data: bytes, need_side: int | None = None) -> tuple[Image.Image, tuple[int, int], str]:
    """Decode image bytes safely into an 8-bit RGB image with EXIF orientation applied.

    Parameters
    ----------
    data
        The file's bytes.
    need_side
        Smallest short side (pixels) the caller needs; JPEGs are decoded in draft mode down to about
        ``DRAFT_MARGIN`` times this. ``None`` decodes at full size.

    Returns
    -------
    (image, (width, height), format)
        The decoded RGB image, the original size after EXIF orientation, and Pillow's format name.

    Raises
    ------
    DecodeError
        With ``kind`` and a plain-words ``reason``.
    """
    if not data:
        raise DecodeError("empty", "the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise DecodeError("too-large", f"{width}x{height} pixels is too large to decode safely "
                                               f"(decompression bomb?); the limit is {MAX_PIXELS:,} pixels")
            fmt = im.format or ""
            orientation = im.getexif().get(0x0112, 1)
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            if fmt == "JPEG" and need_side:
                target = DRAFT_MARGIN * need_side
                scale = target / min(im.size)
                if scale < 0.5:  # draft only reduces by powers of two; below 1/2 there is nothing to gain
                    im.draft(None, (math.ceil(im.width * scale), math.ceil(im.height * scale)))
            im.load()
            if orientation in (2, 3, 4, 5, 6, 7, 8):  # exif_transpose copies even upright images: ask first
                im = ImageOps.exif_transpose(im)
            return to_rgb(im), (width, height), fmt
    except DecodeError:
        raise
    except UnidentifiedImageError:
        raise DecodeError("not-an-image", "not an image file Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError("too-large", f"refused as a decompression bomb ({exc})") from None
    except MemoryError:
        raise DecodeError("too-large", "not enough memory to decode it") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error) as exc:
        text = str(exc) or type(exc).__name__
        if "not supported" in text or "unsupported" in text.lower() or "cannot identify" in text:
            raise DecodeError("unsupported", f"unsupported image variant ({text})") from None
        raise DecodeError("damaged", f"the image is damaged or truncated ({text})") from None


def read_sidecars(ref: SourceRef, out: Decoded) -> None:
    """Fill caption, licence and origin from the source's .json / .txt sidecars (JSON wins for the caption), a
    parquet row's columns, or, when none gives a caption, the file's name (titled works: "Morning Cup.png")."""
    if ref.meta:
        key = _first_key(ref.meta, PARQUET_CAPTION_KEYS)
        if key:
            out.caption, out.caption_source = ref.meta[key].strip(), f"the parquet column '{key}'"
        out.licence = _first_text(ref.meta, LICENCE_KEYS)
        out.origin = _first_text(ref.meta, ORIGIN_KEYS)
    if "json" in ref.sidecars:
        car = ref.sidecars["json"]
        try:
            meta = json.loads(read_bytes(car.path, car.offset, car.size).decode("utf-8", "replace"))
        except (OSError, ValueError) as exc:
            out.notes.append(f"caption sidecar of {ref.source} is not readable JSON ({exc})")
            meta = None
        if isinstance(meta, dict):
            key = _first_key(meta, CAPTION_KEYS)
            if key:
                out.caption, out.caption_source = meta[key].strip(), f"the .json sidecar's '{key}'"
            out.licence = _first_text(meta, LICENCE_KEYS)
            out.origin = _first_text(meta, ORIGIN_KEYS)
        elif meta is not None:
            out.notes.append(f"caption sidecar of {ref.source} is JSON but not an object of keys")
    if not out.caption and "txt" in ref.sidecars:
        car = ref.sidecars["txt"]
        try:
            out.caption = read_bytes(car.path, car.offset, car.size).decode("utf-8", "replace").strip()
        except OSError as exc:
            out.notes.append(f"caption sidecar of {ref.source} is not readable ({exc.strerror or exc})")
        if out.caption:
            out.caption_source = "the .txt sidecar"
    if not out.caption and not ref.meta:
        title = file_name_caption(ref.member or ref.path)
        if title:
            out.caption, out.caption_source = title, "the file name"


def file_name_caption(path: str) -> str:
    """A caption from a file's name, for titled works without a sidecar: "Morning Cup.png" -> "Morning Cup".

    Names that are only digits (img2dataset's keys, camera counters) say nothing, and give "".
    """
    base = os.path.basename(os.fsencode(path).decode("utf-8", "replace"))
    stem = base.split(".", 1)[0] if base.startswith(".") else os.path.splitext(base)[0]
    stem = stem.strip()
    return "" if not stem or stem.isdigit() else stem


def _first_key(meta: dict, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = meta.get(key)
        if isinstance(value, str) and value.strip():
            return key
    return None


def _first_text(meta: dict, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = meta.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def thumbnail_relpath(sha256: str) -> str:
    """Where an image's thumbnail lives inside the index folder (named by content, so rewrites are harmless)."""
    return f"thumbs/{sha256[:2]}/{sha256}.jpg"


_made_dirs: set[str] = set()


def write_thumbnail(im: Image.Image, path: str) -> None:
    """Write a JPEG thumbnail (longest side THUMBNAIL_SIDE) atomically, unless it is already there."""
    if os.path.exists(path):
        return
    folder = os.path.dirname(path)
    if folder not in _made_dirs:
        os.makedirs(folder, exist_ok=True)
        _made_dirs.add(folder)
    w, h = im.size
    scale = min(1.0, THUMBNAIL_SIDE / max(w, h))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # Like Image.thumbnail without its defensive copy: an area-averaging box reduction by the largest whole
    # factor, then bicubic for the rest. For a display thumbnail that is as good as Lanczos, and much cheaper.
    thumb = im if size == im.size else im.resize(size, Image.Resampling.BICUBIC, reducing_gap=1.0)
    # Not durable (no fsync): a thumbnail is made again from its image, and an fsync per image would bound the
    # build's speed by the disk's. Another worker writing the same thumbnail (same content) first is fine.
    try:
        write_atomic(path, lambda stream: thumb.save(stream, format="JPEG", quality=THUMBNAIL_QUALITY),
                     overwrite=False, durable=False)
    except FileExistsError:
        pass


def canonical_uint8(im: Image.Image, size: int) -> np.ndarray:
    """``inspector.images.canonical`` as uint8 (the same values exactly), without the float round trip.

    A test holds the two to equality; the shared function stays the definition.
    """
    im = center_crop_square(to_rgb(im))
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None)
    return np.asarray(im, dtype=np.uint8)


def pixels_from_sources(
    rows: list[tuple[str, str, bytes | None, int | None, int, str | None]], sha256: str, need_side: int, size: int
) -> tuple[np.ndarray | None, list[str]]:
    """An indexed image's canonical pixels (size x size x 3 uint8) read again from where it was found.

    ``rows`` are its ``sources`` rows (source, path, raw_path, offset, size, member), tried in turn: a file that
    is gone, changed (sha256 differs) or no longer decodes is passed over with a reason. Returns the pixels (None
    when no source serves) and the reasons of the sources passed over.
    """
    problems = []
    for source, path, raw, offset, n_bytes, member in rows:
        real = os.fsdecode(raw) if raw is not None else path
        try:
            data = read_source(real, member, offset, n_bytes)
        except OSError as exc:
            problems.append(f"{source}: {exc.strerror or exc}")
            continue
        if hashlib.sha256(data).hexdigest() != sha256:
            problems.append(f"{source}: the file has changed since it was indexed")
            continue
        try:
            im, _, _ = open_image(data, need_side)
        except DecodeError as exc:
            problems.append(f"{source}: {exc.reason}")
            continue
        return canonical_uint8(im, size), problems
    return None, problems


def needed_side(settings: DecodeSettings) -> int:
    """The short side the decoder needs, before the draft margin."""
    return max(settings.comparison_size, (THUMBNAIL_SIDE + 1) // DRAFT_MARGIN, settings.semantic_size or 0)


def decode_one(ref: SourceRef, settings: DecodeSettings, use_cache: bool = False) -> Decoded:
    """Read, hash and decode one source; never raises for a bad file (the result carries the reason)."""
    out = Decoded(ref)
    try:
        data = read_source(ref.path, ref.member, ref.offset, ref.size)
    except TruncatedError as exc:
        out.kind, out.reason = "damaged", str(exc)
        return out
    except MissingImageError as exc:
        out.kind, out.reason = "empty", str(exc)
        return out
    except OSError as exc:
        out.kind, out.reason = "unreadable", f"cannot read it: {exc.strerror or exc}"
        return out
    out.sha256 = hashlib.sha256(data).hexdigest()
    read_sidecars(ref, out)
    if use_cache and out.sha256 in _seen:
        return out  # the same bytes were decoded before: the index stores them once
    try:
        im, (out.width, out.height), out.format = open_image(data, needed_side(settings))
        pixels = canonical_uint8(im, settings.comparison_size)
        out.feature = compact_features(pixels, settings.feature_grid).astype(np.float16)
        if settings.keep_pixels:
            out.pixels = pixels
        if settings.semantic_size:
            out.semantic_input = canonical_uint8(im, settings.semantic_size)
        if settings.index_dir is not None:
            write_thumbnail(im, os.path.join(settings.index_dir, thumbnail_relpath(out.sha256)))
    except DecodeError as exc:
        out.kind, out.reason = exc.kind, exc.reason
        out.sha256 = None
        return out
    if use_cache:
        if len(_seen) >= _SEEN_LIMIT:
            _seen.clear()
        _seen.add(out.sha256)
    return out


def decode_chunk(refs: list[SourceRef], settings: DecodeSettings) -> list[Decoded]:
    """Decode a chunk of sources in order (the unit of work of a decoding process)."""
    return [decode_one(ref, settings, use_cache=True) for ref in refs]


def reset_cache() -> None:
    """Forget which images this process has decoded (done when a build starts in-process)."""
    _seen.clear()


def worker_init(parent: int | None = None) -> None:
    """Set up a decoding process: Ctrl+C is the main process's to handle, and the process exits by itself
    when the main process dies (even by SIGKILL), instead of waiting forever for work.

    ``parent`` is the main process's id, passed in by it: a process that finishes starting only after the main
    process has died has already been adopted, so its own ``getppid()`` would name the adopter, not the parent.
    """
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reset_cache()
    if os.name == "posix":
        parent = os.getppid() if parent is None else parent
        threading.Thread(target=_exit_with_parent, args=(parent,), name="parent-watch", daemon=True).start()


def _exit_with_parent(parent: int, interval_s: float = 0.5) -> None:
    import time

    while os.getppid() == parent:  # an orphan is adopted by another process: its parent id changes
        time.sleep(interval_s)
    os._exit(1)
