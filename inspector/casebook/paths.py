"""Where the casebook lives when the person has not chosen a file, and which paths are its own files."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that replaces the user data folder (tests, portable installs).
DATA_DIR_ENV = "INSPECTOR_DATA_DIR"
APP_NAME = "memorization-inspector"
DEFAULT_CASEBOOK_NAME = "casebook.db"


def data_dir() -> Path:
    """The inspector's folder for user data: ``$INSPECTOR_DATA_DIR`` when set, else the platform's user data
    folder (e.g. ``~/.local/share/memorization-inspector`` on Linux). Not created here."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return platformdirs.user_data_path(APP_NAME, appauthor=False)


def default_casebook_path() -> Path:
    """The casebook used when no ``--casebook FILE`` is given: ``casebook.db`` in :func:`data_dir`.

    The file and its folder are created on first open (``Casebook.open(default_casebook_path())``).
    """
    return data_dir() / DEFAULT_CASEBOOK_NAME


def is_casebook_file(path: str | os.PathLike, casebook_path: str | os.PathLike) -> bool:
    """Whether ``path`` names the casebook at ``casebook_path`` or one of SQLite's files beside it (``-wal``,
    ``-shm``, ``-journal``), through any spelling, symbolic link or hard link."""
    path = Path(path)
    book = Path(casebook_path).expanduser()
    for suffix in ("", "-wal", "-shm", "-journal"):
        candidate = book.with_name(book.name + suffix)
        if path.expanduser().resolve() == candidate.resolve():
            return True
        try:
            if os.path.samefile(path, candidate):  # a hard link to the casebook
                return True
        except OSError:  # one of them does not exist: not the same file
            pass
    return False
