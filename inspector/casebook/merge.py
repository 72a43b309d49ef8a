"""Merging casebooks labeled by several people, and how far they agree (DESIGN.md: ``casebook merge``).

Two annotators label copies of one casebook (or the same file in turns, each under their name). The merged
casebook holds:

- every finding once: one generation is one finding, matched by its generation key where it has one, else by
  its image's sha256, prompt and seed;
- every event of every input with its reviewer and time, in time order (each input's own order kept), written
  again into one valid hash chain (events both inputs share, such as the history before the copy, once);
- every run once (matched by start time, kind, prompt and model weights) with its record, links and events.

No label replaces another silently. Where the reviewers' standing labels differ, the merge appends one more
label event, by the reviewer :data:`MERGE_REVIEWER`, that sets the finding back to unlabeled: a disagreement
needs a person's decision, and the review queue's adjudication mode walks exactly these findings and records the
decision as its own label event whose note starts with :data:`ADJUDICATED`. Agreement is Cohen's kappa
(scikit-learn) for two reviewers and Krippendorff's alpha (the ``krippendorff`` package, nominal) for more,
over the findings that at least two of them labeled.
"""

from __future__ import annotations

import heapq
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspector.casebook.errors import CasebookError
from inspector.casebook.store import _EVENT_COLUMNS, Casebook, _ChainWriter
from inspector.casebook.verify import RUN_COLUMNS, FindingState, run_note
from inspector.errors import UserError
from inspector.fileio import atomic_path
from inspector.findings import LABELS, UNLABELED

#: The reviewer of the event a merge appends where reviewers disagree (the finding goes back to unlabeled).
MERGE_REVIEWER = "casebook merge (reviewers disagree)"
#: How the note of an adjudicating label event starts; such a label settles a disagreement and is not counted
#: as one more reviewer's opinion in the agreement.
ADJUDICATED = "adjudicated"


@dataclass(frozen=True)
class Disagreement:
    """A finding whose reviewers' standing labels differ."""

    finding_id: int
    prompt: str
    seed: int
    #: reviewer -> that reviewer's standing label, in the order the reviewers first labeled it
    labels: dict[str, str]
    #: the label an adjudication gave it (the newest), or None while it waits for one
    adjudicated: str | None = None

    def in_words(self) -> str:
        said = ", ".join(f"{who or 'no name'} {label}" for who, label in self.labels.items())
        done = f"; adjudicated {self.adjudicated}" if self.adjudicated else "; not adjudicated yet"
        return f"finding {self.finding_id} ('{self.prompt}', seed {self.seed}): {said}{done}"

    def as_dict(self) -> dict[str, Any]:
        return {"finding_id": self.finding_id, "prompt": self.prompt, "seed": self.seed,
                "labels": dict(self.labels), "adjudicated": self.adjudicated}


@dataclass(frozen=True)
class Agreement:
    """How far the reviewers agree on the findings at least two of them labeled.

    ``value`` is Cohen's kappa (two reviewers) or Krippendorff's alpha (nominal, more than two), in [-1, 1]
    (1: full agreement, 0: what chance gives); None when it cannot be computed (fewer than two reviewers, no
    finding labeled twice, or a single label used by everyone, where chance agreement is already 1).
    """

    reviewers: tuple[str, ...]
    compared: int  # findings labeled by at least two reviewers
    agreeing: int  # of those, the findings where every reviewer gave the same label
    measure: str  # "Cohen's kappa", "Krippendorff's alpha" or "" when there is nothing to compare
    value: float | None
    why_none: str = ""

    def in_words(self) -> str:
        if not self.compared:
            return f"no finding was labeled by two reviewers ({len(self.reviewers)} reviewer(s)): no agreement to report"
        share = f"{self.agreeing} of {self.compared} findings labeled by two or more reviewers agree"
        if self.value is None:
            return f"{share}; {self.measure} cannot be computed: {self.why_none}"
        return f"{share}; {self.measure} {self.value:.3f} ({', '.join(self.reviewers)})"

    def as_dict(self) -> dict[str, Any]:
        return {"reviewers": list(self.reviewers), "compared": self.compared, "agreeing": self.agreeing,
                "measure": self.measure, "value": self.value, "why_none": self.why_none}


@dataclass
class MergeReport:
    """What :func:`merge_casebooks` wrote."""

    out: Path
    sources: list[str]
    findings: int = 0
    findings_in_several: int = 0  # findings more than one input held
    events: int = 0
    runs: int = 0
    disagreements: list[Disagreement] = field(default_factory=list)
    agreement: Agreement | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "sources": self.sources, "findings": self.findings,
                "findings_in_several": self.findings_in_several, "events": self.events, "runs": self.runs,
                "disagreements": [d.as_dict() for d in self.disagreements],
                "agreement": self.agreement.as_dict() if self.agreement else None}


# --- who said what -----------------------------------------------------------------------------------------


def _events(conn: sqlite3.Connection) -> Iterator[tuple]:
    return conn.execute("SELECT id, finding_id, action, label, reviewer, note, undoes FROM label_events"
                        " WHERE finding_id IS NOT NULL ORDER BY id")


def reviewer_labels(book: Casebook) -> tuple[dict[int, dict[str, str]], dict[int, str]]:
    """Each finding's standing label per reviewer, and each adjudicated finding's newest adjudicated label.

    A reviewer's standing label is the last label they gave the finding (at recording or later) that no undo
    took back; clearing a label (unlabeled) withdraws it. The merge's own events and adjudications are not
    reviewers' opinions and are left out of the first mapping.
    """
    with book._read() as conn:
        return _labels_on(conn)


def _labels_on(conn: sqlite3.Connection) -> tuple[dict[int, dict[str, str]], dict[int, str]]:
    given: dict[int, dict[int, tuple[str, str]]] = {}  # finding -> event id -> (reviewer, label)
    adjudicated: dict[int, str] = {}
    for eid, fid, action, label, reviewer, note, undoes in _events(conn):
        own = given.setdefault(fid, {})
        if action == "undo" and undoes is not None:
            own.pop(undoes, None)
        elif action in ("record", "label"):
            if reviewer == MERGE_REVIEWER:
                continue
            if action == "label" and (note or "").lower().startswith(ADJUDICATED):
                adjudicated[fid] = label
                continue
            if action == "record" and label == UNLABELED:
                continue
            own[eid] = (reviewer or "", label)
    standing: dict[int, dict[str, str]] = {}
    for fid, events in given.items():
        labels: dict[str, str] = {}
        for eid in sorted(events):
            who, label = events[eid]
            labels.pop(who, None)  # the newest label of each reviewer, placed where they last spoke
            if label != UNLABELED:
                labels[who] = label
        if labels:
            standing[fid] = labels
    return standing, adjudicated


def disagreements(book: Casebook) -> list[Disagreement]:
    """The findings whose reviewers' standing labels differ (see :func:`reviewer_labels`), oldest first, each
    with the adjudicated label when it has one."""
    standing, adjudicated = reviewer_labels(book)
    out = []
    for fid in sorted(standing):
        labels = standing[fid]
        if len(set(labels.values())) > 1:
            s = book.summary(fid)
            out.append(Disagreement(fid, s.prompt, s.seed, labels, adjudicated.get(fid)))
    return out


def agreement(standing: dict[int, dict[str, str]]) -> Agreement:
    """Agreement over the findings labeled by at least two reviewers: Cohen's kappa
    (``sklearn.metrics.cohen_kappa_score``) when there are two reviewers, Krippendorff's alpha
    (``krippendorff.alpha``, nominal) when there are more. ``standing`` maps finding -> reviewer -> label."""
    reviewers = tuple(sorted({who for labels in standing.values() for who in labels}))
    rated = {fid: labels for fid, labels in standing.items() if len(labels) >= 2}
    agreeing = sum(1 for labels in rated.values() if len(set(labels.values())) == 1)
    if len(reviewers) < 2 or not rated:
        return Agreement(reviewers, len(rated), agreeing, "", None, "fewer than two reviewers labeled a finding")
    used = sorted({label for labels in rated.values() for label in labels.values()})
    if len(reviewers) == 2:
        measure = "Cohen's kappa"
        if len(used) < 2:
            return Agreement(reviewers, len(rated), agreeing, measure, None,
                             f"every label is '{used[0]}', so chance alone agrees fully")
        from sklearn.metrics import cohen_kappa_score  # imported here: the casebook opens without it

        first = [rated[f][reviewers[0]] for f in sorted(rated)]
        second = [rated[f][reviewers[1]] for f in sorted(rated)]
        return Agreement(reviewers, len(rated), agreeing, measure,
                         float(cohen_kappa_score(first, second, labels=list(LABELS))))
    measure = "Krippendorff's alpha"
    if len(used) < 2:
        return Agreement(reviewers, len(rated), agreeing, measure, None,
                         f"every label is '{used[0]}', so chance alone agrees fully")
    import krippendorff
    import numpy as np

    code = {label: i for i, label in enumerate(LABELS)}
    data = np.full((len(reviewers), len(rated)), np.nan)
    for j, fid in enumerate(sorted(rated)):
        for i, who in enumerate(reviewers):
            if who in rated[fid]:
                data[i, j] = code[rated[fid][who]]
    value = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal",
                               value_domain=list(range(len(LABELS))))
    return Agreement(reviewers, len(rated), agreeing, measure, float(value))


# --- merging -----------------------------------------------------------------------------------------------


def _finding_key(row: sqlite3.Row) -> str:
    if row["generation_key"]:
        return "key:" + row["generation_key"]
    return f"image:{row['image_sha256']}|seed:{row['seed']}|prompt:{row['prompt']}"


def _run_key(row: sqlite3.Row) -> tuple:
    return (row["started_at"], row["kind"], row["prompt"], row["model_sha256"])


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def merge_casebooks(sources: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                    overwrite: bool = False) -> MergeReport:
    """Merge two or more casebooks into a new one at ``out`` (see the module's description) and report the
    disagreements and the agreement. The inputs are only read; ``out`` appears only when complete.

    Raises
    ------
    UserError
        Fewer than two inputs, ``out`` equal to an input, ``out`` existing without ``overwrite``, an input
        written by an older inspector (open it once for writing to upgrade it).
    """
    paths = [Path(s).expanduser() for s in sources]
    out = Path(out).expanduser()
    if len(paths) < 2:
        raise UserError("merge needs at least two casebooks: inspector casebook merge A.db B.db --out C.db")
    for p in paths:
        if _same_file(p, out) or p.resolve() == out.resolve():
            raise UserError(f"--out {out} is one of the casebooks to merge: choose a new file for the merge")
    if out.exists() and not overwrite:
        raise UserError(f"{out} exists: choose a new file for the merge, or pass --overwrite to replace it")
    # Opened only to read: an input written by an older inspector is refused here, with how to upgrade it.
    books = [Casebook.open(p, create=False, readonly=True) for p in paths]
    try:
        report = MergeReport(out, [str(p) for p in paths])
        with atomic_path(out, overwrite=overwrite) as tmp:
            merged = Casebook(tmp)
            try:
                with merged._write() as conn:
                    _copy_into(conn, books, report)
                report.disagreements = disagreements(merged)
                report.agreement = agreement(reviewer_labels(merged)[0])
                problems = merged.verify()
                if not problems.ok:  # a bug here, never the person's doing: refuse to publish it
                    raise CasebookError(f"the merged casebook does not verify: {problems.summary()}")
            finally:
                merged.close()
    finally:
        for b in books:
            b.close()
    return report


def _rows(book: Casebook, sql: str) -> list[sqlite3.Row]:
    with book._read() as conn:
        old = conn.row_factory
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.row_factory = old


def _copy_into(conn: sqlite3.Connection, books: list[Casebook], report: MergeReport) -> None:
    """Write the inputs' runs, findings, neighbours and events into the empty casebook ``conn`` (one
    transaction)."""
    run_map: dict[tuple[int, int], int] = {}  # (input, run id) -> merged run id
    run_keys: dict[tuple, int] = {}
    for src, book in enumerate(books):
        for row in _rows(book, f"SELECT {', '.join(RUN_COLUMNS)} FROM runs ORDER BY id"):
            key = _run_key(row)
            if key not in run_keys:
                values = {c: row[c] for c in RUN_COLUMNS if c != "id"}
                cursor = conn.execute(f"INSERT INTO runs ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                                      list(values.values()))
                run_keys[key] = cursor.lastrowid
            run_map[(src, row["id"])] = run_keys[key]
    report.runs = len(run_keys)

    finding_map: dict[tuple[int, int], int] = {}
    finding_keys: dict[str, int] = {}
    image_of: dict[int, str] = {}
    seen_in: dict[int, set[int]] = {}
    for src, book in enumerate(books):
        for row in _rows(book, "SELECT * FROM findings ORDER BY id"):
            key = _finding_key(row)
            if key not in finding_keys:
                values = {c: row[c] for c in row.keys() if c not in ("id", "event_head")}
                values["run_id"] = run_map.get((src, row["run_id"])) if row["run_id"] is not None else None
                cursor = conn.execute(
                    f"INSERT INTO findings ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                    list(values.values()))
                new = cursor.lastrowid
                finding_keys[key] = new
                image_of[new] = row["image_sha256"]
                for n in _rows(book, f"SELECT * FROM neighbours WHERE finding_id = {int(row['id'])} ORDER BY rank"):
                    nv = {c: n[c] for c in n.keys() if c != "id"}
                    nv["finding_id"] = new
                    conn.execute(f"INSERT INTO neighbours ({', '.join(nv)}) VALUES ({', '.join('?' * len(nv))})",
                                 list(nv.values()))
            finding_map[(src, row["id"])] = finding_keys[key]
            seen_in.setdefault(finding_keys[key], set()).add(src)
    report.findings = len(finding_keys)
    report.findings_in_several = sum(1 for s in seen_in.values() if len(s) > 1)

    def stream(src: int, book: Casebook) -> Iterator[tuple[str, int, int, sqlite3.Row]]:
        for row in _rows(book, f"SELECT {', '.join(_EVENT_COLUMNS)} FROM label_events ORDER BY id"):
            yield row["created_at"], src, row["id"], row

    chain = _ChainWriter(conn)
    written: dict[str, int] = {}  # an input event's hash -> merged event id (events the inputs share, once)
    event_map: dict[tuple[int, int], int] = {}
    current: dict[int, str] = {}  # merged finding -> its label so far
    states: dict[int, FindingState] = {}
    last_run_state: dict[int, dict[str, Any]] = {}
    links: set[tuple[int, int]] = set()
    # heapq.merge keeps each input's own order: an input's record always comes before its labels.
    for _, src, eid, ev in heapq.merge(*(stream(s, b) for s, b in enumerate(books)), key=lambda t: t[0]):
        if ev["hash"] in written:
            event_map[(src, eid)] = written[ev["hash"]]
            continue
        fid = finding_map.get((src, ev["finding_id"])) if ev["finding_id"] is not None else None
        run = run_map.get((src, ev["run_id"])) if ev["run_id"] is not None else None
        base = {"created_at": ev["created_at"], "reviewer": ev["reviewer"], "run_id": run}
        made = []
        if ev["action"] == "run":
            state = json.loads(ev["note"])
            state["id"] = run
            last_run_state[run] = state
            made.append(chain.append(finding_id=None, action="run", label=UNLABELED, note=run_note(state),
                                     image_sha256="", **base))
        elif fid is not None:
            made.extend(_finding_event(chain, ev, fid, base, current, image_of[fid], event_map, src, links))
        for m in made:
            if m.finding_id is not None:
                current[m.finding_id] = m.label
                states.setdefault(m.finding_id, FindingState()).apply(
                    {"id": m.id, "action": m.action, "label": m.label, "reviewer": m.reviewer, "note": m.note})
        if made:
            written[ev["hash"]] = made[0].id
            event_map[(src, eid)] = made[0].id

    # A disagreement goes back to unlabeled, by an event that says why: no reviewer's label silently wins.
    standing, adjudicated = _labels_on(conn)
    for fid in sorted(standing):
        now = current.get(fid, UNLABELED)
        if len(set(standing[fid].values())) > 1 and now != UNLABELED and adjudicated.get(fid) != now:
            m = chain.append(finding_id=fid, action="label", label=UNLABELED, previous_label=current[fid],
                             reviewer=MERGE_REVIEWER, note="", image_sha256=image_of[fid])
            current[fid] = UNLABELED
            states[fid].apply({"id": m.id, "action": m.action, "label": m.label, "reviewer": m.reviewer,
                               "note": m.note})
    chain.close()
    report.events = chain.count

    for run, state in last_run_state.items():
        values = {c: state.get(c) for c in RUN_COLUMNS if c != "id"}
        conn.execute(f"UPDATE runs SET {', '.join(f'{c} = ?' for c in values)} WHERE id = ?",
                     [*values.values(), run])
    for run, fid in sorted(links):
        conn.execute("INSERT OR IGNORE INTO run_findings (run_id, finding_id) VALUES (?, ?)", (run, fid))
    for fid, state in states.items():
        updated = conn.execute("SELECT max(created_at) FROM label_events WHERE finding_id = ?", (fid,)).fetchone()[0]
        conn.execute("UPDATE findings SET label = ?, reviewer = ?, notes = ?, updated_at = ? WHERE id = ?",
                     (state.label, state.reviewer, state.notes, updated, fid))


def _finding_event(chain: _ChainWriter, ev: sqlite3.Row, fid: int, base: dict[str, Any], current: dict[int, str],
                   image_sha: str, event_map: dict[tuple[int, int], int], src: int,
                   links: set[tuple[int, int]]) -> list:
    """One input event of a finding, written again for the merged finding ``fid``: its label as it was, the
    label before it as the merged history has it. A second input's own "record" of a finding already recorded
    becomes what ``Casebook.record`` makes of a generation recorded again: a link to its run, its label."""
    action, label = ev["action"], ev["label"]
    run = base["run_id"]
    was = current.get(fid)
    common = {"finding_id": fid, "image_sha256": image_sha, **base}
    if action == "record":
        if was is None:
            if run is not None:
                links.add((run, fid))
            return [chain.append(action="record", label=label, previous_label=None, note=ev["note"], **common)]
        made = []
        if run is not None:
            links.add((run, fid))
            made.append(chain.append(action="link", label=was, previous_label=was, note="", **common))
        if label != UNLABELED:
            made.append(chain.append(action="label", label=label, previous_label=was, note=ev["note"],
                                     **{**common, "run_id": None}))
        elif ev["note"]:
            made.append(chain.append(action="note", label=was, previous_label=was, note=ev["note"],
                                     **{**common, "run_id": None}))
        return made
    if was is None:  # cannot happen for a well-formed input: its record comes first
        raise CasebookError(f"an event of finding {ev['finding_id']} comes before its record in input {src + 1}")
    if action == "link" and run is not None:
        links.add((run, fid))
    if action in ("label", "undo"):
        undoes = event_map.get((src, ev["undoes"])) if ev["undoes"] is not None else None
        return [chain.append(action=action, label=label, previous_label=was, note=ev["note"], undoes=undoes,
                             **common)]
    return [chain.append(action=action, label=was, previous_label=was, note=ev["note"], **common)]
