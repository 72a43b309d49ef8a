"""A caption, prompt, note or file name holding markup is shown as the characters it is, never drawn as markup
(a caption `<h1><font color=red>MEMORIZED</font></h1>` must not fake the verdict display); and the window's
export never replaces the casebook, nor another file without asking."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QSettings, Qt, QTimer  # noqa: E402
from PySide6.QtGui import QTextDocument  # noqa: E402
from PySide6.QtWidgets import QApplication, QLabel, QMessageBox  # noqa: E402
from test_casebook import make_finding  # noqa: E402

from inspector.casebook import Casebook  # noqa: E402
from inspector.extraction import Suggestion  # noqa: E402
from inspector.findings import Neighbour  # noqa: E402
from inspector.gui.casebook_tab import COLUMNS  # noqa: E402
from inspector.resources import demo_model_dir  # noqa: E402

FAKE_VERDICT = "<h1><font color=red>MEMORIZED</font></h1>"
LOCAL_IMAGE = '<img src="/etc/hostname">'
PLAIN = Qt.TextFormat.PlainText


def shown(rich: str) -> str:
    """What Qt draws for a rich-text string (a tooltip, a label that composes markup), as plain characters."""
    doc = QTextDocument()
    doc.setHtml(rich)
    return doc.toPlainText().replace("\u2028", "\n").replace("\u2029", "\n")


def assert_literal(label: QLabel, text: str) -> None:
    assert label.text() == text
    assert label.textFormat() == PLAIN


def neighbour(rank: int) -> Neighbour:
    return Neighbour(rank=rank, item_id=rank, source=f"{LOCAL_IMAGE}/{rank}.png", caption=FAKE_VERDICT,
                     duplicate_count=1, l2=0.3, tiled_l2=0.4, ssim=0.2, calibrated_l2=1.5,
                     licence="<a href='http://x'>CC0</a>")


def inspected(reason: str = f"a reason quoting {LOCAL_IMAGE}"):
    from inspector.session import Inspected

    return Inspected(position=0, seed=7, image=np.zeros((32, 32, 3), np.uint8), png=b"",
                     provenance={"steps": 2, "model": {"source": f"/models/{FAKE_VERDICT}"}},
                     neighbours=[neighbour(r) for r in range(1, 5)], suggestion=Suggestion("novel", reason))


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    from inspector.gui.main_window import MainWindow

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(casebook_path=str(tmp_path / "casebook.db"), settings=settings)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.hub.shutdown()


def answer_next_question(answer: str | None, seen: list) -> None:
    """When the next message box opens, note its text and format, then press the button reading ``answer``
    (None: the box's escape button)."""
    def press() -> None:
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox), box
        seen.append((box.text(), box.textFormat()))
        button = box.escapeButton() if answer is None else next(b for b in box.buttons() if b.text() == answer)
        button.click()

    QTimer.singleShot(0, press)


# --- markup in data shows as text ------------------------------------------------------------------------------


def test_the_comparison_panel_shows_captions_sources_and_model_folders_holding_markup_literally(qtbot):
    from inspector.gui.comparison import ComparisonPanel

    panel = ComparisonPanel()
    qtbot.addWidget(panel)
    panel.show_generation(inspected())
    for card in panel.cards:
        assert_literal(card.caption, f"“{FAKE_VERDICT}”")
        assert_literal(card.source, f"{LOCAL_IMAGE}/{card.rank}.png")
        assert shown(card.source.toolTip()) == f"{LOCAL_IMAGE}/{card.rank}.png\nlicence: <a href='http://x'>CC0</a>"
    assert panel.details.textFormat() == PLAIN and f"/models/{FAKE_VERDICT}" in panel.details.text()
    # the verdict badge is the app's own markup; the reason inside it is escaped
    assert f"a reason quoting {LOCAL_IMAGE}" in shown(panel.verdict.text())
    assert LOCAL_IMAGE not in panel.verdict.text()


def test_the_grid_tooltip_shows_a_reason_holding_markup_literally(qtbot):
    from inspector.gui.grid import GenerationGrid

    grid = GenerationGrid()
    qtbot.addWidget(grid)
    item = inspected(reason=FAKE_VERDICT)
    grid.source.append(item)
    tip = grid.source.data(grid.source.index(0), Qt.ItemDataRole.ToolTipRole)
    assert shown(tip) == item.tooltip() and FAKE_VERDICT in item.tooltip()
    assert FAKE_VERDICT not in tip


def test_casebook_rows_notes_and_the_finding_message_show_markup_literally(qtbot, window, tmp_path):
    with Casebook.open(tmp_path / "casebook.db") as book:
        fid = book.record(make_finding(1, prompt=FAKE_VERDICT, captions=(LOCAL_IMAGE,) * 4))
        book.label(fid, "novel", reviewer="<b>ana</b>", note=LOCAL_IMAGE)
    with qtbot.waitSignal(window.casebook_shown, timeout=30_000):
        window.tabs.setCurrentIndex(1)  # reads the casebook again
    tab = window.casebook_tab
    assert tab.model.rowCount() == 1
    columns = {name: tab.model.index(0, k) for k, name in enumerate(COLUMNS)}
    for column, text in (("prompt", FAKE_VERDICT), ("reviewer", "<b>ana</b>"), ("notes", LOCAL_IMAGE)):
        assert columns[column].data(Qt.ItemDataRole.DisplayRole) == text  # item views draw DisplayRole as text
        tip = columns[column].data(Qt.ItemDataRole.ToolTipRole)
        assert shown(tip) == text and text not in tip
    with qtbot.waitSignal(window.finding_shown, timeout=30_000):
        window.open_finding(fid)
    assert tab.message.textFormat() == PLAIN
    assert tab.message.text() == f"Finding #{fid}: label novel; reviewer <b>ana</b>; notes: {LOCAL_IMAGE}"
    assert_literal(tab.comparison.cards[0].caption, f"“{LOCAL_IMAGE}”")
    assert tab.counts.textFormat() == PLAIN


def test_prompt_lines_banner_casebook_name_and_demo_prompts_show_markup_literally(qtbot, window, tmp_path):
    window.show_error(f"cannot read {LOCAL_IMAGE}")
    assert_literal(window.banner.text, f"cannot read {LOCAL_IMAGE}")

    window.casebook_path = str(tmp_path / "<font color=red>big.db")
    window._show_casebook_path()
    assert shown(window.casebook_label.text()) == "Casebook: <font color=red>big.db"
    assert shown(window.casebook_label.toolTip()) == window.casebook_path

    window.strip.set_extra_tip(f"Words that steer hardest: {FAKE_VERDICT} 0.50")
    assert shown(window.strip.toolTip()).endswith(f"\n\nWords that steer hardest: {FAKE_VERDICT} 0.50")

    window.prompt_panel.set_suggestions({"memorized": [FAKE_VERDICT]})
    button = window.prompt_panel.suggestions_box.itemAt(0).widget()
    assert FAKE_VERDICT in button.text()  # a push button's text is never markup
    assert FAKE_VERDICT in shown(button.toolTip()) and FAKE_VERDICT not in button.toolTip()


@pytest.mark.skipif(not (demo_model_dir() / "model_index.json").exists(), reason="no demo model")
def test_a_prompt_holding_markup_is_shown_literally_while_and_after_it_generates(qtbot, window):
    window.prompt_panel.prompt.setPlainText(FAKE_VERDICT)
    window.prompt_panel.n.setValue(1)
    window.prompt_panel.steps.setValue(2)
    with qtbot.waitSignal(window.run_finished, timeout=240_000):
        window.start_generation()
        assert_literal(window.header, f"Generating 1 images of “{FAKE_VERDICT}”…")
    assert_literal(window.header, f"1 of 1 generations of “{FAKE_VERDICT}”")
    assert window.prompt_panel.status.textFormat() == PLAIN and window.prompt_panel.status.text()
    tip = window.grid.source.data(window.grid.source.index(0), Qt.ItemDataRole.ToolTipRole)
    assert shown(tip) == window.grid.source.items()[0].tooltip()


# --- the window's export ---------------------------------------------------------------------------------------


@pytest.fixture
def recorded(window, tmp_path):
    with Casebook.open(tmp_path / "casebook.db") as book:
        book.record(make_finding(1))
    return tmp_path / "casebook.db"


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_exporting_over_the_casebook_is_refused_with_a_message(qtbot, window, recorded, suffix):
    seen: list = []
    answer_next_question("OK", seen)
    assert window.export_chosen(str(recorded) + suffix) is None
    assert seen and "is the casebook itself" in seen[0][0] and seen[0][1] == PLAIN
    assert window.casebook_tab.message.text().startswith("Export refused")
    with Casebook.open(recorded, readonly=True) as book:
        assert book.verify().ok and len(book.findings()) == 1


def test_exporting_over_an_existing_file_asks_first_and_no_keeps_it(qtbot, window, recorded, tmp_path):
    old = tmp_path / "report <b>old<b>.html"
    old.write_text("last week's report")
    seen: list = []
    answer_next_question(None, seen)  # Escape: the safe answer
    assert window.export_chosen(str(old)) is None
    assert seen == [(f"{old} already exists. Replace it with the new report?", PLAIN)]
    assert old.read_text() == "last week's report"
    assert "left as it was" in window.casebook_tab.message.text()

    answer_next_question("Replace", seen)
    assert window.export_chosen(str(old)) is not None
    qtbot.waitUntil(lambda: window.casebook_tab.message.text().startswith("Report written"), timeout=60_000)
    assert "<html" in old.read_text()


def test_exporting_to_a_new_file_asks_nothing(qtbot, window, recorded, tmp_path):
    out = tmp_path / "new.html"
    assert window.export_chosen(str(out)) is not None  # a question here would block the test
    qtbot.waitUntil(lambda: window.casebook_tab.message.text().startswith("Report written"), timeout=60_000)
    assert "<html" in out.read_text()


def test_the_badge_tooltip_and_the_verdict_panel_call_a_verdict_near_the_line_borderline(qtbot):
    from inspector.extraction import suggest_verdict
    from inspector.gui.comparison import ComparisonPanel
    from inspector.gui.grid import GenerationGrid

    grid, panel = GenerationGrid(), ComparisonPanel()
    qtbot.addWidget(grid)
    qtbot.addWidget(panel)
    for tiled, words in ((0.14, "borderline: 0.010 under the 0.15 line"),
                         (0.16, "borderline: just above the line (by 0.010 over 0.15)")):
        item = inspected()
        for nb in item.neighbours:
            nb.tiled_l2 = tiled + 0.1 * (nb.rank - 1)
        item.suggestion = suggest_verdict(item.neighbours)
        grid.source.clear()
        grid.source.append(item)
        assert words in shown(grid.source.data(grid.source.index(0), Qt.ItemDataRole.ToolTipRole))
        panel.show_generation(item)
        assert words in shown(panel.verdict.text())
