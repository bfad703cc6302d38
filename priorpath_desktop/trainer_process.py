"""Running ``priorpath <command>`` in a child process, so training never blocks (or crashes) the window.

The child runs the same ``trainer`` code as the CLI. Stopping sends SIGTERM, which the CLI turns into a
clean stop after the current step with a checkpoint (``train``) or after the current item (``generate``).
"""
from __future__ import annotations

import collections
import os
import re
import sys
from pathlib import Path
from typing import Mapping, Optional, Sequence

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, Signal

#: output lines kept for the error message when the child fails
TAIL_LINES = 200
#: a tqdm bar: "...| 12/84 [00:01<..."
_TQDM = re.compile(r"(\d+)/(\d+) \[")
_CLI_ERROR = re.compile(r"priorpath(?: [\w-]+)?: error: (.*)")


def trainer_command(args: Sequence[str]) -> list[str]:
    """The command line that runs ``priorpath <args>`` with this installation's code."""
    if getattr(sys, "frozen", False):  # a PyInstaller bundle: the app's entry point honours --run-trainer
        return [sys.executable, "--run-trainer", *args]
    return [sys.executable, "-m", "trainer.cli", *args]


def parse_progress(line: str) -> Optional[tuple[int, int]]:
    """(done, total) from a tqdm progress line, or None for any other line."""
    m = _TQDM.search(line)
    return (int(m.group(1)), int(m.group(2))) if m else None


def child_threads() -> int:
    """Torch threads for the child: all cores but one, which the GUI keeps."""
    return max(1, (os.cpu_count() or 1) - 1)


def error_summary(lines: Sequence[str], fallback: str) -> str:
    """The child's own error line ("priorpath: error: ...") if it printed one, else ``fallback``."""
    for line in reversed(lines):
        m = _CLI_ERROR.match(line)  # "priorpath: error: ..." or argparse's "priorpath train: error: ..."
        if m:
            return m.group(1).strip()
        if line.startswith("priorpath: ") and "interrupted" not in line:
            return line[len("priorpath: "):].strip()
    return fallback


class TrainerProcess(QObject):
    """One child ``priorpath`` command. ``finished`` reports done|stopped|failed|killed exactly once per start."""

    started = Signal()
    output = Signal(str)  # one line of stdout/stderr (progress bars excluded)
    progress = Signal(int, int)  # done, total parsed from the progress bar (start with progress=True)
    finished = Signal(int, str)  # exit code, status

    def __init__(self, parent: Optional[QObject] = None):
        super().__init__(parent)
        self._proc: Optional[QProcess] = None
        self._buffer = ""
        self._stop_kind: Optional[str] = None  # "stop" (SIGTERM) or "kill" once asked
        self._reported = False
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.args: list[str] = []
        self.start_error: Optional[str] = None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.state() != QProcess.ProcessState.NotRunning

    def start(self, args: Sequence[str], env: Optional[Mapping[str, str]] = None, progress: bool = False) -> None:
        """Run ``priorpath <args>``; ``env`` adds to/overrides the inherited environment.

        Without ``progress`` the child gets ``--no-progress``; with it, its tqdm bar feeds ``progress``.
        """
        if self.is_running():
            raise RuntimeError("a trainer process is already running")
        self.args = list(args) + ([] if progress else ["--no-progress"])
        self.tail.clear()
        self._buffer, self._stop_kind, self._reported, self.start_error = "", None, False, None
        if self._proc is not None:
            self._proc.deleteLater()  # the previous (finished) child's QProcess
        proc = QProcess(self)
        proc.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        proc.setProcessEnvironment(self._environment(env))
        proc.readyReadStandardOutput.connect(self._read)
        proc.started.connect(self.started)
        proc.finished.connect(self._finished)
        proc.errorOccurred.connect(self._error)
        self._proc = proc
        command = trainer_command(self.args)
        proc.start(command[0], command[1:])

    def stop(self) -> None:
        """A clean stop: SIGTERM, which the CLI answers by finishing the current step and saving a checkpoint."""
        if self.is_running():
            self._stop_kind = "stop"
            self._proc.terminate()

    def kill(self) -> None:
        if self.is_running():
            self._stop_kind = "kill"
            self._proc.kill()

    def wait(self, msecs: int) -> bool:
        """Block until the child ends (only for shutdown); True when it did."""
        return self._proc is None or self._proc.waitForFinished(msecs) or not self.is_running()

    # --- internals ------------------------------------------------------------------------------------------------
    @staticmethod
    def _environment(env: Optional[Mapping[str, str]]) -> QProcessEnvironment:
        environment = QProcessEnvironment.systemEnvironment()
        environment.insert("OMP_NUM_THREADS", str(child_threads()))
        environment.insert("PYTHONUNBUFFERED", "1")  # lines arrive as they are printed
        environment.insert("PYTHONIOENCODING", "utf-8")
        if not getattr(sys, "frozen", False):  # let "-m trainer.cli" find this checkout even if not installed
            root = str(Path(__file__).resolve().parents[1])
            old = environment.value("PYTHONPATH", "")
            environment.insert("PYTHONPATH", root + (os.pathsep + old if old else ""))
        for key, value in (env or {}).items():
            environment.insert(key, str(value))
        return environment

    def _read(self) -> None:
        if self._proc is None:
            return
        self._buffer += bytes(self._proc.readAllStandardOutput().data()).decode("utf-8", errors="replace")
        *lines, self._buffer = re.split(r"[\r\n]", self._buffer)
        for line in lines:
            self._line(line)

    def _line(self, line: str) -> None:
        line = line.rstrip()
        if not line:
            return
        done_total = parse_progress(line)
        if done_total is not None:
            self.progress.emit(*done_total)
            return
        self.tail.append(line)
        self.output.emit(line)

    def _finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        self._read()
        if self._buffer.strip():
            self._line(self._buffer)
        self._buffer = ""
        crashed = exit_status == QProcess.ExitStatus.CrashExit
        if not crashed and exit_code == 0:
            status = "done"  # also when a stop arrived after the last step
        elif self._stop_kind == "stop" and (crashed or exit_code == 130):
            # 130: the CLI stopped cleanly; a command without a SIGTERM handler (prepare, eval) just ends
            status = "stopped"
        elif crashed:
            status = "killed"
        else:
            status = "failed"
        self._report(exit_code, status)

    def _error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:  # no finished() follows this one
            self.start_error = f"cannot start {trainer_command(self.args)[0]}: {self._proc.errorString()}"
            self.tail.append(self.start_error)
            self._report(-1, "failed")

    def _report(self, exit_code: int, status: str) -> None:
        if not self._reported:
            self._reported = True
            self.finished.emit(exit_code, status)
