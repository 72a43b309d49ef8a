"""Finding training images: a folder tree (with caption sidecars) or img2dataset output (files or .tar shards).

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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

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


class TruncatedError(OSError):
    """A shard member's bytes run past the end of the shard."""


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
    ``path`` is the real file system path (a file, or the shard holding the member).
    """

    source: str
    path: str
    size: int
    member: str | None = None
    offset: int | None = None
    sidecars: dict[str, Sidecar] = field(default_factory=dict)

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
                        elif _extension(entry.name) in IMAGE_EXTENSIONS or _extension(entry.name) == ".tar":
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
