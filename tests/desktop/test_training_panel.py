"""The training and evaluation panel: real training runs of a few steps in a child process, stop and resume,
evaluation, adoption, dataset preparation and the error paths."""
from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QWidget

from priorpath_desktop.messages import open_messages
from priorpath_desktop.plots import LossPlot
from priorpath_desktop.trainer_process import error_summary, parse_progress, trainer_command
from priorpath_desktop.training_panel import (DEFAULT_EPOCHS, WAITING_FOR_SAMPLE, WAITING_FOR_STEP, TrainingPanel,
                                              runs_root)
from trainer.config import make_config
from trainer.events import read_events
from trainer.train import train

from ..conftest import SAMPLE
from ..trainer.test_step_time import write_run

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
    panel.resume()  # a finished run: nothing to continue, and the panel says how to go on
    assert not panel.is_running() and f"finished at step {PATCHES}" in panel.run_status.text()

    with qtbot.waitSignal(panel.adoptRequested, timeout=2000) as adopted:
        panel.adopt_button.click()
    assert adopted.args == ["mask", str(checkpoint)]
    assert _messages() == []

    # Start again on the finished run: a new run in a new folder, the finished one is left as it was
    finished_events = (run / "events.jsonl").read_bytes()
    panel.start()
    assert panel.is_running() and _messages() == []
    new_run = panel.run_dir()
    assert new_run != run and new_run.parent == runs_root() and new_run.name.startswith("analogy-")
    status = panel.run_status.text()
    assert f"new run in {new_run}" in status and "Resume continues the previous one" in status and str(run) in status
    assert panel.run_info is None and panel.loss_plot.plotted() == {}  # the old run's curves are not this run's
    assert _wait_final(qtbot, panel) == "done", _log(panel) + "\n".join(_messages())
    assert (new_run / "checkpoints" / "latest.safetensors").is_file()
    assert (run / "events.jsonl").read_bytes() == finished_events and checkpoint.is_file()
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
    panel.resize(900, 260)  # a low dock: the form scrolls
    scroll = panel.form_scroll.verticalScrollBar()
    qtbot.waitUntil(lambda: scroll.maximum() > 0, timeout=5000)
    scroll.setValue(scroll.maximum() // 2)
    where = {b: b.mapTo(panel, QPoint(0, 0)) for b in (panel.start_button, panel.stop_button, panel.resume_button)}
    qtbot.mouseClick(panel.resume_button, Qt.MouseButton.LeftButton)  # Resume disables itself while it has focus
    assert panel.is_running()
    QApplication.processEvents()
    assert scroll.value() == scroll.maximum() // 2
    assert {b: b.mapTo(panel, QPoint(0, 0)) for b in where} == where
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


def _steps(*rows: dict) -> list[dict]:
    return [{"type": "step", "step": i + 1, "seconds": 0.1 * i, "losses": losses} for i, losses in enumerate(rows)]


def test_counters_are_not_plotted_as_losses(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.show()  # a hidden plot draws only when shown (next test)
    plot.set_events(_steps({"windows": 1000.0}, {"windows": 2000.0}, {"windows": 2000.0}))  # the analogy model
    assert [ax.get_ylabel() for ax in plot.figure.axes] == ["windows collected"]
    assert plot.plotted() == {"windows": 3}

    plot.smooth.setChecked(True)  # a mix: losses on a loss axis, the counter on its own, never smoothed
    plot.set_events(_steps({"G": 2.0, "windows": 10.0}, {"G": 1.0, "windows": 30.0}))
    assert [ax.get_ylabel() for ax in plot.figure.axes] == ["loss", "windows collected"]
    loss_ax, count_ax = plot.figure.axes
    assert [line.get_label() for line in loss_ax.get_lines()] == ["G"]
    assert list(count_ax.get_lines()[0].get_ydata()) == [10.0, 30.0]
    assert list(loss_ax.get_lines()[0].get_ydata()) == [2.0, 1.5]

    plot.clear()
    assert [ax.get_ylabel() for ax in plot.figure.axes] == ["loss"] and plot.plotted() == {}


def test_a_hidden_plot_draws_when_it_is_shown(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.set_events(_steps({"G": 2.0}, {"G": 1.0}))
    assert not plot.figure.axes[0].get_lines()  # not drawn while nobody can see it
    plot.show()
    assert [line.get_label() for line in plot.figure.axes[0].get_lines()] == ["G"]


def _wheel(widget: QWidget, steps: int = -2) -> None:
    centre = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(0, 0), QPoint(0, 120 * steps),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_the_wheel_scrolls_the_form_and_changes_only_a_focused_box(qtbot, panel):
    panel.resize(900, 260)  # a low dock: the form scrolls
    scroll = panel.form_scroll.verticalScrollBar()
    qtbot.waitUntil(lambda: scroll.maximum() > 0, timeout=5000)
    model = panel.model_combo.currentText()
    assert not panel.epochs_spin.hasFocus()
    _wheel(panel.epochs_spin)
    _wheel(panel.model_combo)
    assert panel.epochs_spin.value() == 100 and panel.model_combo.currentText() == model
    assert scroll.value() > 0  # the form scrolled instead

    panel.activateWindow()
    panel.epochs_spin.setFocus()
    qtbot.waitUntil(panel.epochs_spin.hasFocus, timeout=5000)
    _wheel(panel.epochs_spin, -2)  # a box the user clicked into still takes the wheel
    assert panel.epochs_spin.value() == 98

    dialog = panel.open_prepare_dialog()  # the prepare dialog's boxes are guarded the same way
    stain = dialog.stain.currentText()
    _wheel(dialog.stain)
    assert dialog.stain.currentText() == stain
    dialog.reject()


def test_run_controls_stay_on_top_and_long_paths_elide(qtbot, panel, tmp_path):
    for button in (panel.start_button, panel.stop_button, panel.resume_button, panel.progress_bar):
        assert not panel.form_scroll.isAncestorOf(button)  # scrolling the form never moves them
    assert panel.form_scroll.horizontalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAlwaysOff
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 12)
    panel.resize(900, 400)
    _settle_dataset(qtbot, panel, deep)  # "✗ <deep>: no such folder"
    panel.eval_status.setText(f"report in {deep / 'eval' / 'report'}")
    panel.run_status.setText(f"new run in {deep}; Resume continues the previous one")
    form = panel.form_scroll.widget()
    qtbot.waitUntil(lambda: form.width() <= panel.form_scroll.viewport().width(), timeout=5000)
    assert panel.form_scroll.width() < panel.width() // 2  # the plots take the rest
    for label in (panel.dataset_hint, panel.eval_status, panel.run_status):
        assert str(deep) in label.toolTip() and str(deep) in label.text()  # the whole path, on hover
        assert label.width() <= panel.width()
    assert panel.dataset_edit.toolTip() == str(deep)


def test_default_dataset_and_settings_between_sessions(qtbot, panel, small_data, tmp_path):
    other = tmp_path / "other"
    panel.set_default_dataset(small_data)  # nothing chosen yet: the sample becomes the dataset
    assert panel.dataset_edit.text() == str(small_data)
    panel.set_default_dataset(other)  # never replaces a dataset already set
    assert panel.dataset_edit.text() == str(small_data)

    panel.model_combo.setCurrentText("analogy")
    panel.size_edit.setText("64x128")
    panel.epochs_spin.setValue(7)
    panel.device_combo.setCurrentText("cpu")
    panel.set_run_dir(tmp_path / "next-run")
    saved = panel.settings()
    assert saved == {"dataset": str(small_data), "run_dir": str(tmp_path / "next-run"), "model": "analogy",
                     "size": "64x128", "epochs": 7, "device": "cpu"}

    again = TrainingPanel()  # the next session
    qtbot.addWidget(again)
    again.apply_settings({k: str(v) for k, v in saved.items()})  # QSettings may hand back strings
    assert again.settings() == saved
    qtbot.waitUntil(lambda: again.dataset_hint.text() == f"✓ {PATCHES} patches (coarse + fine)", timeout=10_000)
    again.set_default_dataset(other)  # the main window offers the sample after restoring: it is ignored
    assert again.dataset_edit.text() == str(small_data)

    fresh = TrainingPanel()
    qtbot.addWidget(fresh)
    defaults = fresh.settings()
    fresh.apply_settings({"model": "no-such-model", "device": "tpu", "epochs": "many"})  # stale or foreign values
    assert fresh.settings() == defaults and _messages() == []


def test_a_short_run_shows_samples_early_and_the_plot_waits_in_words(qtbot, panel, small_data, tmp_path):
    _settle_dataset(qtbot, panel, small_data)
    panel.model_combo.setCurrentText("pix2pix")
    panel.size_edit.setText("64x128")
    panel.epochs_spin.setValue(2)  # 24 steps: fewer than the trainer's 500 between samples
    panel.set_extra_args(["--option", "ngf=8", "--option", "ndf=8"])
    run = tmp_path / "short-run"
    panel.set_run_dir(run)
    assert panel.loss_plot.placeholder_shown() == "no losses yet"
    attached = []
    panel.runFolderChanged.connect(attached.append)
    panel.start()
    assert attached == [str(run)]  # the main window keeps it, to re-attach after a restart
    assert panel.loss_plot.placeholder_shown() == WAITING_FOR_STEP and not panel.loss_plot.figure.axes[0].axison
    assert panel.sample_view.text() == WAITING_FOR_SAMPLE
    assert "--sample-every 2" in _log(panel)  # a tenth of the run
    assert _wait_final(qtbot, panel) == "done", _log(panel) + "\n".join(_messages())
    samples = [e["step"] for e in read_events(run / "events.jsonl") if e["type"] == "sample"]
    assert samples[0] == 2 and len(samples) >= 10  # written during the run, not only at its end
    assert panel.sample_view.has_image() and panel.loss_plot.placeholder_shown() is None


def test_the_estimate_before_start_uses_an_earlier_runs_step_time(qtbot, panel, small_data):
    write_run(runs_root() / "pix2pix-earlier", size=(64, 128), seconds_per_step=0.5)
    panel.read_step_times()
    _settle_dataset(qtbot, panel, small_data)
    panel.model_combo.setCurrentText("pix2pix")
    panel.device_combo.setCurrentText("cpu")
    panel.size_edit.setText("64x128")
    panel.epochs_spin.setValue(2)
    qtbot.waitUntil(lambda: "measured in pix2pix-earlier" in panel.estimate_label.text(), timeout=10_000)
    assert panel.estimate_label.text().startswith(f"Estimate: about 0:12 for {2 * PATCHES} steps (0.5 s a step")
    panel.max_steps_spin.setValue(10)
    assert panel.estimate_label.text().startswith("Estimate: about 0:05 for 10 steps")
    panel.size_edit.setText("128x256")  # four times the pixels, scaled
    assert "2 s a step" in panel.estimate_label.text() and "scaled" in panel.estimate_label.text()


def test_without_an_earlier_run_the_estimate_is_a_calibrated_guess(qtbot, panel, small_data):
    _settle_dataset(qtbot, panel, small_data)
    panel.model_combo.setCurrentText("pix2pix")
    panel.device_combo.setCurrentText("cpu")
    panel.size_edit.setText("")  # the patches' own size, read from the dataset
    qtbot.waitUntil(lambda: "guess from a quick speed test" in panel.estimate_label.text(), timeout=20_000)
    assert panel.patch_size == (256, 512) and panel.cpu_kernel_seconds > 0
    assert f"for {DEFAULT_EPOCHS * PATCHES:,} steps" in panel.estimate_label.text()
    panel.model_combo.setCurrentText("analogy")  # no reference for it: said so, no number made up
    assert panel.estimate_label.text().startswith("Estimate: none yet for analogy on cpu")
