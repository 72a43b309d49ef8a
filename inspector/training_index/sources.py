"""Finding training images: a folder tree (with caption sidecars) or img2dataset output (the files layout, .tar
shards, or .parquet files holding the image bytes).

The walk is a generator with bounded memory: it holds one folder listing or one shard's member table at a time.
It yields :class:`SourceRef` for each candidate image and :class:`Skip` for each thing that cannot be used
(broken links, link loops, unreadable folders, damaged shards, formats the index does not read). Its order is
sorted and deterministic, so a resumed build sees the same sources in the same order.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Extensions read as images (anything Pillow decodes among them works).
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".webp", ".bmp", ".dib", ".gif", ".tif", ".tiff",
    ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".jp2", ".j2k", ".jpx", ".qoi",
})
#: Caption and metadata sidecars (next to an image, or inside a shard under the same key).
SIDECAR_EXTENSIONS = (".json", ".txt")
#: Files that are expected in training folders and are not images: passed over without a word.
IGNORED_EXTENSIONS = frozenset({
    ".txt", ".json", ".parquet", ".csv", ".tsv", ".md", ".rst", ".log", ".yaml", ".yml", ".toml", ".html",
    ".htm", ".py", ".ipynb", ".npy", ".npz", ".pt", ".db", ".sqlite", ".lock", ".sha256", ".md5",
})
ARCHIVE_EXTENSIONS = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip", ".7z", ".rar")
#: Separator between a shard's path and a member's name in a source, e.g. ``/data/00000.tar#000000012.jpg``.
MEMBER_SEPARATOR = "#"
#: Columns of a parquet file that may hold an image's bytes (img2dataset --output_format parquet names it after
#: its --encode_format: jpg, png or webp; Hugging Face datasets use an "image" struct with a "bytes" field).
PARQUET_IMAGE_COLUMNS = ("jpg", "jpeg", "png", "webp", "image", "img", "image_bytes")
#: Metadata columns read from each parquet row (the image column is read only when the row is decoded). "txt" is
#: img2dataset's caption column in parquet output; the others are the sidecar keys of decode.py.
PARQUET_META_COLUMNS = ("key", "status", "error_message", "caption", "text", "TEXT", "title", "txt",
                        "licence", "license", "LICENSE", "LICENCE", "url", "URL", "source", "origin")


class TruncatedError(OSError):
    """A shard member's bytes run past the end of the shard."""


class MissingImageError(OSError):
    """A parquet row whose image column is empty (img2dataset writes failed downloads that way)."""


@dataclass(frozen=True)
class Sidecar:
    """Where a caption sidecar's bytes are: a file, or a byte range of a tar shard."""

    path: str
    offset: int | None = None
    size: int | None = None


@dataclass(frozen=True)
class SourceRef:
    """One candidate training image: where its bytes are and where its caption sidecars are.

    ``source`` is the display name (valid UTF-8; undecodable bytes of odd file names appear as ``\\xNN``);
    ``path`` is the real file system path (a file, or the shard holding the member). A parquet row has its row
    number (from 0) in ``offset``, its key in ``member``, an estimated ``size`` (the file's bytes over its rows,
    for progress only) and its metadata columns (caption, url, licence) in ``meta``.
    """

    source: str
    path: str
    size: int
    member: str | None = None
    offset: int | None = None
    sidecars: dict[str, Sidecar] = field(default_factory=dict)
    meta: dict[str, str] | None = None

    @property
    def raw_path(self) -> bytes | None:
        """The path's bytes when ``source`` cannot spell it exactly (odd, non-UTF-8 file names)."""
        return os.fsencode(self.path) if display_name(self.path) != self.path else None


@dataclass(frozen=True)
class Skip:
    """Something under SRC that is not usable, with the reason in plain words.

    ``kind`` is one of: empty, not-an-image, damaged, too-large, unsupported, unreadable, broken-link, link-loop.
    """

    source: str
    kind: str
    reason: str


def display_name(path: str) -> str:
    """A file name as valid UTF-8 text: undecodable bytes become ``\\xNN`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _extension(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def _is_archive(name: str) -> bool:
    lower = name.lower()
    return any(lower.endswith(ext) for ext in ARCHIVE_EXTENSIONS)


def _folder_sidecars(folder: str, name: str, names: set[str]) -> dict[str, Sidecar]:
    stem = os.path.splitext(name)[0]
    found: dict[str, Sidecar] = {}
    for ext in SIDECAR_EXTENSIONS:
        for candidate in (stem + ext, name + ext):  # x.txt, or x.jpg.txt
            if candidate in names:
                found[ext[1:]] = Sidecar(os.path.join(folder, candidate))
                break
    return found


def walk(src: str | os.PathLike, exclude: list[str | os.PathLike] = ()) -> Iterator[SourceRef | Skip]:
    """Yield every candidate image under ``src`` (a folder, a single image, or a single .tar shard).

    Symbolic links to folders are followed once (a folder reached twice, e.g. through a loop, is not walked
    again); folders in ``exclude`` (e.g. the index being built) are never entered.
    """
    root = os.path.abspath(os.fspath(src))
    excluded = set()
    for folder in exclude:
        try:
            st = os.stat(folder)
            excluded.add((st.st_dev, st.st_ino))
        except OSError:
            pass
    if os.path.isfile(root):
        yield from _file(os.path.dirname(root), os.path.basename(root), {os.path.basename(root)})
        return
    yield from _folder(root, visited=set(excluded))


def _folder(root: str, visited: set[tuple[int, int]]) -> Iterator[SourceRef | Skip]:
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError as exc:
            yield _stat_skip(folder, exc)
            continue
        if (st.st_dev, st.st_ino) in visited:
            continue
        visited.add((st.st_dev, st.st_ino))
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield Skip(display_name(folder), "unreadable", f"cannot read the folder: {exc.strerror or exc}")
            continue
        names = {e.name for e in entries}
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError as exc:
                yield _stat_skip(entry.path, exc)
                continue
            if is_dir:
                subfolders.append(entry.path)
                continue
            if entry.is_symlink() and not os.path.exists(entry.path):
                yield _stat_skip(entry.path, None)
                continue
            yield from _file(folder, entry.name, names)
        stack.extend(reversed(subfolders))  # depth first, in sorted order


def _stat_skip(path: str, exc: OSError | None) -> Skip:
    name = display_name(path)
    if exc is not None and exc.errno == errno.ELOOP:
        return Skip(name, "link-loop", "symbolic link loop: the link points back to itself")
    if exc is None or exc.errno == errno.ENOENT:
        return Skip(name, "broken-link", "broken symbolic link: its target does not exist")
    return Skip(name, "unreadable", f"cannot read it: {exc.strerror or exc}")


def _file(folder: str, name: str, names: set[str]) -> Iterator[SourceRef | Skip]:
    path = os.path.join(folder, name)
    ext = _extension(name)
    try:
        st = os.stat(path)
    except OSError as exc:
        yield _stat_skip(path, exc)
        return
    if not stat.S_ISREG(st.st_mode):
        yield Skip(display_name(path), "unsupported", "not a regular file (device, pipe or socket)")
        return
    if ext == ".tar":
        yield from _shard(path)
    elif ext == ".parquet":
        yield from _parquet(path, name, names, st.st_size)
    elif ext in IMAGE_EXTENSIONS:
        yield SourceRef(display_name(path), path, st.st_size, sidecars=_folder_sidecars(folder, name, names))
    elif _is_archive(name):
        yield Skip(display_name(path), "unsupported",
                   "compressed archives are not read: extract it, or use plain .tar shards (img2dataset webdataset)")
    elif ext not in IGNORED_EXTENSIONS:
        what = f"'{ext}' files" if ext else "files without an extension"
        yield Skip(display_name(path), "unsupported",
                   f"{what} are not an image format the index reads: convert to PNG or JPEG")


def _member_key(name: str) -> tuple[str, str]:
    """webdataset's rule: the key is the path up to the first dot of the base name; the rest is the extension."""
    folder, base = os.path.split(name)
    if "." not in base:
        return name, ""
    stem, ext = base.split(".", 1)
    return os.path.join(folder, stem) if folder else stem, "." + ext.lower()


def _shard(path: str) -> Iterator[SourceRef | Skip]:
    """The image members of an uncompressed webdataset shard (key.jpg + key.txt + key.json), read in place."""
    shard = display_name(path)
    groups: dict[str, dict[str, tarfile.TarInfo]] = {}
    problem: object = None
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile() or os.path.basename(member.name).startswith("."):
                    continue
                key, ext = _member_key(member.name)
                groups.setdefault(key, {})[ext] = member
            end = tar.offset
        # tarfile stops quietly at the end of the bytes; a complete archive ends with a zero block there.
        with open(path, "rb") as f:
            f.seek(end)
            if f.read(512) != bytes(512):
                problem = "the archive ends without its end-of-archive marker"
    except (tarfile.TarError, OSError, EOFError) as exc:
        problem = exc
    if problem is not None:
        reason = f"the tar shard is damaged or truncated ({problem})"
        if groups:
            reason += f"; its first {len(groups)} samples were read"
        yield Skip(shard, "damaged", reason)
    for key in sorted(groups):
        members = groups[key]
        sidecars = {
            ext[1:]: Sidecar(path, m.offset_data, m.size) for ext, m in members.items() if ext in SIDECAR_EXTENSIONS
        }
        for ext in sorted(members):
            m = members[ext]
            if ext in IMAGE_EXTENSIONS:
                yield SourceRef(f"{shard}{MEMBER_SEPARATOR}{display_name(m.name)}", path, m.size,
                                member=m.name, offset=m.offset_data, sidecars=sidecars)


def is_parquet(path: str) -> bool:
    return path.lower().endswith(".parquet")


def _parquet_image_column(schema: Any) -> tuple[str, bool] | None:
    """(name, is_struct) of the column holding image bytes, or None when the file holds metadata only."""
    import pyarrow as pa

    for name in PARQUET_IMAGE_COLUMNS:
        index = schema.get_field_index(name)
        if index < 0:
            continue
        kind = schema.field(index).type
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            return name, False
        if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0:
            return name, True
    return None


def _parquet(path: str, name: str, names: set[str], file_size: int) -> Iterator[SourceRef | Skip]:
    """The rows of an img2dataset parquet shard (``--output_format parquet``: image bytes in a column).

    img2dataset also writes ``00000.parquet`` *metadata* beside each ``00000.tar`` shard or ``00000/`` folder:
    those are passed over without a word. Rows whose download failed (status other than "success", or no image
    bytes) are not images of the set and are passed over too, as they are in the other layouts.
    """
    shard = display_name(path)
    stem = name[: -len(".parquet")]
    if f"{stem}.tar" in names or stem in names:
        return
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        yield Skip(shard, "unsupported", "reading .parquet files needs pyarrow: pip install pyarrow")
        return
    try:
        pf = pq.ParquetFile(path)
        image = _parquet_image_column(pf.schema_arrow)
        if image is None:
            yield Skip(shard, "unsupported", "a parquet file without image bytes (metadata only: urls and "
                                             "captions): download the images first, e.g. with img2dataset")
            return
        columns = [c for c in PARQUET_META_COLUMNS if pf.schema_arrow.get_field_index(c) >= 0]
        rows = max(1, pf.metadata.num_rows)
        row = 0
        for group in range(pf.num_row_groups):
            table = pf.read_row_group(group, columns=columns).to_pydict() if columns else {}
            count = pf.metadata.row_group(group).num_rows
            for i in range(count):
                meta = {c: table[c][i] for c in columns if table[c][i] is not None}
                status = meta.get("status")
                if status is None or str(status) == "success":
                    key = str(meta.get("key") or f"row{row}")
                    yield SourceRef(f"{shard}{MEMBER_SEPARATOR}{display_name(key)}", path,
                                    max(1, file_size // rows), member=key, offset=row,
                                    meta={k: str(v) for k, v in meta.items()})
                row += 1
    except (OSError, ValueError, TypeError, KeyError) as exc:
        yield Skip(shard, "damaged", f"the parquet file cannot be read ({type(exc).__name__}: {exc})")


class _ParquetReader:
    """Reads one row's image bytes, keeping the last few row groups' image columns in memory (img2dataset writes
    row groups of 100 rows, so a chunk of rows costs one read per group). Thread-safe."""

    GROUPS_KEPT = 4

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: OrderedDict[str, tuple[float, Any, list[int], tuple[str, bool]]] = OrderedDict()
        self._groups: OrderedDict[tuple[str, float, int], list[bytes | None]] = OrderedDict()

    def _file(self, path: str) -> tuple[float, Any, list[int], tuple[str, bool]]:
        import pyarrow.parquet as pq

        mtime = os.stat(path).st_mtime
        known = self._files.get(path)
        if known is not None and known[0] == mtime:
            return known
        pf = pq.ParquetFile(path)
        image = _parquet_image_column(pf.schema_arrow)
        if image is None:
            raise MissingImageError(f"{display_name(path)} has no image column")
        starts, total = [], 0
        for group in range(pf.num_row_groups):
            starts.append(total)
            total += pf.metadata.row_group(group).num_rows
        starts.append(total)
        self._files[path] = (mtime, pf, starts, image)
        while len(self._files) > self.GROUPS_KEPT:
            self._files.popitem(last=False)
        return self._files[path]

    def read(self, path: str, row: int) -> bytes:
        import bisect

        with self._lock:
            try:
                mtime, pf, starts, (column, is_struct) = self._file(path)
                if not 0 <= row < starts[-1]:
                    raise MissingImageError(f"row {row} is past the end of the parquet file ({starts[-1]} rows)")
                group = bisect.bisect_right(starts, row) - 1
                key = (path, mtime, group)
                values = self._groups.get(key)
                if values is None:
                    values = pf.read_row_group(group, columns=[column]).column(0).to_pylist()
                    if is_struct:
                        values = [v.get("bytes") if isinstance(v, dict) else None for v in values]
                    self._groups[key] = values
                    while len(self._groups) > self.GROUPS_KEPT:
                        self._groups.popitem(last=False)
                value = values[row - starts[group]]
            except (ValueError, TypeError, KeyError) as exc:  # pyarrow's errors for a damaged file
                raise OSError(f"the parquet file cannot be read ({type(exc).__name__}: {exc})") from None
        if not value:
            raise MissingImageError("this parquet row holds no image bytes (a failed download?)")
        return bytes(value)


_parquet_reader = _ParquetReader()


def read_source(path: str, member: str | None, offset: int | None, size: int | None) -> bytes:
    """The bytes of one source: a file, a tar shard member (``size`` bytes at ``offset``), or a parquet row
    (row number ``offset`` of the image column)."""
    if member is not None and is_parquet(path):
        return _parquet_reader.read(path, int(offset or 0))
    return read_bytes(path, offset, size if member else None)


def total_bytes(src: str | os.PathLike, exclude: list[str | os.PathLike] = ()) -> int:
    """Bytes of the image files and shards under ``src`` (a quick pass for the progress bar's ETA)."""
    root = os.path.abspath(os.fspath(src))
    if os.path.isfile(root):
        return os.path.getsize(root)
    visited = set()
    for folder in exclude:
        try:
            st = os.stat(folder)
            visited.add((st.st_dev, st.st_ino))
        except OSError:
            pass
    total = 0
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in visited:
                continue
            visited.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                for entry in it:
                    if entry.name.startswith("."):
                        continue
                    try:
                        if entry.is_dir(follow_symlinks=True):
                            stack.append(entry.path)
                        elif _extension(entry.name) in IMAGE_EXTENSIONS or _extension(entry.name) in (".tar",
                                                                                                     ".parquet"):
                            total += entry.stat(follow_symlinks=True).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def read_bytes(path: str, offset: int | None = None, size: int | None = None) -> bytes:
    """The bytes of a file, or of ``size`` bytes at ``offset`` inside it (a shard member)."""
    with open(path, "rb") as f:
        if offset is None:
            return f.read()
        f.seek(offset)
        data = f.read(size)
    if size is not None and len(data) != size:
        raise TruncatedError(f"the shard ends {size - len(data)} bytes before this member does (truncated)")
    return data


def source_root(src: str | os.PathLike) -> Path:
    """The absolute path a build records as its SRC."""
    return Path(os.path.abspath(os.fspath(src)))
