"""The batch export dialog: ``trainer.export.export_dataset`` with progress, time left, cancel and resume.

The export runs in a ``Job``. It is resumable by design: pressing Start again with the same settings and
output folder skips the samples already there, and the dialog says how many. Other settings on a folder that
holds an export are refused by the engine with a message, which the dialog shows.

The current sketch (from the canvas) is written once, under a name made from its content, into
``<config dir>/export_sketches/``: not into the output folder, which ``export_dataset`` leaves out of the sketch
search (its own outputs must never become sketches), and not into a temporary folder, because the manifest
records each sample's source path and a resume compares the sketches' hashes — both must stay valid later.

A class sketch on the canvas, or label maps among the chosen sketches, make it an export of label maps on
the class-aware models (``class_export``).

The functions and classes above ``ExportDialog`` know nothing of Qt.
"""
from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QDialog, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QListWidget, QProgressBar, QPushButton, QSpinBox, QVBoxLayout,
                               QWidget)

from trainer.data.classes import ClassTable
from trainer.errors import PriorPathError
from trainer.export import ExportResult, export_dataset
from trainer.fileio import ensure_writable_dir, write_png
from trainer.inference import MAX_SIDE, MIN_SIDE, Engine, check_mask
from trainer.jobs import CancelToken, ProgressFn, no_progress

from .class_export import holds_label_maps, store_label_sketch
from .class_generation import load_class_engine
from .folders import EXPORT_OUT, EXPORT_SKETCHES, FolderMemory
from .list_editing import remove_chosen_rows
from .messages import show_error
from .preferences import Preferences, config_dir
from .workers import Job

MAX_SEED = 2 ** 31 - 1
MAX_COUNT = 10_000_000
SKETCH_STORE = "export_sketches"
SKETCH_FILTER = "Sketches (*.png *.jpg *.jpeg *.tif *.tiff *.json)"
NEED_OUT = "choose an output folder"
NEED_SKETCHES = "add sketch files or a folder of sketches"
START_TIP = "Export (or continue the export already in the output folder)"


# --- the work (Qt-free) ---------------------------------------------------------------------------------------
@dataclass
class ExportSettings:
    """What the dialog exports; ``to_dict``/``from_dict`` give the main window something to persist."""

    sources: list[str] = field(default_factory=list)  # sketch files and folders
    include_current: bool = False  # add the canvas's sketch
    count: int = 100
    augment: bool = True
    seed: int = 0
    size: Optional[tuple[int, int]] = None  # height, width; None: the mask model's size
    out: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["size"] = list(self.size) if self.size is not None else None
        return data

    @classmethod
    def from_dict(cls, data: Any) -> "ExportSettings":
        """Settings from a stored dict; a missing or malformed entry keeps its default."""
        s = cls()
        if not isinstance(data, dict):
            return s
        sources = data.get("sources")
        if isinstance(sources, list) and all(isinstance(p, str) for p in sources):
            s.sources = list(sources)
        for key, lo, hi in (("count", 1, MAX_COUNT), ("seed", 0, MAX_SEED)):
            value = data.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi:
                setattr(s, key, value)
        for key in ("include_current", "augment"):
            if isinstance(data.get(key), bool):
                setattr(s, key, data[key])
        size = data.get("size")
        if (isinstance(size, (list, tuple)) and len(size) == 2
                and all(isinstance(v, int) and MIN_SIDE <= v <= MAX_SIDE for v in size)):
            s.size = (size[0], size[1])
        if isinstance(data.get("out"), str):
            s.out = data["out"]
        return s


def sketch_store() -> Path:
    return config_dir() / SKETCH_STORE


def store_sketch(mask: np.ndarray, folder: Path) -> Path:
    """Write the canvas's sketch as ``sketch_<h>x<w>_<hash>.png`` in ``folder`` (once per distinct sketch)."""
    mask = check_mask(mask, "the current sketch")
    if not mask.any():
        raise PriorPathError("the current sketch has no tissue; draw some, or leave it out of the export")
    digest = hashlib.sha256(mask.tobytes()).hexdigest()[:16]
    path = Path(folder) / f"sketch_{mask.shape[0]}x{mask.shape[1]}_{digest}.png"
    if not path.is_file():
        ensure_writable_dir(path.parent)
        write_png(path, mask)
    return path


def missing_inputs(settings: ExportSettings, can_include_current: bool) -> list[str]:
    """What the settings still lack before an export can start (empty when nothing)."""
    missing = []
    if not (settings.sources or settings.include_current):
        missing.append(NEED_SKETCHES + (", or include the current sketch" if can_include_current else ""))
    if not settings.out.strip():
        missing.append(NEED_OUT)
    return missing


def run_export(settings: ExportSettings, engine: Engine, current_mask: Optional[np.ndarray] = None,
               store: Optional[Path] = None, progress: ProgressFn = no_progress,
               cancel: Optional[CancelToken] = None, workers: Union[int, str, None] = None,
               classes: Optional[ClassTable] = None, class_engine: Optional[Engine] = None) -> ExportResult:
    """``export_dataset`` with the dialog's settings (the current sketch stored first when it is included).

    ``classes``: the current sketch is a label map of this table. With it, or with label maps among the
    sources, the export is of label maps, on ``class_engine`` (loaded here when None or not class-aware).

    ``workers``: as ``priorpath export --workers``; by default "auto" (every core for a large export, worker
    processes with the same bytes as one process; this process for a small one), except in the frozen
    bundle, whose spawned workers have not been tested yet."""
    if workers is None:
        workers = 1 if getattr(sys, "frozen", False) else "auto"
    if not settings.out.strip():
        raise PriorPathError(NEED_OUT)
    paths: list[Path] = [Path(p) for p in settings.sources]
    labels = (settings.include_current and classes is not None) or holds_label_maps(paths)
    if labels:
        engine = class_engine if class_engine is not None and class_engine.classes is not None \
            else load_class_engine(str(engine.device) if engine is not None else "auto")
    if settings.include_current:
        if current_mask is None:
            raise PriorPathError("there is no current sketch to include; draw one or leave it out")
        store = store if store is not None else sketch_store()
        paths.append(store_label_sketch(current_mask, classes, store) if classes is not None
                     else store_sketch(current_mask, store))
    if not paths:
        raise PriorPathError("no sketches chosen: add sketch files or a folder of sketches"
                             + (", or include the current sketch" if current_mask is not None else ""))
    return export_dataset(paths, Path(settings.out), settings.count, engine, augment=settings.augment,
                          seed=settings.seed, size=settings.size, progress=progress, cancel=cancel,
                          workers=workers)


class EtaEstimator:
    """Time left from this run's pace. The first report is the baseline: samples already present when a
    resumed run starts were not made by it, so they must not make it look fast."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self.baseline: Optional[int] = None
        self._start = 0.0
        self._now = 0.0
        self.done = 0
        self.total = 0

    def update(self, done: int, total: int) -> None:
        now = self._clock()
        if self.baseline is None:
            self.baseline, self._start = done, now
        self.done, self.total, self._now = done, total, now

    def seconds_left(self) -> Optional[float]:
        """None until this run has made a sample."""
        if self.baseline is None:
            return None
        made, elapsed = self.done - self.baseline, self._now - self._start
        if made <= 0 or elapsed <= 0:
            return None
        return max(0, self.total - self.done) * elapsed / made


def format_duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


# --- the dialog ---------------------------------------------------------------------------------------------------
class ExportDialog(QDialog):
    """Batch export: sketches, count, augmentation, seed, size and output folder; Start, Cancel, Open folder.

    ``engine_provider`` returns the engine to use (the generation view's ``engine``), ``current_sketch`` the
    canvas's mask when there is a canvas. ``settings()``/``apply_settings(dict)`` carry the choices the main
    window keeps between sessions (keys: sources, include_current, count, augment, seed, size, out).
    ``current_classes`` gives the canvas's class table when its sketch (then a label map) is drawn in classes,
    ``class_engine_provider`` the class-aware engine when one is loaded (else the export loads one).
    """

    exportStarted = Signal(object)  # the Job, before it starts (connect to its progress for a status bar)
    exportFinished = Signal(object)  # trainer.export.ExportResult
    exportFailed = Signal(str)
    exportCancelled = Signal(int)  # samples present when it stopped
    statusMessage = Signal(str)

    def __init__(self, engine_provider: Callable[[], Optional[Engine]],
                 current_sketch: Optional[Callable[[], Optional[np.ndarray]]] = None,
                 parent: Optional[QWidget] = None, folders: Optional[FolderMemory] = None, *,
                 current_classes: Optional[Callable[[], Optional[ClassTable]]] = None,
                 class_engine_provider: Optional[Callable[[], Optional[Engine]]] = None):
        super().__init__(parent)
        self.setWindowTitle("Export a synthetic dataset")
        self.folders = folders if folders is not None else FolderMemory(Preferences())
        self._engine_provider = engine_provider
        self._current_sketch = current_sketch
        self._current_classes = current_classes or (lambda: None)
        self._class_engine_provider = class_engine_provider or (lambda: None)
        self._job: Optional[Job] = None
        self._completed: list[ExportResult] = []  # the result of the current job once its work returned
        self._eta = EtaEstimator()
        self._resume_note = ""
        self._last_out: Optional[Path] = None
        self._close_when_stopped = False
        self._build()
        self.apply_settings({})

    def _build(self) -> None:
        self.sources_list = QListWidget()
        self.sources_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.sources_list.setMaximumHeight(110)
        self.sources_list.model().rowsInserted.connect(self._refresh_start)
        self.sources_list.model().rowsRemoved.connect(self._refresh_start)
        self.sources_list.model().modelReset.connect(self._refresh_start)
        self.add_folder_button = QPushButton("Add folder…")
        self.add_folder_button.clicked.connect(self._ask_source_folder)
        self.add_files_button = QPushButton("Add files…")
        self.add_files_button.clicked.connect(self._ask_source_files)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self._remove_selected_sources)
        source_buttons = QHBoxLayout()
        for button in (self.add_folder_button, self.add_files_button, self.remove_button):
            source_buttons.addWidget(button)
        source_buttons.addStretch(1)
        self.include_current = QCheckBox("Include the current sketch")
        self.include_current.setVisible(self._current_sketch is not None)
        self.include_current.toggled.connect(self._refresh_start)

        self.count_spin = QSpinBox()
        self.count_spin.setRange(1, MAX_COUNT)
        self.augment_check = QCheckBox("Augment the sketches (flip, affine, elastic, morphology)")
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, MAX_SEED)
        self.model_size_check = QCheckBox("The model's size")
        self.model_size_check.toggled.connect(self._on_model_size_toggled)
        self.height_spin = QSpinBox()
        self.width_spin = QSpinBox()
        for spin in (self.height_spin, self.width_spin):
            spin.setRange(MIN_SIDE, MAX_SIDE)
        size_row = QHBoxLayout()
        size_row.addWidget(self.model_size_check)
        size_row.addWidget(self.height_spin)
        size_row.addWidget(QLabel("×"))
        size_row.addWidget(self.width_spin)
        size_row.addStretch(1)
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("a new or empty folder, or an earlier export to continue")
        self.out_edit.textChanged.connect(self._refresh_start)
        self.browse_out_button = QPushButton("Browse…")
        self.browse_out_button.clicked.connect(self._ask_out)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(self.browse_out_button)

        form = QFormLayout()
        form.addRow("Sketches", self.sources_list)
        form.addRow("", source_buttons)
        form.addRow("", self.include_current)
        form.addRow("Samples", self.count_spin)
        form.addRow("", self.augment_check)
        form.addRow("Seed", self.seed_spin)
        form.addRow("Size (H × W)", size_row)
        form.addRow("Output folder", out_row)

        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.eta_label = QLabel("")
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.start_button = QPushButton("Start")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.open_button = QPushButton("Open folder")
        self.open_button.setEnabled(False)
        self.open_button.clicked.connect(self.open_folder)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.open_button)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress_bar, 1)
        progress_row.addWidget(self.eta_label)
        layout.addLayout(progress_row)
        layout.addWidget(self.status_label)
        layout.addLayout(buttons)
        self._inputs = [self.sources_list, self.add_folder_button, self.add_files_button, self.remove_button,
                        self.include_current, self.count_spin, self.augment_check, self.seed_spin,
                        self.model_size_check, self.out_edit, self.browse_out_button]

    # --- settings -----------------------------------------------------------------------------------------------
    def export_settings(self) -> ExportSettings:
        size = None if self.model_size_check.isChecked() else (self.height_spin.value(), self.width_spin.value())
        sources = [self.sources_list.item(i).text() for i in range(self.sources_list.count())]
        return ExportSettings(sources, self.include_current.isChecked() and self._current_sketch is not None,
                              self.count_spin.value(), self.augment_check.isChecked(), self.seed_spin.value(),
                              size, self.out_edit.text().strip())

    def settings(self) -> dict[str, Any]:
        """The dialog's choices as a JSON-friendly dict (see ``ExportSettings``)."""
        return self.export_settings().to_dict()

    def apply_settings(self, data: dict[str, Any]) -> None:
        """Fill the fields from a dict ``settings()`` returned earlier; bad or missing entries get defaults."""
        s = ExportSettings.from_dict(data)
        self.sources_list.clear()
        self.add_sources(s.sources)
        # a sketch on the canvas is included unless the settings say otherwise, and always when it is the only
        # thing there is to export
        has_sketch = self._current_has_tissue()
        chosen = data.get("include_current") if isinstance(data, dict) else None
        include = s.include_current if isinstance(chosen, bool) else has_sketch
        self.include_current.setChecked(include or (has_sketch and not s.sources))
        self.count_spin.setValue(s.count)
        self.augment_check.setChecked(s.augment)
        self.seed_spin.setValue(s.seed)
        self.model_size_check.setChecked(s.size is None)
        if s.size is not None:
            self.height_spin.setValue(s.size[0])
            self.width_spin.setValue(s.size[1])
        else:
            self._show_model_size()
        self._on_model_size_toggled(self.model_size_check.isChecked())
        self.out_edit.setText(s.out)
        self._refresh_start()

    def add_sources(self, paths) -> None:
        present = {self.sources_list.item(i).text() for i in range(self.sources_list.count())}
        for p in map(str, paths):
            if p not in present:
                self.sources_list.addItem(p)
                present.add(p)

    def _current_has_tissue(self) -> bool:
        mask = self._current_sketch() if self._current_sketch is not None else None
        return mask is not None and bool(np.asarray(mask).any())

    def missing(self) -> list[str]:
        """What Start waits for (an output folder, sketches); empty when it can start."""
        return missing_inputs(self.export_settings(), self._current_sketch is not None)

    def _refresh_start(self, *_args) -> None:
        """Start is enabled only with sketches and an output folder; its tooltip says what is missing."""
        missing = self.missing()
        self.start_button.setEnabled(not missing and not self.is_running())
        self.start_button.setToolTip(("To start: " + "; ".join(missing)) if missing else START_TIP)

    def _show_model_size(self) -> None:
        """Put the engine's training size in the (disabled) size fields, so the user sees what "model's" means."""
        engine = self._class_engine_provider() if self._current_classes() is not None else None
        engine = engine or self._engine_provider()
        if engine is not None and engine.mask is not None:
            self.height_spin.setValue(engine.mask.size[0])
            self.width_spin.setValue(engine.mask.size[1])

    def _on_model_size_toggled(self, on: bool) -> None:
        if on:
            self._show_model_size()
        running = self.is_running()
        self.height_spin.setEnabled(not on and not running)
        self.width_spin.setEnabled(not on and not running)

    def showEvent(self, event) -> None:
        if self.model_size_check.isChecked():
            self._show_model_size()  # the models may have changed since the dialog was made
        super().showEvent(event)

    # --- running ------------------------------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self._job is not None

    def current_job(self) -> Optional[Job]:
        return self._job

    def start(self) -> Optional[Job]:
        """Start (or resume) the export with the fields' settings; errors are shown and the dialog stays."""
        if self._job is not None:
            return None
        settings = self.export_settings()
        missing = self.missing()
        if missing:  # Start is disabled then; a call from code gets the reason
            message = "; ".join(missing)
            self._fail(message)
            self.exportFailed.emit(message)
            return None
        engine, class_engine = self._engine_provider(), self._class_engine_provider()
        classes = self._current_classes() if settings.include_current else None
        if engine is None and classes is None:  # a class sketch needs only the class models (loaded if need be)
            self._fail("the models are not loaded yet (or failed to load); wait for them, then press Start again")
            return None
        mask = None
        if settings.include_current and self._current_sketch is not None:
            mask = self._current_sketch()
            mask = None if mask is None else np.array(mask, copy=True)  # the canvas keeps drawing
        store = sketch_store()
        completed: list[ExportResult] = []  # a Cancel that comes after the last sample must not hide the result

        def work(progress: ProgressFn, cancel: CancelToken) -> ExportResult:
            completed.append(run_export(settings, engine, mask, store, progress, cancel, classes=classes,
                                        class_engine=class_engine))
            return completed[0]

        job = Job(work, "export", self)
        job.progress.connect(self._on_progress)
        job.finished.connect(self._on_finished)
        job.failed.connect(self._on_failed)
        job.cancelled.connect(self._on_cancelled)
        self._completed = completed
        self._job = job
        self._eta = EtaEstimator()
        self._resume_note = ""
        self._last_out = Path(settings.out) if settings.out else None
        self.progress_bar.setRange(0, 0)
        self.eta_label.setText("")
        self.open_button.setEnabled(False)
        self._set_running(True)
        self._set_status("checking the sketches…")
        self.exportStarted.emit(job)
        return job.start()

    def cancel(self) -> None:
        """Stop after the sample in flight (nothing half-written stays); Start continues later."""
        if self._job is not None:
            self._job.cancel()
            self._set_status("stopping…")

    def open_folder(self) -> None:
        if self._last_out is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self._last_out.resolve())))

    def _on_progress(self, done: int, total: int, message: str) -> None:
        first = self._eta.baseline is None
        self._eta.update(done, total)
        if first and done > 0:
            self._resume_note = f"resuming: {done} of {total} already present"
        self.progress_bar.setRange(0, max(1, total))
        self.progress_bar.setValue(done)
        left = self._eta.seconds_left()
        self.eta_label.setText(f"about {format_duration(left)} left" if left is not None else "estimating time…")
        status = f"{done} of {total} samples"
        self._set_status(f"{self._resume_note}; {status}" if self._resume_note else status)

    def _on_finished(self, result: ExportResult) -> None:
        self._stopped()
        self.progress_bar.setRange(0, max(1, result.count))
        self.progress_bar.setValue(result.count)
        self.eta_label.setText("")
        before = result.count - result.generated
        self._last_out = result.out
        self.open_button.setEnabled(True)
        skipped = getattr(result, "skipped", [])
        self._set_status(f"done: {result.count} samples in {result.out} ({result.generated} made now"
                         + (f", {before} were already there)" if before else ")")
                         + (f"\n{len(skipped)} sketch file(s) skipped:\n" + "\n".join(skipped) if skipped else ""))
        self.exportFinished.emit(result)
        self._close_if_asked()

    def _on_failed(self, message: str) -> None:
        self._stopped()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.eta_label.setText("")
        self._fail(message)
        self._enable_open_folder()
        self.exportFailed.emit(message)
        self._close_if_asked()

    def _on_cancelled(self) -> None:
        if self._completed:  # the export ran to its end before it saw the Cancel
            self._on_finished(self._completed[0])
            return
        self._stopped()
        self.eta_label.setText("")
        present, total = self._eta.done, self._eta.total
        if total and present >= total:  # stopped after the last sample: nothing is left to continue
            self._set_status(f"done: all {total} samples are in {self._last_out}")
        else:
            self._set_status(f"stopped with {present} of {total} samples present; press Start to continue"
                             if total else "stopped")
        self._enable_open_folder()
        self.exportCancelled.emit(present)
        self._close_if_asked()

    def _enable_open_folder(self) -> None:
        """What a stopped or refused run left in the folder stays one click away."""
        self.open_button.setEnabled(self._last_out is not None and self._last_out.is_dir())

    def _stopped(self) -> None:
        if self._job is not None:
            self._job.deleteLater()
        self._job = None
        self._set_running(False)

    def _fail(self, message: str) -> None:
        self._set_status(f"export failed: {message}")
        show_error(self, "Export failed", message)

    def _set_running(self, running: bool) -> None:
        for widget in self._inputs:
            widget.setEnabled(not running)
        self._on_model_size_toggled(self.model_size_check.isChecked())
        self._refresh_start()
        self.cancel_button.setEnabled(running)

    def _set_status(self, text: str) -> None:
        self.status_label.setText(text)
        self.statusMessage.emit(text)

    # --- closing while running: stop first, then close ----------------------------------------------------------
    def reject(self) -> None:
        if self._job is not None:
            self._close_when_stopped = True
            self.cancel()
            return
        super().reject()

    def closeEvent(self, event) -> None:
        if self._job is not None:
            self._close_when_stopped = True
            self.cancel()
            event.ignore()
            return
        super().closeEvent(event)

    def _close_if_asked(self) -> None:
        if self._close_when_stopped:
            self._close_when_stopped = False
            super().reject()

    # --- file choosers --------------------------------------------------------------------------------------------
    def _ask_source_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A folder of sketches",
                                                  self.folders.open_folder(EXPORT_SKETCHES))
        if folder:
            self.folders.remember(EXPORT_SKETCHES, Path(folder).parent)  # the next folder is likely a sibling
            self.add_sources([folder])

    def _ask_source_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Sketch files", self.folders.open_folder(EXPORT_SKETCHES),
                                                SKETCH_FILTER)
        if files:
            self.folders.remember(EXPORT_SKETCHES, files[0])
        self.add_sources(files)

    def _remove_selected_sources(self) -> None:
        remove_chosen_rows(self.sources_list)

    def _ask_out(self) -> None:
        # an export is written: start in a writable folder, never the read-only one the sketches came from
        chosen = self.out_edit.text().strip()
        start = chosen if chosen and Path(chosen).is_dir() else self.folders.save_folder(EXPORT_OUT)
        folder = QFileDialog.getExistingDirectory(self, "Output folder", start)
        if folder:
            self.folders.remember(EXPORT_OUT, Path(folder).parent)
            self.out_edit.setText(folder)
