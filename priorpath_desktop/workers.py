"""Running long jobs off the GUI thread.

A job is any callable ``fn(progress, cancel) -> result`` built on ``trainer.jobs`` (no Qt inside it). ``Job``
runs it on Qt's global thread pool and turns its progress calls, result and exceptions into signals that
arrive on the GUI thread, so widgets only ever touch Qt from the thread that owns them.
"""
from __future__ import annotations

import logging
import traceback
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from trainer.errors import Cancelled, PriorPathError
from trainer.jobs import CancelToken, ProgressFn

log = logging.getLogger(__name__)

JobFn = Callable[[ProgressFn, CancelToken], Any]


def describe_error(exc: BaseException) -> str:
    """One message a user can act on: our own errors as they are, anything else with its type."""
    if isinstance(exc, PriorPathError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory: try a smaller image or close other programs"
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return f"{type(exc).__name__}: {exc}"


class Job(QObject):
    """One run of ``fn`` on the thread pool. Connect to the signals, then call ``start()``.

    Exactly one of ``finished``, ``failed`` or ``cancelled`` is emitted at the end.
    """

    progress = Signal(int, int, str)  # done, total (0: unknown), message
    finished = Signal(object)  # fn's result
    failed = Signal(str)  # a message for the user (the traceback goes to the log)
    cancelled = Signal()

    def __init__(self, fn: JobFn, name: str = "job", parent: Optional[QObject] = None):
        super().__init__(parent)
        self.fn = fn
        self.name = name
        self.token = CancelToken()
        self.done = False

    def start(self, pool: Optional[QThreadPool] = None) -> "Job":
        (pool or QThreadPool.globalInstance()).start(_Runnable(self))
        return self

    def cancel(self) -> None:
        self.token.cancel()

    # runs on the pool thread; signals are queued to the receivers' (GUI) thread
    def _run(self) -> None:
        try:
            result = self.fn(self._emit_progress, self.token)
        except Cancelled:
            self._end(self.cancelled.emit)
        except PriorPathError as exc:  # the user's input: the message says it all, no traceback
            log.warning("%s: %s", self.name, exc)
            message = describe_error(exc)
            self._end(lambda: self.failed.emit(message))
        except BaseException as exc:  # a job must never take the application down
            log.error("%s failed:\n%s", self.name, traceback.format_exc())
            message = describe_error(exc)
            self._end(lambda: self.failed.emit(message))
        else:
            if self.token.cancelled:
                self._end(self.cancelled.emit)
            else:
                self._end(lambda: self.finished.emit(result))

    def _end(self, emit: Callable[[], None]) -> None:
        self.done = True
        try:
            emit()
        except RuntimeError:  # the job's owner (a closed window) was deleted meanwhile: nobody is listening
            log.debug("%s ended after its owner was deleted", self.name)

    def _emit_progress(self, done: int, total: int, message: str) -> None:
        try:
            self.progress.emit(int(done), int(total), str(message))
        except RuntimeError:  # deleted owner, as above; stop the work, its result has nowhere to go
            self.token.cancel()


class _Runnable(QRunnable):
    def __init__(self, job: Job):
        super().__init__()
        self.job = job  # holds the job alive while it runs
        self.setAutoDelete(True)

    def run(self) -> None:
        self.job._run()


class LatestOnly(QObject):
    """Runs one job at a time where only the newest request matters (live previews).

    ``submit`` cancels the running job and queues the new one; a request that arrives while another waits
    replaces it. Results of superseded jobs are never delivered.
    """

    finished = Signal(object)
    failed = Signal(str)
    busy = Signal(bool)

    def __init__(self, parent: Optional[QObject] = None, pool: Optional[QThreadPool] = None):
        super().__init__(parent)
        self._pool = pool
        self._current: Optional[Job] = None
        self._waiting: Optional[tuple[JobFn, str]] = None
        self.submitted = 0
        self.delivered = 0

    @property
    def idle(self) -> bool:
        return self._current is None and self._waiting is None

    def submit(self, fn: JobFn, name: str = "preview") -> None:
        self.submitted += 1
        self._waiting = (fn, name)
        if self._current is not None:
            self._current.cancel()
        else:
            self._start_waiting()

    def cancel(self) -> None:
        self._waiting = None
        if self._current is not None:
            self._current.cancel()

    def _start_waiting(self) -> None:
        fn, name = self._waiting
        self._waiting = None
        job = Job(fn, name, self)
        job.finished.connect(lambda result, job=job: self._ended(job, result, None))
        job.failed.connect(lambda message, job=job: self._ended(job, None, message))
        job.cancelled.connect(lambda job=job: self._ended(job, None, None))
        self._current = job
        self.busy.emit(True)
        job.start(self._pool)

    def _ended(self, job: Job, result: Any, message: Optional[str]) -> None:
        job.deleteLater()
        self._current = None
        if self._waiting is not None:  # superseded: drop this result, run the newest request
            self._start_waiting()
            return
        self.busy.emit(False)
        if message is not None:
            self.failed.emit(message)
        elif not job.token.cancelled:
            self.delivered += 1
            self.finished.emit(result)
