"""The one way every command shows progress on stderr (:class:`inspector.progress.Progress` events).

On a terminal: one bar (tqdm) redrawn in place, with the event's words beside it. Anywhere else (a log file, a
pipe, CI): a plain line per update, at most one every ``interval_s`` seconds, plus one whenever the stage
changes and one at the end, so that a log reads line by line instead of one growing line of carriage returns.
Lines of their own (a skipped file, a finished prompt) go through :meth:`TerminalProgress.note`, which keeps
them clear of the bar.
"""

from __future__ import annotations

import sys
import time
from contextlib import AbstractContextManager, nullcontext
from typing import IO, Any

from inspector.progress import Progress

#: Resolution of the bar: the fraction is drawn in thousandths.
_BAR_STEPS = 1000


class TerminalProgress:
    """A progress callback for a command: call it with each :class:`Progress`; ``close()`` (or leave the
    ``with`` block) when the work is done.

    Parameters
    ----------
    stream
        Where to draw (default ``sys.stderr``).
    tty
        Draw a bar; default: whether ``stream`` is a terminal.
    interval_s
        Without a terminal, the least time in seconds between two lines of the same stage.
    """

    def __init__(self, stream: IO[str] | None = None, *, tty: bool | None = None, interval_s: float = 5.0):
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            try:
                tty = self.stream.isatty()
            except (AttributeError, ValueError):
                tty = False
        self.tty = bool(tty)
        self.interval_s = interval_s
        self._bar: Any = None
        self._last_line = float("-inf")
        self._last_stage: str | None = None
        self._finished = False  # the last line said its stage is done

    def __enter__(self) -> TerminalProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, event: Progress) -> None:
        if self.tty:
            self._draw(event)
            return
        now = time.monotonic()
        finished = event.fraction is not None and event.fraction >= 1.0 and (not event.total or
                                                                              event.done >= event.total)
        same = event.stage == self._last_stage
        if same and (self._finished or (not finished and now - self._last_line < self.interval_s)):
            return  # within the interval, or this stage's end already said
        self._last_stage, self._last_line, self._finished = event.stage, now, finished
        print(self.line(event), file=self.stream, flush=True)

    @staticmethod
    def line(event: Progress) -> str:
        """The event in one line: its words, with the share done in front when known."""
        share = f"{event.fraction * 100:3.0f}% " if event.fraction is not None else ""
        return share + event.describe()

    def note(self, text: str) -> None:
        """A line of its own above the bar (or in the log), e.g. a skipped file or a finished prompt."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def paused(self) -> AbstractContextManager[None]:
        """A block in which to print elsewhere on the same terminal (stdout): the bar steps aside and comes
        back after it."""
        if self._bar is None:
            return nullcontext()
        from tqdm import tqdm

        return tqdm.external_write_mode(file=self.stream)

    def close(self) -> None:
        """Take the bar off the terminal (nothing to do for plain lines)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _draw(self, event: Progress) -> None:
        done = self._bar.n if self._bar is not None else 0
        if event.fraction is not None:
            done = int(round(min(1.0, max(0.0, event.fraction)) * _BAR_STEPS))
        if self._bar is None:
            from tqdm import tqdm

            # leave=False: the finished bar is wiped, so what a command prints after it starts on a clean line.
            self._bar = tqdm(total=_BAR_STEPS, initial=done, desc=event.describe(), file=self.stream, leave=False,
                             dynamic_ncols=True, bar_format="{percentage:3.0f}% |{bar:24}| {desc}")
            self._last_stage, self._last_line = event.stage, time.monotonic()
            return
        self._bar.n = done
        self._bar.set_description_str(event.describe(), refresh=False)
        now = time.monotonic()
        # Redraw at most ten times a second (a tiny model reports hundreds of steps a second), but always at a
        # new stage and at the end.
        if event.stage != self._last_stage or now - self._last_line >= 0.1 or done >= _BAR_STEPS:
            self._bar.refresh()
            self._last_stage, self._last_line = event.stage, now
