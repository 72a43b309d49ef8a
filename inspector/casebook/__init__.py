"""The casebook: labeled findings in one SQLite file that never loses a label (DESIGN.md, "Casebook").

>>> from inspector.casebook import Casebook, default_casebook_path
>>> with Casebook.open(default_casebook_path()) as book:       # doctest: +SKIP
...     finding_id = book.record(finding)
...     book.label(finding_id, "memorized", reviewer="ana")

The file opens in any SQLite tool (Datasette shows its tables and thumbnails); ``verify`` checks that nothing
was changed outside the API. No Qt here.

Other packages use the names exported here, never the modules inside (an import-linter contract in
pyproject.toml checks it), so the casebook's files can be reorganised without touching its users.
"""

from __future__ import annotations

from inspector.casebook.errors import (
    CasebookBusyError,
    CasebookError,
    CasebookNotFoundError,
    FindingNotFoundError,
    NewerCasebookError,
    NotACasebookError,
    ReadOnlyCasebookError,
)
from inspector.casebook.merge import (
    ADJUDICATED,
    MERGE_REVIEWER,
    Agreement,
    Disagreement,
    MergeReport,
    agreement,
    disagreements,
    merge_casebooks,
    reviewer_labels,
)
from inspector.casebook.paths import DATA_DIR_ENV, data_dir, default_casebook_path, is_casebook_file
from inspector.casebook.pictures import THUMBNAIL_SIDE
from inspector.casebook.schema import APPLICATION_ID, SCHEMA_VERSION
from inspector.casebook.store import Casebook, fts_query, model_identity, set_busy_timeout, verdict_neighbour
from inspector.casebook.verify import Problem, VerifyReport

__all__ = [
    "ADJUDICATED",
    "APPLICATION_ID",
    "DATA_DIR_ENV",
    "MERGE_REVIEWER",
    "SCHEMA_VERSION",
    "THUMBNAIL_SIDE",
    "Agreement",
    "Casebook",
    "CasebookBusyError",
    "CasebookError",
    "CasebookNotFoundError",
    "Disagreement",
    "FindingNotFoundError",
    "MergeReport",
    "NewerCasebookError",
    "NotACasebookError",
    "Problem",
    "ReadOnlyCasebookError",
    "VerifyReport",
    "agreement",
    "data_dir",
    "default_casebook_path",
    "disagreements",
    "fts_query",
    "is_casebook_file",
    "merge_casebooks",
    "model_identity",
    "reviewer_labels",
    "set_busy_timeout",
    "verdict_neighbour",
]
