"""Check my work (artists): a guided page in the window, no terminal (issue 18, point 3).

1. Choose (or drop) the folder of your own works: it is indexed in the background as a *reference* collection
   (progress bar, Cancel, and the files it could not read, in plain words). A cancelled build leaves nothing.
2. Your name, and the titles (from captions or file names, editable).
3. The prompt patterns ("{title}", "{title} by {name}", "in the style of {name}") and your own lines, with the
   prompts they make shown before anything runs.
4. Run: every prompt as one batch, one progress bar, Cancel. The result is one entry per work in plain words,
   the work and the closest generation side by side, and a warning when the model cannot read the name at all;
   it exports as a one-page HTML or PDF that names no folder.

The work itself is :mod:`inspector.artist_check` and :mod:`inspector.report.artist`; this page only gathers the
person's choices and runs those on the window's workers. The model is the window's current one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from inspector.artist_check import (
    PROMPT_PATTERNS,
    CheckResult,
    as_page,
    build_prompts,
    build_reference,
    check_work,
    pattern_problem,
    works_in,
)
from inspector.errors import UserError
from inspector.gui.images import qimage_from_png, scaled_pixmap
from inspector.gui.plain import PlainLabel, ask, plain_tooltip
from inspector.gui.workers import GeneratorWorker, WorkerHub
from inspector.limits import MAX_IMAGES

#: Where the reference indexes of artists' folders live, inside the inspector's cache folder.
REFERENCES = "artist-references"
DEFAULT_IMAGES_PER_PROMPT = 8
DEFAULT_STEPS = 25
ALARM_STYLE = "color: #700; background: #fee; border: 2px solid #a00; padding: 6px; font-weight: bold;"
CLEAN_STYLE = "color: #143; border: 2px solid #264; padding: 6px; font-weight: bold;"


def reference_folder_for(folder: str | os.PathLike) -> Path:
    """The reference index of ``folder``: one per folder, in the cache, rebuilt each time it is chosen."""
    from inspector.provenance import cache_dir

    key = hashlib.sha256(os.fsencode(os.path.abspath(folder))).hexdigest()[:16]
    return cache_dir() / REFERENCES / key


@dataclass
class WorksFound:
    """The last value of a build: the works the index holds, as (source, title)."""

    works: list[tuple[str, str]]


def _build(folder: str, out: Path, cancel=None, progress=None):
    """The build, on a worker: the folder indexed again from scratch (its works may have changed), each progress
    event yielded, then the works. Closed or cancelled, :func:`build_reference` removes what it began."""
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    yield from build_reference(folder, out, cancel=cancel)
    if cancel is None or not cancel.is_set():
        yield WorksFound(works_in(out))


def _check(model: str, index_dir: Path, name: str, titles: dict[str, str], own: list[str], patterns: list[str],
           n: int, steps: int, cancel=None, progress=None) -> CheckResult:
    """The check, on a worker; torch keeps one core free so that the window stays responsive."""
    import torch

    wanted = max(1, (os.cpu_count() or 2) - 1)
    if torch.get_num_threads() > wanted:
        torch.set_num_threads(wanted)
    return check_work(model, index_dir, name, titles=titles, own_prompts=own, n=n, steps=steps,
                      patterns=patterns, cancel=cancel, progress=progress)


def _export(page: dict, out: str, fmt: str, overwrite: bool, cancel=None, progress=None) -> str:
    from inspector.report.artist import export_artist_page

    return str(export_artist_page(page, out, fmt, overwrite=overwrite))


def _lines(edit: QPlainTextEdit) -> list[str]:
    return [line.strip() for line in edit.toPlainText().splitlines() if line.strip()]


def _picture(png: bytes | None, side: int, caption: str) -> QWidget:
    box = QWidget()
    lay = QVBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.setSpacing(2)
    pic = QLabel()
    pic.setFixedSize(side, side)
    pic.setAlignment(Qt.AlignmentFlag.AlignCenter)
    pic.setStyleSheet("background: #f2f2f2; border: 1px solid #999;")
    if png:
        pic.setPixmap(scaled_pixmap(qimage_from_png(png), side - 2))
    else:
        pic.setText("no picture")
    lay.addWidget(pic)
    words = PlainLabel(caption)
    words.setStyleSheet("color: #555; font-size: 11px;")
    words.setWordWrap(True)
    words.setFixedWidth(side)
    lay.addWidget(words)
    return box


class WorkEntry(QFrame):
    """One work in the result: the work and the closest generation side by side, and the words."""

    def __init__(self, work: dict, parent: QWidget | None = None):
        super().__init__(parent)
        reproduced = work["reproduced"]
        side = 150 if reproduced else 72
        self.setFrameShape(QFrame.Shape.StyledPanel)
        if reproduced:
            self.setStyleSheet("WorkEntry { border: 2px solid #a00; }")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(_picture(work["work_png"], side, "your work"))
        seed = work.get("best_seed")
        if reproduced:
            caption = f"generated, seed {seed}"
        elif work["generation_png"] is not None:
            caption = "closest generation (not a copy)"
        else:
            caption = "nothing came near"
        lay.addWidget(_picture(work["generation_png"], side, caption))
        text = QVBoxLayout()
        head = PlainLabel(("REPRODUCED: " if reproduced else "not reproduced: ") + work["file_name"])
        head.setStyleSheet("font-weight: bold;" + (" color: #700;" if reproduced else ""))
        self.words = PlainLabel(work["words"])
        self.words.setWordWrap(True)
        self.words.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        if work["title"] and work["title"] != PurePath(work["file_name"]).stem:
            text.addWidget(PlainLabel(f"title: {work['title']}"))
        text.insertWidget(0, head)
        text.addWidget(self.words)
        text.addStretch(1)
        lay.addLayout(text, 1)


class ArtistPage(QWidget):
    """The "Check my work" tab. ``model_source`` gives the window's current model; ``start_folder`` where file
    dialogs open."""

    build_finished = Signal()  # the index build ended: ready, cancelled or failed
    check_finished = Signal()  # the check ended: its result (maybe partial) is on screen, or its error
    export_finished = Signal(str)  # the file written, or "" when the export failed

    def __init__(self, hub: WorkerHub, model_source: Callable[[], str], start_folder: Callable[[], str],
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.hub = hub
        self.model_source = model_source
        self.start_folder = start_folder
        self.folder: str | None = None
        self.index_dir: Path | None = None  # set once its build is complete
        self.build_worker: GeneratorWorker | None = None
        self.check_worker: GeneratorWorker | None = None
        self.result: CheckResult | None = None
        self.page: dict | None = None
        self._build_error: BaseException | None = None
        self._check_error: BaseException | None = None
        self._build_done = False
        self.setAcceptDrops(True)

        steps = QWidget()
        sl = QVBoxLayout(steps)
        sl.addWidget(self._works_step())
        sl.addWidget(self._names_step())
        sl.addWidget(self._prompts_step())
        sl.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(steps)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        left = QWidget()
        left.setMinimumWidth(440)
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(scroll, 1)
        ll.addWidget(self._run_step())  # outside the scroll: the Run button and the progress are always in view
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(self._result_panel())
        splitter.setChildrenCollapsible(False)
        splitter.setSizes([520, 800])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(splitter)
        self._update_prompts()
        self._set_stage()

    # --- building the page -----------------------------------------------------------------------------------

    def _works_step(self) -> QGroupBox:
        box = QGroupBox("1. Your works")
        lay = QVBoxLayout(box)
        intro = PlainLabel("Choose the folder that holds your own works, or drop it on this page. The app indexes "
                           "it on this computer as your collection to compare against; nothing leaves the machine.")
        intro.setWordWrap(True)
        lay.addWidget(intro)
        row = QHBoxLayout()
        self.folder_label = PlainLabel("No folder chosen yet.")
        self.folder_label.setWordWrap(True)
        row.addWidget(self.folder_label, 1)
        self.choose_button = QPushButton("Choose f&older…")
        self.choose_button.setToolTip(plain_tooltip("Pick the folder of your works (Alt+O); you can also drop it "
                                                    "on this page"))
        self.choose_button.clicked.connect(self._pick_folder)
        row.addWidget(self.choose_button)
        lay.addLayout(row)
        row = QHBoxLayout()
        self.build_bar = QProgressBar()
        self.build_bar.setRange(0, 1000)
        self.build_bar.setValue(0)
        self.build_bar.setFormat("")
        row.addWidget(self.build_bar, 1)
        self.build_cancel = QPushButton("Cancel")
        self.build_cancel.setToolTip(plain_tooltip("Stop indexing (Esc); nothing half-built is kept"))
        self.build_cancel.clicked.connect(self.cancel_build)
        row.addWidget(self.build_cancel)
        lay.addLayout(row)
        self.build_status = PlainLabel()
        self.build_status.setWordWrap(True)
        lay.addWidget(self.build_status)
        self.unreadable_label = PlainLabel("Files it could not read (left out of the check):")
        self.unreadable = QListWidget()
        lay.addWidget(self.unreadable_label)
        lay.addWidget(self.unreadable)
        return box

    def _names_step(self) -> QGroupBox:
        box = QGroupBox("2. Your name and the titles")
        lay = QVBoxLayout(box)
        form = QFormLayout()
        self.name = QLineEdit()
        self.name.setPlaceholderText("as people would type it, e.g. Rachel Michetti")
        self.name.setToolTip(plain_tooltip("Your name as someone would put it in a prompt"))
        self.name.textChanged.connect(self._update_prompts)
        form.addRow("&Name", self.name)
        lay.addLayout(form)
        hint = PlainLabel("Each work's title comes from its caption (a .txt or .json file beside it) or else its "
                          "file name. Double-click a title to change it.")
        hint.setWordWrap(True)
        lay.addWidget(hint)
        self.titles = QTableWidget(0, 2)
        self.titles.setHorizontalHeaderLabels(["File", "Title"])
        self.titles.verticalHeader().setVisible(False)
        self.titles.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.titles.horizontalHeader().setStretchLastSection(True)
        self.titles.setMinimumHeight(140)
        self.titles.itemChanged.connect(lambda _item: self._update_prompts())
        lay.addWidget(self.titles)
        return box

    def _prompts_step(self) -> QGroupBox:
        box = QGroupBox("3. The prompts to try")
        lay = QVBoxLayout(box)
        hint = PlainLabel("Patterns, one a line: {title} becomes each work's title, {name} your name.")
        hint.setWordWrap(True)
        lay.addWidget(hint)
        self.patterns = QPlainTextEdit("\n".join(PROMPT_PATTERNS))
        self.patterns.setFixedHeight(70)
        self.patterns.setTabChangesFocus(True)
        self.patterns.textChanged.connect(self._update_prompts)
        lay.addWidget(self.patterns)
        lay.addWidget(PlainLabel("Your own prompts, one a line (what you fear people type):"))
        self.own = QPlainTextEdit()
        self.own.setFixedHeight(56)
        self.own.setTabChangesFocus(True)
        self.own.setPlaceholderText("e.g. a cup of coffee, latte art, top view")
        self.own.textChanged.connect(self._update_prompts)
        lay.addWidget(self.own)
        form = QFormLayout()
        self.n = QSpinBox()
        self.n.setRange(1, MAX_IMAGES)
        self.n.setValue(DEFAULT_IMAGES_PER_PROMPT)
        self.n.setToolTip(plain_tooltip("Images made for each prompt, one per seed (seeds 0, 1, 2, …)"))
        self.n.valueChanged.connect(self._update_prompts)
        form.addRow("&Images per prompt", self.n)
        self.steps = QSpinBox()
        self.steps.setRange(1, 200)
        self.steps.setValue(DEFAULT_STEPS)
        self.steps.setToolTip(plain_tooltip("Sampling steps per image (more = slower, usually cleaner)"))
        form.addRow("&Steps", self.steps)
        lay.addLayout(form)
        self.prompt_count = PlainLabel()
        self.prompt_count.setWordWrap(True)
        lay.addWidget(self.prompt_count)
        self.prompt_list = QListWidget()
        self.prompt_list.setMaximumHeight(110)
        lay.addWidget(self.prompt_list)
        return box

    def _run_step(self) -> QGroupBox:
        box = QGroupBox("4. Run the check")
        lay = QVBoxLayout(box)
        self.model_line = PlainLabel()
        self.model_line.setWordWrap(True)
        lay.addWidget(self.model_line)
        row = QHBoxLayout()
        self.run_button = QPushButton("Run the chec&k")
        self.run_button.setToolTip(plain_tooltip("Make every prompt's images and compare each with your works "
                                                 "(Alt+K)"))
        self.run_button.clicked.connect(self.run_check)
        row.addWidget(self.run_button)
        self.check_bar = QProgressBar()
        self.check_bar.setRange(0, 1000)
        self.check_bar.setValue(0)
        self.check_bar.setFormat("")
        row.addWidget(self.check_bar, 1)
        self.check_cancel = QPushButton("Cancel")
        self.check_cancel.setToolTip(plain_tooltip("Stop after the image being made (Esc); what was made is "
                                                   "reported"))
        self.check_cancel.clicked.connect(self.cancel_check)
        row.addWidget(self.check_cancel)
        lay.addLayout(row)
        self.check_status = PlainLabel()
        self.check_status.setWordWrap(True)
        lay.addWidget(self.check_status)
        return box

    def _result_panel(self) -> QWidget:
        panel = QWidget()
        lay = QVBoxLayout(panel)
        lay.setContentsMargins(6, 0, 0, 0)
        title = PlainLabel("The result")
        title.setStyleSheet("font-size: 16px; font-weight: bold;")
        lay.addWidget(title)
        self.name_warning = PlainLabel()
        self.name_warning.setWordWrap(True)
        self.name_warning.setStyleSheet(ALARM_STYLE)
        self.name_warning.hide()
        lay.addWidget(self.name_warning)
        self.headline = PlainLabel("The result appears here once the check has run: one entry per work, your work "
                                   "beside the closest generation.")
        self.headline.setWordWrap(True)
        self.headline.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.headline)
        self.words_note = PlainLabel()
        self.words_note.setWordWrap(True)
        self.words_note.hide()
        lay.addWidget(self.words_note)
        self.how = PlainLabel()
        self.how.setWordWrap(True)
        self.how.setStyleSheet("color: #555;")
        lay.addWidget(self.how)
        self.entries = QWidget()
        self.entries_layout = QVBoxLayout(self.entries)
        self.entries_layout.setContentsMargins(0, 0, 0, 0)
        self.entries_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(self.entries)
        scroll.setWidgetResizable(True)
        lay.addWidget(scroll, 1)
        row = QHBoxLayout()
        self.export_html = QPushButton("Export H&TML…")
        self.export_html.setToolTip(plain_tooltip("Save this result as one web page (Alt+T); it names files, "
                                                  "never folders"))
        self.export_html.clicked.connect(lambda: self.export("html"))
        self.export_pdf = QPushButton("Export P&DF…")
        self.export_pdf.setToolTip(plain_tooltip("Save this result as a one-page PDF (Alt+D); it names files, "
                                                 "never folders"))
        self.export_pdf.clicked.connect(lambda: self.export("pdf"))
        self.export_status = PlainLabel()
        self.export_status.setWordWrap(True)
        row.addWidget(self.export_html)
        row.addWidget(self.export_pdf)
        row.addWidget(self.export_status, 1)
        lay.addLayout(row)
        return panel

    # --- state ----------------------------------------------------------------------------------------------

    def _set_stage(self) -> None:
        """Enable what can be done now: one thing at a time, in the order of the steps."""
        building = self.build_worker is not None
        checking = self.check_worker is not None
        ready = self.index_dir is not None and not building
        self.choose_button.setEnabled(not building and not checking)
        self.build_cancel.setEnabled(building)
        self.build_bar.setVisible(building or self._build_done or self.build_bar.value() > 0)
        self.unreadable_label.setVisible(self.unreadable.count() > 0)
        self.unreadable.setVisible(self.unreadable.count() > 0)
        rows = min(4, max(1, self.unreadable.count()))  # as tall as its lines, up to four
        self.unreadable.setFixedHeight(rows * self.unreadable.fontMetrics().height() + 3 * rows + 8)
        for widget in (self.name, self.titles, self.patterns, self.own, self.n, self.steps):
            widget.setEnabled(ready and not checking)
        problem = pattern_problem(_lines(self.patterns))
        self.run_button.setEnabled(ready and not checking and not problem and bool(self.prompts()))
        self.check_cancel.setEnabled(checking)
        has_result = self.page is not None and not checking
        self.export_html.setEnabled(has_result)
        self.export_pdf.setEnabled(has_result)
        self.model_line.setText(f"Model: {self.model_source()}, the window's current model (change it at the top "
                                "of the window). Your works are compared with their own index, not with the index "
                                "picked at the top.")

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self._set_stage()  # the model may have changed while the page was hidden
        QTimer.singleShot(0, self._focus_next_step)

    def _focus_next_step(self) -> None:
        if self.index_dir is None:
            self.choose_button.setFocus()
        elif not self.name.text():
            self.name.setFocus()
        else:
            self.run_button.setFocus()

    # --- step 1: the folder and its index --------------------------------------------------------------------

    def _pick_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "The folder of your works", self.folder or
                                                  self.start_folder())
        if folder:
            self.choose_folder(folder)

    @staticmethod
    def _dropped_folder(mime) -> str | None:
        urls = [u for u in mime.urls() if u.isLocalFile()] if mime.hasUrls() else []
        if len(urls) == 1 and os.path.isdir(urls[0].toLocalFile()):
            return urls[0].toLocalFile()
        return None

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if self._dropped_folder(event.mimeData()) and self.choose_button.isEnabled():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt's name
        folder = self._dropped_folder(event.mimeData())
        if folder and self.choose_button.isEnabled():
            self.choose_folder(folder)
            event.acceptProposedAction()

    def choose_folder(self, folder: str) -> GeneratorWorker | None:
        """Index ``folder`` as the artist's reference collection, in the background."""
        if self.build_worker is not None or self.check_worker is not None:
            return None
        self.folder = str(folder)
        self.index_dir = None
        self._build_done = False
        self._build_error = None
        self.folder_label.setText(self.folder)
        self.titles.setRowCount(0)
        self.unreadable.clear()
        self.build_bar.setValue(0)
        self.build_bar.setFormat("starting…")
        self.build_status.setStyleSheet("")
        self.build_status.setText("Indexing your works…")
        out = reference_folder_for(self.folder)
        worker = GeneratorWorker(_build, self.folder, out)
        worker.signals.yielded.connect(self._build_event)
        worker.signals.errored.connect(self._build_failed)
        worker.signals.finished.connect(lambda: self._build_ended(worker, out))
        self.build_worker = self.hub.start(worker)
        self._set_stage()
        return worker

    def cancel_build(self) -> None:
        if self.build_worker is not None:
            self.build_worker.quit()
            self.build_bar.setFormat("cancelling…")

    def _build_event(self, event) -> None:
        if isinstance(event, WorksFound):
            self._fill_titles(event.works)
            return
        if event.fraction is not None:
            self.build_bar.setValue(int(event.fraction * 1000))
        self.build_bar.setFormat(event.describe())
        for skipped in getattr(event, "newly_skipped", []):
            self.unreadable.addItem(f"{PurePath(skipped.source).name}: {skipped.reason}")
        self._set_stage()

    def _build_failed(self, exc: BaseException) -> None:
        self._build_error = exc

    def _build_ended(self, worker: GeneratorWorker, out: Path) -> None:
        self.build_worker = None
        error, self._build_error = self._build_error, None
        if error is not None:
            self.build_bar.setFormat("stopped")
            self.build_status.setStyleSheet("color: #a00;")
            self.build_status.setText(f"Your works could not be indexed: {_words(error)}")
        elif self.titles.rowCount() == 0 and worker.cancelled:
            self.build_bar.setValue(0)
            self.build_bar.setFormat("cancelled")
            self.build_status.setText("Cancelled: nothing was kept. Choose the folder again to start over.")
        else:
            # Finished, even when Cancel came after the last file: the index is whole.
            self.index_dir = out
            self._build_done = True
            self.build_bar.setValue(1000)
            self.build_bar.setFormat("done")
            n, skipped = self.titles.rowCount(), self.unreadable.count()
            self.build_status.setText(f"{_count(n, 'work')} indexed" + (
                f"; {_count(skipped, 'file')} could not be read (below)" if skipped else "") + ". Now enter your name.")
        self._set_stage()
        self._focus_next_step()
        self.build_finished.emit()

    def _fill_titles(self, works: list[tuple[str, str]]) -> None:
        self.titles.blockSignals(True)
        self.titles.setRowCount(len(works))
        for row, (source, title) in enumerate(works):
            name = QTableWidgetItem(PurePath(source).name)
            name.setFlags(name.flags() & ~Qt.ItemFlag.ItemIsEditable)
            name.setData(Qt.ItemDataRole.UserRole, source)
            self.titles.setItem(row, 0, name)
            self.titles.setItem(row, 1, QTableWidgetItem(title))
        self.titles.blockSignals(False)
        self._update_prompts()

    # --- steps 2 and 3: titles, name, prompts -----------------------------------------------------------------

    def title_map(self) -> dict[str, str]:
        """source -> title, as the table shows them (a blank title falls back to the file's)."""
        out = {}
        for row in range(self.titles.rowCount()):
            source = self.titles.item(row, 0).data(Qt.ItemDataRole.UserRole)
            title = (self.titles.item(row, 1).text() if self.titles.item(row, 1) else "").strip()
            out[source] = title or PurePath(source).stem
        return out

    def prompts(self) -> list[str]:
        """The prompts the check will run, in order."""
        if pattern_problem(_lines(self.patterns)):
            return []
        titles = list(dict.fromkeys(self.title_map().values()))
        return build_prompts(titles, self.name.text(), _lines(self.own), _lines(self.patterns))

    def _update_prompts(self) -> None:
        problem = pattern_problem(_lines(self.patterns))
        prompts = self.prompts()
        self.prompt_list.clear()
        self.prompt_list.addItems(prompts)
        if problem:
            self.prompt_count.setStyleSheet("color: #a00;")
            self.prompt_count.setText(problem[:1].upper() + problem[1:] + ".")
        else:
            self.prompt_count.setStyleSheet("")
            n = self.n.value()
            self.prompt_count.setText(f"{len(prompts)} prompts × {n} images = {len(prompts) * n} generations:"
                                      if prompts else "The prompts appear here once your works are indexed.")
        self._set_stage()

    # --- step 4: the check -------------------------------------------------------------------------------------

    def run_check(self) -> GeneratorWorker | None:
        """Run every prompt as one batch in the background; the result replaces the one on screen."""
        if self.index_dir is None or self.check_worker is not None or not self.run_button.isEnabled():
            return None
        prompts = self.prompts()
        n = self.n.value()
        self._check_error = None
        self.check_bar.setValue(0)
        self.check_bar.setFormat(f"loading the model, then {len(prompts) * n} images…")
        self.check_status.setStyleSheet("")
        self.check_status.setText("")
        self._clear_entries()  # the result on screen is replaced by this run's
        self.page = self.result = None
        for label in (self.name_warning, self.words_note):
            label.hide()
        self.how.setText("")
        self.headline.setStyleSheet("")
        self.headline.setText(f"Running the check: {_count(len(prompts), 'prompt')} × {n} images. The result "
                              "appears here when every prompt has run (the bar on the left shows how far it is).")
        worker = GeneratorWorker(_check, self.model_source(), self.index_dir, self.name.text().strip(),
                                 self.title_map(), _lines(self.own), _lines(self.patterns), n, self.steps.value())
        worker.signals.progress.connect(self._check_progress)
        worker.signals.returned.connect(self.show_result)
        worker.signals.errored.connect(self._check_failed)
        worker.signals.finished.connect(self._check_ended)
        self.check_worker = self.hub.start(worker)
        self._set_stage()
        return worker

    def cancel_check(self) -> None:
        if self.check_worker is not None:
            self.check_worker.quit()
            self.check_bar.setFormat("cancelling: finishing the image being made…")

    def cancel(self) -> None:
        """Esc: stop whatever this page is running."""
        self.cancel_build()
        self.cancel_check()

    def _check_progress(self, event) -> None:
        if event.fraction is not None:
            self.check_bar.setValue(int(event.fraction * 1000))
        self.check_bar.setFormat(f"{event.done} of {event.total} images · {event.message}")

    def _check_failed(self, exc: BaseException) -> None:
        self._check_error = exc

    def _check_ended(self) -> None:
        self.check_worker = None
        error, self._check_error = self._check_error, None
        if error is not None:
            self.check_bar.setFormat("stopped")
            self.check_status.setStyleSheet("color: #a00;")
            self.check_status.setText(f"The check stopped: {_words(error)}")
        self._set_stage()
        self.check_finished.emit()

    def show_result(self, result: CheckResult) -> None:
        """Render a check's result: the warning, the headline, one entry per work."""
        self.result = result
        self.page = as_page(result)
        page = self.page
        self.check_bar.setValue(1000 if not result.cancelled else self.check_bar.value())
        self.check_bar.setFormat(("cancelled: " if result.cancelled else "done: ") +
                                 f"{result.generations} images")
        self.name_warning.setText(f"Warning: {page['name_warning']}." if page["name_warning"] else "")
        self.name_warning.setVisible(bool(page["name_warning"]))
        headline = _sentence(page["headline"])
        if page["cancelled_words"]:
            headline += "\n" + _sentence(page["cancelled_words"])
        self.headline.setText(headline)
        self.headline.setStyleSheet(ALARM_STYLE if result.reproduced else CLEAN_STYLE)
        self.words_note.setText(_sentence(page["unknown_words_note"]) if page["unknown_words_note"] else "")
        self.words_note.setVisible(bool(page["unknown_words_note"]))
        self.how.setText(f"A near copy: a generation whose tiled l2 distance to your work is {page['threshold']} or"
                         f" less (0 is the same picture). Model: {result.model}; {page['images_per_prompt']} images "
                         "per prompt, one per seed.")
        self._clear_entries()
        for k, work in enumerate(page["works"]):
            self.entries_layout.insertWidget(k, WorkEntry(work))
        self.export_status.setText("")
        self._set_stage()

    def _clear_entries(self) -> None:
        while self.entries_layout.count() > 1:
            widget = self.entries_layout.takeAt(0).widget()
            if widget is not None:
                widget.setParent(None)  # off the page at once (findChildren), deleted later
                widget.deleteLater()

    def entry_words(self) -> list[str]:
        """The words of every entry on screen, in order (what the person reads)."""
        return [w.words.text() for w in self.entries.findChildren(WorkEntry)]

    # --- export -------------------------------------------------------------------------------------------------

    def export(self, fmt: str) -> GeneratorWorker | None:
        """Ask where, then write the result as a one-page HTML or PDF."""
        if self.page is None:
            return None
        name = "check-my-work" + (f"-{self.result.name}" if self.result and self.result.name else "")
        suggested = str(Path(self.start_folder()) / f"{name}.{fmt}")
        kinds = {"html": "Web page (*.html)", "pdf": "PDF, one page (*.pdf)"}
        out, _ = QFileDialog.getSaveFileName(self, f"Export the result as {fmt.upper()}", suggested, kinds[fmt],
                                             options=QFileDialog.Option.DontConfirmOverwrite)
        if not out:
            return None
        if Path(out).suffix.lower() != f".{fmt}":
            out = f"{out}.{fmt}"
        return self.export_chosen(out, fmt)

    def export_chosen(self, out: str, fmt: str | None = None) -> GeneratorWorker | None:
        """Write the result to ``out``; an existing file is replaced only after the person says so."""
        if self.page is None:
            return None
        fmt = fmt or Path(out).suffix.lower().lstrip(".")
        overwrite = Path(out).exists() or Path(out).is_symlink()
        if overwrite and not ask(self, "Replace the file?", f"{out} already exists. Replace it with this result?",
                                 yes="Replace"):
            self.export_status.setText(f"Export cancelled: {Path(out).name} was left as it was.")
            return None
        worker = GeneratorWorker(_export, self.page, out, fmt, overwrite)
        worker.signals.returned.connect(self._exported)
        worker.signals.errored.connect(self._export_failed)
        self.export_status.setText(f"Writing {Path(out).name}…")
        return self.hub.start(worker)

    def _exported(self, path: str) -> None:
        self.export_status.setText(f"Saved {path}")
        self.export_finished.emit(path)

    def _export_failed(self, exc: BaseException) -> None:
        self.export_status.setText(f"Not saved: {_words(exc)}")
        self.export_finished.emit("")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" + ("" if n == 1 else "s")


def _words(exc: BaseException) -> str:
    if isinstance(exc, UserError):
        return str(exc)
    return f"unexpected error ({type(exc).__name__}): {exc}"


__all__ = ["ArtistPage", "WorkEntry", "reference_folder_for"]
