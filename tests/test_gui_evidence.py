"""The window's side of issue 17: it asks once who is labeling and remembers; its Casebook tab exports the findings
shown or the rows selected, as PDF too; Reproduce puts the outcome on the record."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import QItemSelectionModel, QSettings
from test_casebook import make_finding

from inspector.casebook import Casebook


@pytest.fixture
def casebook(tmp_path):
    path = tmp_path / "casebook.db"
    with Casebook.open(path) as book:
        for seed, prompt in ((1, "a photo of Ann Graham Lotz"), (2, "colourful squares"), (3, "colourful squares")):
            book.record(make_finding(seed, prompt=prompt))
        book.label(1, "memorized", reviewer="ana")
    return path


@pytest.fixture
def window(qtbot, tmp_path, casebook, monkeypatch):
    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    from inspector.gui.main_window import MainWindow

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(casebook_path=str(casebook), settings=settings)
    qtbot.addWidget(win)
    win.show()
    win.tabs.setCurrentWidget(win.casebook_tab)
    win.model.refresh_casebook()
    qtbot.waitUntil(lambda: len(win.casebook_tab.shown_ids()) == 3, timeout=30_000)
    yield win
    win.hub.shutdown()


def open_finding(qtbot, window, finding_id: int) -> None:
    window.open_finding(finding_id)
    qtbot.waitUntil(lambda: window.model.casebook.selected_id == finding_id
                    and window.model.casebook.selected is not None, timeout=30_000)


def label_of(path, finding_id: int) -> tuple[str, str]:
    with Casebook.open(path, readonly=True) as book:
        got = book.get(finding_id)
    return got.label, got.reviewer


@pytest.fixture
def nobody(monkeypatch):
    """No reviewer configured: not in the environment (the tests' default) and not remembered."""
    monkeypatch.delenv("INSPECTOR_REVIEWER", raising=False)


def test_the_first_label_without_a_reviewer_asks_once_and_the_name_is_remembered(qtbot, tmp_path, casebook,
                                                                                 monkeypatch, nobody):
    from PySide6.QtWidgets import QInputDialog

    from inspector.gui.main_window import MainWindow

    asked: list[str] = []
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: (asked.append(a[1]) or ("  Ana Lawyer ", True)))
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(casebook_path=str(casebook), settings=settings)
    qtbot.addWidget(win)
    win.show()
    win.tabs.setCurrentWidget(win.casebook_tab)
    win.model.refresh_casebook()
    open_finding(qtbot, win, 2)
    win.label_current("novel")
    qtbot.waitUntil(lambda: label_of(casebook, 2) == ("novel", "Ana Lawyer"), timeout=30_000)
    assert asked == ["Who is labeling?"] and settings.value("reviewer") == "Ana Lawyer"
    assert win.casebook_tab.label_bar.reviewer.text() == "Ana Lawyer"
    open_finding(qtbot, win, 3)
    win.label_current("novel")
    qtbot.waitUntil(lambda: label_of(casebook, 3) == ("novel", "Ana Lawyer"), timeout=30_000)
    assert len(asked) == 1  # asked once
    win.hub.shutdown()


def test_cancelling_the_question_labels_nothing(qtbot, window, casebook, monkeypatch, nobody):
    from PySide6.QtWidgets import QInputDialog

    window.model.set_reviewer("")
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("", False))
    open_finding(qtbot, window, 2)
    window.label_current("memorized")
    assert "needs the reviewer's name" in window.statusBar().currentMessage()
    with Casebook.open(casebook, readonly=True) as book:
        assert [e.action for e in book.label_history(2)] == ["record"]


def export_via_dialog(window, monkeypatch, out, chosen_filter: str) -> None:
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), chosen_filter))
    window.export_report()


def test_export_writes_the_findings_the_filters_show_as_a_pdf(qtbot, window, tmp_path, monkeypatch):
    tab = window.casebook_tab
    tab.prompt_filter.setCurrentIndex(tab.prompt_filter.findText("colourful squares"))
    qtbot.waitUntil(lambda: tab.shown_ids() == [2, 3], timeout=30_000)
    export_via_dialog(window, monkeypatch, tmp_path / "squares", "PDF report (*.pdf)")
    qtbot.waitUntil(lambda: tab.message.text().startswith("Report written"), timeout=60_000)
    out = tmp_path / "squares.pdf"  # the type chosen gives the file its ending
    assert out.read_bytes().startswith(b"%PDF")
    manifest = json.loads((tmp_path / "squares.pdf.manifest.json").read_text())
    assert manifest["findings"] == [2, 3] and manifest["filters"]["ids"] == [2, 3]


def test_export_writes_only_the_rows_selected_when_several_are(qtbot, window, tmp_path, monkeypatch):
    tab = window.casebook_tab
    selection = tab.table.selectionModel()
    selection.clearSelection()
    for row in (0, 2):
        selection.select(tab.model.index(row, 0),
                         QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows)
    assert tab.export_ids() == ([1, 3], "2 selected findings")
    export_via_dialog(window, monkeypatch, tmp_path / "two.html", "PDF report (*.pdf)")  # the name's ending wins
    qtbot.waitUntil(lambda: tab.message.text().startswith("Report written"), timeout=60_000)
    page = (tmp_path / "two.html").read_text(encoding="utf-8")
    assert 'id="finding-1"' in page and 'id="finding-3"' in page and 'id="finding-2"' not in page


def test_reproduce_in_the_window_records_the_outcome_in_the_findings_history(qtbot, window, casebook, monkeypatch):
    from types import SimpleNamespace

    from PIL import Image

    import inspector.generation as generation

    def fake_reproduce(png, model=None, device="auto"):  # the real one samples the demo (tested on the CLI)
        with Image.open(png) as im:
            image = im.convert("RGB")
        return SimpleNamespace(match=True, max_abs_diff=0, mean_abs_diff=0.0, differing_fraction=0.0, tolerance=0,
                               image=image, device="cpu", dtype="float32", recorded_device="cpu",
                               recorded_dtype="float32", model_sha256="ab" * 32, recorded_model_sha256="ab" * 32,
                               same_model=True, weight_changes=[], config_changed=False, batch_seeds=[2],
                               summary=lambda: "seed 2: match (max abs pixel difference 0 of 255)")

    monkeypatch.setattr(generation, "reproduce", fake_reproduce)
    window.model.set_reviewer("ana")
    open_finding(qtbot, window, 2)
    window.reproduce_finding(2)
    qtbot.waitUntil(lambda: "recorded as event" in window.casebook_tab.message.text(), timeout=60_000)
    # The finding is read again with its new history, and that must not replace the outcome with its own line.
    qtbot.waitUntil(lambda: any(e.action == "reproduce" for e in window.model.casebook.history), timeout=30_000)
    qtbot.wait(300)
    assert "recorded as event" in window.casebook_tab.message.text()
    with Casebook.open(casebook, readonly=True) as book:
        [(event, outcome)] = book.reproductions(2)
        assert event.reviewer == "ana" and outcome["max_abs_diff"] == 0 and book.verify().ok
