"""Files on disk, done one way everywhere: writing a file so that no reader ever sees half of it, hashing a
file, and naming a file to SQLite.

Writing: the content goes to a hidden temporary file in the target's own folder (so the final rename never
crosses file systems), is flushed to the disk (``fsync``), then published under the target's name, and the
folder is flushed so the rename itself survives a power cut. Published means renamed over the target
(``overwrite=True``), or hard-linked to it (``overwrite=False``), which fails with :class:`FileExistsError`
instead of replacing a file, even one another program created while this one was being written. On any failure
(an exception from the caller's writer, a full disk, a cancel) the temporary file is removed and the target is
left exactly as it was.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from inspector.errors import user_error

#: The end of every temporary file name this module makes (``.NAME.RANDOM.part``), for tests and clean-ups.
TEMPORARY_SUFFIX = ".part"

#: Bytes read at a time when hashing a file (1 MiB).
HASH_BLOCK = 1 << 20


def temporary_path(path: str | os.PathLike) -> Path:
    """A hidden name beside ``path`` that no other writer uses: ``.NAME.<12 hex digits>.part``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}{TEMPORARY_SUFFIX}")


def fsync_folder(folder: str | os.PathLike) -> None:
    """Flush a folder's entries to the disk, so that a rename into it survives a power cut. Some systems cannot
    open a folder for this (Windows), which is not an error: there the rename is as durable as the system makes
    it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish(tmp: str | os.PathLike, path: str | os.PathLike, *, overwrite: bool = True) -> None:
    """Give the finished file ``tmp`` the name ``path`` (same folder), atomically.

    With ``overwrite`` a rename, which replaces ``path``. Without it a hard link and the removal of ``tmp``,
    which raises :class:`FileExistsError` (``tmp`` left for the caller) rather than replace a ``path`` that
    exists; on a file system without hard links, a check then a rename (a small window, but no worse than
    the check alone).
    """
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (some network and FAT file systems)
        if os.path.lexists(path):
            raise FileExistsError(17, "File exists", os.fspath(path)) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


@contextmanager
def _temporary_file(path: Path, mode: str, durable: bool, encoding: str,
                    newline: str | None) -> Iterator[tuple[IO[Any], Path]]:
    """A new temporary file beside ``path`` (its stream and name), flushed (and fsynced when ``durable``) when the
    block ends; removed, and a fixable failure raised in words, when the block or the writing fails."""
    if mode not in ("wb", "w"):
        raise ValueError(f"only new files are written: mode 'wb' or 'w', not {mode!r}")
    tmp = temporary_path(path)
    try:
        if mode == "wb":
            stream: IO[Any] = open(tmp, "xb")  # closed below; mode 0666 & ~umask, like any file
        else:
            stream = open(tmp, "x", encoding=encoding, newline=newline)
        with stream:
            yield stream, tmp
            stream.flush()
            if durable:
                os.fsync(stream.fileno())
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        _raise_in_words(exc, path)
        raise


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", *, overwrite: bool = True, durable: bool = True,
                encoding: str = "utf-8", newline: str | None = None) -> Iterator[IO[Any]]:
    """A new file that appears at ``path`` only when the ``with`` block finishes without an exception.

    Parameters
    ----------
    path
        The target; its folder must exist.
    mode
        ``"wb"`` (bytes) or ``"w"`` (text, in ``encoding`` with ``newline`` as :func:`open` takes them).
    overwrite
        Replace an existing ``path``; ``False`` raises :class:`FileExistsError` instead (also when ``path``
        appears while the block runs), leaving the other file untouched.
    durable
        ``fsync`` the file and its folder. ``False`` only for files that can be made again (thumbnails): the
        rename is still atomic for running programs, but a power cut may lose the file.

    Raises
    ------
    OSError
        The folder cannot be written, the disk is full, ... (the temporary file is gone, ``path`` unchanged).
        Those the person can fix are :class:`inspector.errors.NotWritableError` / :class:`DiskFullError`
        (OSErrors too), in words that name ``path``.
    """
    path = Path(path)
    with _temporary_file(path, mode, durable, encoding, newline) as (stream, tmp):
        yield stream
    _publish_new(tmp, path, overwrite, durable)


@contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True, durable: bool = True) -> Iterator[Path]:
    """For a library that writes a file by its name (a memory map, FAISS, SQLite): a temporary name beside
    ``path`` to write to; when the block finishes without an exception the file is fsynced and published at
    ``path`` as :func:`atomic_open` does, else removed."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb") as written:
                os.fsync(written.fileno())
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        _raise_in_words(exc, path)
        raise
    _publish_new(tmp, path, overwrite, durable)


def _publish_new(tmp: Path, path: Path, overwrite: bool, durable: bool) -> None:
    try:
        publish(tmp, path, overwrite=overwrite)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        _raise_in_words(exc, path)
        raise
    if durable:
        fsync_folder(path.parent)


def write_atomic(path: str | os.PathLike, data: bytes | str | Callable[[IO[bytes]], object], *,
                 overwrite: bool = True, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`) and return ``path``.

    ``data``: bytes; text (written as UTF-8, newlines as given); or a function that writes the content into the
    binary stream it is given (``lambda f: image.save(f, format="PNG")``), for content too large to hold twice.
    """
    path = Path(path)
    with atomic_open(path, "wb", overwrite=overwrite, durable=durable) as stream:
        _fill(stream, data)
    return path


def write_part(path: str | os.PathLike, data: bytes | str | Callable[[IO[Any]], object], *, mode: str = "wb",
               newline: str | None = None) -> Path:
    """``data`` (as :func:`write_atomic` takes it; with ``mode="w"`` a function gets a UTF-8 text stream) in a
    new temporary file beside ``path``, fsynced, for a caller that publishes several files together
    (:func:`publish` each, then :func:`fsync_folder`); returns the temporary file. Nothing is left behind when
    writing fails."""
    with _temporary_file(Path(path), mode, True, "utf-8", newline) as (stream, tmp):
        _fill(stream, data)
    return tmp


def _fill(stream: IO[Any], data: bytes | str | Callable[[IO[Any]], object]) -> None:
    if isinstance(data, str):
        stream.write(data if isinstance(stream, io.TextIOBase) else data.encode("utf-8"))
    elif isinstance(data, (bytes, bytearray, memoryview)):
        stream.write(data)
    else:
        data(stream)


def _raise_in_words(exc: BaseException, path: Path | str | os.PathLike) -> None:
    """A write that failed for a reason the person can fix (no permission, read-only, disk full) is raised as
    the :mod:`inspector.errors` words for it, naming ``path``; still an ``OSError`` with the same errno."""
    if isinstance(exc, OSError) and not isinstance(exc, FileExistsError):
        translated = user_error(exc, path)
        if translated is not None and translated is not exc:
            raise translated from exc


# ------------------------------------------------------------------------------------------------- hashing


def sha256_and_size(path: str | os.PathLike) -> tuple[str, int]:
    """The sha256 (64 hex digits) of a file's bytes and its size in bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 (64 hex digits) of a file's bytes, read in 1 MiB blocks (any size of file, little memory)."""
    return sha256_and_size(path)[0]


# ------------------------------------------------------------------------------------------------- SQLite


def sqlite_uri(path: str | os.PathLike, **params: str | int) -> str:
    """A SQLite ``file:`` URI for ``path`` with query ``params`` (``mode="ro"``, ``immutable=1``).

    The absolute path is percent-encoded: a folder named ``idx#1``, ``a?b`` or ``100%`` would otherwise end the
    path early (SQLite reads ``#`` and ``?`` as the URI's fragment and query, and ``%xx`` as an escape) and
    open, or create, another file.
    """
    absolute = Path(path).resolve().as_posix()
    if not absolute.startswith("/"):  # a Windows drive path: file:///C:/...
        absolute = "/" + absolute
    query = "&".join(f"{quote(str(k))}={quote(str(v))}" for k, v in params.items())
    return f"file:{quote(absolute, safe='/:')}" + (f"?{query}" if query else "")
