"""The annotator's review queue, without Qt: the casebook's findings that need a label, one at a time.

Label Studio's habit: each label advances to the next item. The queue holds finding ids in the order the
annotator chose (suggestion, clique, distance, prompt); labeled findings stay in it (so Back returns to them)
but are no longer "left". :meth:`ReviewQueue.refresh` picks up candidates another program (a scan) wrote into
the same casebook, appending them after the ones already queued, so the annotator's place never moves.

Adjudication mode walks the findings where reviewers disagree (:func:`inspector.casebook.disagreements`, after
``casebook merge``) that no adjudication settled yet, and records each decision as its own label event whose
note starts with :data:`inspector.casebook.ADJUDICATED`.

Every call reads or writes the casebook at once: the window runs them off its UI thread (a worker).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from inspector.casebook import ADJUDICATED, Casebook, Disagreement, disagreements
from inspector.findings import (
    LABELS,
    LIKENESS_ONLY,
    LIKENESS_SUGGESTED,
    MEMORIZED,
    NOVEL,
    UNLABELED,
    FindingSummary,
)

#: The orders an annotator can choose, in their words.
ORDERS = {
    "distance": "nearest distance first",
    "suggestion": "suggested near copies first",
    "clique": "largest clique first",
    "prompt": "by prompt, then seed",
}
# Near copies first, then likeness, then novel: the suggestion's own order of urgency.
_SUGGESTION_RANK = {MEMORIZED: 0, LIKENESS_SUGGESTED: 1, LIKENESS_ONLY: 1, NOVEL: 2}


@dataclass(frozen=True)
class Done:
    """One change the annotator made through the queue, for undo: the finding and what was done."""

    finding_id: int
    action: str  # "label" or "note"
    previous_notes: str = ""


class ReviewQueue:
    """The findings that need a label, in the annotator's order.

    Parameters
    ----------
    book
        The casebook (opened for writing).
    reviewer
        Who labels: every event the queue writes carries this name.
    order
        One of :data:`ORDERS`.
    suggestion, text, run_id
        Filters: only findings with this suggested verdict, whose prompt/notes/captions hold ``text``, or made
        by this run.
    adjudicate
        Walk the reviewers' disagreements instead of the unlabeled findings.
    """

    def __init__(self, book: Casebook, reviewer: str, *, order: str = "distance", suggestion: str | None = None,
                 text: str | None = None, run_id: int | None = None, adjudicate: bool = False):
        if order not in ORDERS:
            raise ValueError(f"unknown order {order!r}: use one of {', '.join(ORDERS)}")
        self.book = book
        self.reviewer = reviewer
        self.order = order
        self.suggestion, self.text, self.run_id = suggestion, text, run_id
        self.adjudicate = adjudicate
        self.ids: list[int] = []
        self.position = 0
        self.skipped: set[int] = set()
        self._summaries: dict[int, FindingSummary] = {}
        self._disagreements: dict[int, Disagreement] = {}
        self._done: list[Done] = []
        self._revision = -1
        self.refresh()

    # --- reading ------------------------------------------------------------------------------------------

    def _candidates(self) -> list[FindingSummary]:
        if self.adjudicate:
            self._disagreements = {d.finding_id: d for d in disagreements(self.book) if d.adjudicated is None}
            found = [self.book.summary(fid) for fid in self._disagreements]
            return [s for s in found if self._matches(s)]
        return self.book.findings(label=UNLABELED, suggested=self.suggestion, text=self.text, run_id=self.run_id)

    def _matches(self, s: FindingSummary) -> bool:
        if self.suggestion is not None and s.suggested_verdict != self.suggestion:
            return False
        return not (self.text and self.text.lower() not in s.prompt.lower())

    def _sorted(self, found: list[FindingSummary]) -> list[FindingSummary]:
        far = float("inf")
        if self.order == "distance":
            return sorted(found, key=lambda s: (s.nearest_tiled_l2 if s.nearest_tiled_l2 is not None else far, s.id))
        if self.order == "suggestion":
            return sorted(found, key=lambda s: (_SUGGESTION_RANK.get(s.suggested_verdict or "", 3),
                                                s.nearest_tiled_l2 if s.nearest_tiled_l2 is not None else far, s.id))
        if self.order == "prompt":
            return sorted(found, key=lambda s: (s.prompt, s.seed, s.id))
        cliques = {r.id: r.clique_size or 0 for r in self.book.runs()}
        return sorted(found, key=lambda s: (-cliques.get(s.run_id, 0), s.prompt, s.seed, s.id))

    def refresh(self) -> int:
        """Read the casebook again when anyone changed it (``Casebook.revision()``): findings that now need a
        label and are not queued yet are appended (in the chosen order among themselves), and the labels of
        queued ones are read again. Returns how many findings were added."""
        revision = self.book.revision()
        if revision == self._revision:
            return 0
        self._revision = revision
        fresh = self._sorted(self._candidates())
        known = set(self.ids)
        added = [s.id for s in fresh if s.id not in known]
        for s in fresh:
            self._summaries[s.id] = s
        for fid in self.ids:
            if fid not in {s.id for s in fresh}:
                self._summaries[fid] = self.book.summary(fid)
        self.ids.extend(added)
        if self.position >= len(self.ids):
            self.position = max(0, len(self.ids) - 1)
        return len(added)

    def needs_label(self, finding_id: int) -> bool:
        """Whether the finding is still waiting: unlabeled (in adjudication mode: not adjudicated yet)."""
        if self.adjudicate:
            return finding_id in self._disagreements
        return self._summaries[finding_id].label == UNLABELED

    @property
    def current(self) -> FindingSummary | None:
        """The finding on screen, or None when the queue is empty."""
        return self._summaries[self.ids[self.position]] if self.ids else None

    def summaries(self) -> list[FindingSummary]:
        """The queued findings as last read, in the queue's order (the window's list)."""
        return [self._summaries[fid] for fid in self.ids]

    def disagreement(self, finding_id: int) -> Disagreement | None:
        """What the reviewers said, in adjudication mode."""
        return self._disagreements.get(finding_id)

    @property
    def left(self) -> int:
        """How many queued findings still need a label (skipped ones included: they wait too)."""
        return sum(1 for fid in self.ids if self.needs_label(fid))

    def in_words(self) -> str:
        """``3 of 20, 17 left``; ``nothing to review`` when empty."""
        if not self.ids:
            return "nothing to adjudicate" if self.adjudicate else "nothing to review: every finding is labeled"
        return f"{self.position + 1} of {len(self.ids)}, {self.left} left"

    # --- moving -------------------------------------------------------------------------------------------

    def advance(self) -> None:
        """To the next finding after the current one that needs a label and was not skipped; when none is left
        after it, to the first one still waiting (skipped ones come back); else stay. (A label advances by
        itself; the window calls this after labeling several at once.)"""
        self._advance()

    def _advance(self) -> None:
        n = len(self.ids)
        for i in range(self.position + 1, n):
            if self.needs_label(self.ids[i]) and self.ids[i] not in self.skipped:
                self.position = i
                return
        for i in range(n):
            if i != self.position and self.needs_label(self.ids[i]):
                self.position = i
                return

    def skip(self) -> None:
        """Leave the current finding for later and go on."""
        if self.current is not None:
            self.skipped.add(self.current.id)
            self._advance()

    def back(self) -> None:
        """Back to the previous finding in the queue (labeled or not)."""
        self.position = max(0, self.position - 1)

    def go_to(self, finding_id: int) -> None:
        self.position = self.ids.index(finding_id)

    # --- writing ------------------------------------------------------------------------------------------

    def _note_for(self, finding_id: int, note: str) -> str:
        if not self.adjudicate:
            return note
        d = self._disagreements.get(finding_id)
        said = ", ".join(f"{who or 'no name'} {label}" for who, label in d.labels.items()) if d else ""
        return f"{ADJUDICATED}: {said}" + (f"; {note}" if note else "")

    def label(self, label: str, note: str = "") -> None:
        """Label the current finding (an event by :attr:`reviewer`; in adjudication mode its note starts with
        "adjudicated" and names what each reviewer said) and go to the next one that needs a label."""
        current = self.current
        if current is None:
            return
        self.label_many([current.id], label, note)
        self._advance()

    def label_many(self, finding_ids: Sequence[int], label: str, note: str = "") -> None:
        """Give several findings the same label, each its own event (one undo takes back the last one)."""
        if label not in LABELS:
            raise ValueError(f"unknown label {label!r}: use one of {', '.join(LABELS)}")
        for fid in finding_ids:
            event = self.book.label(fid, label, reviewer=self.reviewer, note=self._note_for(fid, note))
            self._done.append(Done(fid, "label"))
            self.skipped.discard(fid)
            self._disagreements.pop(fid, None)
            self._summaries[fid] = self.book.summary(fid)
            self._wrote(event.id)

    def set_notes(self, notes: str) -> None:
        """Replace the current finding's notes (a "note" event)."""
        current = self.current
        if current is None:
            return
        event = self.book.set_notes(current.id, notes, reviewer=self.reviewer)
        self._done.append(Done(current.id, "note", previous_notes=current.notes))
        self._summaries[current.id] = self.book.summary(current.id)
        self._wrote(event.id)

    def _wrote(self, event_id: int) -> None:
        """Our own write needs no re-read, but only when it is the one event since the last read: another
        program's write just before it (a scan's candidates) must still be picked up by :meth:`refresh`."""
        if self._revision == event_id - 1:
            self._revision = event_id

    @property
    def can_undo(self) -> bool:
        return bool(self._done)

    def undo(self) -> int | None:
        """Take back the queue's last change (a label: an "undo" event; notes: the notes before, as a new note
        event) and show that finding again. Returns its id, or None when there is nothing to undo."""
        if not self._done:
            return None
        done = self._done[-1]  # taken off only once written: a busy casebook's retry undoes the same change
        if done.action == "label":
            event = self.book.undo_last_label(done.finding_id, reviewer=self.reviewer,
                                              note="undone in the review queue")
        else:
            event = self.book.set_notes(done.finding_id, done.previous_notes, reviewer=self.reviewer)
        self._done.pop()
        if done.action == "label" and self.adjudicate:
            self._revision = -1
            self.refresh()
        self._summaries[done.finding_id] = self.book.summary(done.finding_id)
        self._wrote(event.id)
        if done.finding_id in self.ids:
            self.go_to(done.finding_id)
        return done.finding_id

    def labeled(self, finding_ids: Iterable[int] | None = None) -> dict[int, str]:
        """The current label of each queued finding (for tests and the window's list)."""
        ids = self.ids if finding_ids is None else list(finding_ids)
        return {fid: self._summaries[fid].label for fid in ids}
