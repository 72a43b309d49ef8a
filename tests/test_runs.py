"""Every check on the record: runs in the casebook, one finding per generation, and casebooks from before runs.

A reviewer who checked a prompt and found nothing has a result too: the run says what was checked (model,
index, settings), how many images were made, and what they looked like, whether or not anyone labeled them.
"""

from __future__ import annotations

import io
import json
import sqlite3

import numpy as np
import pytest
import sqlite_utils
from PIL import Image

from inspector.casebook import Casebook, CasebookError
from inspector.casebook import schema as casebook_schema
from inspector.casebook.chain import GENESIS, event_hash
from inspector.casebook.keys import generation_key
from inspector.cli import main
from inspector.findings import Finding, Neighbour
from inspector.provenance import SCHEMA, png_bytes
from inspector.resources import demo_model_dir

WEIGHTS = "5e" * 32


def pixels(seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def engine_record(seed: int, prompt: str = "colourful squares", **changes) -> dict:
    """A provenance record as the generation engine writes it (the fields the generation key reads, and the
    ones it must ignore: threads, batch, device, versions)."""
    record = {
        "schema": SCHEMA, "prompt": prompt, "negative_prompt": "", "seed": seed, "steps": 2, "guidance": 2.0,
        "width": 16, "height": 16,
        "scheduler": {"class": "DDIMScheduler",
                      "config": {"num_train_timesteps": 1000, "lambda_min_clipped": {"__float__": "-inf"},
                                 "_diffusers_version": "0.36.0", "_class_name": "DDIMScheduler"}},
        "model": {"source": "demo", "name": "demo", "sha256": WEIGHTS},
        "device": "cpu", "dtype": "float32", "batch_size": 1, "batch": {"seeds": [seed], "index": 0},
        "batch_invariant": True, "torch_threads": 1, "versions": {"torch": "2.13", "diffusers": "0.36.0"},
    }
    record.update(changes)
    return record


def generation(seed: int, image: np.ndarray | None = None, label: str = "unlabeled", **changes) -> Finding:
    """A generation as the window or a scan records it: its PNG carries its provenance, so two records of the
    same pixels differ in their bytes whenever their provenance does."""
    record = engine_record(seed, **changes)
    png = png_bytes(Image.fromarray(pixels(seed) if image is None else image), record)
    nb = Neighbour(rank=1, item_id=7, source="train/7.png", caption="colourful squares", duplicate_count=1,
                   l2=0.1, tiled_l2=0.12, ssim=0.8)
    return Finding(prompt=record["prompt"], seed=seed, image_png=png, provenance=record, neighbours=[nb],
                   suggested_verdict="memorized", suggestion_reason="tiled l2 0.12", label=label)


@pytest.fixture
def book():
    with Casebook(memory=True) as b:
        yield b


def finished_run(book: Casebook, prompt: str = "colourful squares", n: int = 16, **finish) -> int:
    run_id = book.start_run(kind="window", prompt=prompt, n_requested=n, settings={"n": n, "first_seed": 0},
                            model_id="demo", model_sha256=WEIGHTS, index={"role": "training", "images": 2503},
                            reviewer="ana")
    fields = dict(n_finished=n, near_copies=0, likeness=0, novel=n, clique_size=2, clique_flagged=False,
                  clique_min_size=10, clique_seeds=[3, 5], wen_score=0.42)
    fields.update(finish)
    book.finish_run(run_id, **fields)
    return run_id


# --- runs ------------------------------------------------------------------------------------------------------


def test_a_run_that_found_nothing_is_on_the_record_in_words(book):
    run_id = finished_run(book)
    run = book.get_run(run_id)
    assert run.in_words() == "colourful squares: 16 generated, 0 near copies, clique 2/16, Wen 0.42"
    assert (run.kind, run.n_requested, run.n_finished, run.cancelled, run.reviewer) == ("window", 16, 16, False,
                                                                                        "ana")
    assert run.model_sha256 == WEIGHTS and run.index == {"role": "training", "images": 2503}
    assert run.clique_seeds == [3, 5] and run.settings["first_seed"] == 0
    assert [r.id for r in book.runs()] == [run_id]
    assert book.verify().ok


def test_a_cancelled_run_says_how_far_it_got_and_an_unfinished_one_says_so(book):
    cancelled = finished_run(book, n=16, n_finished=3, cancelled=True, novel=3, clique_size=1, wen_score=None)
    assert book.get_run(cancelled).in_words() == "colourful squares: 3 of 16 generated (cancelled), 0 near copies, " \
                                                 "clique 1/3"
    killed = book.start_run(kind="scan", prompt="the cameraman", n_requested=500)
    assert "not finished" in book.get_run(killed).in_words()
    assert [r.id for r in book.runs(finished=False)] == [killed]
    assert [r.id for r in book.runs(kind="window")] == [cancelled]
    failed = book.start_run(kind="inspect", prompt="x", n_requested=4)
    book.finish_run(failed, n_finished=1, error="out of memory on cuda")
    assert book.get_run(failed).in_words().startswith("x: 1 of 4 generated, then failed: out of memory")
    assert book.verify().ok


def test_a_run_finishes_once_and_unknown_runs_are_refused(book):
    run_id = finished_run(book)
    with pytest.raises(CasebookError, match="finished already"):
        book.finish_run(run_id, n_finished=1)
    with pytest.raises(CasebookError, match="no run 99"):
        book.record(generation(1), run_id=99)
    with pytest.raises(CasebookError, match="no run 99"):
        book.get_run(99)
    with pytest.raises(ValueError, match="kind"):
        book.start_run(kind="batch", prompt="x", n_requested=1)


def test_findings_link_to_the_run_that_made_them(book):
    first = book.start_run(kind="window", prompt="colourful squares", n_requested=2)
    ids = [book.record(generation(s), run_id=first) for s in (0, 1)]
    other = book.record(generation(9))  # recorded outside any run (an older caller)
    assert [f.id for f in book.findings(run_id=first)] == ids
    assert book.get(ids[0]).run_id == first and book.get(ids[0]).run_ids == [first]
    assert book.get(other).run_id is None and book.get(other).run_ids == []
    assert book.get_run(first).findings == 2
    history = book.label_history(ids[0])
    assert [(e.action, e.run_id) for e in history] == [("record", first)]
    assert book.verify().ok


# --- one finding per generation ----------------------------------------------------------------------------


def test_the_same_generation_made_by_a_scan_and_the_window_is_one_finding(book):
    scan_run = book.start_run(kind="scan", prompt="colourful squares", n_requested=4)
    scanned = book.record(generation(3), run_id=scan_run)
    # The window made it again: another thread count, batch, device, library version and the older spelling
    # of -inf in the scheduler config: the PNG bytes differ, the pixels and what made them do not.
    window_run = book.start_run(kind="window", prompt="colourful squares", n_requested=8)
    again = generation(3, torch_threads=2, batch_size=4, batch={"seeds": [0, 1, 2, 3], "index": 3}, device="cuda",
                       versions={"torch": "2.14"}, guidance=2,
                       scheduler={"class": "DDIMScheduler",
                                  "config": {"num_train_timesteps": 1000, "lambda_min_clipped": "-inf",
                                             "_diffusers_version": "0.37.0"}})
    assert again.image_png != generation(3).image_png
    assert book.record(again, run_id=window_run) == scanned
    assert len(book) == 1 and again.id == scanned and again.run_id == scan_run
    book.label(scanned, "memorized", reviewer="ana")  # labeling it in the window labels the scan's finding
    finding = book.get(scanned)
    assert finding.label == "memorized" and finding.run_ids == [scan_run, window_run]
    assert [f.id for f in book.findings(run_id=window_run)] == [scanned]
    assert [e.action for e in book.label_history(scanned)] == ["record", "link", "label"]
    assert book.verify().ok


def test_a_generation_recorded_again_with_a_label_takes_that_label(book):
    fid = book.record(generation(4))
    labeled = generation(4, label="novel", torch_threads=8)
    labeled.reviewer = "ben"
    assert book.record(labeled) == fid
    assert book.get(fid).label == "novel" and book.get(fid).reviewer == "ben"
    assert book.undo_last_label(fid).label == "unlabeled"
    assert book.verify().ok


@pytest.mark.parametrize("change", [
    {"seed": 5},  # another seed (the pixels happen to be the same here)
    {"steps": 3}, {"guidance": 7.5}, {"negative_prompt": "blurry"},
    {"model": {"source": "demo", "sha256": "6f" * 32}},
    {"scheduler": {"class": "EulerDiscreteScheduler", "config": {"num_train_timesteps": 1000}}},
    {"pixels": True},  # one pixel differs by one level
])
def test_anything_that_determines_the_pixels_makes_another_finding(book, change):
    first = book.record(generation(3))
    image = pixels(3)
    if change.pop("pixels", False):
        image[0, 0, 0] ^= 1
    seed = change.pop("seed", 3)
    other = generation(seed, image=image, **change)
    if "negative_prompt" in change:
        other.negative_prompt = change["negative_prompt"]
    assert book.record(other) != first and len(book) == 2


def test_findings_without_an_engine_record_are_never_merged(book):
    made = generation(2)
    plain = Finding(prompt=made.prompt, seed=2, image_png=made.image_png, provenance={"model": "demo"})
    assert generation_key(plain.provenance, plain.image_png, prompt=plain.prompt, negative_prompt="", seed=2) is None
    assert book.record(plain) != book.record(Finding(prompt=made.prompt, seed=2, image_png=made.image_png,
                                                     provenance={"model": "demo"}))
    assert book.record(made) != book.findings()[0].id  # and the keyed one is a finding of its own
    assert book.findings()[-1].generation_key is not None


# --- the chain covers runs -------------------------------------------------------------------------------------


def _tamper(path, *statements) -> None:
    conn = sqlite3.connect(path)
    for sql in statements:
        conn.execute(*sql) if isinstance(sql, tuple) else conn.execute(sql)
    conn.commit()
    conn.close()


@pytest.mark.parametrize("statements, problem", [
    (["UPDATE runs SET near_copies = 0, n_finished = 3 WHERE id = 1"], "run 1 was changed after it was written"),
    (["DELETE FROM run_findings WHERE run_id = 1", "DELETE FROM runs WHERE id = 1",
      "UPDATE findings SET run_id = NULL"], "run 1 is missing"),
    (["DELETE FROM run_findings WHERE run_id = 1"], "its link to run 1 was removed"),
    (["INSERT INTO runs (started_at, kind, prompt, n_requested) VALUES ('t', 'window', 'x', 1)"],
     "run 2 has no run event"),
])
def test_verify_notices_a_run_changed_or_removed_outside_the_casebook(tmp_path, statements, problem):
    path = tmp_path / "casebook.db"
    with Casebook.open(path) as book:
        run_id = finished_run(book, n=1, novel=0, near_copies=1)
        book.record(generation(0), run_id=run_id)
    _tamper(path, *statements)
    with Casebook.open(path, readonly=True) as book:
        report = book.verify()
    assert not report.ok and any(problem in str(p) for p in report.problems), report.problems


# --- casebook list ---------------------------------------------------------------------------------------------


def test_casebook_list_shows_runs_in_words_and_json_stays_a_list_of_findings(tmp_path, capsys):
    path = tmp_path / "casebook.db"
    with Casebook.open(path) as book:
        quiet = finished_run(book)
        busy = book.start_run(kind="scan", prompt="astronaut eileen collins", n_requested=2)
        fid = book.record(generation(0, prompt="astronaut eileen collins"), run_id=busy)
        book.finish_run(busy, n_finished=2, near_copies=1, likeness=0, novel=1, clique_size=2, clique_flagged=False)
    assert main(["casebook", "list", str(path)]) == 0
    out = capsys.readouterr().out
    assert "colourful squares: 16 generated, 0 near copies, clique 2/16, Wen 0.42" in out
    assert "astronaut eileen collins: 2 generated, 1 near copy, clique 2/2" in out
    assert f"run #{quiet}" in out and "window" in out and "ana" in out
    assert main(["casebook", "list", str(path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [f["id"] for f in listed] == [fid] and listed[0]["run_id"] == busy
    assert main(["casebook", "list", str(path), "--runs", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in runs] == [quiet, busy]
    assert runs[0]["summary"].startswith("colourful squares: 16 generated") and runs[0]["n_finished"] == 16
    assert main(["casebook", "list", str(path), "--run", str(quiet)]) == 0
    assert "no findings match" in capsys.readouterr().out
    assert main(["casebook", "list", str(path), "--run", "7"]) == 2
    assert "no run 7" in capsys.readouterr().err


# --- casebooks from before runs --------------------------------------------------------------------------------


def _version_2_casebook(path) -> list[tuple]:
    """A casebook as version 2 of the inspector left it: three findings (one made by the generation engine,
    one labeled and undone, one with a note), their label events hashed as that version hashed them."""
    conn = sqlite3.connect(path, isolation_level=None)
    db = sqlite_utils.Database(conn)
    conn.execute("BEGIN")
    for migration in casebook_schema.MIGRATIONS[:2]:
        migration.apply(db)
        conn.execute("INSERT INTO casebook_migrations VALUES (?, ?, 't', 'old')", (migration.version, migration.name))
    conn.execute(f"PRAGMA application_id = {casebook_schema.APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 2")
    engine = generation(3)
    plain_png = io.BytesIO()
    Image.fromarray(pixels(8)).save(plain_png, format="PNG")
    import hashlib

    findings = [(1, engine.prompt, 3, engine.image_png, json.dumps(engine.provenance)),
                (2, "a red barn", 8, plain_png.getvalue(), json.dumps({"model": "demo"})),
                (3, "a red barn", 9, plain_png.getvalue(), "{}")]
    for fid, prompt, seed, png, provenance in findings:
        conn.execute("INSERT INTO findings (id, created_at, updated_at, prompt, seed, provenance, image_sha256,"
                     " image_png) VALUES (?, 't', 't', ?, ?, ?, ?, ?)",
                     (fid, prompt, seed, provenance, hashlib.sha256(png).hexdigest(), png))
    events = [(1, "record", "unlabeled", None, ""), (2, "record", "unlabeled", None, ""),
              (3, "record", "unlabeled", None, ""), (2, "label", "memorized", "unlabeled", ""),
              (2, "undo", "unlabeled", "memorized", ""), (3, "note", "unlabeled", "unlabeled", "looked twice")]
    prev = GENESIS
    for eid, (fid, action, label, previous, note) in enumerate(events, start=1):
        image_sha = conn.execute("SELECT image_sha256 FROM findings WHERE id = ?", (fid,)).fetchone()[0]
        event = {"id": eid, "finding_id": fid, "action": action, "label": label, "previous_label": previous,
                 "reviewer": "ana", "note": note, "undoes": 4 if action == "undo" else None,
                 "image_sha256": image_sha, "created_at": f"2026-01-0{eid}T00:00:00.000000Z"}
        digest = event_hash(prev, event)
        conn.execute("INSERT INTO label_events (id, finding_id, action, label, previous_label, reviewer, note, undoes,"
                     " image_sha256, created_at, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                     (*event.values(), prev, digest))
        prev = digest
    # Each row carries what its events made it, as version 2 wrote them (verify recomputes reviewer and notes).
    conn.execute("UPDATE findings SET reviewer = 'ana' WHERE id IN (1, 3)")
    conn.execute("UPDATE findings SET notes = 'looked twice' WHERE id = 3")
    conn.execute("UPDATE casebook_info SET value = ? WHERE key = 'event_head'", (prev,))
    conn.execute("UPDATE casebook_info SET value = ? WHERE key = 'event_count'", (str(len(events)),))
    conn.execute("COMMIT")
    rows = conn.execute("SELECT id, finding_id, action, label, hash FROM label_events ORDER BY id").fetchall()
    conn.close()
    return rows


def test_a_version_2_casebook_keeps_every_finding_and_event_and_verifies_after_migrating(tmp_path, capsys):
    path = tmp_path / "old.db"
    events_before = _version_2_casebook(path)
    Casebook.open(path).close()  # the first open for writing migrates it
    assert main(["casebook", "verify", str(path)]) == 0
    assert "all is well" in capsys.readouterr().out
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == casebook_schema.SCHEMA_VERSION
    assert conn.execute("SELECT id, finding_id, action, label, hash FROM label_events ORDER BY id").fetchall() \
        == events_before
    keys = dict(conn.execute("SELECT id, generation_key FROM findings"))
    conn.close()
    assert keys[1] is not None and keys[2] is None and keys[3] is None  # only the engine's record says enough
    with Casebook.open(path) as book:
        assert [f.id for f in book.findings()] == [1, 2, 3]
        assert book.get(2).label == "unlabeled" and book.get(3).notes == "looked twice"  # as the old rows said
        run_id = book.start_run(kind="window", prompt="colourful squares", n_requested=1)
        assert book.record(generation(3, torch_threads=4), run_id=run_id) == 1  # the old finding, linked
        book.finish_run(run_id, n_finished=1, near_copies=1)
        book.label(2, "novel", reviewer="ana")
        assert book.verify().ok
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        _tamper(path, "DELETE FROM label_events WHERE id = 1")


# --- a scan's runs -----------------------------------------------------------------------------------------------

needs_demo = pytest.mark.skipif(not (demo_model_dir() / "model_index.json").exists(), reason="no demo model")


class _Killed(Exception):
    """Stands for a SIGKILL: the scan stops where it is, nothing is finished."""


@needs_demo
@pytest.mark.slow
def test_a_killed_scan_leaves_its_prompt_run_unfinished_and_the_resume_finishes_that_run(tmp_path):
    from inspector.scan import scan

    book_path = tmp_path / "casebook.db"
    kwargs = dict(n=3, steps=2, prompts_file=tmp_path / "prompts.txt")

    def killer(event) -> None:
        if event.stage == "sampling" and event.done >= 1:
            raise _Killed  # the second image is being made: the first one is recorded

    with pytest.raises(_Killed):
        list(scan(["colourful squares"], book_path, progress=killer, **kwargs))
    with Casebook.open(book_path) as book:
        [run] = book.runs()
        assert (run.kind, run.finished, run.n_requested) == ("scan", False, 3)
        assert "not finished" in run.in_words() and run.settings["scan"]
    [result] = list(scan(["colourful squares"], book_path, resume=True, **kwargs))
    with Casebook.open(book_path) as book:
        [again] = book.runs()  # the same run, now finished: one run per prompt, not one per attempt
        assert again.id == run.id == result["run_id"] and again.finished and again.n_finished == 3
        assert sorted(f.id for f in book.findings(run_id=run.id)) == sorted(result["findings"])
        assert again.near_copies + again.likeness + again.novel == 3
        assert book.verify().ok
