"""File → Export as slide: the sketch on the canvas, generated at N times its size into a whole slide.

The sketch is drawn at reduced resolution; ``trainer.slide.generate_slide`` generates it tile by tile at
full resolution and streams it into a pyramidal TIFF that OpenSlide and QuPath open, with its fine mask and
the sketch as GeoJSON. Before Start the dialog shows the slide's size, tile count and pyramid levels, and an
estimate of the time on this machine (one tile with tissue and one of air generated and timed, in a job, a
moment after the scale last changed). Generation runs in a job with progress and Stop; a stopped or failed
run leaves no file behind.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PySide6.QtCore import Qt, QTimer, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QCheckBox, QDialog, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                               QLineEdit, QProgressBar, QPushButton, QSpinBox, QVBoxLayout)

from trainer.errors import PriorPathError
from trainer.inference import Engine
from trainer.slide import MAX_SLIDE_SIDE, SlideResult, estimate_seconds, generate_slide, plan_slide

from .export_dialog import format_duration
from .folders import SLIDES, FolderMemory
from .messages import show_error
from .workers import Job

ESTIMATE_DELAY_MS = 400


class SlideDialog(QDialog):
    def __init__(self, engine_provider: Callable[[], Optional[Engine]], sketch: np.ndarray, name: str = "sketch",
                 parent=None, folders: Optional[FolderMemory] = None):
        super().__init__(parent)
        self.setWindowTitle("Export as slide")
        self._engine_provider, self.sketch, self.folders = engine_provider, np.asarray(sketch), folders
        self._estimate_job: Optional[Job] = None
        self._job: Optional[Job] = None
        self.result: Optional[SlideResult] = None
        h, w = self.sketch.shape[:2]

        self.scale_spin = QSpinBox(minimum=1, maximum=max(1, MAX_SLIDE_SIDE // max(h, w)))
        self.scale_spin.setValue(min(self.scale_spin.maximum(), max(1, 8192 // max(h, w))))
        self.scale_spin.setToolTip("the slide is this many times the sketch's size")
        self.seed_spin = QSpinBox(minimum=0, maximum=2 ** 31 - 1)
        self.mpp_spin = QDoubleSpinBox(minimum=0.0, maximum=100.0, decimals=3, singleStep=0.25)
        self.mpp_spin.setSpecialValueText("not recorded")
        self.lossless_box = QCheckBox("Lossless RGB (exact label, files several times larger)")
        self.out_edit = QLineEdit()
        start = folders.save_path(SLIDES, f"{name}.tif") if folders else str(Path.home() / f"{name}.tif")
        self.out_edit.setText(start)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(browse)
        self.plan_label = QLabel()
        self.estimate_label = QLabel()
        form = QFormLayout()
        form.addRow(f"Sketch: {w}x{h} px, scale", self.scale_spin)
        form.addRow("Slide", self.plan_label)
        form.addRow("Time", self.estimate_label)
        form.addRow("Seed", self.seed_spin)
        form.addRow("Microns per pixel", self.mpp_spin)
        form.addRow("", self.lossless_box)
        form.addRow("Output", out_row)
        self.progress = QProgressBar()
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop", enabled=False)
        self.stop_button.clicked.connect(self.stop)
        self.open_button = QPushButton("Open folder", enabled=False)
        self.open_button.clicked.connect(self._open_folder)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.stop_button, self.open_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addLayout(buttons)

        self._estimate_timer = QTimer(self, singleShot=True, interval=ESTIMATE_DELAY_MS)
        self._estimate_timer.timeout.connect(self._estimate)
        self.scale_spin.valueChanged.connect(self._scale_changed)
        self._scale_changed()

    # --- before Start ---------------------------------------------------------------------------------------
    def _scale_changed(self) -> None:
        try:
            self.plan_label.setText(plan_slide(self.sketch, self.scale_spin.value()).describe())
        except PriorPathError as exc:
            self.plan_label.setText(str(exc))
        self.estimate_label.setText("estimating…")
        self._estimate_timer.start()

    def _estimate(self) -> None:
        engine = self._engine_provider()
        if engine is None:
            self.estimate_label.setText("the models are still loading")
            self._estimate_timer.start(1000)
            return
        if self._estimate_job is not None:
            self._estimate_job.cancel()
        scale, sketch = self.scale_spin.value(), self.sketch
        job = Job(lambda progress, cancel: (scale, estimate_seconds(engine, sketch, scale)), "slide estimate", self)
        job.finished.connect(self._estimated)
        job.failed.connect(lambda message: self.estimate_label.setText(f"no estimate: {message}"))
        self._estimate_job = job.start()

    def _estimated(self, result) -> None:
        scale, seconds = result
        if scale == self.scale_spin.value():  # a later scale has its own estimate coming
            self.estimate_label.setText(f"about {format_duration(seconds)} on this machine")

    # --- the run ----------------------------------------------------------------------------------------------
    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export as slide", self.out_edit.text(), "Pyramidal TIFF (*.tif)")
        if path:
            self.out_edit.setText(path if path.lower().endswith((".tif", ".tiff")) else f"{path}.tif")

    def is_running(self) -> bool:
        return self._job is not None

    def start(self) -> None:
        engine = self._engine_provider()
        if engine is None:
            self.status.setText("the models are still loading; try again in a moment")
            return
        if not (np.asarray(self.sketch) > 0).any():
            self.status.setText("the sketch is empty: draw some tissue first")
            return
        out = Path(self.out_edit.text().strip()).expanduser()
        if self.folders is not None:
            self.folders.remember(SLIDES, out)
        sketch, scale, seed = self.sketch, self.scale_spin.value(), self.seed_spin.value()
        mpp, lossless = (self.mpp_spin.value() or None), self.lossless_box.isChecked()
        job = Job(lambda progress, cancel: generate_slide(sketch, scale, out, engine, seed=seed, mpp=mpp,
                                                          lossless=lossless, progress=progress, cancel=cancel),
                  "slide export", self)
        job.progress.connect(self._progress)
        job.finished.connect(self._finished)
        job.failed.connect(self._failed)
        job.cancelled.connect(self._stopped)
        self._set_running(True)
        self.status.setText(f"generating {out.name}…")
        self._job = job.start()

    def stop(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self.status.setText("stopping after the current tile…")

    def _progress(self, done: int, total: int, message: str) -> None:
        self.progress.setMaximum(max(1, total))
        self.progress.setValue(done)

    def _finished(self, result: SlideResult) -> None:
        self.result = result
        self._set_running(False)
        self.open_button.setEnabled(True)
        names = [p.name for p in (result.rgb, result.mask, result.fine_annotations, result.annotations) if p]
        self.status.setText(f"done in {format_duration(result.seconds)}: {', '.join(names[:-1])} and {names[-1]} in "
                            f"{result.rgb.parent}")

    def _failed(self, message: str) -> None:
        self._set_running(False)
        self.status.setText(f"failed: {message}")
        show_error(self, "Export as slide", message)

    def _stopped(self) -> None:
        self._set_running(False)
        self.status.setText("stopped; no slide was written")

    def _set_running(self, running: bool) -> None:
        if not running:
            self._job = None
        for widget in (self.scale_spin, self.seed_spin, self.mpp_spin, self.lossless_box, self.out_edit,
                       self.start_button):
            widget.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def _open_folder(self) -> None:
        if self.result is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.result.rgb.parent)))

