"""The training panel's run: start, resume and stop a training child process and follow its run folder.

Training runs ``priorpath train`` in a child process (``train_process``); a timer polls ``RUN/events.jsonl``
(``trainer.runs.EventFollower``) for the progress bar, the loss plot and the newest sample. A chosen run
folder is shown the same way, so a run started elsewhere (or before a restart) can be resumed. A mixin of
``TrainingPanel``, which creates the state it uses (``train_process``, ``timer``, ``follower``, ``run_info``,
``_shown_sample``) in its ``__init__``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from trainer.data.prepare import parse_size
from trainer.errors import PriorPathError
from trainer.runs import (
    EVENTS, EventFollower, default_run_dir, finished_step, format_duration, latest_checkpoint, read_run_info,
    resume_args, sample_interval, summarize, train_args,
)
from trainer.step_time import planned_steps
from trainer.train import STOP_FILE

from .messages import show_error
from .plots import NO_LOSSES
from .prepare_dialog import error_box
from .training_form import runs_root

WAITING_FOR_STEP = "waiting for the first step…"
WAITING_FOR_SAMPLE = "waiting for the first sample…"
NO_SAMPLE = "no sample yet"


class TrainingRunMixin:
    """Start, Resume and Stop of ``TrainingPanel`` and the progress, losses and samples of its run folder."""

    # --- public API -------------------------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.train_process.is_running()

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
