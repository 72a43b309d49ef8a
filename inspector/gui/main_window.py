"""The main window: Inspect and Casebook tabs, model / index / casebook pickers, all heavy work in workers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from inspector.errors import UserError
from inspector.gui.casebook_tab import CasebookTab
from inspector.gui.comparison import ComparisonPanel
from inspector.gui.grid import GenerationGrid
from inspector.gui.panels import LabelBar, PromptPanel
from inspector.gui.plain import PlainLabel, ask, escape, plain_tooltip, tell
from inspector.gui.strip import DistanceStrip
from inspector.gui.workers import GeneratorWorker, WorkerHub
from inspector.resources import DEMO


def _inspect_in_background(*args, **kwargs):
    """``recorded_inspection`` for the window (a run in the casebook, every generation a finding as it is made):
    torch keeps one core free, so the UI thread always finds one (on two cores, two busy torch threads made the
    window stall for over 100 ms)."""
    import os

    import torch

    from inspector.runs import recorded_inspection

    wanted = max(1, (os.cpu_count() or 2) - 1)
    if torch.get_num_threads() > wanted:
        torch.set_num_threads(wanted)
    yield from recorded_inspection(*args, kind="window", **kwargs)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, UserError):
        return str(exc)
    return f"Unexpected error ({type(exc).__name__}): {exc}. Your labels so far are saved."


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


class MainWindow(QMainWindow):
    """The inspector's window. ``model_source`` / ``index_source``: "demo" or a local path."""

    run_finished = Signal()  # a generation run ended (done, cancelled or failed)
    views_shown = Signal()  # the heatmaps of the selected generation are on screen
    label_written = Signal(object)  # the Inspected item whose label reached the casebook
    error_shown = Signal(str)
    words_checked = Signal(object)  # notes (list of str) about the prompt's words are on screen

    def __init__(self, model_source: str | None = None, index_source: str | None = None,
                 casebook_path: str | None = None, settings: QSettings | None = None):
        super().__init__()
        self.settings = settings or QSettings("memorization-inspector", "inspector")
        self.setWindowTitle("Memorization Inspector")
        self.hub = WorkerHub()
        self.run_worker: GeneratorWorker | None = None
        self.run_id: int | None = None  # the casebook run of the latest generation run
        self.summary = None
        self._view_request = 0
        self._undo: list = []
        self._last_error = ""
        self._word_request = 0
        # The prompt's words are checked against the model's tokenizer a moment after typing stops.
        self._word_timer = QTimer(self)
        self._word_timer.setSingleShot(True)
        self._word_timer.setInterval(300)
        self._word_timer.timeout.connect(self.check_prompt_words)

        self.model_box = self._source_box(model_source or self.settings.value("model", DEMO), "model")
        self.index_box = self._source_box(index_source or self.settings.value("index", DEMO), "index")
        from inspector.casebook import default_casebook_path

        self.casebook_path = str(casebook_path or self.settings.value("casebook", "") or default_casebook_path())
        self.casebook_label = QLabel()
        self._show_casebook_path()

        top = QHBoxLayout()
        top.addWidget(QLabel("Model"))
        top.addWidget(self.model_box, 1)
        b = QPushButton("Folder…")
        b.setToolTip("Pick a local diffusers model folder (with model_index.json)")
        b.clicked.connect(self._pick_model)
        top.addWidget(b)
        top.addSpacing(12)
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
        top.addSpacing(12)
        top.addWidget(self.casebook_label)
        b = QPushButton("Casebook…")
        b.setToolTip("Choose or create the casebook file findings are saved to")
        b.clicked.connect(self._pick_casebook)
        top.addWidget(b)

        # Inspect tab
        self.prompt_panel = PromptPanel()
        self.grid = GenerationGrid()
        self.header = PlainLabel("No generations yet: type a prompt and press Ctrl+Enter.")
        self.sort_box = QComboBox()
        self.sort_box.addItems(["nearest distance", "generation order"])
        self.sort_box.setToolTip("Order of the grid: closest to an image of the index first, or as generated")
        self.sort_box.currentIndexChanged.connect(lambda i: self.grid.sort_by_distance(i == 0))
        self.strip = DistanceStrip()
        self.comparison = ComparisonPanel()
        self.label_bar = LabelBar()
        self.banner = ErrorBanner()
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
        lower = QWidget()
        ll = QVBoxLayout(lower)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(self.comparison, 1)
        ll.addWidget(self.label_bar)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(upper)
        split.addWidget(lower)
        split.setSizes([330, 470])
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.banner)
        rl.addWidget(split, 1)
        inspect_tab = QWidget()
        il = QHBoxLayout(inspect_tab)
        il.addWidget(self.prompt_panel)
        il.addWidget(right, 1)

        self.casebook_tab = CasebookTab()
        self.tabs = QTabWidget()
        self.tabs.addTab(inspect_tab, "Inspect")
        self.tabs.addTab(self.casebook_tab, "Casebook")
        central = QWidget()
        cl = QVBoxLayout(central)
        cl.addLayout(top)
        cl.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self.statusBar().showMessage("Ready. Ctrl+Enter generates; 1 / 2 / 3 label; H cycles heatmaps; "
                                     "Ctrl+Z undoes a label.")

        self.label_bar.reviewer.setText(self.settings.value("reviewer", ""))
        self.prompt_panel.generate_requested.connect(self.start_generation)
        self.prompt_panel.cancel_requested.connect(self.cancel_generation)
        self.grid.selected.connect(self.show_item)
        self.label_bar.label_requested.connect(self.label_current)
        self.label_bar.undo_requested.connect(self.undo_label)
        self.casebook_tab.refresh_requested.connect(self.refresh_casebook)
        self.casebook_tab.open_requested.connect(self.open_finding)
        self.casebook_tab.reproduce_requested.connect(self.reproduce_finding)
        self.casebook_tab.export_requested.connect(self.export_report)
        self.tabs.currentChanged.connect(lambda i: i == 1 and self.refresh_casebook())
        self.model_box.currentTextChanged.connect(self._sources_changed)
        self.model_box.currentTextChanged.connect(self._word_timer.start)
        self.prompt_panel.prompt.textChanged.connect(self._word_timer.start)
        self.index_box.currentTextChanged.connect(self._sources_changed)
        self.index_box.currentTextChanged.connect(self._show_index_role)

        for keys, slot in (
            ("Ctrl+Return", self.start_generation), ("Ctrl+Enter", self.start_generation),
            ("Escape", self.cancel_generation), ("1", lambda: self.label_current("memorized")),
            ("2", lambda: self.label_current("likeness-only")), ("3", lambda: self.label_current("novel")),
            ("H", self.cycle_heatmap), ("Ctrl+Z", self.undo_label),
        ):
            QShortcut(QKeySequence(keys), self, activated=slot)
        self._sources_changed()
        self._show_index_role()
        self.resize(1440, 960)

    # --- sources -----------------------------------------------------------------------------------------------

    def _source_box(self, current: str, kind: str) -> QComboBox:
        box = QComboBox()
        box.setEditable(True)
        box.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        recent = [DEMO] + [s for s in (self.settings.value(f"recent_{kind}", []) or []) if s != DEMO]
        box.addItems(recent[:8])
        box.setCurrentText(str(current))
        box.setToolTip("“demo” is the embedded tiny model and its training set; or type / pick a local folder")
        return box

    @property
    def model_source(self) -> str:
        return self.model_box.currentText().strip() or DEMO

    @property
    def index_source(self) -> str:
        return self.index_box.currentText().strip() or DEMO

    def _remember(self) -> None:
        for kind, value in (("model", self.model_source), ("index", self.index_source)):
            self.settings.setValue(kind, value)
            recent = [value] + [s for s in (self.settings.value(f"recent_{kind}", []) or []) if s != value]
            self.settings.setValue(f"recent_{kind}", recent[:8])
        self.settings.setValue("casebook", self.casebook_path)
        self.settings.setValue("reviewer", self.label_bar.reviewer.text())

    def _sources_changed(self) -> None:
        prompts = {}
        if self.model_source == DEMO:
            from inspector.resources import demo_prompts_file

            try:
                prompts = json.loads(demo_prompts_file().read_text(encoding="utf-8"))
            except (OSError, ValueError):
                prompts = {}
            self.prompt_panel.guidance.setValue(2.0)
        self.prompt_panel.set_suggestions(prompts)

    def _pick_model(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder (with model_index.json)")
        if folder:
            self.model_box.setCurrentText(folder)

    def _show_index_role(self) -> None:
        """Beside the index picker: its role and size, from its manifest (a small JSON file, read here)."""
        from inspector.roles import describe_index, role_words
        from inspector.training_index.store import TrainingIndexError, identity, read_manifest

        source = self.index_source
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
        folder = QFileDialog.getExistingDirectory(self, "Index folder (a training set or a reference collection)")
        if folder:
            self.index_box.setCurrentText(folder)

    def _pick_casebook(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Casebook file", self.casebook_path, "Casebook (*.db)",
                                              options=QFileDialog.Option.DontConfirmOverwrite)
        if path:
            self.casebook_path = path
            self._show_casebook_path()
            self._remember()

    def _show_casebook_path(self) -> None:
        self.casebook_label.setText(f"Casebook: <b>{escape(Path(self.casebook_path).name)}</b>")
        self.casebook_label.setToolTip(plain_tooltip(self.casebook_path))

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
        values = self.prompt_panel.values()
        if not values["prompt"]:
            self.show_error("Type a prompt first (or click one of the demo prompts).")
            return
        from inspector.session import InspectRequest

        request = InspectRequest(prompt=values["prompt"], negative_prompt=values["negative_prompt"],
                                 n=values["n"], seed=values["seed"], steps=values["steps"],
                                 guidance=values["guidance"], wen=values["wen"])
        try:
            request.validate()  # the same checks as the command line, before the model loads
        except UserError as exc:
            self.show_error(str(exc))
            return
        self._remember()
        self.banner.hide()
        self.grid.source.clear()
        self.comparison.clear()
        self.summary = None
        self.strip.set_values([])
        self.strip.set_summary(None, 0, False, None)
        self.label_bar.set_enabled(False)
        self.header.setText(f"Generating {request.n} images of “{request.prompt}”…")
        self.prompt_panel.set_running(True)
        self.prompt_panel.progress.setRange(0, request.n * max(1, request.steps or 1))
        self.prompt_panel.progress.setValue(0)
        self.prompt_panel.progress.setFormat("starting…")
        self.run_id = None
        worker = GeneratorWorker(_inspect_in_background, self.casebook_path, self.model_source, self.index_source,
                                 request, reviewer=self.label_bar.reviewer.text())
        worker.signals.yielded.connect(self._on_result)
        worker.signals.progress.connect(self._on_progress)
        worker.signals.errored.connect(self._on_run_error)
        worker.signals.finished.connect(self._on_run_finished)
        self.run_worker = self.hub.start(worker)
        self._request = request

    def cancel_generation(self) -> None:
        if self.run_worker is not None:
            self.run_worker.quit()
            self.prompt_panel.progress.setFormat("cancelling…")
            self.prompt_panel.status.setText("Cancelling: finished images stay.")

    def _on_progress(self, info: dict) -> None:
        stage = info.get("stage")
        if info.get("run_id") is not None:
            self.run_id = info["run_id"]
        bar = self.prompt_panel.progress
        if stage == "sampling":
            steps = max(1, info.get("steps") or 1)
            bar.setRange(0, info["n"] * steps)
            bar.setValue(min(bar.maximum(), info["done"] * steps + info["step"]))
            eta = info.get("eta")
            eta_text = f", about {eta:.0f} s left" if eta is not None else ""
            bar.setFormat(f"{info['done']}/{info['n']} images, step {info['step']}/{steps}{eta_text}")
        elif info.get("fraction") is not None:
            bar.setRange(0, 1000)
            bar.setValue(int(info["fraction"] * 1000))
            bar.setFormat(f"{stage}: {info['fraction'] * 100:.0f}%")
        else:
            bar.setFormat(f"{stage}…")

    def _on_result(self, value) -> None:
        from inspector.session import Inspected, strip_value

        if isinstance(value, Inspected):
            first = self.grid.source.rowCount() == 0
            self.grid.source.append(value)
            if first:
                role = (value.index or {}).get("role")
                self.strip.set_role(role)
                self.label_bar.set_role(role)
            self.strip.set_values([strip_value(i) for i in self.grid.source.items()])
            self.header.setText(f"{self.grid.source.rowCount()} of {self._request.n} generations of "
                                f"“{self._request.prompt}”")
            if first:
                self.grid.select_first()
                self.grid.setFocus()
        else:
            self.summary = value
            clique = value.clique
            self.strip.set_summary(clique.size if clique else 0, value.n, bool(clique and clique.flagged),
                                   value.wen_score)
            for item in self.grid.source.items():
                self.grid.source.item_changed(item)
            unknown = []
            if value.words is not None:
                self._word_request += 1  # a typing-time check still running must not replace these notes
                self._show_word_notes(self._word_request, value.words.notes())
                unknown = value.words.vocabulary.unknown_words if value.words.vocabulary else []
            if value.wen_tokens:
                from inspector.prompt_words import steering_words

                words = steering_words(value.wen_tokens, unknown)
                self.strip.set_extra_tip(f"Words that steer hardest (per word): {words}")

    def _on_run_error(self, exc: BaseException) -> None:
        self.show_error(_error_text(exc))
        if not isinstance(exc, UserError):
            print(getattr(exc, "traceback_text", ""), file=sys.stderr)

    def _on_run_finished(self) -> None:
        worker = self.run_worker
        self.run_worker = None
        self.prompt_panel.set_running(False)
        n = self.grid.source.rowCount()
        cancelled = worker is not None and worker.cancelled
        self.prompt_panel.progress.setFormat(("cancelled: " if cancelled else "done: ") + f"{n} images")
        self.prompt_panel.status.setText(self.strip.summary_text() if n else "")
        if self.run_id is not None:
            self.statusBar().showMessage(f"Run #{self.run_id} and its {n} generations are on the record in "
                                         f"{Path(self.casebook_path).name}", 10000)
        if n:
            self.label_bar.set_enabled(True)
        self.run_finished.emit()

    def show_error(self, message: str) -> None:
        self._last_error = message
        self.banner.show_message(message)
        self.statusBar().showMessage(message, 10000)
        self.error_shown.emit(message)

    # --- selection and heatmaps ---------------------------------------------------------------------------------

    def show_item(self, item) -> None:
        self._view_request += 1
        if item is None:
            self.comparison.clear()
            return
        self.comparison.show_generation(item)
        self.label_bar.notes.setText(item.notes)
        self.label_bar.set_enabled(True)
        request_id = self._view_request
        from inspector.session import neighbour_views

        def views(cancel=None, progress=None):
            return neighbour_views(self.index_source, item)

        worker = GeneratorWorker(views)
        worker.signals.returned.connect(lambda result, rid=request_id: self._on_views(rid, result))
        worker.signals.errored.connect(lambda exc: self.show_error("Could not draw the heatmaps: "
                                                                   + _error_text(exc)))
        self.hub.start(worker)

    def _on_views(self, request_id: int, views) -> None:
        if request_id != self._view_request:  # the person moved on: drop the stale result
            return
        self.comparison.set_views(views)
        self.views_shown.emit()

    def cycle_heatmap(self) -> None:
        mode = self.comparison.cycle_mode()
        self.casebook_tab.comparison.show_mode(mode)

    # --- labels ---------------------------------------------------------------------------------------------------

    def label_current(self, label: str) -> None:
        if self.tabs.currentIndex() != 0:
            return
        item = self.grid.current_item()
        if item is None:
            return
        previous = item.label
        item.label = label
        item.notes = self.label_bar.notes.text()
        self.grid.source.item_changed(item)
        self._undo.append((item, previous))
        self.label_bar.undo.setEnabled(True)
        self._write_label(item, label)
        nxt = self.grid.next_unlabeled_after(item)
        if nxt is not None:
            self.grid.select_item(nxt)
        self.label_bar.state.setText(f"seed {item.seed}: {label}")

    def _write_label(self, item, label: str) -> None:
        from inspector.session import finding_from

        path, reviewer, summary, notes = self.casebook_path, self.label_bar.reviewer.text(), self.summary, item.notes

        def write(cancel=None, progress=None):
            from inspector.casebook import Casebook

            with Casebook.open(path) as book:
                if item.finding_id is None:
                    item.finding_id = book.record(finding_from(item, summary))
                book.label(item.finding_id, label, reviewer=reviewer, note=notes)
            return item

        worker = GeneratorWorker(write)
        worker.signals.returned.connect(self._label_saved)
        worker.signals.errored.connect(lambda exc: self.show_error("The label was NOT saved: " + _error_text(exc)))
        self.hub.start(worker, serial=True)

    def _label_saved(self, item) -> None:
        self.statusBar().showMessage(f"Saved: finding #{item.finding_id} is {item.label} in {self.casebook_path}",
                                     5000)
        self.label_written.emit(item)

    def undo_label(self) -> None:
        if not self._undo:
            return
        item, previous = self._undo.pop()
        self.label_bar.undo.setEnabled(bool(self._undo))
        path, reviewer = self.casebook_path, self.label_bar.reviewer.text()

        def undo(cancel=None, progress=None):
            from inspector.casebook import Casebook

            with Casebook.open(path) as book:
                if item.finding_id is not None:
                    event = book.undo_last_label(item.finding_id, reviewer=reviewer)
                    return item, event.label
            return item, previous

        def done(result):
            it, label = result
            it.label = label
            self.grid.source.item_changed(it)
            self.grid.select_item(it)
            self.statusBar().showMessage(f"Undone: seed {it.seed} is {label} again", 5000)
            self.label_written.emit(it)

        worker = GeneratorWorker(undo)
        worker.signals.returned.connect(done)
        worker.signals.errored.connect(lambda exc: self.show_error("Undo failed: " + _error_text(exc)))
        self.hub.start(worker, serial=True)

    # --- casebook tab -----------------------------------------------------------------------------------------------

    def _open_casebook(self, create: bool = False):
        from inspector.casebook import Casebook

        return Casebook.open(self.casebook_path, create=create)

    def refresh_casebook(self) -> None:
        tab = self.casebook_tab
        if not Path(self.casebook_path).exists():
            tab.model.set_rows([])
            tab.set_runs([])
            tab.counts.setText("The casebook is empty: generate images to put the first run on the record.")
            return
        try:
            with self._open_casebook() as book:
                f = tab.filters()
                rows = book.findings(label=f["label"], text=f["text"], run_id=f["run_id"], limit=2000,
                                     thumbnails=True)
                counts = book.counts()
                runs = book.runs(descending=True, limit=500)
        except UserError as exc:
            tab.message.setText(str(exc))
            return
        tab.set_runs(runs)
        tab.model.set_rows(rows)
        tab.counts.setText(" · ".join(f"{k}: {v}" for k, v in counts.items()) + f"   ({self.casebook_path})")

    def open_finding(self, finding_id: int) -> None:
        from PIL import Image

        from inspector.extraction import Suggestion
        from inspector.session import Inspected

        try:
            with self._open_casebook() as book:
                finding = book.get(finding_id)
        except UserError as exc:
            self.casebook_tab.message.setText(str(exc))
            return
        import io

        import numpy as np

        image = np.asarray(Image.open(io.BytesIO(finding.image_png)).convert("RGB"))
        item = Inspected(position=0, seed=finding.seed, image=image, png=finding.image_png,
                         provenance=finding.provenance, neighbours=finding.neighbours,
                         suggestion=Suggestion(finding.suggested_verdict or "novel", finding.suggestion_reason),
                         finding_id=finding.id, label=finding.label, notes=finding.notes, index=finding.index)
        self.casebook_tab.comparison.show_generation(item, [nb.thumbnail_png for nb in finding.neighbours])
        self.casebook_tab.message.setText(f"Finding #{finding.id}: label {finding.label}; reviewer "
                                          f"{finding.reviewer or '—'}; notes: {finding.notes or '—'}")

    def reproduce_finding(self, finding_id: int) -> None:
        path = self.casebook_path
        self.casebook_tab.message.setText(f"Reproducing finding #{finding_id}…")

        def run(cancel=None, progress=None):
            import tempfile

            from inspector.casebook import Casebook
            from inspector.generation import reproduce

            with Casebook.open(path, create=False) as book:
                finding = book.get(finding_id)
            with tempfile.TemporaryDirectory() as tmp:
                png = Path(tmp) / "finding.png"
                png.write_bytes(finding.image_png)
                return reproduce(png).summary()

        worker = GeneratorWorker(run)
        worker.signals.returned.connect(lambda text: self.casebook_tab.message.setText(text))
        worker.signals.errored.connect(lambda exc: self.casebook_tab.message.setText(
            "Could not reproduce: " + _error_text(exc)))
        self.hub.start(worker)

    def export_report(self) -> None:
        # The window asks before replacing a file (export_chosen), in the same words on every platform; the
        # dialog's own question (native dialogs differ) would ask a second time.
        out, _ = QFileDialog.getSaveFileName(self, "Save the HTML report", "casebook-report.html",
                                             "HTML (*.html)", options=QFileDialog.Option.DontConfirmOverwrite)
        if out:
            self.export_chosen(out)

    def export_chosen(self, out: str) -> GeneratorWorker | None:
        """Export the report to a file the person chose: never over the casebook itself, and over an existing
        file only after asking. Returns the export's worker, or None when nothing is written."""
        from inspector.casebook import is_casebook_file

        if is_casebook_file(out, self.casebook_path):
            text = f"{out} is the casebook itself: the report cannot be written over it. Choose another file name."
            self.casebook_tab.message.setText("Export refused: " + text)
            tell(self, "Export refused", text)
            return None
        overwrite = Path(out).exists() or Path(out).is_symlink()
        if overwrite and not ask(self, "Replace the file?", f"{out} already exists. Replace it with the new report?",
                                 yes="Replace"):
            self.casebook_tab.message.setText(f"Export cancelled: {out} was left as it was.")
            return None
        return self.export_to(out, overwrite=overwrite)

    def export_to(self, out: str, overwrite: bool = False) -> GeneratorWorker:
        """Write the HTML report in the background; an existing ``out`` is replaced only with ``overwrite``."""
        path = self.casebook_path

        def run(cancel=None, progress=None):
            from inspector.casebook import Casebook
            from inspector.report import export

            with Casebook.open(path, create=False, readonly=True) as book:
                export(book, out, "html", overwrite=overwrite)
            return out

        worker = GeneratorWorker(run)
        worker.signals.returned.connect(lambda p: self.casebook_tab.message.setText(f"Report written to {p}"))
        worker.signals.errored.connect(lambda exc: self.casebook_tab.message.setText(
            "Export failed: " + _error_text(exc)))
        return self.hub.start(worker)

    # --- closing ----------------------------------------------------------------------------------------------------

    def closeEvent(self, event) -> None:
        self._remember()
        self.hub.shutdown()
        super().closeEvent(event)
