"""The Casebook tab: every finding in the casebook, filters, its comparison again, reproduce, export."""

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

from inspector.gui.comparison import ComparisonPanel
from inspector.gui.images import qimage_from_png
from inspector.gui.plain import PlainLabel, plain_tooltip
from inspector.gui.style import LABEL_WORDS

COLUMNS = ("id", "picture", "prompt", "seed", "label", "suggested", "nearest tiled l2", "reviewer", "notes", "updated")


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
    """Table of findings with label and text filters; the selected finding's comparison underneath."""

    open_requested = Signal(int)
    reproduce_requested = Signal(int)
    export_requested = Signal()
    refresh_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.label_filter = QComboBox()
        self.label_filter.addItem("all labels", None)
        for key in ("memorized", "likeness-only", "novel", "unlabeled"):
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
        split.addWidget(self.table)
        split.addWidget(self.comparison)
        split.setSizes([300, 420])
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

    def filters(self) -> dict:
        return {"label": self.label_filter.currentData(), "text": self.search.text().strip() or None}

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
