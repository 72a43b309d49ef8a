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
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from inspector.findings import LABEL_WORDS, LABELS, UNLABELED
from inspector.gui.comparison import ComparisonPanel
from inspector.gui.images import qimage_from_png
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


class RunsModel(QAbstractTableModel):
    """Every run, newest first: what was checked and what it found, in words."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list = []

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return len(RUN_COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return RUN_COLUMNS[section]
        return None

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

    def set_rows(self, rows: list) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()

    def row_of(self, run_id: int | None) -> int | None:
        return next((k for k, r in enumerate(self.rows) if r.id == run_id), None)


class FindingsModel(QAbstractTableModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list = []

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

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
            "prompt": f.prompt,
            "seed": f.seed,
            "label": LABEL_WORDS.get(f.label, f.label),
            "suggested": f.suggested_verdict or "",
            "nearest tiled l2": "" if f.nearest_tiled_l2 is None else f"{f.nearest_tiled_l2:.3f}",
            "reviewer": f.reviewer,
            "notes": f.notes,
            "updated": (f.updated_at or "")[:19].replace("T", " "),
        }[col]

    def set_rows(self, rows: list) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()


class CasebookTab(QWidget):
    """The runs (every inspection, whatever it found) above the findings, with label, text and run filters;
    the selected finding's comparison underneath. Selecting a run shows the findings it made."""

    open_requested = Signal(int)
    reproduce_requested = Signal(int)
    export_requested = Signal()
    refresh_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.label_filter = QComboBox()
        self.label_filter.addItem("all labels", None)
        for key in (*LABELS, UNLABELED):
            self.label_filter.addItem(LABEL_WORDS[key], key)
        self.label_filter.setToolTip("Show only findings with this label")
        self.search = QLineEdit()
        self.search.setPlaceholderText("search prompts, notes and the captions of nearest images")
        self.search.setClearButtonEnabled(True)
        self.refresh = QPushButton("Refresh")
        self.reproduce = QPushButton("Reproduce")
        self.reproduce.setToolTip("Generate the selected finding again from its record and check the pixels match")
        self.export = QPushButton("Export HTML report…")
        self.export.setToolTip("A self-contained report: each finding with its nearest images, distances, "
                               "label history and provenance")
        self.counts = PlainLabel("")  # names the casebook file
        self.message = PlainLabel("")  # quotes notes, reviewers, file names
        self.message.setWordWrap(True)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Label"))
        bar.addWidget(self.label_filter)
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
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setDefaultSectionSize(52)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setColumnWidth(2, 260)
        self.comparison = ComparisonPanel()
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(runs_box)
        split.addWidget(self.table)
        split.addWidget(self.comparison)
        split.setSizes([130, 260, 380])
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.counts)
        lay.addWidget(split, 1)
        lay.addWidget(self.message)
        self.refresh.clicked.connect(self.refresh_requested)
        self.label_filter.currentIndexChanged.connect(lambda _i: self.refresh_requested.emit())
        self.search.returnPressed.connect(self.refresh_requested)
        self.export.clicked.connect(self.export_requested)
        self.reproduce.clicked.connect(self._reproduce)
        self.table.selectionModel().currentRowChanged.connect(self._row_changed)
        self.runs_table.selectionModel().currentRowChanged.connect(self._run_changed)
        self.all_runs.clicked.connect(lambda: self.show_run(None))
        self._resetting_runs = False

    def filters(self) -> dict:
        return {"label": self.label_filter.currentData(), "text": self.search.text().strip() or None,
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
        self.runs_note.setText(f"{len(runs)} runs" + (f", {unfinished} not finished" if unfinished else "")
                               + (f" · showing the findings of run #{self.run_id}" if self.run_id is not None else ""))

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
        self.refresh_requested.emit()

    def _run_changed(self, current: QModelIndex, _prev: QModelIndex) -> None:
        if not self._resetting_runs and current.isValid():
            self.show_run(current.data(Qt.ItemDataRole.UserRole))

    def selected_id(self) -> int | None:
        idx = self.table.currentIndex()
        return idx.data(Qt.ItemDataRole.UserRole) if idx.isValid() else None

    def _row_changed(self, current: QModelIndex, _prev: QModelIndex) -> None:
        if current.isValid():
            self.open_requested.emit(current.data(Qt.ItemDataRole.UserRole))

    def _reproduce(self) -> None:
        fid = self.selected_id()
        if fid is not None:
            self.reproduce_requested.emit(fid)
