"""The training panel's time estimate: how long Start will train with the form's settings.

Reads the step times of earlier runs (and, once needed, times this CPU) in a worker and turns them with the
form's model, size, device and step count into the Run box's estimate line. A mixin of ``TrainingPanel``,
which creates the state it uses (``timing``, ``step_times``, ``cpu_kernel_seconds``, ``_calibration``) in its
``__init__``.
"""
from __future__ import annotations

from trainer.data.prepare import parse_size
from trainer.errors import PriorPathError
from trainer.step_time import (
    REFERENCE_CPU_SECONDS, calibrate_cpu, estimate_run, measured_step_times, planned_steps, run_folders,
)

from .training_form import runs_root


class EstimateMixin:
    """The estimate line of ``TrainingPanel``'s Run box and the step times behind it."""

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
