"""``verify``: is the casebook still the evidence it was when written?

Checks ``PRAGMA integrity_check`` and ``foreign_key_check``, every stored image, thumbnail and compared pixels
against its sha256, the label-event hash chain (each event's hash, its link to the one before, the recorded
head and count; since version 5 also each finding's own chain of events and its recorded newest event), that
each finding's current label, reviewer and notes are what its events make them (:func:`finding_states`), that
each run's record is the one its last "run" event holds, and that each link between a run and a finding has its
event. Reads only.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from inspector.casebook import jsontext
from inspector.casebook.chain import GENESIS, HASHED_FIELDS, OPTIONAL_HASHED_FIELDS, event_hash
from inspector.findings import UNLABELED

#: The columns of a run's record, in the order its "run" events hash them (casebook version 4 on).
RUN_COLUMNS = (
    "id", "started_at", "finished_at", "kind", "prompt", "negative_prompt", "settings", "model_id",
    "model_sha256", "index_identity", "n_requested", "n_finished", "cancelled", "error", "near_copies",
    "likeness", "novel", "clique_size", "clique_flagged", "clique_min_size", "clique_seeds", "wen_score",
    "unknown_words", "reviewer", "notes",
)


def run_state(conn: sqlite3.Connection, run_id: int) -> dict[str, Any] | None:
    """A run's row as a dict of :data:`RUN_COLUMNS`, or None when there is no such run."""
    row = conn.execute(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE id = ?", (run_id,)).fetchone()
    return None if row is None else dict(zip(RUN_COLUMNS, row, strict=True))


def run_note(state: dict[str, Any]) -> str:
    """The note of a "run" event: the run's record as canonical JSON."""
    return jsontext.canonical(state).decode("utf-8")


@dataclass
class FindingState:
    """What a finding's events make of it: its label, reviewer and notes (the fields a person changes)."""

    label: str = UNLABELED
    reviewer: str = ""
    notes: str = ""
    #: (event id, reviewer) of each label change not taken back, oldest first: what "undo" returns to.
    changes: list[tuple[int, str]] = field(default_factory=list)

    def apply(self, event: dict[str, Any]) -> None:
        """Replay one event, as :class:`~inspector.casebook.Casebook` applies it when it writes it.

        record: the label, reviewer and notes it was recorded with (since version 5 the notes are in the
        event; the upgrade to version 5 added a "note" event for earlier findings recorded with notes);
        label: the new label and its reviewer, and its note when not empty; undo: the label before the change
        taken back, and the reviewer of the change now in force ("" for none); note: the notes; link,
        reproduce: nothing.
        """
        action = event["action"]
        reviewer, note = event.get("reviewer") or "", event.get("note") or ""
        if action == "record":
            self.label, self.reviewer, self.notes = event["label"], reviewer, note
            if event["label"] != UNLABELED:
                self.changes.append((event["id"], reviewer))
        elif action == "label":
            self.label, self.reviewer = event["label"], reviewer
            self.notes = note or self.notes
            self.changes.append((event["id"], reviewer))
        elif action == "undo":
            self.label = event["label"]
            if self.changes:
                self.changes.pop()
            self.reviewer = self.changes[-1][1] if self.changes else ""
        elif action == "note":
            self.notes = note


def finding_states(conn: sqlite3.Connection) -> dict[int, FindingState]:
    """Each finding's label, reviewer and notes as its events (in chain order) make them."""
    states: dict[int, FindingState] = {}
    rows = conn.execute("SELECT id, finding_id, action, label, reviewer, note FROM label_events"
                        " WHERE finding_id IS NOT NULL ORDER BY id")
    for eid, fid, action, label, reviewer, note in rows:
        states.setdefault(fid, FindingState()).apply(
            {"id": eid, "action": action, "label": label, "reviewer": reviewer, "note": note})
    return states


@dataclass(frozen=True)
class Problem:
    """One failed check. ``finding_id`` is None for problems of the file as a whole."""

    finding_id: int | None
    reason: str

    def __str__(self) -> str:
        where = "casebook" if self.finding_id is None else f"finding {self.finding_id}"
        return f"{where}: {self.reason}"


@dataclass
class VerifyReport:
    """The outcome of :meth:`Casebook.verify`. ``ok`` when no problem was found."""

    problems: list[Problem] = field(default_factory=list)
    integrity: list[str] = field(default_factory=list)  # the lines of PRAGMA integrity_check ("ok" when fine)
    findings_checked: int = 0
    images_checked: int = 0  # generation images, their thumbnails and neighbour thumbnails
    events_checked: int = 0
    runs_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def failing_findings(self) -> list[int]:
        """Ids of the findings with at least one problem, ascending."""
        return sorted({p.finding_id for p in self.problems if p.finding_id is not None})

    def by_finding(self) -> dict[int | None, list[str]]:
        """Reasons grouped by finding id (None: the file as a whole)."""
        out: dict[int | None, list[str]] = defaultdict(list)
        for p in self.problems:
            out[p.finding_id].append(p.reason)
        return dict(out)

    def summary(self) -> str:
        """One line in plain words."""
        runs = f"{self.runs_checked} run{'' if self.runs_checked == 1 else 's'}"
        checked = (f"{self.findings_checked} findings, {runs}, {self.images_checked} images and"
                   f" {self.events_checked} label events")
        if self.ok:
            return f"all is well: {checked} checked, SQLite integrity check ok"
        n = len(self.failing_findings)
        return f"{len(self.problems)} problems, {n} findings fail ({checked} checked)"

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "integrity": self.integrity,
            "findings_checked": self.findings_checked,
            "images_checked": self.images_checked,
            "events_checked": self.events_checked,
            "runs_checked": self.runs_checked,
            "failing_findings": self.failing_findings,
            "problems": [{"finding_id": p.finding_id, "reason": p.reason} for p in self.problems],
        }


def _sha256(blob: bytes | None) -> str | None:
    return None if blob is None else hashlib.sha256(blob).hexdigest()


def verify_casebook(conn: sqlite3.Connection) -> VerifyReport:
    """Run every check on an open casebook connection (inside one read transaction, so that a concurrent
    writer cannot make the checks disagree with each other)."""
    report = VerifyReport()
    conn.execute("BEGIN")
    try:
        _check_sqlite(conn, report)
        finding_images = _check_images(conn, report)
        _check_events(conn, report, finding_images)
    except sqlite3.DatabaseError as exc:  # a damaged file: report it, do not crash the check
        report.problems.append(Problem(None, f"the file cannot be read to the end: {exc}"))
    finally:
        conn.execute("ROLLBACK")
    report.problems.sort(key=lambda p: (p.finding_id is not None, p.finding_id or 0))
    return report


def _check_sqlite(conn: sqlite3.Connection, report: VerifyReport) -> None:
    report.integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    if report.integrity != ["ok"]:
        for line in report.integrity:
            report.problems.append(Problem(None, f"SQLite integrity check: {line}"))
    for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check"):
        finding_id = None
        if table in ("neighbours", "label_events", "run_findings"):
            finding_id = conn.execute(f"SELECT finding_id FROM {table} WHERE rowid = ?", (rowid,)).fetchone()[0]
        report.problems.append(Problem(finding_id, f"a row of {table} points to a missing row of {parent}"))


def _check_images(conn: sqlite3.Connection, report: VerifyReport) -> dict[int, str]:
    """Check each stored image against its sha256; return each finding's stored image sha256."""
    stored: dict[int, str] = {}
    rows = conn.execute("SELECT id, image_sha256, thumbnail_sha256, image_png, thumbnail_png FROM findings")
    for finding_id, image_sha, thumb_sha, image, thumb in rows:
        report.findings_checked += 1
        stored[finding_id] = image_sha
        report.images_checked += 1
        if _sha256(image) != image_sha:
            report.problems.append(Problem(finding_id, "the generation image does not match its sha256"))
        if thumb is not None or thumb_sha is not None:
            report.images_checked += 1
            if _sha256(thumb) != thumb_sha:
                report.problems.append(Problem(finding_id, "the generation thumbnail does not match its sha256"))
    rows = conn.execute("SELECT finding_id, rank, thumbnail_sha256, thumbnail_png, pixels_sha256, pixels_png"
                        " FROM neighbours")
    for finding_id, rank, thumb_sha, thumb, pixels_sha, pixels in rows:
        for what, blob, sha in (("thumbnail", thumb, thumb_sha), ("compared pixels", pixels, pixels_sha)):
            if blob is None and sha is None:
                continue
            report.images_checked += 1
            if _sha256(blob) != sha:
                report.problems.append(Problem(finding_id, f"the {what} of neighbour {rank} does not match its"
                                                           " sha256"))
    return stored


def _check_events(conn: sqlite3.Connection, report: VerifyReport, finding_images: dict[int, str]) -> None:
    optional = [c for c in OPTIONAL_HASHED_FIELDS if c in _columns(conn, "label_events")]
    columns = ", ".join((*HASHED_FIELDS, *optional))
    rows = conn.execute(f"SELECT {columns}, prev_hash, hash FROM label_events ORDER BY id")
    names = [*HASHED_FIELDS, *optional, "prev_hash", "hash"]
    last_label: dict[int, str] = {}
    states: dict[int, FindingState] = {}
    finding_last: dict[int, str] = {}  # finding id -> the hash of its newest event so far
    previous_id = 0
    run_notes: dict[int, str] = {}  # run id -> the note of its last "run" event
    links: set[tuple[int, int]] = set()  # (run id, finding id) of each "record" or "link" event in a run
    prev_stored = GENESIS
    for values in rows:
        event = dict(zip(names, values, strict=True))
        report.events_checked += 1
        fid = event["finding_id"]
        eid = event["id"]
        if event["prev_hash"] != prev_stored:
            gap = f" (label events {previous_id + 1} to {eid - 1} are missing)" if eid > previous_id + 1 else ""
            report.problems.append(Problem(fid, f"label event {eid} does not follow the event before it"
                                                f" (an earlier event was changed or removed){gap}"))
        if event_hash(event["prev_hash"], event) != event["hash"]:
            report.problems.append(Problem(fid, f"label event {eid} was changed after it was written"))
        prev_stored = event["hash"]
        previous_id = eid
        if fid is not None:
            own = event.get("finding_prev_hash")
            if own is not None and own != finding_last.get(fid, GENESIS):
                report.problems.append(Problem(fid, f"label event {eid} does not follow this finding's previous"
                                                    " event (an event of this finding was removed or changed)"))
            finding_last[fid] = event["hash"]
            states.setdefault(fid, FindingState()).apply(event)
        if event["action"] == "run":
            run_notes[event["run_id"]] = event["note"]
            continue
        if event["run_id"] is not None and event["action"] in ("record", "link"):
            links.add((event["run_id"], fid))
        if fid not in finding_images:
            report.problems.append(Problem(fid, f"label event {eid} belongs to a finding that is missing"))
            continue
        if event["image_sha256"] != finding_images[fid]:
            report.problems.append(Problem(fid, f"label event {eid} was made for a different generation image"))
        if event["action"] != "record":
            before = last_label.get(fid)
            if before is None:
                report.problems.append(Problem(fid, f"label event {eid} comes before the finding was recorded"))
            elif event["previous_label"] != before:
                report.problems.append(Problem(fid, f"label event {eid} says the label was"
                                                    f" '{event['previous_label']}' but it was '{before}'"))
        last_label[fid] = event["label"]
    _check_head(conn, report, prev_stored)
    _check_runs(conn, report, run_notes, links)
    has_head = "event_head" in _columns(conn, "findings")
    head_column = "event_head" if has_head else "NULL"
    for fid, label, reviewer, notes, head in conn.execute(
            f"SELECT id, label, reviewer, notes, {head_column} FROM findings ORDER BY id"):
        if fid not in last_label:
            report.problems.append(Problem(fid, "the finding has no label events (its history was removed)"))
            continue
        if label != last_label[fid]:
            report.problems.append(Problem(fid, f"its label is '{label}' but its last label event says"
                                                f" '{last_label[fid]}'"))
        state = states[fid]
        if (reviewer or "") != state.reviewer:
            report.problems.append(Problem(fid, f"its reviewer is {reviewer!r} but its label events say"
                                                f" {state.reviewer!r} (changed outside the inspector)"))
        if (notes or "") != state.notes:
            report.problems.append(Problem(fid, f"its notes are {_quote(notes)} but its events say"
                                                f" {_quote(state.notes)} (changed outside the inspector)"))
        if has_head and head != finding_last.get(fid):
            report.problems.append(Problem(fid, "its newest event is not the one recorded with it (an event of"
                                                " this finding was removed, or the record was changed)"))


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _quote(text: str | None, width: int = 60) -> str:
    text = text or ""
    return repr(text if len(text) <= width else text[: width - 1] + "\u2026")


def _check_head(conn: sqlite3.Connection, report: VerifyReport, last_hash: str) -> None:
    info = dict(conn.execute("SELECT key, value FROM casebook_info WHERE key IN ('event_head', 'event_count')"))
    if info.get("event_head") != last_hash or info.get("event_count") != str(report.events_checked):
        report.problems.append(Problem(None, "the label-event chain does not end where the casebook recorded it"
                                             " (the newest events were removed or the record was changed)"))


def _check_runs(conn: sqlite3.Connection, report: VerifyReport, run_notes: dict[int, str],
                links: set[tuple[int, int]]) -> None:
    """Each run as its last "run" event recorded it; each run-finding link as its event made it."""
    seen = set()
    for (run_id,) in conn.execute("SELECT id FROM runs ORDER BY id").fetchall():
        report.runs_checked += 1
        seen.add(run_id)
        state = run_state(conn, run_id)
        if run_id not in run_notes:
            report.problems.append(Problem(None, f"run {run_id} has no run event (it was written outside the"
                                                 " casebook's API)"))
        elif run_notes[run_id] != run_note(state):
            report.problems.append(Problem(None, f"run {run_id} was changed after it was written (its record"
                                                 " differs from its last run event)"))
    for run_id in sorted(set(run_notes) - seen):
        report.problems.append(Problem(None, f"run {run_id} is missing (its run events remain)"))
    stored = set(conn.execute("SELECT run_id, finding_id FROM run_findings").fetchall())
    for run_id, fid in sorted(stored - links):
        report.problems.append(Problem(fid, f"its link to run {run_id} has no event (written outside the API)"))
    for run_id, fid in sorted(links - stored):
        report.problems.append(Problem(fid, f"its link to run {run_id} was removed"))
    for fid, run_id in conn.execute("SELECT id, run_id FROM findings WHERE run_id IS NOT NULL ORDER BY id"):
        if (run_id, fid) not in links:
            report.problems.append(Problem(fid, f"it says run {run_id} recorded it, but no event says so"))
