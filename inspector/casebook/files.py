"""Look at a file before SQLite touches it, and open the right kind of connection to it.

A file that turns out not to be a casebook must come out byte-identical, so the first look reads the SQLite
header with plain file I/O: the magic string, ``application_id`` (offset 68) and ``user_version`` (offset 60).
Only a file marked as a casebook (or an empty one) is ever opened by SQLite.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path

from inspector.casebook.errors import (
    CasebookError,
    CasebookNotFoundError,
    NewerCasebookError,
    NotACasebookError,
    ReadOnlyCasebookError,
)
from inspector.casebook.schema import APPLICATION_ID, SCHEMA_VERSION
from inspector.fileio import sqlite_uri

SQLITE_MAGIC = b"SQLite format 3\x00"
HEADER_SIZE = 100


@dataclass(frozen=True)
class FileState:
    """What the header says. ``kind`` is "missing", "empty" (0 bytes: a new casebook) or "casebook"."""

    kind: str
    version: int = 0
    writable: bool = True
    why_read_only: str = ""


def _read_only_reason(path: Path) -> str:
    """Why ``path`` (an existing file) cannot be written, or "" when it can.

    Write bits are checked as well as ``os.access``: the superuser may write anything, but a file without
    write bits was made read-only on purpose and is treated so.
    """
    mode = path.stat().st_mode
    if not os.access(path, os.W_OK) or not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        return f"the file is read-only (make it writable, e.g. chmod u+w {path})"
    folder = path.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"its folder {folder} is read-only (SQLite needs to write a journal beside the file)"
    return ""


def inspect_file(path: Path) -> FileState:
    """Classify ``path`` from its header alone, without opening it as a database.

    Raises
    ------
    NotACasebookError
        A folder, a file that is not SQLite, or a SQLite database without the casebook mark.
    NewerCasebookError
        A casebook whose schema version is newer than this inspector knows.
    """
    if not path.exists():
        return FileState("missing")
    if path.is_dir():
        raise NotACasebookError(f"{path} is a folder, not a casebook file: give the path of a .db file")
    try:
        with open(path, "rb") as f:
            header = f.read(HEADER_SIZE)
    except OSError as exc:
        raise CasebookError(f"cannot read {path}: {exc.strerror or exc}") from None
    why = _read_only_reason(path)
    if not header:
        return FileState("empty", writable=not why, why_read_only=why)
    if not header.startswith(SQLITE_MAGIC) or len(header) < HEADER_SIZE:
        raise NotACasebookError(
            f"{path} is not a casebook (not a SQLite database at all): choose a casebook file, or a new file"
            " name to start one; the inspector leaves this file as it is"
        )
    application_id = int.from_bytes(header[68:72], "big")
    version = int.from_bytes(header[60:64], "big", signed=True)
    if application_id != APPLICATION_ID:
        raise NotACasebookError(
            f"{path} is a SQLite database but not a casebook: choose a casebook file, or a new file name to"
            " start one; the inspector leaves this file as it is"
        )
    check_version(path, version)
    return FileState("casebook", version=version, writable=not why, why_read_only=why)


def check_version(path: Path, version: int) -> None:
    """Refuse a casebook from a newer inspector (its schema may mean things this version would break)."""
    if version > SCHEMA_VERSION:
        raise NewerCasebookError(
            f"{path} was written by a newer Memorization Inspector (casebook version {version}; this one reads"
            f" up to {SCHEMA_VERSION}): update the inspector to open it"
        )


def connect(path: Path, state: FileState, *, readonly: bool, timeout: float) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), usable from several threads (the caller
    serialises access), waiting up to ``timeout`` seconds for a lock held by another program.

    A file that cannot be written is opened with ``mode=ro``; when it has no write-ahead log beside it, also
    ``immutable=1``, so that reading it creates no file at all.
    """
    if state.kind == "missing" and readonly:
        raise CasebookNotFoundError(f"no casebook at {path}")
    if state.writable:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    else:
        if not readonly:
            raise ReadOnlyCasebookError(
                f"cannot write to the casebook {path}: {state.why_read_only}; or open it only to read"
            )
        params = {"mode": "ro"} if Path(f"{path}-wal").exists() else {"mode": "ro", "immutable": 1}
        conn = sqlite3.connect(sqlite_uri(path, **params), uri=True, timeout=timeout, isolation_level=None,
                               check_same_thread=False)
    return conn
