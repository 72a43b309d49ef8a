"""Publishing an export and the files beside it (manifest, signatures) as one: each is written beside its target
under a temporary name (:mod:`inspector.fileio`), then all are published together, so that nothing half-written
ever appears and nothing the person did not ask to replace is replaced."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from inspector.errors import UserError, write_failure
from inspector.fileio import atomic_open, fsync_folder, publish, temporary_path, write_part

__all__ = ["atomic_text_file", "exists_message", "publish_all", "temporary_path", "user_write_part"]


def exists_message(path: Path) -> str:
    return f"{path} already exists: choose another file name, or pass --overwrite to replace it"


@contextmanager
def atomic_text_file(path: Path, newline: str | None = None, overwrite: bool = True) -> Iterator[IO[str]]:
    """A UTF-8 text file that appears at ``path`` only when the block finishes without an error (see
    :func:`inspector.fileio.atomic_open`); write failures are :class:`UserError` in words."""
    try:
        with atomic_open(path, "w", overwrite=overwrite, newline=newline) as stream:
            yield stream
    except FileExistsError:
        raise UserError(exists_message(path)) from None
    except OSError as exc:
        raise write_failure(exc, path) from None


def user_write_part(path: Path, data: bytes) -> Path:
    """:func:`inspector.fileio.write_part`, its failure a :class:`UserError` naming ``path``."""
    try:
        return write_part(path, data)
    except OSError as exc:
        raise write_failure(exc, path) from None


def publish_all(parts: list[tuple[Path, Path]], overwrite: bool) -> None:
    """Publish several finished temporary files (``(tmp, target)`` pairs) as one: when one cannot be published,
    those already published by this call are removed again (without ``overwrite`` nothing existed there
    before) and every temporary file is deleted.

    Raises
    ------
    UserError
        A target exists (without ``overwrite``) or cannot be written.
    """
    done: list[Path] = []
    try:
        for tmp, target in parts:
            publish(tmp, target, overwrite=overwrite)
            done.append(target)
    except FileExistsError:
        failed = parts[len(done)][1]
        _undo(parts, done, overwrite)
        raise UserError(exists_message(failed)) from None
    except OSError as exc:
        failed = parts[len(done)][1]
        _undo(parts, done, overwrite)
        raise write_failure(exc, failed) from None
    for folder in {target.parent for _, target in parts}:
        fsync_folder(folder)


def _undo(parts: list[tuple[Path, Path]], done: list[Path], overwrite: bool) -> None:
    if not overwrite:  # what this call published did not exist before: take it back
        for target in done:
            target.unlink(missing_ok=True)
    for tmp, _ in parts:
        tmp.unlink(missing_ok=True)
