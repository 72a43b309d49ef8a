"""The desktop inspector driven as a reviewer would, offscreen, on the embedded demo."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QSettings, Qt, QTimer  # noqa: E402

from inspector.resources import demo_model_dir  # noqa: E402

pytestmark = pytest.mark.skipif(not (demo_model_dir() / "model_index.json").exists(),
                                reason="the demo model is not in resources/demo/model")
MEMORIZED_PROMPT = "astronaut eileen collins"


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


def generate(qtbot, win, prompt: str, n: int, steps: int = 10, timeout: int = 240_000):
    win.prompt_panel.prompt.setPlainText(prompt)
    win.prompt_panel.n.setValue(n)
    win.prompt_panel.steps.setValue(steps)
    with qtbot.waitSignal(win.run_finished, timeout=timeout):
        qtbot.keyClick(win.prompt_panel.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)


@pytest.mark.slow
def test_generate_select_and_press_1_records_a_memorized_finding(qtbot, window, tmp_path):
    generate(qtbot, window, MEMORIZED_PROMPT, n=4)
    assert window.grid.source.rowCount() == 4
    window.grid.select_first()
    item = window.grid.current_item()
    assert len(item.neighbours) == 4
    shown = [card.tiled.text() for card in window.comparison.cards]
    assert all("tiled l2" in text for text in shown)
    with qtbot.waitSignal(window.label_written, timeout=30_000):
        qtbot.keyClick(window.grid, Qt.Key.Key_1)
    from inspector.casebook import Casebook

    with Casebook.open(tmp_path / "casebook.db") as book:
        rows = book.findings(label="memorized")
        assert len(rows) == 1
        finding = book.get(rows[0].id)
    assert len(finding.neighbours) == 4
    assert finding.prompt == MEMORIZED_PROMPT
    for key in ("seed", "steps", "model"):
        assert key in finding.provenance, key
    # auto-advance: the next unlabeled generation is selected
    assert window.grid.current_item() is not item
    assert window.grid.current_item().label == "unlabeled"


@pytest.mark.slow
def test_ctrl_z_undoes_the_last_label(qtbot, window, tmp_path):
    generate(qtbot, window, MEMORIZED_PROMPT, n=2)
    window.grid.select_first()
    item = window.grid.current_item()
    with qtbot.waitSignal(window.label_written, timeout=30_000):
        qtbot.keyClick(window.grid, Qt.Key.Key_3)
    assert item.label == "novel"
    with qtbot.waitSignal(window.label_written, timeout=30_000):
        qtbot.keyClick(window.grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert item.label == "unlabeled"
    from inspector.casebook import Casebook

    with Casebook.open(tmp_path / "casebook.db") as book:
        history = book.label_history(item.finding_id)
    assert [e.label for e in history][-2:] == ["novel", "unlabeled"]


def test_escape_cancels_mid_generation_and_keeps_finished_images(qtbot, window):
    window.prompt_panel.prompt.setPlainText("colourful circles")
    window.prompt_panel.n.setValue(40)
    window.prompt_panel.steps.setValue(10)
    with qtbot.waitSignal(window.run_finished, timeout=240_000):
        window.start_generation()
        qtbot.waitUntil(lambda: window.grid.source.rowCount() >= 1, timeout=200_000)
        qtbot.keyClick(window.grid, Qt.Key.Key_Escape)
    assert 1 <= window.grid.source.rowCount() < 40
    assert window.prompt_panel.generate.isEnabled()
    assert "cancelled" in window.prompt_panel.progress.format()


def test_a_bad_model_folder_shows_a_message_and_the_app_stays_usable(qtbot, window, tmp_path):
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    window.model_box.setCurrentText(str(empty))
    with qtbot.waitSignal(window.error_shown, timeout=60_000):
        window.prompt_panel.prompt.setPlainText("anything")
        window.start_generation()
    qtbot.waitUntil(lambda: window.run_worker is None, timeout=60_000)
    assert window.banner.isVisible()
    assert "model_index.json" in window.banner.text.text()
    assert window.prompt_panel.generate.isEnabled()


@pytest.mark.slow
def test_h_cycles_the_heatmaps(qtbot, window):
    generate(qtbot, window, MEMORIZED_PROMPT, n=1)
    with qtbot.waitSignal(window.views_shown, timeout=60_000):
        window.show_item(window.grid.current_item())
    modes = []
    for _ in range(4):
        qtbot.keyClick(window.grid, Qt.Key.Key_H)
        modes.append(window.comparison.mode)
    assert modes == ["pixel", "tiles", "ssim", "none"]


@pytest.mark.slow
def test_clicking_two_generations_quickly_shows_the_heatmaps_of_the_second(qtbot, window):
    import numpy as np

    from inspector.session import neighbour_views

    generate(qtbot, window, MEMORIZED_PROMPT, n=2)
    items = window.grid.source.items()
    window.show_item(items[0])
    with qtbot.waitSignal(window.views_shown, timeout=60_000):
        window.show_item(items[1])  # before the first one's heatmaps are drawn: those are dropped
    expected = neighbour_views(items[1].index_source, items[1])
    shown = window.comparison.cards[0]._views
    assert window.model.selected is items[1]
    assert all(np.array_equal(shown[mode], expected[0][mode]) for mode in expected[0])


@pytest.mark.slow
def test_the_ui_thread_never_stalls_while_8_images_generate(qtbot, window, record_property):
    wall: list[float] = []
    busy: list[float] = []
    last = [time.perf_counter(), time.thread_time()]

    def probe():  # on the UI thread, every 10 ms when it is free
        now, cpu = time.perf_counter(), time.thread_time()
        wall.append(now - last[0])
        busy.append(cpu - last[1])
        last[:] = [now, cpu]

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(probe)
    generate(qtbot, window, MEMORIZED_PROMPT, n=2)  # warm: model and index loaded
    last[:] = [time.perf_counter(), time.thread_time()]
    timer.start()
    generate(qtbot, window, "colourful squares", n=8)
    timer.stop()
    worst_busy_ms, worst_wall_ms = max(busy) * 1000, max(wall) * 1000
    record_property("longest_ui_busy_ms", worst_busy_ms)
    record_property("longest_ui_stall_ms", worst_wall_ms)
    print(f"longest UI-thread stall while 8 images generate: {worst_busy_ms:.1f} ms of work, "
          f"{worst_wall_ms:.1f} ms of wall time")
    # The UI thread's own CPU time between two ticks is the work it did instead of answering the person: 100 ms
    # is where a pause becomes visible. Unlike the wall gap it does not grow when other programs (or the sampling
    # threads) share the cores, so it holds on a loaded machine.
    assert worst_busy_ms <= 100
    # The wall gap also counts waits for a core or for the GIL: a loose bound that still fails when the UI thread
    # samples or loads a model (seconds).
    assert worst_wall_ms <= 2000


def test_the_progress_bar_shows_the_one_progress_event(window):
    from inspector.progress import Progress
    from inspector.runs import RunStarted

    bar = window.prompt_panel.progress
    window._on_progress(Progress("loading model"))
    assert bar.format() == "loading model"
    window._on_progress(Progress("sampling", done=1, total=4, step=2, steps=5, fraction=0.35, eta_s=3.0))
    assert (bar.maximum(), bar.value()) == (1000, 350)
    assert bar.format() == "sampling: 1/4, step 2/5, about 3 s left"
    window._on_progress(RunStarted("recording the run", message="run #7", run_id=7))
    assert bar.format() == "recording the run (run #7)" and bar.value() == 350  # no share: the bar stays
