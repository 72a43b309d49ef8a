"""Prompt lists in the window: File > Run a prompt list… (Ctrl+Shift+P).

:class:`PromptListDialog` chooses the file (any format ``scan`` reads), its column and the numbers;
:class:`PromptListBar` runs it in the background (``inspector.prompt_lists.run_prompt_list``, which is ``scan``
itself) with one progress bar (images done of the whole list, time left) and a Cancel button (Shift+Esc). The
results are runs and candidates in the casebook exactly as ``inspector scan`` records them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from inspector.errors import UserError
from inspector.gui.plain import PlainLabel, plain_tooltip
from inspector.gui.workers import GeneratorWorker, WorkerHub
from inspector.limits import MAX_IMAGES
from inspector.prompt_lists import ListOutcome, PromptListProgress, PromptListRequest, run_prompt_list

#: The file types the dialog offers: every format ``scan`` reads.
PROMPT_FILE_FILTER = ("Prompt lists (*.txt *.text *.lst *.prompts *.csv *.tsv *.tab *.jsonl *.ndjson *.json "
                      "*.parquet *.pq);;All files (*)")
#: Images per prompt the dialog starts with: a few, so a first run on a laptop ends in minutes (scan's default
#: of 16 is one keystroke away).
DIALOG_N = 4
#: The column choice that means "the first of prompt, caption, text, TEXT".
AUTO_COLUMN = "(first of prompt, caption, text, TEXT)"


class PromptListDialog(QDialog):
    """Choose a prompt file, its column, images per prompt, first seed and steps; the model, index and casebook
    are the window's. :meth:`request` is what Run starts."""

    def __init__(self, model: str, index: str, casebook: str, folder: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Run a prompt list")
        self._model, self._index, self._casebook, self._folder = model, index, casebook, folder
        self.path = QLineEdit()
        self.path.setPlaceholderText("a .txt, .csv, .tsv, .jsonl, .json or .parquet file of prompts")
        self.path.editingFinished.connect(self._read_columns)
        choose = QPushButton("Choose…")
        choose.setToolTip("Pick the prompt file")
        choose.clicked.connect(self.choose_file)
        row = QHBoxLayout()
        row.addWidget(self.path, 1)
        row.addWidget(choose)
        self.about = PlainLabel()  # the file's format and what will be read: names a file the person chose
        self.about.setWordWrap(True)
        self.column = QComboBox()
        self.column.setToolTip("The column (CSV, TSV, parquet) or key (JSON) that holds the prompts")
        self.n = QSpinBox()
        self.n.setRange(1, MAX_IMAGES)
        self.n.setValue(DIALOG_N)
        self.n.setToolTip(plain_tooltip("Generations per prompt. Carlini et al. made 500; a few show a copied "
                                        "prompt on the demo, 16 is the command line's default."))
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("The first seed; prompt images use seed, seed + 1, …")
        self.steps = QSpinBox()
        self.steps.setRange(0, 1000)
        self.steps.setSpecialValueText("the model's")
        self.steps.setToolTip("Denoising steps per image (the model's own number when left at its lowest)")
        where = PlainLabel(f"Model: {model} · Index: {index} · Casebook: {Path(casebook).name}")
        where.setToolTip(plain_tooltip(f"Model {model}\nIndex {index}\nCasebook {casebook}\n(the window's "
                                       "pickers; change them there)"))
        where.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Prompt file", row)
        form.addRow("", self.about)
        form.addRow("Column", self.column)
        form.addRow("Images per prompt", self.n)
        form.addRow("First seed", self.seed)
        form.addRow("Steps", self.steps)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.run_button = self.buttons.addButton("Run", QDialogButtonBox.ButtonRole.AcceptRole)
        self.run_button.setEnabled(False)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(where)
        lay.addWidget(PlainLabel("Every prompt becomes a run in the casebook and its candidates unlabeled findings, "
                                 "as `inspector scan` records them; Cancel keeps what finished."))
        lay.addWidget(self.buttons)
        self.resize(560, 0)

    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Prompt list", self._folder, PROMPT_FILE_FILTER)
        if path:
            self.set_path(path)

    def set_path(self, path: str) -> None:
        self.path.setText(path)
        self._read_columns()

    def _read_columns(self) -> None:
        """The file's format and its columns (the header, schema or first record only: quick even for a large
        file), the default one chosen."""
        from inspector.prompt_files import TEXT, prompt_columns

        self.column.clear()
        path = self.path.text().strip()
        if not path:
            self.about.setText("")
            self.run_button.setEnabled(False)
            return
        try:
            fmt, names, default = prompt_columns(path)
        except UserError as exc:
            self.about.setText(str(exc))
            self.run_button.setEnabled(False)
            return
        if fmt == TEXT:
            self.column.addItem("(plain text: one prompt a line)", None)
        else:
            self.column.addItem(AUTO_COLUMN, None)
            for name in names:
                self.column.addItem(name, name)
            if default is not None:
                self.column.setCurrentIndex(names.index(default) + 1)
        self.column.setEnabled(fmt != TEXT)
        self.about.setText(f"{fmt} file" + (f", columns: {', '.join(names[:8])}" if names else ""))
        self.run_button.setEnabled(True)

    def request(self) -> PromptListRequest:
        return PromptListRequest(path=self.path.text().strip(), column=self.column.currentData(), n=self.n.value(),
                                 seed=self.seed.value(), steps=self.steps.value() or None, model=self._model,
                                 index=self._index, casebook=self._casebook)


def _run_in_background(request: PromptListRequest, cancel=None, progress=None):
    """The list's work on a pool thread: a list refused (file, column, numbers, casebook) is refused before torch
    loads; then torch keeps one core free, so the window stays quick (as a Generate run does)."""
    checked = request.check()
    import torch

    wanted = max(1, (os.cpu_count() or 2) - 1)
    if torch.get_num_threads() > wanted:
        torch.set_num_threads(wanted)
    yield from run_prompt_list(request, cancel=cancel, progress=progress, checked=checked)


class PromptListBar(QWidget):
    """The one progress bar of a prompt list run, its words and Cancel; hidden until a list runs. Signals:
    ``progressed(PromptListProgress)``, ``result(dict)`` (a prompt finished), ``finished(ListOutcome)``."""

    progressed = Signal(object)
    result = Signal(object)
    finished = Signal(object)

    def __init__(self, hub: WorkerHub, parent: QWidget | None = None):
        super().__init__(parent)
        self.hub = hub
        self.worker: GeneratorWorker | None = None
        self.request: PromptListRequest | None = None
        self.outcome: ListOutcome | None = None
        self.title = PlainLabel()
        self.title.setStyleSheet("font-weight: bold")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        self.bar.setAccessibleName("Prompt list progress")
        self.cancel_button = QPushButton("Cancel (Shift+Esc)")
        self.cancel_button.setToolTip("Stop the prompt list: finished prompts stay recorded; running the list again "
                                      "continues where it stopped")
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button = QToolButton()
        self.close_button.setText("✕")
        self.close_button.setToolTip("Hide this bar")
        self.close_button.clicked.connect(self.hide)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 2, 6, 2)
        lay.addWidget(self.title)
        lay.addWidget(self.bar, 1)
        lay.addWidget(self.cancel_button)
        lay.addWidget(self.close_button)
        self.hide()

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self, request: PromptListRequest) -> GeneratorWorker | None:
        """Run ``request`` in the background; None when a list is running already."""
        if self.worker is not None:
            return None
        self.request = request
        self.outcome = ListOutcome(prompts=0)
        self.title.setText(f"Prompt list {Path(request.path).name}")
        self.title.setToolTip(plain_tooltip(request.path))
        self.bar.setValue(0)
        self.bar.setFormat("starting…")
        self.cancel_button.setEnabled(True)
        self.cancel_button.show()
        self.close_button.hide()
        self.show()
        worker = GeneratorWorker(_run_in_background, request)
        worker.signals.progress.connect(self._on_progress)
        worker.signals.yielded.connect(self._on_result)
        worker.signals.errored.connect(self._on_error)
        worker.signals.finished.connect(self._on_finished)
        self.worker = self.hub.start(worker)
        return self.worker

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.quit()
            self.cancel_button.setEnabled(False)
            self.bar.setFormat("cancelling: finished prompts stay recorded…")

    def _on_progress(self, event: PromptListProgress) -> None:
        if not isinstance(event, PromptListProgress):
            return
        if self.outcome is not None:
            self.outcome.prompts = event.prompts
        if event.fraction is not None:
            self.bar.setValue(round(event.fraction * 1000))
        text = event.describe()
        if event.continued:
            text = "continuing an earlier run · " + text
        self.bar.setFormat(text.replace("%", "%%"))  # a prompt may hold "%", which QProgressBar reads as a field
        self.progressed.emit(event)

    def _on_result(self, result: dict) -> None:
        if self.outcome is not None:
            self.outcome.results.append(result)
        self.result.emit(result)

    def _on_error(self, exc: BaseException) -> None:
        if self.outcome is not None:
            self.outcome.error = str(exc) if isinstance(exc, UserError) else f"unexpected error " \
                f"({type(exc).__name__}: {exc})"
        if not isinstance(exc, UserError):
            print(getattr(exc, "traceback_text", ""), file=sys.stderr)

    def _on_finished(self) -> None:
        worker, self.worker = self.worker, None
        outcome = self.outcome or ListOutcome(prompts=0)
        outcome.cancelled = bool(worker is not None and worker.cancelled)
        words = outcome.words(self.request.casebook if self.request else "")
        self.bar.setFormat(words.split(":")[0] + (f": {len(outcome.finished)} of {outcome.prompts} prompts"))
        self.title.setToolTip(plain_tooltip(words))
        self.cancel_button.hide()
        self.close_button.show()
        self.finished.emit(outcome)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if event.key() == Qt.Key.Key_Escape and self.running:
            self.cancel()
            return
        super().keyPressEvent(event)
