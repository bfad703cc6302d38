"""The main window as a user meets it: defaults, a pen sketch to fine mask and RGB, recovery, files, models."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPointF
from PySide6.QtWidgets import QMessageBox

from priorpath_desktop.document import MaskDocument
from priorpath_desktop.main_window import MainWindow
from priorpath_desktop.messages import open_messages
from priorpath_desktop.preferences import Preferences
from trainer.data.masks import luma

from .test_canvas import pen_stroke

WAIT = 60000  # ms; generous for a busy 2-core machine, never reached when things work
REPO = Path(__file__).resolve().parents[2]


def make_window(qtbot, mask_model=None, rgb_model=None, dataset=None, size=(128, 256)) -> MainWindow:
    prefs = Preferences.load()  # keeps what an earlier window in the test saved
    prefs.canvas_size = size
    prefs.preview_delay_ms = 0
    prefs.save()
    window = MainWindow(mask_model=mask_model, rgb_model=rgb_model, device="cpu", dataset=dataset)
    window.ask_before_discarding = False
    qtbot.addWidget(window)
    window.resize(1200, 800)
    window.show()
    with qtbot.waitSignal(window.generation.engineReady, timeout=WAIT):
        window.start()
    return window


@pytest.fixture
def window(qtbot, engine_models, sample_patches):
    """A window on the small test models (fast) and a prepared real dataset."""
    w = make_window(qtbot, str(engine_models["analogy"]), str(engine_models["pix2pixhd"]), str(sample_patches))
    qtbot.waitUntil(lambda: w.clusters.result() is not None, timeout=WAIT)
    yield w
    w.close()


def pen_sketch(window: MainWindow) -> None:
    """A pen stroke across the middle of the sketch, in widget coordinates of the canvas."""
    canvas = window.canvas
    h, w = window.document.shape
    points = [canvas.widget_pos(x, h / 2) for x in np.linspace(w * 0.2, w * 0.8, 12)]
    assert pen_stroke(canvas, [QPointF(p) for p in points], 0.9)


def test_opens_on_the_bundled_defaults_and_a_pen_sketch_becomes_a_fine_mask_and_an_rgb_tile(qtbot):
    window = make_window(qtbot)  # no models, no dataset named: the shipped defaults and the bundled sample
    described = window.models_in_use
    assert "analogy" in described["mask"] and "mask_default" in described["mask"]
    assert "quilt" in described["rgb"] and "rgb_default" in described["rgb"]
    with qtbot.waitSignal(window.generation.previewShown, timeout=WAIT):
        pen_sketch(window)
    results = window.generation.current_results()
    assert results["coarse"].shape == results["fine"].shape == (128, 256)
    assert set(np.unique(results["fine"])) <= {0, 255} and results["fine"].any()
    assert results["rgb"].shape == (128, 256, 3)
    tissue = results["coarse"] > 0
    assert results["rgb"][tissue].mean() < results["rgb"][~tissue].mean()  # stained tissue is darker than glass
    assert np.array_equal(luma(results["rgb"]) <= 204, results["fine"] > 0)  # the tile is labelled exactly by its fine mask
    qtbot.waitUntil(lambda: window.clusters.result() is not None, timeout=WAIT)
    assert sum(window.clusters.result().counts) >= 20  # real masks of the bundled sample
    about = window.show_about()
    assert "analogy" in about.text() and "quilt" in about.text()
    about.close()
    window.close()


def test_a_fine_mask_opened_for_the_rgb_stage_and_a_stain_style(qtbot, tmp_path, sample_patches):
    """File -> Open fine mask draws its RGB tile with the default quilt model; a style reloads the models."""
    import cv2

    window = make_window(qtbot)
    fine_path = sorted((sample_patches / "fine").glob("*.png"))[1]
    fine = cv2.imread(str(fine_path), cv2.IMREAD_GRAYSCALE)
    with qtbot.waitSignal(window.generation.previewShown, timeout=WAIT):
        window.open_fine(fine_path)
    results = window.generation.current_results()
    assert "coarse" not in results and np.array_equal(results["fine"], fine)
    assert np.array_equal(luma(results["rgb"]) <= 204, fine > 0)
    reference = tmp_path / "style"
    reference.mkdir()
    for p in sorted((sample_patches / "rgb").glob("*.png"))[:2]:
        (reference / p.name).write_bytes(p.read_bytes())
    with qtbot.waitSignal(window.generation.engineReady, timeout=WAIT):
        window.set_style([str(reference)])
    assert "style from 2 reference images" in window.models_in_use["rgb"]
    assert window.no_style_action.isEnabled()
    with qtbot.waitSignal(window.generation.engineReady, timeout=WAIT):
        window.set_style(None)
    assert "style" not in window.models_in_use["rgb"] and not window.no_style_action.isEnabled()
    window.close()


def test_a_crash_leaves_an_autosave_that_the_next_start_recovers(qtbot, window, engine_models, sample_patches):
    with qtbot.waitSignal(window.generation.previewShown, timeout=WAIT):
        pen_sketch(window)
    drawn = np.array(window.document.mask)
    qtbot.waitUntil(window.canvas.autosave_idle, timeout=WAIT)
    window.hide()  # a crash: no closeEvent, so the autosave stays

    again = make_window(qtbot, str(engine_models["analogy"]), "none", str(sample_patches))
    question = [b for b in open_messages() + again.findChildren(QMessageBox) if b.objectName() == "recoveryQuestion"]
    assert question, "no recovery offered"
    assert "autosaved" in question[0].text() and "AutosaveInfo" not in question[0].text()
    question[0].button(QMessageBox.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: np.array_equal(again.document.mask, drawn), timeout=WAIT)
    assert again.document.dirty  # recovered, not yet saved
    again.close()


def test_a_clean_close_leaves_nothing_to_recover(qtbot, window, engine_models):
    pen_sketch(window)
    window.close()
    again = make_window(qtbot, str(engine_models["analogy"]), "none")
    assert not [b for b in again.findChildren(QMessageBox) if b.objectName() == "recoveryQuestion"]
    assert not again.document.mask.any()
    again.close()


def test_a_cluster_member_starts_a_new_sketch_and_undo_brings_the_old_one_back(qtbot, window):
    pen_sketch(window)
    before = np.array(window.document.mask)
    coarse = np.zeros((64, 96), np.uint8)
    coarse[10:50, 20:80] = 255
    with qtbot.waitSignal(window.generation.previewShown, timeout=WAIT):
        window.clusters.sketchRequested.emit(coarse)
    assert np.array_equal(window.document.mask, coarse)
    assert np.array_equal(window.generation.current_results()["coarse"], coarse)
    window.undo_action.trigger()
    assert np.array_equal(window.document.mask, before)


def test_adopting_a_trained_checkpoint_switches_the_generation_model(qtbot, window, engine_models):
    with qtbot.waitSignal(window.generation.modelsChanged, timeout=WAIT) as blocker:
        window.training.adoptRequested.emit("mask", str(engine_models["pix2pix"]))
    assert blocker.args[0]["mask"].startswith("pix2pix")
    # saved at once, not only on a clean close: a crash keeps the choice
    qtbot.waitUntil(lambda: Preferences.load().mask_model == str(engine_models["pix2pix"]), timeout=WAIT)
    assert not window.no_rgb_action.isChecked()


def test_save_open_round_trip_and_a_corrupt_file_gives_a_dialog(qtbot, window, tmp_path):
    pen_sketch(window)
    assert window.windowTitle().startswith("untitled sketch *")
    assert window._save_to(tmp_path / "mine.png")
    assert window.windowTitle().startswith("mine.png —")
    saved = np.array(window.document.mask)
    window.canvas.clear()
    with qtbot.waitSignal(window.generation.previewShown, timeout=WAIT, raising=False):
        window.open_path(tmp_path / "mine.png")
    qtbot.waitUntil(lambda: np.array_equal(window.document.mask, saved), timeout=WAIT)

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    window.open_path(tmp_path / "broken.png")
    qtbot.waitUntil(lambda: bool(open_messages()), timeout=WAIT)
    assert "broken.png" in open_messages()[0].text()
    assert np.array_equal(window.document.mask, saved)  # the sketch is untouched


def test_the_rgb_stage_menu_reflects_the_models_in_use(qtbot, window, engine_models):
    assert not window.no_rgb_action.isChecked()
    with qtbot.waitSignal(window.generation.modelsChanged, timeout=WAIT) as blocker:
        window.no_rgb_action.trigger()  # one click turns the RGB stage off
    assert blocker.args[0]["rgb"] == "none"


def test_brush_size_and_layout_persist_between_sessions(qtbot, window, engine_models):
    window.canvas.set_brush_radius(31)
    window.docks["clusters"].hide()
    window.close()
    assert Preferences.load().brush_radius == 31
    again = make_window(qtbot, str(engine_models["analogy"]), "none")
    assert again.canvas.brush_radius() == 31
    assert not again.docks["clusters"].isVisible()
    again.close()


def test_run_trainer_runs_the_command_line_for_frozen_builds():
    out = subprocess.run([sys.executable, "-m", "priorpath_desktop.app", "--run-trainer", "--version"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("priorpath ")


def test_the_training_panel_starts_on_the_shown_dataset_and_remembers_its_form(qtbot, window, engine_models,
                                                                                sample_patches):
    assert window.training.settings()["dataset"] == str(sample_patches)
    window.training.model_combo.setCurrentText("pix2pix")
    window.close()
    again = make_window(qtbot, str(engine_models["analogy"]), "none")
    assert again.training.settings()["model"] == "pix2pix"
    again.close()


def test_strokes_drawn_while_a_file_loads_are_not_silently_lost(qtbot, window, tmp_path, monkeypatch):
    other = MaskDocument(64, 128)
    other.stamp(10, 10, 5, 255)
    other.save_png(tmp_path / "other.png")
    window.ask_before_discarding = True
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a) or QMessageBox.StandardButton.Cancel)
    window.open_path(tmp_path / "other.png")
    pen_sketch(window)  # before the loaded file arrives (its signal waits for the event loop)
    drawn = np.array(window.document.mask)
    qtbot.waitUntil(lambda: bool(asked), timeout=WAIT)
    assert np.array_equal(window.document.mask, drawn)  # the user chose to keep the strokes


def test_an_unwritable_preferences_file_does_not_break_the_window(qtbot, window, private_config):
    (private_config / "preferences.json").unlink()
    (private_config / "preferences.json").mkdir()  # cannot be replaced by a file
    window._save_prefs()  # logged, not raised
    window.close()
    assert window.isHidden()


def test_a_cluster_or_a_slide_becomes_the_stain_style(qtbot, window):
    """Cluster browser -> Stain style: this cluster / this slide reloads the models with those patches."""
    browser = window.clusters
    browser.open_cluster(0)
    with qtbot.waitSignal(browser.styleRequested, timeout=WAIT) as asked, \
            qtbot.waitSignal(window.generation.engineReady, timeout=WAIT):
        browser.style_cluster_button.click()
    members = browser._result.members(0)
    assert len(asked.args[0]) == len(members) and all(Path(p).is_file() for p in asked.args[0])
    assert f"style from {len(members)} reference images" in window.models_in_use["rgb"]
    qtbot.waitUntil(lambda: browser.members_list.count() > 0, timeout=WAIT)
    browser.members_list.setCurrentRow(0)
    stem = browser.selected_stem()
    with qtbot.waitSignal(browser.styleRequested, timeout=WAIT) as asked, \
            qtbot.waitSignal(window.generation.engineReady, timeout=WAIT):
        browser.style_slide_button.click()
    slide = stem.rsplit("_x", 1)[0]
    assert asked.args[0] and all(Path(p).name.startswith(slide + "_x") for p in asked.args[0])


def test_export_as_slide_opens_on_the_sketch_and_keeps_one_dialog(qtbot, window):
    pen_sketch(window)
    action = next(a for a in window.menuBar().actions()[0].menu().actions() if "slide" in a.text().replace("&", ""))
    action.trigger()
    dialog = window._slide
    assert dialog.isVisible() and np.array_equal(dialog.sketch, window.document.mask)
    assert dialog.out_edit.text().endswith(".tif")
    qtbot.waitUntil(lambda: "on this machine" in dialog.estimate_label.text(), timeout=WAIT)  # the window's engine
    window.slide_dialog()
    assert window._slide is not dialog  # not running: a fresh dialog on the current sketch
