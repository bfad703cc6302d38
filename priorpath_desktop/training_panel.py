"""The training and evaluation panel: pick data, train in a child process, watch it, evaluate, adopt.

Training, preparing and evaluating each run ``priorpath`` in a child process (``TrainerProcess``) with the
same ``trainer`` code as the command line, so the window never blocks and a crash in training cannot take
it down. The panel follows ``RUN/events.jsonl`` with a timer (``trainer.runs.EventFollower``) for the
progress bar, the loss plot and the newest sample; everything it knows about a run comes from the run folder,
so a run started elsewhere (or before a restart) can be resumed, evaluated and adopted the same way.

This module assembles the panel (its state, layout, buttons and shutdown); its parts live beside it:
``training_form`` (the Data and Run boxes), ``training_estimate`` (the time estimate), ``training_run``
(start, resume, stop and following a run folder) and ``training_evaluation`` (Evaluate and Adopt).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout, QPlainTextEdit, QProgressBar, QPushButton, QScrollArea, QSplitter, QTabWidget, QVBoxLayout, QWidget,
)

from trainer.runs import EventFollower, RunInfo
from trainer.step_time import StepTime

from .folders import FolderMemory
from .plots import ElidedLabel, LossPlot, PictureLabel, guard_wheel
from .preferences import Preferences
from .prepare_dialog import PrepareDialog
from .trainer_process import TrainerProcess
from .training_estimate import EstimateMixin
from .training_evaluation import NOISE_TIP, EvaluationMixin  # noqa: F401 (NOISE_TIP: kept importable here)
from .training_form import DEFAULT_EPOCHS, DEFAULT_SIZE, RUN_TIP, TrainingFormMixin, runs_root  # noqa: F401
from .training_run import NO_SAMPLE, WAITING_FOR_SAMPLE, WAITING_FOR_STEP, TrainingRunMixin  # noqa: F401
from .workers import LatestOnly

POLL_MS = 1000
SHUTDOWN_WAIT_MS = 30000  # a clean stop finishes the current step and writes a checkpoint


class TrainingPanel(TrainingRunMixin, EvaluationMixin, EstimateMixin, TrainingFormMixin, QWidget):
    """Data, run settings, start/stop/resume, live progress, evaluation and adoption of a trained checkpoint."""

    adoptRequested = Signal(str, str)  # role ("mask" or "rgb"), checkpoint path
    statusMessage = Signal(str)
    runStateChanged = Signal(str)  # idle | running | stopping | done | stopped | failed
    runFolderChanged = Signal(str)  # a run started, or a folder holding a run chosen: the one to re-attach

    def __init__(self, parent: Optional[QWidget] = None, folders: Optional[FolderMemory] = None):
        super().__init__(parent)
        self.folders = folders if folders is not None else FolderMemory(Preferences())
        self.state = "idle"
        self.extra_args: list[str] = []
        self.child_env: dict[str, str] = {}
        self.run_info: Optional[RunInfo] = None
        self.follower: Optional[EventFollower] = None
        self.dataset_check = None  # (folder, model, DatasetCheck) of the last finished check
        self.prepare_dialog: Optional[PrepareDialog] = None
        self._eval_queue: list[list[str]] = []
        self._shown_sample: Optional[str] = None
        self._shutting_down = False
        self.patch_size: Optional[tuple[int, int]] = None  # of the checked dataset: a run's size when none is given
        self.step_times: list[StepTime] = []  # measured in earlier runs, newest first
        self.cpu_kernel_seconds: Optional[float] = None  # this CPU's speed test, once one was needed
        self._calibration = "none"  # of this CPU: none | running | done | failed (then never retried)

        self.train_process = TrainerProcess(self)
        self.train_process.output.connect(self._log)
        self.train_process.finished.connect(self._training_finished)
        self.eval_process = TrainerProcess(self)
        self.eval_process.output.connect(self._log)
        self.eval_process.progress.connect(self._eval_progress)
        self.eval_process.finished.connect(self._eval_step_finished)
        self.checker = LatestOnly(self)
        self.checker.finished.connect(self._dataset_checked)
        self.checker.failed.connect(lambda message: self._set_hint(False, message))
        self.timing = LatestOnly(self)  # step times of earlier runs (and the CPU speed test) for the estimate
        self.timing.finished.connect(self._timing_read)
        self.timing.failed.connect(self._timing_failed)
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)

        self._build()
        self._update_buttons()
        self.read_step_times()

    # --- layout -------------------------------------------------------------------------------------------------
    def _build(self) -> None:
        run_controls = self._build_run_controls()
        form = QWidget()
        form_layout = QVBoxLayout(form)
        form_layout.setContentsMargins(0, 0, 0, 0)
        for box in (self._build_data_box(), self._build_run_box(), self._build_eval_box()):
            form_layout.addWidget(box)
        form_layout.addStretch(1)

        # a bottom dock is often lower than the form, so the form scrolls (vertically only: what is too long
        # for the column elides); the run controls stay above it, where a state change never moves them
        self.form_scroll = QScrollArea()
        self.form_scroll.setWidget(form)
        self.form_scroll.setWidgetResizable(True)
        self.form_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.form_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        column = QWidget()
        column_layout = QVBoxLayout(column)
        column_layout.setContentsMargins(0, 0, 0, 0)
        column_layout.addWidget(run_controls)
        column_layout.addWidget(self.form_scroll, 1)
        column.setMinimumWidth(form.minimumSizeHint().width() + self.form_scroll.verticalScrollBar().sizeHint().width())

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(column)
        splitter.addWidget(self._build_results())
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)  # the plots and the evaluation take the width the form does not need
        splitter.setCollapsible(0, False)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)
        guard_wheel(self)

    def _build_run_controls(self) -> QWidget:
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("A new run with these settings (a new run folder if this one holds a run)")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current step and save a checkpoint")
        self.stop_button.clicked.connect(self.stop)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the run in the run folder with the settings it was started with")
        self.resume_button.clicked.connect(self.resume)
        self.progress_bar = QProgressBar()
        self.progress_bar.setFormat("%v / %m steps")
        self.run_status = ElidedLabel()
        controls = QWidget()
        layout = QVBoxLayout(controls)
        layout.setContentsMargins(0, 0, 0, 0)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.stop_button, self.resume_button):
            buttons.addWidget(b)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.run_status)
        return controls

    def _build_results(self) -> QTabWidget:
        self.loss_plot = LossPlot()
        self.sample_view = PictureLabel(NO_SAMPLE)
        evaluation = self._build_evaluation_tab()
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(2000)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.loss_plot, "Curves")
        self.tabs.addTab(self.sample_view, "Samples")
        self.tabs.addTab(evaluation, "Evaluation")
        self.tabs.addTab(self.log_view, "Log")
        return self.tabs

    # --- public API -------------------------------------------------------------------------------------------
    def set_run_dir(self, path) -> None:
        """Choose the run folder; one holding a run shows its losses, samples and report and can be resumed."""
        if self.is_running():
            return
        text = str(path).strip() if path else ""
        self.run_edit.setText(text)
        self._load_run(Path(text) if text else None)

    def set_extra_args(self, args: Sequence[str]) -> None:
        """More ``priorpath train`` flags for new runs, e.g. ``--option ngf=32`` or ``--sample-every 100``."""
        self.extra_args = list(args)

    def set_child_env(self, env: Mapping[str, str]) -> None:
        """Environment additions for every child process (e.g. ``OMP_NUM_THREADS``)."""
        self.child_env = dict(env)

    def run_dir(self) -> Optional[Path]:
        text = self.run_edit.text().strip()
        return Path(text) if text else None

    def shutdown(self) -> None:
        """Stop every child cleanly (a training run saves its checkpoint); kill what does not stop in time."""
        self._shutting_down = True
        self._eval_queue = []
        processes = [self.train_process, self.eval_process]
        if self.prepare_dialog is not None:
            processes.append(self.prepare_dialog.process)
        for proc in processes:
            proc.stop()
        for proc in processes:
            if not proc.wait(SHUTDOWN_WAIT_MS):
                proc.kill()
                proc.wait(5000)
        self.timer.stop()

    # --- state and buttons ------------------------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        changed = state != self.state
        self.state = state
        self._update_buttons()
        if changed:
            self.runStateChanged.emit(state)

    def _update_buttons(self) -> None:
        running, evaluating = self.is_running(), self.is_evaluating()
        busy = running or evaluating
        info = self.run_info
        for w in (self.dataset_edit, self.dataset_button, self.model_combo, self.size_edit, self.epochs_spin,
                  self.max_steps_spin, self.device_combo, self.run_edit, self.run_button):
            w.setEnabled(not busy)
        self.start_button.setEnabled(not busy)
        self.stop_button.setEnabled(running and self.state != "stopping")
        self.resume_button.setEnabled(not busy and info is not None)
        self._update_eval_buttons(running, evaluating, info)

    def _log(self, line: str) -> None:
        self.log_view.appendPlainText(line)
