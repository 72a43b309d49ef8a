"""The main window: the view of :class:`inspector.inspector_model.InspectorModel`.

The model holds the run, the selection, the labels and their undo history and the casebook under review, and
does every casebook action; this window renders what it says and forwards the person's input (keys, clicks,
drops, menus). Heavy work runs in workers (``inspector.gui.workers``), which is the model's executor here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from inspector.errors import UserError
from inspector.evidence import default_reviewer
from inspector.findings import LABEL_WORDS, LABELS
from inspector.gui.casebook_tab import CasebookTab
from inspector.gui.comparison import ComparisonPanel
from inspector.gui.grid import GenerationGrid
from inspector.gui.panels import LabelBar, PromptPanel
from inspector.gui.plain import PlainLabel, ask, escape, inform, plain_tooltip, tell
from inspector.gui.strip import DistanceStrip
from inspector.gui.workers import GeneratorWorker, WorkerHub
from inspector.inspector_model import (
    CASEBOOK,
    HEATMAP_MODES,
    INSPECT,
    WHAT_IT_DOES,
    InspectorModel,
)
from inspector.resources import DEMO

#: The window's size when nothing is remembered, and the least it may be made (laptops: 1366 x 768 screens).
DEFAULT_SIZE = (1440, 900)
MINIMUM_SIZE = (1024, 640)
#: How often the Casebook tab looks for another program's writes (Casebook.revision), in ms.
POLL_MS = 1500
#: Keys that are not menu actions, for the Help list.
OTHER_KEYS = (
    ("Enter", "Agree with the selected finding's suggestion (a likeness? suggestion becomes Likeness only)"),
    ("Arrow keys", "Move through the generations or the findings"),
    ("Tab / Shift+Tab", "Move between fields; in the prompt, Tab leaves the prompt"),
    ("Enter in Notes or Reviewer", "Save, and give the keyboard back to the generations or findings"),
    ("Escape in Notes", "Keep the saved notes, and give the keyboard back"),
    ("Double-click a finding", "Open it: its comparison, heatmaps and history, the keyboard on the labels"),
    ("In the Review tab", "1 / 2 / 3 label and show the next, S skip, Backspace back, N notes, Ctrl+Z undo, "
                          "F5 read the casebook again, Shift / Ctrl + arrows select several"),
)


def _inspect_in_background(model, run, cancel=None, progress=None):
    """The run's work (``InspectorModel.inspection``: a run in the casebook, every generation a finding as it is
    made); torch keeps one core free, so the UI thread always finds one (on two cores, two busy torch threads
    made the window stall for over 100 ms)."""
    import os

    import torch

    wanted = max(1, (os.cpu_count() or 2) - 1)
    if torch.get_num_threads() > wanted:
        torch.set_num_threads(wanted)
    yield from model.inspection(run, cancel=cancel, progress=progress)


#: The file types Export offers, the first the default: a PDF for a court bundle.
EXPORT_FILTERS = ("PDF report (*.pdf)", "HTML report (*.html)", "CSV, one row per finding (*.csv)",
                  "JSON (*.json)")


def export_format(path: str, chosen_filter: str) -> str:
    """pdf, html, csv or json: from the file name's ending, else from the file type chosen, else html."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in ("pdf", "html", "csv", "json"):
        return suffix
    for fmt in ("pdf", "html", "csv", "json"):
        if f"*.{fmt})" in chosen_filter:
            return fmt
    return "html"


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, UserError):
        return str(exc)
    return f"Unexpected error ({type(exc).__name__}): {exc}. Your labels so far are saved."


def documents_folder() -> str:
    """Where file dialogs start when nothing was picked before: the user's documents (never the current
    directory, which for a desktop launch is anywhere)."""
    return QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation) or str(Path.home())


class ErrorBanner(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.text = PlainLabel()  # messages quote prompts and file names
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 4)
        lay.addWidget(QLabel("<b>Problem:</b>"))
        lay.addWidget(self.text, 1)
        lay.addWidget(close)
        self.setStyleSheet("background: #fde2e1; color: #611;")
        self.setAutoFillBackground(True)
        self.hide()

    def show_message(self, message: str) -> None:
        self.text.setText(message)
        self.show()


class ShortcutsDialog(QDialog):
    """Help > Keyboard shortcuts: every key the window answers, in a table."""

    def __init__(self, rows: list[tuple[str, str]], parent=None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.table = QTableWidget(len(rows), 2)
        self.table.setHorizontalHeaderLabels(["Keys", "What they do"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for r, (keys, what) in enumerate(rows):
            self.table.setItem(r, 0, QTableWidgetItem(keys))
            self.table.setItem(r, 1, QTableWidgetItem(what))
        self.table.resizeColumnToContents(0)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table)
        lay.addWidget(buttons)
        self.resize(640, 520)


class MainWindow(QMainWindow):
    """The inspector's window. ``model_source`` / ``index_source``: "demo" or a local path."""

    run_finished = Signal()  # a generation run ended (done, cancelled or failed)
    views_shown = Signal()  # the heatmaps of the selected generation are on screen
    casebook_views_shown = Signal()  # the Casebook tab's selected finding has its pictures (or a note)
    finding_shown = Signal(int)  # the Casebook tab shows this finding whole (comparison, history)
    casebook_shown = Signal()  # the Casebook tab lists what was just read
    label_written = Signal(object)  # the item whose label (or undo) reached the casebook
    error_shown = Signal(str)
    words_checked = Signal(object)  # notes (list of str) about the prompt's words are on screen
    query_recorded = Signal(int)  # a searched image is in the casebook as this finding (kind query)

    def __init__(self, model_source: str | None = None, index_source: str | None = None,
                 casebook_path: str | None = None, settings: QSettings | None = None):
        super().__init__()
        self.settings = settings or QSettings("memorization-inspector", "inspector")
        self.setWindowTitle("Memorization Inspector")
        self.hub = WorkerHub()
        self.run_worker: GeneratorWorker | None = None
        self._run_error: BaseException | None = None
        self._last_error = ""
        self._word_request = 0
        self._rendering = False  # the window is selecting what the model selected: not the person's click
        from inspector.casebook import default_casebook_path

        self.model = InspectorModel(
            str(casebook_path or self.settings.value("casebook", "") or default_casebook_path()),
            model_source or self.settings.value("model", DEMO) or DEMO,
            index_source or self.settings.value("index", DEMO) or DEMO,
            executor=self._execute, reviewer=str(self.settings.value("reviewer", "") or default_reviewer()))
        for kind, key in (("model", "recent_model"), ("index", "recent_index"), ("casebook", "recent_casebook")):
            self.model.set_recent(kind, self._settings_list(key) or [getattr(self.model, f"{kind}_source", None)
                                                                    or self.model.casebook_path])
        # The prompt's words are checked against the model's tokenizer a moment after typing stops.
        self._word_timer = QTimer(self)
        self._word_timer.setSingleShot(True)
        self._word_timer.setInterval(300)
        self._word_timer.timeout.connect(self.check_prompt_words)
        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self._poll_casebook)

        self._build_pickers()
        self._build_inspect_tab()
        self.casebook_tab = CasebookTab()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.inspect_tab, "Inspect")
        self.tabs.addTab(self.casebook_tab, "Casebook")
        from inspector.gui.artist_page import ArtistPage

        self.artist_page = ArtistPage(self.hub, lambda: self.model_source, self.dialog_folder)
        self.tabs.addTab(self.artist_page, "Check my work")
        self.banner = ErrorBanner()
        from inspector.gui.review_tab import ReviewTab

        self.review_tab = ReviewTab(self.model, self.ensure_reviewer)  # the annotator's queue
        self.tabs.insertTab(2, self.review_tab, "Review")
        central = QWidget()
        cl = QVBoxLayout(central)
        cl.setContentsMargins(6, 4, 6, 2)
        cl.setSpacing(4)
        cl.addLayout(self.pickers)
        cl.addWidget(self.banner)
        cl.addWidget(self.tabs, 1)
        from inspector.gui.prompt_list import PromptListBar

        self.prompt_list_bar = PromptListBar(self.hub)  # a prompt list's one progress bar (File > Run a prompt list)
        self.prompt_list_bar.result.connect(lambda _r: self.model.refresh_casebook())
        self.prompt_list_bar.finished.connect(self._prompt_list_finished)
        cl.addWidget(self.prompt_list_bar)
        self.setCentralWidget(central)
        self._build_menus()
        self.statusBar().showMessage("Ready. Ctrl+Enter generates; 1 / 2 / 3 label; Enter agrees with the "
                                     "suggestion; H cycles heatmaps; Ctrl+Z undoes a label; F1 lists every key.")
        self._connect()
        self._sources_changed()
        self._show_index_role()
        self._show_casebook_path()
        self._reviewer_changed(self.model.reviewer)
        for view in (INSPECT, CASEBOOK):
            self._render_label_bar(view)
        self.setAcceptDrops(True)
        self.setMinimumSize(*MINIMUM_SIZE)
        self._restore_state()
        self.prompt_panel.prompt.setFocus()  # typing starts in the prompt, never in a picker

    # --- building ------------------------------------------------------------------------------------------------

    def _build_pickers(self) -> None:
        self.model_box = self._source_box(self.model.model_source, "model")
        self.index_box = self._source_box(self.model.index_source, "index")
        self.casebook_label = QLabel()
        top = QHBoxLayout()
        top.addWidget(QLabel("Model"))
        top.addWidget(self.model_box, 1)
        b = QPushButton("Folder…")
        b.setToolTip("Pick a local diffusers model folder (with model_index.json)")
        b.clicked.connect(self._pick_model)
        top.addWidget(b)
        top.addSpacing(8)
        top.addWidget(QLabel("Index"))
        top.addWidget(self.index_box, 1)
        # The picker shows what the index holds: the model's training set, or a reference collection.
        self.index_role = PlainLabel()
        self.index_role.setStyleSheet("color: #555")
        top.addWidget(self.index_role)
        b = QPushButton("Folder…")
        b.setToolTip("Pick an index folder made by `inspector index build` (training set or reference collection)")
        b.clicked.connect(self._pick_index)
        top.addWidget(b)
        top.addSpacing(8)
        top.addWidget(self.casebook_label)
        b = QPushButton("Casebook…")
        b.setToolTip("Choose or create the casebook file findings are saved to")
        b.clicked.connect(self._pick_casebook)
        top.addWidget(b)
        self.pickers = top

    def _build_inspect_tab(self) -> None:
        self.prompt_panel = PromptPanel()
        self.prompt_panel.prompt.setTabChangesFocus(True)  # Tab moves on to the next field, as everywhere else
        prompt_scroll = QScrollArea()
        prompt_scroll.setWidget(self.prompt_panel)
        prompt_scroll.setWidgetResizable(True)
        prompt_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        prompt_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        prompt_scroll.setFixedWidth(self.prompt_panel.maximumWidth() + 16)
        self.prompt_scroll = prompt_scroll
        self.grid = GenerationGrid()
        self.grid.source.is_pending = self.model.is_pending
        self.header = PlainLabel(f"{WHAT_IT_DOES} Type a prompt and press Ctrl+Enter.")
        self.header.setWordWrap(True)
        self.sort_box = QComboBox()
        self.sort_box.addItems(["nearest distance", "generation order"])
        self.sort_box.setToolTip("Order of the grid: closest to an image of the index first, or as generated")
        self.strip = DistanceStrip()
        self.comparison = ComparisonPanel()
        self.label_bar = LabelBar()
        head = QHBoxLayout()
        head.addWidget(self.header, 1)
        head.addWidget(QLabel("Sort"))
        head.addWidget(self.sort_box)
        upper = QWidget()
        ul = QVBoxLayout(upper)
        ul.setContentsMargins(0, 0, 0, 0)
        ul.addLayout(head)
        ul.addWidget(self.grid, 1)
        ul.addWidget(self.strip)
        comparison_scroll = QScrollArea()
        comparison_scroll.setWidget(self.comparison)
        comparison_scroll.setWidgetResizable(True)
        comparison_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(upper)
        self.splitter.addWidget(comparison_scroll)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setSizes([300, 420])
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.splitter, 1)
        rl.addWidget(self.label_bar)  # outside the splitter: always on screen
        self.inspect_tab = QWidget()
        il = QHBoxLayout(self.inspect_tab)
        il.setContentsMargins(4, 4, 4, 4)
        il.addWidget(prompt_scroll)
        il.addWidget(right, 1)

    def _build_menus(self) -> None:
        """The menu bar; every shortcut is an action here, so Help lists them all."""
        bar = self.menuBar()
        self.actions: dict[str, QAction] = {}

        def action(menu, key: str, text: str, slot, shortcuts=(), tip: str = "") -> QAction:
            act = QAction(text, self)
            if shortcuts:
                act.setShortcuts([QKeySequence(s) for s in shortcuts])
            act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            if tip:
                act.setStatusTip(tip)
            act.triggered.connect(lambda _=False: slot())
            menu.addAction(act)
            self.addAction(act)  # answers while its menu is closed
            self.actions[key] = act
            return act

        file = bar.addMenu("&File")
        action(file, "open_model", "Open model folder…", self._pick_model, ["Ctrl+Shift+M"])
        action(file, "open_index", "Open index folder…", self._pick_index, ["Ctrl+Shift+I"])
        action(file, "open_casebook", "Open casebook…", self._pick_casebook, ["Ctrl+O"])
        self.recent_menu = file.addMenu("Open recent")
        file.addSeparator()
        action(file, "search_image", "Is this image in the index? Open an image…", self.open_images,
               ["Ctrl+Shift+F"], "Search the index for image files: their four nearest, as a generation's (or "
               "drop images onto the window)")
        action(file, "paste_image", "Search for the image in the clipboard", self.paste_image, ["Ctrl+V"],
               "Search the index for the image (or image file) you copied")
        action(file, "record_query", "Record the searched image in the casebook", lambda: self.model.record_query(),
               ["Ctrl+R"], "Put the selected searched image on the record: a finding of kind query")
        action(file, "prompt_list", "Run a prompt list…", self.run_prompt_list, ["Ctrl+Shift+P"],
               "Scan a file of prompts (txt, CSV, TSV, JSON Lines, JSON, parquet) as `inspector scan` does")
        action(file, "cancel_prompt_list", "Cancel the prompt list", self.prompt_list_bar.cancel, ["Shift+Escape"])
        file.addSeparator()
        action(file, "export", "Export report…", self.export_report, ["Ctrl+E"])
        file.addSeparator()
        action(file, "quit", "Quit", self.close, ["Ctrl+Q"])

        edit = bar.addMenu("&Edit")
        action(edit, "undo", "Undo label", lambda: self.model.undo(), ["Ctrl+Z"],
               "Take back the last label given in this tab")
        edit.addSeparator()
        for k, label in enumerate(LABELS, start=1):
            action(edit, f"label_{label}", f"Label {LABEL_WORDS[label]}", lambda lab=label: self.label_current(lab),
                   [str(k)])
        action(edit, "notes", "Type notes for the selected finding", self._focus_notes, ["N"])
        action(edit, "focus_prompt", "Type a prompt", self._focus_prompt, ["Ctrl+L"])

        run = bar.addMenu("&Run")
        action(run, "generate", "Generate", self.start_generation, ["Ctrl+Return", "Ctrl+Enter"])
        action(run, "cancel", "Cancel", self.cancel_visible_work, ["Escape"])
        action(run, "artist_check", "Check my work (artists)…", lambda: self.tabs.setCurrentWidget(self.artist_page),
               ["Ctrl+Shift+A"], "Check whether the model reproduces your own works: a guided page")

        view = bar.addMenu("&View")
        action(view, "heatmap", "Next heatmap", self.cycle_heatmap, ["H"],
               "Cycle the neighbours' pictures: image, pixel difference, tile grid, SSIM map")
        heat = view.addMenu("Heatmap")
        self.heatmap_group = QActionGroup(self)
        from inspector.gui.comparison import heatmap_words

        for mode in HEATMAP_MODES:
            act = QAction(heatmap_words(mode).capitalize() if mode != "none" else "The indexed image itself", self)
            act.setCheckable(True)
            act.setChecked(mode == self.model.heatmap_mode)
            act.setData(mode)
            act.triggered.connect(lambda _=False, m=mode: self.model.set_heatmap_mode(m))
            self.heatmap_group.addAction(act)
            heat.addAction(act)
        sort = view.addMenu("Sort generations")
        self.sort_group = QActionGroup(self)
        for text, by in (("Nearest distance first", True), ("Generation order", False)):
            act = QAction(text, self)
            act.setCheckable(True)
            act.setChecked(by == self.model.sort_by_distance)
            act.setData(by)
            act.triggered.connect(lambda _=False, b=by: self.model.set_sort(b))
            self.sort_group.addAction(act)
            sort.addAction(act)
        view.addSeparator()
        action(view, "tab_inspect", "Inspect tab", lambda: self.tabs.setCurrentIndex(0), ["Ctrl+1"])
        action(view, "tab_casebook", "Casebook tab", lambda: self.tabs.setCurrentIndex(1), ["Ctrl+2"])
        action(view, "tab_review", "Review tab (the annotator's queue)",
               lambda: self.tabs.setCurrentWidget(self.review_tab), ["Ctrl+3"])
        walk = action(view, "walk_disagreements", "Walk disagreements (after a casebook merge)",
                      lambda: (self.tabs.setCurrentWidget(self.review_tab), self.review_tab.walk_disagreements(
                          self.actions["walk_disagreements"].isChecked())),
                      tip="The Review tab walks the findings reviewers labeled differently; 1 / 2 / 3 decide")
        walk.setCheckable(True)
        self.review_tab.mode_changed.connect(walk.setChecked)
        action(view, "refresh", "Read the casebook again", lambda: self.model.refresh_casebook(), ["F5"])

        help_menu = bar.addMenu("&Help")
        action(help_menu, "shortcuts", "Keyboard shortcuts", self.show_shortcuts, ["F1"])
        action(help_menu, "about", "About Memorization Inspector", self.show_about)
        self._fill_recent_menu()

    def _connect(self) -> None:
        ev = self.model.events
        ev.sources_changed.connect(self._model_sources_changed)
        ev.reviewer_changed.connect(self._reviewer_changed)
        ev.run_started.connect(self._run_started)
        ev.item_added.connect(self._item_added)
        ev.summary_ready.connect(self._summary_ready)
        ev.run_finished.connect(lambda _run: self.run_finished.emit())
        ev.item_changed.connect(self.grid.source.item_changed)
        ev.selection_changed.connect(self._selection_changed)
        ev.views_ready.connect(self._views_ready)
        ev.label_state.connect(self._render_label_bar)
        ev.label_written.connect(lambda _view, item: self.label_written.emit(item))
        ev.heatmap_mode.connect(self._heatmap_mode)
        ev.sort_changed.connect(self._sort_changed)
        ev.casebook_changed.connect(self._casebook_changed)
        ev.row_changed.connect(self._row_changed)
        ev.history_changed.connect(lambda _fid, events: self.casebook_tab.show_history(events))
        ev.message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        ev.casebook_message.connect(self.casebook_tab.message.setText)
        ev.query_recorded.connect(lambda item, fid: (item is self.model.selected and self.comparison.show_title(item),
                                                     self.query_recorded.emit(fid)))
        ev.error.connect(self.show_error)

        self.prompt_panel.generate_requested.connect(self.start_generation)
        self.prompt_panel.cancel_requested.connect(self.cancel_generation)
        self.grid.selected.connect(self._grid_selected)
        self.grid.agree_requested.connect(lambda: self.ensure_reviewer() and self.model.agree(INSPECT))
        self.sort_box.currentIndexChanged.connect(lambda i: self.model.set_sort(i == 0))
        tab = self.casebook_tab
        for view, bar in ((INSPECT, self.label_bar), (CASEBOOK, tab.label_bar)):
            bar.label_requested.connect(lambda lab, v=view: self.ensure_reviewer() and self.model.label(lab, v))
            bar.agree_requested.connect(lambda v=view: self.ensure_reviewer() and self.model.agree(v))
            bar.undo_requested.connect(lambda v=view: self.model.undo(v))
            bar.notes_committed.connect(lambda text, v=view: self.model.set_notes(text, v))
            bar.reviewer_changed.connect(self.model.set_reviewer)
            bar.done_typing.connect(self._focus_findings)
        tab.refresh_requested.connect(self.model.refresh_casebook)
        tab.filters_changed.connect(lambda: self.model.set_filters(**tab.filters()))
        tab.open_requested.connect(self.open_finding)
        tab.activated.connect(self._finding_activated)
        tab.table.agree_requested.connect(lambda: self.ensure_reviewer() and self.model.agree(CASEBOOK))
        tab.reproduce_requested.connect(self.reproduce_finding)
        tab.export_requested.connect(self.export_report)
        self.tabs.currentChanged.connect(self._tab_changed)
        self.model_box.currentTextChanged.connect(self._model_box_changed)
        self.model_box.currentTextChanged.connect(self._word_timer.start)
        self.prompt_panel.prompt.textChanged.connect(self._word_timer.start)
        self.index_box.currentTextChanged.connect(self._index_box_changed)
        self.index_box.currentTextChanged.connect(self._show_index_role)

    # --- window state -----------------------------------------------------------------------------------------------

    def _settings_list(self, key: str) -> list[str]:
        value = self.settings.value(key, []) or []
        return [value] if isinstance(value, str) else [str(v) for v in value]

    def _restore_state(self) -> None:
        """Size, splitters, N, sort and heatmap mode as last left (QSettings); a size that fits the screen else."""
        s = self.settings
        geometry = s.value("window/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            screen = QApplication.primaryScreen()
            available = screen.availableGeometry() if screen is not None else None
            w, h = DEFAULT_SIZE
            if available is not None:
                w, h = min(w, available.width()), min(h, available.height())
            self.resize(max(w, MINIMUM_SIZE[0]), max(h, MINIMUM_SIZE[1]))
        for key, splitter in (("window/inspect_splitter", self.splitter),
                              ("window/casebook_splitter", self.casebook_tab.splitter),
                              ("window/casebook_detail", self.casebook_tab.detail_splitter)):
            state = s.value(key)
            if state is not None:
                splitter.restoreState(state)
        n = s.value("inspect/n", type=int)
        if n:
            self.prompt_panel.n.setValue(n)
        self.model.set_sort(s.value("inspect/sort_by_distance", True, type=bool))
        self._sort_changed(self.model.sort_by_distance)
        mode = s.value("inspect/heatmap", "none")
        if mode in HEATMAP_MODES:
            self.model.set_heatmap_mode(mode)

    def save_state(self) -> None:
        """Remember the window's size, splitters, N, sort, heatmap mode, sources and reviewer."""
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/inspect_splitter", self.splitter.saveState())
        s.setValue("window/casebook_splitter", self.casebook_tab.splitter.saveState())
        s.setValue("window/casebook_detail", self.casebook_tab.detail_splitter.saveState())
        s.setValue("inspect/n", self.prompt_panel.n.value())
        s.setValue("inspect/sort_by_distance", self.model.sort_by_distance)
        s.setValue("inspect/heatmap", self.model.heatmap_mode)
        self._remember()
        s.sync()

    # --- sources -----------------------------------------------------------------------------------------------

    def _source_box(self, current: str, kind: str) -> QComboBox:
        box = QComboBox()
        box.setEditable(True)
        box.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        box.addItems(self.model.recent[kind])
        box.setCurrentText(str(current))
        box.setToolTip("“demo” is the embedded tiny model and its training set; or type / pick a local folder")
        box.setMinimumContentsLength(10)
        box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        return box

    @property
    def model_source(self) -> str:
        return self.model.model_source

    @property
    def index_source(self) -> str:
        return self.model.index_source

    @property
    def casebook_path(self) -> str:
        return self.model.casebook_path

    @casebook_path.setter
    def casebook_path(self, path: str) -> None:
        self.model.set_casebook_path(path)

    @property
    def run_id(self) -> int | None:
        """The casebook run of the run on screen."""
        return self.model.run.run_id if self.model.run is not None else None

    @run_id.setter
    def run_id(self, run_id: int | None) -> None:
        if self.model.run is not None and run_id is not None:
            self.model.note_run_id(self.model.run.number, run_id)

    def _remember(self) -> None:
        s = self.settings
        s.setValue("model", self.model.model_source)
        s.setValue("index", self.model.index_source)
        s.setValue("casebook", self.model.casebook_path)
        s.setValue("reviewer", self.model.reviewer)
        for kind in ("model", "index", "casebook"):
            s.setValue(f"recent_{kind}", self.model.recent[kind])

    def _model_box_changed(self, text: str) -> None:
        if not self._rendering:
            self.model.set_model_source(text)

    def _index_box_changed(self, text: str) -> None:
        if not self._rendering:
            self.model.set_index_source(text)

    def _model_sources_changed(self) -> None:
        """The model's sources or recent lists changed (a pick, a drop, a run started): show them."""
        self._rendering = True
        try:
            for box, kind, value in ((self.model_box, "model", self.model.model_source),
                                     (self.index_box, "index", self.model.index_source)):
                items = [box.itemText(k) for k in range(box.count())]
                if items != self.model.recent[kind]:
                    text = box.currentText()
                    box.clear()
                    box.addItems(self.model.recent[kind])
                    box.setCurrentText(text)
                if box.currentText().strip() != value and (box.currentText().strip() or value != DEMO):
                    box.setCurrentText(value)
        finally:
            self._rendering = False
        self._show_casebook_path()
        self._show_index_role()
        if self.model.model_source != self._suggestions_for:  # not on every run: guidance stays as set
            self._sources_changed()
        self._fill_recent_menu()
        self._remember()

    def _fill_recent_menu(self) -> None:
        menu = getattr(self, "recent_menu", None)
        if menu is None:
            return
        menu.clear()
        for kind in ("model", "index", "casebook"):
            for value in self.model.recent[kind]:
                if value == DEMO or (kind == "casebook" and value == self.model.casebook_path):
                    continue
                act = menu.addAction(f"{kind}: {value}")
                act.triggered.connect(lambda _=False, k=kind, v=value: self._open_recent(k, v))
        menu.setEnabled(not menu.isEmpty())

    def _open_recent(self, kind: str, value: str) -> None:
        {"model": self.model.set_model_source, "index": self.model.set_index_source,
         "casebook": self.model.set_casebook_path}[kind](value)

    def _sources_changed(self) -> None:
        """The demo's example prompts (and its guidance) when the model is the demo."""
        self._suggestions_for = self.model_source
        prompts = {}
        if self.model_source == DEMO:
            from inspector.resources import demo_prompts_file

            try:
                prompts = json.loads(demo_prompts_file().read_text(encoding="utf-8"))
            except (OSError, ValueError):
                prompts = {}
            self.prompt_panel.guidance.setValue(2.0)
        self.prompt_panel.set_suggestions(prompts)

    def dialog_folder(self) -> str:
        """Where a file dialog starts: the folder of the last pick, else the user's documents."""
        last = str(self.settings.value("last_folder", "") or "")
        return last if last and Path(last).is_dir() else documents_folder()

    def _picked(self, path: str) -> None:
        folder = Path(path) if Path(path).is_dir() else Path(path).parent
        self.settings.setValue("last_folder", str(folder.parent if Path(path).is_dir() else folder))

    def _pick_model(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder (with model_index.json)", self.dialog_folder())
        if folder:
            self._picked(folder)
            self.model.set_model_source(folder)

    def _show_index_role(self) -> None:
        """Beside the index picker: its role and size, from its manifest (a small JSON file, read here)."""
        from inspector.roles import describe_index, role_words
        from inspector.training_index.store import TrainingIndexError, identity, read_manifest

        source = self.index_box.currentText().strip() or DEMO
        if source == DEMO:
            text, tip = "training set (demo)", "The demo model's own training set (built on first use)."
        else:
            try:
                manifest = read_manifest(Path(source))
            except TrainingIndexError as exc:
                text, tip = "not an index yet", str(exc)
            else:
                ident = identity(manifest, source)
                text = f"{role_words(ident['role']).role_name} · {ident['images']} images"
                if manifest.get("status") != "complete":
                    text += " · unfinished build"
                tip = describe_index(ident)
        self.index_role.setText(text)
        self.index_role.setToolTip(plain_tooltip(tip))

    def _pick_index(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Index folder (a training set or a reference collection)",
                                                  self.dialog_folder())
        if folder:
            self._picked(folder)
            self.model.set_index_source(folder)

    def _pick_casebook(self) -> None:
        start = str(Path(self.dialog_folder()) / Path(self.casebook_path).name)
        path, _ = QFileDialog.getSaveFileName(self, "Casebook file (an existing one, or a new name)", start,
                                              "Casebook (*.db)", options=QFileDialog.Option.DontConfirmOverwrite)
        if path:
            self._picked(path)
            self.model.set_casebook_path(path)

    def _show_casebook_path(self) -> None:
        self.casebook_label.setText(f"Casebook: <b>{escape(Path(self.casebook_path).name)}</b>")
        self.casebook_label.setToolTip(plain_tooltip(self.casebook_path))

    def _reviewer_changed(self, name: str) -> None:
        for bar in (self.label_bar, self.casebook_tab.label_bar):
            bar.set_reviewer(name)
        self.settings.setValue("reviewer", name)

    # --- drag and drop ----------------------------------------------------------------------------------------------

    def open_images(self) -> None:
        """File > Is this image in the index?: pick image files and search the index for them."""
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Images to search for in the index", self.dialog_folder(),
            "Images (*.png *.jpg *.jpeg *.webp *.bmp *.gif *.tif *.tiff);;All files (*)")
        if paths:
            self._picked(paths[0])
            self.banner.hide()
            self.model.search_images(paths)

    def paste_image(self) -> None:
        """Ctrl+V (outside a text field): search the index for the picture, image file or file path copied."""
        from inspector.gui.image_search import clipboard_content

        files, picture = clipboard_content(QApplication.clipboard().mimeData())
        self.banner.hide()
        if files:
            self.model.open_dropped(files)
        elif picture is not None:
            self.model.search_images([picture])
        else:
            self.show_error("The clipboard holds no image and no image file: copy a picture or an image file, "
                            "then press Ctrl+V here.")

    def run_prompt_list(self, path: str | None = None) -> None:
        """File > Run a prompt list…: choose the file, its column and the numbers, then scan it in the background
        with the window's model, index and casebook."""
        from inspector.gui.prompt_list import PromptListDialog

        if self.prompt_list_bar.running:
            self.show_error("A prompt list is running: wait for it, or cancel it (Shift+Esc).")
            return
        dialog = PromptListDialog(self.model_source, self.index_source, self.casebook_path, self.dialog_folder(), self)
        if path:
            dialog.set_path(path)
        elif not dialog.path.text():
            dialog.choose_file()
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.start_prompt_list(dialog.request())

    def start_prompt_list(self, request) -> GeneratorWorker | None:
        """Scan ``request`` (``inspector.prompt_lists.PromptListRequest``) in the background; None when refused
        (a generation or another list is running)."""
        if self.run_worker is not None or self.prompt_list_bar.running:
            self.show_error("A run is going: wait for it (or cancel it), then run the prompt list.")
            return None
        self._picked(request.path)
        self.banner.hide()
        return self.prompt_list_bar.start(request)

    def _prompt_list_finished(self, outcome) -> None:
        words = outcome.words(self.prompt_list_bar.request.casebook if self.prompt_list_bar.request else "")
        if outcome.error:
            self.show_error(words)
        else:
            self.statusBar().showMessage(words, 15000)
        self.model.refresh_casebook()

    @staticmethod
    def _dropped_paths(mime) -> list[str]:
        from inspector.gui.image_search import local_files

        return local_files(mime)

    @staticmethod
    def _dropped_path(mime) -> str | None:
        urls = [u for u in mime.urls() if u.isLocalFile()] if mime.hasUrls() else []
        return urls[0].toLocalFile() if len(urls) == 1 else None

    def dragEnterEvent(self, event) -> None:
        from inspector.inspector_model import classify_path

        path = self._dropped_path(event.mimeData())
        try:
            ok = path is not None and bool(classify_path(path))
        except UserError:
            ok = False
        # Files are searched for in the index (is this image in the training set?); what is not an image says so.
        ok = ok or any(Path(p).is_file() for p in self._dropped_paths(event.mimeData()))
        if ok:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event) -> None:
        paths = self._dropped_paths(event.mimeData())
        if not paths:
            return
        self.banner.hide()
        self.model.open_dropped(paths)  # a model, an index or a casebook is used; image files are searched
        event.acceptProposedAction()

    def open_path(self, path: str) -> str | None:
        """Use a dropped (or opened) model folder, index folder or casebook file; None (with a message) when it
        is none of them."""
        try:
            return self.model.open_path(path)
        except UserError as exc:
            self.show_error(str(exc))
            return None

    # --- menus: help ------------------------------------------------------------------------------------------------

    def shortcut_rows(self) -> list[tuple[str, str]]:
        """Every key the window answers: each menu action with its shortcuts, then the keys of the views."""
        rows = []
        for act in self.actions.values():
            keys = " or ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in act.shortcuts())
            if keys:
                rows.append((keys, act.text().replace("&", "").rstrip("…")))
        return rows + list(OTHER_KEYS)

    def show_shortcuts(self) -> ShortcutsDialog:
        dialog = ShortcutsDialog(self.shortcut_rows(), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def about_text(self) -> str:
        import PySide6

        from inspector.provenance import PIXEL_LIBRARIES, library_versions

        found = library_versions(PIXEL_LIBRARIES)  # read without importing torch
        versions = ", ".join(f"{name} {found[name]}" for name in PIXEL_LIBRARIES)
        return (f"Memorization Inspector {found['inspector']}\n\n{WHAT_IT_DOES}\n\n"
                f"Python {found['python']}, Qt {PySide6.QtCore.qVersion()} (PySide6 {PySide6.__version__}), "
                f"{versions}\n\nCasebook: {self.casebook_path}\nModel: {self.model_source}\n"
                f"Index: {self.index_source}\nSettings: {self.settings.fileName()}")

    def show_about(self):
        return inform(self, "About Memorization Inspector", self.about_text())

    # --- focus ------------------------------------------------------------------------------------------------------

    def _focus_prompt(self) -> None:
        self.tabs.setCurrentIndex(0)
        self.prompt_panel.prompt.setFocus()

    def _focus_notes(self) -> None:
        bar = self.label_bar if self.model.active_view == INSPECT else self.casebook_tab.label_bar
        if bar.notes.isEnabled():
            bar.notes.setFocus()
            bar.notes.selectAll()

    def _focus_findings(self) -> None:
        """Give the keyboard back to the generations (Inspect) or the findings (Casebook)."""
        (self.grid if self.model.active_view == INSPECT else self.casebook_tab.table).setFocus()

    def _tab_changed(self, index: int) -> None:
        self.model.active_view = CASEBOOK if index == 1 else INSPECT
        self.actions["undo"].setEnabled(self.model.label_bar_state(self.model.active_view).undo_enabled)
        if index == 1:
            self.model.refresh_casebook()
            self._poll.start()
            self.casebook_tab.table.setFocus()
        else:
            self._poll.stop()
            self.grid.setFocus()

    def _poll_casebook(self) -> None:
        if self.isVisible() and self.tabs.currentIndex() == 1:
            self.model.poll_casebook()

    # --- the model's executor ---------------------------------------------------------------------------------------

    def _execute(self, work, done, failed, serial: bool = False) -> GeneratorWorker:
        """Run a model job off the UI thread; its result comes back here, on the UI thread."""
        worker = GeneratorWorker(lambda cancel=None, progress=None: work())
        worker.signals.returned.connect(done)
        worker.signals.errored.connect(failed)
        return self.hub.start(worker, serial=serial)
    # --- the prompt's words ---------------------------------------------------------------------------------------

    def check_prompt_words(self) -> GeneratorWorker | None:
        """Name the prompt's words the model's tokenizer cannot read (tokenizer files only, in a worker)."""
        self._word_request += 1
        prompt = self.prompt_panel.prompt.toPlainText().strip()
        if not prompt:
            self._show_word_notes(self._word_request, [])
            return None
        request_id, source = self._word_request, self.model_source

        def check(cancel=None, progress=None):
            from inspector.vocabulary import check_model_prompt

            found = check_model_prompt(source, prompt)
            return found.notes() if found is not None else []

        worker = GeneratorWorker(check)
        worker.signals.returned.connect(lambda notes, rid=request_id: self._show_word_notes(rid, notes))
        worker.signals.errored.connect(lambda exc, rid=request_id: self._show_word_notes(
            rid, [f"the prompt's words were not checked: {_error_text(exc)}"]))
        return self.hub.start(worker)

    def _show_word_notes(self, request_id: int, notes: list[str]) -> None:
        if request_id != self._word_request:  # the prompt or the model changed since: drop the stale check
            return
        self.prompt_panel.set_word_notes(notes)
        self.words_checked.emit(notes)

    # --- generation --------------------------------------------------------------------------------------------

    def start_generation(self) -> None:
        if self.run_worker is not None:
            return
        if self.prompt_list_bar.running:
            self.show_error("A prompt list is running: wait for it, or cancel it (Shift+Esc), then generate.")
            return
        values = self.prompt_panel.values()
        if not values["prompt"]:
            self.show_error("Type a prompt first (or click one of the demo prompts).")
            return
        from inspector.session import InspectRequest

        request = InspectRequest(prompt=values["prompt"], negative_prompt=values["negative_prompt"],
                                 n=values["n"], seed=values["seed"], steps=values["steps"],
                                 guidance=values["guidance"], wen=values["wen"])
        self.banner.hide()
        run = self.model.start_run(request)  # the same checks as the command line, before the model loads
        if run is None:
            return
        self._remember()
        self.prompt_panel.set_running(True)
        self.prompt_panel.progress.setRange(0, request.n * max(1, request.steps or 1))
        self.prompt_panel.progress.setValue(0)
        self.prompt_panel.progress.setFormat("starting…")
        self._run_error = None
        worker = GeneratorWorker(_inspect_in_background, self.model, run)
        worker.signals.yielded.connect(lambda value, n=run.number: self.model.add_result(n, value))
        worker.signals.progress.connect(self._on_progress)
        worker.signals.errored.connect(self._on_run_error)
        worker.signals.finished.connect(lambda n=run.number: self._on_run_finished(n))
        self.run_worker = self.hub.start(worker)
        self._request = request

    def cancel_visible_work(self) -> None:
        """Esc: stop the work of the page in view. On the Check my work page its build or check, not an Inspect
        run going on behind it (the Inspect page's Cancel button, or Esc there, stops that)."""
        if self.artist_page.isVisible():
            self.artist_page.cancel()
        else:
            self.cancel_generation()

    def cancel_generation(self) -> None:
        if self.run_worker is not None:
            self.run_worker.quit()
            self.prompt_panel.progress.setFormat("cancelling…")
            self.prompt_panel.status.setText("Cancelling: finished images stay.")

    def _on_progress(self, event) -> None:
        """One :class:`inspector.progress.Progress` event of the run: the bar, its words, and the run's id once
        it is on the record (``runs.RunStarted``)."""
        run_id = getattr(event, "run_id", None)
        if run_id is not None:
            self.run_id = run_id
        bar = self.prompt_panel.progress
        fraction = event.fraction
        if fraction is None and event.total and event.steps and event.step is not None:
            fraction = min(1.0, (event.done * event.steps + event.step) / (event.total * event.steps))
        if fraction is not None:
            bar.setRange(0, 1000)
            bar.setValue(int(fraction * 1000))
        bar.setFormat(event.describe())

    def _on_result(self, value) -> None:
        """A value of the run on screen (as its worker yields them)."""
        if self.model.run is not None:
            self.model.add_result(self.model.run.number, value)

    def _on_run_error(self, exc: BaseException) -> None:
        self._run_error = exc
        if not isinstance(exc, UserError):
            print(getattr(exc, "traceback_text", ""), file=sys.stderr)

    def _on_run_finished(self, number: int) -> None:
        worker = self.run_worker
        self.run_worker = None
        self.prompt_panel.set_running(False)
        run = self.model.run
        n = len(run.items) if run is not None else 0
        cancelled = worker is not None and worker.cancelled
        self.prompt_panel.progress.setFormat(("cancelled: " if cancelled else "done: ") + f"{n} images")
        self.prompt_panel.status.setText(self.model.summary_line() if n else "")
        if self.run_id is not None:
            self.statusBar().showMessage(f"Run #{self.run_id} and its {n} generations are on the record in "
                                         f"{Path(self.casebook_path).name}", 10000)
        error, self._run_error = self._run_error, None
        self.model.finish_run(number, cancelled=cancelled, error=error)

    def show_error(self, message: str) -> None:
        self._last_error = message
        self.banner.show_message(message)
        self.statusBar().showMessage(message, 10000)
        self.error_shown.emit(message)

    # --- what the model says, on screen ------------------------------------------------------------------------

    def _run_started(self, run) -> None:
        self.grid.source.clear()
        self.comparison.clear()
        self.strip.set_values([])
        self.strip.set_summary(None, 0, False, None)
        self.strip.set_line(None)
        self.strip.set_extra_tip("")  # the Wen words of the run on screen only
        self.header.setText(f"Generating {run.request.n} images of “{run.request.prompt}”…" if run.kind != "query"
                            else f"Searching the index for {run.request.n} image(s) you asked about…")

    def _item_added(self, run, item) -> None:
        first = self.grid.source.rowCount() == 0
        self.grid.source.append(item)
        if first:
            role = (item.index or {}).get("role")
            self.strip.set_role(role)
            self.label_bar.set_role(role)
            focus = QApplication.focusWidget()
            typing_again = self.prompt_panel.prompt.toPlainText().strip() != run.request.prompt
            if (focus is None or self.prompt_scroll.isAncestorOf(focus)) and not typing_again:
                # Ctrl+Enter was just pressed: the keys label from here on. A list view taking the focus makes
                # its first row current, which is the model's choice to make, not a click.
                self._rendering = True
                try:
                    self.grid.setFocus()
                finally:
                    self._rendering = False
        self.strip.set_values([1.0 if i.nearest_tiled_l2 is None else i.nearest_tiled_l2 for i in run.items])
        self.strip.set_line(self.model.summary_line())
        self.header.setText(f"{len(run.items)} of {run.request.n} generations of “{run.request.prompt}”"
                            if run.kind != "query" else f"Is this image in the index? {len(run.items)} image(s) you "
                            "asked about, nearest first · Ctrl+R records the selected one")

    def _summary_ready(self, run) -> None:
        summary = run.summary
        clique = summary.clique
        self.strip.set_summary(clique.size if clique else 0, summary.n, bool(clique and clique.flagged),
                               summary.wen_score)
        self.strip.set_line(self.model.summary_line())
        self.strip.set_extra_tip(self.model.steering_words())
        if summary.words is not None or summary.embedder_note:
            self._word_request += 1  # a typing-time check still running must not replace these notes
            self._show_word_notes(self._word_request, (summary.words.notes() if summary.words is not None else [])
                                  + ([summary.embedder_note] if summary.embedder_note else []))

    def _selection_changed(self, view: str, item) -> None:
        if view == INSPECT:
            self._rendering = True
            try:
                if item is not None and self.grid.current_item() is not item:
                    self.grid.select_item(item)
            finally:
                self._rendering = False
            if item is None:
                self.comparison.clear()
            else:
                self.comparison.show_generation(item)
            return
        tab = self.casebook_tab
        tab.select_id(self.model.casebook.selected_id)
        if item is None:
            tab.comparison.clear()
            tab.show_history([])
            return
        tab.comparison.show_generation(item)
        summary = next((r for r in self.model.casebook.rows if r.id == item.finding_id), None)
        reviewer = summary.reviewer if summary is not None else ""
        tab.message.setText(f"Finding #{item.finding_id}: label {item.label}; reviewer {reviewer or '—'}; "
                            f"notes: {item.notes or '—'}")
        self.finding_shown.emit(item.finding_id)

    def _views_ready(self, view: str, item, views, note: str) -> None:
        if view == INSPECT:
            self.comparison.set_views(views, note)
            self.views_shown.emit()
        else:
            self.casebook_tab.comparison.set_views(views, note)
            self.casebook_views_shown.emit()

    def _render_label_bar(self, view: str) -> None:
        state = self.model.label_bar_state(view)
        (self.label_bar if view == INSPECT else self.casebook_tab.label_bar).render(state)
        if view == self.model.active_view and hasattr(self, "actions"):
            self.actions["undo"].setEnabled(state.undo_enabled)
            self.actions["undo"].setToolTip(plain_tooltip(state.undo_text))

    def _heatmap_mode(self, mode: str) -> None:
        self.comparison.show_mode(mode)
        self.casebook_tab.comparison.show_mode(mode)
        for act in self.heatmap_group.actions():
            act.setChecked(act.data() == mode)

    def _sort_changed(self, by_distance: bool) -> None:
        self.grid.sort_by_distance(by_distance)
        self.sort_box.blockSignals(True)
        self.sort_box.setCurrentIndex(0 if by_distance else 1)
        self.sort_box.blockSignals(False)
        for act in self.sort_group.actions():
            act.setChecked(act.data() == by_distance)

    def _casebook_changed(self) -> None:
        view, tab = self.model.casebook, self.casebook_tab
        tab.set_runs(view.runs)
        tab.set_rows(view.rows, view.selected_id)
        tab.set_choices(view.choices)
        if view.problem:
            tab.counts.setText(f"The casebook could not be read: {view.problem}")
        elif not view.exists:
            tab.counts.setText("The casebook is empty: generate images to put the first run on the record.")
        else:
            shown = f"{len(view.rows)} shown · " if len(view.rows) != sum(view.counts.values()) else ""
            tab.counts.setText(shown + " · ".join(f"{k}: {v}" for k, v in view.counts.items())
                               + f"   ({self.casebook_path})")
        self.casebook_shown.emit()

    def _row_changed(self, finding_id: int) -> None:
        row = next((r for r in self.model.casebook.rows if r.id == finding_id), None)
        if row is not None:
            self.casebook_tab.model.update_row(row)

    # --- selection, heatmaps, labels: input to the model ---------------------------------------------------------

    def _grid_selected(self, item) -> None:
        if not self._rendering:
            self.model.select(item)

    def show_item(self, item) -> None:
        """Select ``item`` on the Inspect tab (its heatmaps drawn again when it is already selected)."""
        if item is not None and item is self.model.selected:
            self.model.redraw(INSPECT)
        else:
            self.model.select(item)

    def cycle_heatmap(self) -> None:
        self.model.cycle_heatmap()

    def label_current(self, label: str) -> None:
        """1 / 2 / 3: label the selected finding of the tab on screen."""
        if self.ensure_reviewer():
            self.model.label(label)

    def ensure_reviewer(self) -> bool:
        """A label is a person's judgement, so it carries their name: without one (no reviewer typed, remembered
        or in $INSPECTOR_REVIEWER) ask once, and remember the answer. False (nothing labeled) when cancelled."""
        if self.model.reviewer.strip():
            return True
        name, ok = QInputDialog.getText(
            self, "Who is labeling?", "Your name goes with every label you give, in the casebook's history.\n"
            "Asked once; change it later in the reviewer box.")
        name = name.strip() if ok else ""
        if not name:
            self.statusBar().showMessage("Not labeled: a label needs the reviewer's name", 8000)
            return False
        self.model.set_reviewer(name)  # shown in both label bars and remembered in the settings
        return True

    def undo_label(self) -> None:
        self.model.undo()

    # --- casebook tab -----------------------------------------------------------------------------------------------

    def _open_casebook(self, create: bool = False):
        from inspector.casebook import Casebook

        return Casebook.open(self.casebook_path, create=create)


    def refresh_casebook(self) -> None:
        self.model.refresh_casebook()

    def open_finding(self, finding_id: int) -> None:
        """Show a finding on the Casebook tab: its comparison, heatmaps, history; the label bar on it."""
        if finding_id != self.model.casebook.selected_id or self.model.casebook.selected is None:
            self.model.open_finding(finding_id)

    def _finding_activated(self, finding_id: int) -> None:
        self.open_finding(finding_id)
        self.casebook_tab.table.setFocus()
        self.statusBar().showMessage(f"Finding #{finding_id}: 1 / 2 / 3 label it, Enter agrees with the "
                                     "suggestion, N types notes, H cycles the heatmaps", 8000)

    def reproduce_finding(self, finding_id: int) -> GeneratorWorker:
        """Regenerate a finding from its record in the background and put the outcome on the record (a
        "reproduce" event: time, machine, versions, maximum pixel difference, pixel hash), shown in its history
        and listed by reports (``InspectorModel.reproduce``)."""
        return self.model.reproduce(finding_id)

    def export_report(self) -> None:
        """Export the findings shown (the filters' view), or the rows selected when several are, as a PDF or
        HTML report, CSV or JSON; the format follows the file type chosen."""
        ids, words = self.casebook_tab.export_ids()
        if not ids:
            self.casebook_tab.message.setText("Nothing to export: no finding is shown (change the filters).")
            return
        # The window asks before replacing a file (export_chosen), in the same words on every platform; the
        # dialog's own question (native dialogs differ) would ask a second time.
        out, chosen = QFileDialog.getSaveFileName(
            self, f"Export {words}", str(Path(self.dialog_folder()) / "casebook-report.pdf"),
            ";;".join(EXPORT_FILTERS), options=QFileDialog.Option.DontConfirmOverwrite)
        if out:
            fmt = export_format(out, chosen)
            if Path(out).suffix.lower() != f".{fmt}":
                out = f"{out}.{fmt}"
            self.export_chosen(out, ids=ids, fmt=fmt)

    def export_chosen(self, out: str, ids: list[int] | None = None, fmt: str | None = None) -> GeneratorWorker | None:
        """Export the report to a file the person chose: never over the casebook itself, and over an existing
        file (or its manifest or signatures) only after asking. ``ids``: the findings (default: those shown);
        ``fmt``: pdf, html, csv or json (default: from the file name, else html). Returns the export's worker,
        or None when nothing is written."""
        from inspector.casebook import is_casebook_file
        from inspector.report.seal import sidecars

        if is_casebook_file(out, self.casebook_path):
            text = f"{out} is the casebook itself: the report cannot be written over it. Choose another file name."
            self.casebook_tab.message.setText("Export refused: " + text)
            tell(self, "Export refused", text)
            return None
        targets = [Path(out), *sidecars(Path(out))]
        overwrite = any(t.exists() or t.is_symlink() for t in targets)
        if overwrite and not ask(self, "Replace the file?", f"{out} already exists. Replace it with the new report?",
                                 yes="Replace"):
            self.casebook_tab.message.setText(f"Export cancelled: {out} was left as it was.")
            return None
        return self.export_to(out, overwrite=overwrite, ids=ids, fmt=fmt)

    def export_to(self, out: str, overwrite: bool = False, ids: list[int] | None = None,
                  fmt: str | None = None) -> GeneratorWorker:
        """Write the report in the background (``InspectorModel.export``); an existing ``out`` is replaced only
        with ``overwrite``."""
        chosen = ids if ids is not None else self.casebook_tab.shown_ids() or None
        return self.model.export(out, fmt or export_format(out, ""), chosen, overwrite=overwrite)

    # --- closing ----------------------------------------------------------------------------------------------------

    def closeEvent(self, event) -> None:
        self._poll.stop()
        self.review_tab.shutdown()  # a label being written is written
        self.save_state()
        self.hub.shutdown()
        super().closeEvent(event)
