"""How long a training run will take, before it starts (no Qt).

A step time measured on this machine comes first: the last segment of an earlier run's ``events.jsonl`` (its
``start`` event says the model, device and size), scaled by pixels to the size asked for. Without one, a CPU
run gets a guess: the step times ``benchmarks/train_step.py`` measured on a reference 2-core CPU
(``benchmarks/results/train_step_cpu.md``), scaled by how fast a short convolution runs here compared with
there (``calibrate_cpu``, about half a second). Either way it is an estimate, and says where it comes from.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

from .events import read_events
from .runs import EVENTS, format_duration

#: seconds per step at 256x512, batch 1, default options, on the reference 2-core CPU (train_step_cpu.md)
REFERENCE_CPU_SECONDS = {"pix2pix": 1.95, "cyclegan": 37.85, "pix2pixhd": 10.26, "dcgan": 1.20, "depas": 2.18}
REFERENCE_PIXELS = 256 * 512
#: the fastest of ``calibrate_cpu``'s convolutions on that CPU, idle
REFERENCE_KERNEL_SECONDS = 0.048


@dataclass(frozen=True)
class StepTime:
    """Seconds per step of one earlier run, and what it trained."""

    model: str
    device: str  # cpu, cuda or mps (the device type)
    size: tuple[int, int]
    seconds: float
    run: Path
    when: float  # the events file's modification time: the newest measurement wins


def measured_step_time(run: Path) -> Optional[StepTime]:
    """The step time of ``run``'s last start or resume, from its events; None before it logged two steps."""
    path = Path(run) / EVENTS
    try:
        when = path.stat().st_mtime
    except OSError:
        return None
    events = read_events(path)
    opened = [i for i, e in enumerate(events) if e.get("type") in ("start", "resume")]
    if not opened:
        return None
    start = events[opened[-1]]
    # from the segment's first logged step on: the set-up before it (loading, warm-up) is not a step's pace
    steps = [e for e in events[opened[-1]:] if e.get("type") == "step"]
    rate = None
    if len(steps) >= 2 and int(steps[-1]["step"]) > int(steps[0]["step"]):
        first, last = steps[0], steps[-1]
        rate = (float(last["seconds"]) - float(first["seconds"])) / (int(last["step"]) - int(first["step"]))
    size = start.get("size")
    if not rate or rate <= 0 or not (isinstance(size, list) and len(size) == 2):
        return None
    device = str(start.get("device") or "cpu").split(":")[0]
    return StepTime(str(start.get("model")), device, (int(size[0]), int(size[1])), float(rate), Path(run), when)


def measured_step_times(runs: Iterable[Path]) -> list[StepTime]:
    """Step times of the runs given (folders without a usable log are skipped), newest first."""
    found = [t for t in (measured_step_time(r) for r in runs) if t is not None]
    return sorted(found, key=lambda t: t.when, reverse=True)


def run_folders(root: Path) -> list[Path]:
    """The run folders directly under ``root`` (the app's runs folder)."""
    try:
        return [p for p in Path(root).iterdir() if (p / EVENTS).is_file()]
    except OSError:
        return []


def dataset_patch_size(folder: Path) -> Optional[tuple[int, int]]:
    """(height, width) of a prepared folder's patches, from one fine mask's header (the size a run takes
    when none is given)."""
    from .image_size import header_size

    first = next((Path(folder) / "fine").glob("*.png"), None)  # all patches of a folder have one size
    return header_size(first) if first is not None else None


def calibrate_cpu(repeats: int = 8) -> float:
    """This CPU's time for a convolution step (forward and backward, 32 channels, 128x256), the fastest of
    ``repeats``: the reference CPU's time divided by this is how much faster this machine trains."""
    import torch

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 32, 128, 256, generator=generator, requires_grad=True)
    w = torch.randn(32, 32, 3, 3, generator=generator, requires_grad=True)
    best = float("inf")
    for i in range(repeats + 1):
        start = time.perf_counter()
        torch.nn.functional.conv2d(x, w, padding=1).square().mean().backward()
        if i:  # the first run warms the allocator and the kernels up
            best = min(best, time.perf_counter() - start)
    return best


@dataclass(frozen=True)
class Estimate:
    seconds_per_step: float
    steps: Optional[int]  # None when the dataset's size is not known yet
    source: str  # where the step time comes from, in words

    @property
    def total_seconds(self) -> Optional[float]:
        return None if self.steps is None else self.steps * self.seconds_per_step

    def describe(self) -> str:
        rate = f"{self.seconds_per_step:.3g} s a step"
        if self.steps is None:
            return f"Estimate: {rate} ({self.source}); the total needs the dataset's size"
        return (f"Estimate: about {format_duration(self.total_seconds)} for {self.steps:,} steps "
                f"({rate}, {self.source})")


def planned_steps(pairs: Optional[int], epochs: int, max_steps: int = 0, batch_size: int = 1) -> Optional[int]:
    """The steps a new run will make (as ``train`` counts them), or None without the number of patches."""
    if not pairs:
        return None
    total = epochs * max(1, pairs // max(1, batch_size))
    return min(total, max_steps) if max_steps else total


def estimate_run(model: str, size: tuple[int, int], device: str, steps: Optional[int],
                 measured: Sequence[StepTime], cpu_kernel_seconds: Optional[float] = None) -> Optional[Estimate]:
    """The time of a run of ``steps`` steps: from the newest measurement of the same model on the same device
    (the same size preferred), else, on a CPU with a calibration, the reference guess; None when neither exists."""
    pixels = size[0] * size[1]
    same = [t for t in measured if t.model == model and t.device == device]
    exact = [t for t in same if t.size == tuple(size)]
    if exact or same:
        t = (exact or same)[0]
        seconds = t.seconds * pixels / (t.size[0] * t.size[1])
        return Estimate(seconds, steps, f"measured in {t.run.name} on this machine"
                                        + ("" if exact else f" at {t.size[0]}x{t.size[1]}, scaled"))
    if device == "cpu" and model in REFERENCE_CPU_SECONDS and cpu_kernel_seconds:
        speed = REFERENCE_KERNEL_SECONDS / cpu_kernel_seconds
        seconds = REFERENCE_CPU_SECONDS[model] * pixels / REFERENCE_PIXELS / speed
        return Estimate(seconds, steps, "a guess from a quick speed test of this CPU; the first steps will tell")
    return None
