"""Is this image in the training set? An image a person brings (a file dropped or named, a picture pasted) is
searched in an index like a generation: its four nearest with the same distances, the same suggested verdict, the
same heatmaps. No Qt here: the window (``InspectorModel.search_images``) and ``inspector index query`` both use it.

A query image is decoded exactly as the index decoded its own files (``TrainingIndex.decode_query``), so a file
of the index asked about as a query compares at distance 0 with itself. Its record in the casebook is a finding
of kind "query" (:data:`inspector.provenance.QUERY_SCHEMA`): the decoded pixels as PNG, the original file name
(never its folder), the sha256 of the file's bytes, its size and format, and the identity of the index searched;
no seed and no model, so never a generation key. The same image asked about in the same index again is the
finding already there.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import UserError
from inspector.extraction import suggest_verdict
from inspector.provenance import PIXELS_RULE, QUERY_KIND, QUERY_SCHEMA, finding_kind, rgb_sha256
from inspector.session import Inspected, finding_from
from inspector.timestamps import utc_now

#: The largest file a query reads (bytes): a drop of a video or a disk image is refused before it is read.
QUERY_MAX_BYTES = 256 * 2**20
#: Neighbours shown for a query, as for a generation.
QUERY_NEIGHBOURS = 4
#: The name a pasted picture goes by (it has no file).
PASTED_NAME = "pasted image"


class NotAnImageError(UserError):
    """A source that is not an image at all (a text file, an empty file): the window adds what it can take."""


@dataclass(frozen=True)
class PastedImage:
    """An image that is not a file: its encoded bytes (the window encodes a pasted picture as PNG) and a name."""

    data: bytes
    name: str = PASTED_NAME


#: What a query is asked about: an image file's path, or a pasted image.
QuerySource = str | os.PathLike | PastedImage


@dataclass
class QueryImage:
    """One query image, read and decoded: ``pixels`` (H x W x 3 uint8) as the index decodes files; ``width`` and
    ``height`` the image's own size in pixels (after EXIF orientation), ``sha256`` that of the file's bytes."""

    name: str
    origin: str  # "file" or "clipboard"
    sha256: str
    size_bytes: int
    width: int
    height: int
    format: str
    pixels: np.ndarray


@dataclass
class QueryOutcome:
    """What a search gave: one :class:`Inspected` per image searched (in the order asked), and one line per
    source that could not be searched (nothing of those was compared or recorded)."""

    items: list[Inspected] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    not_images: int = 0  # of the problems, sources that are not images at all


def is_query(item: Inspected | Any) -> bool:
    """Whether a shown item (or a finding) is a query image rather than a generation."""
    return finding_kind(getattr(item, "provenance", None)) == QUERY_KIND


def source_name(source: QuerySource) -> str:
    """The name a source is shown by: a file's name (never its folder), or the pasted image's name."""
    return source.name if isinstance(source, PastedImage) else Path(source).name


def not_an_image(path: str | os.PathLike) -> str | None:
    """Why a file is not an image to search, from a look at its header (cheap enough for the window's UI thread,
    as a drop arrives); None when Pillow recognises it (decoding it may still fail: the search says so)."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        return "it is a folder" if p.is_dir() else "no such file"
    try:
        with Image.open(p):
            return None
    except UnidentifiedImageError:
        return "not an image file Pillow can read"
    except Image.DecompressionBombError:
        return None  # an image: the search refuses it as too large, in its words
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    except (SyntaxError, ValueError) as exc:
        return f"the image is damaged ({exc})"


def read_source(source: QuerySource) -> tuple[bytes, str, str]:
    """(bytes, name, origin) of a source; a file is refused before it is read when it is missing, a folder or
    larger than :data:`QUERY_MAX_BYTES`.

    Raises
    ------
    UserError
        In plain words, naming the file.
    """
    if isinstance(source, PastedImage):
        data, name, origin = bytes(source.data), source.name, "clipboard"
    else:
        path = Path(source)
        name, origin = path.name, "file"
        if path.is_dir():
            raise UserError(f"{path} is a folder, not an image file: drop or name image files")
        if not path.is_file():
            raise UserError(f"{path}: no such image file")
        try:
            size = path.stat().st_size
            if size > QUERY_MAX_BYTES:
                raise UserError(f"{name} is {size / 2**20:.0f} MB, too large to search (at most "
                                f"{QUERY_MAX_BYTES // 2**20} MB): make a smaller copy and search that")
            data = path.read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > QUERY_MAX_BYTES:
        raise UserError(f"{name} is {len(data) / 2**20:.0f} MB, too large to search (at most "
                        f"{QUERY_MAX_BYTES // 2**20} MB)")
    return data, name, origin


def load_query(index: Any, source: QuerySource) -> QueryImage:
    """Read and decode one source as ``index`` decodes its files.

    Raises
    ------
    UserError
        Missing, unreadable, not an image, damaged, too large, or too small to compare: one line naming it.
    """
    from inspector.training_index.decode import DecodeError
    from inspector.training_index.search import MIN_WORKING_SIZE

    data, name, origin = read_source(source)
    try:
        image, (width, height), fmt = index.decode_query(data)
    except DecodeError as exc:
        if exc.kind == "too-large":
            raise UserError(f"{name} is too large to search ({exc.reason}): make a smaller copy and search "
                            "that") from None
        error = NotAnImageError if exc.kind in ("not-an-image", "empty", "unsupported") else UserError
        raise error(f"{name} was not searched: {exc.reason}") from None
    pixels = np.asarray(image, dtype=np.uint8)
    if min(pixels.shape[:2]) < MIN_WORKING_SIZE:
        raise UserError(f"{name} is {width} x {height} px: too small to compare (at least {MIN_WORKING_SIZE} px "
                        "on its short side)")
    return QueryImage(name=name, origin=origin, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data),
                      width=int(width), height=int(height), format=fmt or "", pixels=pixels)


def query_record(query: QueryImage, index_identity: dict[str, Any]) -> dict[str, Any]:
    """The provenance of a query finding: what the image was and which index it was searched in."""
    from PIL import Image

    from inspector import __version__

    h, w = query.pixels.shape[:2]
    return {
        "schema": QUERY_SCHEMA,
        "kind": QUERY_KIND,
        "file_name": query.name,
        "origin": query.origin,
        "file_sha256": query.sha256,
        "file_bytes": query.size_bytes,
        "format": query.format,
        "width": query.width,
        "height": query.height,
        # The pixels compared and stored: the image itself, or a large JPEG reduced while decoding.
        "decoded_width": int(w),
        "decoded_height": int(h),
        "pixels_sha256": rgb_sha256(Image.fromarray(query.pixels, "RGB")),
        "pixels_sha256_rule": PIXELS_RULE,
        "index": index_identity,
        "searched_at": utc_now(),
        "inspector_version": __version__,
    }


def _png(pixels: np.ndarray) -> bytes:
    """The decoded pixels as a plain PNG (no text chunks, so the same image always gives the same bytes)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def inspect_queries(index: Any, index_source: str, queries: Sequence[QueryImage], k: int = QUERY_NEIGHBOURS, *,
                    rank_by: str = "tiled_l2", prompts: str | None = None) -> list[Inspected]:
    """Each query with its ``k`` nearest in ``index`` (ordered by tiled l2, as a generation's, unless
    ``rank_by`` says otherwise: ``TrainingIndex.query``) and the suggested verdict, as the window shows a
    generation; ``position`` is the order asked."""
    if not queries:
        return []
    identity = index.identity()
    found = index.query([q.pixels for q in queries], k=k, rank_by=rank_by, prompts=prompts)
    items = []
    for position, (query, neighbours) in enumerate(zip(queries, found, strict=True)):
        items.append(Inspected(position=position, seed=0, image=query.pixels, png=_png(query.pixels),
                               provenance=query_record(query, identity), neighbours=neighbours,
                               suggestion=suggest_verdict(neighbours, role=index.role), index=identity,
                               index_source=index_source))
    return items


def search_images(index: Any, index_source: str, sources: Sequence[QuerySource],
                  k: int = QUERY_NEIGHBOURS) -> QueryOutcome:
    """Search ``index`` (opened from ``index_source``) for each source; a source that cannot be searched is one
    line in ``problems`` and nothing else."""
    outcome = QueryOutcome()
    loaded = []
    for source in sources:
        try:
            loaded.append(load_query(index, source))
        except UserError as exc:
            outcome.problems.append(str(exc))
            outcome.not_images += isinstance(exc, NotAnImageError)
    outcome.items = inspect_queries(index, index_source, loaded, k)
    return outcome


def query_words(item: Inspected) -> str:
    """A query named for the person: 'coffee.jpg (640 x 480 px, sha256 3f2a9c01bd…)'."""
    p = item.provenance
    return f"{p.get('file_name', PASTED_NAME)} ({p.get('width')} x {p.get('height')} px, sha256 " \
           f"{str(p.get('file_sha256', ''))[:10]}…)"


def record_query(book: Any, item: Inspected, notes: str = "") -> tuple[int, bool]:
    """Put a query in the casebook as a finding of kind "query" (unlabeled); returns (finding id, True) when the
    same image searched in the same index is there already (that finding is kept, nothing is added)."""
    if not is_query(item):
        raise ValueError("record_query records query images only; a generation is recorded by its run")
    finding = finding_from(item)
    finding.notes = notes or finding.notes
    digest = hashlib.sha256(finding.image_png).hexdigest()
    content = (item.index or {}).get("content_hash")
    for summary in book.findings(image_sha256=digest):
        old = book.get(summary.id)
        if is_query(old) and (old.index or {}).get("content_hash") == content:
            return summary.id, True
    return book.record(finding), False
