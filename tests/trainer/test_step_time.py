"""The estimate of a run's time before it starts, and the sample interval that makes a short run show samples."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from trainer.cli import build_parser
from trainer.runs import sample_interval, train_args
from trainer.step_time import (REFERENCE_CPU_SECONDS, REFERENCE_KERNEL_SECONDS, calibrate_cpu, estimate_run,
                               measured_step_time, measured_step_times, planned_steps, run_folders)


def write_run(folder: Path, model: str = "pix2pix", device: str = "cpu", size=(64, 128), seconds_per_step=0.5,
              steps: int = 20, age: float = 0.0) -> Path:
    """A run folder whose log says it made ``steps`` steps at ``seconds_per_step``."""
    folder.mkdir(parents=True)
    events = [{"type": "start", "step": 0, "seconds": 0.0, "model": model, "total_steps": 100,
               "device": device, "size": list(size)}]
    events += [{"type": "step", "step": s, "seconds": 3.0 + s * seconds_per_step, "losses": {"G": 1.0}}
               for s in (1, 10, steps)]
    path = folder / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    os.utime(path, (path.stat().st_atime - age, path.stat().st_mtime - age))
    return folder


def test_a_run_log_gives_its_step_time(tmp_path):
    run = write_run(tmp_path / "pix2pix-a", device="cuda:0", seconds_per_step=0.25)
    t = measured_step_time(run)
    assert (t.model, t.device, t.size) == ("pix2pix", "cuda", (64, 128))
    assert t.seconds == pytest.approx(0.25)
    (tmp_path / "empty").mkdir()
    assert measured_step_time(tmp_path / "empty") is None
    assert run_folders(tmp_path) == [run]


def test_the_newest_measurement_of_the_same_model_and_device_wins_scaled_by_pixels(tmp_path):
    old = write_run(tmp_path / "old", seconds_per_step=2.0, age=3600)
    new = write_run(tmp_path / "new", size=(128, 256), seconds_per_step=1.0)
    write_run(tmp_path / "gpu", device="cuda", seconds_per_step=0.01)
    times = measured_step_times([old, new, tmp_path / "gpu"])
    assert [t.run.name for t in times][0] in ("new", "gpu")

    same_size = estimate_run("pix2pix", (64, 128), "cpu", 100, times)
    assert same_size.seconds_per_step == pytest.approx(2.0) and "measured in old" in same_size.source
    assert same_size.total_seconds == pytest.approx(200.0)
    other_size = estimate_run("pix2pix", (256, 512), "cpu", 10, [t for t in times if t.run.name != "old"])
    assert other_size.seconds_per_step == pytest.approx(4.0) and "scaled" in other_size.source
    text = same_size.describe()
    assert text.startswith("Estimate: about 3:20 for 100 steps") and "measured in old on this machine" in text


def test_without_a_measurement_a_calibrated_guess_on_cpu_only(tmp_path):
    guess = estimate_run("pix2pix", (256, 512), "cpu", 10, [], cpu_kernel_seconds=REFERENCE_KERNEL_SECONDS / 2)
    assert guess.seconds_per_step == pytest.approx(REFERENCE_CPU_SECONDS["pix2pix"] / 2)  # twice as fast here
    assert "guess" in guess.describe()
    assert estimate_run("pix2pix", (256, 512), "cpu", 10, []) is None  # not calibrated yet
    assert estimate_run("pix2pix", (256, 512), "cuda", 10, [], REFERENCE_KERNEL_SECONDS) is None
    assert estimate_run("analogy", (256, 512), "cpu", 10, [], REFERENCE_KERNEL_SECONDS) is None
    assert "the total needs the dataset's size" in estimate_run("pix2pix", (256, 512), "cpu", None, [],
                                                                REFERENCE_KERNEL_SECONDS).describe()
    assert 0 < calibrate_cpu(repeats=2) < 10


def test_planned_steps_and_the_sample_interval_of_a_short_run(tmp_path):
    assert planned_steps(12, epochs=3) == 36 and planned_steps(12, 3, max_steps=20) == 20
    assert planned_steps(None, 3) is None and planned_steps(12, 3, batch_size=4) == 9
    assert sample_interval(20) == 2 and sample_interval(5) == 1  # a short run samples early
    assert sample_interval(100_000) == 500 and sample_interval(None) is None  # long runs: the trainer's default
    parser = build_parser()
    args = parser.parse_args(train_args("pix2pix", tmp_path, tmp_path / "r", None, 1, 20, "cpu", sample_every=2))
    assert args.sample_every == 2
    later = train_args("pix2pix", tmp_path, tmp_path / "r", None, 1, 20, "cpu", ["--sample-every", "7"], 2)
    assert parser.parse_args(later).sample_every == 7  # the user's own flag wins
