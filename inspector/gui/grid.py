"""The generation grid: an item view over a model (no widget per image), filling as images arrive."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QRect, QSize, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QFont, QImage, QPainter, QPen
from PySide6.QtWidgets import QListView, QStyle, QStyledItemDelegate, QStyleOptionViewItem

from inspector.findings import LABEL_WORDS, UNLABELED
from inspector.gui.images import qimage_from_array
from inspector.gui.plain import plain_tooltip
from inspector.gui.style import VERDICT_COLOURS, VERDICT_WORDS
from inspector.inspector_model import grid_sort_key
from inspector.provenance import QUERY_KIND, finding_kind

ItemRole = Qt.ItemDataRole.UserRole + 1
NearestRole = Qt.ItemDataRole.UserRole + 2
PositionRole = Qt.ItemDataRole.UserRole + 3
PendingRole = Qt.ItemDataRole.UserRole + 4  # a label is on its way to the casebook
CELL = 132
THUMB = 112


class GenerationModel(QAbstractListModel):
    """One row per generation of the current run. Items are ``inspector.session.Inspected``."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._items: list[Any] = []
        self._images: list[QImage] = []
        self.is_pending = lambda _item: False  # the window passes InspectorModel.is_pending

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._items)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._items):
            return None
        item = self._items[index.row()]
        if role == ItemRole:
            return item
        if role == Qt.ItemDataRole.DecorationRole:
            return self._images[index.row()]
        if role == NearestRole:
            return item.nearest_tiled_l2
        if role == PositionRole:
            return item.position
        if role == PendingRole:
            return self.is_pending(item)
        if role == Qt.ItemDataRole.DisplayRole:
            return tile_name(item)
        if role == Qt.ItemDataRole.ToolTipRole:
            return plain_tooltip(item.tooltip())  # quotes the reason, which a casebook file may hold as anything
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return f"{tile_name(item)}, {item.suggestion.verdict}, label {item.label}"
        return None

    def clear(self) -> None:
        self.beginResetModel()
        self._items.clear()
        self._images.clear()
        self.endResetModel()

    def append(self, item) -> None:
        row = len(self._items)
        self.beginInsertRows(QModelIndex(), row, row)
        self._items.append(item)
        self._images.append(qimage_from_array(item.image))
        self.endInsertRows()

    def item_changed(self, item) -> None:
        row = next((k for k, i in enumerate(self._items) if i is item), None)
        if row is None:  # not in this run (a finding of the Casebook view)
            return
        idx = self.index(row)
        self.dataChanged.emit(idx, idx)

    def items(self) -> list[Any]:
        return list(self._items)


def tile_name(item: Any) -> str:
    """A tile's name: its seed (how a generation is named and made again), or a searched image's file name."""
    if finding_kind(getattr(item, "provenance", None)) == QUERY_KIND:
        return str(item.provenance.get("file_name", ""))
    return f"seed {item.seed}"


def tile_caption(item: Any, pending: bool = False) -> str:
    """The words under a tile: its name always (:func:`tile_name`), then its label once it has one, or that the
    label is being saved."""
    if item.label != UNLABELED:
        return f"{tile_name(item)} ✓ {LABEL_WORDS[item.label]}"
    return tile_name(item) + (" · saving…" if pending else "")


class GenerationDelegate(QStyledItemDelegate):
    """Paints the picture, a verdict badge with its word and nearest distance, and the person's label."""

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        return QSize(CELL, CELL + 16)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        item = index.data(ItemRole)
        image: QImage = index.data(Qt.ItemDataRole.DecorationRole)
        painter.save()
        rect = option.rect.adjusted(4, 4, -4, -4)
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(option.rect, option.palette.highlight())
        pic = QRect(rect.left() + (rect.width() - THUMB) // 2, rect.top(), THUMB, THUMB)
        if image is not None and not image.isNull():
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, image.width() * 3 > THUMB)
            painter.drawImage(pic, image)
        verdict = item.suggestion.verdict
        colour = VERDICT_COLOURS.get(verdict, VERDICT_COLOURS[None])
        badge = QRect(pic.left(), pic.bottom() - 18, pic.width(), 19)
        painter.fillRect(badge, colour)
        font = QFont(option.font)
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1))
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(Qt.GlobalColor.white)
        text = VERDICT_WORDS.get(verdict, verdict.upper())
        if item.nearest_tiled_l2 is not None:
            text += f" {item.nearest_tiled_l2:.2f}"
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, text)
        caption = QRect(rect.left(), pic.bottom() + 2, rect.width(), 16)
        font.setBold(item.label != UNLABELED)
        painter.setFont(font)
        pen = option.palette.highlightedText().color() if option.state & QStyle.StateFlag.State_Selected \
            else option.palette.text().color()
        painter.setPen(QPen(pen))
        label = tile_caption(item, bool(index.data(PendingRole)))
        painter.drawText(caption, Qt.AlignmentFlag.AlignCenter,
                         painter.fontMetrics().elidedText(label, Qt.TextElideMode.ElideRight, caption.width()))
        painter.restore()


class GenerationSortProxy(QSortFilterProxyModel):
    """The model's order (``inspector_model.grid_sort_key``): nearest distance first, or generation order."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.by_distance = True

    def lessThan(self, left: QModelIndex, right: QModelIndex) -> bool:
        return grid_sort_key(left.data(ItemRole), self.by_distance) < grid_sort_key(right.data(ItemRole),
                                                                                    self.by_distance)


class GenerationGrid(QListView):
    """Icon-mode list of generations; emits the selected item (or None), and Enter as ``agree_requested``."""

    selected = Signal(object)
    agree_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.source = GenerationModel(self)
        self.proxy = GenerationSortProxy(self)
        self.proxy.setSourceModel(self.source)
        self.proxy.setDynamicSortFilter(True)
        self.setModel(self.proxy)
        self.setItemDelegate(GenerationDelegate(self))
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setGridSize(QSize(CELL, CELL + 16))
        self.setSpacing(0)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(64)
        self.setSelectionMode(QListView.SelectionMode.SingleSelection)
        self.setAccessibleName("Generations")
        self.selectionModel().currentChanged.connect(self._current_changed)
        self.sort_by_distance(True)

    def keyPressEvent(self, event) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not event.modifiers():
            self.agree_requested.emit()  # Enter: agree with the suggestion (Ctrl+Enter still generates)
            return
        super().keyPressEvent(event)

    def sort_by_distance(self, on: bool) -> None:
        self.proxy.by_distance = on
        self.proxy.invalidate()
        self.proxy.sort(0)

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self.selected.emit(current.data(ItemRole) if current.isValid() else None)

    def current_item(self):
        idx = self.currentIndex()
        return idx.data(ItemRole) if idx.isValid() else None

    def select_item(self, item) -> None:
        for row in range(self.proxy.rowCount()):
            idx = self.proxy.index(row, 0)
            if idx.data(ItemRole) is item:
                self.setCurrentIndex(idx)
                self.scrollTo(idx)
                return

    def select_first(self) -> None:
        if self.proxy.rowCount():
            self.setCurrentIndex(self.proxy.index(0, 0))
