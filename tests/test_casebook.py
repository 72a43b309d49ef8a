"""The casebook as its users meet it: record findings, label them, change their minds, find them again, and
trust that the file is the evidence it was when written."""

from __future__ import annotations

import io
import os
import sqlite3
import stat
import threading
import time

import numpy as np
import pytest
from PIL import Image

from inspector.casebook import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    Casebook,
    CasebookBusyError,
    CasebookError,
    CasebookNotFoundError,
    FindingNotFoundError,
    NewerCasebookError,
    NotACasebookError,
    ReadOnlyCasebookError,
    default_casebook_path,
    fts_query,
)
from inspector.errors import UserError
from inspector.findings import Finding, Neighbour


def tiny_png(seed: int, size: int = 8) -> bytes:
    """A small random RGB PNG (8 x 8 pixels by default), different for each seed."""
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def make_finding(
    seed: int = 0,
    prompt: str = "a photo of a lighthouse",
    captions: tuple[str, ...] = ("a lighthouse at dusk", "a red barn", "a harbour", "a stone bridge"),
    model: str = "demo",
    model_sha256: str = "ab" * 32,
    **fields,
) -> Finding:
    """A finding with a tiny generation and four neighbours carrying their thumbnails as bytes."""
    neighbours = [
        Neighbour(rank=r + 1, item_id=100 + r, source=f"train/{r}.png", caption=caption, duplicate_count=r + 1,
                  l2=0.05 + 0.1 * r, tiled_l2=0.08 + 0.1 * r, ssim=0.9 - 0.1 * r, calibrated_l2=0.4 + 0.2 * r,
                  index_id="demo-index", thumbnail_png=tiny_png(1000 * seed + r + 1), image_sha256="cd" * 32)
        for r, caption in enumerate(captions)
    ]
    provenance = {"prompt": prompt, "seed": seed, "steps": 20, "guidance": 7.5, "scheduler": "DDIMScheduler",
                  "model": {"id": model, "sha256": model_sha256}, "versions": {"diffusers": "0.30"}}
    return Finding(prompt=prompt, seed=seed, image_png=tiny_png(seed), provenance=provenance,
                   neighbours=neighbours, suggested_verdict="memorized", suggestion_reason="tiled l2 0.08",
                   metrics={"clique_size": 11, "wen_score": 4.2}, **fields)


@pytest.fixture
def book():
    with Casebook(memory=True) as b:
        yield b


@pytest.fixture
def path(tmp_path):
    return tmp_path / "casebook.db"


# --- recording and reading back ---------------------------------------------------------------------------


def test_a_recorded_finding_comes_back_whole_with_its_four_neighbours(book):
    finding = make_finding(7, negative_prompt="blurry", notes="first look")
    finding_id = book.record(finding)
    assert finding.id == finding_id and finding.created_at and finding.image_sha256
    got = book.get(finding_id)
    assert (got.prompt, got.seed, got.negative_prompt, got.notes) == (finding.prompt, 7, "blurry", "first look")
    assert got.image_png == finding.image_png
    assert got.provenance == finding.provenance and got.metrics == finding.metrics
    assert (got.suggested_verdict, got.suggestion_reason, got.label) == ("memorized", "tiled l2 0.08", "unlabeled")
    assert [n.rank for n in got.neighbours] == [1, 2, 3, 4]
    first = got.neighbours[0]
    original = finding.neighbours[0]
    for name in ("item_id", "source", "caption", "duplicate_count", "l2", "tiled_l2", "ssim", "calibrated_l2",
                 "index_id", "image_sha256"):
        assert getattr(first, name) == getattr(original, name), name
    assert first.thumbnail_png == original.thumbnail_png


def test_each_finding_keeps_a_small_thumbnail_of_its_generation(book):
    big = io.BytesIO()
    Image.new("RGB", (512, 256), (200, 10, 10)).save(big, format="PNG")
    finding = make_finding(1)
    finding.image_png = big.getvalue()
    finding_id = book.record(finding)
    [summary] = book.findings(thumbnails=True)
    with Image.open(io.BytesIO(summary.thumbnail_png)) as thumb:
        assert max(thumb.size) == 128 and thumb.size == (128, 64)
    row = book.db.conn.execute("SELECT image_width, image_height FROM findings WHERE id = ?", (finding_id,))
    assert row.fetchone() == (512, 256)


def test_neighbour_thumbnails_are_read_from_the_index_folder_into_the_casebook(book, tmp_path):
    index_dir = tmp_path / "index"
    (index_dir / "thumbs").mkdir(parents=True)
    (index_dir / "thumbs" / "1.png").write_bytes(tiny_png(42))
    finding = make_finding(2)
    for n in finding.neighbours:
        n.thumbnail_png = None
        n.thumbnail = "thumbs/1.png" if n.rank == 1 else "thumbs/missing.png"
    finding_id = book.record(finding, index_dir=index_dir)
    (index_dir / "thumbs" / "1.png").unlink()  # the casebook alone is the evidence
    got = book.get(finding_id)
    assert got.neighbours[0].thumbnail_png == tiny_png(42)
    assert got.neighbours[0].thumbnail == "thumbs/1.png"
    assert got.neighbours[1].thumbnail_png is None  # a lost thumbnail never costs the finding
    assert book.verify().ok


def test_a_malformed_finding_is_refused_and_nothing_of_the_batch_is_stored(book):
    bad = make_finding(3)
    bad.image_png = b"GIF89a not a png"
    with pytest.raises(ValueError, match="PNG"):
        book.record_many([make_finding(1), bad])
    with pytest.raises(ValueError, match="label"):
        book.record(make_finding(4, label="copied"))
    with pytest.raises(ValueError, match="64 bits"):
        book.record(make_finding(2**64))
    assert len(book) == 0 and book.revision() == 0


def test_recording_many_findings_at_once_keeps_their_order(book):
    ids = book.record_many([make_finding(i, prompt=f"prompt {i}") for i in range(5)])
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert [book.get(i).prompt for i in ids] == [f"prompt {i}" for i in range(5)]
    assert book.verify().ok


def test_asking_for_a_finding_that_is_not_there_says_so(book):
    with pytest.raises(FindingNotFoundError, match="no finding 99"):
        book.get(99)
    with pytest.raises(FindingNotFoundError):
        book.label(99, "novel")
    assert isinstance(FindingNotFoundError("x"), UserError)


# --- labeling, history, undo ------------------------------------------------------------------------------


def test_relabeling_keeps_the_full_history(book):
    finding_id = book.record(make_finding(1))
    book.label(finding_id, "memorized", reviewer="ana", note="pixel copy of train/0.png")
    book.label(finding_id, "likeness-only", reviewer="bob", note="crop differs")
    got = book.get(finding_id)
    assert (got.label, got.reviewer, got.notes) == ("likeness-only", "bob", "crop differs")
    history = book.label_history(finding_id)
    assert [(e.action, e.previous_label, e.label, e.reviewer) for e in history] == [
        ("record", None, "unlabeled", ""),
        ("label", "unlabeled", "memorized", "ana"),
        ("label", "memorized", "likeness-only", "bob"),
    ]
    assert history[1].note == "pixel copy of train/0.png"
    assert [e.prev_hash for e in history[1:]] == [e.hash for e in history[:-1]]


def test_undo_restores_the_previous_label_and_keeps_both_events(book):
    finding_id = book.record(make_finding(1))
    book.label(finding_id, "memorized", reviewer="ana")
    book.label(finding_id, "novel", reviewer="bob")
    undo = book.undo_last_label(finding_id, reviewer="bob", note="pressed the wrong key")
    assert (undo.action, undo.previous_label, undo.label) == ("undo", "novel", "memorized")
    got = book.get(finding_id)
    assert (got.label, got.reviewer) == ("memorized", "ana")
    assert book.undo_last_label(finding_id).label == "unlabeled"
    with pytest.raises(CasebookError, match="no label change to undo"):
        book.undo_last_label(finding_id)
    history = book.label_history(finding_id)
    assert [e.action for e in history] == ["record", "label", "label", "undo", "undo"]
    assert history[3].undoes == history[2].id and history[4].undoes == history[1].id
    assert book.verify().ok


def test_undo_after_a_new_label_undoes_the_newest_change_only(book):
    finding_id = book.record(make_finding(1))
    book.label(finding_id, "memorized")
    book.label(finding_id, "novel")
    book.undo_last_label(finding_id)  # back to memorized
    book.label(finding_id, "likeness-only")
    assert book.undo_last_label(finding_id).label == "memorized"
    assert book.undo_last_label(finding_id).label == "unlabeled"


def test_a_finding_recorded_with_a_label_can_have_it_undone(book):
    finding_id = book.record(make_finding(1, label="memorized", reviewer="ana"))
    assert book.get(finding_id).label == "memorized"
    assert book.undo_last_label(finding_id).label == "unlabeled"


def test_changing_notes_is_part_of_the_history(book):
    finding_id = book.record(make_finding(1))
    book.label(finding_id, "novel", reviewer="ana")
    event = book.set_notes(finding_id, "checked twice", reviewer="ana")
    assert (event.action, event.label) == ("note", "novel")
    assert book.get(finding_id).notes == "checked twice"
    assert book.undo_last_label(finding_id).label == "unlabeled"  # a note is not a label change
    assert book.verify().ok


def test_revision_grows_with_every_change(book):
    r0 = book.revision()
    finding_id = book.record(make_finding(1))
    r1 = book.revision()
    book.label(finding_id, "novel")
    assert r0 < r1 < book.revision()


# --- filters and full-text search -------------------------------------------------------------------------


@pytest.fixture
def stocked(book):
    """Six findings over two models, three reviewers and all labels."""
    specs = [
        ("a photo of Ann Graham Lotz", "memorized", "ana", "m1", ("portrait of Ann", "a red barn")),
        ("an oil painting of a castle", "novel", "bob", "m1", ("castles at night", "a lake")),
        ("Obama giving a speech", "likeness-only", "ana", "m2", ("a podium", "a crowd")),
        ("a lighthouse at dusk", "memorized", "cy", "m2", ("a lighthouse", "the sea")),
        ("a bowl of fruit", None, "", "m1", ("still life", "apples")),
        ("a castle made of sand", None, "", "m2", ("beach", "sand")),
    ]
    for i, (prompt, label, reviewer, model, captions) in enumerate(specs):
        finding_id = book.record(make_finding(i, prompt=prompt, model=model, model_sha256=f"{i % 2:x}" * 64,
                                              captions=captions))
        if label:
            book.label(finding_id, label, reviewer=reviewer, note=f"note about {prompt.split()[-1]}")
    return book


def test_filtering_by_label_reviewer_and_model(stocked):
    assert [s.prompt for s in stocked.findings(label="memorized")] == ["a photo of Ann Graham Lotz",
                                                                      "a lighthouse at dusk"]
    assert len(stocked.findings(label=["memorized", "novel"])) == 3
    assert len(stocked.findings(label="unlabeled")) == 2
    assert {s.prompt for s in stocked.findings(reviewer="ana")} == {"a photo of Ann Graham Lotz",
                                                                    "Obama giving a speech"}
    assert len(stocked.findings(model="m2")) == 3
    assert len(stocked.findings(model="1" * 64)) == 3  # the weights sha256
    assert len(stocked.findings(model="00000000")) == 3  # a prefix of it
    assert stocked.findings(model="0000") == []  # too short a prefix to mean anything
    assert stocked.counts() == {"memorized": 2, "likeness-only": 1, "novel": 1, "unlabeled": 2}
    assert stocked.count(label="memorized", model="m1") == 1


def test_full_text_search_finds_prompts_notes_and_captions(stocked):
    def prompts(**kw):
        return [s.prompt for s in stocked.findings(**kw)]

    assert prompts(text="castle") == ["an oil painting of a castle", "a castle made of sand"]
    assert prompts(text="castles") == prompts(text="castle")  # stemmed
    assert prompts(text="portrait") == ["a photo of Ann Graham Lotz"]  # a neighbour's caption
    assert prompts(text="note about speech") == ["Obama giving a speech"]  # notes
    assert prompts(text="light") == ["a lighthouse at dusk"]  # the last word as a prefix, for typing
    assert prompts(text="castle", label="novel") == ["an oil painting of a castle"]
    assert prompts(text="castle", label="memorized") == []
    assert stocked.count(text="castle") == 2


def test_search_text_with_quotes_and_operators_is_never_a_syntax_error(stocked):
    for text in ['"castle', "castle AND (", "NEAR(", "*", "-castle", "ca'stle", "!!!", ""]:
        stocked.findings(text=text)
    assert fts_query("!!!") is None
    assert fts_query('say "hi" now') == '"say" "hi" "now"*'


def test_paging_and_ordering(stocked):
    everything = [s.id for s in stocked.findings()]
    assert [s.id for s in stocked.findings(limit=2, offset=2)] == everything[2:4]
    assert [s.id for s in stocked.findings(descending=True)] == everything[::-1]
    assert [s.nearest_tiled_l2 for s in stocked.findings(order="nearest")] == sorted(
        s.nearest_tiled_l2 for s in stocked.findings())
    with pytest.raises(ValueError):
        stocked.findings(order="sideways")


def test_a_generation_already_recorded_can_be_found_by_prompt_and_seed(stocked):
    [s] = stocked.findings(prompt="a bowl of fruit", seed=4)
    assert stocked.findings(image_sha256=s.image_sha256)[0].id == s.id


# --- the file: WAL, migrations, concurrency, refusals -----------------------------------------------------


def test_a_new_casebook_is_a_marked_sqlite_file_in_wal_mode_with_its_migrations_recorded(path):
    with Casebook.open(path) as b:
        assert b.schema_version == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [r[0] for r in conn.execute("SELECT version FROM casebook_migrations")] == list(
        range(1, SCHEMA_VERSION + 1))
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    assert {"findings", "neighbours", "label_events", "findings_fts", "casebook_info"} <= tables
    conn.close()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_reopening_a_casebook_keeps_everything_and_migrates_nothing(path):
    with Casebook.open(path) as b:
        finding_id = b.record(make_finding(1))
        b.label(finding_id, "memorized", reviewer="ana")
    with Casebook.open(path) as b:
        assert b.get(finding_id).label == "memorized"
        assert b.verify().ok
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM casebook_migrations").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_label_events_cannot_be_updated_or_deleted_through_sql(path):
    with Casebook.open(path) as b:
        b.record(make_finding(1))
    conn = sqlite3.connect(path)
    for sql in ("UPDATE label_events SET label = 'novel'", "DELETE FROM label_events"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(sql)
    conn.close()


def test_a_second_writer_waits_for_the_first_instead_of_failing(path):
    with Casebook.open(path) as b:
        finding_id = b.record(make_finding(1))
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    threading.Timer(0.5, lambda: blocker.execute("COMMIT")).start()
    with Casebook.open(path, create=False) as b:
        start = time.monotonic()
        b.label(finding_id, "novel")
        assert time.monotonic() - start >= 0.3
        assert b.get(finding_id).label == "novel"
    blocker.close()


def test_a_writer_blocked_past_the_timeout_gets_a_clear_busy_error(path):
    with Casebook.open(path) as b:
        finding_id = b.record(make_finding(1))
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with Casebook.open(path, create=False, timeout=0.2) as b:
            with pytest.raises(CasebookBusyError, match="another program is writing the casebook .*try again"):
                b.label(finding_id, "novel")
            assert b.get(finding_id).label == "unlabeled"  # reading is never blocked
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("content", [b"hello, I am a text file\n", b"\x89PNG\r\n\x1a\n" + b"\0" * 200],
                         ids=["text", "png"])
def test_a_file_that_is_not_sqlite_is_refused_and_left_byte_identical(tmp_path, content):
    target = tmp_path / "notes.db"
    target.write_bytes(content)
    before = _snapshot(tmp_path)
    with pytest.raises(NotACasebookError, match="not a casebook"):
        Casebook.open(target)
    assert _snapshot(tmp_path) == before


def test_another_programs_sqlite_database_is_refused_and_left_byte_identical(tmp_path):
    target = tmp_path / "other.db"
    conn = sqlite3.connect(target)
    conn.execute("CREATE TABLE customers (name TEXT)")
    conn.execute("INSERT INTO customers VALUES ('x')")
    conn.commit()
    conn.close()
    before = _snapshot(tmp_path)
    for readonly in (False, True):
        with pytest.raises(NotACasebookError, match="SQLite database but not a casebook"):
            Casebook.open(target, readonly=readonly)
    assert _snapshot(tmp_path) == before


def test_a_casebook_from_a_newer_version_is_refused_and_left_byte_identical(path):
    with Casebook.open(path) as b:
        b.record(make_finding(1))
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = path.read_bytes()
    for readonly in (False, True):
        with pytest.raises(NewerCasebookError, match="newer Memorization Inspector"):
            Casebook.open(path, readonly=readonly)
    assert path.read_bytes() == before


def test_a_read_only_casebook_is_refused_for_writing_left_unchanged_and_still_readable(path):
    with Casebook.open(path) as b:
        finding_id = b.record(make_finding(1))
    path.chmod(stat.S_IRUSR | stat.S_IRGRP)
    try:
        before = _snapshot(path.parent)
        with pytest.raises(ReadOnlyCasebookError, match="read-only"):
            Casebook.open(path)
        with Casebook.open(path, readonly=True) as b:
            assert b.get(finding_id).prompt == "a photo of a lighthouse"
            assert b.verify().ok
            with pytest.raises(ReadOnlyCasebookError):
                b.label(finding_id, "novel")
        assert _snapshot(path.parent) == before  # not even a journal file appeared
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_opening_for_reading_never_writes(path):
    with Casebook.open(path) as b:
        finding_id = b.record(make_finding(1))
    with Casebook.open(path, readonly=True) as b:
        with pytest.raises(ReadOnlyCasebookError, match="only to read"):
            b.label(finding_id, "novel")
        with pytest.raises(ReadOnlyCasebookError):
            b.record(make_finding(2))
    with Casebook.open(path) as b:
        assert len(b) == 1 and b.get(finding_id).label == "unlabeled"


def test_a_missing_casebook_is_created_only_when_asked(tmp_path):
    missing = tmp_path / "sub" / "new.db"
    for kwargs in ({"create": False}, {"readonly": True}):
        with pytest.raises(CasebookNotFoundError, match="no casebook"):
            Casebook.open(missing, **kwargs)
    assert not missing.parent.exists()
    with Casebook.open(missing) as b:
        assert len(b) == 0
    assert missing.exists()


def test_a_folder_is_not_a_casebook(tmp_path):
    with pytest.raises(NotACasebookError, match="folder"):
        Casebook.open(tmp_path)


def test_the_default_casebook_lives_in_the_user_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    assert default_casebook_path() == tmp_path / "data" / "casebook.db"
    with Casebook.open(default_casebook_path()) as b:
        b.record(make_finding(1))
    assert (tmp_path / "data" / "casebook.db").exists()
    monkeypatch.delenv("INSPECTOR_DATA_DIR")
    assert default_casebook_path().name == "casebook.db"


# --- verify and tampering ---------------------------------------------------------------------------------


@pytest.fixture
def three(path):
    with Casebook.open(path) as b:
        ids = [b.record(make_finding(i)) for i in range(3)]
        for finding_id, label in zip(ids, ("memorized", "novel", "likeness-only"), strict=True):
            b.label(finding_id, label, reviewer="ana")
        assert b.verify().ok
    return path, ids


def _tamper(path, *sql):
    conn = sqlite3.connect(path)
    for statement in sql:
        conn.execute(*statement) if isinstance(statement, tuple) else conn.execute(statement)
    conn.commit()
    conn.close()


def _failing(path):
    with Casebook.open(path, readonly=True) as b:
        report = b.verify()
    assert not report.ok
    return report


def test_changing_a_stored_label_outside_the_api_makes_verify_name_the_finding(three):
    path, ids = three
    _tamper(path, ("UPDATE findings SET label = 'novel' WHERE id = ?", (ids[0],)))
    report = _failing(path)
    assert report.failing_findings == [ids[0]]
    assert "last label event says 'memorized'" in report.by_finding()[ids[0]][0]


def test_changing_image_bytes_outside_the_api_makes_verify_name_the_finding(three):
    path, ids = three
    _tamper(path, ("UPDATE findings SET image_png = ? WHERE id = ?", (tiny_png(999), ids[1])))
    report = _failing(path)
    assert report.failing_findings == [ids[1]]
    assert "generation image does not match its sha256" in str(report.problems[0])


def test_replacing_an_image_and_its_sha256_together_still_fails_verify(three):
    import hashlib

    path, ids = three
    fake = tiny_png(999)
    _tamper(path, ("UPDATE findings SET image_png = ?, image_sha256 = ? WHERE id = ?",
                   (fake, hashlib.sha256(fake).hexdigest(), ids[2])))
    assert _failing(path).failing_findings == [ids[2]]  # the label events were made for the old image


def test_changing_a_neighbour_thumbnail_makes_verify_name_the_finding(three):
    path, ids = three
    _tamper(path, ("UPDATE neighbours SET thumbnail_png = ? WHERE finding_id = ? AND rank = 3",
                   (tiny_png(5), ids[2])))
    report = _failing(path)
    assert report.failing_findings == [ids[2]] and "neighbour 3" in report.problems[0].reason


def test_rewriting_the_label_history_breaks_the_hash_chain(three):
    path, ids = three
    _tamper(path, "DROP TRIGGER label_events_are_append_only_update",
            ("UPDATE label_events SET reviewer = 'mallory' WHERE finding_id = ? AND action = 'label'", (ids[1],)))
    report = _failing(path)
    assert report.failing_findings == [ids[1]] and "changed after it was written" in report.problems[0].reason


def test_removing_the_newest_label_event_is_detected(three):
    path, ids = three
    _tamper(path, "DROP TRIGGER label_events_are_append_only_delete",
            "DELETE FROM label_events WHERE id = (SELECT max(id) FROM label_events)",
            ("UPDATE findings SET label = 'unlabeled' WHERE id = ?", (ids[2],)))
    report = _failing(path)
    assert any(p.finding_id is None and "chain" in p.reason for p in report.problems)


def test_removing_an_old_label_event_is_detected_and_named(three):
    path, ids = three
    _tamper(path, "DROP TRIGGER label_events_are_append_only_delete",
            ("DELETE FROM label_events WHERE finding_id = ? AND action = 'record'", (ids[1],)))
    assert ids[1] in _failing(path).failing_findings


def test_unlocked_casebooks_pass_verify_with_counts(three):
    path, ids = three
    with Casebook.open(path, readonly=True) as b:
        report = b.verify()
    assert report.ok and report.integrity == ["ok"]
    assert (report.findings_checked, report.events_checked, report.images_checked) == (3, 6, 3 * 6)
    assert report.as_dict()["ok"] is True and "all is well" in report.summary()


def test_every_refusal_is_a_user_error_with_a_message_that_says_what_to_do(tmp_path):
    target = tmp_path / "x.db"
    target.write_text("not sqlite")
    with pytest.raises(UserError) as info:
        Casebook.open(target)
    assert "choose a casebook file" in str(info.value)
    assert os.path.getsize(target) == len("not sqlite")
