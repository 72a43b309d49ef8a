"""Progress, reported one way by every long job: sampling a prompt's images, building an index, one inspection,
a scan. An engine calls ``progress(event)`` with a :class:`Progress`; the command line draws it with one
terminal renderer (``inspector.commands.progress``) and the window with its progress bar. No I/O here."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """Where a job stands.

    Attributes
    ----------
    stage
        What is happening, in words a person reads: "loading model", "sampling", "indexing", "cliques".
    done, total
        Units finished and units in all (images of a prompt, files of an index); ``total`` None when unknown.
    step, steps
        For sampling: the denoising step of the running batch, 1 .. ``steps``; None otherwise.
    fraction
        The whole job's share done, in [0, 1]; None when the job cannot tell (loading a model).
    eta_s
        Seconds left for the whole job, estimated; None until it can be estimated.
    message
        More words for this moment, e.g. "prompt 3/40" or a skipped file; "" when there are none.
    """

    stage: str
    done: int = 0
    total: int | None = None
    step: int | None = None
    steps: int | None = None
    fraction: float | None = None
    eta_s: float | None = None
    message: str = ""

    def describe(self) -> str:
        """The event in one line of plain words: "sampling: 3/16, step 12/25, about 40 s left"."""
        parts = []
        if self.total:
            parts.append(f"{self.done}/{self.total}")
        elif self.done:
            parts.append(str(self.done))
        if self.step is not None and self.steps:
            parts.append(f"step {self.step}/{self.steps}")
        if self.eta_s is not None and self.eta_s > 0:
            parts.append(f"{format_duration(self.eta_s)} left")
        line = self.stage + (": " + ", ".join(parts) if parts else "")
        return f"{line} ({self.message})" if self.message else line


#: The stage of the generation engine's events (one per denoising step), which workflows forward as they are.
SAMPLING = "sampling"

#: What an engine calls with each event.
ProgressCallback = Callable[[Progress], None]


def sampling_fraction(images_done: int, total: int, step: int, steps: int, batch: int) -> float:
    """The share of a request's denoising work done when ``images_done`` images are finished and the running
    batch of ``batch`` images is at ``step`` of ``steps``; in [0, 1]."""
    if total <= 0 or steps <= 0:
        return 0.0
    return min(1.0, (images_done * steps + step * batch) / (total * steps))


def format_duration(seconds: float) -> str:
    """A time left in words: ``about 40 s``, ``about 12 min``, ``about 3.4 h`` (rounded up, never "0 s")."""
    if seconds < 90:
        return f"about {max(1, math.ceil(seconds))} s"
    if seconds < 90 * 60:
        return f"about {math.ceil(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def no_progress(_event: Progress) -> None:
    """A callback that ignores every event (the default where nobody is listening)."""
