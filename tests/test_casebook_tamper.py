"""Tamper evidence for every field a person can change (issue 17): someone edits the SQLite file directly, as an
attacker would, and `casebook verify` fails naming the finding; the report then never says "verified"."""

from __future__ import annotations

import hashlib
import io
import sqlite3

import numpy as np
import pytest
import sqlite_utils
from PIL import Image
from test_casebook import make_finding, tiny_png

from inspector import report
from inspector.casebook import Casebook
from inspector.casebook import schema as casebook_schema
from inspector.casebook.chain import GENESIS, event_hash
from inspector.cli import main


def with_pixels(finding):
    """The finding's neighbours carry the pixels they were compared at (verify checks them too)."""
    for n in finding.neighbours:
        n.comparison_size = 8
        n.pixels = np.random.default_rng(n.rank).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return finding


@pytest.fixture
def casebook(tmp_path):
    """Three findings as a reviewer leaves them: labels, reviewers, notes, a label taken back, a reproduction."""
    path = tmp_path / "case.db"
    with Casebook.open(path) as b:
        one = b.record(with_pixels(make_finding(1, prompt="a photo of Ann Graham Lotz", notes="first look")))
        b.label(one, "memorized", reviewer="ana", note="near copy of the portrait")
        b.record_reproduction(one, {"match": True, "max_abs_diff": 0, "pixels_sha256": "ab" * 32})
        two = b.record(with_pixels(make_finding(2, prompt="colourful squares")))
        b.label(two, "novel", reviewer="bob")
        b.label(two, "likeness-only", reviewer="cy")
        b.undo_last_label(two, reviewer="cy")
        b.set_notes(two, "checked twice", reviewer="bob")
        three = b.record(with_pixels(make_finding(3, prompt="an unlabeled one")))
        b.label(three, "novel", reviewer="ana")
        assert b.verify().ok, b.verify().problems
    return path


def tamper(path, *statements):
    """Edit the file behind the inspector's back (in one transaction, as a script would)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for sql, *params in statements:
        conn.execute(sql, *params)
    conn.execute("COMMIT")
    conn.close()


def verify_names(path, capsys) -> str:
    assert main(["casebook", "verify", str(path)]) == 1
    return capsys.readouterr().out


def test_a_reviewer_edited_in_the_file_is_named(casebook, capsys):
    tamper(casebook, ("UPDATE findings SET reviewer = 'mallory' WHERE id = 2",))
    out = verify_names(casebook, capsys)
    assert "finding 2: its reviewer is 'mallory' but its label events say 'bob'" in out
    assert "finding 1" not in out and "finding 3" not in out


def test_notes_edited_in_the_file_are_named(casebook, capsys):
    tamper(casebook, ("UPDATE findings SET notes = 'nothing to see' WHERE id = 1",))
    out = verify_names(casebook, capsys)
    assert "finding 1: its notes are 'nothing to see' but its events say 'near copy of the portrait'" in out


def test_notes_given_when_a_finding_was_recorded_are_in_the_chain(tmp_path, capsys):
    path = tmp_path / "case.db"
    with Casebook.open(path) as b:
        b.record(make_finding(5, notes="seen in the scan"))
        assert b.label_history(1)[0].note == "seen in the scan"
    tamper(path, ("UPDATE findings SET notes = '' WHERE id = 1",))
    assert "finding 1: its notes are '' but its events say 'seen in the scan'" in verify_names(path, capsys)


def test_a_label_edited_in_the_file_is_named(casebook, capsys):
    tamper(casebook, ("UPDATE findings SET label = 'novel' WHERE id = 1",))
    assert "finding 1: its label is 'novel' but its last label event says 'memorized'" in verify_names(casebook,
                                                                                                         capsys)


def test_a_label_and_reviewer_edited_together_are_named(casebook, capsys):
    tamper(casebook, ("UPDATE findings SET label = 'memorized', reviewer = 'ana' WHERE id = 3",))
    out = verify_names(casebook, capsys)
    assert "finding 3: its label is 'memorized'" in out and "finding 3: its reviewer" not in out  # ana was right


def test_an_image_swapped_in_the_file_is_named(casebook, capsys):
    tamper(casebook, ("UPDATE findings SET image_png = ? WHERE id = 3", [tiny_png(99)]))
    assert "finding 3: the generation image does not match its sha256" in verify_names(casebook, capsys)


def test_compared_pixels_swapped_in_the_file_are_named(casebook, capsys):
    out = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(out, format="PNG")
    tamper(casebook, ("UPDATE neighbours SET pixels_png = ? WHERE finding_id = 2 AND rank = 1", [out.getvalue()]))
    assert "finding 2: the compared pixels of neighbour 1 does not match" in verify_names(casebook, capsys)


@pytest.mark.parametrize("which", ["reproduction", "undo", "last label", "note"])
def test_deleting_any_event_names_its_finding(casebook, capsys, which):
    """The triggers refuse deletes, so the attacker drops them first; every kind of event is missed."""
    with Casebook.open(casebook, readonly=True) as b:
        history = {f: b.label_history(f) for f in (1, 2, 3)}
    owner, event = {
        "reproduction": (1, next(e for e in history[1] if e.action == "reproduce")),  # changes no field
        "undo": (2, next(e for e in history[2] if e.action == "undo")),
        "last label": (3, history[3][-1]),  # the newest event of the whole chain
        "note": (2, next(e for e in history[2] if e.action == "note")),
    }[which]
    tamper(casebook, ("DROP TRIGGER label_events_are_append_only_delete",),
           ("DELETE FROM label_events WHERE id = ?", [event.id]))
    out = verify_names(casebook, capsys)
    assert f"finding {owner}:" in out, out


def test_removing_the_newest_events_and_rewriting_the_head_still_names_the_finding(casebook, capsys):
    with Casebook.open(casebook, readonly=True) as b:
        last = b.label_history(3)[-1]
    tamper(casebook, ("DROP TRIGGER label_events_are_append_only_delete",),
           ("DELETE FROM label_events WHERE id = ?", [last.id]),
           ("UPDATE casebook_info SET value = ? WHERE key = 'event_head'", [last.prev_hash]),
           ("UPDATE casebook_info SET value = CAST(value - 1 AS TEXT) WHERE key = 'event_count'",))
    out = verify_names(casebook, capsys)
    assert "finding 3:" in out  # its label says novel, its events say unlabeled; its newest event is gone


def test_the_report_of_a_tampered_casebook_says_not_verified_and_names_the_finding(casebook, tmp_path):
    tamper(casebook, ("UPDATE findings SET reviewer = 'mallory' WHERE id = 2",))
    with Casebook.open(casebook, readonly=True) as b:
        report.export(b, tmp_path / "r.html", "html")
        report.export(b, tmp_path / "r.json", "json", selection=report.Selection(ids=[1]))
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Integrity: <b>verified</b>" not in page
    assert "NOT verified: findings 2 in this report fail" in page
    section = page[page.index('id="finding-2"'):page.index('id="finding-3"')]
    assert "NOT verified: finding 2 was changed" in section and "its reviewer is &#39;mallory&#39;" in section
    import json

    exported = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert exported["verified"] is False and exported["verify"]["failing_findings"] == [2]


# --- casebooks from before version 5 ------------------------------------------------------------------------------


def _version_4_casebook(path, *, reviewer_in_row: str = "ana") -> None:
    """A casebook as version 4 left it: one finding recorded with notes (which that version kept out of its
    "record" event) and labeled by ana, and one with a note event."""
    conn = sqlite3.connect(path, isolation_level=None)
    db = sqlite_utils.Database(conn)
    conn.execute("BEGIN")
    for migration in casebook_schema.MIGRATIONS[:4]:
        migration.apply(db)
        conn.execute("INSERT INTO casebook_migrations VALUES (?, ?, 't', 'old')", (migration.version, migration.name))
    conn.execute(f"PRAGMA application_id = {casebook_schema.APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 4")
    rows = [(1, "memorized", reviewer_in_row, "first look"), (2, "unlabeled", "bob", "looked twice")]
    for fid, label, reviewer, notes in rows:
        png = tiny_png(fid)
        conn.execute("INSERT INTO findings (id, created_at, updated_at, prompt, seed, provenance, image_sha256,"
                     " image_png, label, reviewer, notes) VALUES (?, 't', 't', 'p', ?, '{}', ?, ?, ?, ?, ?)",
                     (fid, fid, hashlib.sha256(png).hexdigest(), png, label, reviewer, notes))
    events = [(1, "record", "unlabeled", None, "", ""), (1, "label", "memorized", "unlabeled", "ana", ""),
              (2, "record", "unlabeled", None, "bob", ""), (2, "note", "unlabeled", "unlabeled", "bob", "looked twice")]
    prev = GENESIS
    for eid, (fid, action, label, previous, who, note) in enumerate(events, start=1):
        image_sha = conn.execute("SELECT image_sha256 FROM findings WHERE id = ?", (fid,)).fetchone()[0]
        event = {"id": eid, "finding_id": fid, "action": action, "label": label, "previous_label": previous,
                 "reviewer": who, "note": note, "undoes": None, "image_sha256": image_sha,
                 "created_at": f"2026-01-0{eid}T00:00:00.000000Z"}
        digest = event_hash(prev, event)
        conn.execute("INSERT INTO label_events (id, finding_id, action, label, previous_label, reviewer, note, undoes,"
                     " image_sha256, created_at, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                     (*event.values(), prev, digest))
        prev = digest
    conn.execute("UPDATE casebook_info SET value = ? WHERE key = 'event_head'", (prev,))
    conn.execute("UPDATE casebook_info SET value = ? WHERE key = 'event_count'", (str(len(events)),))
    conn.execute("COMMIT")
    conn.close()


def test_a_version_4_casebook_upgrades_with_its_recorded_notes_put_in_the_chain(tmp_path, capsys):
    path = tmp_path / "old.db"
    _version_4_casebook(path)
    with Casebook.open(path) as b:  # the first open for writing migrates it
        assert b.schema_version == casebook_schema.SCHEMA_VERSION
        [upgrade] = [e for e in b.label_history(1) if e.reviewer == casebook_schema.UPGRADE_REVIEWER]
        assert (upgrade.action, upgrade.note) == ("note", "first look")
        assert [e.action for e in b.label_history(2)] == ["record", "note"]  # its notes were in the chain already
        b.label(2, "novel", reviewer="cy")  # new events chain per finding from here on
    assert main(["casebook", "verify", str(path)]) == 0
    tamper(path, ("UPDATE findings SET notes = 'rewritten' WHERE id = 1",))
    assert "finding 1: its notes are 'rewritten'" in verify_names(path, capsys)


def test_a_reviewer_forged_before_the_upgrade_is_still_named_after_it(tmp_path, capsys):
    path = tmp_path / "old.db"
    _version_4_casebook(path, reviewer_in_row="mallory")
    Casebook.open(path).close()
    assert "finding 1: its reviewer is 'mallory' but its label events say 'ana'" in verify_names(path, capsys)
