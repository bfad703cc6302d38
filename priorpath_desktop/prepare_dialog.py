"""The dialog that prepares a dataset from slides: ``priorpath prepare`` in a child process, with progress."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox, QDialog, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QListWidget, QProgressBar,
    QPushButton, QVBoxLayout, QWidget,
)

from trainer.data.prepare import parse_size
from trainer.errors import PriorPathError

from .folders import PREPARED_OUT, SLIDES, FolderMemory
from .list_editing import remove_chosen_rows
from .messages import show_error
from .plots import guard_wheel
from .preferences import Preferences
from .trainer_process import TrainerProcess, error_summary


def failure_message(proc: TrainerProcess, what: str, exit_code: int, status: str) -> str:
    """Why a child (prepare, train, generate, eval) failed: its own error line, then its last output."""
    fallback = (f"the {what} process was killed (it crashed or ran out of memory)" if status == "killed"
                else f"the {what} process exited with code {exit_code}")
    last = "\n".join(list(proc.tail)[-12:])
    return f"{error_summary(list(proc.tail), fallback)}\n\nLast output:\n{last}" if last else fallback


def error_box(parent: QWidget, title: str, proc: TrainerProcess, what: str, exit_code: int, status: str) -> None:
    """The failure message of a child process, with all of its kept output as the details."""
    box = show_error(parent, title, failure_message(proc, what, exit_code, status))
    box.setDetailedText("\n".join(proc.tail))  # all of the kept output, for a bug report


class PrepareDialog(QDialog):
    """Sources, stain, patch size and output folder for ``priorpath prepare``, run in a child process."""

    prepared = Signal(str)  # the output folder, after a successful run

    def __init__(self, parent: Optional[QWidget] = None, env: Optional[Mapping[str, str]] = None,
                 folders: Optional[FolderMemory] = None):
        super().__init__(parent)
        self.setWindowTitle("Prepare a dataset from slides")
        self.env = dict(env or {})
        self.folders = folders if folders is not None else FolderMemory(Preferences())
        self.process = TrainerProcess(self)
        self.sources = QListWidget()
        add_files, add_folder, remove = QPushButton("Add files…"), QPushButton("Add folder…"), QPushButton("Remove")
        add_files.clicked.connect(self._add_files)
        add_folder.clicked.connect(self._add_folder)
        remove.clicked.connect(lambda: remove_chosen_rows(self.sources))
        self.stain = QComboBox()
        self.stain.addItems(["he", "ihc"])
        self.stain.setToolTip("Sets the grey level that separates tissue from air (he 204, ihc 235)")
        self.patch = QLineEdit("512x1024")
        self.patch.setToolTip("Patch size as height x width")
        self.out = QLineEdit()
        choose_out = QPushButton("Choose…")
        choose_out.clicked.connect(self._choose_out)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.run_button = QPushButton("Prepare")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Close")
        self.cancel_button.clicked.connect(self._cancel_or_close)

        source_buttons = QHBoxLayout()
        for b in (add_files, add_folder, remove):
            source_buttons.addWidget(b)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out, 1)
        out_row.addWidget(choose_out)
        form = QFormLayout()
        form.addRow("Stain", self.stain)
        form.addRow("Patch size", self.patch)
        form.addRow("Output folder", out_row)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Slides or images (files or folders):"))
        layout.addWidget(self.sources, 1)
        layout.addLayout(source_buttons)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addLayout(buttons)

        self.process.progress.connect(self._progress)
        self.process.finished.connect(self._finished)
        guard_wheel(self)

    def set_sources(self, paths: Sequence[Path]) -> None:
        self.sources.clear()
        self.sources.addItems([str(p) for p in paths])

    def set_output(self, path: Path) -> None:
        self.out.setText(str(path))

    def source_paths(self) -> list[str]:
        return [self.sources.item(i).text() for i in range(self.sources.count())]

    def is_running(self) -> bool:
        return self.process.is_running()

    def run(self) -> None:
        sources, out = self.source_paths(), self.out.text().strip()
        try:
            patch = parse_size(self.patch.text())
        except PriorPathError as exc:
            show_error(self, "Patch size", str(exc))
            return
        if not sources:
            show_error(self, "Prepare", "Add at least one slide, image or folder of them.")
            return
        if not out:
            show_error(self, "Prepare", "Choose an output folder for the dataset.")
            return
        args = ["prepare", *sources, "--out", out, "--stain", self.stain.currentText(),
                "--patch", f"{patch[0]}x{patch[1]}"]
        self.progress.setRange(0, 0)  # busy until the first progress line names a total
        self.status.setText("cutting patches…")
        self._set_running(True)
        self.process.start(args, env=self.env, progress=True)

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self.status.setText(f"{done} / {total} patches")

    def _finished(self, exit_code: int, status: str) -> None:
        self._set_running(False)
        if self.progress.maximum() == 0:  # still busy-style: no progress line came
            self.progress.setRange(0, 1)
        if status == "done":
            self.progress.setValue(self.progress.maximum())
            summary = next((line for line in reversed(self.process.tail) if "patches kept" in line), "done")
            self.status.setText(summary)
            self.prepared.emit(self.out.text().strip())
            self.accept()
        elif status == "stopped":
            self.progress.setValue(0)
            self.status.setText("cancelled; preparing again into the same folder continues where it stopped")
        else:
            self.progress.setValue(0)
            self.status.setText("failed")
            error_box(self, "Preparing the dataset failed", self.process, "prepare", exit_code, status)

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setText("Cancel" if running else "Close")

    def _cancel_or_close(self) -> None:
        if self.process.is_running():
            self.process.stop()
        else:
            self.reject()

    def _add_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Slides or images", self.folders.open_folder(SLIDES))
        if files:
            self.folders.remember(SLIDES, files[0])
        self.sources.addItems(files)

    def _add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of slides or images", self.folders.open_folder(SLIDES))
        if folder:
            self.folders.remember(SLIDES, Path(folder).parent)  # the next folder is likely a sibling
            self.sources.addItem(folder)

    def _choose_out(self) -> None:
        # output goes where it can be written: never the read-only folder the slides came from
        folder = QFileDialog.getExistingDirectory(self, "Output folder for the dataset",
                                                  self.folders.save_folder(PREPARED_OUT))
        if folder:
            self.folders.remember(PREPARED_OUT, Path(folder).parent)
            self.out.setText(folder)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        if self.process.is_running():
            self.process.stop()
        super().closeEvent(event)

    def reject(self) -> None:
        """Esc or Close: a running preparation is stopped first (rerunning it later continues it)."""
        if self.process.is_running():
            self.process.stop()
        super().reject()
