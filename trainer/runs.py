"""Reading a training run folder while it grows (no Qt): events, progress, checkpoints, eval reports.

A run folder is what ``priorpath train --out RUN`` writes: ``events.jsonl``, ``checkpoints/latest.safetensors``
and ``samples/``; the app's evaluation adds ``eval/generated`` and ``eval/report`` (``priorpath eval``). The
desktop training panel follows a live run with ``EventFollower`` and builds its commands with the
``*_args`` helpers here, so the same logic is testable without a window.
"""
from __future__ import annotations

import csv
import datetime
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .errors import PriorPathError

EVENTS = "events.jsonl"
LATEST_CHECKPOINT = Path("checkpoints") / "latest.safetensors"
EVAL_GENERATED = Path("eval") / "generated"
EVAL_REPORT = Path("eval") / "report"

#: what a model's checkpoint is for in the generation view: coarse->fine masks or fine->RGB tiles
MASK_ROLE, RGB_ROLE = "mask", "rgb"


class EventFollower:
    """Follows ``events.jsonl`` as training appends to it, parsing only new complete lines.

    The writer may be caught mid-line, so bytes after the last newline wait for the next ``poll``. A resume
    rewrites the file (``events.truncate_after`` replaces it atomically): a new file identity or a shrink
    makes the follower start over, so ``events`` always mirrors the file.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.events: list[dict] = []
        self._offset = 0
        self._identity: Optional[tuple[int, int]] = None

    def poll(self) -> bool:
        """Read what was appended since the last poll; True when ``events`` changed."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            changed = bool(self.events)
            self._restart(None)
            return changed
        identity = (st.st_dev, st.st_ino)
        changed = False
        if identity != self._identity or st.st_size < self._offset:
            changed = bool(self.events)
            self._restart(identity)
        if st.st_size == self._offset:
            return changed
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read(st.st_size - self._offset)
        end = chunk.rfind(b"\n")
        if end < 0:  # only a partial line so far
            return changed
        self._offset += end + 1
        for line in chunk[:end].split(b"\n"):
            try:
                event = json.loads(line.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):  # a corrupt line is skipped, like read_events does
                continue
            if isinstance(event, dict):
                self.events.append(event)
                changed = True
        return changed

    def _restart(self, identity: Optional[tuple[int, int]]) -> None:
        self.events = []
        self._offset = 0
        self._identity = identity


@dataclass
class RunProgress:
    """Where a run stands according to its events."""

    state: str = "empty"  # empty | running | done | stopped | failed
    model: Optional[str] = None
    step: int = 0
    total_steps: int = 0
    seconds: float = 0.0  # training time so far (summed over resumes)
    seconds_per_step: Optional[float] = None  # rate since the last start/resume
    last_sample: Optional[str] = None
    error: Optional[str] = None

    @property
    def eta_seconds(self) -> Optional[float]:
        if self.seconds_per_step is None or not self.total_steps:
            return None
        return max(0, self.total_steps - self.step) * self.seconds_per_step


def summarize(events: Sequence[dict]) -> RunProgress:
    """The state of a run from its events (the last start/resume opens a segment; end/cancelled/error close it)."""
    p = RunProgress()
    segment_start: Optional[tuple[int, float]] = None
    for e in events:
        kind, step, seconds = e.get("type"), int(e.get("step", 0) or 0), float(e.get("seconds", 0.0) or 0.0)
        p.step, p.seconds = step, seconds
        if kind in ("start", "resume"):
            p.state, p.error = "running", None
            p.model = e.get("model", p.model)
            p.total_steps = int(e.get("total_steps", p.total_steps) or 0)
            segment_start = (step, seconds)
        elif kind == "sample":
            p.last_sample = e.get("path") or p.last_sample
        elif kind == "end":
            p.state = "done"
        elif kind == "cancelled":
            p.state = "stopped"
        elif kind == "error":
            p.state, p.error = "failed", e.get("message")
        if segment_start is not None and step > segment_start[0]:
            p.seconds_per_step = (seconds - segment_start[1]) / (step - segment_start[0])
    return p


def loss_series(events: Sequence[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """loss name -> (steps, values) from the ``step`` events, in the order the names first appear."""
    steps: dict[str, list[int]] = {}
    values: dict[str, list[float]] = {}
    for e in events:
        if e.get("type") != "step" or not isinstance(e.get("losses"), dict):
            continue
        for name, value in e["losses"].items():
            try:
                v = float(value)
            except (TypeError, ValueError):
                continue
            steps.setdefault(name, []).append(int(e.get("step", 0)))
            values.setdefault(name, []).append(v)
    return {k: (np.asarray(steps[k]), np.asarray(values[k], dtype=float)) for k in steps}


#: step "losses" that are not losses but counters, with the axis label that says what they count. The analogy
#: model has no loss: its step reports how many (coarse window, fine block) pairs its reservoir holds.
COUNTERS: dict[str, str] = {"windows": "windows collected"}


Series = dict[str, tuple[np.ndarray, np.ndarray]]


def split_losses_and_counters(series: Series) -> tuple[Series, Series]:
    """``loss_series`` split into (losses, counters), each keeping the order of the names."""
    losses = {k: v for k, v in series.items() if k not in COUNTERS}
    counters = {k: v for k, v in series.items() if k in COUNTERS}
    return losses, counters


def counter_label(names: Sequence[str]) -> str:
    """The y-axis label of a plot of these counters: what one counts, or "count" for several."""
    labels = {COUNTERS.get(n, n) for n in names}
    return labels.pop() if len(labels) == 1 else "count"


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` values (the first points average what exists so far)."""
    values = np.asarray(values, dtype=float)
    if window <= 1 or values.size == 0:
        return values
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, values.size + 1)
    lo = np.maximum(0, idx - window)
    return (sums[idx] - sums[lo]) / (idx - lo)


def format_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# --- the run folder ---------------------------------------------------------------------------------------------
def latest_checkpoint(run_dir: Path) -> Optional[Path]:
    path = Path(run_dir) / LATEST_CHECKPOINT
    return path if path.is_file() else None


@dataclass
class RunInfo:
    """What a run's checkpoint header says (the config it was started with)."""

    checkpoint: Path
    model: str
    step: int
    config: dict = field(default_factory=dict)

    @property
    def data(self) -> Optional[str]:
        return self.config.get("data") or None


def finished_step(run_dir: Path) -> Optional[int]:
    """The step a run ended at when its log's last event is ``end`` (it completed), else None."""
    from .events import read_events

    path = Path(run_dir) / EVENTS
    events = read_events(path) if path.is_file() else []
    return int(events[-1]["step"]) if events and events[-1].get("type") == "end" else None


def read_run_info(run_dir: Path) -> Optional[RunInfo]:
    """The run's latest checkpoint header, or None when it has none; a corrupt one raises PriorPathError."""
    from .checkpoint import load_checkpoint

    path = latest_checkpoint(run_dir)
    if path is None:
        return None
    ckpt = load_checkpoint(path, with_tensors=False)
    return RunInfo(path, ckpt.model_name, int(ckpt.state.get("step", 0)), dict(ckpt.config))


def model_role(model: str) -> Optional[str]:
    """``mask`` for coarse->fine models, ``rgb`` for fine->RGB, None for noise models (no coarse input)."""
    from .inference import MASK_KINDS, RGB_KINDS
    from .models import model_class

    kinds = tuple(model_class(model).kinds)
    return MASK_ROLE if kinds == MASK_KINDS else RGB_ROLE if kinds == RGB_KINDS else None


def default_run_dir(root: Path, model: str, now: Optional[datetime.datetime] = None) -> Path:
    """``root/<model>-<YYYYmmdd-HHMMSS>``, with a numeric suffix if that exists already."""
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{model}-{stamp}"
    n = 2
    while path.exists():
        path = Path(root) / f"{model}-{stamp}-{n}"
        n += 1
    return path


# --- the dataset -----------------------------------------------------------------------------------------------
@dataclass
class DatasetCheck:
    ok: bool
    pairs: int
    message: str


def check_dataset(folder: Path, model: str) -> DatasetCheck:
    """Whether ``folder`` (written by ``prepare``) holds what ``model`` trains on, and how many patches."""
    from .models import model_class

    folder = Path(folder)
    kinds = tuple(model_class(model).kinds)
    if not folder.is_dir():
        return DatasetCheck(False, 0, f"{folder}: no such folder")
    missing = [k for k in kinds if not (folder / k).is_dir()]
    if missing:
        return DatasetCheck(False, 0, f"no {', '.join(m + '/' for m in missing)} folder ({model} reads "
                                      f"{' and '.join(kinds)})")
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        return DatasetCheck(False, 0, "no manifest.csv (prepare the folder with 'Prepare from slides…')")
    try:
        with open(manifest, newline="", encoding="utf-8") as fh:
            stems = [row["stem"] for row in csv.DictReader(fh) if row.get("stem")]
    except (OSError, UnicodeDecodeError, KeyError, csv.Error) as exc:
        return DatasetCheck(False, 0, f"{manifest}: unreadable ({exc})")
    present = {k: {p.stem for p in (folder / k).glob("*.png")} for k in kinds}
    complete = [s for s in stems if all(s in present[k] for k in kinds)]
    if not stems:
        return DatasetCheck(False, 0, "manifest.csv lists no patches")
    if len(complete) < len(stems):
        return DatasetCheck(False, len(complete), f"{len(stems) - len(complete)} of {len(stems)} patches miss "
                                                  f"a file in {'/, '.join(kinds)}/")
    return DatasetCheck(True, len(complete), f"{len(complete)} patches ({' + '.join(kinds)})")


# --- commands -----------------------------------------------------------------------------------------------------
SAMPLES_PER_RUN = 10  # a short run still shows a sample early, after a tenth of its steps


def sample_interval(steps: Optional[int]) -> Optional[int]:
    """Steps between sample images for a run of ``steps`` steps: a tenth of the run, never longer than the
    trainer's default (``TrainConfig.sample_every``); None (the default) when the length is not known."""
    from .config import TrainConfig

    if not steps:
        return None
    return max(1, min(TrainConfig.sample_every, steps // SAMPLES_PER_RUN))


def train_args(model: str, data: Path, run_dir: Path, size: Optional[tuple[int, int]], epochs: int,
               max_steps: int, device: str, extra: Sequence[str] = (),
               sample_every: Optional[int] = None) -> list[str]:
    """``priorpath train`` arguments for a new run (``max_steps`` 0 = all epochs); ``extra`` comes last, so its
    flags win over these."""
    args = ["train", "--model", model, "--data", str(data), "--out", str(run_dir), "--epochs", str(epochs),
            "--device", device]
    if size:
        args += ["--size", f"{size[0]}x{size[1]}"]
    if max_steps:
        args += ["--max-steps", str(max_steps)]
    if sample_every:
        args += ["--sample-every", str(sample_every)]
    return args + list(extra)


def resume_args(run_dir: Path, device: str, max_steps: int = 0) -> list[str]:
    """``priorpath train --resume``: the stored config decides everything that changes the maths."""
    args = ["train", "--out", str(run_dir), "--resume", "--device", device]
    if max_steps:
        args += ["--max-steps", str(max_steps)]
    return args


def eval_commands(run_dir: Path, data: Path, checkpoint: Path, model: str, device: str) -> list[list[str]]:
    """Generate fine masks from the dataset's coarse masks with the run's checkpoint, then ``eval`` them."""
    run_dir, data = Path(run_dir), Path(data)
    generated = run_dir / EVAL_GENERATED
    return [
        ["generate", "--coarse", str(data / "coarse"), "--out", str(generated), "--mask-model", str(checkpoint),
         "--rgb-model", "none", "--device", device],
        ["eval", "--real", str(data / "fine"), "--fake", f"{model}={generated / 'fine'}",
         "--out", str(run_dir / EVAL_REPORT), "--device", device],
    ]


# --- the eval report --------------------------------------------------------------------------------------------
@dataclass
class EvalTable:
    """``metrics.csv`` turned around: one row per metric, one column per generated set."""

    sets: list[str]
    metrics: list[str]
    values: list[list[str]]  # values[metric][set]
    tsne: Optional[Path]


def read_eval_report(report_dir: Path) -> Optional[EvalTable]:
    """The report ``priorpath eval`` wrote, or None when there is none; an unreadable one raises PriorPathError."""
    report_dir = Path(report_dir)
    path = report_dir / "metrics.csv"
    if not path.is_file():
        return None
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PriorPathError(f"{path}: cannot read the metrics ({exc})") from exc
    if not rows or "Method" not in rows[0]:
        raise PriorPathError(f"{path}: not a metrics table written by 'priorpath eval'")
    metrics = [c for c in rows[0] if c not in ("Method", "Dataset")]
    values = [[_short_number(r.get(m, "")) for r in rows] for m in metrics]
    tsne = report_dir / "tsne.png"
    return EvalTable([r["Method"] for r in rows], metrics, values, tsne if tsne.is_file() else None)


def _short_number(text: str) -> str:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text or ""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"


def available_devices() -> list[str]:
    """Device choices this machine can run: auto and cpu always, cuda/mps where torch sees them."""
    import torch

    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices
