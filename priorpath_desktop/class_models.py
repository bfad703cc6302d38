"""The class-aware models for class sketches, loaded in a worker the first time a class sketch asks for them.

They live beside the user's binary models, so switching between a binary and a class document switches
models without reloading either. A new device or stain style drops them; the next class sketch reloads.
"""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QObject, Signal

from trainer.inference import Engine

from .class_generation import load_class_engine
from .workers import Job

LOADING_NOTE = "loading the class models (he3: the RGB library takes a few seconds)…"


class ClassModels(QObject):
    ready = Signal()
    failed = Signal(str)
    busy = Signal(bool)

    def __init__(self, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.engine: Optional[Engine] = None
        self.error: Optional[str] = None  # why the last load failed (not retried until the settings change)
        self._job: Optional[Job] = None
        self._settings: tuple[str, Optional[tuple[str, ...]]] = ("auto", None)

    @property
    def loading(self) -> bool:
        return self._job is not None

    def configure(self, device: str, style: Optional[list[str]]) -> None:
        """The device and stain style of the binary models; other ones drop the loaded class models."""
        settings = (device, tuple(style) if style else None)
        if settings == self._settings:
            return
        self._settings = settings
        self.engine, self.error = None, None
        self.cancel()

    def get(self) -> Optional[Engine]:
        """The class engine, or None while it loads (a load starts here) or when it could not be loaded."""
        if self.engine is None and self._job is None and self.error is None:
            device, style = self._settings
            job = Job(lambda progress, cancel: load_class_engine(device, style), "load class models", self)
            job.finished.connect(lambda engine, job=job: self._ended(job, engine, None))
            job.failed.connect(lambda message, job=job: self._ended(job, None, message))
            job.cancelled.connect(job.deleteLater)
            self._job = job
            job.start()
            self.busy.emit(True)
        return self.engine

    def cancel(self) -> None:
        if self._job is not None:
            self._job.cancel()  # its result, when it comes, is dropped
            self._job = None
            self.busy.emit(False)

    def _ended(self, job: Job, engine: Optional[Engine], message: Optional[str]) -> None:
        job.deleteLater()
        if job is not self._job:
            return
        self._job = None
        self.engine, self.error = engine, message
        self.busy.emit(False)
        if message is None:
            self.ready.emit()
        else:
            self.failed.emit(message)
