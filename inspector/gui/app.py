"""Start the window (and the ``--screenshot`` path that renders one generation, saves the window and exits)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from inspector.errors import UserError


def make_settings() -> QSettings:
    """The app's remembered choices; tests and the screenshot path keep theirs beside INSPECTOR_DATA_DIR."""
    data = os.environ.get("INSPECTOR_DATA_DIR")
    if data:
        return QSettings(str(Path(data) / "settings.ini"), QSettings.Format.IniFormat)
    return QSettings("memorization-inspector", "inspector")


def application() -> QApplication:
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        app.setApplicationName("Memorization Inspector")
        app.setOrganizationName("memorization-inspector")
        app.setDesktopFileName("memorization-inspector")
        from inspector.resources import resource_path

        icon = resource_path("icons", "memorization-inspector.svg")
        if icon.exists():
            app.setWindowIcon(QIcon(str(icon)))
    return app


def run_gui(model: str | None = None, index: str | None = None, casebook: str | None = None,
            screenshot: str | None = None, prompt: str | None = None, n: int | None = None,
            seed: int | None = None, timeout_s: float = 900, size: tuple[int, int] | None = None) -> int:
    """Open the main window; with ``screenshot`` run one generation of ``prompt``, select the first
    generation, save a PNG of the whole window and return 0 (1 if the run failed, 2 for bad input).

    ``size``: the window's (width, height) in pixels; by default it is as last left, or fits the screen (for a
    screenshot: the screen's available area, so that a 1366 x 768 display shows what a laptop shows)."""
    if screenshot is not None:
        if not prompt:
            raise UserError("--screenshot needs --prompt TEXT")
        if not str(screenshot).lower().endswith(".png"):
            raise UserError(f"--screenshot must name a .png file, got {screenshot}")
        if not Path(screenshot).resolve().parent.is_dir():
            raise UserError(f"cannot write {screenshot}: its folder does not exist")
    app = application()
    from inspector.gui.main_window import MainWindow

    win = MainWindow(model, index, casebook, settings=make_settings())
    if size is not None:
        win.resize(*size)
    elif screenshot is not None:
        screen = app.primaryScreen()
        if screen is not None:
            area = screen.availableGeometry()
            win.resize(area.width(), area.height())
    win.show()
    if screenshot is None:
        return app.exec()

    state = {"code": 0, "finished": False}
    win.prompt_panel.prompt.setPlainText(prompt)
    if n is not None:
        win.prompt_panel.n.setValue(n)
    if seed is not None:
        win.prompt_panel.seed.setValue(seed)

    def shoot() -> None:
        if not state["finished"]:
            return
        QTimer.singleShot(200, save)

    def save() -> None:
        app.processEvents()
        if not win.grab().save(str(screenshot), "PNG"):
            print(f"inspector: error: could not write {screenshot}", file=sys.stderr)
            state["code"] = 1
        app.quit()

    def finished() -> None:
        state["finished"] = True
        if win.grid.source.rowCount() == 0:
            print(f"inspector: error: {win._last_error or 'no image was generated'}", file=sys.stderr)
            state["code"] = 1
            app.quit()
            return
        win.grid.select_first()  # first in the grid's order; its heatmaps arrive, then we shoot
        win.show_item(win.grid.current_item())

    def timeout() -> None:
        print("inspector: error: the screenshot run took too long", file=sys.stderr)
        state["code"] = 1
        app.quit()

    win.run_finished.connect(finished)
    win.views_shown.connect(shoot)
    QTimer.singleShot(0, win.start_generation)
    QTimer.singleShot(int(timeout_s * 1000), timeout)
    app.exec()
    win.hub.shutdown()
    return state["code"]
