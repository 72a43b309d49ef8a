"""The Casebook tab: every run and finding in the casebook, filters, a finding's comparison again, reproduce,
export."""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from inspector.findings import LABEL_WORDS, LABELS, SUGGESTIONS, UNLABELED
from inspector.gui.comparison import ComparisonPanel
from inspector.gui.images import qimage_from_png
from inspector.gui.panels import LabelBar
from inspector.gui.plain import PlainLabel, plain_tooltip

COLUMNS = ("id", "picture", "prompt", "seed", "label", "suggested", "nearest tiled l2", "reviewer", "notes", "updated")
RUN_COLUMNS = ("run", "started", "kind", "reviewer", "what was checked")


def run_details(run) -> str:
    """Everything a run's record says, in lines of words (its tooltip)."""
    index = run.index or {}
    settings = ", ".join(f"{k} {v}" for k, v in run.settings.items() if v is not None)
    lines = [run.in_words(),
             f"model: {run.model_id or 'not recorded'} (weights sha256 {run.model_sha256[:16] or 'not recorded'})",
             f"index: {index.get('source') or index.get('index_id') or 'not recorded'}"
             + (f" ({index.get('role')}, {index.get('images')} images)" if index.get("role") else ""),
             f"settings: {settings}",
             f"started {run.started_at}" + (f", finished {run.finished_at}" if run.finished_at else ", not finished"),
             f"{run.findings} findings in the casebook"]
    if run.negative_prompt:
        lines.insert(1, f"negative prompt: {run.negative_prompt}")
    if run.notes:
        lines.append(f"notes: {run.notes}")
    return "\n".join(lines)


class _RowsModel(QAbstractTableModel):
    """A table over a list of records with an ``id``, one row each; ``columns`` names the columns."""

    columns: tuple[str, ...] = ()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list = []

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return len(self.columns)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.columns[section]
        return None

    def set_rows(self, rows: list) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()

    def row_of(self, record_id: int | None) -> int | None:
        return next((k for k, r in enumerate(self.rows) if r.id == record_id), None)


class RunsModel(_RowsModel):
    """Every run, newest first: what was checked and what it found, in words."""

    columns = RUN_COLUMNS

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        run = self.rows[index.row()]
        if role == Qt.ItemDataRole.UserRole:
            return run.id
        if role == Qt.ItemDataRole.ToolTipRole:
            return plain_tooltip(run_details(run))  # prompts and reviewers are data: never markup
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        return {
            "run": f"#{run.id}",
            "started": (run.started_at or "")[:16].replace("T", " "),
            "kind": run.kind,
            "reviewer": run.reviewer,
            "what was checked": run.in_words(),
        }[RUN_COLUMNS[index.column()]]



class FindingsModel(_RowsModel):
    columns = COLUMNS

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        f = self.rows[index.row()]
        col = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DecorationRole and col == "picture" and f.thumbnail_png:
            return qimage_from_png(f.thumbnail_png).scaled(48, 48)
        if role == Qt.ItemDataRole.UserRole:
            return f.id
        if role == Qt.ItemDataRole.ToolTipRole and col in ("prompt", "reviewer", "notes"):
            # the whole text, which the column may cut; escaped, as Qt takes a tooltip with a tag for markup
            return plain_tooltip(getattr(f, col))
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        return {
            "id": f.id,
            "picture": "",
            "prompt": f.subject,  # a query image has no prompt: its file name
            "seed": f.seed if f.kind != "query" else "—",
            "label": LABEL_WORDS.get(f.label, f.label),
            "suggested": f.suggested_verdict or "",
            "nearest tiled l2": "" if f.nearest_tiled_l2 is None else f"{f.nearest_tiled_l2:.3f}",
            "reviewer": f.reviewer,
            "notes": f.notes,
            "updated": (f.updated_at or "")[:19].replace("T", " "),
        }[col]

    def update_row(self, row: object) -> None:
        """One finding changed (its label, notes or reviewer): redraw its row."""
        k = self.row_of(getattr(row, "id", None))
        if k is not None:
            self.rows[k] = row
            self.dataChanged.emit(self.index(k, 0), self.index(k, len(COLUMNS) - 1))


class FindingsTable(QTableView):
    """The findings, one a row; Enter agrees with the selected finding's suggestion."""

    agree_requested = Signal()

    def keyPressEvent(self, event) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not event.modifiers():
            self.agree_requested.emit()
            return
        super().keyPressEvent(event)


def event_words(event) -> str:
    """One label event in a line: when, what, who, and its note."""
    when = (event.created_at or "")[:19].replace("T", " ")
    who = f" by {event.reviewer}" if event.reviewer else ""
    label = LABEL_WORDS.get(event.label, event.label)
    was = LABEL_WORDS.get(event.previous_label or "", event.previous_label or "")
    text = {
        "record": f"recorded ({label})",
        "label": f"labeled {label}" + (f" (was {was})" if was else ""),
        "undo": f"undone: {label} again" + (f" (was {was})" if was else ""),
        "note": "notes changed",
        "reproduce": "reproduced",
        "link": "made again by another run",
    }.get(event.action, event.action)
    note = event.note if event.action in ("label", "undo", "note") and event.note else ""
    return f"{when}  {text}{who}" + (f": {note}" if note else "")


#: The suggested verdicts the filter offers, with their words.
SUGGESTION_FILTERS = (("any suggestion", None), *((f"suggested {s}", s) for s in SUGGESTIONS))


class CasebookTab(QWidget):
    """The runs (every inspection, whatever it found) above the findings, with filters by label, suggestion,
    prompt, model, run (select a run), reviewer and text; underneath, the selected finding's comparison with its
    heatmaps and its label history, and the label bar that labels it (1 / 2 / 3, Enter agrees)."""

    open_requested = Signal(int)
    activated = Signal(int)  # double-click: open it and hand the keyboard to the labels
    reproduce_requested = Signal(int)
    export_requested = Signal()
    refresh_requested = Signal()
    filters_changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.label_filter = QComboBox()
        self.label_filter.addItem("all labels", None)
        for key in (*LABELS, UNLABELED):
            self.label_filter.addItem(LABEL_WORDS[key], key)
        self.label_filter.setToolTip("Show only findings with this label")
        self.suggestion_filter = QComboBox()
        for text, value in SUGGESTION_FILTERS:
            self.suggestion_filter.addItem(text, value)
        self.suggestion_filter.setToolTip("Show only findings the app suggested this verdict for")
        self.prompt_filter = self._choice_box("any prompt", "Show only findings of this prompt")
        self.model_filter = self._choice_box("any model", "Show only findings made by this model")
        self.reviewer_filter = self._choice_box("any reviewer", "Show only findings last labeled by this person")
        self.search = QLineEdit()
        self.search.setPlaceholderText("search prompts, notes, captions (Enter)")
        self.search.setClearButtonEnabled(True)
        self.refresh = QPushButton("Refresh")
        self.refresh.setToolTip("Read the casebook again (it is also read whenever another program writes it)")
        self.reproduce = QPushButton("Reproduce")
        self.reproduce.setToolTip("Generate the selected finding again from its record and check the pixels match")
        self.export = QPushButton("Export report…")
        self.export.setToolTip("A PDF or HTML report (or CSV, JSON) of the findings shown, or of the rows you"
                               " selected (Ctrl or Shift + click): each finding with its nearest images, distances,"
                               " heatmaps, label history and full provenance, and a manifest of hashes beside it")
        self.counts = PlainLabel("")  # names the casebook file
        self.message = PlainLabel("")  # quotes notes, reviewers, file names
        self.message.setWordWrap(True)
        bar = QHBoxLayout()
        for w in (self.label_filter, self.suggestion_filter, self.prompt_filter, self.model_filter,
                  self.reviewer_filter):
            bar.addWidget(w)
        bar.addWidget(self.search, 1)
        bar.addWidget(self.refresh)
        bar.addWidget(self.reproduce)
        bar.addWidget(self.export)
        self.run_id: int | None = None  # show only this run's findings
        self.runs_model = RunsModel(self)
        self.runs_table = QTableView()
        self.runs_table.setModel(self.runs_model)
        self.runs_table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.runs_table.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        self.runs_table.verticalHeader().setVisible(False)
        self.runs_table.horizontalHeader().setStretchLastSection(True)
        self.runs_table.setToolTip("Every inspection, whatever it found; select one to see the findings it made")
        self.all_runs = QPushButton("All findings")
        self.all_runs.setToolTip("Show the findings of every run again")
        self.all_runs.setEnabled(False)
        self.runs_note = PlainLabel("")
        runs_bar = QHBoxLayout()
        runs_bar.addWidget(QLabel("<b>Runs</b>"))
        runs_bar.addWidget(self.runs_note, 1)
        runs_bar.addWidget(self.all_runs)
        runs_box = QWidget()
        runs_layout = QVBoxLayout(runs_box)
        runs_layout.setContentsMargins(0, 0, 0, 0)
        runs_layout.addLayout(runs_bar)
        runs_layout.addWidget(self.runs_table, 1)
        self.model = FindingsModel(self)
        self.table = FindingsTable()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        # Several rows may be selected (Ctrl / Shift + click) to export just those; the current row is the one shown.
        self.table.setSelectionMode(QTableView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setDefaultSectionSize(52)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setColumnWidth(2, 260)
        self.table.setAccessibleName("Findings")
        self.comparison = ComparisonPanel()
        self.history = QListWidget()
        self.history.setAccessibleName("Label history of the selected finding")
        self.history.setToolTip("Every event of the selected finding, oldest first: the casebook never forgets one")
        self.history.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.history.setWordWrap(True)  # an event's line is long: when, what, who, its note
        self.history.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        history_box = QWidget()
        hl = QVBoxLayout(history_box)
        hl.setContentsMargins(0, 0, 0, 0)
        hl.addWidget(QLabel("<b>Label history</b>"))
        hl.addWidget(self.history, 1)
        history_box.setMinimumWidth(260)
        detail = QSplitter(Qt.Orientation.Horizontal)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.comparison)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        detail.addWidget(scroll)
        detail.addWidget(history_box)
        detail.setStretchFactor(0, 3)
        detail.setStretchFactor(1, 1)
        self.detail_splitter = detail
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(runs_box)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(detail)
        self.splitter.setSizes([90, 170, 330])
        self.label_bar = LabelBar()
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.counts)
        lay.addWidget(self.splitter, 1)
        lay.addWidget(self.label_bar)
        lay.addWidget(self.message)
        self.refresh.clicked.connect(self.refresh_requested)
        for box in (self.label_filter, self.suggestion_filter, self.prompt_filter, self.model_filter,
                    self.reviewer_filter):
            box.currentIndexChanged.connect(self._filter_changed)
        self.search.returnPressed.connect(self._filter_changed)
        self.search.textChanged.connect(lambda text: text or self._filter_changed())  # the clear button
        self.export.clicked.connect(self.export_requested)
        self.reproduce.clicked.connect(self._reproduce)
        self.table.selectionModel().currentRowChanged.connect(self._row_changed)
        self.table.doubleClicked.connect(self._double_clicked)
        self.runs_table.selectionModel().currentRowChanged.connect(self._run_changed)
        self.all_runs.clicked.connect(lambda: self.show_run(None))
        self._resetting_runs = False
        self._quiet = False  # the window selecting a row for the model: not the person's choice

    @staticmethod
    def _choice_box(anything: str, tip: str) -> QComboBox:
        box = QComboBox()
        box.addItem(anything, None)
        box.setToolTip(tip)
        box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        box.setMinimumContentsLength(12)
        return box

    def set_choices(self, choices: dict[str, list[str]]) -> None:
        """The values the prompt, model and reviewer filters offer (those present in the casebook), keeping what
        is chosen."""
        for key, box in (("prompt", self.prompt_filter), ("model", self.model_filter),
                         ("reviewer", self.reviewer_filter)):
            current = box.currentData()
            values = list(choices.get(key, []))
            if current is not None and current not in values:
                values.append(current)
            if [box.itemData(k) for k in range(1, box.count())] == values:
                continue
            box.blockSignals(True)
            try:
                while box.count() > 1:
                    box.removeItem(1)
                for value in values:
                    box.addItem(value, value)
                    box.setItemData(box.count() - 1, plain_tooltip(value), Qt.ItemDataRole.ToolTipRole)
                box.setCurrentIndex(max(0, box.findData(current)) if current is not None else 0)
            finally:
                box.blockSignals(False)

    def _filter_changed(self, *_args) -> None:
        self.filters_changed.emit()

    def filters(self) -> dict:
        """The filters as ``InspectorModel.set_filters`` takes them (None: any)."""
        return {"label": self.label_filter.currentData(), "suggested": self.suggestion_filter.currentData(),
                "prompt": self.prompt_filter.currentData(), "model": self.model_filter.currentData(),
                "reviewer": self.reviewer_filter.currentData(), "text": self.search.text().strip() or None,
                "run_id": self.run_id}

    def set_runs(self, runs: list) -> None:
        """Show these runs (newest first), keeping the run being shown selected."""
        self._resetting_runs = True  # a model reset moves the selection: not the person's choice
        try:
            self.runs_model.set_rows(runs)
            row = self.runs_model.row_of(self.run_id)
            if row is not None:
                self.runs_table.selectRow(row)
        finally:
            self._resetting_runs = False
        unfinished = sum(1 for r in runs if not r.finished)
        self.runs_note.setText(f"{len(runs)} run{'' if len(runs) == 1 else 's'}" + (f", {unfinished} not finished" if unfinished else "")
                               + (f" · showing the findings of run #{self.run_id}" if self.run_id is not None else ""))

    def set_rows(self, rows: list, selected_id: int | None) -> None:
        """Show these findings, keeping ``selected_id`` selected when it is among them."""
        self._quiet = True
        try:
            self.model.set_rows(rows)
            self.select_id(selected_id)
        finally:
            self._quiet = False

    def select_id(self, finding_id: int | None) -> None:
        """Select the row of ``finding_id`` (when listed) without asking to open it again."""
        row = self.model.row_of(finding_id)
        quiet, self._quiet = self._quiet, True
        try:
            if row is None:
                self.table.selectionModel().clearCurrentIndex()
                self.table.clearSelection()
            else:
                index = self.model.index(row, 0)
                self.table.setCurrentIndex(index)
                self.table.scrollTo(index)
        finally:
            self._quiet = quiet

    def show_history(self, events: list) -> None:
        self.history.clear()
        for event in events:
            self.history.addItem(event_words(event))
        if events:
            self.history.scrollToBottom()

    def show_run(self, run_id: int | None) -> None:
        """Show only the findings of run ``run_id`` (None: of every run)."""
        self.run_id = run_id
        self.all_runs.setEnabled(run_id is not None)
        if run_id is None:
            self._resetting_runs = True
            try:
                self.runs_table.clearSelection()
            finally:
                self._resetting_runs = False
        self.filters_changed.emit()

    def _run_changed(self, current: QModelIndex, _prev: QModelIndex) -> None:
        if not self._resetting_runs and current.isValid():
            self.show_run(current.data(Qt.ItemDataRole.UserRole))

    def selected_id(self) -> int | None:
        idx = self.table.currentIndex()
        return idx.data(Qt.ItemDataRole.UserRole) if idx.isValid() else None

    def selected_ids(self) -> list[int]:
        """The findings of the selected rows, in the table's order."""
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [self.model.rows[r].id for r in rows if r < len(self.model.rows)]

    def shown_ids(self) -> list[int]:
        """The findings the filters show, in the table's order."""
        return [row.id for row in self.model.rows]

    def export_ids(self) -> tuple[list[int], str]:
        """What Export writes: the selected rows when more than one is selected, else every finding shown; with
        it, those words ("3 selected findings", "12 findings shown")."""
        chosen = self.selected_ids()
        if len(chosen) > 1:
            return chosen, f"{len(chosen)} selected findings"
        shown = self.shown_ids()
        return shown, f"{len(shown)} finding{'' if len(shown) == 1 else 's'} shown"

    def _row_changed(self, current: QModelIndex, _prev: QModelIndex) -> None:
        if current.isValid() and not self._quiet:
            self.open_requested.emit(current.data(Qt.ItemDataRole.UserRole))

    def _double_clicked(self, index: QModelIndex) -> None:
        if index.isValid():
            self.activated.emit(index.data(Qt.ItemDataRole.UserRole))

    def _reproduce(self) -> None:
        fid = self.selected_id()
        if fid is not None:
            self.reproduce_requested.emit(fid)
