"""What the window shows and does, without Qt: the model behind ``inspector.gui.main_window`` (napari's
``ViewerModel`` is the example).

:class:`InspectorModel` holds the current run and its generations, the selection, the labels and their undo
history, the casebook the person is reviewing (filters, rows, the selected finding and its label history) and
the sources picked (model, index, casebook, with their recent lists). It does the casebook actions (record,
label, notes, undo, reproduce, export) through an *executor* it is given, and tells whoever listens through plain-Python
:class:`Event` lists. The window renders what the model says and forwards the person's input; tests drive the
same model with no Qt at all (the default executor runs each job at once).

Rules this model keeps by construction (each has a test in ``tests/test_inspector_model.py``):

- **Undo acts on what the person can see.** Each view has its own undo history: the Inspect view's belongs
  to the run on screen (a new run starts an empty one), the Casebook view's to the casebook file open; undo
  selects the finding it changed and says exactly what it undid.
- **A failed write leaves the display as the casebook is.** A label, a note or an undo changes what is shown
  only after the casebook has it; a failed one says so and shows the finding as it still is.
- **Results carry the index and model they came from.** A generation's heatmaps are drawn with the index its
  neighbours were found in (``Inspected.index_source``), whatever the pickers show by the time it is selected.
- **Everything shown about a prompt is about the run on screen** (the strip's words, the Wen tooltip) and the
  label bar is rendered from the selected finding's label, so it can never show an old one.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspector.errors import UserError, user_error
from inspector.extraction import CLIQUE_EDGE_THRESHOLD
from inspector.findings import (
    LABEL_WORDS,
    LABELS,
    LIKENESS_ONLY,
    LIKENESS_SUGGESTED,
    MEMORIZED,
    NOVEL,
    UNLABELED,
    LabelEvent,
)
from inspector.metrics import EXTRACTION_THRESHOLD
from inspector.provenance import QUERY_KIND, finding_kind
from inspector.resources import DEMO
from inspector.session import Inspected, InspectRequest, PromptSummary, finding_from

#: The two views a label, a note or an undo can act on: the Inspect tab's run, the Casebook tab's findings.
INSPECT = "inspect"
CASEBOOK = "casebook"
VIEWS = (INSPECT, CASEBOOK)

#: Heatmap modes, in the order H cycles them; "none" shows the neighbour itself.
HEATMAP_MODES = ("none", "pixel", "tiles", "ssim")

#: How many entries each recent list keeps.
RECENT = 8

#: The suggestion that pressing Enter ("agree") turns into a label.
AGREE_LABEL = {MEMORIZED: MEMORIZED, LIKENESS_SUGGESTED: LIKENESS_ONLY, NOVEL: NOVEL}

#: What the window says it is for, on its first screen.
WHAT_IT_DOES = ("Checks whether an image-generation model copies its training images: type a prompt, compare "
                "each generation with its nearest training images, label what you see.")


class Event:
    """A list of callbacks called in order with the event's arguments (napari's ``EventEmitter``, in small).

    Callbacks run on the thread that emits, which for :class:`InspectorModel` is the thread that calls it (the
    window's UI thread): the executor hands every job's result back there.
    """

    def __init__(self, name: str = ""):
        self.name = name
        self._callbacks: list[Callable[..., Any]] = []

    def connect(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        """Call ``callback`` on every emit; returns it, so this works as a decorator."""
        self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable[..., Any]) -> None:
        self._callbacks.remove(callback)

    def emit(self, *args: Any) -> None:
        for callback in list(self._callbacks):
            callback(*args)


class ModelEvents:
    """Every event :class:`InspectorModel` emits; the arguments are in each comment."""

    def __init__(self) -> None:
        self.sources_changed = Event("sources_changed")  # () model, index or casebook source, or a recent list
        self.reviewer_changed = Event("reviewer_changed")  # (name)
        self.run_started = Event("run_started")  # (run)
        self.item_added = Event("item_added")  # (run, item)
        self.summary_ready = Event("summary_ready")  # (run): the prompt's clique, Wen score, words
        self.run_finished = Event("run_finished")  # (run)
        self.item_changed = Event("item_changed")  # (item): its label, notes or pending state changed
        self.selection_changed = Event("selection_changed")  # (view, item or None)
        self.views_ready = Event("views_ready")  # (view, item, views list or None, note)
        self.label_state = Event("label_state")  # (view): render that view's label bar again
        self.label_written = Event("label_written")  # (view, item): a label or an undo reached the casebook
        self.heatmap_mode = Event("heatmap_mode")  # (mode)
        self.sort_changed = Event("sort_changed")  # (by_distance)
        self.casebook_changed = Event("casebook_changed")  # (): rows, counts, runs or filter choices
        self.row_changed = Event("row_changed")  # (finding id): one casebook row's label, notes or reviewer
        self.history_changed = Event("history_changed")  # (finding id, [LabelEvent])
        self.casebook_message = Event("casebook_message")  # (text): how a reproduction or an export went
        self.query_recorded = Event("query_recorded")  # (item, finding id): a searched image is in the casebook
        self.message = Event("message")  # (text): a status line
        self.error = Event("error")  # (text): a problem the person should see


# --- jobs ----------------------------------------------------------------------------------------------------------

#: ``executor(work, done, failed, serial=False)``: run ``work()`` (off the UI thread in the window), then call
#: ``done(result)`` or ``failed(exception)`` back on the caller's thread. ``serial`` jobs (casebook writes) run
#: one at a time in the order given.
Executor = Callable[..., None]


def run_now(work: Callable[[], Any], done: Callable[[Any], None], failed: Callable[[BaseException], None],
            serial: bool = False) -> bool:
    """The executor for tests and scripts: the job runs at once, on this thread; True when it succeeded."""
    try:
        result = work()
    except Exception as exc:  # noqa: BLE001 - every failure goes to ``failed``, which shows it
        failed(exc)
        return False
    done(result)
    return True


def error_text(exc: BaseException) -> str:
    """One line for a failure: the person's words for what they can fix (:func:`inspector.errors.user_error`),
    else the exception's type and message."""
    known = user_error(exc)
    if known is not None:
        return str(known)
    return f"unexpected error ({type(exc).__name__}: {exc})"


# --- words -----------------------------------------------------------------------------------------------------------


def item_words(item: Inspected) -> str:
    """A generation or finding named so the person finds it: 'seed 3 of “cat” (finding #12)', or for an image a
    person asked about 'query image coffee.jpg (finding #13)'."""
    prompt = (item.provenance or {}).get("prompt", "")
    name = f"seed {item.seed}" + (f" of “{prompt}”" if prompt else "")
    if finding_kind(item.provenance) == QUERY_KIND:
        name = f"query image {item.provenance.get('file_name', '')}".rstrip()
    return name + (f" (finding #{item.finding_id})" if item.finding_id is not None else "")


def label_words(label: str) -> str:
    """A label as a title: 'Memorized', 'Likeness only', 'Novel', 'Unlabeled'."""
    return LABEL_WORDS.get(label, label)


def run_summary_line(nearest: Sequence[float], clique_size: int | None, n: int, flagged: bool,
                     wen: float | None, image_words: str = "training image",
                     clique_threshold: float = CLIQUE_EDGE_THRESHOLD) -> str:
    """The strip's line about the prompt as a whole, e.g. '8 of 8 near copies of a training image · clique 4/8 of
    generations near-identical to each other (tiled l2 <= 0.10, stricter than 0.15) · Wen score 0.42'.

    Near copies are counted against the index (tiled l2 to the nearest image at most 0.15); the clique is among
    the generations themselves, at the stricter edge ``clique_threshold``: so every generation can be a near
    copy of one training image while only some are near-identical to each other.
    """
    near = sum(v <= EXTRACTION_THRESHOLD for v in nearest)
    parts = [f"{near} of {len(nearest)} near copies of a {image_words}"]
    if clique_size is not None:
        parts.append(f"clique {clique_size}/{n} of generations near-identical to each other (tiled l2 <= "
                     f"{clique_threshold:.2f}, stricter than {EXTRACTION_THRESHOLD:.2f})"
                     + (" — FLAGGED" if flagged else ""))
    if wen is not None:
        parts.append(f"Wen score {wen:.2f}")
    return " · ".join(parts)


# --- state -----------------------------------------------------------------------------------------------------------


@dataclass
class UndoEntry:
    """One label given in a view, which Ctrl+Z there can take back."""

    item: Inspected
    finding_id: int | None
    label: str
    previous: str


@dataclass
class RunView:
    """The run on the Inspect tab: what was asked, with what, and what came back (in arrival order)."""

    number: int  # this window's count of runs: a result of an older run is dropped
    request: InspectRequest
    model_source: str
    index_source: str
    casebook_path: str
    reviewer: str = ""
    items: list[Inspected] = field(default_factory=list)
    summary: PromptSummary | None = None
    run_id: int | None = None  # the casebook run, once on the record
    running: bool = True
    cancelled: bool = False
    error: str = ""
    undo: list[UndoEntry] = field(default_factory=list)  # this run's labels, newest last
    #: "generation" (the model's images) or "query" (images a person asked about: :meth:`InspectorModel.search_images`)
    kind: str = "generation"


@dataclass
class CasebookFilters:
    """What the Casebook view lists: every filter None shows every finding. ``prompt``, ``model`` and
    ``reviewer`` match exactly (model: the id as recorded or a weights sha256 prefix); ``text`` searches prompts,
    notes and captions; ``suggested`` is a suggested verdict (memorized, likeness?, novel)."""

    label: str | None = None
    suggested: str | None = None
    prompt: str | None = None
    model: str | None = None
    run_id: int | None = None
    reviewer: str | None = None
    text: str | None = None

    def query(self) -> dict[str, Any]:
        """The keyword arguments of ``Casebook.findings``."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, "")}


@dataclass
class CasebookView:
    """The Casebook tab: the findings listed under the filters, the selected one with its history."""

    filters: CasebookFilters = field(default_factory=CasebookFilters)
    rows: list[Any] = field(default_factory=list)  # FindingSummary, in the casebook's order
    counts: dict[str, int] = field(default_factory=dict)
    runs: list[Any] = field(default_factory=list)  # Run, newest first
    choices: dict[str, list[str]] = field(default_factory=dict)  # prompt, model, reviewer -> values present
    revision: int | None = None  # Casebook.revision() when the rows were read
    exists: bool = False
    problem: str = ""  # why the casebook could not be read, when it could not
    selected_id: int | None = None
    selected: Inspected | None = None  # the selected finding, whole
    history: list[LabelEvent] = field(default_factory=list)
    undo: list[UndoEntry] = field(default_factory=list)


@dataclass
class LabelBarState:
    """What a view's label bar shows: the buttons on or off, the selected finding's label in words, its notes,
    whether Ctrl+Z has anything to take back (and what), and what Enter agrees to."""

    enabled: bool
    label: str
    text: str
    notes: str
    undo_enabled: bool
    undo_text: str
    agree_label: str | None


# --- the model -------------------------------------------------------------------------------------------------------


def grid_sort_key(item: Inspected, by_distance: bool) -> tuple:
    """The grid's order: nearest tiled l2 first (no neighbours last), then generation order; or generation
    order alone."""
    if not by_distance:
        return (item.position,)
    d = item.nearest_tiled_l2
    return (9.0 if d is None else d, item.position)


class InspectorModel:
    """The window's state and actions; see the module docstring.

    Parameters
    ----------
    casebook_path
        The casebook findings are recorded in and read from.
    model_source, index_source
        "demo", or a model / index the person picked.
    executor
        Runs jobs that touch files (:data:`Executor`); :func:`run_now` by default.
    """

    def __init__(self, casebook_path: str | os.PathLike, model_source: str = DEMO, index_source: str = DEMO,
                 *, executor: Executor = run_now, reviewer: str = ""):
        self.events = ModelEvents()
        self.executor = executor
        self.casebook_path = str(casebook_path)
        self.model_source = model_source or DEMO
        self.index_source = index_source or DEMO
        self.recent: dict[str, list[str]] = {"model": [DEMO], "index": [DEMO], "casebook": [self.casebook_path]}
        self.reviewer = reviewer
        self.run: RunView | None = None
        self._runs = 0
        self.selected: Inspected | None = None  # on the Inspect view
        self._user_selected = False  # the person picked a generation during this run
        self.active_view = INSPECT
        self.heatmap_mode = "none"
        self.sort_by_distance = True
        self.casebook = CasebookView()
        self._pending: set[int] = set()  # id() of items whose label write is on its way
        self._view_requests = dict.fromkeys(VIEWS, 0)
        self._casebook_request = 0
        self._casebook_busy = False
        self._open_request = 0
        self._searching = False  # an image search (search_images) is under way

    # --- sources --------------------------------------------------------------------------------------------------

    def set_model_source(self, source: str) -> None:
        self.model_source = source.strip() or DEMO
        self.events.sources_changed.emit()

    def set_index_source(self, source: str) -> None:
        self.index_source = source.strip() or DEMO
        self.events.sources_changed.emit()

    def set_casebook_path(self, path: str | os.PathLike) -> None:
        """Record in and review another casebook: the Casebook view (its undo history included) starts afresh."""
        path = str(path)
        if path == self.casebook_path:
            return
        self.casebook_path = path
        self.casebook = CasebookView(filters=CasebookFilters())
        self._remember("casebook", path)
        self.events.sources_changed.emit()
        self.events.selection_changed.emit(CASEBOOK, None)
        self.events.label_state.emit(CASEBOOK)
        self.refresh_casebook()

    def set_recent(self, kind: str, values: Sequence[str]) -> None:
        """The recent list of ``kind`` (model, index, casebook) as remembered; the demo always first for models
        and indexes."""
        values = [str(v) for v in values if v]
        if kind in ("model", "index"):
            values = [DEMO] + [v for v in values if v != DEMO]
        self.recent[kind] = list(dict.fromkeys(values))[:RECENT]

    def _remember(self, kind: str, value: str) -> None:
        rest = [v for v in self.recent.get(kind, []) if v != value]
        if kind in ("model", "index") and value != DEMO:
            rest = [DEMO] + [v for v in rest if v != DEMO]
            self.recent[kind] = ([rest[0], value] + rest[1:])[:RECENT]
        else:
            self.recent[kind] = ([value] + rest)[:RECENT]

    def remember_sources(self) -> None:
        """Put the sources in use at the top of their recent lists (after the demo)."""
        self._remember("model", self.model_source)
        self._remember("index", self.index_source)
        self._remember("casebook", self.casebook_path)
        self.events.sources_changed.emit()

    def set_reviewer(self, name: str) -> None:
        name = name.strip()
        if name != self.reviewer:
            self.reviewer = name
            self.events.reviewer_changed.emit(name)

    # --- the run on the Inspect view ------------------------------------------------------------------------------

    def start_run(self, request: InspectRequest) -> RunView | None:
        """Begin a run of ``request`` with the sources picked now; None (and an error event) when one is still
        running or the request is refused. The previous run's generations, selection and undo history go."""
        if (self.run is not None and self.run.running) or self._searching:
            self.events.message.emit("A run is still going: wait for it, or press Esc to cancel it.")
            return None
        try:
            request.validate()
        except UserError as exc:
            self.events.error.emit(error_text(exc))
            return None
        self.remember_sources()
        return self._show_run(request)

    def _show_run(self, request: InspectRequest, kind: str = "generation", index_source: str | None = None) -> RunView:
        """A new run on the Inspect view: the previous run's generations, selection and undo history go."""
        self._runs += 1
        self.run = RunView(number=self._runs, request=request, model_source=self.model_source,
                           index_source=index_source or self.index_source, casebook_path=self.casebook_path,
                           reviewer=self.reviewer, kind=kind)
        self.selected = None
        self._user_selected = False
        self._view_requests[INSPECT] += 1
        self.events.run_started.emit(self.run)
        self.events.selection_changed.emit(INSPECT, None)
        self.events.label_state.emit(INSPECT)
        return self.run

    def inspection(self, run: RunView, cancel: threading.Event | None = None,
                   progress: Callable[[dict], None] | None = None) -> Iterator[Inspected | PromptSummary]:
        """The run's work: :func:`inspector.runs.recorded_inspection` with what the run was started with."""
        from inspector.runs import recorded_inspection

        yield from recorded_inspection(run.casebook_path, run.model_source, run.index_source, run.request,
                                       kind="window", reviewer=run.reviewer, cancel=cancel, progress=progress)

    def _current(self, number: int) -> RunView | None:
        return self.run if self.run is not None and self.run.number == number else None

    def add_result(self, number: int, value: Inspected | PromptSummary) -> None:
        """One value of run ``number`` arrived (a generation, then the summary); values of an older run are
        dropped."""
        run = self._current(number)
        if run is None:
            return
        if isinstance(value, Inspected):
            value.model_source = value.model_source or run.model_source
            value.index_source = value.index_source or run.index_source
            run.items.append(value)
            self.events.item_added.emit(run, value)
            if self.selected is None:
                self.select(value, by_person=False)
            return
        run.summary = value
        if value.run_id is not None:
            run.run_id = value.run_id
        for item in run.items:
            self.events.item_changed.emit(item)  # clique members are marked now
        self.events.summary_ready.emit(run)

    def note_run_id(self, number: int, run_id: int) -> None:
        run = self._current(number)
        if run is not None:
            run.run_id = run_id

    def finish_run(self, number: int, *, cancelled: bool = False, error: BaseException | None = None) -> None:
        """Run ``number`` ended: done, cancelled, or with ``error`` (shown). Unless the person picked a
        generation meanwhile, the first in the grid's order is selected."""
        run = self._current(number)
        if run is None:
            return
        run.running = False
        run.cancelled = cancelled
        if error is not None:
            run.error = error_text(error)
            self.events.error.emit(run.error)
        if run.items and not self._user_selected:
            self.select(self.ordered_items()[0], by_person=False)
        self.events.label_state.emit(INSPECT)
        self.events.run_finished.emit(run)

    def ordered_items(self) -> list[Inspected]:
        """The run's generations in the grid's order."""
        if self.run is None:
            return []
        return sorted(self.run.items, key=lambda i: grid_sort_key(i, self.sort_by_distance))

    def set_sort(self, by_distance: bool) -> None:
        if by_distance != self.sort_by_distance:
            self.sort_by_distance = by_distance
            self.events.sort_changed.emit(by_distance)

    def summary_line(self) -> str:
        """The strip's words about the run on screen ('' before its first generation)."""
        run = self.run
        if run is None or not run.items:
            return ""
        from inspector.roles import role_words

        nearest = [1.0 if i.nearest_tiled_l2 is None else i.nearest_tiled_l2 for i in run.items]
        clique = run.summary.clique if run.summary is not None else None
        role = (run.items[0].index or {}).get("role")
        return run_summary_line(nearest, clique.size if clique else None, len(run.items),
                                bool(clique and clique.flagged), run.summary.wen_score if run.summary else None,
                                role_words(role).image, run.request.clique_threshold)

    def steering_words(self) -> str:
        """The words of the run on screen that steer the model hardest, for the strip's tooltip ('' when its Wen
        score has no attribution): never another prompt's."""
        run = self.run
        if run is None or run.summary is None or not run.summary.wen_tokens:
            return ""
        from inspector.prompt_words import steering_words

        words = run.summary.words
        vocabulary = getattr(words, "vocabulary", None)
        unknown = vocabulary.unknown_words if vocabulary is not None else []
        return f"Words that steer hardest (per word): {steering_words(run.summary.wen_tokens, unknown)}"

    # --- selection --------------------------------------------------------------------------------------------------

    def select(self, item: Inspected | None, *, by_person: bool = True) -> None:
        """Select a generation of the run on the Inspect view (None: nothing)."""
        if item is not None and (self.run is None or not any(i is item for i in self.run.items)):
            return
        if item is self.selected:  # a view re-announcing the same selection (a re-sort) is not a choice
            return
        if by_person and item is not None:
            self._user_selected = True
        self.selected = item
        self.events.selection_changed.emit(INSPECT, item)
        self.events.label_state.emit(INSPECT)
        if item is not None:
            self._request_views(INSPECT, item)

    def target(self, view: str | None = None) -> Inspected | None:
        """What a label, a note or Enter acts on in ``view`` (the active one by default)."""
        view = view or self.active_view
        return self.selected if view == INSPECT else self.casebook.selected

    def is_pending(self, item: Inspected) -> bool:
        """Whether a label for ``item`` is still on its way to the casebook."""
        return id(item) in self._pending

    def next_unlabeled_after(self, item: Inspected) -> Inspected | None:
        """The next unlabeled generation after ``item`` in the grid's order (wrapping), or None."""
        items = self.ordered_items()
        if not items:
            return None
        start = next((k for k, i in enumerate(items) if i is item), -1)
        for k in range(1, len(items) + 1):
            cand = items[(start + k) % len(items)]
            if cand.label == UNLABELED and not self.is_pending(cand) and cand is not item:
                return cand
        return None

    # --- heatmaps -------------------------------------------------------------------------------------------------

    def cycle_heatmap(self) -> str:
        mode = HEATMAP_MODES[(HEATMAP_MODES.index(self.heatmap_mode) + 1) % len(HEATMAP_MODES)]
        self.set_heatmap_mode(mode)
        return mode

    def set_heatmap_mode(self, mode: str) -> None:
        if mode not in HEATMAP_MODES:
            raise ValueError(f"unknown heatmap mode {mode!r}: use one of {', '.join(HEATMAP_MODES)}")
        self.heatmap_mode = mode
        self.events.heatmap_mode.emit(mode)

    def redraw(self, view: str) -> None:
        """Draw the selected finding's heatmaps of ``view`` again."""
        item = self.target(view)
        if item is not None:
            self._request_views(view, item)

    def _request_views(self, view: str, item: Inspected) -> None:
        """Draw ``item``'s heatmaps off the UI thread; a result for an item no longer selected is dropped."""
        self._view_requests[view] += 1
        request = self._view_requests[view]

        def work() -> tuple[list | None, str]:
            return neighbour_pictures(item)

        def done(result: tuple[list | None, str]) -> None:
            if request == self._view_requests[view]:
                views, note = result
                self.events.views_ready.emit(view, item, views, note)

        def failed(exc: BaseException) -> None:
            if request == self._view_requests[view]:
                self.events.views_ready.emit(view, item, None, "the heatmaps could not be drawn: "
                                             + error_text(exc))

        self.executor(work, done, failed)

    # --- labels -------------------------------------------------------------------------------------------------------

    def label_bar_state(self, view: str) -> LabelBarState:
        """What ``view``'s label bar shows, from the selected finding as the casebook has it."""
        item = self.target(view)
        stack = self.run.undo if view == INSPECT and self.run is not None else (
            self.casebook.undo if view == CASEBOOK else [])
        undo_text = ""
        if stack:
            last = stack[-1]
            undo_text = f"Undo: {item_words(last.item)} back to {label_words(last.previous)}"
        if item is None:
            return LabelBarState(False, UNLABELED, "", "", bool(stack), undo_text, None)
        saving = " (saving…)" if self.is_pending(item) else ""
        who = f"seed {item.seed}" if finding_kind(item.provenance) != QUERY_KIND else item.provenance.get("file_name", "")
        text = f"{who}: {label_words(item.label)}{saving}"
        agree = AGREE_LABEL.get(item.suggestion.verdict)
        return LabelBarState(True, item.label, text, item.notes, bool(stack), undo_text, agree)

    def label(self, label: str, view: str | None = None) -> bool:
        """Label the selected finding of ``view`` (the active one by default) and move on to the next unlabeled
        one. The label shows once the casebook has it; a failed write says so and leaves the display as the
        casebook is. False when nothing is selected."""
        if label not in LABELS:
            raise ValueError(f"unknown label {label!r}: use one of {', '.join(LABELS)}")
        view = view or self.active_view
        item = self.target(view)
        if item is None:
            return False
        stack = self.run.undo if view == INSPECT else self.casebook.undo
        entry = UndoEntry(item=item, finding_id=item.finding_id, label=label, previous=item.label)
        stack.append(entry)
        self._pending.add(id(item))
        self.events.item_changed.emit(item)
        path, reviewer, notes = self.casebook_path if view == CASEBOOK else self.run.casebook_path, self.reviewer, \
            item.notes
        run_id = self.run.run_id if view == INSPECT else None
        summary = self.run.summary if view == INSPECT else None

        def work() -> tuple[int, LabelEvent]:
            from inspector.casebook import Casebook

            with Casebook.open(path) as book:
                fid = item.finding_id
                if fid is None and finding_kind(item.provenance) == QUERY_KIND:  # a searched image: recorded now
                    from inspector.image_query import record_query

                    fid = record_query(book, item)[0]
                elif fid is None:  # a generation the run could not record: on the record now
                    fid = book.record(finding_from(item, summary), run_id=run_id)
                return fid, book.label(fid, label, reviewer=reviewer, note=notes)

        def done(result: tuple[int, LabelEvent]) -> None:
            fid, event = result
            self._pending.discard(id(item))
            item.finding_id = entry.finding_id = fid
            self._show_label(fid, label, reviewer, item)
            self.events.message.emit(f"Saved: {item_words(item)} is {label_words(label)} in "
                                     f"{Path(path).name}")
            self.events.label_written.emit(view, item)

        def failed(exc: BaseException) -> None:
            self._pending.discard(id(item))
            if entry in stack:
                stack.remove(entry)
            self.events.item_changed.emit(item)
            self.events.error.emit(f"The label was NOT saved: {error_text(exc)}. {item_words(item)} is still "
                                   f"{label_words(item.label)}.")
            self._select_in(view, item)  # back to what did not get its label
            self.events.label_state.emit(view)

        self.executor(work, done, failed, serial=True)
        if self.target(view) is item and entry in stack:  # not moved on meanwhile, and not refused at once
            self._advance(view, item)
        self.events.label_state.emit(view)
        return True

    def agree(self, view: str | None = None) -> bool:
        """Enter: label the selected finding as its suggestion says (likeness? as likeness only)."""
        item = self.target(view)
        if item is None:
            return False
        label = AGREE_LABEL.get(item.suggestion.verdict)
        return label is not None and self.label(label, view)

    def _advance(self, view: str, item: Inspected) -> None:
        if view == INSPECT:
            nxt = self.next_unlabeled_after(item)
            if nxt is not None:
                self.select(nxt, by_person=False)
        else:
            nxt_id = self._next_unlabeled_row(item.finding_id)
            if nxt_id is not None:
                self.open_finding(nxt_id)

    def _select_in(self, view: str, item: Inspected) -> None:
        if view == INSPECT:
            self.select(item, by_person=False)
        elif item.finding_id is not None and self.casebook.selected_id != item.finding_id:
            self.open_finding(item.finding_id)

    def _show_label(self, finding_id: int, label: str, reviewer: str | None, *extra: Inspected) -> None:
        """The casebook gave ``finding_id`` this label: every copy on screen shows it."""
        shown = list(extra)
        if self.run is not None:
            shown += [i for i in self.run.items if i.finding_id == finding_id]
        if self.casebook.selected is not None and self.casebook.selected.finding_id == finding_id:
            shown.append(self.casebook.selected)
        for item in {id(i): i for i in shown}.values():
            item.label = label
            self.events.item_changed.emit(item)
        for k, row in enumerate(self.casebook.rows):
            if row.id == finding_id:
                changes = {"label": label} if reviewer is None else {"label": label, "reviewer": reviewer}
                self.casebook.rows[k] = dataclasses.replace(row, **changes)
                self.events.row_changed.emit(finding_id)
        for view in VIEWS:
            self.events.label_state.emit(view)
        if self.casebook.selected_id == finding_id:
            self._load_history(finding_id)

    def undo(self, view: str | None = None) -> bool:
        """Take back the last label given in ``view`` (the active one by default): only one that view shows,
        only when the casebook still has it, and the finding is selected with the words of what was undone.
        False when there is nothing to undo there."""
        view = view or self.active_view
        stack = self.run.undo if view == INSPECT and self.run is not None else (
            self.casebook.undo if view == CASEBOOK else [])
        if not stack:
            self.events.message.emit("Nothing to undo here: no label was given in this view.")
            return False
        entry = stack.pop()
        self.events.label_state.emit(view)
        path = self.casebook_path if view == CASEBOOK else self.run.casebook_path
        reviewer = self.reviewer

        def work() -> LabelEvent:
            from inspector.casebook import Casebook

            if entry.finding_id is None and entry.item.finding_id is None:
                raise UserError(f"{item_words(entry.item)} was never saved: nothing to undo")
            fid = entry.item.finding_id if entry.finding_id is None else entry.finding_id
            with Casebook.open(path) as book:
                now = book.summary(fid)
                if now.label != entry.label:  # changed since, here or by another program: leave it
                    raise UserError(f"finding #{fid} is {label_words(now.label)} now, not "
                                    f"{label_words(entry.label)} (changed since"
                                    + (f" by {now.reviewer}" if now.reviewer else "") + "): nothing was undone")
                return book.undo_last_label(fid, reviewer=reviewer)

        def done(event: LabelEvent) -> None:
            self._show_label(event.finding_id, event.label, None, entry.item)
            self._select_in(view, entry.item)
            self.events.message.emit(f"Undone: {item_words(entry.item)} is {label_words(event.label)} again "
                                     f"(was {label_words(entry.label)})")
            self.events.label_written.emit(view, entry.item)
            if view == CASEBOOK:  # a finding filtered out by its label may be listed again
                self.refresh_casebook()

        def failed(exc: BaseException) -> None:
            if isinstance(exc, UserError) and "nothing was undone" in str(exc):
                self.events.error.emit(f"Undo refused: {error_text(exc)}")
            else:
                stack.append(entry)  # not taken back: Ctrl+Z can try again
                self.events.error.emit(f"Undo failed: {error_text(exc)}. {item_words(entry.item)} is still "
                                       f"{label_words(entry.item.label)}.")
            self._select_in(view, entry.item)
            self.events.label_state.emit(view)

        self.executor(work, done, failed, serial=True)
        return True

    def set_notes(self, notes: str, view: str | None = None) -> bool:
        """Replace the selected finding's notes (a "note" event in its history). Shown once saved; a failed
        write keeps the notes the casebook has. False when nothing changes."""
        view = view or self.active_view
        item = self.target(view)
        if item is None or notes == item.notes:
            return False
        if item.finding_id is None:
            self.events.error.emit(f"The notes were NOT saved: {item_words(item)} is not in the casebook yet "
                                   "(label it first).")
            self.events.label_state.emit(view)
            return False
        path, reviewer, fid = (self.casebook_path if view == CASEBOOK else self.run.casebook_path,
                               self.reviewer, item.finding_id)

        def work() -> LabelEvent:
            from inspector.casebook import Casebook

            with Casebook.open(path) as book:
                return book.set_notes(fid, notes, reviewer=reviewer)

        def done(_event: LabelEvent) -> None:
            shown = [item] + ([i for i in self.run.items if i.finding_id == fid] if self.run else [])
            if self.casebook.selected is not None and self.casebook.selected.finding_id == fid:
                shown.append(self.casebook.selected)
            for it in shown:
                it.notes = notes
            for k, row in enumerate(self.casebook.rows):
                if row.id == fid:
                    self.casebook.rows[k] = dataclasses.replace(row, notes=notes)
                    self.events.row_changed.emit(fid)
            self.events.message.emit(f"Notes saved for {item_words(item)}")
            for v in VIEWS:
                self.events.label_state.emit(v)
            if self.casebook.selected_id == fid:
                self._load_history(fid)

        def failed(exc: BaseException) -> None:
            self.events.error.emit(f"The notes were NOT saved: {error_text(exc)}")
            self.events.label_state.emit(view)

        self.executor(work, done, failed, serial=True)
        return True

    # --- the Casebook view ------------------------------------------------------------------------------------------

    def set_filters(self, **changes: Any) -> None:
        """Change some filters of the Casebook view (keys of :class:`CasebookFilters`) and list again."""
        for key, value in changes.items():
            if not hasattr(self.casebook.filters, key):
                raise ValueError(f"unknown filter {key!r}")
            setattr(self.casebook.filters, key, value if value not in ("",) else None)
        self.refresh_casebook()

    def refresh_casebook(self) -> None:
        """Read the casebook's findings under the filters (off the UI thread), keeping the selection."""
        self._casebook_request += 1
        request = self._casebook_request
        path, filters = self.casebook_path, dataclasses.replace(self.casebook.filters)
        self._casebook_busy = True

        def done(result: dict[str, Any]) -> None:
            if request != self._casebook_request:
                return
            self._casebook_busy = False
            view = self.casebook
            view.exists, view.problem = result["exists"], result.get("problem", "")
            view.rows, view.counts, view.runs = result["rows"], result["counts"], result["runs"]
            view.choices, view.revision = result["choices"], result["revision"]
            self.events.casebook_changed.emit()
            self._sync_selected()
            if view.selected_id is not None and view.selected is None:
                self.open_finding(view.selected_id)

        def failed(exc: BaseException) -> None:
            if request != self._casebook_request:
                return
            self._casebook_busy = False
            self.casebook.problem = error_text(exc)
            self.events.casebook_changed.emit()

        self.executor(lambda: read_casebook(path, filters), done, failed)

    def _sync_selected(self) -> None:
        """The selected finding as the rows just read have it (another program may have labeled it)."""
        item = self.casebook.selected
        row = next((r for r in self.casebook.rows if item is not None and r.id == item.finding_id), None)
        if row is None or (row.label, row.notes) == (item.label, item.notes) or self.is_pending(item):
            return
        item.label, item.notes = row.label, row.notes
        self.events.item_changed.emit(item)
        self.events.label_state.emit(CASEBOOK)
        self._load_history(row.id)

    def poll_casebook(self) -> None:
        """Refresh when the casebook changed since it was read (another program, a running scan, this window):
        a cheap read of ``Casebook.revision()``, skipped while a read is under way."""
        if self._casebook_busy:
            return
        path, known = self.casebook_path, self.casebook.revision
        self._casebook_busy = True

        def done(revision: int | None) -> None:
            self._casebook_busy = False
            if revision != known and path == self.casebook_path:
                self.refresh_casebook()

        def failed(_exc: BaseException) -> None:
            self._casebook_busy = False  # the next refresh says what is wrong

        self.executor(lambda: casebook_revision(path), done, failed)

    def open_finding(self, finding_id: int | None, then: Callable[[], None] | None = None) -> None:
        """Select a finding of the Casebook view: load it whole with its history, then its heatmaps. ``then`` runs
        once it is shown (the window's line about it written), e.g. to say what was just done to it."""
        view = self.casebook
        view.selected_id = finding_id
        view.selected = None
        view.history = []
        self._open_request += 1
        request = self._open_request
        self.events.selection_changed.emit(CASEBOOK, None)
        self.events.label_state.emit(CASEBOOK)
        if finding_id is None:
            return
        path = self.casebook_path

        def work() -> tuple[Inspected, list[LabelEvent]]:
            from inspector.casebook import Casebook

            with Casebook.open(path, create=False, readonly=True) as book:
                return inspected_from_finding(book.get(finding_id)), book.label_history(finding_id)

        def done(result: tuple[Inspected, list[LabelEvent]]) -> None:
            if request != self._open_request:
                return
            view.selected, view.history = result
            self.events.selection_changed.emit(CASEBOOK, view.selected)
            self.events.history_changed.emit(finding_id, view.history)
            self.events.label_state.emit(CASEBOOK)
            self._request_views(CASEBOOK, view.selected)
            if then is not None:
                then()

        def failed(exc: BaseException) -> None:
            if request == self._open_request:
                self.events.error.emit(f"Could not open finding #{finding_id}: {error_text(exc)}")

        self.executor(work, done, failed)

    def _load_history(self, finding_id: int) -> None:
        path = self.casebook_path

        def work() -> list[LabelEvent]:
            from inspector.casebook import Casebook

            with Casebook.open(path, create=False, readonly=True) as book:
                return book.label_history(finding_id)

        def done(history: list[LabelEvent]) -> None:
            if self.casebook.selected_id == finding_id:
                self.casebook.history = history
                self.events.history_changed.emit(finding_id, history)

        self.executor(work, done, lambda exc: None)

    def _next_unlabeled_row(self, finding_id: int | None) -> int | None:
        rows = self.casebook.rows
        start = next((k for k, r in enumerate(rows) if r.id == finding_id), -1)
        for k in range(1, len(rows) + 1):
            row = rows[(start + k) % len(rows)]
            if row.label == UNLABELED and row.id != finding_id:
                return row.id
        return None

    def reproduce(self, finding_id: int) -> Any:
        """Make a finding again from its record and put the outcome on its record (a "reproduce" event, see
        :func:`inspector.evidence.reproduce_finding`); its history is read again when it is the one shown.
        Returns what the executor returns (the window's worker)."""
        path, reviewer = self.casebook_path, self.reviewer
        self.events.casebook_message.emit(f"Reproducing finding #{finding_id}…")

        def work() -> str:
            from inspector.evidence import reproduce_finding

            return reproduce_finding(path, finding_id, reviewer=reviewer).summary()

        def done(text: str) -> None:
            if self.casebook.selected_id == finding_id:
                # Its history now ends with the reproduction; the outcome is said after the finding's own line,
                # which would otherwise replace it as soon as the finding is read again.
                self.open_finding(finding_id, then=lambda: self.events.casebook_message.emit(text))
            else:
                self.events.casebook_message.emit(text)

        def failed(exc: BaseException) -> None:
            self.events.casebook_message.emit(f"Could not reproduce: {error_text(exc)}")

        return self.executor(work, done, failed)

    def export(self, out: str | os.PathLike, fmt: str, ids: Sequence[int] | None = None, *,
               overwrite: bool = False) -> Any:
        """Write a report of the findings ``ids`` (None: every finding) as ``fmt`` (pdf, html, csv, json) to
        ``out``, with its manifest, the reviewer as its author; an existing ``out`` is replaced only with
        ``overwrite`` (the window asks first). Returns what the executor returns (the window's worker)."""
        path, author, out = self.casebook_path, self.reviewer, str(out)
        chosen = list(ids) if ids is not None else None

        def work() -> int:
            from inspector.casebook import Casebook
            from inspector.report import ReportOptions, Selection, export

            with Casebook.open(path, create=False, readonly=True) as book:
                return export(book, out, fmt, overwrite=overwrite, selection=Selection(ids=chosen),
                              options=ReportOptions(author=author))

        def done(n: int) -> None:
            self.events.casebook_message.emit(f"Report written to {out} ({n} findings), with its manifest "
                                              f"{out}.manifest.json")

        def failed(exc: BaseException) -> None:
            self.events.casebook_message.emit(f"Export failed: {error_text(exc)}")

        return self.executor(work, done, failed)

    # --- dropped files ----------------------------------------------------------------------------------------------

    def open_path(self, path: str | os.PathLike) -> str:
        """Use a dropped or opened path as what it is (a model, an index or a casebook); returns the kind.

        Raises
        ------
        UserError
            When the path is none of them, saying what each needs.
        """
        kind = classify_path(path)
        if kind == "model":
            self.set_model_source(str(path))
        elif kind == "index":
            self.set_index_source(str(path))
        else:
            self.set_casebook_path(str(path))
        self.events.message.emit(f"Using {path} as the {kind}")
        return kind

    def open_dropped(self, paths: Sequence[str | os.PathLike]) -> str | None:
        """A drop (or paste) of files: one model folder, index folder or casebook is used as what it is
        (:meth:`open_path`); image files are searched in the index (:meth:`search_images`). Returns the kind
        ("model", "index", "casebook", "query") or None, with an error event saying why, when nothing fits."""
        paths = [str(p) for p in paths]
        if not paths:
            return None
        if len(paths) == 1:
            try:
                kind = classify_path(paths[0])
            except UserError as exc:
                if not Path(paths[0]).is_file():
                    self.events.error.emit(str(exc))
                    return None
            else:
                return self.open_path(paths[0]) if kind else None  # a model, an index or a casebook
        folders = [p for p in paths if Path(p).is_dir()]
        if folders:
            self.events.error.emit(f"{folders[0]} is a folder: drop image files to search the index for them, or "
                                   "one model folder, index folder or casebook to use it")
            return None
        from inspector.image_query import not_an_image

        why = {p: not_an_image(p) for p in paths}  # a look at each header: what is no image is said at once
        images = [p for p in paths if why[p] is None]
        problems = [f"{Path(p).name} was not searched: {why[p]}" for p in paths if why[p] is not None]
        if problems:
            also = "; it is not a casebook or a model either" if len(paths) == 1 else ""
            what = "" if images else ": drop image files, a model or index folder, or a casebook"
            self.events.error.emit("; ".join(problems) + also + what + " (nothing was recorded)")
        return "query" if images and self.search_images(images) else None

    # --- is this image in the index? ------------------------------------------------------------------------------

    def search_images(self, sources: Sequence[Any]) -> bool:
        """Search the index picked now for each image (file paths, or :class:`inspector.image_query.PastedImage`)
        and show them on the Inspect view as a run of kind "query", exactly as generations are shown: each with
        its four nearest, distances, suggestion and heatmaps, in the grid's order. Nothing is recorded
        (:meth:`record_query` does, and a label does). An image that cannot be searched is one error line and
        nothing else; the run on screen stays when none can. False when refused (a run is still going)."""
        from inspector.image_query import source_name

        sources = list(sources)
        if not sources:
            return False
        if (self.run is not None and self.run.running) or self._searching:
            self.events.message.emit("A run is still going: wait for it (or press Esc), then drop the image again.")
            return False
        self._searching = True
        index_source = self.index_source
        names = [source_name(s) for s in sources]
        self.events.message.emit(f"Searching the index for {names[0]}" + (f" and {len(names) - 1} more"
                                                                          if len(names) > 1 else "") + "…")

        def work() -> Any:
            from inspector.image_query import search_images
            from inspector.session import INDEXES

            return search_images(INDEXES.get(index_source), index_source, sources)

        def done(outcome: Any) -> None:
            self._searching = False
            if outcome.problems:
                hint = "" if outcome.items or not outcome.not_images else (
                    ": drop or paste an image file (PNG, JPEG, WebP, ...), a model or index folder, or a casebook")
                self.events.error.emit("; ".join(outcome.problems) + hint + " (nothing was recorded)")
            if not outcome.items:
                return
            run = self._show_run(InspectRequest(prompt="", n=len(outcome.items)), kind="query",
                                 index_source=index_source)
            for item in outcome.items:
                self.add_result(run.number, item)
            self.finish_run(run.number)
            from inspector.image_query import query_words

            best = self.ordered_items()[0]
            self.events.message.emit(f"{query_words(best)}: {best.suggestion.verdict} — {best.suggestion.reason}. "
                                     "Ctrl+R records it in the casebook.")

        def failed(exc: BaseException) -> None:
            self._searching = False
            self.events.error.emit(f"The image was not searched: {error_text(exc)} (nothing was recorded)")

        self.executor(work, done, failed)
        return True

    def record_query(self) -> bool:
        """Record the selected searched image in the casebook as an unlabeled finding of kind "query" (its file
        name, the sha256 of its bytes, its size, the index searched); the same image searched in the same index is
        the finding already there. False (and a message) when no searched image is selected."""
        from inspector.image_query import is_query, query_words, record_query

        item = self.selected
        if item is None or not is_query(item):
            self.events.message.emit("Select a searched image first: drop or paste an image onto the window.")
            return False
        path, notes = self.run.casebook_path, item.notes

        def work() -> tuple[int, bool]:
            from inspector.casebook import Casebook

            with Casebook.open(path) as book:
                return record_query(book, item, notes=notes)

        def done(result: tuple[int, bool]) -> None:
            fid, already = result
            item.finding_id = fid
            self.events.item_changed.emit(item)
            self.events.label_state.emit(INSPECT)
            self.events.message.emit(f"{query_words(item)} " + (f"is already finding #{fid}" if already else
                                     f"recorded as finding #{fid} (kind query)") + f" in {Path(path).name}")
            self.events.query_recorded.emit(item, fid)

        def failed(exc: BaseException) -> None:
            self.events.error.emit(f"The image was NOT recorded: {error_text(exc)}")

        self.executor(work, done, failed, serial=True)
        return True


# --- Qt-free helpers the model's jobs run -----------------------------------------------------------------------------


def inspected_from_finding(finding: Any) -> Inspected:
    """A casebook finding as the comparison panel shows a generation (its image decoded from the stored PNG)."""
    import io

    import numpy as np
    from PIL import Image

    from inspector.extraction import Suggestion

    with Image.open(io.BytesIO(finding.image_png)) as im:
        image = np.asarray(im.convert("RGB"), dtype=np.uint8)
    provenance = dict(finding.provenance or {})
    provenance.setdefault("prompt", finding.prompt)
    return Inspected(position=0, seed=finding.seed, image=image, png=finding.image_png, provenance=provenance,
                     neighbours=finding.neighbours,
                     suggestion=Suggestion(finding.suggested_verdict or NOVEL, finding.suggestion_reason),
                     finding_id=finding.id, label=finding.label, notes=finding.notes, index=finding.index)


def neighbour_pictures(item: Inspected, side: int = 150) -> tuple[list[dict] | None, str]:
    """Each neighbour's picture and its three heatmaps against ``item``, drawn from the exact arrays its
    distances came from, and a note ('' when all is well).

    A generation of a run has those arrays (``Neighbour.pixels``, else the index it was found in,
    ``item.index_source``); a finding from the casebook has them stored (``pixels_png``). A finding recorded
    before compared pixels were kept falls back to the index named by its record when that folder is still
    there with the same content, else to its thumbnails (None) with a note saying why.
    """
    from inspector.heatmap import heatmap_views
    from inspector.images import as_uint8, canonical

    if not item.neighbours:
        return [], ""
    if item.index_source is not None:
        from inspector.session import neighbour_views

        return neighbour_views(item.index_source, item, side), ""
    pictures: list[dict] = []
    missing = [nb for nb in item.neighbours if nb.comparison_pixels() is None or not nb.comparison_size]
    index = None
    if missing:
        index, why = _recorded_index(item)
        if index is None:
            return None, (f"this finding was recorded before the compared pixels were kept, and {why}: showing its "
                          "thumbnails, without heatmaps")
    try:
        for nb in item.neighbours:
            train = nb.comparison_pixels()
            size = nb.comparison_size or min(min(item.image.shape[:2]), index.comparison_size)
            if train is None:
                train = index.pixels_at([nb.item_id], size)[0]
            pictures.append(heatmap_views(as_uint8(canonical(item.image, size)), train, side))
    finally:
        if index is not None:
            index.close()
    return pictures, ("heatmaps drawn from the index it was searched in" if missing else "")


def _recorded_index(item: Inspected) -> tuple[Any, str]:
    """The index a finding's record names, opened, when it is still there with the same content."""
    ident = item.index or {}
    folder = ident.get("path")
    if not folder or not Path(folder, "manifest.json").is_file():
        return None, "the index it was searched in is not here" + (f" ({folder})" if folder else "")
    from inspector.training_index import TrainingIndex

    try:
        index = TrainingIndex.open(folder)
    except (UserError, OSError, ValueError) as exc:
        return None, f"the index it was searched in cannot be opened ({exc})"
    if ident.get("content_hash") and index.identity().get("content_hash") != ident["content_hash"]:
        index.close()
        return None, f"the index at {folder} has changed since"
    return index, ""


def casebook_revision(path: str | os.PathLike) -> int | None:
    """``Casebook.revision()`` of the file at ``path`` (None when there is no file yet)."""
    from inspector.casebook import Casebook

    if not Path(path).exists():
        return None
    with Casebook.open(path, create=False, readonly=True) as book:
        return book.revision()


def read_casebook(path: str | os.PathLike, filters: CasebookFilters, limit: int = 2000) -> dict[str, Any]:
    """What the Casebook view lists: rows under ``filters`` (with thumbnails), counts per label, runs newest
    first, the values each exact filter can take, and the revision read."""
    from inspector.casebook import Casebook

    empty = {"exists": False, "rows": [], "counts": {}, "runs": [], "choices": {}, "revision": None}
    if not Path(path).exists():
        return empty
    with Casebook.open(path, create=False, readonly=True) as book:
        revision = book.revision()
        rows = book.findings(**filters.query(), limit=limit, thumbnails=True)
        counts = book.counts()
        runs = book.runs(descending=True, limit=500)
        every = book.findings(limit=20000)
    choices = {
        "prompt": sorted({r.prompt for r in every}),
        "model": sorted({r.model_id for r in every if r.model_id}),
        "reviewer": sorted({r.reviewer for r in every if r.reviewer}),
    }
    return {"exists": True, "rows": rows, "counts": counts, "runs": runs, "choices": choices, "revision": revision}


#: SQLite's file header and where it keeps the application id (a casebook's is 0x4D494342, "MICB").
_SQLITE_HEADER = b"SQLite format 3\x00"


def classify_path(path: str | os.PathLike) -> str:
    """What a path the person dropped or opened is: "model" (a diffusers folder with model_index.json, or a
    .safetensors file), "index" (a folder made by ``inspector index build``) or "casebook" (a casebook file).

    Raises
    ------
    UserError
        When it is none of these, naming what each needs.
    """
    from inspector.casebook import APPLICATION_ID

    p = Path(path)
    if p.is_dir():
        if (p / "model_index.json").is_file():
            return "model"
        if (p / "manifest.json").is_file() and (p / "index.db").is_file():
            return "index"
        raise UserError(f"{p} is neither a model folder (with model_index.json) nor an index folder (with "
                        "manifest.json and index.db, made by `inspector index build`)")
    if p.is_file():
        if p.suffix.lower() == ".safetensors":
            return "model"
        try:
            with p.open("rb") as f:
                head = f.read(72)
        except OSError as exc:
            raise UserError(f"cannot read {p}: {exc.strerror or exc}") from None
        if head[:16] == _SQLITE_HEADER and int.from_bytes(head[68:72], "big") == APPLICATION_ID:
            return "casebook"
        raise UserError(f"{p} is not a casebook (an inspector SQLite file) or a .safetensors model")
    raise UserError(f"{p} does not exist")

