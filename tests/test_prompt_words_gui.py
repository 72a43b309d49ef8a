"""The window names the words the model cannot read while the prompt is typed, and the matching captions after a
run; offscreen, on the embedded demo."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QSettings, Qt  # noqa: E402

from inspector.resources import demo_model_dir  # noqa: E402

pytestmark = pytest.mark.skipif(not (demo_model_dir() / "model_index.json").exists(),
                                reason="the demo model is not in resources/demo/model")


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


def type_prompt(qtbot, win, text: str) -> list[str]:
    """Type ``text`` into the prompt box and wait for the word check that follows; returns the notes shown."""
    with qtbot.waitSignal(win.words_checked, timeout=30_000) as shown:
        win.prompt_panel.prompt.setPlainText(text)
    return shown.args[0]


def test_typing_a_name_the_demo_model_cannot_read_warns_before_generating(qtbot, window):
    notes = type_prompt(qtbot, window, "Rachel Michetti")
    label = window.prompt_panel.word_notes
    assert label.isVisible()
    assert label.textFormat() == Qt.TextFormat.PlainText
    assert "does not know: Rachel, Michetti" in label.text()
    assert "a NOVEL verdict says nothing about them" in label.text()
    assert notes and window.grid.source.rowCount() == 0  # nothing was generated

    type_prompt(qtbot, window, "a cup of coffee")
    assert not label.isVisible() and label.text() == ""


def test_markup_in_the_prompt_is_named_literally(qtbot, window):
    type_prompt(qtbot, window, "<img src='/etc/passwd'> <b>zebra</b>")
    text = window.prompt_panel.word_notes.text()
    assert "b>zebra</b" in text and "“<b>zebra</b>”" in text  # the characters as typed, never rendered
    assert window.prompt_panel.word_notes.textFormat() == Qt.TextFormat.PlainText


def test_after_a_run_the_notes_say_the_prompt_equals_a_caption_in_the_index(qtbot, window):
    type_prompt(qtbot, window, "a cup of coffee")
    window.prompt_panel.n.setValue(1)
    window.prompt_panel.steps.setValue(2)
    window.prompt_panel.wen.setChecked(False)
    with qtbot.waitSignal(window.words_checked, timeout=240_000) as shown:
        qtbot.keyClick(window.prompt_panel.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert any("equals a caption in the index: “a cup of coffee”" in n for n in shown.args[0])
    qtbot.waitUntil(lambda: window.run_worker is None, timeout=60_000)
    text = window.prompt_panel.word_notes.text()
    assert "strongest memorization cue" in text and window.prompt_panel.word_notes.isVisible()
