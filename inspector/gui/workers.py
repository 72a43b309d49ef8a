"""Background work for the window: a generator runs on a thread pool, one unit of work per ``yield``.

After superqt's ``GeneratorWorker``: every yielded value travels to the UI thread as a signal, ``quit()`` is
checked between yields (and passed to the work as a cancel event so it can stop inside a unit too), errors
travel as a signal and are shown on the UI thread. The UI thread never samples, loads a model or searches.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable, Generator
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


class WorkerSignals(QObject):
    started = Signal()
    yielded = Signal(object)
    progress = Signal(object)
    errored = Signal(object)  # the exception
    finished = Signal()  # always last, after returned / errored / cancelled
    returned = Signal(object)


class GeneratorWorker(QRunnable):
    """Runs ``func(*args, cancel=event, progress=callback, **kwargs)``, a generator function, off the UI thread."""

    def __init__(self, func: Callable[..., Generator | Any], *args, **kwargs):
        super().__init__()
        self.setAutoDelete(False)
        self._func = func
        self._args = args
        self._kwargs = kwargs
        self.cancel_event = threading.Event()
        self.signals = WorkerSignals()
        self.done = threading.Event()

    def quit(self) -> None:
        """Ask the work to stop at the next check (between images, or between sampling steps)."""
        self.cancel_event.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def run(self) -> None:  # on a pool thread
        sig = self.signals
        try:
            sig.started.emit()
            result = self._func(*self._args, cancel=self.cancel_event, progress=sig.progress.emit, **self._kwargs)
            if isinstance(result, Generator):
                for value in result:
                    # A value made before the cancel arrived is shown (a finished image stays, and the run's
                    # record already counts it); nothing after it is computed.
                    sig.yielded.emit(value)
                    if self.cancel_event.is_set():
                        result.close()
                        break
                result = None
            sig.returned.emit(result)
        except BaseException as exc:  # noqa: BLE001 - every error is shown to the person, none is swallowed
            exc.traceback_text = traceback.format_exc()  # type: ignore[attr-defined]
            sig.errored.emit(exc)
        finally:
            self.done.set()
            sig.finished.emit()


class WorkerHub:
    """Owns the thread pools: one for heavy work (sampling, search), one serial pool for casebook writes so that
    labels are written in the order they were given."""

    def __init__(self) -> None:
        self.heavy = QThreadPool()
        self.heavy.setMaxThreadCount(2)
        self.serial = QThreadPool()
        self.serial.setMaxThreadCount(1)
        self._alive: set[GeneratorWorker] = set()

    def start(self, worker: GeneratorWorker, serial: bool = False) -> GeneratorWorker:
        self._alive.add(worker)
        worker.signals.finished.connect(lambda: self._alive.discard(worker))
        (self.serial if serial else self.heavy).start(worker)
        return worker

    def shutdown(self, timeout_ms: int = 10000) -> None:
        for worker in list(self._alive):
            worker.quit()
        self.heavy.waitForDone(timeout_ms)
        self.serial.waitForDone(timeout_ms)
