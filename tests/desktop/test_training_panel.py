"""The training and evaluation panel: real training runs of a few steps in a child process, stop and resume,
evaluation, adoption, dataset preparation and the error paths."""
from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication

from priorpath_desktop.messages import open_messages
from priorpath_desktop.trainer_process import error_summary, parse_progress, trainer_command
from priorpath_desktop.training_panel import TrainingPanel
from trainer.config import make_config
from trainer.events import read_events
from trainer.train import train

from ..conftest import SAMPLE

FINAL = ("done", "stopped", "failed")
ANALOGY = ["--option", "windows_per_patch=32", "--option", "max_windows=3000"]
PIX2PIX = ["--option", "ngf=8", "--option", "ndf=8", "--sample-every", "2"]
PATCHES = 12  # a small dataset keeps every child run (and the Inception pass of eval) short


@pytest.fixture(scope="module")
def small_data(sample_patches, tmp_path_factory) -> Path:
    """The first patches of the prepared real H&E sample, as a prepared folder of its own."""
    out = tmp_path_factory.mktemp("panel-data") / "he12"
    with open(sample_patches / "manifest.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)[:PATCHES]
    for kind in ("coarse", "fine", "rgb"):
        (out / kind).mkdir(parents=True)
        for row in rows:
            shutil.copy(sample_patches / kind / f"{row['stem']}.png", out / kind)
    with open(out / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fields)
        writer.writeheader()
        writer.writerows(rows)
    return out


@pytest.fixture
def panel(qtbot):
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.set_child_env({"OMP_NUM_THREADS": "1"})
    panel.timer.setInterval(200)
    panel.show()
    yield panel
    panel.shutdown()  # no child outlives its test


def _messages() -> list[str]:
    return [box.text() for box in open_messages()]


def _close_messages() -> None:
    for box in open_messages():
        box.close()
    QApplication.processEvents()


def _wait_final(qtbot, panel: TrainingPanel, timeout: int = 90_000) -> str:
    qtbot.waitUntil(lambda: panel.state in FINAL and not panel.is_running(), timeout=timeout)
    return panel.state


def _settle_dataset(qtbot, panel: TrainingPanel, folder: Path) -> None:
    panel.set_dataset(folder)
    qtbot.waitUntil(lambda: panel.dataset_hint.text()[:1] in "✓✗", timeout=10_000)


def _log(panel: TrainingPanel) -> str:
    return panel.log_view.toPlainText()


def test_trainer_command_and_output_parsing(monkeypatch):
    assert trainer_command(["train", "--out", "r"]) == [sys.executable, "-m", "trainer.cli", "train", "--out", "r"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert trainer_command(["eval"]) == [sys.executable, "--run-trainer", "eval"]
    assert parse_progress(" 45%|████▌     | 38/84 [00:00<00:00, 66.84patch/s, OS-1-detail.png]") == (38, 84)
    assert parse_progress("INFO: rgb model: none") is None
    tail = ["INFO: loading", "priorpath: error: /d: no manifest.csv", "Traceback? no"]
    assert error_summary(tail, "exit 1") == "/d: no manifest.csv"
    assert error_summary(["priorpath train: error: argument --epochs: bad (see --help)"], "") == \
        "argument --epochs: bad (see --help)"
    assert error_summary(["Traceback (most recent call last):", "ValueError: x"], "exit 1") == "exit 1"


def test_analogy_run_from_the_panel_then_adopt(qtbot, panel, small_data, tmp_path):
    _settle_dataset(qtbot, panel, small_data)
    panel.model_combo.setCurrentText("analogy")
    qtbot.waitUntil(lambda: panel.dataset_hint.text() == f"✓ {PATCHES} patches (coarse + fine)", timeout=10_000)
    panel.size_edit.setText("64x128")
    panel.epochs_spin.setValue(1)
    panel.set_extra_args(ANALOGY)
    run = tmp_path / "analogy-run"
    panel.set_run_dir(run)
    assert not panel.resume_button.isEnabled() and not panel.adopt_button.isEnabled()

    states = []
    panel.runStateChanged.connect(states.append)
    panel.start()
    assert panel.is_running() and not panel.start_button.isEnabled() and panel.stop_button.isEnabled()
    assert _wait_final(qtbot, panel) == "done", _log(panel) + "\n".join(_messages())
    assert states == ["running", "done"]

    events = read_events(run / "events.jsonl")
    assert events[-1]["type"] == "end" and events[-1]["step"] == PATCHES  # one epoch of 12 patches
    assert panel.loss_plot.plotted()["windows"] == len([e for e in events if e["type"] == "step"]) >= 2
    assert panel.progress_bar.value() == panel.progress_bar.maximum() == PATCHES
    assert panel.run_status.text() == f"done: {PATCHES}/{PATCHES} steps"
    assert panel.sample_view.has_image() and panel.sample_view.path.parent == run / "samples"
    checkpoint = run / "checkpoints" / "latest.safetensors"
    assert checkpoint.is_file()
    assert panel.resume_button.isEnabled() and panel.evaluate_button.isEnabled()
    assert panel.adopt_button.isEnabled() and not panel.stop_button.isEnabled()

    with qtbot.waitSignal(panel.adoptRequested, timeout=2000) as adopted:
        panel.adopt_button.click()
    assert adopted.args == ["mask", str(checkpoint)]
    assert _messages() == []


def test_pix2pix_stop_then_resume_to_the_end(qtbot, panel, small_data, tmp_path):
    _settle_dataset(qtbot, panel, small_data)
    panel.model_combo.setCurrentText("pix2pix")
    panel.size_edit.setText("64x128")
    panel.epochs_spin.setValue(100)  # 1200 steps: far more than run before Stop arrives
    panel.set_extra_args(PIX2PIX)
    run = tmp_path / "p2p-run"
    panel.set_run_dir(run)
    panel.start()
    qtbot.waitUntil(lambda: panel.follower is not None
                    and any(e["type"] == "step" for e in panel.follower.events), timeout=60_000)
    panel.stop()
    assert panel.state == "stopping" and not panel.stop_button.isEnabled()
    assert _wait_final(qtbot, panel) == "stopped", _log(panel) + "\n".join(_messages())

    events = read_events(run / "events.jsonl")
    cancelled = [e for e in events if e["type"] == "cancelled"]
    assert len(cancelled) == 1 and not any(e["type"] == "end" for e in events)
    stopped_at = cancelled[0]["step"]
    assert 1 <= stopped_at < 1200
    assert panel.run_status.text() == f"stopped at step {stopped_at} — Resume continues"
    assert panel.resume_button.isEnabled() and panel.max_steps_spin.value() == 0  # the stored config: all epochs

    panel.max_steps_spin.setValue(stopped_at + 3)  # Resume may change when the run ends
    panel.resume()
    assert _wait_final(qtbot, panel) == "done", _log(panel) + "\n".join(_messages())
    events = read_events(run / "events.jsonl")
    kinds = [e["type"] for e in events]
    assert kinds.count("cancelled") == 1 and kinds.count("resume") == 1
    assert events[kinds.index("resume")]["step"] == stopped_at
    assert events[-1]["type"] == "end" and events[-1]["step"] == stopped_at + 3
    assert panel.progress_bar.value() == panel.progress_bar.maximum() == stopped_at + 3
    assert set(panel.loss_plot.plotted()) == {"G_gan", "G_l1", "D_real", "D_fake"}
    assert panel.sample_view.path == run / "samples" / f"step_{stopped_at + 3:07d}.png"
    assert _messages() == []


def _train_in_process(data: Path, run: Path, model: str, options: dict, steps: int) -> Path:
    config = make_config({"model": model, "data": str(data), "size": (64, 128), "epochs": 1, "max_steps": steps,
                          "options": options, "sample_every": 1000, "checkpoint_every": 1000})
    return train(config, run).checkpoint


def test_evaluate_a_finished_run(qtbot, panel, small_data, tmp_path, monkeypatch):
    """generate + eval in child processes, then the metrics table and the t-SNE plot (about 20 s on CPU)."""
    monkeypatch.setenv("PRIORPATH_FEATURE_CACHE", str(tmp_path / "features"))  # never the user's cache
    run = tmp_path / "analogy"
    _train_in_process(small_data, run, "analogy", {"windows_per_patch": 32, "max_windows": 3000}, PATCHES)
    panel.set_run_dir(run)
    assert panel.model_combo.currentText() == "analogy" and panel.dataset_edit.text() == str(small_data)
    assert panel.run_status.text() == f"done: {PATCHES}/{PATCHES} steps"
    assert panel.evaluate_button.isEnabled()
    panel.device_combo.setCurrentText("cpu")

    panel.evaluate()
    assert panel.is_evaluating() and panel.evaluate_button.text() == "Cancel evaluation"
    assert not panel.start_button.isEnabled()
    qtbot.waitUntil(lambda: not panel.is_evaluating(), timeout=180_000)
    assert panel.eval_status.text().startswith("report in"), _log(panel) + "\n".join(_messages())
    assert len(list((run / "eval" / "generated" / "fine").glob("*.png"))) == PATCHES
    assert panel.metrics_table.columnCount() == 1
    assert panel.metrics_table.horizontalHeaderItem(0).text() == "analogy"
    assert float(panel.metric_value("FID")) > 0 and 0 <= float(panel.metric_value("KS")) <= 1
    assert panel.metric_value("N") == str(PATCHES)
    assert panel.tsne_view.has_image() and panel.tsne_view.path == run / "eval" / "report" / "tsne.png"
    assert panel.evaluate_button.text() == "Evaluate" and panel.start_button.isEnabled()

    panel.set_run_dir("")  # another run folder forgets the report ...
    assert panel.metrics_table.rowCount() == 0 and not panel.tsne_view.has_image()
    panel.set_run_dir(run)  # ... and choosing this run again shows it without evaluating
    assert panel.metric_value("N") == str(PATCHES) and panel.tsne_view.has_image()
    assert _messages() == []


def test_rgb_and_noise_runs_adopt_and_evaluate_as_their_role_allows(qtbot, panel, small_data, tmp_path):
    hd = tmp_path / "hd"
    checkpoint = _train_in_process(small_data, hd, "pix2pixhd", {"ngf": 4, "ndf": 4, "n_downsampling": 2,
                                                                 "n_blocks": 1}, 1)
    panel.set_run_dir(hd)
    assert panel.model_combo.currentText() == "pix2pixhd"
    assert not panel.evaluate_button.isEnabled() and "RGB" in panel.evaluate_button.toolTip()
    with qtbot.waitSignal(panel.adoptRequested, timeout=2000) as adopted:
        panel.adopt()
    assert adopted.args == ["rgb", str(checkpoint)]

    noise = tmp_path / "dcgan"
    _train_in_process(small_data, noise, "dcgan", {"ngf": 4, "ndf": 4, "nz": 8}, 1)
    panel.set_run_dir(noise)
    assert not panel.adopt_button.isEnabled() and "no coarse input" in panel.adopt_button.toolTip()
    assert not panel.evaluate_button.isEnabled() and "no coarse input" in panel.evaluate_button.toolTip()
    assert panel.resume_button.isEnabled()


def test_bad_input_shows_a_message_naming_the_problem(qtbot, panel, small_data, tmp_path):
    no_fine = tmp_path / "no-fine"
    shutil.copytree(small_data, no_fine)
    shutil.rmtree(no_fine / "fine")
    _settle_dataset(qtbot, panel, no_fine)
    assert panel.dataset_hint.text().startswith("✗") and "fine/" in panel.dataset_hint.text()
    panel.start()
    assert not panel.is_running()
    assert any(str(no_fine) in m and "fine/" in m for m in _messages())
    _close_messages()

    _settle_dataset(qtbot, panel, small_data)
    panel.size_edit.setText("big")
    panel.start()
    assert not panel.is_running() and any("HxW" in m for m in _messages())
    _close_messages()

    corrupt = tmp_path / "corrupt-run"
    (corrupt / "checkpoints").mkdir(parents=True)
    (corrupt / "checkpoints" / "latest.safetensors").write_bytes(b"\x00" * 64)
    panel.set_run_dir(corrupt)
    assert any("latest.safetensors" in m for m in _messages())
    assert not panel.resume_button.isEnabled() and not panel.adopt_button.isEnabled()
    _close_messages()


def test_a_failing_training_child_shows_its_error(qtbot, panel, small_data, tmp_path):
    _settle_dataset(qtbot, panel, small_data)
    panel.set_extra_args(["--batch-size", "two"])  # the child's own argument check refuses it
    panel.set_run_dir(tmp_path / "bad-run")
    panel.start()
    assert _wait_final(qtbot, panel) == "failed"
    messages = _messages()
    assert len(messages) == 1 and messages[0].startswith("argument --batch-size: invalid int value: 'two'")
    assert "Last output" in messages[0]
    assert "failed" in panel.run_status.text() and panel.start_button.isEnabled()
    _close_messages()


def test_shutdown_stops_a_run_cleanly_with_a_checkpoint(qtbot, panel, small_data, tmp_path):
    _settle_dataset(qtbot, panel, small_data)
    panel.size_edit.setText("64x128")
    panel.set_extra_args(PIX2PIX)
    run = tmp_path / "closing"
    panel.set_run_dir(run)
    panel.start()
    qtbot.waitUntil(lambda: any(e["type"] == "step" for e in panel.follower.events), timeout=60_000)
    panel.shutdown()  # what closing the window does: blocks until the child has saved and exited
    assert not panel.is_running()
    events = read_events(run / "events.jsonl")
    assert events[-1]["type"] == "cancelled" and (run / "checkpoints" / "latest.safetensors").is_file()
    qtbot.waitUntil(lambda: panel.state == "stopped", timeout=5000)
    assert _messages() == []


def test_prepare_from_slides_sets_the_dataset(qtbot, panel, tmp_path):
    dialog = panel.open_prepare_dialog()
    assert dialog.isVisible()
    dialog.set_sources([SAMPLE / "he" / "Rat_Kidney_HE.jpg"])
    dialog.patch.setText("256x512")
    out = tmp_path / "prepared"
    dialog.set_output(out)
    reported = []
    dialog.process.progress.connect(lambda done, total: reported.append((done, total)))
    with qtbot.waitSignal(dialog.prepared, timeout=60_000) as prepared:
        dialog.run()
        assert dialog.is_running() and not dialog.run_button.isEnabled()
    assert prepared.args == [str(out)]
    assert not dialog.isVisible() and "patches kept" in dialog.status.text()
    kept = len(list((out / "fine").glob("*.png")))
    # the child's progress bar reached every patch cut (kept or dropped for too much air)
    total = reported[-1][1]
    assert reported[-1] == (total, total) and total >= kept
    assert dialog.progress.value() == dialog.progress.maximum() == total
    assert kept > 0 and (out / "manifest.csv").is_file()
    assert panel.dataset_edit.text() == str(out)
    qtbot.waitUntil(lambda: panel.dataset_hint.text() == f"✓ {kept} patches (coarse + fine)", timeout=10_000)

    dialog = panel.open_prepare_dialog()  # bad input: a message, no child process
    dialog.set_sources([])
    dialog.run()
    assert not dialog.is_running() and any("at least one" in m for m in _messages())
    _close_messages()
    dialog.reject()
