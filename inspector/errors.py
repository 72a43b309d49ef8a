"""Exceptions that carry a plain-words message for the person at the keyboard, and the one translation of the
system's errors that the person can fix (no permission, a read-only disk, a full disk, a busy database) into them.

The policy (docs/architecture.md, "Errors"): a condition the person caused or can fix is a :class:`UserError`
with one line that says what was wrong and what to do; the command line prints it and exits 2. Write sites that
know the path they write wrap the write in :func:`writing`; whatever escapes them is translated once more by
``inspector.cli.main`` with the command's output path, so no such condition ends as a bare exception name.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class UserError(Exception):
    """Bad input or usage: the command line exits 2 and prints only this message."""


class _TranslatedOSError(UserError, OSError):
    """A :class:`UserError` that is still the :class:`OSError` it came from (same ``errno`` and ``filename``), so
    code that catches ``OSError`` around a write keeps working."""

    def __init__(self, message: str, errno_: int | None = None, filename: str | None = None):
        OSError.__init__(self, errno_, message, filename)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotWritableError(_TranslatedOSError):
    """A file or folder cannot be written: no permission, or a read-only file system."""


class DiskFullError(_TranslatedOSError):
    """No room to write: the disk (or the quota, or the file-size limit) is full. Nothing stored was lost."""


class BusyError(UserError):
    """Another program holds a database locked for longer than the wait allowed (``waited``, in seconds)."""

    def __init__(self, message: str, waited: float | None = None):
        super().__init__(message)
        self.waited = waited


#: errno values that mean "this place cannot be written", and the words for each.
_NOT_WRITABLE = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted (the file or folder is protected, e.g. immutable)",
    errno.EROFS: "it is on a read-only file system",
}
#: errno values that mean "no room to write": what ran out.
_FULL = {
    errno.ENOSPC: "the disk is full",
    errno.EFBIG: "the disk is full or a file-size limit is reached",
}
if hasattr(errno, "EDQUOT"):  # not on Windows
    _FULL[errno.EDQUOT] = "the disk quota is used up"

# SQLite's primary result codes (the low byte of an extended code), as Python >= 3.11 reports them.
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY, _SQLITE_FULL, _SQLITE_CANTOPEN = 5, 6, 8, 13, 14
#: SQLite's extended I/O errors for a write the disk refused: SQLite reports ENOSPC as SQLITE_FULL, but a write
#: refused outright (a file-size limit, EFBIG; a full disk met by fsync or by growing the shared-memory file)
#: comes back as one of these: IOERR_WRITE, IOERR_FSYNC, IOERR_TRUNCATE, IOERR_SHMSIZE.
_SQLITE_WRITE_REFUSED = {778, 1034, 1546, 4874}

NOTHING_LOST = "nothing stored was lost"


def _where(path: str | os.PathLike | None) -> Path | None:
    """The place to name: the folder, for a hidden temporary file (``.NAME.xxxx.part``) a write made."""
    if path is None or str(path) == "":
        return None
    p = Path(path)
    if p.name.startswith(".") and p.name.endswith((".part", ".tmp", ".creating")) and not p.exists():
        return p.parent
    return p


def full_message(path: str | os.PathLike | None, what: str = "the disk is full") -> str:
    """The one line for a write that found no room: what ran out, where, and that nothing stored was lost."""
    where = _where(path)
    at = f" at {where}" if where is not None else ""
    return f"{what}{at}: free space and run again; {NOTHING_LOST}"


def not_writable_message(path: str | os.PathLike | None, why: str = "permission denied", verb: str = "write") -> str:
    """The one line for a place that cannot be written (``verb`` "write"), or used at all (``verb`` "open")."""
    where = _where(path)
    if where is None:
        return f"cannot {verb} there: {why}: choose a folder you can write to"
    if verb != "write":
        return f"cannot {verb} {where}: {why}: check its permissions, or choose another"
    target = f"in the folder {where}" if where.is_dir() else f"{where}"
    return f"cannot write {target}: {why}: choose a folder you can write to, or make this one writable"


def busy_message(path: str | os.PathLike | None, what: str = "") -> str:
    """The one line for a database another program keeps locked."""
    name = f"{what} {path}".strip() if path is not None else (what or "the database")
    return f"another program is writing {name}; try again when it finishes"


def user_error(exc: BaseException, path: str | os.PathLike | None = None, *, verb: str = "write") -> UserError | None:
    """The :class:`UserError` for a system error the person can fix, naming ``path`` (else the exception's own
    file name); None when ``exc`` is not one (then it is a bug, or a condition this policy does not cover).
    ``verb``: "write" when ``exc`` came from writing ``path``; "open" when that is not known (the words for a
    permission error then fit a read as well).

    Covers ``OSError`` with errno EACCES, EPERM, EROFS (:class:`NotWritableError`), ENOSPC, EDQUOT, EFBIG
    (:class:`DiskFullError`), ENAMETOOLONG; and ``sqlite3`` errors SQLITE_FULL and the I/O errors of a refused
    write (:class:`DiskFullError`), SQLITE_BUSY / SQLITE_LOCKED (:class:`BusyError`), SQLITE_READONLY and
    SQLITE_CANTOPEN. A :class:`UserError` is returned as it is.
    """
    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, OSError):
        where = path if path is not None else exc.filename
        filename = os.fspath(where) if where is not None else None
        if exc.errno in _FULL:
            return DiskFullError(full_message(where, _FULL[exc.errno]), exc.errno, filename)
        if exc.errno in _NOT_WRITABLE:
            return NotWritableError(not_writable_message(where, _NOT_WRITABLE[exc.errno], verb), exc.errno, filename)
        if exc.errno == errno.ENAMETOOLONG:
            return UserError(f"the name {where} is too long for this file system: choose a shorter one")
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None or type(exc).__module__ != "sqlite3":
        return None
    primary = code & 0xFF
    filename = os.fspath(path) if path is not None else None
    if primary == _SQLITE_FULL:
        return DiskFullError(full_message(path), errno.ENOSPC, filename)
    if code in _SQLITE_WRITE_REFUSED:
        return DiskFullError(full_message(path, "the disk is full or refused a write"), errno.EIO, filename)
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return BusyError(busy_message(path))
    if primary == _SQLITE_READONLY:
        return NotWritableError(not_writable_message(path, "the database is read-only (the file, its folder or "
                                                           "the disk cannot be written)"), errno.EROFS)
    if primary == _SQLITE_CANTOPEN:
        at = f" {path}" if path is not None else ""
        return UserError(f"cannot open the database{at}: check that its folder exists and can be written")
    return None


def write_failure(exc: OSError, path: str | os.PathLike) -> UserError:
    """The one line for a failed write of ``path``: :func:`user_error`'s words, else "cannot write PATH: why"."""
    return user_error(exc, path) or UserError(f"cannot write {path}: {exc.strerror or exc}")


@contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Turn a failed write of ``path`` inside the block into the :class:`UserError` :func:`user_error` gives
    (other exceptions pass unchanged). What the block already wrote elsewhere is left as it is."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        translated = user_error(exc, path)
        if translated is None:
            raise
        raise translated from exc


def check_writable_folder(folder: str | os.PathLike) -> None:
    """Refuse, before any slow work, an output folder that cannot be written: the folder itself, or where it
    does not exist yet the nearest folder above it that does (it will be created there).

    A real probe (a hidden file created and removed), not the permission bits: the superuser passes every
    ``os.access`` check, yet a read-only mount or an immutable folder still refuses it.

    Raises
    ------
    NotWritableError, DiskFullError
        With the folder named and what to do.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return  # a file in the way: the caller's own check says so in its words
    probe = existing / f".inspector-write-test.{os.getpid()}.part"
    with writing(existing):
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
