"""The training panel's form: the data and run settings a new run is started with.

Builds the Data and Run boxes, checks the chosen dataset in a worker, remembers and restores the form between
sessions, shows a chosen run's stored settings (what Resume will use) and opens the dialogs that pick or
prepare folders. A mixin of ``TrainingPanel``, which creates the state it uses (``checker``, ``folders``,
``dataset_check``, ``patch_size``, ``prepare_dialog``) in its ``__init__``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox,
    QVBoxLayout,
)

from trainer.models import REGISTRY
from trainer.runs import RunInfo, available_devices, check_dataset
from trainer.step_time import dataset_patch_size

from .folders import DATASETS, RUNS
from .plots import ElidedLabel
from .preferences import config_dir
from .prepare_dialog import PrepareDialog

DEFAULT_SIZE = "256x512"
DEFAULT_EPOCHS = 100
RUN_TIP = "The run folder; choose one that holds a run to resume, evaluate or adopt it"


def runs_root() -> Path:
    return config_dir() / "runs"


class TrainingFormMixin:
    """The Data and Run boxes of ``TrainingPanel`` and what reads and fills them."""

    # --- layout -------------------------------------------------------------------------------------------------
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

    def open_prepare_dialog(self) -> PrepareDialog:
        """The dialog that prepares a dataset from slides; on success its folder becomes the dataset."""
        if self.prepare_dialog is None:
            self.prepare_dialog = PrepareDialog(self, self.child_env, self.folders)
            self.prepare_dialog.prepared.connect(self._prepared)
        self.prepare_dialog.env = dict(self.child_env)
        self.prepare_dialog.open()
        return self.prepare_dialog

    # --- the run folder's settings --------------------------------------------------------------------------------
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
