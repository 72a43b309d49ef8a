"""The Review tab: the annotator's queue (:class:`inspector.review_queue.ReviewQueue`), one finding at a time.

The finding's comparison fills the tab; 1 / 2 / 3 label it and show the next, S skips, Backspace goes back, N
types notes, Ctrl+Z undoes, H cycles the heatmaps, F5 reads the casebook again; the list beside it selects several
(Shift / Ctrl) for one label. "Walk disagreements" turns the queue to the findings reviewers disagree on (after
``casebook merge``): each reviewer's label is shown and 1 / 2 / 3 record the adjudicated label as its own event.

Every casebook read and write runs on the tab's own thread, one job at a time and in the order given (Label
Studio's submit-and-advance, without a frozen window): a key pressed while a job runs waits for it, then acts on
the finding shown. A scan writing the same casebook is picked up every :data:`REFRESH_MS` and on F5, behind the
annotator's place. A write another program holds the lock against is tried again until it goes through: a label
is never dropped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QEvent,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    Qt,
    QThreadPool,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
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

from inspector.casebook import Casebook, CasebookBusyError
from inspector.findings import LABEL_WORDS, LABELS, FindingSummary, LabelEvent, label_meaning
from inspector.gui.casebook_tab import SUGGESTION_FILTERS, event_words
from inspector.gui.comparison import ComparisonPanel
from inspector.gui.panels import CommitLineEdit
from inspector.gui.plain import PlainLabel, plain_tooltip
from inspector.gui.style import VERDICT_WORDS
from inspector.gui.workers import GeneratorWorker
from inspector.inspector_model import error_text, inspected_from_finding, neighbour_pictures
from inspector.review_queue import ORDERS, ReviewQueue

#: How often the tab looks for findings another program (a scan) wrote, in ms, while it is on screen.
REFRESH_MS = 2000
#: How long one casebook write waits for another program's lock before the tab says so and tries again (s).
BUSY_TIMEOUT_S = 2.0
#: The pause between two tries of a write the casebook refused as busy (s).
RETRY_S = 0.25
#: The most and least side of the generation and of each neighbour's picture in the tab (px): as large as the
#: tab's width allows, larger than the other tabs'.
GENERATION_SIDE = (180, 300)
NEIGHBOUR_SIDE = (120, 200)
#: The keys the tab answers (shown in its legend, the buttons and the window's Help).
KEYS = (
    ("1 / 2 / 3", "label Memorized / Likeness only / Novel and show the next"),
    ("S", "skip (it comes back at the end)"),
    ("Backspace", "back to the previous finding"),
    ("N", "notes (Enter saves)"),
    ("Ctrl+Z", "undo"),
    ("H", "heatmaps"),
    ("F5", "read the casebook again"),
    ("Shift / Ctrl + arrows or click", "select several in the list: 1 / 2 / 3 label them all"),
)
LEGEND = "Keys: " + " · ".join(f"{k} {what}" for k, what in KEYS)
QUEUE_COLUMNS = ("prompt, seed", "tiled l2", "label")


# --- the queue on the review thread (no Qt) ----------------------------------------------------------------------


@dataclass
class Shown:
    """What the tab shows, read on the review thread after each job."""

    path: str
    rows: list[FindingSummary] = field(default_factory=list)
    waiting: frozenset[int] = frozenset()
    skipped: frozenset[int] = frozenset()
    position: int = 0
    item: Any = None  # the current finding as the comparison shows it (inspector.session.Inspected)
    history: list[LabelEvent] = field(default_factory=list)
    said: dict[str, str] = field(default_factory=dict)  # adjudication: each reviewer's label
    adjudicate: bool = False
    can_undo: bool = False
    words: str = ""  # "nothing to review: ..." when the queue is empty
    runs: list[tuple[int, str]] | None = None  # (run id, in words) when read this time
    added: int = 0
    problem: str = ""

    @property
    def current(self) -> FindingSummary | None:
        return self.rows[self.position] if self.rows else None


def retrying(step: Callable[[], Any], progress: Callable[[str], None] | None = None,
             cancel: threading.Event | None = None, pause_s: float = RETRY_S) -> Any:
    """``step()``, tried again for as long as another program holds the casebook's lock (each wait said through
    ``progress``); only the window closing (``cancel``) gives up."""
    tries = 0
    while True:
        try:
            return step()
        except CasebookBusyError:
            tries += 1
            if progress is not None:
                progress(f"The casebook is busy: another program is writing it. Trying again ({tries})…")
            if cancel is not None and cancel.wait(pause_s):
                raise
            if cancel is None:
                time.sleep(pause_s)


class QueueDesk:
    """The review queue and its casebook, used from one thread at a time (the tab's review thread). Each
    action writes (tried again while the casebook is busy), then reads what the tab shows (:class:`Shown`)."""

    def __init__(self, busy_timeout_s: float = BUSY_TIMEOUT_S):
        self.busy_timeout_s = busy_timeout_s
        self.path = ""
        self.book: Casebook | None = None
        self.queue: ReviewQueue | None = None
        self.settings: dict[str, Any] = {}
        self._items: dict[int, Any] = {}  # finding id -> its decoded comparison (a few, for Back and refreshes)
        self._seen = -1  # the casebook's revision when the tab last read it

    # --- opening ------------------------------------------------------------------------------------------

    def open(self, path: str, reviewer: str, progress=None, cancel=None, *, keep: int | None = None,
             **settings: Any) -> Shown:
        """Open the queue over ``path`` with ``settings`` (order, suggestion, text, run_id, adjudicate),
        keeping finding ``keep`` on screen when it is still queued. No file yet: an empty queue that says so."""
        if path != self.path:
            self.close()
            self.path = path
        self.settings = settings
        self.queue = None
        if not Path(path).exists():
            return Shown(path, words=f"No casebook at {path} yet: findings appear here as soon as a scan or the "
                                     "Inspect tab records them.")
        if self.book is None:
            self.book = retrying(lambda: Casebook.open(path, create=False, timeout=self.busy_timeout_s),
                                 progress, cancel)
        self.queue = retrying(lambda: ReviewQueue(self.book, reviewer, **settings), progress, cancel)
        if keep is not None and keep in self.queue.ids:
            self.queue.go_to(keep)
        return self.shown(progress, cancel, runs=True)

    def close(self) -> None:
        if self.book is not None:
            self.book.close()
        self.book, self.queue, self._items = None, None, {}

    # --- actions ------------------------------------------------------------------------------------------

    def refresh(self, reviewer: str, progress=None, cancel=None, *, force: bool = False) -> Shown | None:
        """New findings another program wrote join the queue behind the annotator's place (an annotator who had
        labeled everything is taken to the first new one); None when the casebook did not change (unless
        ``force``)."""
        if self.queue is None:
            return self.open(self.path, reviewer, progress, cancel, **self.settings) if Path(self.path).exists() \
                else None
        q = self.queue
        revision = retrying(self.book.revision, progress, cancel)
        if revision == self._seen and not force:
            return None
        finished = q.left == 0
        added = retrying(q.refresh, progress, cancel)
        if added and finished and q.current is not None and not q.needs_label(q.current.id):
            q.advance()
        shown = self.shown(progress, cancel, runs=bool(added))
        shown.added = added
        self._seen = revision
        return shown

    def label(self, label: str, ids: list[int], reviewer: str, progress=None, cancel=None) -> Shown:
        """Label the current finding and go on (``ids`` empty), or give each of ``ids`` the label (each its own
        event, each tried again while busy), then go on when the current one is among them."""
        q = self._queue()
        q.reviewer = reviewer
        if len(ids) <= 1 and (not ids or q.current is not None and ids[0] == q.current.id):
            retrying(lambda: q.label(label), progress, cancel)
        else:
            for fid in ids:
                retrying(lambda fid=fid: q.label_many([fid], label), progress, cancel)
            if q.current is not None and not q.needs_label(q.current.id):
                q.advance()
        return self.shown(progress, cancel)

    def move(self, how: str, finding_id: int | None = None, progress=None, cancel=None) -> Shown:
        """skip, back, or go (to ``finding_id``)."""
        q = self._queue()
        if how == "skip":
            q.skip()
        elif how == "back":
            q.back()
        elif finding_id is not None and finding_id in q.ids:
            q.go_to(finding_id)
        return self.shown(progress, cancel)

    def notes(self, text: str, reviewer: str, progress=None, cancel=None) -> Shown:
        q = self._queue()
        q.reviewer = reviewer
        retrying(lambda: q.set_notes(text), progress, cancel)
        return self.shown(progress, cancel)

    def undo(self, reviewer: str, progress=None, cancel=None) -> Shown:
        q = self._queue()
        q.reviewer = reviewer
        retrying(q.undo, progress, cancel)
        return self.shown(progress, cancel)

    def _queue(self) -> ReviewQueue:
        if self.queue is None:
            raise RuntimeError("no casebook is open in the Review tab")
        return self.queue

    # --- what the tab shows -------------------------------------------------------------------------------

    def shown(self, progress=None, cancel=None, runs: bool = False) -> Shown:
        return retrying(lambda: self._shown(runs), progress, cancel)

    def _shown(self, runs: bool) -> Shown:
        q, book = self._queue(), self.book
        self._seen = book.revision()
        rows = q.summaries()
        shown = Shown(self.path, rows=rows, waiting=frozenset(s.id for s in rows if q.needs_label(s.id)),
                      skipped=frozenset(q.skipped), position=q.position, adjudicate=q.adjudicate,
                      can_undo=q.can_undo, words=q.in_words())
        current = q.current
        if current is not None:
            item = self._items.get(current.id)
            if item is None:
                item = inspected_from_finding(book.get(current.id))
                if len(self._items) > 16:
                    self._items.pop(next(iter(self._items)))
                self._items[current.id] = item
            item.label, item.notes = current.label, current.notes
            shown.item = item
            shown.history = book.label_history(current.id)
            found = q.disagreement(current.id)
            shown.said = dict(found.labels) if found is not None else {}
        if runs:
            shown.runs = [(r.id, r.in_words()) for r in book.runs(descending=True, limit=300)]
        return shown


# --- the tab (Qt) ------------------------------------------------------------------------------------------------


class QueueModel(QAbstractTableModel):
    """The queue, one finding a row, in the queue's order: waiting ones in full colour, labeled ones grey (and
    the label column says which)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[FindingSummary] = []
        self.waiting: frozenset[int] = frozenset()
        self.skipped: frozenset[int] = frozenset()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return len(QUEUE_COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return QUEUE_COLUMNS[section]
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        s = self.rows[index.row()]
        if role == Qt.ItemDataRole.UserRole:
            return s.id
        if role == Qt.ItemDataRole.ToolTipRole:
            suggested = VERDICT_WORDS.get(s.suggested_verdict, s.suggested_verdict or "").lower()
            return plain_tooltip(f"finding #{s.id}: {s.prompt}, seed {s.seed}\nsuggested: {suggested}\n"
                                 f"{self._state_words(s)}")
        if role == Qt.ItemDataRole.ForegroundRole and s.id not in self.waiting:
            return QColor(130, 130, 130)
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        return {
            "prompt, seed": f"{s.prompt}, {s.seed}",
            "tiled l2": "" if s.nearest_tiled_l2 is None else f"{s.nearest_tiled_l2:.3f}",
            "label": self._state_words(s),
        }[QUEUE_COLUMNS[index.column()]]

    def _state_words(self, s: FindingSummary) -> str:
        if s.id in self.waiting:
            return "skipped" if s.id in self.skipped else "waiting"
        return LABEL_WORDS.get(s.label, s.label)

    def set_shown(self, shown: Shown) -> None:
        """Show the queue in ``shown``, keeping the selection when the rows are the same or only appended."""
        old = [s.id for s in self.rows]
        new = [s.id for s in shown.rows]
        self.waiting, self.skipped = shown.waiting, shown.skipped
        if new == old:
            self.rows = list(shown.rows)
            if self.rows:
                self.dataChanged.emit(self.index(0, 0), self.index(len(self.rows) - 1, len(QUEUE_COLUMNS) - 1))
        elif new[:len(old)] == old:
            if old:
                self.rows[:] = shown.rows[:len(old)]
                self.dataChanged.emit(self.index(0, 0), self.index(len(old) - 1, len(QUEUE_COLUMNS) - 1))
            self.beginInsertRows(QModelIndex(), len(old), len(new) - 1)
            self.rows = list(shown.rows)
            self.endInsertRows()
        else:
            self.beginResetModel()
            self.rows = list(shown.rows)
            self.endResetModel()


class NotesDialog(QDialog):
    """N: the finding's notes in one line; Enter saves, Escape keeps the saved ones."""

    def __init__(self, finding_id: int, notes: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Notes for finding #{finding_id}")
        self.text = QLineEdit(notes)
        self.text.setToolTip("What you saw: it is saved in the casebook's history under your name.")
        self.text.selectAll()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Save).setToolTip("Save the notes (Enter)")
        buttons.button(QDialogButtonBox.StandardButton.Cancel).setToolTip("Keep the saved notes (Escape)")
        buttons.button(QDialogButtonBox.StandardButton.Save).setDefault(True)
        self.text.returnPressed.connect(self.accept)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(PlainLabel("Notes (Enter saves, Escape cancels)"))
        lay.addWidget(self.text)
        lay.addWidget(buttons)
        self.resize(520, self.sizeHint().height())


class ReviewComparison(ComparisonPanel):
    """The comparison panel at the Review tab's size: the generation and its neighbours as large as the width
    allows (:meth:`fit`), all four neighbours on screen from a 1366 px wide window up."""

    def fit(self, width: int) -> bool:
        """Size the pictures for ``width`` px; True when they changed (the caller shows the finding again)."""
        # The panel is the generation's column, four cards (picture + 14 px frame) and about 50 px of spacing.
        side = max(NEIGHBOUR_SIDE[0], min(NEIGHBOUR_SIDE[1], int((width - 106) / 5.45)))
        gen = max(GENERATION_SIDE[0], min(GENERATION_SIDE[1], int(side * 1.45)))
        if (gen, side) == (self.GEN_SIDE, self.cards[0].SIDE):
            return False
        self.GEN_SIDE = gen
        self.generation.setFixedSize(gen, gen)
        self.generation.parentWidget().setFixedWidth(gen + 8)
        for label in (self.verdict, self.details, self.searched):
            label.setMaximumWidth(gen)
        for card in self.cards:
            card.SIDE = side
            card.picture.setFixedSize(side, side)
        return True


class _FitScroll(QScrollArea):
    """A scroll area that tells ``fitted(width)`` its width whenever it changes."""

    def __init__(self, fitted: Callable[[int], None]):
        super().__init__()
        self._fitted = fitted

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._fitted(self.viewport().width())


class ReviewTab(QWidget):
    """The annotator's queue over the window's casebook (``model.casebook_path``), labeled by
    ``model.reviewer``; ``ensure_reviewer()`` asks for a name once when there is none (False: not labeled)."""

    state_shown = Signal()  # a job's result is on screen
    finding_shown = Signal(int)  # a finding (its id) is now the one on screen, comparison and all
    views_shown = Signal()  # the finding on screen has its heatmaps (or a note why not)
    mode_changed = Signal(bool)  # walking disagreements (True) or the unlabeled findings (False)
    problem_shown = Signal(str)

    def __init__(self, model, ensure_reviewer: Callable[[], bool] | None = None, *,
                 busy_timeout_s: float = BUSY_TIMEOUT_S, refresh_ms: int = REFRESH_MS, parent=None):
        super().__init__(parent)
        self.model = model
        self.ensure_reviewer = ensure_reviewer or (lambda: bool(self.model.reviewer.strip()))
        self.desk = QueueDesk(busy_timeout_s)
        self.shown: Shown | None = None
        self._shown_id: int | None = None
        self._pool = QThreadPool(self)  # the review thread: one job at a time, in order
        self._pool.setMaxThreadCount(1)
        self._pictures = QThreadPool(self)  # heatmaps, apart: a label never waits for a picture
        self._pictures.setMaxThreadCount(1)
        self._alive: set[GeneratorWorker] = set()
        self._busy = False
        self._pending: deque[Callable[[], None]] = deque()
        self._picture_request = 0
        self._quiet = False  # the tab moving the list to the queue's place: not the person's choice
        self._closing = False
        self.notes_dialog: NotesDialog | None = None
        self._views: tuple | None = None  # the heatmaps of the finding on screen, once drawn
        self._build()
        self._timer = QTimer(self)
        self._timer.setInterval(refresh_ms)
        self._timer.timeout.connect(self._tick)
        self.model.events.reviewer_changed.connect(self._reviewer_changed)
        self.model.events.sources_changed.connect(self._sources_changed)
        self.model.events.heatmap_mode.connect(self.comparison.show_mode)
        self._route_keys()

    # --- building ---------------------------------------------------------------------------------------------

    def _build(self) -> None:
        self.reviewer = CommitLineEdit(self.model.reviewer)
        self.reviewer.setPlaceholderText("your name")
        self.reviewer.setMaximumWidth(150)
        self.reviewer.setToolTip("Your name: it goes with every label you give here, in the casebook's history. "
                                 "Enter saves it.")
        self.reviewer.committed.connect(self.model.set_reviewer)
        self.reviewer.editingFinished.connect(lambda: self.model.set_reviewer(self.reviewer.text()))
        self.reviewer.done.connect(lambda: self.list.setFocus())
        self.order = QComboBox()
        for key, words in ORDERS.items():
            self.order.addItem(words, key)
        self.order.setToolTip("The order findings come in. New ones a scan writes join at the end whatever the "
                              "order, so your place never moves.")
        self.suggestion = QComboBox()
        for text, value in SUGGESTION_FILTERS:
            self.suggestion.addItem(text, value)
        self.suggestion.setToolTip("Only findings the app suggested this verdict for (the label stays yours)")
        self.run = QComboBox()
        self.run.addItem("any run", None)
        self.run.setToolTip("Only findings made by this run (one prompt of a scan, or one inspection)")
        self.run.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.run.setMinimumContentsLength(14)
        self.search = QLineEdit()
        self.search.setPlaceholderText("search prompts (Enter)")
        self.search.setClearButtonEnabled(True)
        self.search.setToolTip("Only findings whose prompt, notes or captions hold these words; Enter applies")
        self.walk = QCheckBox("Walk disagreements")
        self.walk.setToolTip("After `inspector casebook merge`: go through the findings reviewers labeled "
                             "differently, see what each said, and give the deciding label (recorded as its own "
                             "event, marked adjudicated)")
        self.refresh = QPushButton("Refresh  F5")
        self.refresh.setToolTip("Read the casebook again now (it is read every few seconds anyway, so findings a "
                                "scan writes appear at the end of the queue)")
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Reviewer"))
        bar.addWidget(self.reviewer)
        bar.addWidget(QLabel("Order"))
        bar.addWidget(self.order)
        bar.addWidget(self.suggestion)
        bar.addWidget(self.run)
        bar.addWidget(self.search, 1)
        bar.addWidget(self.walk)
        bar.addWidget(self.refresh)

        self.queue_model = QueueModel(self)
        self.list = QTableView()
        self.list.setModel(self.queue_model)
        self.list.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.list.verticalHeader().setVisible(False)
        self.list.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.list.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.list.horizontalHeader().setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.list.setWordWrap(False)  # one line a finding; the tooltip has the whole prompt
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # the prompt is elided
        self.list.verticalHeader().setDefaultSectionSize(self.list.fontMetrics().height() + 8)
        self.list.setAccessibleName("Review queue")
        self.list.setToolTip("The queue in order. Arrow keys move; Shift or Ctrl with the arrows (or a click) "
                             "selects several, and 1 / 2 / 3 then labels them all at once.")
        self.list.selectionModel().currentRowChanged.connect(self._row_changed)
        self.list.setMinimumWidth(240)

        self.place = QLabel()  # "3 of 20"
        self.place.setStyleSheet("font-size: 16pt; font-weight: bold")
        self.place.setToolTip("Where you are in the queue: this finding's place and how many are queued")
        self.left = QLabel()
        self.left.setStyleSheet("font-size: 13pt")
        self.left.setToolTip("How many queued findings still wait for a label (skipped ones included)")
        self.state = PlainLabel("")  # the finding's label and prompt (a prompt is data)
        self.state.setWordWrap(True)
        self.state.setToolTip("The finding on screen: its prompt and seed, and its label as the casebook has it")
        self.said = PlainLabel("")  # reviewers' names are data
        self.said.setWordWrap(True)
        self.said.setStyleSheet("background: #fff3cd; color: #533f03; padding: 4px")
        self.said.setToolTip("What each reviewer's standing label is for this finding; your 1 / 2 / 3 decides")
        self.said.setVisible(False)
        head = QHBoxLayout()
        head.addWidget(self.place)
        head.addSpacing(12)
        head.addWidget(self.left)
        head.addSpacing(12)
        head.addWidget(self.state, 1)
        self.comparison = ReviewComparison()
        self.comparison.setToolTip("The finding beside its four nearest indexed images, with distances; H cycles "
                                   "the heatmaps")
        scroll = _FitScroll(self._fit_comparison)
        scroll.setWidget(self.comparison)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.history = QListWidget()
        self.history.setToolTip("Every event of this finding, oldest first: the casebook never forgets one")
        self.history.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.history.setWordWrap(True)  # an event's line is long: when, what, who, its note
        self.history.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.history.setAccessibleName("History of the finding on screen")
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addLayout(head)
        rl.addWidget(self.said)
        rl.addWidget(scroll, 1)
        # The queue and, under it, the history of the finding on screen: the comparison keeps the height.
        history_box = QWidget()
        hl = QVBoxLayout(history_box)
        hl.setContentsMargins(0, 0, 0, 0)
        hl.addWidget(QLabel("<b>History of this finding</b>"))
        hl.addWidget(self.history, 1)
        self.left_splitter = QSplitter(Qt.Orientation.Vertical)
        self.left_splitter.addWidget(self.list)
        self.left_splitter.addWidget(history_box)
        self.left_splitter.setStretchFactor(0, 3)
        self.left_splitter.setStretchFactor(1, 1)
        self.left_splitter.setChildrenCollapsible(False)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.left_splitter)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 4)
        self.splitter.setSizes([300, 1100])

        self.buttons: dict[str, QPushButton] = {}
        keys = QHBoxLayout()
        for k, label in enumerate(LABELS, start=1):
            meaning = label_meaning(label)
            self._button(keys, label, f"{k}  {LABEL_WORDS[label]}",
                         f"{meaning[0].upper()}{meaning[1:]}: label the finding (or every selected one) and show "
                         "the next", lambda lab=label: self._act(lambda: self.press_label(lab)))
        self._button(keys, "skip", "S  Skip", "Leave this finding for later: it comes back after the others",
                     lambda: self._act(lambda: self._move("skip")))
        self._button(keys, "back", "Backspace  Back", "Back to the previous finding in the queue, labeled or not",
                     lambda: self._act(lambda: self._move("back")))
        self._button(keys, "notes", "N  Notes…", "Type notes for this finding (Enter saves)",
                     lambda: self._act(self.edit_notes))
        self._button(keys, "undo", "Ctrl+Z  Undo", "Take back your last label or notes given here (the casebook "
                     "keeps both in the history)", lambda: self._act(self.press_undo))
        keys.addStretch(1)
        self.legend = PlainLabel(LEGEND)
        self.legend.setWordWrap(True)
        self.legend.setStyleSheet("color: #555")
        self.legend.setToolTip("Every key works while the queue list has the keyboard (it takes it when the tab "
                               "opens); the mouse is never needed")
        self.message = PlainLabel("")  # quotes file names and errors
        self.message.setWordWrap(True)
        self.message.setToolTip("What the tab last did or could not do")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(bar)
        lay.addWidget(self.splitter, 1)
        lay.addLayout(keys)
        lay.addWidget(self.legend)
        lay.addWidget(self.message)

        self.order.currentIndexChanged.connect(self.reopen)
        self.suggestion.currentIndexChanged.connect(self.reopen)
        self.run.currentIndexChanged.connect(self.reopen)
        self.search.returnPressed.connect(self.reopen)
        self.search.textChanged.connect(lambda text: text or self.reopen())  # the clear button
        self.walk.toggled.connect(self._walk_toggled)
        self.refresh.clicked.connect(lambda: self._act(self.refresh_now))

    def _button(self, row: QHBoxLayout, key: str, text: str, tip: str, slot) -> None:
        b = QPushButton(text)
        b.setToolTip(tip)
        b.setCheckable(key in LABELS)
        b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # a click leaves the keyboard on the queue
        b.clicked.connect(lambda _=False: slot())
        row.addWidget(b)
        self.buttons[key] = b

    # --- keys --------------------------------------------------------------------------------------------------

    def _route_keys(self) -> None:
        """The tab's keys win over the window's menu shortcuts of the same keys (which act on the other tabs),
        in every control of the tab except where text is typed."""
        self._keys = _TabKeys(self)
        for w in [self, *self.findChildren(QWidget)]:
            if not isinstance(w, QLineEdit):
                w.installEventFilter(self._keys)

    def key_action(self, event) -> Callable[[], None] | None:
        """What a key press does in the tab, or None when it is not the tab's."""
        key, mods = event.key(), event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        if event.matches(QKeySequence.StandardKey.Undo) or (key == Qt.Key.Key_Z
                                                            and mods == Qt.KeyboardModifier.ControlModifier):
            return self.press_undo
        if mods != Qt.KeyboardModifier.NoModifier:
            return None
        labels = {Qt.Key.Key_1: LABELS[0], Qt.Key.Key_2: LABELS[1], Qt.Key.Key_3: LABELS[2]}
        if key in labels:
            return lambda: self.press_label(labels[key])
        return {Qt.Key.Key_S: lambda: self._move("skip"), Qt.Key.Key_Backspace: lambda: self._move("back"),
                Qt.Key.Key_N: self.edit_notes, Qt.Key.Key_F5: self.refresh_now,
                Qt.Key.Key_H: self.model.cycle_heatmap}.get(key)

    # --- jobs --------------------------------------------------------------------------------------------------

    def _act(self, action: Callable[[], None]) -> None:
        """Do ``action`` now, or once the job running has shown its result (keys keep their order)."""
        if self._busy:
            self._pending.append(action)
        else:
            action()

    @property
    def idle(self) -> bool:
        """No job running or waiting: what is on screen is what the casebook said last."""
        return not self._busy and not self._pending

    def _submit(self, job: Callable[..., Shown | None], reselect: bool = True) -> GeneratorWorker:
        self._busy = True
        worker = GeneratorWorker(lambda cancel=None, progress=None: job(progress=progress, cancel=cancel))
        worker.signals.returned.connect(lambda shown: self._show(shown, reselect))
        worker.signals.errored.connect(self._failed)
        worker.signals.progress.connect(self.message.setText)
        worker.signals.finished.connect(lambda: self._job_done(worker))
        self._alive.add(worker)
        self._pool.start(worker)
        return worker

    def _job_done(self, worker: GeneratorWorker) -> None:
        self._alive.discard(worker)
        self._busy = False
        if self._pending and not self._closing:
            self._pending.popleft()()

    def _failed(self, exc: BaseException) -> None:
        text = error_text(exc)
        self.message.setText(f"Problem: {text}")
        self.problem_shown.emit(text)

    def _settings(self) -> dict[str, Any]:
        return {"order": self.order.currentData(), "suggestion": self.suggestion.currentData(),
                "text": self.search.text().strip() or None, "run_id": self.run.currentData(),
                "adjudicate": self.walk.isChecked()}

    def reopen(self, *_args) -> None:
        """Build the queue again with the filters and order chosen, keeping the finding on screen."""
        keep = self.shown.current.id if self.shown and self.shown.current else None
        path, reviewer, settings = self.model.casebook_path, self.model.reviewer, self._settings()
        self._act(lambda: self._submit(lambda progress, cancel: self.desk.open(
            path, reviewer, progress, cancel, keep=keep, **settings)))

    def refresh_now(self, force: bool = True) -> None:
        """F5: read the casebook again (the timer does it every few seconds when the casebook changed)."""
        reviewer = self.model.reviewer
        self._submit(lambda progress, cancel: self.desk.refresh(reviewer, progress, cancel, force=force),
                     reselect=False)

    def _tick(self) -> None:
        if not self._busy and not self._pending and self.isVisible():
            self.refresh_now(force=False)

    def press_label(self, label: str) -> None:
        """1 / 2 / 3: label the finding on screen (or every selected one) and show the next."""
        if self.shown is None or self.shown.current is None:
            return
        if not self.ensure_reviewer():
            self.message.setText("Not labeled: a label needs your name (Reviewer, top left)")
            return
        chosen = self.selected_ids()
        ids = chosen if len(chosen) > 1 else []
        reviewer = self.model.reviewer
        self._submit(lambda progress, cancel: self.desk.label(label, ids, reviewer, progress, cancel))

    def _move(self, how: str, finding_id: int | None = None) -> None:
        if self.shown is None or self.shown.current is None:
            return
        self._submit(lambda progress, cancel: self.desk.move(how, finding_id, progress, cancel),
                     reselect=how != "go")

    def press_undo(self) -> None:
        if self.shown is None or not self.shown.can_undo:
            self.message.setText("Nothing to undo here yet.")
            return
        reviewer = self.model.reviewer
        self._submit(lambda progress, cancel: self.desk.undo(reviewer, progress, cancel))

    def edit_notes(self) -> NotesDialog | None:
        """N: the notes dialog for the finding on screen (Enter saves); returned for tests."""
        current = self.shown.current if self.shown else None
        if current is None:
            return None
        dialog = NotesDialog(current.id, current.notes, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self._act(lambda: self._save_notes(dialog.text.text())))
        dialog.finished.connect(self._notes_closed)
        self.notes_dialog = dialog
        dialog.open()
        return dialog

    def _notes_closed(self, _result: int) -> None:
        self.notes_dialog = None  # it deletes itself
        self.list.setFocus()

    def _save_notes(self, text: str) -> None:
        if not self.ensure_reviewer():
            return
        reviewer = self.model.reviewer
        self._submit(lambda progress, cancel: self.desk.notes(text, reviewer, progress, cancel))

    def walk_disagreements(self, on: bool) -> None:
        """Walk the reviewers' disagreements (True) or the findings that need a label (False)."""
        self.walk.setChecked(on)

    def _walk_toggled(self, on: bool) -> None:
        self.mode_changed.emit(on)
        self.reopen()

    # --- what the person sees --------------------------------------------------------------------------------------

    def selected_ids(self) -> list[int]:
        """The findings of the selected rows, in the queue's order."""
        rows = sorted({i.row() for i in self.list.selectionModel().selectedRows()})
        return [self.queue_model.rows[r].id for r in rows if r < len(self.queue_model.rows)]

    def _show(self, shown: Shown | None, reselect: bool) -> None:
        if shown is None or self._closing:
            return
        runs_known = self.shown is not None
        self.shown = shown
        if shown.runs is not None:
            self._set_runs(shown.runs)
        self._quiet = True  # rows reset or added: the list's own current row is not the person's choice
        try:
            self.queue_model.set_shown(shown)
        finally:
            self._quiet = False
        self._place_list(shown, reselect)
        current = shown.current
        if current is None:
            self.place.setText("")
            self.left.setText("")
            self.state.setText(shown.words)
        else:
            self.place.setText(f"{shown.position + 1} of {len(shown.rows)}")
            self.left.setText(f"{len(shown.waiting)} left")
            label = ("waiting for your label" if current.id in shown.waiting and not shown.adjudicate else
                     "waiting for the deciding label" if current.id in shown.waiting else
                     f"labeled {LABEL_WORDS.get(current.label, current.label)}"
                     + (f" by {current.reviewer}" if current.reviewer else ""))
            self.state.setText(f"#{current.id} “{current.prompt}”, seed {current.seed}: {label}")
        self.said.setVisible(bool(shown.said))
        self.said.setText("Reviewers said: " + " · ".join(
            f"{who or 'no name'}: {LABEL_WORDS.get(lab, lab)}" for who, lab in shown.said.items())
            + ". 1 / 2 / 3 records the deciding label." if shown.said else "")
        self.history.clear()
        for event in shown.history:
            self.history.addItem(event_words(event))
        if shown.history:
            self.history.scrollToBottom()
        self.buttons["undo"].setEnabled(shown.can_undo)
        for key in (*LABELS, "skip", "back", "notes"):
            self.buttons[key].setEnabled(current is not None)
        for label in LABELS:  # down: the label the casebook has for the finding on screen
            self.buttons[label].setChecked(current is not None and current.label == label)
        self.message.setText(self._message(shown, runs_known))
        if current is None:
            self._shown_id = None
            self.comparison.clear()
        elif current.id != self._shown_id:
            self._shown_id = current.id
            self._views = None
            self.comparison.show_generation(shown.item)
            self.comparison.show_mode(self.model.heatmap_mode)
            self._request_pictures(shown.item)
            self.finding_shown.emit(current.id)
        self.state_shown.emit()

    def _message(self, shown: Shown, runs_known: bool) -> str:
        if shown.added:
            return f"{shown.added} new finding{'' if shown.added == 1 else 's'} joined the queue at the end."
        if shown.current is not None and not shown.waiting:
            return ("Every disagreement is decided." if shown.adjudicate else
                    "Every finding here is labeled. New ones a scan writes appear here by themselves.")
        return "" if runs_known else f"Reviewing {shown.path}"

    def _place_list(self, shown: Shown, reselect: bool) -> None:
        """The list's current row is the queue's place; after a label, skip, back or undo it is the only one
        selected, while moving (Shift + arrows) keeps what the person selected."""
        if not shown.rows:
            return
        index = self.queue_model.index(shown.position, 0)
        flags = (QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
                 if reselect else QItemSelectionModel.SelectionFlag.NoUpdate)
        self._quiet = True
        try:
            self.list.selectionModel().setCurrentIndex(index, flags)
            self.list.scrollTo(index)
            self.list.horizontalScrollBar().setValue(0)  # the prompt's start, never half a column
        finally:
            self._quiet = False

    def _set_runs(self, runs: list[tuple[int, str]]) -> None:
        current = self.run.currentData()
        if [self.run.itemData(k) for k in range(1, self.run.count())] == [rid for rid, _ in runs]:
            return
        self.run.blockSignals(True)
        try:
            while self.run.count() > 1:
                self.run.removeItem(1)
            for rid, words in runs:
                self.run.addItem(f"run #{rid}: {words}", rid)
                self.run.setItemData(self.run.count() - 1, plain_tooltip(words), Qt.ItemDataRole.ToolTipRole)
            self.run.setCurrentIndex(max(0, self.run.findData(current)) if current is not None else 0)
        finally:
            self.run.blockSignals(False)

    def _row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if self._quiet or not current.isValid():
            return
        fid = current.data(Qt.ItemDataRole.UserRole)
        if self.shown is not None and self.shown.current is not None and fid == self.shown.current.id:
            return
        self._act(lambda: self._move("go", fid))

    def _request_pictures(self, item) -> None:
        """The neighbours' pictures and heatmaps, drawn on their own thread; a finding no longer on screen
        drops its result."""
        self._picture_request += 1
        request = self._picture_request
        worker = GeneratorWorker(lambda cancel=None, progress=None: neighbour_pictures(item, NEIGHBOUR_SIDE[1]))

        def done(result) -> None:
            if request == self._picture_request and not self._closing:
                self._views = result
                self.comparison.set_views(*result)
                self.views_shown.emit()

        def failed(exc: BaseException) -> None:
            if request == self._picture_request and not self._closing:
                self.comparison.set_views(None, "the heatmaps could not be drawn: " + error_text(exc))
                self.views_shown.emit()

        worker.signals.returned.connect(done)
        worker.signals.errored.connect(failed)
        worker.signals.finished.connect(lambda: self._alive.discard(worker))
        self._alive.add(worker)
        self._pictures.start(worker)

    def _fit_comparison(self, width: int) -> None:
        """The pictures as large as the tab's width allows; the finding on screen drawn again at that size."""
        if not self.comparison.fit(width) or self.shown is None or self.shown.item is None:
            return
        self.comparison.show_generation(self.shown.item)
        if self._views is not None:
            self.comparison.set_views(*self._views)
        self.comparison.show_mode(self.model.heatmap_mode)

    # --- the window around it -----------------------------------------------------------------------------------

    def _reviewer_changed(self, name: str) -> None:
        if self.reviewer.text().strip() != name:
            self.reviewer.setText(name)

    def _sources_changed(self) -> None:
        if self.shown is not None and self.model.casebook_path != self.desk.path:
            self.reopen()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self.shown is None and not self._busy:
            self.reopen()
        self._timer.start()
        window = self.window()
        if hasattr(window, "statusBar"):
            window.statusBar().showMessage("Review: 1 / 2 / 3 label and show the next; the keys are listed under "
                                           "the queue; F1 lists every key.", 15000)
        # After the window's own tab switch, which hands the keyboard to another tab's view.
        QTimer.singleShot(0, self._take_keyboard)

    def _take_keyboard(self) -> None:
        focus = QApplication.focusWidget()
        if self.isVisible() and (focus is None or not self.isAncestorOf(focus)):
            self.list.setFocus()

    def hideEvent(self, event) -> None:
        self._timer.stop()
        super().hideEvent(event)

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Stop the timer, let the job running finish (a label being written is written), close the casebook."""
        self._closing = True
        self._timer.stop()
        self._pending.clear()
        for worker in list(self._alive):
            worker.quit()
        self._pool.waitForDone(timeout_ms)
        self._pictures.waitForDone(timeout_ms)
        self.desk.close()


class _TabKeys(QObject):
    """The tab's keys, taken before the window's shortcuts see them (ShortcutOverride), then done in order."""

    def __init__(self, tab: ReviewTab):
        super().__init__(tab)
        self.tab = tab

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        kind = event.type()
        if kind not in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress):
            return False
        action = self.tab.key_action(event)
        if action is None:
            return False
        event.accept()
        if kind == QEvent.Type.KeyPress:
            self.tab._act(action)
        return True
