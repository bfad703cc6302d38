"""The training panel's evaluation and adoption of a trained checkpoint.

Evaluate generates masks from the run's dataset with its checkpoint and runs ``priorpath eval`` on them, one
child process (``eval_process``) per step of ``trainer.runs.eval_commands``; the report it writes fills the
Evaluation tab (metrics table and t-SNE plot). Adopt hands a mask or RGB checkpoint to the generation view.
A mixin of ``TrainingPanel``, which creates the state it uses (``eval_process``, ``_eval_queue``) in its
``__init__``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QGroupBox, QHBoxLayout, QProgressBar, QPushButton, QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout,
)

from trainer.errors import PriorPathError
from trainer.runs import EVAL_REPORT, RunInfo, eval_commands, model_role, read_eval_report

from .messages import show_error
from .plots import ElidedLabel, PictureLabel
from .prepare_dialog import error_box

NOISE_TIP = "noise models (dcgan, depas) have no coarse input, so the generation view cannot use them"


class EvaluationMixin:
    """The Evaluate box and Evaluation tab of ``TrainingPanel`` and the evaluation runs behind them."""

    # --- layout -------------------------------------------------------------------------------------------------
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

    def _build_evaluation_tab(self) -> QSplitter:
        self.metrics_table = QTableWidget()
        self.metrics_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.tsne_view = PictureLabel("no t-SNE plot yet")
        evaluation = QSplitter(Qt.Orientation.Horizontal)
        evaluation.addWidget(self.metrics_table)
        evaluation.addWidget(self.tsne_view)
        evaluation.setStretchFactor(1, 1)  # the t-SNE plot takes the room the narrow table does not need
        return evaluation

    # --- public API -------------------------------------------------------------------------------------------
    def is_evaluating(self) -> bool:
        return self.eval_process.is_running() or bool(self._eval_queue)

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

    # --- buttons ----------------------------------------------------------------------------------------------------
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

    def _update_eval_buttons(self, running: bool, evaluating: bool, info: Optional[RunInfo]) -> None:
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
