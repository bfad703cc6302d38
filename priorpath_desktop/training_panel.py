"""The training and evaluation panel: pick data, train in a child process, watch it, evaluate, adopt.

Training, preparing and evaluating each run ``priorpath`` in a child process (``TrainerProcess``) with the
same ``trainer`` code as the command line, so the window never blocks and a crash in training cannot take
it down. The panel follows ``RUN/events.jsonl`` with a timer (``trainer.runs.EventFollower``) for the
progress bar, the loss plot and the newest sample; everything it knows about a run comes from the run folder,
so a run started elsewhere (or before a restart) can be resumed, evaluated and adopted the same way.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QProgressBar,
    QPushButton, QScrollArea, QSpinBox, QSplitter, QTableWidget, QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget,
)

from trainer.data.prepare import parse_size
from trainer.errors import PriorPathError
from trainer.models import REGISTRY
from trainer.runs import (
    EVAL_REPORT, EVENTS, EventFollower, RunInfo, available_devices, check_dataset, default_run_dir, finished_step,
    eval_commands, format_duration, latest_checkpoint, model_role, read_eval_report, read_run_info,
    resume_args, sample_interval, summarize, train_args,
)
from trainer.step_time import (
    REFERENCE_CPU_SECONDS, StepTime, calibrate_cpu, dataset_patch_size, estimate_run, measured_step_times,
    planned_steps, run_folders,
)
from trainer.train import STOP_FILE

from .folders import DATASETS, RUNS, FolderMemory
from .messages import show_error
from .plots import NO_LOSSES, ElidedLabel, LossPlot, PictureLabel, guard_wheel
from .preferences import Preferences, config_dir
from .prepare_dialog import PrepareDialog, error_box
from .trainer_process import TrainerProcess
from .workers import LatestOnly

POLL_MS = 1000
DEFAULT_SIZE = "256x512"
DEFAULT_EPOCHS = 100
RUN_TIP = "The run folder; choose one that holds a run to resume, evaluate or adopt it"
SHUTDOWN_WAIT_MS = 30000  # a clean stop finishes the current step and writes a checkpoint
NOISE_TIP = "noise models (dcgan, depas) have no coarse input, so the generation view cannot use them"
WAITING_FOR_STEP = "waiting for the first step…"
WAITING_FOR_SAMPLE = "waiting for the first sample…"
NO_SAMPLE = "no sample yet"


def runs_root() -> Path:
    return config_dir() / "runs"


class TrainingPanel(QWidget):
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

    def _build_data_box(self) -> QGroupBox:
        self.dataset_edit = QLineEdit()
        self.dataset_edit.setPlaceholderText("a folder written by 'priorpath prepare' (coarse/, fine/, rgb/)")
        self.dataset_edit.editingFinished.connect(self._check_dataset)
        self.dataset_edit.textChanged.connect(self.dataset_edit.setToolTip)  # the whole path, however narrow
        self.dataset_button = QPushButton("Choose…")
        self.dataset_button.clicked.connect(self._choose_dataset)
        self.prepare_button = QPushButton("Prepare from slides…")
        self.prepare_button.clicked.connect(self.open_prepare_dialog)
        self.dataset_hint = ElidedLabel("no dataset chosen")
        data_row = QHBoxLayout()
        data_row.addWidget(self.dataset_edit, 1)
        data_row.addWidget(self.dataset_button)
        box = QGroupBox("Data")
        layout = QVBoxLayout(box)
        layout.addLayout(data_row)
        layout.addWidget(self.dataset_hint)
        layout.addWidget(self.prepare_button, 0, Qt.AlignmentFlag.AlignLeft)
        return box

    def _build_run_box(self) -> QGroupBox:
        self.model_combo = QComboBox()
        self.model_combo.addItems(list(REGISTRY))
        self.model_combo.currentTextChanged.connect(lambda _: (self._check_dataset(), self._update_buttons()))
        self.size_edit = QLineEdit(DEFAULT_SIZE)
        self.size_edit.setPlaceholderText("the patches' own size")
        self.size_edit.setToolTip("Working size as height x width; empty = the prepared patches' size")
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 100000)
        self.epochs_spin.setValue(DEFAULT_EPOCHS)
        self.max_steps_spin = QSpinBox()
        self.max_steps_spin.setRange(0, 1_000_000_000)
        self.max_steps_spin.setSpecialValueText("all epochs")
        self.max_steps_spin.setToolTip("Stop after this many optimizer steps in total; Resume may change it")
        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        self.run_edit = QLineEdit()
        self.run_edit.setPlaceholderText(f"new: {runs_root()}/<model>-<time>")
        self.run_edit.textChanged.connect(lambda text: self.run_edit.setToolTip(f"{text}\n\n{RUN_TIP}" if text
                                                                               else RUN_TIP))
        self.run_edit.setToolTip(RUN_TIP)
        self.run_edit.editingFinished.connect(lambda: self.set_run_dir(self.run_edit.text()))
        self.run_button = QPushButton("Choose…")
        self.run_button.clicked.connect(self._choose_run)
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_edit, 1)
        run_row.addWidget(self.run_button)
        self.estimate_label = QLabel("Estimate: –")
        self.estimate_label.setWordWrap(True)
        self.estimate_label.setToolTip("How long Start will train with these settings: from an earlier run's step "
                                       "time on this machine, or a guess from a quick speed test")
        for changed in (self.model_combo.currentTextChanged, self.size_edit.textChanged,
                        self.epochs_spin.valueChanged, self.max_steps_spin.valueChanged,
                        self.device_combo.currentTextChanged):
            changed.connect(lambda *_: self._refresh_estimate())
        box = QGroupBox("Run")
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Model", self.model_combo)
        form.addRow("Size", self.size_edit)
        form.addRow("Epochs", self.epochs_spin)
        form.addRow("Max steps", self.max_steps_spin)
        form.addRow("Device", self.device_combo)
        form.addRow("Run folder", run_row)
        form.addRow(self.estimate_label)
        return box

    def _build_eval_box(self) -> QGroupBox:
        self.evaluate_button = QPushButton("Evaluate")
        self.evaluate_button.clicked.connect(self._evaluate_clicked)
        self.adopt_button = QPushButton("Adopt in generation view")
        self.adopt_button.clicked.connect(self.adopt)
        self.eval_progress = QProgressBar()
        self.eval_status = ElidedLabel()
        box = QGroupBox("Evaluate")
        layout = QVBoxLayout(box)
        buttons = QHBoxLayout()
        buttons.addWidget(self.evaluate_button)
        buttons.addWidget(self.adopt_button)
        layout.addLayout(buttons)
        layout.addWidget(self.eval_progress)
        layout.addWidget(self.eval_status)
        return box

    def _build_results(self) -> QTabWidget:
        self.loss_plot = LossPlot()
        self.sample_view = PictureLabel(NO_SAMPLE)
        self.metrics_table = QTableWidget()
        self.metrics_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.tsne_view = PictureLabel("no t-SNE plot yet")
        evaluation = QSplitter(Qt.Orientation.Horizontal)
        evaluation.addWidget(self.metrics_table)
        evaluation.addWidget(self.tsne_view)
        evaluation.setStretchFactor(1, 1)  # the t-SNE plot takes the room the narrow table does not need
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
    def set_dataset(self, path) -> None:
        self.dataset_edit.setText(str(path))
        self._check_dataset()

    def set_default_dataset(self, path) -> None:
        """The dataset to offer when the user has chosen none (the bundled prepared sample); never replaces one."""
        if not self.dataset_edit.text().strip() and path:
            self.set_dataset(path)

    def settings(self) -> dict:
        """What to remember between sessions (plain strings and ints, for QSettings)."""
        return {"dataset": self.dataset_edit.text().strip(), "run_dir": self.run_edit.text().strip(),
                "model": self.model_combo.currentText(), "size": self.size_edit.text().strip(),
                "epochs": self.epochs_spin.value(), "device": self.device_combo.currentText()}

    def apply_settings(self, values: Mapping) -> None:
        """Restore ``settings()`` of an earlier session; unknown models/devices and bad numbers are skipped.

        A run folder that holds a run is loaded last, so the form shows the settings its Resume will use."""
        if self.is_running() or self.is_evaluating():
            return
        model, device = str(values.get("model") or ""), str(values.get("device") or "")
        if model in REGISTRY:
            self.model_combo.setCurrentText(model)
        if self.device_combo.findText(device) >= 0:
            self.device_combo.setCurrentText(device)
        if values.get("size") is not None:
            self.size_edit.setText(str(values["size"]))
        try:
            self.epochs_spin.setValue(int(values.get("epochs")))
        except (TypeError, ValueError):
            pass
        if values.get("dataset"):
            self.set_dataset(values["dataset"])
        if values.get("run_dir"):
            self.set_run_dir(values["run_dir"])

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

    def is_running(self) -> bool:
        return self.train_process.is_running()

    def is_evaluating(self) -> bool:
        return self.eval_process.is_running() or bool(self._eval_queue)

    def start(self) -> None:
        """A new run with the form's settings (in the run folder, or a new one under the runs folder)."""
        if self.is_running() or self.is_evaluating():
            return
        model, data = self.model_combo.currentText(), self.dataset_edit.text().strip()
        if not data:
            show_error(self, "Start training", "Choose a dataset folder first (or prepare one from slides).")
            return
        if not Path(data).is_dir():
            show_error(self, "Start training", f"{data}: no such folder")
            return
        checked = self.dataset_check
        if checked is not None and checked[:2] == (data, model) and not checked[2].ok:
            show_error(self, "Start training", f"{data}: {checked[2].message}")
            return
        try:
            size = parse_size(self.size_edit.text()) if self.size_edit.text().strip() else None
        except PriorPathError as exc:
            show_error(self, "Start training", str(exc))
            return
        chosen = self.run_dir()
        run = chosen or default_run_dir(runs_root(), model)
        message = f"training {model} in {run}"
        if latest_checkpoint(run) is not None:  # never overwrite a run: Start means a new one, Resume continues
            run = default_run_dir(runs_root(), model)
            message = f"new run in {run}; Resume continues the previous one in {chosen} (choose that folder again)"
        if run != chosen:
            self.run_edit.setText(str(run))
            self._load_run(None)  # the previous run's losses, samples, report and checkpoint are not this run's
        # a short run samples after a tenth of its steps, so its first sample shows early (long runs: every 500)
        steps = planned_steps(self._checked_pairs(data, model), self.epochs_spin.value(), self.max_steps_spin.value())
        args = train_args(model, Path(data), run, size, self.epochs_spin.value(), self.max_steps_spin.value(),
                          self.device_combo.currentText(), self.extra_args, sample_interval(steps))
        self._launch(args, run, message)

    def resume(self) -> None:
        """Continue the run in the run folder from its latest checkpoint (its stored config decides the maths)."""
        run = self.run_dir()
        if self.is_running() or self.is_evaluating() or run is None:
            return
        if latest_checkpoint(run) is None:
            show_error(self, "Resume training", f"{run}: no checkpoint to resume from")
            return
        finished = finished_step(run)
        more = self.max_steps_spin.value()
        if finished is not None and more <= finished:
            self.run_status.setText(f"this run finished at step {finished}: set Max steps above {finished} to train "
                                    f"it further, or Start a new run")
            self.statusMessage.emit(self.run_status.text())
            return
        args = resume_args(run, self.device_combo.currentText(), more)
        self._launch(args, run, f"resuming {run}")

    def stop(self) -> None:
        """Clean stop: the trainer finishes its step, saves a checkpoint and exits."""
        if self.is_running() and self.state != "stopping":
            self._set_state("stopping")
            self.run_status.setText("stopping after the current step…")
            run = self.run_dir()
            if run is not None and run.is_dir():  # the stop file also works where SIGTERM does not (Windows)
                try:
                    (run / STOP_FILE).touch()
                except OSError:
                    pass
            self.train_process.stop()

    def evaluate(self) -> None:
        """Generate masks from the run's dataset with its checkpoint, then ``priorpath eval`` them."""
        info = self.run_info
        if self.is_running() or self.is_evaluating() or info is None:
            return
        if model_role(info.model) != "mask":
            show_error(self, "Evaluate", self._eval_block_reason(info) or "this run cannot be evaluated")
            return
        data = Path(info.data) if info.data else None
        if data is None or not (data / "coarse").is_dir() or not (data / "fine").is_dir():
            show_error(self, "Evaluate", f"the run's dataset {data} is missing or has no coarse/ and fine/ folders")
            return
        self._eval_queue = eval_commands(self.run_dir(), data, info.checkpoint, info.model,
                                         self.device_combo.currentText())
        self.metrics_table.clear()
        self.metrics_table.setRowCount(0)
        self.tsne_view.clear()
        self.tabs.setCurrentIndex(2)
        self._next_eval_step()
        self._update_buttons()

    def cancel_evaluation(self) -> None:
        if self.is_evaluating():
            self._eval_queue = []
            self.eval_process.stop()

    def adopt(self) -> None:
        info = self.run_info
        role = model_role(info.model) if info is not None else None
        if info is None or role is None or self.is_running():
            return
        self.adoptRequested.emit(role, str(info.checkpoint))
        self.statusMessage.emit(f"{info.model} checkpoint (step {info.step}) adopted as the {role} model")

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

    def open_prepare_dialog(self) -> PrepareDialog:
        """The dialog that prepares a dataset from slides; on success its folder becomes the dataset."""
        if self.prepare_dialog is None:
            self.prepare_dialog = PrepareDialog(self, self.child_env, self.folders)
            self.prepare_dialog.prepared.connect(self._prepared)
        self.prepare_dialog.env = dict(self.child_env)
        self.prepare_dialog.open()
        return self.prepare_dialog

    # --- following a run ----------------------------------------------------------------------------------------
    def poll(self) -> None:
        """Read new events of the run (the timer calls this every second while training runs)."""
        if self.follower is None or not self.follower.poll():
            return
        events = self.follower.events
        progress = summarize(events)
        self.loss_plot.set_events(events)
        self.progress_bar.setRange(0, max(1, progress.total_steps))
        self.progress_bar.setValue(min(progress.step, max(1, progress.total_steps)))
        if self.state in ("running", "stopping"):
            self.run_status.setText(f"step {progress.step}/{progress.total_steps} · "
                                    f"{format_duration(progress.seconds)} elapsed · "
                                    f"ETA {format_duration(progress.eta_seconds)}")
        if progress.last_sample and progress.last_sample != self._shown_sample:
            if self.sample_view.set_image(Path(progress.last_sample)):
                self._shown_sample = progress.last_sample

    def _launch(self, args: list[str], run: Path, message: str) -> None:
        self.follower = EventFollower(run / EVENTS)
        self.loss_plot.clear()
        self.loss_plot.set_placeholder(WAITING_FOR_STEP)
        self.sample_view.clear()
        self.sample_view.set_placeholder(WAITING_FOR_SAMPLE)
        self._shown_sample = None
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.run_status.setText(f"{message} — starting…")
        self._log(message)
        self._log(f"$ priorpath {' '.join(args)}")
        try:  # an old stop request must not end the new child (the trainer also ignores stale ones)
            (run / STOP_FILE).unlink(missing_ok=True)
        except OSError:
            pass
        self.train_process.start(args, env=self.child_env)
        self._set_state("running")
        self.timer.start()
        self.statusMessage.emit(message)
        self.runFolderChanged.emit(str(run))

    def _training_finished(self, exit_code: int, status: str) -> None:
        self.timer.stop()
        self.poll()
        self.loss_plot.set_placeholder("no losses logged in this run")
        self.sample_view.set_placeholder(NO_SAMPLE)
        self.read_step_times()  # this run's pace makes the next estimate
        run = self.run_dir()
        progress = summarize(self.follower.events) if self.follower is not None else None
        self._reload_run_info(run)
        step = progress.step if progress is not None else 0
        if status == "done":
            self._set_state("done")
            self.run_status.setText(f"done: {step}/{progress.total_steps if progress else step} steps")
            self.statusMessage.emit(f"training finished at step {step}")
        elif status == "stopped" or (self._shutting_down and status == "killed"):
            self._set_state("stopped")
            self.run_status.setText(f"stopped at step {step} — Resume continues")
            self.statusMessage.emit(f"training stopped at step {step}")
        else:
            self._set_state("failed")
            self.run_status.setText("failed — see the message and the Log tab")
            if not self._shutting_down:
                error_box(self, "Training failed", self.train_process, "training", exit_code, status)

    # --- evaluation -----------------------------------------------------------------------------------------------
    def _evaluate_clicked(self) -> None:
        if self.is_evaluating():
            self.cancel_evaluation()
        else:
            self.evaluate()

    def _next_eval_step(self) -> None:
        args = self._eval_queue.pop(0)
        self.eval_progress.setRange(0, 0)
        self.eval_status.setText("generating masks with the checkpoint…" if args[0] == "generate"
                                 else "computing the metrics…")
        self._log(f"$ priorpath {' '.join(args)}")
        self.eval_process.start(args, env=self.child_env, progress=True)

    def _eval_progress(self, done: int, total: int) -> None:
        self.eval_progress.setRange(0, max(1, total))
        self.eval_progress.setValue(done)

    def _eval_step_finished(self, exit_code: int, status: str) -> None:
        self.eval_progress.setRange(0, 1)
        self.eval_progress.setValue(1 if status == "done" else 0)
        if status == "done" and self._eval_queue:
            self._next_eval_step()
            return
        self._eval_queue = []
        if status == "done":
            self._show_report()
            self.statusMessage.emit("evaluation finished")
        elif status == "stopped" or self._shutting_down:
            self.eval_status.setText("evaluation cancelled")
        else:
            self.eval_status.setText("evaluation failed")
            if not self._shutting_down:
                error_box(self, "Evaluation failed", self.eval_process, "evaluation", exit_code, status)
        self._update_buttons()

    def _show_report(self) -> bool:
        run = self.run_dir()
        try:
            table = read_eval_report(run / EVAL_REPORT) if run is not None else None
        except PriorPathError as exc:
            show_error(self, "Evaluation report", str(exc))
            return False
        if table is None:
            self.metrics_table.clear()
            self.metrics_table.setRowCount(0)
            self.metrics_table.setColumnCount(0)
            self.tsne_view.clear()
            self.eval_status.setText("")
            return False
        self.metrics_table.clear()
        self.metrics_table.setColumnCount(len(table.sets))
        self.metrics_table.setRowCount(len(table.metrics))
        self.metrics_table.setHorizontalHeaderLabels(table.sets)
        self.metrics_table.setVerticalHeaderLabels(table.metrics)
        for r, row in enumerate(table.values):
            for c, value in enumerate(row):
                item = QTableWidgetItem(value)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.metrics_table.setItem(r, c, item)
        if table.tsne is not None:
            self.tsne_view.set_image(table.tsne)
        else:
            self.tsne_view.clear()
        self.eval_status.setText(f"report in {run / EVAL_REPORT}")
        return True

    def metric_value(self, name: str, column: int = 0) -> Optional[str]:
        """The table's value of metric ``name`` (a row) for the ``column``-th generated set."""
        for r in range(self.metrics_table.rowCount()):
            header = self.metrics_table.verticalHeaderItem(r)
            if header is not None and header.text() == name:
                item = self.metrics_table.item(r, column)
                return item.text() if item is not None else None
        return None

    # --- the run folder --------------------------------------------------------------------------------------------
    def _load_run(self, run: Optional[Path]) -> None:
        self.follower = EventFollower(run / EVENTS) if run is not None else None
        self.loss_plot.clear()
        self.loss_plot.set_placeholder(NO_LOSSES if run is not None else "no run yet: Start one, or choose its folder")
        self.sample_view.clear()
        self.sample_view.set_placeholder(NO_SAMPLE)
        self._shown_sample = None
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.run_status.setText("")
        self._reload_run_info(run)
        self.poll()
        if self.follower is not None and self.follower.events:
            progress = summarize(self.follower.events)
            text = {"done": f"done: {progress.step}/{progress.total_steps} steps",
                    "stopped": f"stopped at step {progress.step} — Resume continues",
                    "failed": f"failed at step {progress.step}: {progress.error or 'see its log'}",
                    "running": f"step {progress.step}/{progress.total_steps}: the log has no end yet (running "
                               f"elsewhere, or killed); Resume continues from the last checkpoint"}
            self.run_status.setText(text.get(progress.state, ""))
        self._show_report()
        self._set_state("idle")
        if self.run_info is not None:
            self.runFolderChanged.emit(str(run))

    def _reload_run_info(self, run: Optional[Path]) -> None:
        self.run_info = None
        if run is not None:
            try:
                self.run_info = read_run_info(run)
            except PriorPathError as exc:
                self.run_status.setText(str(exc))
                show_error(self, "Run folder", str(exc))
        if self.run_info is not None:
            self._show_config(self.run_info)
        self._update_buttons()

    def _show_config(self, info: RunInfo) -> None:
        """The stored settings of a run, so the form says what Resume will use."""
        config = info.config
        self.model_combo.blockSignals(True)
        self.model_combo.setCurrentText(info.model)
        self.model_combo.blockSignals(False)
        size = config.get("size")
        self.size_edit.setText(f"{size[0]}x{size[1]}" if size else "")
        self.epochs_spin.setValue(int(config.get("epochs") or 1))
        self.max_steps_spin.setValue(int(config.get("max_steps") or 0))
        if config.get("data"):
            self.dataset_edit.setText(str(config["data"]))
            self._check_dataset()

    # --- state and buttons ------------------------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        changed = state != self.state
        self.state = state
        self._update_buttons()
        if changed:
            self.runStateChanged.emit(state)

    def _eval_block_reason(self, info: Optional[RunInfo]) -> Optional[str]:
        if info is None:
            return "needs a run with a checkpoint (train one, or choose its run folder)"
        role = model_role(info.model)
        if role == "rgb":
            return (f"{info.model} turns fine masks into RGB tiles; mask metrics (FID/KS of masks) do not apply "
                    f"to it")
        if role is None:
            return NOISE_TIP
        return None

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
        eval_reason = self._eval_block_reason(info)
        self.evaluate_button.setText("Cancel evaluation" if evaluating else "Evaluate")
        self.evaluate_button.setEnabled(evaluating or (not running and eval_reason is None))
        self.evaluate_button.setToolTip(eval_reason or "Generate masks from the run's coarse masks and compare "
                                                       "them with its real fine masks (FID, KS, t-SNE)")
        role = model_role(info.model) if info is not None else None
        self.adopt_button.setEnabled(not running and info is not None and role is not None)
        if info is None:
            self.adopt_button.setToolTip("needs a run with a checkpoint")
        elif role is None:
            self.adopt_button.setToolTip(NOISE_TIP)
        else:
            self.adopt_button.setToolTip(f"Use this checkpoint as the {role} model of the generation view")

    # --- data ---------------------------------------------------------------------------------------------------------
    def _check_dataset(self) -> None:
        folder, model = self.dataset_edit.text().strip(), self.model_combo.currentText()
        if not folder:
            self._set_hint(False, "no dataset chosen")
            return
        self.dataset_hint.setText("checking…")
        self.checker.submit(lambda progress, cancel: (folder, model, check_dataset(Path(folder), model),
                                                      dataset_patch_size(Path(folder))), name="dataset check")

    def _dataset_checked(self, result) -> None:
        folder, model, check, patch_size = result
        self.dataset_check = (folder, model, check)
        if (folder, model) == (self.dataset_edit.text().strip(), self.model_combo.currentText()):
            self._set_hint(check.ok, check.message)
            self.patch_size = patch_size
            self._refresh_estimate()

    def _checked_pairs(self, folder: str, model: str) -> Optional[int]:
        """The number of patches the last check found in ``folder`` for ``model``, when it checked those."""
        checked = self.dataset_check
        return checked[2].pairs if checked is not None and checked[:2] == (folder, model) and checked[2].ok else None

    # --- the time estimate --------------------------------------------------------------------------------------------
    def read_step_times(self, calibrate: bool = False) -> None:
        """Read the step times of the runs made so far (and, with ``calibrate``, time this CPU) in a worker."""
        runs = run_folders(runs_root())
        chosen = self.run_dir()
        if chosen is not None and chosen not in runs:
            runs.append(chosen)
        # a newer request supersedes a running one, so it takes over a speed test still under way
        calibrate = (calibrate and self._calibration == "none") or self._calibration == "running"
        if calibrate:
            self._calibration = "running"
        self.timing.submit(lambda progress, cancel: (measured_step_times(runs), calibrate_cpu() if calibrate else None),
                           name="step times")

    def _timing_read(self, result) -> None:
        self.step_times, kernel = result
        if kernel is not None:
            self.cpu_kernel_seconds, self._calibration = kernel, "done"
        self._refresh_estimate()

    def _timing_failed(self, message: str) -> None:
        if self._calibration == "running":
            self._calibration = "failed"
        self.estimate_label.setText(f"Estimate: unavailable ({message})")

    def _device_type(self) -> str:
        device = self.device_combo.currentText()
        if device != "auto":
            return device
        devices = [self.device_combo.itemText(i) for i in range(self.device_combo.count())]
        return "cuda" if "cuda" in devices else "mps" if "mps" in devices else "cpu"

    def _refresh_estimate(self) -> None:
        """Say before Start how long these settings will train, and on what the estimate rests."""
        model, device = self.model_combo.currentText(), self._device_type()
        try:
            size = parse_size(self.size_edit.text()) if self.size_edit.text().strip() else self.patch_size
        except PriorPathError:
            size = None
        if size is None:
            self.estimate_label.setText("Estimate: needs a valid size or a checked dataset")
            return
        data = self.dataset_edit.text().strip()
        steps = planned_steps(self._checked_pairs(data, model), self.epochs_spin.value(), self.max_steps_spin.value())
        estimate = estimate_run(model, size, device, steps, self.step_times, self.cpu_kernel_seconds)
        if estimate is not None:
            self.estimate_label.setText(estimate.describe())
        elif device == "cpu" and model in REFERENCE_CPU_SECONDS and self._calibration in ("none", "running"):
            self.estimate_label.setText("Estimate: timing this CPU…")
            if self._calibration == "none":
                self.read_step_times(calibrate=True)
        else:
            self.estimate_label.setText(f"Estimate: none yet for {model} on {device} (no earlier run measured it); "
                                        f"once it runs, the progress line shows the time left")

    def _set_hint(self, ok: bool, message: str) -> None:
        self.dataset_hint.setText(("✓ " if ok else "✗ ") + message)
        self.dataset_hint.setStyleSheet("" if ok else "color: #b00020;")

    def _prepared(self, folder: str) -> None:
        self.set_dataset(folder)
        self.statusMessage.emit(f"dataset prepared in {folder}")

    def _choose_dataset(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Prepared dataset folder",
                                                  self.dataset_edit.text() or self.folders.open_folder(DATASETS))
        if folder:
            self.folders.remember(DATASETS, folder)
            self.set_dataset(folder)

    def _choose_run(self) -> None:
        start = self.run_edit.text() or (self.folders.open_folder(RUNS) if RUNS in self.folders.prefs.folders
                                         else str(runs_root()))
        folder = QFileDialog.getExistingDirectory(self, "Run folder", start)
        if folder:
            self.folders.remember(RUNS, Path(folder).parent)  # the next run is chosen among its siblings
            self.set_run_dir(folder)

    def _log(self, line: str) -> None:
        self.log_view.appendPlainText(line)
