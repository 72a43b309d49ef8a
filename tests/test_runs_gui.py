"""Runs as a reviewer meets them, on the embedded demo: the window keeps every generation it made (labeled or
not), a cancelled run says how far it got, ``inspect`` is on the record too, and a scan's candidate labeled in
the window is one finding."""

from __future__ import annotations

import json
import os

import pytest

from inspector.resources import demo_model_dir

pytestmark = pytest.mark.skipif(not (demo_model_dir() / "model_index.json").exists(),
                                reason="the demo model is not in resources/demo/model")
PROMPT = "colourful squares"


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    pytest.importorskip("PySide6")
    from PySide6.QtCore import QSettings

    from inspector.gui.main_window import MainWindow

    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(casebook_path=str(tmp_path / "casebook.db"), settings=settings)
    win.label_bar.reviewer.setText("ana")
    qtbot.addWidget(win)
    win.show()
    yield win
    win.hub.shutdown()


def generate(qtbot, win, prompt: str, n: int, steps: int = 2):
    from PySide6.QtCore import Qt

    win.prompt_panel.prompt.setPlainText(prompt)
    win.prompt_panel.n.setValue(n)
    win.prompt_panel.steps.setValue(steps)
    with qtbot.waitSignal(win.run_finished, timeout=240_000):
        qtbot.keyClick(win.prompt_panel.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)


@pytest.mark.slow
def test_a_window_run_of_8_leaves_a_run_and_8_unlabeled_generations_in_the_casebook(qtbot, window, tmp_path):
    from PySide6.QtCore import Qt

    from inspector.casebook import Casebook

    generate(qtbot, window, PROMPT, n=8)
    items = window.grid.source.items()
    assert len(items) == 8 and all(i.finding_id is not None for i in items)
    with Casebook.open(tmp_path / "casebook.db") as book:
        [run] = book.runs()
        assert (run.kind, run.prompt, run.n_requested, run.n_finished, run.cancelled) == ("window", PROMPT, 8, 8,
                                                                                          False)
        assert run.finished and run.reviewer == "ana" and run.model_id == "demo" and len(run.model_sha256) == 64
        assert run.index["role"] == "training" and run.index["content_hash"]
        assert run.settings["n"] == 8 and run.settings["first_seed"] == 0 and run.settings["steps"] == 2
        assert run.near_copies + run.likeness + run.novel == 8 and run.clique_size is not None
        assert run.in_words().startswith(f"{PROMPT}: 8 generated, {run.near_copies} near cop")
        assert sorted(f.id for f in book.findings(run_id=run.id)) == sorted(i.finding_id for i in items)
        assert book.counts() == {"memorized": 0, "likeness-only": 0, "novel": 0, "unlabeled": 8}
        assert all(f.suggested_verdict for f in book.findings())  # each kept with its suggestion
    assert window.run_id == run.id and f"Run #{run.id}" in window.statusBar().currentMessage()

    window.grid.select_first()
    labeled = window.grid.current_item()
    with qtbot.waitSignal(window.label_written, timeout=30_000):
        qtbot.keyClick(window.grid, Qt.Key.Key_1)
    with Casebook.open(tmp_path / "casebook.db") as book:
        assert len(book) == 8 and book.counts()["memorized"] == 1  # labeling labels the recorded finding
        assert [e.action for e in book.label_history(labeled.finding_id)] == ["record", "label"]
        assert book.verify().ok

    with qtbot.waitSignal(window.casebook_shown, timeout=30_000):
        window.tabs.setCurrentIndex(1)  # the Casebook tab lists the run in words and filters by it
    tab = window.casebook_tab
    assert tab.runs_model.rowCount() == 1
    assert tab.runs_model.index(0, 4).data().startswith(f"{PROMPT}: 8 generated")
    with qtbot.waitSignal(window.casebook_shown, timeout=30_000):
        tab.runs_table.selectRow(0)
    assert tab.run_id == run.id and tab.model.rowCount() == 8


def test_a_cancelled_window_run_records_how_far_it_got(qtbot, window, tmp_path):
    from PySide6.QtCore import Qt

    from inspector.casebook import Casebook

    window.prompt_panel.prompt.setPlainText("colourful circles")
    window.prompt_panel.n.setValue(40)
    window.prompt_panel.steps.setValue(2)
    with qtbot.waitSignal(window.run_finished, timeout=240_000):
        window.start_generation()
        qtbot.waitUntil(lambda: window.grid.source.rowCount() >= 1, timeout=200_000)
        qtbot.keyClick(window.grid, Qt.Key.Key_Escape)
    shown = window.grid.source.rowCount()
    with Casebook.open(tmp_path / "casebook.db") as book:
        [run] = book.runs()
        assert run.cancelled and run.finished and 1 <= run.n_finished < run.n_requested == 40
        assert run.n_finished == shown == len(book.findings(run_id=run.id))  # every image made is kept and shown
        assert f"{run.n_finished} of 40 generated (cancelled)" in run.in_words()
        assert book.verify().ok


@pytest.mark.slow
def test_inspect_records_a_run_in_the_given_or_the_default_casebook(tmp_path, monkeypatch, capsys):
    from inspector.casebook import Casebook
    from inspector.cli import main

    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    path = tmp_path / "named.db"
    args = ["inspect", PROMPT, "--n", "2", "--steps", "2", "--no-wen"]
    assert main([*args, "--casebook", str(path), "--reviewer", "ben", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    with Casebook.open(path) as book:
        run = book.get_run(out["run_id"])
        assert (run.kind, run.n_requested, run.n_finished, run.reviewer) == ("inspect", 2, 2, "ben")
        assert [g["finding_id"] for g in out["generations"]] == [f.id for f in book.findings(run_id=run.id)]
        assert book.counts()["unlabeled"] == 2
    assert main(args) == 0  # no --casebook: the one in the user data folder
    assert "recorded as run #1 with its 2 generations in" in capsys.readouterr().out
    with Casebook.open(os.path.join(tmp_path, "data", "casebook.db")) as book:
        assert [r.kind for r in book.runs()] == ["inspect"] and len(book) == 2


@pytest.mark.slow
def test_a_scan_candidate_labeled_in_the_window_is_one_finding_linked_to_both_runs(qtbot, window, tmp_path):
    import torch
    from PySide6.QtCore import Qt

    from inspector.casebook import Casebook
    from inspector.scan import scan

    book_path = tmp_path / "casebook.db"
    # The case: the scan samples with another torch thread count than the window (which keeps a core
    # free), so their PNGs differ in the recorded thread count while the pixels do not.
    window_threads = max(1, (os.cpu_count() or 2) - 1)
    torch.set_num_threads(window_threads + 1)
    [result] = list(scan([PROMPT], book_path, n=2, steps=2, guidance=2.0, prompts_file=tmp_path / "p.txt"))
    assert result["complete"] and result["findings"] and result["run_id"]
    with Casebook.open(book_path) as book:
        scanned = {f.seed: f.id for f in book.findings()}
        [scan_run] = book.runs()
        assert scan_run.kind == "scan" and scan_run.n_finished == 2 and scan_run.finished
        scan_threads = book.get(next(iter(scanned.values()))).provenance["torch_threads"]

    generate(qtbot, window, PROMPT, n=2)
    seed = min(scanned)
    item = next(i for i in window.grid.source.items() if i.seed == seed)
    assert item.provenance["torch_threads"] != scan_threads
    assert item.finding_id == scanned[seed]  # the window found the scan's finding
    window.grid.select_item(item)
    with qtbot.waitSignal(window.label_written, timeout=30_000):
        qtbot.keyClick(window.grid, Qt.Key.Key_1)
    with Casebook.open(book_path) as book:
        same_seed = book.findings(prompt=PROMPT, seed=seed)
        assert len(same_seed) == 1 and same_seed[0].label == "memorized"
        window_run = book.runs(kind="window")[0]
        assert book.get(same_seed[0].id).run_ids == [scan_run.id, window_run.id]
        assert len(book) == 2  # the window's other seed joined (or was) a finding too: nothing twice
        assert book.verify().ok


def test_an_image_finished_as_the_cancel_arrives_is_still_shown_and_nothing_after_it_is_made(qtbot):
    pytest.importorskip("PySide6")
    from PySide6.QtCore import QThreadPool

    from inspector.gui.workers import GeneratorWorker

    made = []

    def work(cancel=None, progress=None):
        yield 1
        made.append(1)
        cancel.set()  # Escape pressed while the second image was being finished (and recorded)
        yield 2
        made.append(2)
        yield 3

    worker = GeneratorWorker(work)
    shown = []
    worker.signals.yielded.connect(shown.append)
    with qtbot.waitSignal(worker.signals.finished, timeout=10_000):
        QThreadPool.globalInstance().start(worker)
    assert shown == [1, 2] and made == [1]
