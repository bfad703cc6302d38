"""Progress reporting and cooperative cancellation shared by every long job.

The CLI turns progress calls into a tqdm bar; the desktop app turns them into Qt signals.
Neither side needs to know about the other, which keeps `trainer` free of Qt.
"""
from __future__ import annotations

import threading
from typing import Callable, Optional

from .errors import Cancelled

#: ``progress(done, total, message)``; ``total`` may be 0 when unknown.
ProgressFn = Callable[[int, int, str], None]


class CancelToken:
    """A thread-safe flag a job polls between units of work."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled")


def no_progress(done: int, total: int, message: str) -> None:
    """Default progress sink."""


def check(token: Optional[CancelToken]) -> None:
    if token is not None:
        token.raise_if_cancelled()
