"""A prompt list run from the window: ``inspector scan`` itself, with one progress line over the whole list.

The window (File > Run a prompt list…) hands a :class:`PromptListRequest` to :func:`run_prompt_list`, which reads
the file as ``scan`` reads it (:func:`inspector.prompt_files.load_prompt_file`, any format, the column chosen)
and runs :func:`inspector.scan.scan` on it: the same runs (one per prompt, kind "scan"), the same candidates as
unlabeled findings, the same scan folder beside the casebook. Nothing here writes the casebook itself, so the
window records exactly what ``inspector scan`` records, and the findings arrive in the review queue as a
scan's do.

The window always continues a scan of the same file with the same settings (``resume``): Cancel keeps every
finished prompt and every recorded image, and running the list again makes only what is missing.

:class:`ListTracker` turns the scan's events into one :class:`PromptListProgress`: images done of the whole
list (those finished before included), the prompt in work, the scan's own time estimate. No Qt here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspector.errors import UserError
from inspector.progress import SAMPLING, Progress, ProgressCallback, format_duration, no_progress
from inspector.prompt_files import PromptFile, load_prompt_file
from inspector.resources import DEMO
from inspector.scan import ESTIMATE, N_DEFAULT, PLAN, PROMPT_DONE, ScanProgress, scan
from inspector.session import CLIQUES, WEN, InspectRequest

#: The stages whose ``done`` counts the images of the prompt in work (the others count something else, e.g. the
#: files of a demo index built on first use).
_IMAGE_STAGES = (SAMPLING, CLIQUES, WEN, PROMPT_DONE)


@dataclass
class PromptListRequest:
    """A prompt list to run: the file and its column (None: the first of prompt, caption, text, TEXT), images
    per prompt, first seed, steps and guidance (None: the model's), and the model, index and casebook."""

    path: str
    column: str | None = None
    n: int = N_DEFAULT
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    model: str = DEMO
    index: str = DEMO
    casebook: str = ""

    def check(self) -> PromptFile:
        """Read the file and check every number and the casebook before anything loads; the prompts.

        Raises
        ------
        UserError
            A file that cannot be read as prompts, a column it does not have, a number out of its range, a
            casebook that cannot be written: one line each.
        """
        if not self.casebook:
            raise UserError("choose the casebook the results go to first")
        source = load_prompt_file(self.path, self.column)
        InspectRequest(prompt=source.prompts[0], n=self.n, seed=self.seed, steps=self.steps,
                       guidance=self.guidance).validate()
        from inspector.casebook import Casebook

        with Casebook.open(self.casebook) as book:  # one that cannot be written, or is busy, is named now
            book.check_writable()
        return source


@dataclass(frozen=True)
class PromptListProgress(Progress):
    """Where a prompt list stands, for its one progress bar: ``images_done`` of ``images_total`` over the whole
    list (images finished by an earlier run of it included), the prompt in work (``prompt_number`` of
    ``prompts``, 1-based), ``fraction`` = images_done / images_total, ``eta_s`` the scan's own estimate."""

    images_done: int = 0
    images_total: int = 0
    prompt_number: int = 0
    prompts: int = 0
    prompt: str = ""
    continued: bool = False  # an earlier run of this list had finished prompts or recorded images

    def describe(self) -> str:
        """E.g. 'images 4 of 12 · prompt 2 of 3 “colourful squares” · sampling step 2/5 · about 30 s left'."""
        parts = [f"images {self.images_done} of {self.images_total}"]
        if self.prompt_number:
            parts.append(f"prompt {self.prompt_number} of {self.prompts} “{_short(self.prompt)}”")
        if self.stage not in (PROMPT_DONE, PLAN, ESTIMATE, "done"):
            parts.append(self.stage + (f" step {self.step}/{self.steps}" if self.step and self.steps else ""))
        if self.eta_s is not None and self.eta_s > 0 and self.images_done < self.images_total:
            parts.append(f"{format_duration(self.eta_s)} left")
        return " · ".join(parts)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class ListTracker:
    """Turns a scan's events (:class:`inspector.scan.ScanProgress`) into :class:`PromptListProgress`: the images
    of prompt k (0-based) are done once prompt k is, so the list's count is k x n plus the prompt in work's own
    count, never going back."""

    prompts: list[str]
    n: int
    images_done: int = 0
    eta_s: float | None = None
    prompt_index: int | None = None
    continued: bool = False
    fraction: float = 0.0  # the list's share done, as last reported

    @property
    def images_total(self) -> int:
        return len(self.prompts) * self.n

    def _event(self, stage: str, in_image: float = 0.0, **extra: Any) -> PromptListProgress:
        k = self.prompt_index
        total = self.images_total
        fraction = min(1.0, (self.images_done + in_image) / total) if total else 1.0
        fraction = self.fraction = max(self.fraction, fraction)  # events between steps never move the bar back
        return PromptListProgress(stage, done=self.images_done, total=total, fraction=fraction, eta_s=self.eta_s,
                                  images_done=self.images_done, images_total=total,
                                  prompt_number=0 if k is None else k + 1, prompts=len(self.prompts),
                                  prompt="" if k is None else self.prompts[k], continued=self.continued, **extra)

    def event(self, event: Progress) -> PromptListProgress:
        """One event of the scan, as the list's progress."""
        if isinstance(event, ScanProgress):
            if event.stage == PLAN:
                self.continued = bool(event.finished or event.recorded)
                self.images_done = max(self.images_done, self.images_total - event.images_left)
            if event.prompt_index is not None:
                self.prompt_index = event.prompt_index
            if event.eta_s is not None:
                self.eta_s = event.eta_s
        k = self.prompt_index
        if k is not None and event.stage in _IMAGE_STAGES and event.total:
            self.images_done = max(self.images_done, k * self.n + min(event.done, self.n))
        # The image in work counts by its denoising steps, so the bar moves within an image too.
        in_image = event.step / event.steps if event.stage == SAMPLING and event.step and event.steps and \
            event.total and event.done < event.total else 0.0
        return self._event(event.stage, in_image, step=event.step, steps=event.steps)

    def result(self, result: dict[str, Any]) -> PromptListProgress:
        """A prompt's result (finished now or by an earlier run): its images are done."""
        if result.get("complete") and result.get("prompt") in self.prompts:
            k = self.prompts.index(result["prompt"])
            self.prompt_index = k
            self.images_done = max(self.images_done, (k + 1) * self.n)
        return self._event(PROMPT_DONE)

    def finished(self) -> PromptListProgress:
        """The list ended (done, or stopped): the last event, 100% when every prompt finished."""
        return self._event("done")


def run_prompt_list(request: PromptListRequest, *, cancel: threading.Event | None = None,
                    progress: ProgressCallback | None = None, checked: PromptFile | None = None
                    ) -> Iterator[dict[str, Any]]:
    """Scan the list (:func:`inspector.scan.scan`, continuing an earlier run of the same list and settings) and
    yield each prompt's result as ``scan`` does; ``progress`` gets :class:`PromptListProgress` events only.
    Cancel (``cancel``) stops within one denoising step: finished prompts stay recorded, the prompt in work's run
    is finished as cancelled, and its recorded images wait for the next run of the list. ``checked``: what
    ``request.check()`` returned, when the caller checked it already."""
    report = progress or no_progress
    source = checked if checked is not None else request.check()
    tracker = ListTracker(source.prompts, request.n)
    report(tracker._event("reading", message=source.describe()))
    results = scan(source.prompts, request.casebook, model=request.model, index=request.index, n=request.n,
                   seed=request.seed, steps=request.steps, guidance=request.guidance, resume=True,
                   prompts_file=request.path, cancel=cancel, progress=lambda e: report(tracker.event(e)))
    try:
        for result in results:
            report(tracker.result(result))
            yield result
    finally:
        results.close()
        report(tracker.finished())


@dataclass
class ListOutcome:
    """What a run of a prompt list left in the casebook, for the words the window shows at its end."""

    prompts: int
    results: list[dict[str, Any]] = field(default_factory=list)
    cancelled: bool = False
    error: str = ""

    @property
    def finished(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r.get("complete")]

    def words(self, casebook: str) -> str:
        """E.g. 'Prompt list done: 3 of 3 prompts scanned, 1 flagged; 4 candidates recorded in casebook.db: they
        wait in the review queue.'"""
        done = self.finished
        findings = sum(len(r.get("findings") or []) for r in done)
        flagged = sum(1 for r in done if r.get("flagged"))
        head = ("Prompt list failed: " + self.error + "; " if self.error else
                "Prompt list cancelled: " if self.cancelled else "Prompt list done: ")
        text = (f"{head}{len(done)} of {self.prompts} prompts scanned, {flagged} flagged; {findings} candidates in "
                f"{Path(casebook).name}" + (": they wait in the review queue." if findings else "."))
        if len(done) < self.prompts:
            text += " Run the list again to continue where it stopped (recorded images are not made again)."
        return text
