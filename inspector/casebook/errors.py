"""What can go wrong with a casebook file, in words the person at the keyboard can act on."""

from __future__ import annotations

from inspector.errors import BusyError, UserError


class CasebookError(UserError):
    """A casebook cannot be opened or changed as asked; the message says why and what to do."""


class CasebookNotFoundError(CasebookError):
    """The casebook file does not exist (and was not to be created)."""


class NotACasebookError(CasebookError):
    """The file exists but is not a casebook: not SQLite at all, or a SQLite database of something else."""


class NewerCasebookError(CasebookError):
    """The casebook was written by a newer version of the inspector, with a schema this one does not know."""


class ReadOnlyCasebookError(CasebookError):
    """The casebook cannot be written: the file or its folder is read-only, or it was opened for reading."""


class FindingNotFoundError(CasebookError, KeyError):
    """No finding with that id in this casebook."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CasebookBusyError(CasebookError, BusyError):
    """Another program held the casebook locked for longer than the busy timeout (``waited`` seconds). Nothing
    was written; trying again once the other program has finished works."""

    def __init__(self, message: str, waited: float | None = None):
        BusyError.__init__(self, message, waited)
