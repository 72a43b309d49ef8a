"""The window's model without Qt: a reviewer's runs, labels, undos, notes and casebook review, driven as the
window drives it, on a real casebook file. Each state bug people met in the window has its test here."""

from __future__ import annotations

import io
import sqlite3

import numpy as np
import pytest
from PIL import Image

from inspector.casebook import Casebook, set_busy_timeout
from inspector.extraction import CliqueResult, Suggestion
from inspector.findings import Neighbour
from inspector.inspector_model import (
    CASEBOOK,
    INSPECT,
    InspectorModel,
    classify_path,
    run_summary_line,
)
from inspector.metrics import tiled_l2_words
from inspector.session import Inspected, InspectRequest, PromptSummary, finding_from


def png_of(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def generation(prompt: str, seed: int, nearest: float, verdict: str = "novel", index_source: str = "run-index"):
    """A generation as a run yields it: a 16 px image, four neighbours carrying their compared pixels."""
    rng = np.random.default_rng(seed + 17 * len(prompt))
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    neighbours = [Neighbour(rank=r, item_id=r, source=f"train/{r}.png", caption=f"caption {r}", duplicate_count=1,
                            l2=nearest / 2, tiled_l2=nearest + 0.05 * (r - 1), ssim=0.5, comparison_size=16,
                            pixels=rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
                  for r in range(1, 5)]
    provenance = {"prompt": prompt, "seed": seed, "steps": 2, "model": {"id": "demo", "sha256": "ab" * 32}}
    return Inspected(position=seed, seed=seed, image=image, png=png_of(image), provenance=provenance,
                     neighbours=neighbours, suggestion=Suggestion(verdict, f"nearest {nearest:.2f}"),
                     index={"role": "training", "source": "train", "images": 4}, index_source=index_source)


def run(model: InspectorModel, prompt: str, nearest: list[float], *, verdicts: list[str] | None = None,
        wen_tokens=None, clique: CliqueResult | None = None) -> list[Inspected]:
    """One run as the window makes it: started, each generation recorded in the casebook (as
    runs.recorded_inspection does) and handed to the model, the summary, the end."""
    started = model.start_run(InspectRequest(prompt=prompt, n=len(nearest)))
    assert started is not None
    items = []
    with Casebook.open(started.casebook_path) as book:
        for seed, d in enumerate(nearest):
            item = generation(prompt, seed, d, (verdicts or ["novel"] * len(nearest))[seed])
            item.finding_id = book.record(finding_from(item))
            model.add_result(started.number, item)
            items.append(item)
    model.add_result(started.number, PromptSummary(prompt=prompt, n=len(items), nearest=nearest, clique=clique,
                                                   wen_score=0.5 if wen_tokens else None, wen_tokens=wen_tokens))
    model.finish_run(started.number)
    return items


def labels_in(path) -> dict[int, str]:
    with Casebook.open(path, readonly=True) as book:
        return {f.id: f.label for f in book.findings()}


class Heard:
    """Every event the model emits, by name."""

    def __init__(self, model: InspectorModel):
        self.log: list[tuple[str, tuple]] = []
        for name, event in vars(model.events).items():
            event.connect(lambda *args, n=name: self.log.append((n, args)))

    def texts(self, name: str) -> list[str]:
        return [args[0] for n, args in self.log if n == name]


@pytest.fixture
def path(tmp_path):
    return tmp_path / "casebook.db"


@pytest.fixture
def model(path):
    return InspectorModel(path, reviewer="ana")


@pytest.fixture
def locked(path):
    """Another program holds the casebook's write lock (a scan committing); writes give up after 0.2 s."""
    set_busy_timeout(0.2)
    conn = sqlite3.connect(path, isolation_level=None, timeout=0.2)

    class Lock:
        def __enter__(self):
            conn.execute("BEGIN IMMEDIATE")

        def __exit__(self, *exc):
            conn.execute("ROLLBACK")

    yield Lock()
    conn.close()
    set_busy_timeout(30)


# --- the bugs people met, impossible by construction --------------------------------------------------------------


def test_ctrl_z_after_starting_a_new_prompt_never_unlabels_a_finding_of_the_previous_run(model, path):
    heard = Heard(model)
    first = run(model, "a lighthouse", [0.3, 0.4])
    model.select(first[0])
    assert model.label("memorized")
    run(model, "a red barn", [0.3])  # the lighthouse is no longer on screen
    assert model.undo() is False
    assert labels_in(path)[first[0].finding_id] == "memorized"
    assert "Nothing to undo here" in heard.texts("message")[-1]
    with Casebook.open(path, readonly=True) as book:
        assert [e.action for e in book.label_history(first[0].finding_id)] == ["record", "label"]


def test_undo_selects_the_generation_it_changed_says_what_it_undid_and_the_label_bar_shows_it(model, path):
    heard = Heard(model)
    items = run(model, "a lighthouse", [0.3, 0.4, 0.5])
    model.select(items[0])
    model.label("novel")
    assert model.selected is items[1]  # auto-advance
    assert model.label_bar_state(INSPECT).undo_text == "Undo: seed 0 of “a lighthouse” (finding #1) back to Unlabeled"
    assert model.undo()
    assert model.selected is items[0] and items[0].label == "unlabeled"
    assert heard.texts("message")[-1] == ("Undone: seed 0 of “a lighthouse” (finding #1) is Unlabeled again "
                                          "(was Novel)")
    state = model.label_bar_state(INSPECT)
    assert (state.label, state.text, state.undo_enabled) == ("unlabeled", "seed 0: Unlabeled", False)
    assert labels_in(path)[items[0].finding_id] == "unlabeled"


def test_a_failed_label_write_leaves_the_display_as_the_casebook_is(model, path, locked):
    heard = Heard(model)
    items = run(model, "a lighthouse", [0.3, 0.4])
    model.select(items[0])
    with locked:
        model.label("memorized")
    assert items[0].label == "unlabeled" and not model.is_pending(items[0])
    assert model.selected is items[0]  # back on what did not get its label
    assert "The label was NOT saved" in heard.texts("error")[-1]
    assert "seed 0 of “a lighthouse” (finding #1) is still Unlabeled" in heard.texts("error")[-1]
    assert model.label_bar_state(INSPECT).label == "unlabeled" and not model.label_bar_state(INSPECT).undo_enabled
    assert labels_in(path)[items[0].finding_id] == "unlabeled"
    model.label("memorized")  # the lock is gone: the same key works
    assert items[0].label == "memorized" == labels_in(path)[items[0].finding_id]


def test_a_failed_undo_keeps_the_label_shown_and_ctrl_z_can_try_again(model, path, locked):
    heard = Heard(model)
    items = run(model, "a lighthouse", [0.3])
    model.select(items[0])
    model.label("memorized")
    with locked:
        model.undo()
    assert items[0].label == "memorized" == labels_in(path)[items[0].finding_id]
    assert heard.texts("error")[-1].startswith("Undo failed") and model.label_bar_state(INSPECT).undo_enabled
    model.undo()
    assert items[0].label == "unlabeled" == labels_in(path)[items[0].finding_id]


def test_undo_refuses_a_finding_another_program_labeled_since(model, path):
    heard = Heard(model)
    items = run(model, "a lighthouse", [0.3])
    model.select(items[0])
    model.label("novel")
    with Casebook.open(path) as book:  # a colleague's window
        book.label(items[0].finding_id, "memorized", reviewer="ben")
    model.undo()
    assert "is Memorized now, not Novel (changed since by ben): nothing was undone" in heard.texts("error")[-1]
    assert labels_in(path)[items[0].finding_id] == "memorized"


def test_heatmaps_use_the_index_the_generation_came_from_not_the_picker(model, monkeypatch):
    used = []

    def views(index_source, item, side=150):
        used.append(index_source)
        return []

    monkeypatch.setattr("inspector.session.neighbour_views", views)
    items = run(model, "a lighthouse", [0.3, 0.4])
    model.set_index_source("/somewhere/else")  # the person picks another index before clicking
    model.select(items[1])
    assert used[-1] == "run-index" and items[1].index_source == "run-index"


def test_the_wen_tooltip_names_only_the_words_of_the_prompt_on_screen(model):
    run(model, "a lighthouse", [0.3], wen_tokens=[("lighthouse", 2.0)])
    assert "lighthouse" in model.steering_words()
    model.start_run(InspectRequest(prompt="a red barn", n=1))
    assert model.steering_words() == ""
    model.finish_run(model.run.number)
    run(model, "a red barn", [0.3], wen_tokens=[("barn", 1.0)])
    assert "barn" in model.steering_words() and "lighthouse" not in model.steering_words()


def test_a_result_of_an_earlier_run_is_dropped(model):
    first = model.start_run(InspectRequest(prompt="a lighthouse", n=2))
    model.finish_run(first.number, cancelled=True)
    model.start_run(InspectRequest(prompt="a red barn", n=2))
    model.add_result(first.number, generation("a lighthouse", 0, 0.3))
    assert model.run.items == []


# --- order, selection, Enter --------------------------------------------------------------------------------------


def test_the_first_selection_and_next_unlabeled_follow_the_grids_order(model):
    items = run(model, "a lighthouse", [0.5, 0.1, 0.3])
    assert model.selected is items[1]  # nearest first once the run is done
    model.label("memorized")
    assert model.selected is items[2]
    model.set_sort(False)  # generation order
    model.label("novel")
    assert model.selected is items[0]


def test_the_first_generation_stays_selected_when_the_person_picked_one_during_the_run(model):
    started = model.start_run(InspectRequest(prompt="a lighthouse", n=3))
    a, c, b = (generation("a lighthouse", k, d) for k, d in ((0, 0.5), (1, 0.3), (2, 0.1)))
    model.add_result(started.number, a)
    model.add_result(started.number, c)
    model.select(c)  # a click while b is still sampling
    model.add_result(started.number, b)
    model.finish_run(started.number)
    assert model.selected is c


def test_enter_agrees_with_the_suggestion_and_likeness_becomes_likeness_only(model, path):
    items = run(model, "a lighthouse", [0.2, 0.05], verdicts=["likeness?", "memorized"])
    model.select(items[0])
    assert model.label_bar_state(INSPECT).agree_label == "likeness-only"
    model.agree()
    model.agree()
    assert labels_in(path) == {items[0].finding_id: "likeness-only", items[1].finding_id: "memorized"}


def test_notes_are_saved_and_a_failed_save_keeps_the_notes_the_casebook_has(model, path, locked):
    heard = Heard(model)
    items = run(model, "a lighthouse", [0.3])
    model.select(items[0])
    assert model.set_notes("looks like the harbour photo")
    with locked:
        model.set_notes("changed my mind")
    assert items[0].notes == "looks like the harbour photo"
    assert model.label_bar_state(INSPECT).notes == "looks like the harbour photo"
    assert heard.texts("error")[-1].startswith("The notes were NOT saved")
    with Casebook.open(path, readonly=True) as book:
        assert book.get(items[0].finding_id).notes == "looks like the harbour photo"


# --- the Casebook view --------------------------------------------------------------------------------------------


def test_the_casebook_view_labels_the_selected_finding_advances_and_shows_its_history(model, path):
    items = run(model, "a lighthouse", [0.3, 0.4, 0.5])
    model.active_view = CASEBOOK
    model.refresh_casebook()
    assert [r.id for r in model.casebook.rows] == [i.finding_id for i in items]
    model.open_finding(items[0].finding_id)
    assert model.casebook.selected.finding_id == items[0].finding_id
    assert [e.action for e in model.casebook.history] == ["record"]
    model.label("memorized")
    assert model.casebook.selected_id == items[1].finding_id  # the next unlabeled row
    assert model.casebook.rows[0].label == "memorized"
    assert items[0].label == "memorized"  # the same finding on the Inspect view shows it too
    model.open_finding(items[0].finding_id)
    assert [(e.action, e.label, e.reviewer) for e in model.casebook.history] == [
        ("record", "unlabeled", ""), ("label", "memorized", "ana")]
    model.undo()
    assert labels_in(path)[items[0].finding_id] == "unlabeled" and model.casebook.selected_id == items[0].finding_id
    assert model.undo(INSPECT) is False  # nothing was labeled on the Inspect view


def test_the_casebook_view_filters_by_label_suggestion_prompt_model_run_reviewer_and_text(model, path):
    a = run(model, "a lighthouse", [0.05, 0.4], verdicts=["memorized", "novel"])
    b = run(model, "a red barn", [0.3])
    with Casebook.open(path) as book:
        book.label(a[0].finding_id, "memorized", reviewer="ana")
        book.label(b[0].finding_id, "novel", reviewer="ben", note="a barn, not the harbour")
        run_id = book.start_run(kind="window", prompt="a red barn", n_requested=1)
        book.link_run(run_id, b[0].finding_id)
    model.refresh_casebook()
    assert model.casebook.choices == {"prompt": ["a lighthouse", "a red barn"], "model": ["demo"],
                                      "reviewer": ["ana", "ben"]}

    def ids(**filters):
        model.set_filters(**{**dict.fromkeys(vars(model.casebook.filters)), **filters})
        return [r.id for r in model.casebook.rows]

    assert ids(label="memorized") == [a[0].finding_id]
    assert ids(label="unlabeled") == [a[1].finding_id]
    assert ids(suggested="memorized") == [a[0].finding_id]
    assert ids(prompt="a red barn") == [b[0].finding_id]
    assert ids(model="demo") == [a[0].finding_id, a[1].finding_id, b[0].finding_id]
    assert ids(model="nothing") == []
    assert ids(run_id=run_id) == [b[0].finding_id]
    assert ids(reviewer="ben") == [b[0].finding_id]
    assert ids(text="harbour") == [b[0].finding_id]
    assert ids(text="harbour", reviewer="ana") == []


def test_the_casebook_view_sees_another_programs_writes_and_keeps_its_selection(model, path):
    items = run(model, "a lighthouse", [0.3, 0.4])
    model.refresh_casebook()
    model.open_finding(items[1].finding_id)
    heard = Heard(model)
    model.poll_casebook()
    assert "casebook_changed" not in [n for n, _ in heard.log]  # nothing new: nothing read again
    with Casebook.open(path) as book:  # a running scan
        book.label(items[1].finding_id, "novel", reviewer="scan-bot")
        book.record(finding_from(generation("a harbour", 7, 0.2)))
    model.poll_casebook()
    assert len(model.casebook.rows) == 3 and model.casebook.selected_id == items[1].finding_id
    assert model.casebook.selected.label == "novel" and model.label_bar_state(CASEBOOK).label == "novel"
    assert [e.reviewer for e in model.casebook.history] == ["", "scan-bot"]


def test_a_finding_recorded_with_its_compared_pixels_gets_heatmaps_and_an_old_one_says_why_not(model, path):
    heard = Heard(model)
    items = run(model, "a lighthouse", [0.3])
    model.open_finding(items[0].finding_id)
    _view, _item, views, note = [args for n, args in heard.log if n == "views_ready"][-1]
    assert len(views) == 4 and set(views[0]) == {"none", "pixel", "tiles", "ssim"} and note == ""
    old = generation("a lighthouse", 5, 0.3)
    for nb in old.neighbours:
        nb.pixels = None  # recorded before compared pixels were kept
    with Casebook.open(path) as book:
        fid = book.record(finding_from(old))
    model.open_finding(fid)
    _view, _item, views, note = [args for n, args in heard.log if n == "views_ready"][-1]
    assert views is None and "recorded before the compared pixels were kept" in note and "thumbnails" in note


# --- words and files --------------------------------------------------------------------------------------------


def test_distance_words_mean_one_thing_each():
    assert [tiled_l2_words(d) for d in (0.0, 0.12, 0.14, 0.15, 0.16, 0.2, 0.29, 0.6)] == [
        "near copy", "near copy", "near copy (borderline)", "near copy (borderline)",
        "not a near copy (borderline)", "not a near copy", "not a near copy", "not a near copy"]


def test_the_clique_line_says_why_8_near_copies_can_go_with_a_clique_of_4():
    line = run_summary_line([0.05] * 8, 4, 8, False, None)
    assert line == ("8 of 8 near copies of a training image · clique 4/8 of generations near-identical to each "
                    "other (tiled l2 <= 0.10, stricter than 0.15)")


def test_a_dropped_path_is_recognised_as_a_model_an_index_or_a_casebook(tmp_path, path):
    from inspector.errors import UserError

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model_index.json").write_text("{}")
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "manifest.json").write_text("{}")
    (tmp_path / "index" / "index.db").write_bytes(b"")
    (tmp_path / "weights.safetensors").write_bytes(b"")
    Casebook.open(path).close()
    (tmp_path / "notes.db").write_bytes(b"SQLite format 3\x00" + bytes(100))
    assert [classify_path(tmp_path / p) for p in ("model", "index", "weights.safetensors", "casebook.db")] == [
        "model", "index", "model", "casebook"]
    for other in ("notes.db", "nothing-here", "."):
        with pytest.raises(UserError):
            classify_path(tmp_path / other)
    model = InspectorModel(tmp_path / "other.db")
    assert model.open_path(tmp_path / "index") == "index" and model.index_source == str(tmp_path / "index")
    assert model.open_path(path) == "casebook" and model.casebook_path == str(path)
    assert model.recent["casebook"][0] == str(path)


def test_heatmaps_that_arrive_after_the_person_moved_on_are_dropped(path):
    jobs = []

    def later(work, done, failed, serial=False):  # the window's workers: results come back when they come
        jobs.append((work, done, failed))

    model = InspectorModel(path, executor=later)
    started = model.start_run(InspectRequest(prompt="a lighthouse", n=2))
    a, b = generation("a lighthouse", 0, 0.3), generation("a lighthouse", 1, 0.4)
    for item in (a, b):
        item.index_source = None  # draw from the neighbours' own pixels
        model.add_result(started.number, item)
    model.select(b)
    heard = Heard(model)
    for work, done, _failed in reversed(jobs):  # b's heatmaps first, then a's late result
        done(work())
    shown = [args[1] for n, args in heard.log if n == "views_ready"]
    assert shown == [b]


def test_a_view_announcing_the_same_selection_again_is_not_the_persons_choice(model):
    started = model.start_run(InspectRequest(prompt="a lighthouse", n=2))
    a, b = generation("a lighthouse", 0, 0.5), generation("a lighthouse", 1, 0.1)
    model.add_result(started.number, a)
    model.select(a)  # the grid re-sorting as b arrives says "a is current" again
    model.add_result(started.number, b)
    model.finish_run(started.number)
    assert model.selected is b  # still the first in the grid's order


def test_the_casebook_view_exports_the_findings_it_names_and_says_where(model, path, tmp_path):
    heard = Heard(model)
    items = run(model, "a lighthouse", [0.3, 0.4])
    out = tmp_path / "report.json"
    assert model.export(out, "json", [items[1].finding_id]) is True
    assert heard.texts("casebook_message")[-1] == (f"Report written to {out} (1 findings), with its manifest "
                                                   f"{out}.manifest.json")
    assert str(items[1].finding_id) in out.read_text() and (tmp_path / "report.json.manifest.json").exists()
    assert model.export(out, "json") is False  # there already: the window asks before overwrite=True
    assert heard.texts("casebook_message")[-1].startswith("Export failed:") and "exists" in \
        heard.texts("casebook_message")[-1]


def test_a_finding_without_an_engine_record_cannot_be_reproduced_and_says_so(model, path):
    heard = Heard(model)
    items = run(model, "a lighthouse", [0.3])  # a hand-made provenance, not the engine's record
    assert model.reproduce(items[0].finding_id) is False
    assert heard.texts("casebook_message")[0] == f"Reproducing finding #{items[0].finding_id}…"
    assert heard.texts("casebook_message")[-1].startswith("Could not reproduce:")
    with Casebook.open(path, readonly=True) as book:
        assert [e.action for e in book.label_history(items[0].finding_id)] == ["record"]
