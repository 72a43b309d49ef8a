"""The :class:`Casebook`: findings, their neighbours and their label history in one SQLite file.

Every write is one ``BEGIN IMMEDIATE`` transaction, so a second writer (the GUI and a headless scan at once)
waits for the first instead of failing, and a crash leaves either all of a write or none of it. Every write
also appends to the label-event hash chain (see :mod:`inspector.casebook.chain`); labels are never updated in
place without an event saying so.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from inspector.casebook import jsontext
from inspector.casebook.chain import GENESIS, event_hash
from inspector.casebook.errors import (
    CasebookBusyError,
    CasebookError,
    CasebookNotFoundError,
    FindingNotFoundError,
    NotACasebookError,
    ReadOnlyCasebookError,
)
from inspector.casebook.files import FileState, check_version, connect, inspect_file
from inspector.casebook.keys import generation_key
from inspector.casebook.pictures import make_thumbnail, png_or_none, sha256_hex
from inspector.casebook.schema import ALL_LABELS, APPLICATION_ID, RUN_KINDS, SCHEMA_VERSION, migrate
from inspector.casebook.verify import RUN_COLUMNS, VerifyReport, run_note, run_state, verify_casebook
from inspector.errors import BusyError, NotWritableError, busy_message, user_error
from inspector.fileio import fsync_folder, publish, temporary_path
from inspector.findings import SUGGESTIONS, UNLABELED, Finding, FindingSummary, LabelEvent, Neighbour, Run
from inspector.provenance import GENERATION_KIND, QUERY_KIND, QUERY_SCHEMA
from inspector.timestamps import utc_now

logger = logging.getLogger(__name__)

#: How long a write waits for another program's write to finish, in seconds.
DEFAULT_BUSY_TIMEOUT = 30.0
_busy_timeout = DEFAULT_BUSY_TIMEOUT


def set_busy_timeout(seconds: float) -> None:
    """How long, in seconds (>= 0), a casebook opened from now on without its own ``timeout`` waits for another
    program's write to finish (the command line's ``--timeout``). Default :data:`DEFAULT_BUSY_TIMEOUT`."""
    global _busy_timeout
    if not seconds >= 0:
        raise ValueError(f"the busy timeout must be 0 or more seconds, got {seconds}")
    _busy_timeout = float(seconds)


ORDERS = {"recorded": "id", "nearest": "nearest_tiled_l2", "updated": "updated_at"}

_SUMMARY_COLUMNS = (
    "id", "prompt", "negative_prompt", "seed", "label", "reviewer", "notes", "suggested_verdict",
    "suggestion_reason", "nearest_tiled_l2", "nearest_l2", "model_id", "model_sha256", "image_sha256",
    "created_at", "updated_at", "run_id", "generation_key",
)
#: A finding is a query image when its provenance record says so (inspector.provenance.QUERY_SCHEMA): the cheap
#: substring test first, so that listing thousands of generations parses none of their records.
_QUERY_TEST = (f"instr(provenance, '\"{QUERY_SCHEMA}\"') > 0 AND json_valid(provenance)"
               f" AND json_extract(provenance, '$.schema') = '{QUERY_SCHEMA}'")
#: Summary fields computed from other columns, by name.
_SUMMARY_EXPRESSIONS = {
    "kind": f"CASE WHEN {_QUERY_TEST} THEN '{QUERY_KIND}' ELSE '{GENERATION_KIND}' END",
    "file_name": f"CASE WHEN {_QUERY_TEST} THEN json_extract(provenance, '$.file_name') END",
}
_SUMMARY_COLUMNS = (*_SUMMARY_COLUMNS, *_SUMMARY_EXPRESSIONS)


def _summary_sql(columns: Sequence[str]) -> str:
    """The SELECT list of a summary: plain columns, and the computed fields as expressions named like them."""
    return ", ".join(f"{_SUMMARY_EXPRESSIONS[c]} AS {c}" if c in _SUMMARY_EXPRESSIONS else c for c in columns)


_NEIGHBOUR_COLUMNS = (
    "rank", "item_id", "source", "caption", "duplicate_count", "l2", "tiled_l2", "ssim", "calibrated_l2",
    "index_id", "thumbnail_path", "image_sha256", "licence", "semantic_similarity", "thumbnail_png",
    "comparison_size", "pixels_png", "index_role", "url", "caption_source",
)
_EVENT_COLUMNS = (
    "id", "finding_id", "action", "label", "previous_label", "reviewer", "note", "created_at", "image_sha256",
    "prev_hash", "hash", "undoes", "run_id", "finding_prev_hash",
)
_INT64 = (-(2**63), 2**63 - 1)


def model_identity(provenance: Mapping[str, Any]) -> tuple[str, str]:
    """The model's (id, weights sha256) from a provenance record, "" where it does not say.

    Understands the generation engine's ``{"model": {"source": ..., "name": ..., "sha256": ...}}`` (the id is
    the source, as ``--model`` takes it; else an explicit "id", the name or a path), ``{"model": "id"}``, and
    flat ``model_id`` / ``model_source`` / ``model_sha256`` keys.
    """
    model = provenance.get("model")
    ident: Any = ""
    sha: Any = ""
    if isinstance(model, Mapping):
        ident = model.get("id") or model.get("source") or model.get("name") or model.get("path") or ""
        sha = model.get("sha256") or model.get("weights_sha256") or ""
    elif isinstance(model, str):
        ident = model
    ident = ident or provenance.get("model_id") or provenance.get("model_source") or ""
    sha = sha or provenance.get("model_sha256") or provenance.get("weights_sha256") or ""
    return str(ident), str(sha)


def fts_query(text: str) -> str | None:
    """A safe FTS5 query for free text: every word must occur (the last one as a prefix, for typing).

    Punctuation and FTS operators in ``text`` are treated as word breaks, never as syntax. None when the text
    has no word at all.
    """
    words = re.findall(r"\w+", text)
    if not words:
        return None
    return " ".join(f'"{w}"' for w in words[:-1]) + (" " if len(words) > 1 else "") + f'"{words[-1]}"*'


@dataclass
class _Prepared:
    """A finding turned into rows, ready to insert (all the slow work done outside the write lock)."""

    finding: Finding
    row: dict[str, Any]
    neighbours: list[dict[str, Any]]


class _ChainWriter:
    """Appends label events inside one write transaction, keeping the chain's tail in hand."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        last = conn.execute("SELECT id, hash FROM label_events ORDER BY id DESC LIMIT 1").fetchone()
        self.last_id, self.last_hash = last if last else (0, GENESIS)
        self.count = conn.execute("SELECT count(*) FROM label_events").fetchone()[0]

    def append(self, **fields: Any) -> LabelEvent:
        event = {"id": self.last_id + 1, "created_at": utc_now(), "undoes": None, "note": "", "reviewer": "",
                 "previous_label": None, "run_id": None, "finding_prev_hash": None, **fields}
        event["prev_hash"] = self.last_hash
        finding_id = event["finding_id"]
        if finding_id is not None:  # the finding's own chain: its previous event (GENESIS for its first)
            own = self.conn.execute("SELECT hash FROM label_events WHERE finding_id = ? ORDER BY id DESC LIMIT 1",
                                    (finding_id,)).fetchone()
            event["finding_prev_hash"] = own[0] if own else GENESIS
        event["hash"] = event_hash(self.last_hash, event)
        names = ", ".join(_EVENT_COLUMNS)
        marks = ", ".join("?" * len(_EVENT_COLUMNS))
        self.conn.execute(f"INSERT INTO label_events ({names}) VALUES ({marks})",
                          [event[c] for c in _EVENT_COLUMNS])
        if finding_id is not None:
            self.conn.execute("UPDATE findings SET event_head = ? WHERE id = ?", (event["hash"], finding_id))
        self.last_id, self.last_hash = event["id"], event["hash"]
        self.count += 1
        return LabelEvent(**{c: event[c] for c in _EVENT_COLUMNS})

    def close(self) -> None:
        """Record the chain's head, so that removing the newest events is detectable too."""
        self.conn.execute("UPDATE casebook_info SET value = ? WHERE key = 'event_head'", (self.last_hash,))
        self.conn.execute("UPDATE casebook_info SET value = ? WHERE key = 'event_count'", (str(self.count),))


class Casebook:
    """A casebook file: labeled findings that never lose a label.

    Parameters
    ----------
    path
        The SQLite file. Created (with its folder) when missing, unless ``create`` is False or ``readonly``.
        ``":memory:"`` (or ``memory=True``) gives a private in-memory casebook, for tests.
    create
        Create the file when it does not exist; otherwise raise :class:`CasebookNotFoundError`.
    readonly
        Open only to read: every write raises :class:`ReadOnlyCasebookError`. Required for a file that cannot
        be written (no write permission, or a read-only folder).
    timeout
        Seconds a write waits for another program's write to finish before :class:`CasebookBusyError`; None:
        the process's setting (:func:`set_busy_timeout`, 30 s unless changed).

    Raises
    ------
    NotACasebookError, NewerCasebookError, ReadOnlyCasebookError, CasebookNotFoundError
        All subclasses of :class:`CasebookError` (a :class:`inspector.errors.UserError`), raised before
        anything is written, so a refused file is left byte-identical.

    Notes
    -----
    One instance may be shared between threads (calls are serialised). Each process opens its own.
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        memory: bool = False,
        create: bool = True,
        readonly: bool = False,
        timeout: float | None = None,
    ):
        self._lock = threading.RLock()
        self.readonly = readonly
        self.timeout = _busy_timeout if timeout is None else float(timeout)
        timeout = self.timeout
        if memory or path is None or str(path) == ":memory:":
            if path is None and not memory:
                raise ValueError("give a casebook path, or memory=True for an in-memory casebook")
            self.path: Path | None = None
            state = FileState("empty")
            conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        else:
            self.path = Path(path).expanduser()
            state = self._check_file(self.path, create=create, readonly=readonly)
            if state.kind == "missing":
                _create_file(self.path)
                state = self._check_file(self.path, create=False, readonly=readonly)
            try:
                conn = connect(self.path, state, readonly=readonly, timeout=timeout)
            except sqlite3.Error as exc:
                raise CasebookError(f"cannot open the casebook {self.path}: {exc}") from None
        self.db = sqlite_utils.Database(conn, execute_plugins=False)
        try:
            self._prepare_connection()
        except sqlite3.DatabaseError as exc:
            conn.close()
            translated = self._translate(exc)
            if translated is not exc:  # locked by another program, a full disk: not a damaged file
                raise translated from None
            raise NotACasebookError(f"{self.path} cannot be read as a casebook ({exc}): is it damaged?") from None
        except BaseException:
            conn.close()
            raise

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        create: bool = True,
        readonly: bool = False,
        timeout: float | None = None,
    ) -> Casebook:
        """Open (or create) the casebook at ``path``; see :class:`Casebook` for the parameters."""
        return cls(path, create=create, readonly=readonly, timeout=timeout)

    # --- opening ------------------------------------------------------------------------------------------

    @staticmethod
    def _check_file(path: Path, *, create: bool, readonly: bool) -> FileState:
        state = inspect_file(path)
        if state.kind == "missing":
            if readonly or not create:
                raise CasebookNotFoundError(
                    f"no casebook at {path}: check the path (a casebook is created by recording a finding)")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CasebookError(f"cannot create the folder {path.parent}: {exc.strerror or exc}") from None
        elif state.kind == "empty" and readonly:
            raise NotACasebookError(f"{path} is an empty file, not a casebook yet: record a finding into it first")
        if not state.writable and not readonly:
            raise ReadOnlyCasebookError(
                f"cannot write to the casebook {path}: {state.why_read_only}; or open it only to read")
        return state

    def _prepare_connection(self) -> None:
        conn = self.db.conn
        if self.readonly:
            self._check_identity(conn, allow_new=False)
            conn.execute("PRAGMA query_only = ON")
            return
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = FULL")  # a committed label survives a power cut, not only a crash
        if self._check_identity(conn, allow_new=True) < SCHEMA_VERSION:
            with self._write() as w:  # check again under the write lock: another program may have migrated
                version = self._check_identity(w, allow_new=True)
                if version < SCHEMA_VERSION:
                    applied = migrate(self.db, version)
                    logger.info("casebook %s: applied migrations %s", self.path, applied)
        if self.path is not None and conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            # After the schema exists: the header then already marks the file as a casebook.
            conn.execute("PRAGMA journal_mode = WAL")

    def _check_identity(self, conn: sqlite3.Connection, *, allow_new: bool) -> int:
        """Re-check, with SQLite itself, what the header said; return the schema version (0: a new file)."""
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        where = self.path if self.path is not None else "the in-memory casebook"
        if application_id == APPLICATION_ID:
            check_version(Path(str(where)), version)
            if version < SCHEMA_VERSION and not allow_new:
                raise ReadOnlyCasebookError(
                    f"{where} was written by an older Memorization Inspector (casebook version {version}):"
                    " open it once for writing to upgrade it")
            return version
        empty = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
        if empty and application_id == 0 and version == 0 and allow_new:
            return 0
        raise NotACasebookError(
            f"{where} is a SQLite database but not a casebook: choose a casebook file, or a new file name")

    # --- plumbing -----------------------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE) so that a second writer waits for it."""
        if self.readonly:
            raise ReadOnlyCasebookError(
                f"the casebook {self.path} was opened only to read: open it without readonly to change it")
        with self._lock:
            conn = self.db.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as exc:
                raise self._translate(exc) from exc

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self.db.conn
            except sqlite3.DatabaseError as exc:
                raise self._translate(exc) from exc

    def _translate(self, exc: sqlite3.DatabaseError) -> Exception:
        """The casebook's words for a condition the person can fix (inspector.errors.user_error), else ``exc``.
        A failed write is rolled back whole, so each says (or implies) that nothing stored was lost."""
        where = self.path if self.path is not None else "the in-memory casebook"
        translated = user_error(exc, where)
        if isinstance(translated, BusyError):
            return CasebookBusyError(busy_message(where, "the casebook" if self.path is not None else ""),
                                     waited=self.timeout)
        if isinstance(translated, NotWritableError):
            return ReadOnlyCasebookError(f"cannot write to the casebook {where}: {exc}; make the file and its "
                                         "folder writable, or open it only to read")
        if translated is not None:
            return translated
        return exc

    def check_writable(self) -> None:
        """Take the write lock and give it back at once, writing nothing: a casebook another program keeps
        locked (:class:`CasebookBusyError`, after the timeout) or that cannot be written is named now, before a
        long run that would record into it.

        Raises
        ------
        CasebookBusyError, ReadOnlyCasebookError, inspector.errors.DiskFullError
        """
        with self._write():
            pass

    def close(self) -> None:
        """Close the file (a writer's close also folds the write-ahead log back into it)."""
        with self._lock:
            self.db.close()

    def __enter__(self) -> Casebook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self.readonly else "read-write"
        return f"Casebook({str(self.path) if self.path else ':memory:'!r}, {mode})"

    @property
    def schema_version(self) -> int:
        """The casebook's schema version (``PRAGMA user_version``)."""
        with self._read() as conn:
            return conn.execute("PRAGMA user_version").fetchone()[0]

    def revision(self) -> int:
        """A number that grows with every change by anyone (each write appends a label event): poll it to
        notice another program's writes."""
        with self._read() as conn:
            return conn.execute("SELECT coalesce(max(id), 0) FROM label_events").fetchone()[0]

    def __len__(self) -> int:
        with self._read() as conn:
            return conn.execute("SELECT count(*) FROM findings").fetchone()[0]

    # --- recording ----------------------------------------------------------------------------------------

    def record(self, finding: Finding, *, index_dir: str | os.PathLike | None = None,
               run_id: int | None = None) -> int:
        """Store a finding, its neighbours and a first label event in one transaction; return its id.

        One finding per generation: when the casebook already holds a finding with the same generation key
        (:mod:`inspector.casebook.keys`: same model weights, prompt, negative prompt, seed, steps, guidance,
        scheduler, size and pixels, whoever made it), nothing is duplicated: that finding's id is returned, it is
        linked to ``run_id`` (a "link" event), and a label the new finding carries is given to it (a "label"
        event, the old label staying in its history).

        The id is returned only once the transaction is committed. ``finding.id``, ``created_at``,
        ``updated_at``, ``image_sha256``, ``run_id`` and ``generation_key`` are set on the object (those of the
        finding already there, when it was). A neighbour's thumbnail is stored from ``thumbnail_png`` when
        given, else read from the file ``thumbnail`` names (relative paths are taken inside ``index_dir``); a
        missing thumbnail is logged and left out, never a reason to lose the finding.

        Parameters
        ----------
        run_id
            The run (:meth:`start_run`) that made the generation, or None.

        Raises
        ------
        ValueError
            When the finding is malformed: image not PNG, unknown label or suggestion, seed out of range.
        CasebookError
            When ``run_id`` names no run of this casebook.
        """
        return self.record_many([finding], index_dir=index_dir, run_id=run_id)[0]

    def record_many(self, findings: Iterable[Finding], *, index_dir: str | os.PathLike | None = None,
                    run_id: int | None = None) -> list[int]:
        """Store several findings in one transaction (all or none); return their ids in order. Each one as
        :meth:`record` stores it: a generation already in the casebook keeps its finding."""
        prepared = [self._prepare(f, index_dir) for f in findings]
        now = utc_now()
        ids = []
        kept: dict[int, tuple] = {}  # finding id -> (created_at, updated_at, image_sha256, run_id) of one already there
        with self._write() as conn:
            if run_id is not None:
                self._run_row(conn, run_id)  # raises for an unknown run
            chain = _ChainWriter(conn)
            for p in prepared:
                existing = self._same_generation(conn, p.row["generation_key"])
                if existing is not None:
                    finding_id = existing
                    self._seen_again(conn, chain, finding_id, p, run_id)
                    kept[finding_id] = conn.execute(
                        "SELECT created_at, updated_at, image_sha256, run_id FROM findings WHERE id = ?",
                        (finding_id,)).fetchone()
                    ids.append(finding_id)
                    continue
                p.row["created_at"] = p.row["updated_at"] = now
                p.row["run_id"] = run_id
                cursor = conn.execute(
                    f"INSERT INTO findings ({', '.join(p.row)}) VALUES ({', '.join('?' * len(p.row))})",
                    list(p.row.values()))
                finding_id = cursor.lastrowid
                for n in p.neighbours:
                    n["finding_id"] = finding_id
                    conn.execute(f"INSERT INTO neighbours ({', '.join(n)}) VALUES ({', '.join('?' * len(n))})",
                                 list(n.values()))
                chain.append(finding_id=finding_id, action="record", label=p.row["label"],
                             reviewer=p.row["reviewer"], note=p.row["notes"], image_sha256=p.row["image_sha256"],
                             run_id=run_id)
                if run_id is not None:
                    conn.execute("INSERT INTO run_findings (run_id, finding_id) VALUES (?, ?)", (run_id, finding_id))
                ids.append(finding_id)
            chain.close()
        for p, finding_id in zip(prepared, ids, strict=True):
            p.finding.id = finding_id
            p.finding.generation_key = p.row["generation_key"]
            if finding_id in kept:
                p.finding.created_at, p.finding.updated_at, p.finding.image_sha256, p.finding.run_id = \
                    kept[finding_id]
            else:
                p.finding.created_at = p.finding.updated_at = now
                p.finding.image_sha256 = p.row["image_sha256"]
                p.finding.run_id = run_id
        return ids

    @staticmethod
    def _same_generation(conn: sqlite3.Connection, key: str | None) -> int | None:
        """The oldest finding of the generation with this key, or None (also for no key)."""
        if key is None:
            return None
        row = conn.execute("SELECT id FROM findings WHERE generation_key = ? ORDER BY id LIMIT 1", (key,)).fetchone()
        return row[0] if row else None

    def _seen_again(self, conn: sqlite3.Connection, chain: _ChainWriter, finding_id: int, p: _Prepared,
                    run_id: int | None) -> None:
        """A generation already in the casebook was recorded again: link it to the run, take its label."""
        current, image_sha = self._current(conn, finding_id)
        reviewer = p.row["reviewer"]
        if run_id is not None and conn.execute("SELECT 1 FROM run_findings WHERE run_id = ? AND finding_id = ?",
                                               (run_id, finding_id)).fetchone() is None:
            chain.append(finding_id=finding_id, action="link", label=current, previous_label=current,
                         reviewer=reviewer, image_sha256=image_sha, run_id=run_id)
            conn.execute("INSERT INTO run_findings (run_id, finding_id) VALUES (?, ?)", (run_id, finding_id))
        label = p.row["label"]
        if label != UNLABELED and label != current:
            made = chain.append(finding_id=finding_id, action="label", label=label, previous_label=current,
                                reviewer=reviewer, note=p.row["notes"], image_sha256=image_sha)
            conn.execute(
                "UPDATE findings SET label = ?, reviewer = ?, notes = CASE WHEN ? <> '' THEN ? ELSE notes END,"
                " updated_at = ? WHERE id = ?",
                (label, reviewer, p.row["notes"], p.row["notes"], made.created_at, finding_id))

    def link_run(self, run_id: int, finding_id: int, reviewer: str = "") -> bool:
        """Say that run ``run_id`` made the generation of finding ``finding_id`` too (a "link" event); False
        when it was linked already.

        Raises
        ------
        FindingNotFoundError, CasebookError
            When the finding or the run does not exist.
        """
        with self._write() as conn:
            self._run_row(conn, run_id)
            current, image_sha = self._current(conn, finding_id)
            if conn.execute("SELECT 1 FROM run_findings WHERE run_id = ? AND finding_id = ?",
                            (run_id, finding_id)).fetchone() is not None:
                return False
            chain = _ChainWriter(conn)
            chain.append(finding_id=finding_id, action="link", label=current, previous_label=current,
                         reviewer=reviewer or "", image_sha256=image_sha, run_id=run_id)
            chain.close()
            conn.execute("INSERT INTO run_findings (run_id, finding_id) VALUES (?, ?)", (run_id, finding_id))
        return True

    def _prepare(self, finding: Finding, index_dir: str | os.PathLike | None) -> _Prepared:
        if not isinstance(finding.prompt, str):
            raise ValueError(f"a finding's prompt must be text, got {type(finding.prompt).__name__}")
        if isinstance(finding.seed, bool) or not isinstance(finding.seed, int):
            raise ValueError(f"a finding's seed must be an integer, got {finding.seed!r}")
        if not _INT64[0] <= finding.seed <= _INT64[1]:
            raise ValueError(f"a finding's seed must fit in 64 bits (signed), got {finding.seed}")
        if finding.label not in ALL_LABELS:
            raise ValueError(f"unknown label {finding.label!r}: use one of {', '.join(ALL_LABELS)}")
        if finding.suggested_verdict is not None and finding.suggested_verdict not in SUGGESTIONS:
            raise ValueError(f"unknown suggested verdict {finding.suggested_verdict!r}:"
                             f" use one of {', '.join(SUGGESTIONS)} or None")
        ranks = [n.rank for n in finding.neighbours]
        if len(set(ranks)) != len(ranks):
            raise ValueError(f"a finding's neighbours must have distinct ranks, got {ranks}")
        image = bytes(finding.image_png)
        thumbnail, width, height = make_thumbnail(image)
        key = generation_key(finding.provenance, image, prompt=finding.prompt,
                             negative_prompt=finding.negative_prompt or "", seed=finding.seed)
        model_id, model_sha = model_identity(finding.provenance or {})
        nearest = verdict_neighbour(finding.neighbours)
        row = {
            "created_at": "",
            "updated_at": "",
            "label": finding.label,
            "reviewer": finding.reviewer or "",
            "notes": finding.notes or "",
            "prompt": finding.prompt,
            "negative_prompt": finding.negative_prompt or "",
            "seed": finding.seed,
            "suggested_verdict": finding.suggested_verdict,
            "suggestion_reason": finding.suggestion_reason or "",
            "nearest_tiled_l2": _real(nearest.tiled_l2) if nearest else None,
            "nearest_l2": _real(nearest.l2) if nearest else None,
            "model_id": model_id,
            "model_sha256": model_sha,
            "metrics": jsontext.dumps(finding.metrics or {}),
            "provenance": jsontext.dumps(finding.provenance or {}),
            "neighbour_captions": "\n".join(n.caption or "" for n in finding.neighbours),
            "image_width": width,
            "image_height": height,
            "image_sha256": sha256_hex(image),
            "thumbnail_sha256": sha256_hex(thumbnail),
            "thumbnail_png": thumbnail,
            "image_png": image,
            "index_identity": jsontext.canonical(finding.index or {}).decode("utf-8"),
            "generation_key": key,
        }
        neighbours = [self._neighbour_row(n, index_dir) for n in sorted(finding.neighbours, key=lambda n: n.rank)]
        return _Prepared(finding, row, neighbours)

    @staticmethod
    def _neighbour_row(n: Neighbour, index_dir: str | os.PathLike | None) -> dict[str, Any]:
        thumb = None
        if n.thumbnail_png:
            thumb = png_or_none(bytes(n.thumbnail_png), f"the thumbnail of neighbour {n.rank}")
        elif n.thumbnail:
            path = Path(n.thumbnail)
            if not path.is_absolute() and index_dir is not None:
                path = Path(index_dir) / path
            try:
                thumb = png_or_none(path.read_bytes(), f"the thumbnail {path}")
            except OSError as exc:
                logger.warning("cannot read the thumbnail %s of neighbour %s (%s); stored without it",
                               path, n.rank, exc.strerror or exc)
        pixels = pixels_png(n)
        return {
            "finding_id": None,
            "rank": int(n.rank),
            "index_id": n.index_id or "",
            "item_id": int(n.item_id),
            "source": n.source or "",
            "caption": n.caption or "",
            "duplicate_count": int(n.duplicate_count),
            "l2": _real(n.l2),
            "tiled_l2": _real(n.tiled_l2),
            "ssim": _real(n.ssim),
            "calibrated_l2": _real(n.calibrated_l2),
            "semantic_similarity": _real(n.semantic_similarity),
            "licence": n.licence,
            "image_sha256": n.image_sha256 or "",
            "thumbnail_path": n.thumbnail,
            "thumbnail_sha256": sha256_hex(thumb) if thumb is not None else None,
            "thumbnail_png": thumb,
            "comparison_size": None if n.comparison_size is None else int(n.comparison_size),
            "pixels_sha256": sha256_hex(pixels) if pixels is not None else None,
            "pixels_png": pixels,
            "index_role": n.index_role or "training",
            "url": n.url,
            "caption_source": n.caption_source,
        }

    # --- labeling -----------------------------------------------------------------------------------------

    def label(self, finding_id: int, label: str, reviewer: str = "", note: str = "") -> LabelEvent:
        """Give a finding a label (one of memorized, likeness-only, novel, or unlabeled to clear it).

        Appends a label event (the old label stays in the history) and, when ``note`` is not empty, makes it
        the finding's notes. Returns the event, committed.
        """
        if label not in ALL_LABELS:
            raise ValueError(f"unknown label {label!r}: use one of {', '.join(ALL_LABELS)}")
        with self._write() as conn:
            current, image_sha = self._current(conn, finding_id)
            chain = _ChainWriter(conn)
            made = chain.append(finding_id=finding_id, action="label", label=label, previous_label=current,
                                reviewer=reviewer or "", note=note or "", image_sha256=image_sha)
            chain.close()
            conn.execute(
                "UPDATE findings SET label = ?, reviewer = ?, notes = CASE WHEN ? <> '' THEN ? ELSE notes END,"
                " updated_at = ? WHERE id = ?",
                (label, reviewer or "", note or "", note or "", made.created_at, finding_id))
        return made

    def undo_last_label(self, finding_id: int, reviewer: str = "", note: str = "") -> LabelEvent:
        """Take back the most recent label change not already taken back; return the (appended) undo event.

        The history keeps both the change and its undo. Undoing again takes back the change before.

        Raises
        ------
        CasebookError
            When the finding has no label change left to undo.
        """
        with self._write() as conn:
            current, image_sha = self._current(conn, finding_id)
            stack: list[tuple[int, str, str, str | None, str]] = []
            rows = conn.execute("SELECT id, action, label, previous_label, reviewer FROM label_events"
                                " WHERE finding_id = ? ORDER BY id", (finding_id,))
            for eid, action, label, previous, who in rows:
                if action == "label" or (action == "record" and label != UNLABELED):
                    stack.append((eid, action, label, previous, who))
                elif action == "undo" and stack:
                    stack.pop()
            if not stack:
                raise CasebookError(f"finding {finding_id} has no label change to undo")
            undone_id, undone_action, _, undone_previous, _ = stack.pop()
            restored = UNLABELED if undone_action == "record" else (undone_previous or UNLABELED)
            restored_reviewer = stack[-1][4] if stack else ""
            chain = _ChainWriter(conn)
            made = chain.append(finding_id=finding_id, action="undo", label=restored, previous_label=current,
                                reviewer=reviewer or "", note=note or "", undoes=undone_id, image_sha256=image_sha)
            chain.close()
            conn.execute("UPDATE findings SET label = ?, reviewer = ?, updated_at = ? WHERE id = ?",
                         (restored, restored_reviewer, made.created_at, finding_id))
        return made

    def set_notes(self, finding_id: int, notes: str, reviewer: str = "") -> LabelEvent:
        """Replace a finding's notes; the change is a "note" event in its history. Returns the event."""
        with self._write() as conn:
            current, image_sha = self._current(conn, finding_id)
            chain = _ChainWriter(conn)
            made = chain.append(finding_id=finding_id, action="note", label=current, previous_label=current,
                                reviewer=reviewer or "", note=notes or "", image_sha256=image_sha)
            chain.close()
            conn.execute("UPDATE findings SET notes = ?, updated_at = ? WHERE id = ?",
                         (notes or "", made.created_at, finding_id))
        return made

    def record_reproduction(self, finding_id: int, outcome: Mapping[str, Any], reviewer: str = "") -> LabelEvent:
        """Put a reproduction of a finding on the record: a "reproduce" event whose note is ``outcome`` as
        canonical JSON (when and where it ran, the versions, the maximum pixel difference, the pixel hash of
        the regenerated image: see :func:`inspector.session.reproduction_evidence`). The label stays as it is.
        Returns the event, committed.

        Raises
        ------
        FindingNotFoundError
            When the finding does not exist.
        """
        note = jsontext.canonical(dict(outcome)).decode("utf-8")
        with self._write() as conn:
            current, image_sha = self._current(conn, finding_id)
            chain = _ChainWriter(conn)
            made = chain.append(finding_id=finding_id, action="reproduce", label=current, previous_label=current,
                                reviewer=reviewer or "", note=note, image_sha256=image_sha)
            chain.close()
        return made

    def reproductions(self, finding_id: int) -> list[tuple[LabelEvent, dict[str, Any]]]:
        """A finding's recorded reproductions, oldest first: each event with its outcome."""
        return [(e, jsontext.loads(e.note, {})) for e in self.label_history(finding_id) if e.action == "reproduce"]

    def chain_head(self) -> tuple[str, int]:
        """The label-event chain's newest hash (64 hex digits, zeros for an empty chain) and its number of events,
        as the casebook records them: what an export names so that the casebook can later be shown to hold it."""
        with self._read() as conn:
            info = dict(conn.execute(
                "SELECT key, value FROM casebook_info WHERE key IN ('event_head', 'event_count')").fetchall())
        return str(info.get("event_head") or GENESIS), int(info.get("event_count") or 0)

    def event_hash_at(self, position: int) -> str | None:
        """The hash of the ``position``-th event of the chain (1 = the first), or None when the chain is shorter."""
        if position < 1:
            return None
        with self._read() as conn:
            row = conn.execute("SELECT hash FROM label_events ORDER BY id LIMIT 1 OFFSET ?",
                               (int(position) - 1,)).fetchone()
        return row[0] if row else None

    def _current(self, conn: sqlite3.Connection, finding_id: int) -> tuple[str, str]:
        row = conn.execute("SELECT label, image_sha256 FROM findings WHERE id = ?", (int(finding_id),)).fetchone()
        if row is None:
            raise FindingNotFoundError(self._no_finding(finding_id))
        return row[0], row[1]

    def _no_finding(self, finding_id: int) -> str:
        where = self.path if self.path is not None else "the casebook"
        return f"{where} has no finding {finding_id}: list the findings to see their ids"

    # --- reading ------------------------------------------------------------------------------------------

    def _where(
        self,
        label: str | Sequence[str] | None,
        reviewer: str | None,
        model: str | None,
        text: str | None,
        suggested: str | None,
        prompt: str | None,
        seed: int | None,
        image_sha256: str | None,
        run_id: int | None = None,
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if label is not None:
            labels = [label] if isinstance(label, str) else list(label)
            unknown = [x for x in labels if x not in ALL_LABELS]
            if unknown:
                raise ValueError(f"unknown label {unknown[0]!r}: use one of {', '.join(ALL_LABELS)}")
            clauses.append(f"label IN ({', '.join('?' * len(labels))})")
            params += labels
        if reviewer is not None:
            clauses.append("reviewer = ?")
            params.append(reviewer)
        if model:
            # The id as recorded, the full weights sha256, or a prefix of it of at least 8 hex digits.
            clauses.append("(model_id = ? OR model_sha256 = ? OR (length(?) >= 8 AND model_sha256 LIKE ? || '%'))")
            params += [model, model.lower(), model, model.lower()]
        if text:
            query = fts_query(text)
            if query is not None:
                clauses.append("id IN (SELECT rowid FROM findings_fts WHERE findings_fts MATCH ?)")
                params.append(query)
        if suggested is not None:
            clauses.append("suggested_verdict = ?")
            params.append(suggested)
        if prompt is not None:
            clauses.append("prompt = ?")
            params.append(prompt)
        if seed is not None:
            clauses.append("seed = ?")
            params.append(int(seed))
        if image_sha256 is not None:
            clauses.append("image_sha256 = ?")
            params.append(image_sha256)
        if run_id is not None:
            clauses.append("id IN (SELECT finding_id FROM run_findings WHERE run_id = ?)")
            params.append(int(run_id))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def findings(
        self,
        *,
        label: str | Sequence[str] | None = None,
        reviewer: str | None = None,
        model: str | None = None,
        text: str | None = None,
        suggested: str | None = None,
        prompt: str | None = None,
        seed: int | None = None,
        image_sha256: str | None = None,
        run_id: int | None = None,
        limit: int | None = None,
        offset: int = 0,
        order: str = "recorded",
        descending: bool = False,
        thumbnails: bool = False,
    ) -> list[FindingSummary]:
        """Findings matching every filter given, as summaries (no full image, neighbours or provenance).

        Parameters
        ----------
        label
            One label or several (memorized, likeness-only, novel, unlabeled).
        reviewer
            Exactly this reviewer's name.
        model
            The model id as recorded, its weights sha256, or a prefix of that sha256 (8 hex digits or more).
        text
            Free text searched in prompts, negative prompts, notes and neighbour captions; every word must
            occur (stemmed, the last word as a prefix).
        suggested, prompt, seed, image_sha256
            Exact matches, e.g. to find a generation already recorded.
        run_id
            Only the findings this run made (or made again: a finding several runs share is in each).
        limit, offset
            Paging; ``limit`` None for all.
        order
            "recorded" (id), "nearest" (nearest tiled l2) or "updated"; ``descending`` reverses it.
        thumbnails
            Also load each finding's thumbnail PNG (``thumbnail_png``).
        """
        if order not in ORDERS:
            raise ValueError(f"unknown order {order!r}: use one of {', '.join(ORDERS)}")
        where, params = self._where(label, reviewer, model, text, suggested, prompt, seed, image_sha256, run_id)
        columns = list(_SUMMARY_COLUMNS) + (["thumbnail_png"] if thumbnails else [])
        direction = "DESC" if descending else "ASC"
        sql = f"SELECT {_summary_sql(columns)} FROM findings{where} ORDER BY {ORDERS[order]} {direction}, id {direction}"
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            params += [-1 if limit is None else int(limit), int(offset)]
        with self._read() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [FindingSummary(**dict(zip(columns, row, strict=True))) for row in rows]

    def count(
        self,
        *,
        label: str | Sequence[str] | None = None,
        reviewer: str | None = None,
        model: str | None = None,
        text: str | None = None,
        suggested: str | None = None,
    ) -> int:
        """How many findings match the filters (as :meth:`findings` takes them)."""
        where, params = self._where(label, reviewer, model, text, suggested, None, None, None)
        with self._read() as conn:
            return conn.execute(f"SELECT count(*) FROM findings{where}", params).fetchone()[0]

    def indexes_searched(self) -> list[dict[str, Any]]:
        """Every index the findings were searched in, in the order first used: each a dict like
        ``TrainingIndex.identity()`` (role, source, images, built, content_hash, ...). Findings recorded before
        indexes were named give ``{"role": ...}`` only, with their neighbours' role."""
        with self._read() as conn:
            rows = conn.execute("SELECT index_identity, MIN(id) FROM findings GROUP BY index_identity"
                                " ORDER BY MIN(id)").fetchall()
            unnamed = [r for (r,) in conn.execute(
                "SELECT DISTINCT n.index_role FROM neighbours AS n JOIN findings AS f ON f.id = n.finding_id"
                " WHERE f.index_identity = '{}' ORDER BY n.index_role")]
        out = [identity for identity in (jsontext.loads(text, {}) for text, _ in rows) if identity]
        for identity in out:
            identity.setdefault("role", "training")
        return out + [{"role": role} for role in unnamed]

    def counts(self, **filters: Any) -> dict[str, int]:
        """Findings per label (every label present, zeros included), under the filters of :meth:`count`."""
        filters.pop("label", None)
        where, params = self._where(None, filters.get("reviewer"), filters.get("model"), filters.get("text"),
                                    filters.get("suggested"), None, None, None)
        out = dict.fromkeys(ALL_LABELS, 0)
        with self._read() as conn:
            for label, n in conn.execute(f"SELECT label, count(*) FROM findings{where} GROUP BY label", params):
                out[label] = n
        return out

    def summary(self, finding_id: int) -> FindingSummary:
        """One finding as :meth:`findings` lists it (label, reviewer, notes, distances; no images).

        Raises
        ------
        FindingNotFoundError
            When the casebook has no finding with that id.
        """
        with self._read() as conn:
            row = conn.execute(f"SELECT {_summary_sql(_SUMMARY_COLUMNS)} FROM findings WHERE id = ?",
                               (int(finding_id),)).fetchone()
        if row is None:
            raise FindingNotFoundError(self._no_finding(finding_id))
        return FindingSummary(**dict(zip(_SUMMARY_COLUMNS, row, strict=True)))

    def get(self, finding_id: int) -> Finding:
        """One finding with its image, provenance, metrics and neighbours (thumbnails as ``thumbnail_png``).

        Raises
        ------
        FindingNotFoundError
            When the casebook has no finding with that id.
        """
        columns = ("id", "prompt", "seed", "image_png", "provenance", "negative_prompt", "suggested_verdict",
                   "suggestion_reason", "metrics", "label", "reviewer", "notes", "created_at", "updated_at",
                   "image_sha256", "index_identity", "run_id", "generation_key")
        with self._read() as conn:
            row = conn.execute(f"SELECT {', '.join(columns)} FROM findings WHERE id = ?",
                               (int(finding_id),)).fetchone()
            if row is None:
                raise FindingNotFoundError(self._no_finding(finding_id))
            nrows = conn.execute(f"SELECT {', '.join(_NEIGHBOUR_COLUMNS)} FROM neighbours WHERE finding_id = ?"
                                 " ORDER BY rank", (int(finding_id),)).fetchall()
            run_ids = [r for (r,) in conn.execute("SELECT run_id FROM run_findings WHERE finding_id = ?"
                                                  " ORDER BY run_id", (int(finding_id),))]
        data = dict(zip(columns, row, strict=True))
        data["provenance"] = jsontext.loads(data["provenance"], {})
        data["metrics"] = jsontext.loads(data["metrics"], {})
        data["index"] = jsontext.loads(data.pop("index_identity"), {}) or None
        data["run_ids"] = run_ids
        neighbours = []
        for nrow in nrows:
            n = dict(zip(_NEIGHBOUR_COLUMNS, nrow, strict=True))
            n["thumbnail"] = n.pop("thumbnail_path")
            neighbours.append(Neighbour(**n))
        return Finding(neighbours=neighbours, **data)

    def label_history(self, finding_id: int) -> list[LabelEvent]:
        """Every label event of a finding, oldest first (the first one is its recording)."""
        with self._read() as conn:
            self._current(conn, finding_id)
            rows = conn.execute(f"SELECT {', '.join(_EVENT_COLUMNS)} FROM label_events WHERE finding_id = ?"
                                " ORDER BY id", (int(finding_id),)).fetchall()
        return [LabelEvent(**dict(zip(_EVENT_COLUMNS, r, strict=True))) for r in rows]

    # --- runs -------------------------------------------------------------------------------------------------

    def start_run(
        self,
        *,
        kind: str,
        prompt: str,
        n_requested: int,
        negative_prompt: str = "",
        settings: Mapping[str, Any] | None = None,
        model_id: str = "",
        model_sha256: str = "",
        index: Mapping[str, Any] | None = None,
        reviewer: str = "",
        notes: str = "",
    ) -> int:
        """Put a run on the record before its first generation; return its id (committed).

        Parameters
        ----------
        kind
            "window", "inspect" or "scan" (one prompt of a scan).
        settings
            What was asked for, as JSON data: n, first seed, steps, guidance, scheduler, batch size...
        model_id, model_sha256
            The model as ``--model`` takes it, and its weights' sha256.
        index
            The index searched (``TrainingIndex.identity()``: role, source, images, built, content hash, id).

        The start is a "run" event in the hash chain. Finish it with :meth:`finish_run`; a run never finished
        (a killed process) stays on the record as not finished.
        """
        if kind not in RUN_KINDS:
            raise ValueError(f"unknown run kind {kind!r}: use one of {', '.join(RUN_KINDS)}")
        if not isinstance(prompt, str):
            raise ValueError(f"a run's prompt must be text, got {type(prompt).__name__}")
        if isinstance(n_requested, bool) or not isinstance(n_requested, int) or n_requested < 0:
            raise ValueError(f"a run's n_requested must be a whole number >= 0, got {n_requested!r}")
        row = {
            "started_at": utc_now(), "kind": kind, "prompt": prompt, "negative_prompt": negative_prompt or "",
            "settings": jsontext.canonical(dict(settings or {})).decode("utf-8"), "model_id": model_id or "",
            "model_sha256": model_sha256 or "", "index_identity": jsontext.canonical(dict(index or {})).decode("utf-8"),
            "n_requested": n_requested, "reviewer": reviewer or "", "notes": notes or "",
        }
        with self._write() as conn:
            cursor = conn.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                                  list(row.values()))
            run_id = cursor.lastrowid
            chain = _ChainWriter(conn)
            self._run_event(conn, chain, run_id, reviewer)
            chain.close()
        return run_id

    def finish_run(
        self,
        run_id: int,
        *,
        n_finished: int,
        cancelled: bool = False,
        error: str = "",
        near_copies: int | None = None,
        likeness: int | None = None,
        novel: int | None = None,
        clique_size: int | None = None,
        clique_flagged: bool | None = None,
        clique_min_size: int | None = None,
        clique_seeds: Iterable[int] = (),
        wen_score: float | None = None,
        unknown_words: Iterable[str] = (),
        settings: Mapping[str, Any] | None = None,
    ) -> Run:
        """Record how a run ended: generations finished, cancelled or failed (``error`` in words), the counts of
        suggested verdicts, the largest near-identical clique (its size, whether flagged, the threshold size,
        its seeds), the Wen score and the words the model cannot read. ``settings`` adds what was only known
        once sampling ran (the steps, scheduler and batch size actually used). A "run" event; returns the run.

        Raises
        ------
        CasebookError
            When the run does not exist or has finished already.
        """
        if isinstance(n_finished, bool) or not isinstance(n_finished, int) or n_finished < 0:
            raise ValueError(f"a run's n_finished must be a whole number >= 0, got {n_finished!r}")
        with self._write() as conn:
            state = self._run_row(conn, run_id)
            if state["finished_at"] is not None:
                raise CasebookError(f"run {run_id} has finished already (at {state['finished_at']})")
            merged = {**jsontext.loads(state["settings"], {}), **dict(settings or {})}
            values = {
                "finished_at": utc_now(), "n_finished": n_finished, "cancelled": int(bool(cancelled)),
                "error": error or "", "near_copies": _count(near_copies), "likeness": _count(likeness),
                "novel": _count(novel), "clique_size": _count(clique_size),
                "clique_flagged": None if clique_flagged is None else int(bool(clique_flagged)),
                "clique_min_size": _count(clique_min_size),
                "clique_seeds": jsontext.canonical(sorted(int(x) for x in clique_seeds)).decode("utf-8"),
                "wen_score": _real(wen_score),
                "unknown_words": jsontext.canonical([str(w) for w in unknown_words]).decode("utf-8"),
                "settings": jsontext.canonical(merged).decode("utf-8"),
            }
            conn.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?",
                         [*values.values(), int(run_id)])
            chain = _ChainWriter(conn)
            self._run_event(conn, chain, run_id, state["reviewer"])
            chain.close()
        return self.get_run(run_id)

    def set_run_notes(self, run_id: int, notes: str, reviewer: str = "") -> Run:
        """Replace a run's notes (e.g. "checked my name: nothing close"); a "run" event. Returns the run."""
        with self._write() as conn:
            self._run_row(conn, run_id)
            conn.execute("UPDATE runs SET notes = ? WHERE id = ?", (notes or "", int(run_id)))
            chain = _ChainWriter(conn)
            self._run_event(conn, chain, run_id, reviewer or "")
            chain.close()
        return self.get_run(run_id)

    def _run_row(self, conn: sqlite3.Connection, run_id: int) -> dict[str, Any]:
        state = run_state(conn, int(run_id))
        if state is None:
            where = self.path if self.path is not None else "the casebook"
            raise CasebookError(f"{where} has no run {run_id}: list the runs to see their ids")
        return state

    def _run_event(self, conn: sqlite3.Connection, chain: _ChainWriter, run_id: int, reviewer: str) -> None:
        """Append a "run" event whose note is the run's record as it now stands (canonical JSON)."""
        state = self._run_row(conn, run_id)
        chain.append(finding_id=None, action="run", label=None, reviewer=reviewer or "",
                     note=run_note(state), image_sha256="", run_id=int(run_id))

    def get_run(self, run_id: int) -> Run:
        """One run, with how many findings it made or saw again.

        Raises
        ------
        CasebookError
            When the casebook has no run with that id.
        """
        with self._read() as conn:
            state = self._run_row(conn, run_id)
            linked = conn.execute("SELECT count(*) FROM run_findings WHERE run_id = ?", (int(run_id),)).fetchone()[0]
        return _run_from(state, linked)

    def runs(
        self,
        *,
        kind: str | None = None,
        prompt: str | None = None,
        finished: bool | None = None,
        limit: int | None = None,
        offset: int = 0,
        descending: bool = False,
    ) -> list[Run]:
        """The runs matching every filter given, oldest first (``descending``: newest first).

        ``kind``: window, inspect or scan; ``prompt``: exactly this prompt; ``finished``: True for finished
        runs only, False for runs still going or stopped before finishing.
        """
        clauses, params = [], []
        if kind is not None:
            if kind not in RUN_KINDS:
                raise ValueError(f"unknown run kind {kind!r}: use one of {', '.join(RUN_KINDS)}")
            clauses.append("kind = ?")
            params.append(kind)
        if prompt is not None:
            clauses.append("prompt = ?")
            params.append(prompt)
        if finished is not None:
            clauses.append("finished_at IS NOT NULL" if finished else "finished_at IS NULL")
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        direction = "DESC" if descending else "ASC"
        columns = ", ".join(RUN_COLUMNS)
        sql = (f"SELECT {columns}, (SELECT count(*) FROM run_findings WHERE run_id = runs.id) FROM runs{where}"
               f" ORDER BY id {direction}")
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            params += [-1 if limit is None else int(limit), int(offset)]
        with self._read() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_run_from(dict(zip(RUN_COLUMNS, row[:-1], strict=True)), row[-1]) for row in rows]

    def verify(self) -> VerifyReport:
        """Check the file, every stored image, the label-event chain and the current labels.

        Returns a report listing each problem with the finding it concerns; ``report.ok`` when there is none.
        """
        with self._read() as conn:
            return verify_casebook(conn)


def _create_file(path: Path) -> None:
    """Make a new, empty casebook at ``path`` atomically: built under a temporary name beside it, then
    hard-linked into place, so that another program opening ``path`` meanwhile never sees half a file.
    When another program made ``path`` first, theirs is kept."""
    tmp = temporary_path(path)
    try:
        tmp.touch(exist_ok=False)
        Casebook(tmp).close()
        try:
            publish(tmp, path, overwrite=False)
            fsync_folder(path.parent)
        except FileExistsError:
            pass
    except OSError as exc:
        # No permission, a read-only or full disk: the words every command uses (inspector.errors).
        translated = user_error(exc, path)
        raise CasebookError(str(translated) if translated is not None else
                            f"cannot create the casebook {path}: {exc.strerror or exc}") from None
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)


def verdict_neighbour(neighbours: Sequence[Neighbour]) -> Neighbour | None:
    """The neighbour a finding's verdict is about: the smallest tiled l2 (ties by l2, then rank), which is rank 1
    when the neighbours are ordered by tiled l2 as the index orders them; None without neighbours."""
    def key(n: Neighbour) -> tuple:
        tiled, l2 = _real(n.tiled_l2), _real(n.l2)  # 0.0 is an exact copy: compared with None, not truthiness
        return (tiled is None, 0.0 if tiled is None else tiled, l2 is None, 0.0 if l2 is None else l2, n.rank)

    return min(neighbours, key=key) if neighbours else None


def pixels_png(n: Neighbour) -> bytes | None:
    """The neighbour's compared pixels as lossless PNG (``pixels_png`` as given, else ``pixels`` encoded)."""
    if n.pixels_png:
        return bytes(n.pixels_png)
    if n.pixels is None:
        return None
    import io

    import numpy as np
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(n.pixels, dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def _count(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"a run's counts must be whole numbers >= 0, got {value!r}")
    return int(value)


def _run_from(state: Mapping[str, Any], findings: int) -> Run:
    """A :class:`Run` from its row (as :func:`inspector.casebook.verify.run_state` reads it)."""
    data = dict(state)
    data["settings"] = jsontext.loads(data["settings"], {})
    data["index"] = jsontext.loads(data.pop("index_identity"), {}) or None
    data["clique_seeds"] = jsontext.loads(data["clique_seeds"], [])
    data["unknown_words"] = jsontext.loads(data["unknown_words"], [])
    data["cancelled"] = bool(data["cancelled"])
    data["clique_flagged"] = None if data["clique_flagged"] is None else bool(data["clique_flagged"])
    return Run(findings=findings, **data)


def _real(value: float | None) -> float | None:
    """A distance as stored: a plain float, or None (NaN is no distance at all)."""
    if value is None:
        return None
    value = float(value)
    return None if value != value else value
