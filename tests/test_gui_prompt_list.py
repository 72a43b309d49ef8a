"""Prompt lists in the window (issue 18, point 5): File > Run a prompt list… reads any file `scan` reads, with the
column chosen; the list runs in the background with one progress bar and Cancel, and its results are runs and
candidates in the casebook exactly as `inspector scan` records them, waiting in the review queue. Offscreen; the
runs on the demo model are slow tests (a few images of three prompts)."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402

from inspector.casebook import Casebook  # noqa: E402
from inspector.prompt_lists import ListTracker, PromptListProgress, PromptListRequest  # noqa: E402
from inspector.resources import demo_model_dir, demo_training_dir  # noqa: E402
from inspector.scan import PLAN, PROMPT_DONE, ScanProgress, scan  # noqa: E402

needs_demo = pytest.mark.skipif(not (demo_model_dir() / "model_index.json").exists(), reason="no demo model")
PROMPTS = ["a cup of coffee", "colourful squares", "chelsea the cat"]
#: Small enough for a laptop's CPU: 2 images a prompt, 3 denoising steps.
N, STEPS = 2, 3


@pytest.fixture(scope="module")
def small_index(tmp_path_factory):
    """The demo's training images of the three prompts, a few each, indexed at the demo's 32 px."""
    from inspector.training_index import build_index

    training = demo_training_dir()
    src = tmp_path_factory.mktemp("training")
    for name in ("coffee_000", "coffee_001", "squares_0000", "squares_0001", "chelsea_crop_000", "circles_0000"):
        for suffix in (".png", ".json"):
            shutil.copy(training / f"{name}{suffix}", src / f"{name}{suffix}")
    out = tmp_path_factory.mktemp("index") / "index"
    build_index(src, out, comparison_size=32, workers=1)
    return str(out)


@pytest.fixture
def window(qtbot, tmp_path, small_index, monkeypatch):
    from inspector.gui.main_window import MainWindow

    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)  # never the user's settings
    win = MainWindow(casebook_path=str(tmp_path / "casebook.db"), index_source=small_index, settings=settings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.prompt_list_bar.cancel()
    win.hub.shutdown()


def prompt_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    return path


def request_for(win, path) -> PromptListRequest:
    return PromptListRequest(path=str(path), n=N, steps=STEPS, model=win.model_source, index=win.index_source,
                             casebook=win.casebook_path)


def recorded(path):
    """What a casebook holds of a scan: its runs and its findings, without ids and times."""
    with Casebook.open(path, readonly=True) as book:
        runs = sorted((r.kind, r.prompt, r.n_requested, r.n_finished, r.cancelled, r.clique_size, r.near_copies,
                       r.finished_at is not None) for r in book.runs())
        # The generation key (model, prompt, seed, settings and the pixels' hash), not the PNG's hash: a PNG's
        # provenance names the torch thread count, and the window keeps a core free.
        findings = sorted((f.prompt, f.seed, f.generation_key, f.suggested_verdict, f.label) for f in book.findings())
        assert book.verify().ok
    return runs, findings


# --- the dialog -----------------------------------------------------------------------------------------------------


def test_the_dialog_offers_a_csvs_columns_and_picks_the_prompt_column(qtbot, tmp_path):
    from inspector.gui.prompt_list import AUTO_COLUMN, PromptListDialog

    csv = tmp_path / "laion.csv"
    csv.write_text("id,caption,prompt\n1,a cat on a mat,a cup of coffee\n2,a dog,colourful squares\n",
                   encoding="utf-8")
    dialog = PromptListDialog("demo", "demo", str(tmp_path / "casebook.db"))
    qtbot.addWidget(dialog)
    dialog.set_path(str(csv))
    choices = [dialog.column.itemText(k) for k in range(dialog.column.count())]
    assert choices == [AUTO_COLUMN, "id", "caption", "prompt"] and dialog.column.currentText() == "prompt"
    assert dialog.run_button.isEnabled() and "CSV" in dialog.about.text()
    dialog.column.setCurrentIndex(2)
    dialog.n.setValue(3)
    request = dialog.request()
    assert (request.column, request.n, request.steps, request.casebook) == ("caption", 3, None,
                                                                            str(tmp_path / "casebook.db"))
    assert request.check().prompts == ["a cat on a mat", "a dog"]


@pytest.mark.parametrize("name, content, choices", [
    ("prompts.txt", "a cup of coffee\n", None),
    ("wen.jsonl", json.dumps({"caption": "a cup of coffee", "index": 3, "url": "http://x"}) + "\n",
     ["caption", "url"]),
    ("lists.json", json.dumps({"memorized": ["a cup of coffee"], "novel": ["colourful squares"]}), []),
])
def test_the_dialog_reads_each_format_scan_reads(qtbot, tmp_path, name, content, choices):
    from inspector.gui.prompt_list import PromptListDialog

    (tmp_path / name).write_text(content, encoding="utf-8")
    dialog = PromptListDialog("demo", "demo", str(tmp_path / "casebook.db"))
    qtbot.addWidget(dialog)
    dialog.set_path(str(tmp_path / name))
    assert dialog.run_button.isEnabled()
    assert dialog.column.isEnabled() == (choices is not None)
    if choices:
        assert [dialog.column.itemText(k) for k in range(1, dialog.column.count())] == choices
    assert dialog.request().check().prompts[0] == "a cup of coffee"


def test_a_file_that_holds_no_prompts_cannot_be_run(qtbot, tmp_path):
    from inspector.gui.prompt_list import PromptListDialog

    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    dialog = PromptListDialog("demo", "demo", str(tmp_path / "casebook.db"))
    qtbot.addWidget(dialog)
    dialog.set_path(str(tmp_path / "photo.png"))
    assert not dialog.run_button.isEnabled() and "holds binary data, not prompts" in dialog.about.text()


def test_a_list_refused_before_it_starts_is_one_message_and_nothing_written(qtbot, window, tmp_path):
    path = prompt_file(tmp_path)
    bad = PromptListRequest(path=str(path), column="caption", n=N, casebook=window.casebook_path)
    with qtbot.waitSignal(window.prompt_list_bar.finished, timeout=120_000) as done:
        window.start_prompt_list(bad)
    assert "--column applies to CSV" in done.args[0].error and window.banner.isVisible()
    assert not (tmp_path / "casebook.db").exists() or recorded(window.casebook_path) == ([], [])
    assert not any(p.name.startswith("casebook.db.scan-") for p in tmp_path.iterdir())


# --- the one progress line ------------------------------------------------------------------------------------------


def test_the_progress_counts_the_images_of_the_whole_list_and_never_goes_back():
    tracker = ListTracker(PROMPTS, n=4)
    seen = [tracker.event(ScanProgress(PLAN, total=8, prompts=3, finished=1, images_left=8, prompts_left=2))]
    assert seen[0].images_done == 4 and seen[0].continued  # the first prompt was finished by an earlier run
    seen.append(tracker.result({"prompt": PROMPTS[0], "complete": True, "resumed": True}))
    for done in range(5):
        seen.append(tracker.event(ScanProgress("sampling", done=done, total=4, step=2, steps=5, prompt_index=1,
                                               eta_s=30.0)))
    seen.append(tracker.event(ScanProgress("building the demo index (first use only)", done=900, total=None,
                                           prompt_index=1)))
    seen.append(tracker.event(ScanProgress(PROMPT_DONE, done=4, total=4, prompt_index=1, eta_s=12.0)))
    assert [e.images_done for e in seen] == [4, 4, 4, 5, 6, 7, 8, 8, 8]
    fractions = [e.fraction for e in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(8 / 12)
    assert seen[3].describe() == ("images 5 of 12 · prompt 2 of 3 “colourful squares” · sampling step 2/5 · "
                                  "about 30 s left")
    tracker.event(ScanProgress("sampling", done=4, total=4, prompt_index=2))
    last = tracker.finished()
    assert isinstance(last, PromptListProgress) and last.fraction == 1.0 and last.images_done == 12


# --- runs on the demo model -----------------------------------------------------------------------------------------


@needs_demo
@pytest.mark.slow
def test_a_prompt_list_run_in_the_window_is_recorded_as_scan_records_it(qtbot, window, tmp_path):
    path = prompt_file(tmp_path)
    bar = window.prompt_list_bar
    values: list[int] = []
    bar.progressed.connect(lambda _e: values.append(bar.bar.value()))
    with qtbot.waitSignal(bar.finished, timeout=600_000) as done:
        assert window.start_prompt_list(request_for(window, path)) is not None
    outcome = done.args[0]
    assert not outcome.cancelled and not outcome.error and len(outcome.finished) == 3
    assert values == sorted(values) and values[-1] == 1000 and bar.bar.value() == 1000
    assert "3 of 3 prompts" in bar.bar.text()

    reference = tmp_path / "by the command line" / "casebook.db"
    reference.parent.mkdir()
    list(scan(PROMPTS, reference, model="demo", index=window.index_source, n=N, steps=STEPS, prompts_file=path))
    runs, findings = recorded(window.casebook_path)
    assert (runs, findings) == recorded(reference)
    assert [r[:2] for r in runs] == sorted(("scan", p) for p in PROMPTS) and findings

    from inspector.review_queue import ReviewQueue

    with Casebook.open(window.casebook_path) as book:
        queue = ReviewQueue(book, "ana")
        assert sorted(queue.ids) == sorted(f.id for f in book.findings())  # every candidate waits for a label


@needs_demo
@pytest.mark.slow
def test_cancel_keeps_the_finished_prompts_and_running_again_continues(qtbot, window, tmp_path):
    path = prompt_file(tmp_path)
    bar = window.prompt_list_bar
    bar.result.connect(lambda result: result.get("complete") and bar.cancel())  # Cancel once the first is done
    with qtbot.waitSignal(bar.finished, timeout=600_000) as done:
        window.start_prompt_list(request_for(window, path))
    outcome = done.args[0]
    assert outcome.cancelled and [r["prompt"] for r in outcome.finished] == PROMPTS[:1]
    runs, findings = recorded(window.casebook_path)  # verify passes: nothing half-written
    finished = [r for r in runs if r[-1] and not r[4]]
    assert [r[1] for r in finished] == PROMPTS[:1]
    assert all(r[4] for r in runs if r[1] != PROMPTS[0])  # a prompt stopped midway: its run says cancelled
    assert {f[0] for f in findings} == {PROMPTS[0]}  # candidates are written when their prompt finishes
    assert "cancelled" in bar.bar.text().lower()

    bar.result.disconnect()
    with qtbot.waitSignal(bar.finished, timeout=600_000) as again:
        window.start_prompt_list(request_for(window, path))
    assert len(again.args[0].finished) == 3 and not again.args[0].cancelled
    runs, findings = recorded(window.casebook_path)
    assert sum(1 for r in runs if r[1] == PROMPTS[0]) == 1  # the finished prompt was not scanned again
    assert again.args[0].results[0].get("resumed")
    with Casebook.open(window.casebook_path, readonly=True) as book:  # every candidate of every prompt, once
        assert sorted(f.id for f in book.findings()) == sorted(i for r in again.args[0].results for i in r["findings"])
