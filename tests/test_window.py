"""The window as a reviewer meets it on a laptop, keyboard first (issue 16), offscreen: the first screen, keys and
focus, the Casebook tab that labels, menus, drops, dialogs, remembered state, failures. Runs are fed to the
window's model as a run yields them (no sampling), except where the demo model is the point."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QEvent, QMimeData, QObject, QPointF, QSettings, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402
from PySide6.QtWidgets import QApplication, QFileDialog, QWidget  # noqa: E402
from test_inspector_model import generation, png_of  # noqa: E402

from inspector.casebook import Casebook, set_busy_timeout  # noqa: E402
from inspector.inspector_model import WHAT_IT_DOES  # noqa: E402
from inspector.resources import demo_model_dir  # noqa: E402
from inspector.session import InspectRequest, PromptSummary, finding_from  # noqa: E402

HAS_DEMO = (demo_model_dir() / "model_index.json").exists()


def make_window(qtbot, tmp_path, name: str = "settings.ini"):
    from inspector.gui.main_window import MainWindow

    settings = QSettings(str(tmp_path / name), QSettings.Format.IniFormat)  # never the user's settings
    win = MainWindow(casebook_path=str(tmp_path / "casebook.db"), settings=settings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    return win


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    win = make_window(qtbot, tmp_path)
    yield win
    win.hub.shutdown()


def feed(qtbot, win, prompt: str, nearest: list[float], verdicts: list[str] | None = None):
    """A run of the window as its worker delivers it: each generation recorded in the casebook as it is made,
    then the summary; returns the generations."""
    run = win.model.start_run(InspectRequest(prompt=prompt, n=len(nearest)))
    items = []
    with Casebook.open(win.casebook_path) as book:
        for seed, d in enumerate(nearest):
            item = generation(prompt, seed, d, (verdicts or ["novel"] * len(nearest))[seed])
            item.finding_id = book.record(finding_from(item))
            items.append(item)
    with qtbot.waitSignal(win.views_shown, timeout=30_000):  # the first is selected and its heatmaps drawn
        for item in items:
            win.model.add_result(run.number, item)
        win.model.add_result(run.number, PromptSummary(prompt=prompt, n=len(items), nearest=nearest, clique=None))
        win.model.finish_run(run.number)
    return items


def press(qtbot, widget, key, modifier=Qt.KeyboardModifier.NoModifier, signal=None, timeout=30_000):
    if signal is None:
        qtbot.keyClick(widget, key, modifier)
        return
    with qtbot.waitSignal(signal, timeout=timeout):
        qtbot.keyClick(widget, key, modifier)


def labels_in(path) -> dict[int, str]:
    with Casebook.open(path, readonly=True) as book:
        return {f.id: f.label for f in book.findings()}


def on_screen(win: QWidget, widget: QWidget) -> bool:
    """Visible, inside the window and not cut by any ancestor (a scroll area's viewport, a splitter pane)."""
    if not widget.isVisible() or widget.width() < 4 or widget.height() < 4:
        return False
    rect = widget.rect()
    parent = widget
    while parent is not win:
        top_left = parent.mapTo(parent.parentWidget(), rect.topLeft())
        rect.moveTopLeft(top_left)
        parent = parent.parentWidget()
        if not parent.rect().contains(rect):
            return False
    return True


# --- the first screen and the keyboard ------------------------------------------------------------------------------


def test_the_window_opens_saying_what_it_does_with_the_keyboard_in_the_prompt(qtbot, window):
    assert WHAT_IT_DOES in window.header.text()
    assert window.focusWidget() is window.prompt_panel.prompt
    qtbot.keyClicks(window.focusWidget(), "11")  # the bug: this renamed the model to "demo11"
    assert window.prompt_panel.prompt.toPlainText() == "11" and window.model_box.currentText() == "demo"
    assert window.model.model_source == "demo"


def test_label_keys_never_type_into_notes_and_notes_save_with_enter_and_hand_the_keyboard_back(qtbot, window):
    items = feed(qtbot, window, "a lighthouse", [0.3, 0.4])
    window.grid.setFocus()
    press(qtbot, window.grid, Qt.Key.Key_N)  # N: type notes
    notes = window.label_bar.notes
    assert window.focusWidget() is notes
    qtbot.keyClicks(notes, "harbour 1")  # typed here, a 1 is a character, not a label
    assert notes.text() == "harbour 1" and items[0].label == "unlabeled"
    assert not window.model.is_pending(items[0]) and window.model.selected is items[0]  # no label was asked for
    press(qtbot, notes, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: items[0].notes == "harbour 1", timeout=30_000)
    assert window.focusWidget() is window.grid  # Enter saved and gave the keyboard back
    press(qtbot, window.grid, Qt.Key.Key_1, signal=window.label_written)
    assert items[0].label == "memorized" and notes.text() == ""  # moved on to the next, which has no notes
    with Casebook.open(window.casebook_path, readonly=True) as book:
        finding = book.get(items[0].finding_id)
        assert (finding.label, finding.notes) == ("memorized", "harbour 1")
        assert [e.action for e in book.label_history(finding.id)] == ["record", "note", "label"]
    press(qtbot, window.grid, Qt.Key.Key_N)
    qtbot.keyClicks(notes, "changed my mind")
    press(qtbot, notes, Qt.Key.Key_Escape)  # Escape: the saved notes stay, nothing is cancelled
    assert notes.text() == "" and window.focusWidget() is window.grid


def test_help_lists_every_shortcut_and_f1_opens_it(qtbot, window):
    listed = {keys for keys, _what in window.shortcut_rows()}
    for act in window.actions.values():
        for seq in act.shortcuts():
            assert any(seq.toString() in keys for keys in listed), seq.toString()
    assert {"1", "2", "3", "H", "Ctrl+Z", "Enter", "Esc", "F1"} <= {k for keys in listed for k in keys.split(" or ")}
    press(qtbot, window.grid, Qt.Key.Key_F1)
    dialog = QApplication.activeModalWidget()
    assert dialog is not None and dialog.windowTitle() == "Keyboard shortcuts"
    assert dialog.table.rowCount() == len(window.shortcut_rows())
    dialog.close()


def test_the_menus_read_as_a_desktop_app_and_about_names_versions_and_the_casebook(qtbot, window):
    menus = {a.text().replace("&", ""): [x.text() for x in a.menu().actions() if x.text()]
             for a in window.menuBar().actions()}
    assert list(menus) == ["File", "Edit", "Run", "View", "Help"]
    assert {"Open model folder…", "Open index folder…", "Open casebook…", "Export report…"} <= set(menus["File"])
    assert "Undo label" in menus["Edit"] and {"Heatmap", "Sort generations"} <= set(menus["View"])
    assert {"Keyboard shortcuts", "About Memorization Inspector"} <= set(menus["Help"])
    box = window.show_about()
    assert window.casebook_path in box.text() and "Python 3." in box.text() and "Qt 6." in box.text()
    assert "diffusers" in box.text() and box.textFormat() == Qt.TextFormat.PlainText
    box.close()


def test_file_dialogs_start_in_the_documents_folder_then_where_the_person_last_picked(qtbot, window, tmp_path,
                                                                                      monkeypatch):
    from inspector.gui.main_window import documents_folder

    asked = []
    picked = tmp_path / "models" / "sd"
    picked.mkdir(parents=True)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        lambda parent, caption, folder: asked.append(folder) or str(picked))
    window.actions["open_model"].trigger()
    window.actions["open_index"].trigger()
    assert asked == [documents_folder(), str(tmp_path / "models")]  # first Documents, then beside the last pick
    assert window.model_source == str(picked) and window.model_box.currentText() == str(picked)


# --- laptop screens and remembered state ----------------------------------------------------------------------------


def test_every_control_is_on_screen_at_1366x768_and_the_window_may_be_smaller_than_1280x720(qtbot, window):
    window.resize(1366, 768)
    qtbot.waitUntil(lambda: window.size().width() == 1366, timeout=5000)
    feed(qtbot, window, "a lighthouse", [0.3, 0.4])
    bar = window.label_bar
    controls = [*bar.buttons.values(), bar.agree, bar.undo, bar.notes, bar.reviewer, bar.state,
                window.statusBar(), window.model_box, window.index_box, window.casebook_label, window.sort_box,
                window.prompt_panel.prompt, window.grid, window.strip]
    assert all(on_screen(window, w) for w in controls), [w for w in controls if not on_screen(window, w)]
    window.tabs.setCurrentIndex(1)
    tab = window.casebook_tab
    controls = [*tab.label_bar.buttons.values(), tab.label_bar.notes, tab.label_bar.reviewer, tab.table,
                tab.label_filter, tab.suggestion_filter, tab.prompt_filter, tab.model_filter, tab.reviewer_filter,
                tab.search, tab.export, tab.history, window.statusBar()]
    qtbot.waitUntil(lambda: all(on_screen(window, w) for w in controls), timeout=5000)
    assert window.minimumSize().width() <= 1280 and window.minimumSize().height() <= 720
    assert window.minimumSizeHint().width() <= 1280 and window.minimumSizeHint().height() <= 720


def test_size_splitters_n_sort_and_heatmap_mode_are_remembered(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    user = QSettings("memorization-inspector", "inspector")  # the person's own settings on this machine
    users_before = {key: user.value(key) for key in user.allKeys()}
    first = make_window(qtbot, tmp_path)
    first.resize(1300, 740)
    qtbot.waitUntil(lambda: first.height() == 740, timeout=5000)
    first.splitter.setSizes([200, 400])
    sizes = first.splitter.sizes()
    first.prompt_panel.n.setValue(7)
    first.actions["heatmap"].trigger()
    first.sort_box.setCurrentIndex(1)  # generation order
    first.close()
    second = make_window(qtbot, tmp_path)
    try:
        screen = QApplication.primaryScreen().availableGeometry()
        assert second.height() == 740  # the size as left, fitted to the screen (offscreen: 800 wide)
        assert second.width() >= min(1300, screen.width())
        assert second.splitter.sizes() == sizes
        assert second.prompt_panel.n.value() == 7
        assert second.model.sort_by_distance is False and second.sort_box.currentIndex() == 1
        assert second.model.heatmap_mode == "pixel" and second.comparison.mode == "pixel"
    finally:
        second.hub.shutdown()
    user.sync()
    assert {key: user.value(key) for key in user.allKeys()} == users_before  # the user's own: untouched


def test_the_pickers_recent_lists_survive_a_restart(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    first = make_window(qtbot, tmp_path)
    for folder in ("/models/one", "/models/two"):
        first.model_box.setCurrentText(folder)
        first.model.start_run(InspectRequest(prompt="a lighthouse", n=1))  # a run puts its sources on top
        first.model.finish_run(first.model.run.number, cancelled=True)
    first.close()
    second = make_window(qtbot, tmp_path)
    try:
        assert [second.model_box.itemText(k) for k in range(second.model_box.count())] == [
            "demo", "/models/two", "/models/one"]
        assert second.model_box.currentText() == "/models/two"
        assert "model: /models/one" in [a.text() for a in second.recent_menu.actions()]
    finally:
        second.hub.shutdown()


# --- drops, sort, index changes, failures -----------------------------------------------------------------------


def drop(window, path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)


def test_dropping_a_model_folder_an_index_folder_or_a_casebook_uses_it(qtbot, window, tmp_path):
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "model_index.json").write_text("{}")
    (tmp_path / "portfolio").mkdir()
    (tmp_path / "portfolio" / "manifest.json").write_text("{}")
    (tmp_path / "portfolio" / "index.db").write_bytes(b"")
    Casebook.open(tmp_path / "other.db").close()
    drop(window, tmp_path / "sd")
    drop(window, tmp_path / "portfolio")
    with qtbot.waitSignal(window.casebook_shown, timeout=30_000):
        drop(window, tmp_path / "other.db")
    assert window.model_box.currentText() == str(tmp_path / "sd")
    assert window.index_box.currentText() == str(tmp_path / "portfolio")
    assert window.casebook_path == str(tmp_path / "other.db") and "other.db" in window.casebook_label.text()
    (tmp_path / "notes.txt").write_text("hello")
    with qtbot.waitSignal(window.error_shown, timeout=5000):
        drop(window, tmp_path / "notes.txt")
    assert "is not a casebook" in window.banner.text.text()


def test_sort_changes_the_grid_and_the_order_labels_advance_in(qtbot, window):
    items = feed(qtbot, window, "a lighthouse", [0.5, 0.1, 0.3])
    order = [window.grid.proxy.index(r, 0).data(Qt.ItemDataRole.UserRole + 1) for r in range(3)]
    assert order == [items[1], items[2], items[0]] and window.grid.current_item() is items[1]
    window.sort_group.actions()[1].trigger()  # View > Sort generations > Generation order
    order = [window.grid.proxy.index(r, 0).data(Qt.ItemDataRole.UserRole + 1) for r in range(3)]
    assert order == items and window.sort_box.currentIndex() == 1
    window.grid.setFocus()
    press(qtbot, window.grid, Qt.Key.Key_3, signal=window.label_written)
    assert items[1].label == "novel" and window.grid.current_item() is items[2]


def test_changing_the_index_between_generating_and_selecting_keeps_the_runs_index(qtbot, window, monkeypatch):
    used = []
    import inspector.session as session

    real = session.neighbour_views
    monkeypatch.setattr(session, "neighbour_views", lambda source, item, side=150: used.append(source) or
                        real(source, item, side))
    items = feed(qtbot, window, "a lighthouse", [0.3, 0.4])
    window.index_box.setCurrentText("/another/index")
    with qtbot.waitSignal(window.views_shown, timeout=30_000):
        window.grid.select_item(items[1])
    assert used[-1] == "run-index" and window.model.index_source == "/another/index"


@pytest.fixture
def locked(window):
    """Another program holds the casebook's write lock; a write gives up after 0.2 s."""
    set_busy_timeout(0.2)
    conn = sqlite3.connect(window.casebook_path, isolation_level=None, timeout=0.2)
    yield conn
    conn.close()
    set_busy_timeout(30)


def test_a_label_that_cannot_be_written_is_not_shown(qtbot, window, locked):
    items = feed(qtbot, window, "a lighthouse", [0.3, 0.4])
    window.grid.setFocus()
    locked.execute("BEGIN IMMEDIATE")
    press(qtbot, window.grid, Qt.Key.Key_1, signal=window.error_shown)
    locked.execute("ROLLBACK")
    assert "The label was NOT saved" in window.banner.text.text() and window.banner.isVisible()
    assert items[0].label == "unlabeled" and window.grid.current_item() is items[0]
    assert window.label_bar.state.text() == "seed 0: Unlabeled"
    assert not any(b.isChecked() for b in window.label_bar.buttons.values())
    assert labels_in(window.casebook_path)[items[0].finding_id] == "unlabeled"


def test_an_undo_that_cannot_be_written_keeps_the_label_and_can_be_tried_again(qtbot, window, locked):
    items = feed(qtbot, window, "a lighthouse", [0.3, 0.4])
    window.grid.setFocus()
    press(qtbot, window.grid, Qt.Key.Key_2, signal=window.label_written)
    locked.execute("BEGIN IMMEDIATE")
    press(qtbot, window.grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier, signal=window.error_shown)
    locked.execute("ROLLBACK")
    assert window.banner.text.text().startswith("Undo failed") and items[0].label == "likeness-only"
    assert window.label_bar.undo.isEnabled()
    press(qtbot, window.grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier, signal=window.label_written)
    assert items[0].label == "unlabeled" == labels_in(window.casebook_path)[items[0].finding_id]
    assert window.grid.current_item() is items[0] and window.label_bar.state.text() == "seed 0: Unlabeled"


# --- the Casebook tab ---------------------------------------------------------------------------------------------


def open_casebook_tab(qtbot, window):
    with qtbot.waitSignal(window.casebook_shown, timeout=30_000):
        press(qtbot, window.grid, Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)
    return window.casebook_tab


def test_the_casebook_tab_labels_with_keys_advances_and_shows_each_findings_history(qtbot, window):
    items = feed(qtbot, window, "a lighthouse", [0.3, 0.4, 0.05], verdicts=["novel", "novel", "memorized"])
    tab = open_casebook_tab(qtbot, window)
    assert window.focusWidget() is tab.table and tab.model.rowCount() == 3
    press(qtbot, tab.table, Qt.Key.Key_Down, signal=window.finding_shown)  # the first finding
    assert tab.selected_id() == items[0].finding_id and [tab.history.item(k).text() for k in range(1)]
    assert "recorded (Unlabeled)" in tab.history.item(0).text()
    button = tab.label_bar.buttons["memorized"]
    assert button.text() == "1  Memorized" and button.isEnabled()
    press(qtbot, tab.table, Qt.Key.Key_3, signal=window.label_written)  # labeled, then on to the next
    shown = window.model.casebook
    qtbot.waitUntil(lambda: shown.selected is not None and shown.selected.finding_id == items[1].finding_id,
                    timeout=30_000)
    assert tab.selected_id() == items[1].finding_id and tab.label_bar.state.text() == "seed 1: Unlabeled"
    assert tab.model.index(0, 4).data() == "Novel"
    press(qtbot, tab.table, Qt.Key.Key_Down, signal=window.finding_shown)  # the third: suggested memorized
    assert tab.label_bar.agree.text() == "Enter  Agree: Memorized"
    press(qtbot, tab.table, Qt.Key.Key_Return, signal=window.label_written)  # Enter agrees
    assert tab.selected_id() == items[1].finding_id  # the only unlabeled one left
    press(qtbot, tab.table, Qt.Key.Key_Up, signal=window.finding_shown)
    qtbot.waitUntil(lambda: tab.history.count() == 2, timeout=30_000)
    assert "labeled Novel (was Unlabeled) by test reviewer" in tab.history.item(1).text()
    assert labels_in(window.casebook_path) == {items[0].finding_id: "novel", items[1].finding_id: "unlabeled",
                                               items[2].finding_id: "memorized"}
    assert items[0].label == "novel"  # the Inspect tab's tile says so too
    press(qtbot, tab.table, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier, signal=window.label_written)
    assert labels_in(window.casebook_path)[items[2].finding_id] == "unlabeled"  # the tab's last label, undone
    assert tab.selected_id() == items[2].finding_id  # and shown


def test_h_changes_the_casebook_tabs_pictures_and_an_old_finding_shows_thumbnails_with_a_note(qtbot, window):
    items = feed(qtbot, window, "a lighthouse", [0.3])
    old = generation("a lighthouse", 9, 0.3)
    for nb in old.neighbours:
        nb.thumbnail_png = png_of(nb.pixels)
        nb.pixels = None  # recorded before compared pixels were kept: a thumbnail only
    with Casebook.open(window.casebook_path) as book:
        old_id = book.record(finding_from(old))
    tab = open_casebook_tab(qtbot, window)
    with qtbot.waitSignal(window.casebook_views_shown, timeout=30_000):
        window.open_finding(items[0].finding_id)
    card = tab.comparison.cards[0]
    before = card.picture.pixmap().toImage()
    press(qtbot, tab.table, Qt.Key.Key_H)
    assert tab.comparison.mode == "pixel" and card.picture.pixmap().toImage() != before
    assert not tab.comparison.note.isVisible()
    with qtbot.waitSignal(window.casebook_views_shown, timeout=30_000):
        window.open_finding(old_id)
    assert tab.comparison.note.isVisible() and "thumbnails" in tab.comparison.note.text()
    assert not card.picture.pixmap().isNull()  # the stored thumbnail


def test_the_casebook_tab_reads_another_programs_writes_and_keeps_the_selection(qtbot, window):
    items = feed(qtbot, window, "a lighthouse", [0.3, 0.4])
    tab = open_casebook_tab(qtbot, window)
    with qtbot.waitSignal(window.finding_shown, timeout=30_000):
        window.open_finding(items[1].finding_id)
    with Casebook.open(window.casebook_path) as book:  # a scan, running in another program
        book.label(items[0].finding_id, "memorized", reviewer="scan-bot")
        book.record(finding_from(generation("a harbour", 3, 0.2)))
    with qtbot.waitSignal(window.casebook_shown, timeout=10_000):  # no key pressed: the poll notices
        pass
    assert tab.model.rowCount() == 3 and tab.selected_id() == items[1].finding_id
    assert tab.model.index(0, 4).data() == "Memorized"


def test_the_casebook_tab_filters_by_label_suggestion_prompt_model_reviewer_text_and_run(qtbot, window):
    a = feed(qtbot, window, "a lighthouse", [0.05, 0.4], verdicts=["memorized", "novel"])
    b = feed(qtbot, window, "a red barn", [0.3])
    with Casebook.open(window.casebook_path) as book:
        book.label(b[0].finding_id, "novel", reviewer="ben", note="a barn, not the harbour")
        run_id = book.start_run(kind="window", prompt="a red barn", n_requested=1)
        book.link_run(run_id, b[0].finding_id)
    tab = open_casebook_tab(qtbot, window)

    def shown_after(change) -> list[int]:
        with qtbot.waitSignal(window.casebook_shown, timeout=30_000):
            change()
        return [tab.model.rows[k].id for k in range(tab.model.rowCount())]

    def pick(box, value):
        return lambda: box.setCurrentIndex(0 if value is None else box.findData(value))

    assert shown_after(pick(tab.label_filter, "novel")) == [b[0].finding_id]
    assert shown_after(pick(tab.label_filter, None)) == [a[0].finding_id, a[1].finding_id, b[0].finding_id]
    assert shown_after(pick(tab.suggestion_filter, "memorized")) == [a[0].finding_id]
    assert shown_after(pick(tab.suggestion_filter, None)) and tab.prompt_filter.findData("a red barn") > 0
    assert shown_after(pick(tab.prompt_filter, "a red barn")) == [b[0].finding_id]
    assert shown_after(pick(tab.prompt_filter, None)) and tab.model_filter.findData("demo") > 0
    assert len(shown_after(pick(tab.model_filter, "demo"))) == 3
    assert shown_after(pick(tab.reviewer_filter, "ben")) == [b[0].finding_id]
    assert shown_after(pick(tab.reviewer_filter, None))

    def search(text):
        def run():
            tab.search.setText(text)
            qtbot.keyClick(tab.search, Qt.Key.Key_Return)
        return run

    assert shown_after(search("harbour")) == [b[0].finding_id]
    assert len(shown_after(search(""))) == 3
    row = tab.runs_model.row_of(run_id)
    assert shown_after(lambda: tab.runs_table.selectRow(row)) == [b[0].finding_id]
    assert len(shown_after(lambda: tab.show_run(None))) == 3


def test_a_double_click_opens_the_finding_and_gives_the_keyboard_to_the_labels(qtbot, window):
    items = feed(qtbot, window, "a lighthouse", [0.3, 0.4])
    tab = open_casebook_tab(qtbot, window)
    tab.search.setFocus()
    index = tab.model.index(1, 2)
    with qtbot.waitSignal(window.finding_shown, timeout=30_000):
        tab.table.doubleClicked.emit(index)
    assert tab.selected_id() == items[1].finding_id and window.focusWidget() is tab.table
    assert "1 / 2 / 3 label it" in window.statusBar().currentMessage()


# --- the demo model: prompt buttons, keyboard-only labeling, --screenshot -----------------------------------------


@pytest.mark.skipif(not HAS_DEMO, reason="no demo model")
def test_a_demo_prompt_button_fills_the_prompt_and_generates(qtbot, window):
    window.prompt_panel.n.setValue(1)
    window.prompt_panel.steps.setValue(1)
    window.prompt_panel.guidance.setValue(3.0)
    window.prompt_panel.wen.setChecked(False)
    button = next(window.prompt_panel.suggestions_box.itemAt(k).widget()
                  for k in range(window.prompt_panel.suggestions_box.count())
                  if window.prompt_panel.suggestions_box.itemAt(k).widget().text().startswith("colourful squares"))
    with qtbot.waitSignal(window.run_finished, timeout=240_000):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert window.prompt_panel.prompt.toPlainText() == "colourful squares"
    assert window.grid.source.rowCount() == 1 and window.model.run.request.prompt == "colourful squares"
    assert window.prompt_panel.guidance.value() == 3.0  # a run leaves the settings as the person set them


class MouseCounter(QObject):
    """Counts every mouse press, release, double-click and move the application delivers."""

    KINDS = (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonRelease, QEvent.Type.MouseButtonDblClick,
             QEvent.Type.MouseMove)

    def __init__(self):
        super().__init__()
        self.count = 0

    def eventFilter(self, _obj, event) -> bool:
        if event.type() in self.KINDS:
            self.count += 1
        return False


@pytest.mark.skipif(not HAS_DEMO, reason="no demo model")
@pytest.mark.slow
def test_a_reviewer_labels_50_generations_with_the_keyboard_alone(qtbot, window, record_property):
    mice = MouseCounter()
    QApplication.instance().installEventFilter(mice)
    keys = 0

    def key(k, modifier=Qt.KeyboardModifier.NoModifier, widget=None):
        nonlocal keys
        keys += 1
        qtbot.keyClick(widget or QApplication.focusWidget() or window, k, modifier)

    def type_text(text: str):
        nonlocal keys
        keys += len(text)
        qtbot.keyClicks(QApplication.focusWidget(), text)

    try:
        assert window.focusWidget() is window.prompt_panel.prompt
        window.activateWindow()
        qtbot.waitUntil(lambda: QApplication.focusWidget() is window.prompt_panel.prompt, timeout=5000)
        type_text("colourful squares")
        key(Qt.Key.Key_Tab)  # negative prompt
        key(Qt.Key.Key_Tab)  # N
        key(Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
        type_text("50")
        key(Qt.Key.Key_Tab)  # first seed
        key(Qt.Key.Key_Tab)  # steps
        key(Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
        type_text("2")
        key(Qt.Key.Key_Tab)  # guidance
        key(Qt.Key.Key_Tab)  # Wen score
        key(Qt.Key.Key_Space)  # off: this test is about labeling
        assert (window.prompt_panel.n.value(), window.prompt_panel.steps.value()) == (50, 2)
        assert not window.prompt_panel.wen.isChecked()
        with qtbot.waitSignal(window.run_finished, timeout=600_000):
            key(Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
        setup_keys = keys
        assert window.grid.source.rowCount() == 50 and QApplication.focusWidget() is window.grid
        labels = [Qt.Key.Key_1, Qt.Key.Key_2, Qt.Key.Key_3]
        written = []
        window.label_written.connect(written.append)
        start = time.perf_counter()
        for k in range(50):
            key(labels[k % 3])
        qtbot.waitUntil(lambda: len(written) == 50, timeout=120_000)
        seconds = time.perf_counter() - start
    finally:
        QApplication.instance().removeEventFilter(mice)
    label_keys = keys - setup_keys
    record_property("keystrokes_setup", setup_keys)
    record_property("keystrokes_per_label", label_keys / 50)
    record_property("seconds_per_label", seconds / 50)
    print(f"keyboard only: {setup_keys} keys to type the prompt and settings and generate, {label_keys} keys for "
          f"50 labels ({label_keys / 50:.0f} per label), {seconds / 50 * 1000:.0f} ms per label to the casebook; "
          f"{mice.count} mouse events")
    assert mice.count == 0 and label_keys == 50
    items = window.grid.source.items()
    with Casebook.open(window.casebook_path, readonly=True) as book:
        assert book.counts() == {"memorized": 17, "likeness-only": 17, "novel": 16, "unlabeled": 0}
        for item in items:
            history = book.label_history(item.finding_id)
            assert [e.action for e in history] == ["record", "label"] and history[-1].label == item.label
            assert history[-1].reviewer == "test reviewer"
        assert book.verify().ok
    ordered = window.model.ordered_items()  # labeled in the grid's order, 1 2 3 1 2 3 ...
    assert [i.label for i in ordered] == [("memorized", "likeness-only", "novel")[k % 3] for k in range(50)]


@pytest.mark.skipif(not HAS_DEMO, reason="no demo model")
@pytest.mark.slow
def test_screenshot_writes_the_window_at_the_size_asked(tmp_path, monkeypatch):
    from PIL import Image

    from inspector.cli import main

    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    shot = tmp_path / "window.png"
    # Its own process, as people run it: the screenshot ends its event loop with QApplication.quit().
    done = subprocess.run([sys.executable, "-m", "inspector", "gui", "--screenshot", str(shot), "--prompt",
                           "colourful squares", "--n", "2", "--size", "1366x768"],
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    with Image.open(shot) as image:
        assert image.size == (1366, 768)
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 24)) >= 64
    assert main(["gui", "--screenshot", str(tmp_path / "w.png"), "--prompt", "x", "--size", "big"]) == 2


def test_a_labeled_tile_still_shows_its_seed(qtbot, window):
    from inspector.gui.grid import tile_caption

    items = feed(qtbot, window, "a lighthouse", [0.3, 0.4])
    assert tile_caption(items[0]) == "seed 0"
    window.grid.setFocus()
    press(qtbot, window.grid, Qt.Key.Key_2, signal=window.label_written)
    assert tile_caption(items[0]) == "seed 0 ✓ Likeness only"
    assert tile_caption(items[1], pending=True) == "seed 1 · saving…"
