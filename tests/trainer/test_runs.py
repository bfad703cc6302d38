"""Reading run folders while they grow (trainer/runs.py): the incremental event reader, progress, datasets,
commands and eval reports."""
from __future__ import annotations

import csv
import datetime
import json
import os
import shutil

import numpy as np
import pytest

from trainer.cli import build_parser
from trainer.config import make_config
from trainer.errors import PriorPathError
from trainer.events import EventLog, truncate_after
from trainer.metrics.report import CSV_COLUMNS
from trainer.models import REGISTRY
from trainer.runs import (
    COUNTERS, EVAL_GENERATED, EVAL_REPORT, EventFollower, check_dataset, counter_label, default_run_dir,
    eval_commands, finished_step, format_duration, loss_series, model_role, moving_average, read_eval_report, read_run_info,
    resume_args, split_losses_and_counters, summarize, train_args,
)
from trainer.train import train


def _line(event: dict) -> bytes:
    return (json.dumps(event) + "\n").encode()


def test_follower_waits_for_a_half_written_line(tmp_path):
    path = tmp_path / "events.jsonl"
    follower = EventFollower(path)
    assert follower.poll() is False and follower.events == []  # no file yet

    first = _line({"type": "start", "step": 0, "seconds": 0.0, "total_steps": 5})
    second = _line({"type": "step", "step": 1, "seconds": 0.1, "losses": {"G": 1.5}})
    with open(path, "wb") as fh:
        fh.write(first + second[:17])  # the writer is caught in the middle of the second line
        fh.flush()
        assert follower.poll() is True
        assert [e["type"] for e in follower.events] == ["start"]
        assert follower.poll() is False  # nothing new that is complete
        fh.write(second[17:])
        fh.flush()
        assert follower.poll() is True
    assert [e["type"] for e in follower.events] == ["start", "step"]
    assert follower.events[1]["losses"] == {"G": 1.5}

    with open(path, "ab") as fh:  # a corrupt complete line is skipped, the next one still read
        fh.write(b"{not json\n" + _line({"type": "end", "step": 1, "seconds": 0.2}))
    assert follower.poll() is True
    assert [e["type"] for e in follower.events] == ["start", "step", "end"]


def test_follower_starts_over_when_a_resume_rewrites_the_file(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.emit("start", 0, 0.0, total_steps=10)
    for step in (1, 2, 3, 4):
        log.emit("step", step, step / 10, losses={"L": float(step)})
    log.close()
    follower = EventFollower(path)
    assert follower.poll() and len(follower.events) == 5

    truncate_after(path, 2)  # what a resume from the checkpoint at step 2 does: atomic replace
    log = EventLog(path)
    log.emit("resume", 2, 0.2, total_steps=10)
    log.close()
    assert follower.poll() is True
    assert [(e["type"], e["step"]) for e in follower.events] == [("start", 0), ("step", 1), ("step", 2),
                                                                  ("resume", 2)]
    os.remove(path)
    assert follower.poll() is True and follower.events == []


def test_summarize_follows_start_stop_resume_and_end():
    events = [
        {"type": "start", "step": 0, "seconds": 0.0, "model": "pix2pix", "total_steps": 100},
        {"type": "step", "step": 1, "seconds": 1.0, "losses": {"G": 2.0, "D": 0.5}},
        {"type": "step", "step": 10, "seconds": 10.0, "losses": {"G": 1.0, "D": 0.7}},
        {"type": "sample", "step": 10, "seconds": 10.5, "path": "/r/samples/step_0000010.png"},
        {"type": "checkpoint", "step": 10, "seconds": 11.0, "path": "/r/checkpoints/latest.safetensors"},
        {"type": "cancelled", "step": 10, "seconds": 11.0, "path": "/r/checkpoints/latest.safetensors"},
    ]
    p = summarize(events)
    assert (p.state, p.model, p.step, p.total_steps) == ("stopped", "pix2pix", 10, 100)
    assert p.last_sample == "/r/samples/step_0000010.png"
    assert p.seconds_per_step == pytest.approx(1.1)  # 11 s over 10 steps
    assert p.eta_seconds == pytest.approx(90 * 1.1)

    resumed = events + [{"type": "resume", "step": 10, "seconds": 11.0, "total_steps": 100},
                        {"type": "step", "step": 20, "seconds": 13.0, "losses": {"G": 0.8, "D": 0.6}}]
    p = summarize(resumed)
    assert (p.state, p.step) == ("running", 20)
    assert p.seconds_per_step == pytest.approx(0.2)  # the rate since the resume, not the whole run
    p = summarize(resumed + [{"type": "error", "step": 20, "seconds": 13.0, "message": "diverged"}])
    assert (p.state, p.error) == ("failed", "diverged")
    p = summarize(resumed + [{"type": "end", "step": 100, "seconds": 30.0}])
    assert (p.state, p.step, p.eta_seconds) == ("done", 100, 0)
    assert summarize([]).state == "empty" and summarize([]).eta_seconds is None

    series = loss_series(resumed)
    assert list(series) == ["G", "D"]
    steps, values = series["G"]
    assert steps.tolist() == [1, 10, 20] and values.tolist() == [2.0, 1.0, 0.8]


def test_moving_average_and_durations():
    np.testing.assert_allclose(moving_average(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1.0, 2.0, 4.0, 6.0])
    np.testing.assert_allclose(moving_average(np.array([1.0, 3.0, 5.0]), 1), [1.0, 3.0, 5.0])
    assert moving_average(np.array([]), 5).size == 0
    assert (format_duration(None), format_duration(65), format_duration(3725)) == ("–", "1:05", "1:02:05")


@pytest.fixture(scope="module")
def dataset(sample_patches, tmp_path_factory):
    """A copy of the prepared sample we may damage."""
    out = tmp_path_factory.mktemp("runs-data") / "data"
    shutil.copytree(sample_patches, out)
    return out


def test_check_dataset_names_what_is_missing(dataset, tmp_path):
    n = len(list((dataset / "fine").glob("*.png")))
    ok = check_dataset(dataset, "pix2pix")
    assert ok.ok and ok.pairs == n and str(n) in ok.message
    assert check_dataset(dataset, "pix2pixhd").ok  # fine + rgb
    assert check_dataset(dataset, "dcgan").ok  # fine only

    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    shutil.rmtree(broken / "rgb")
    bad = check_dataset(broken, "pix2pixhd")
    assert not bad.ok and "rgb/" in bad.message
    assert check_dataset(broken, "pix2pix").ok  # coarse->fine models do not need rgb/
    first = sorted((broken / "fine").glob("*.png"))[0]
    first.unlink()
    bad = check_dataset(broken, "pix2pix")
    assert not bad.ok and bad.pairs == n - 1 and f"1 of {n}" in bad.message
    (broken / "manifest.csv").unlink()
    assert "manifest.csv" in check_dataset(broken, "pix2pix").message
    assert not check_dataset(tmp_path / "nowhere", "pix2pix").ok


def test_roles_of_every_model():
    roles = {name: model_role(name) for name in REGISTRY}
    assert roles == {"pix2pix": "mask", "cyclegan": "mask", "analogy": "mask", "pix2pixhd": "rgb",
                     "quilt": "rgb", "dcgan": None, "depas": None}


def test_commands_are_what_the_cli_parses(tmp_path):
    parser = build_parser()
    args = parser.parse_args(train_args("pix2pix", tmp_path / "data", tmp_path / "run", (64, 128), 3, 7, "cpu",
                                        ["--option", "ngf=8", "--sample-every", "2"]))
    assert (args.command, args.model, args.data, args.out) == ("train", "pix2pix", tmp_path / "data", tmp_path / "run")
    assert (args.size, args.epochs, args.max_steps, args.device) == ((64, 128), 3, 7, "cpu")
    assert args.option == ["ngf=8"] and args.sample_every == 2 and not args.resume
    args = parser.parse_args(train_args("analogy", tmp_path, tmp_path / "r", None, 1, 0, "auto"))
    assert args.size is None and args.max_steps is None

    args = parser.parse_args(resume_args(tmp_path / "run", "auto", 12))
    assert args.resume and args.out == tmp_path / "run" and args.max_steps == 12 and args.model is None

    generate, evaluate = (parser.parse_args(c) for c in
                          eval_commands(tmp_path / "run", tmp_path / "data", tmp_path / "c.safetensors", "analogy",
                                        "cpu"))
    assert generate.command == "generate" and generate.coarse == [tmp_path / "data" / "coarse"]
    assert generate.mask_model == str(tmp_path / "c.safetensors") and generate.rgb_model == "none"
    assert generate.out == tmp_path / "run" / EVAL_GENERATED
    assert evaluate.command == "eval" and evaluate.real == tmp_path / "data" / "fine"
    assert evaluate.fake == [("analogy", tmp_path / "run" / EVAL_GENERATED / "fine")]
    assert evaluate.out == tmp_path / "run" / EVAL_REPORT


def test_default_run_dir_is_new(tmp_path):
    when = datetime.datetime(2026, 1, 2, 3, 4, 5)
    first = default_run_dir(tmp_path, "pix2pix", when)
    assert first == tmp_path / "pix2pix-20260102-030405"
    first.mkdir()
    assert default_run_dir(tmp_path, "pix2pix", when) == tmp_path / "pix2pix-20260102-030405-2"


def test_read_run_info_of_a_real_run(sample_patches, tmp_path):
    assert read_run_info(tmp_path) is None
    config = make_config({"model": "analogy", "data": str(sample_patches), "size": (64, 128), "epochs": 1,
                          "max_steps": 3, "options": {"windows_per_patch": 8, "max_windows": 500}})
    train(config, tmp_path / "run")
    info = read_run_info(tmp_path / "run")
    assert (info.model, info.step, info.data) == ("analogy", 3, str(sample_patches))
    assert info.checkpoint == tmp_path / "run" / "checkpoints" / "latest.safetensors"


def test_read_eval_report_turns_the_table_around(tmp_path):
    assert read_eval_report(tmp_path) is None
    header = [c for c, _ in CSV_COLUMNS]
    rows = [dict(zip(header, ["analogy", "data", "0.135135", "0.1", "200.783", "0.0589", *["0.5"] * 10, "74",
                              "74"])),
            dict(zip(header, ["pix2pix", "data", "0.2", "0.3", "150", "0.04", *["0.25"] * 10, "70", "74"]))]
    with open(tmp_path / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, header)
        writer.writeheader()
        writer.writerows(rows)
    table = read_eval_report(tmp_path)
    assert table.sets == ["analogy", "pix2pix"] and table.tsne is None
    assert table.metrics[:3] == ["KS", "KL", "FID"] and "Method" not in table.metrics
    fid = table.values[table.metrics.index("FID")]
    assert fid == ["200.8", "150"]
    assert table.values[table.metrics.index("N")] == ["74", "70"]
    (tmp_path / "metrics.csv").write_text("just,some\nother,csv\n")
    with pytest.raises(PriorPathError, match="not a metrics table"):
        read_eval_report(tmp_path)


def test_counters_are_told_apart_from_losses():
    events = [{"type": "step", "step": s, "losses": {"windows": 100.0 * s, "G": 1.0 / s}} for s in (1, 2, 3)]
    losses, counters = split_losses_and_counters(loss_series(events))
    assert list(losses) == ["G"] and list(counters) == ["windows"]
    assert list(counters["windows"][1]) == [100.0, 200.0, 300.0]
    assert counter_label(["windows"]) == "windows collected"
    assert counter_label(["windows", "images"]) == "count"
    assert set(COUNTERS) == {"windows"}  # the analogy model's reservoir size; every other model reports losses


def test_finished_step_only_for_a_run_whose_log_ends_with_end(tmp_path):
    assert finished_step(tmp_path) is None  # no log yet
    log = EventLog(tmp_path / "events.jsonl")
    log.emit("start", 0, 0.0)
    log.emit("cancelled", 3, 1.0)
    log.close()
    assert finished_step(tmp_path) is None  # stopped: Resume has work to do
    log = EventLog(tmp_path / "events.jsonl")
    log.emit("end", 8, 2.0)
    log.close()
    assert finished_step(tmp_path) == 8
