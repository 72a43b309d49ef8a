"""The Review tab as an annotator meets it (issue 18, points 1 and 2), offscreen and keyboard only: label and
advance while a real scan writes the same casebook, skip, back, notes, undo, several at once, a busy casebook,
and the walk through a merge's disagreements."""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time

import pytest
import pytestqt.exceptions

pytest.importorskip("PySide6")

from PySide6.QtCore import QSettings, Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402
from test_casebook import make_finding  # noqa: E402
from test_inspector_model import generation  # noqa: E402

from inspector.casebook import ADJUDICATED, Casebook, merge_casebooks  # noqa: E402
from inspector.resources import demo_model_dir  # noqa: E402
from inspector.session import finding_from  # noqa: E402

HAS_DEMO = (demo_model_dir() / "model_index.json").exists()
REVIEWER = os.environ["INSPECTOR_REVIEWER"]  # conftest names the test reviewer
KEYS = {"memorized": Qt.Key.Key_1, "likeness-only": Qt.Key.Key_2, "novel": Qt.Key.Key_3}


def make_window(qtbot, tmp_path, casebook):
    from inspector.gui.main_window import MainWindow

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)  # never the user's settings
    win = MainWindow(casebook_path=str(casebook), settings=settings)
    qtbot.addWidget(win)
    win.resize(1440, 900)
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()  # keys go where a person's would: the window's shortcuts need it active
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=5000)
    return win


@pytest.fixture
def open_review(qtbot, tmp_path, monkeypatch):
    """Open the window on a casebook and bring up its Review tab with the keyboard (Ctrl+3)."""
    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    windows = []

    def open_it(casebook, busy_timeout_s: float | None = None):
        win = make_window(qtbot, tmp_path, casebook)
        windows.append(win)
        tab = win.review_tab
        if busy_timeout_s is not None:
            tab.desk.busy_timeout_s = busy_timeout_s
        qtbot.keyClick(win.grid, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)  # as test_window does Ctrl+2
        assert win.tabs.currentWidget() is tab
        qtbot.waitUntil(lambda: tab.shown is not None and tab.idle, timeout=30_000)
        qtbot.waitUntil(lambda: QApplication.focusWidget() is tab.list, timeout=5000)
        return win, tab

    yield open_it
    for win in windows:
        win.review_tab.shutdown()
        win.hub.shutdown()


def record(path, prompt: str, nearest: list[float], verdict: str = "novel") -> list[int]:
    """Findings another program records (the test process is that program), nearest first by construction."""
    with Casebook.open(path) as book:
        return [book.record(finding_from(generation(prompt, seed, d, verdict))) for seed, d in enumerate(nearest)]


def press(qtbot, tab, key, modifier=Qt.KeyboardModifier.NoModifier, timeout=30_000) -> None:
    """A key where the keyboard is (the queue list), then wait until its job is shown."""
    qtbot.keyClick(QApplication.focusWidget(), key, modifier)
    qtbot.waitUntil(lambda: tab.idle, timeout=timeout)


def current_id(tab) -> int:
    return tab.shown.current.id


def history(path, finding_id: int):
    with Casebook.open(path, readonly=True) as book:
        return book.label_history(finding_id)


def labels(path) -> dict[int, str]:
    with Casebook.open(path, readonly=True) as book:
        return {f.id: f.label for f in book.findings()}


# --- (a) the acceptance test: a real scan writes while the annotator labels ---------------------------------------


@pytest.mark.skipif(not HAS_DEMO, reason="the demo model is not in resources/demo/model")
@pytest.mark.slow
def test_the_queue_labels_20_scan_candidates_with_keys_only_while_the_scan_writes_them(qtbot, open_review, tmp_path,
                                                                                       record_property):
    casebook = tmp_path / "scan.db"
    prompts = tmp_path / "prompts.txt"
    # Each demo prompt below gives 6 of 6 candidates (near copies, or likenesses for the cat): 24 in all.
    prompts.write_text("the cameraman\na cup of coffee\nastronaut eileen collins\nchelsea the cat\n", encoding="utf-8")
    from inspector.training_index import demo_index

    # The demo index is built on first use (minutes on a busy machine): here, before the scan starts, so that what
    # overlaps the labeling is the scan making and recording its candidates.
    demo_index(os.environ.get("INSPECTOR_CACHE_DIR")).close()
    log = open(tmp_path / "scan.log", "w", encoding="utf-8")  # a file: a pipe nobody reads would stall the scan
    scan = subprocess.Popen([sys.executable, "-m", "inspector", "scan", str(prompts), "--n", "6", "--steps", "6",
                             "--casebook", str(casebook)], stdout=subprocess.DEVNULL, stderr=log)
    try:
        win, tab = open_review(casebook)  # before the scan has written anything: the tab waits for it
        arrivals = []
        tab.state_shown.connect(lambda: tab.shown.added and arrivals.append((tab.shown.added, scan.poll())))
        given: dict[int, str] = {}
        seconds = []
        cycle = list(KEYS)
        while len(given) < 20:
            try:
                qtbot.waitUntil(lambda: tab.idle and tab.shown.current is not None
                                and current_id(tab) in tab.shown.waiting, timeout=3_600_000)  # a busy machine
            except pytestqt.exceptions.TimeoutError:
                shown = tab.shown
                raise AssertionError(f"no finding to label after {len(given)} labels: scan exit {scan.poll()}, "
                                     f"{len(shown.rows)} queued, {len(shown.waiting)} waiting, idle {tab.idle}, "
                                     f"words {shown.words!r}, message {tab.message.text()!r}; the scan said: "
                                 f"{(tmp_path / 'scan.log').read_text(encoding='utf-8')[-1500:]}") from None
            assert QApplication.focusWidget() is tab.list, "the keyboard stays on the queue"
            fid, label = current_id(tab), cycle[len(given) % 3]
            more = len(tab.shown.waiting) > 1  # a next finding to show (else the scan has not written it yet)
            start = time.perf_counter()
            qtbot.keyClick(tab.list, KEYS[label])
            if more:
                qtbot.waitUntil(lambda fid=fid: tab.shown.current is not None and current_id(tab) != fid,
                                timeout=60_000)
                seconds.append(time.perf_counter() - start)
            qtbot.waitUntil(lambda: tab.idle, timeout=60_000)
            given[fid] = label
        assert scan.wait(timeout=3600) == 0, (tmp_path / "scan.log").read_text(encoding="utf-8")[-2000:]
    finally:
        if scan.poll() is None:
            scan.kill()
            scan.wait()
        log.close()
    # New candidates joined the queue (at least three prompts' worth) while the scan was still writing.
    assert sum(1 for _, running in arrivals if running is None) >= 3, arrivals
    with Casebook.open(casebook, readonly=True) as book:
        for fid, label in given.items():
            assert book.get(fid).label == label and book.get(fid).reviewer == REVIEWER
            events = book.label_history(fid)
            assert [e.action for e in events] == ["record", "label"], (fid, events)
            assert events[-1].label == label and events[-1].reviewer == REVIEWER
        assert book.count(label="unlabeled") == len(book) - 20
        assert book.verify().ok
    median = statistics.median(seconds)
    record_property("review_seconds_per_label_median", median)
    print(f"Review tab: {len(seconds)} labels timed from key press to the next finding shown, median "
          f"{median:.3f} s, worst {max(seconds):.3f} s, while a scan wrote the same casebook")


# --- (b) skip, back, notes, undo, several at once, a busy casebook, new findings -----------------------------------


def test_s_skips_backspace_goes_back_and_ctrl_z_undoes_the_last_label(qtbot, open_review, tmp_path):
    path = tmp_path / "casebook.db"
    ids = record(path, "a lighthouse", [0.1, 0.2, 0.3, 0.4])
    win, tab = open_review(path)
    window_labels = []  # the window's own 1 / 2 / 3 (Edit menu), which label on the other tabs
    for label in KEYS:
        win.actions[f"label_{label}"].triggered.connect(lambda *_a, lab=label: window_labels.append(lab))
    assert current_id(tab) == ids[0] and tab.place.text() == "1 of 4" and tab.left.text() == "4 left"
    press(qtbot, tab, Qt.Key.Key_S)
    assert current_id(tab) == ids[1]
    press(qtbot, tab, Qt.Key.Key_1)
    assert current_id(tab) == ids[2] and tab.left.text() == "3 left"
    assert labels(path)[ids[1]] == "memorized" and labels(path)[ids[0]] == "unlabeled"
    press(qtbot, tab, Qt.Key.Key_Backspace)
    assert current_id(tab) == ids[1] and tab.buttons["memorized"].isChecked()
    press(qtbot, tab, Qt.Key.Key_3)  # a label given again after going back
    press(qtbot, tab, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert current_id(tab) == ids[1] and labels(path)[ids[1]] == "memorized"  # the 3 undone, the 1 stands
    press(qtbot, tab, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert labels(path)[ids[1]] == "unlabeled" and tab.left.text() == "4 left"
    assert [(e.action, e.reviewer) for e in history(path, ids[1])] == [
        ("record", ""), ("label", REVIEWER), ("label", REVIEWER), ("undo", REVIEWER), ("undo", REVIEWER)]
    assert window_labels == [], "the Review tab's keys never reach the window's label actions"


def test_n_opens_the_notes_and_enter_saves_them_as_an_event(qtbot, open_review, tmp_path):
    path = tmp_path / "casebook.db"
    ids = record(path, "a lighthouse", [0.1, 0.2])
    win, tab = open_review(path)
    qtbot.keyClick(tab.list, Qt.Key.Key_N)
    dialog = tab.notes_dialog
    assert dialog is not None and dialog.isVisible()
    qtbot.keyClicks(dialog.text, "the tiles match: 1 2 3 S")  # keys that label in the queue type here
    qtbot.keyClick(dialog.text, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: tab.idle and tab.notes_dialog is None, timeout=30_000)
    with Casebook.open(path, readonly=True) as book:
        assert book.get(ids[0]).notes == "the tiles match: 1 2 3 S" and book.get(ids[0]).label == "unlabeled"
    assert [(e.action, e.reviewer) for e in history(path, ids[0])][-1] == ("note", REVIEWER)
    assert current_id(tab) == ids[0]  # notes do not move on
    # The keyboard goes back to the queue (the window's focus widget once it is active again; offscreen, Qt does
    # not reactivate a window when its dialog closes).
    qtbot.waitUntil(lambda: win.focusWidget() is tab.list, timeout=5000)
    assert "notes changed" in tab.history.item(tab.history.count() - 1).text()


def test_several_selected_with_shift_are_labeled_at_once_each_with_its_own_event(qtbot, open_review, tmp_path):
    path = tmp_path / "casebook.db"
    ids = record(path, "a lighthouse", [0.1, 0.2, 0.3, 0.4, 0.5])
    win, tab = open_review(path)
    press(qtbot, tab, Qt.Key.Key_Down, Qt.KeyboardModifier.ShiftModifier)
    press(qtbot, tab, Qt.Key.Key_Down, Qt.KeyboardModifier.ShiftModifier)
    assert tab.selected_ids() == ids[:3]
    press(qtbot, tab, Qt.Key.Key_2)
    assert [labels(path)[i] for i in ids] == ["likeness-only"] * 3 + ["unlabeled"] * 2
    for fid in ids[:3]:
        assert [(e.action, e.label, e.reviewer) for e in history(path, fid)][-1] == ("label", "likeness-only",
                                                                                    REVIEWER)
    assert current_id(tab) == ids[3] and tab.selected_ids() == [ids[3]] and tab.left.text() == "2 left"
    press(qtbot, tab, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # one undo: the last of the three
    assert [labels(path)[i] for i in ids[:3]] == ["likeness-only", "likeness-only", "unlabeled"]


def test_findings_another_program_writes_join_behind_the_annotators_place(qtbot, open_review, tmp_path):
    path = tmp_path / "casebook.db"
    ids = record(path, "a lighthouse", [0.3, 0.4])
    win, tab = open_review(path)
    press(qtbot, tab, Qt.Key.Key_3)
    assert current_id(tab) == ids[1]
    new = record(path, "a harbour", [0.01, 0.02])  # nearer than any queued: still not ahead of the annotator
    with qtbot.waitSignal(tab.state_shown, timeout=10_000):  # no key pressed: the timer reads it
        pass
    assert current_id(tab) == ids[1] and [r.id for r in tab.shown.rows] == ids + new
    assert tab.place.text() == "2 of 4" and tab.left.text() == "3 left" and "2 new findings" in tab.message.text()
    press(qtbot, tab, Qt.Key.Key_3)
    press(qtbot, tab, Qt.Key.Key_3)
    press(qtbot, tab, Qt.Key.Key_3)
    assert tab.left.text() == "0 left" and "Every finding here is labeled" in tab.message.text()
    later = record(path, "a quay", [0.5])
    qtbot.keyClick(tab.list, Qt.Key.Key_F5)  # on demand too
    qtbot.waitUntil(lambda: tab.idle and current_id(tab) == later[0], timeout=10_000)  # done: on to the new one


def test_a_label_the_busy_casebook_refuses_is_tried_again_until_it_is_written(qtbot, open_review, tmp_path):
    path = tmp_path / "casebook.db"
    ids = record(path, "a lighthouse", [0.1, 0.2, 0.3])
    win, tab = open_review(path, busy_timeout_s=0.2)
    other = sqlite3.connect(path, isolation_level=None)  # another program holds the write lock
    other.execute("BEGIN IMMEDIATE")
    try:
        qtbot.keyClick(tab.list, Qt.Key.Key_1)
        qtbot.keyClick(tab.list, Qt.Key.Key_2)  # pressed while the first waits: done after it, in order
        # Refused three times (each after the casebook's own wait), and said so each time; nothing written yet.
        qtbot.waitUntil(lambda: "The casebook is busy" in tab.message.text() and "(3)" in tab.message.text(),
                        timeout=20_000)
        assert not tab.idle and labels(path)[ids[0]] == "unlabeled"
    finally:
        other.execute("ROLLBACK")
        other.close()
    qtbot.waitUntil(lambda: tab.idle, timeout=30_000)
    assert [labels(path)[i] for i in ids] == ["memorized", "likeness-only", "unlabeled"]
    assert current_id(tab) == ids[2] and "The casebook is busy" not in tab.message.text()


# --- (c) the walk through a merge's disagreements ---------------------------------------------------------------


def test_walking_disagreements_shows_each_reviewer_and_records_the_decision_as_its_own_event(qtbot, open_review,
                                                                                            tmp_path):
    base = tmp_path / "base.db"
    with Casebook.open(base) as b:
        for seed in range(3):
            b.record(make_finding(seed))
    a, c = tmp_path / "a.db", tmp_path / "b.db"
    shutil.copy(base, a)
    shutil.copy(base, c)
    for path, who, given in ((a, "ana", ["memorized", "novel", "novel"]),
                             (c, "ben", ["memorized", "memorized", "likeness-only"])):
        with Casebook.open(path) as b:
            for fid, label in enumerate(given, start=1):
                b.label(fid, label, reviewer=who)
    merged = tmp_path / "merged.db"
    merge_casebooks([a, c], merged)
    win, tab = open_review(merged)
    walk = win.actions["walk_disagreements"]
    walk.trigger()  # View > Walk disagreements
    qtbot.waitUntil(lambda: tab.idle and tab.shown.adjudicate, timeout=30_000)
    assert tab.walk.isChecked() and walk.isChecked()
    assert sorted(r.id for r in tab.shown.rows) == [2, 3] and tab.left.text() == "2 left"
    row = [r.id for r in tab.shown.rows].index(2)
    for _ in range(abs(row - tab.shown.position)):
        press(qtbot, tab, Qt.Key.Key_Down if row > tab.shown.position else Qt.Key.Key_Up)
    assert current_id(tab) == 2
    assert tab.said.isVisible() and tab.said.text().startswith("Reviewers said: ana: Novel · ben: Memorized")
    press(qtbot, tab, Qt.Key.Key_1)
    event = history(merged, 2)[-1]
    assert (event.action, event.label, event.reviewer) == ("label", "memorized", REVIEWER)
    assert event.note.startswith(ADJUDICATED) and "ana novel, ben memorized" in event.note
    assert current_id(tab) == 3 and tab.left.text() == "1 left" and "ana: Novel · ben: Likeness only" in \
        tab.said.text()
    with Casebook.open(merged, readonly=True) as book:
        assert book.get(2).label == "memorized" and book.verify().ok
    walk.trigger()  # back to the findings that need a label
    qtbot.waitUntil(lambda: tab.idle and not tab.shown.adjudicate, timeout=30_000)
    assert not tab.said.isVisible()
