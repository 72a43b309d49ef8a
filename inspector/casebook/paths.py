"""Where the casebook lives when the person has not chosen a file."""

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
