"""The main window without models: its smallest layout, where file dialogs start, what opening a file says and
names, and the training run it re-attaches after a crash."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtWidgets import QFileDialog

from priorpath_desktop import folders as folder_memory
from priorpath_desktop.folders import MASKS, RESULTS, FolderMemory, default_folder
from priorpath_desktop.main_window import MainWindow
from priorpath_desktop.messages import open_messages
from priorpath_desktop.preferences import Preferences

from ..trainer.test_image_size import CLAIM, bomb_png
from ..trainer.test_mask_files import soft_mask

WAIT = 30000  # ms


def new_window(qtbot) -> MainWindow:
    window = MainWindow(device="cpu")  # not started: no models, no clustering
    window.ask_before_discarding = False
    qtbot.addWidget(window)
    window.show()
    return window


@pytest.fixture
def window(qtbot):
    yield new_window(qtbot)
    for box in open_messages():
        box.close()


class FakeDialogs:
    """Stands in for the file dialogs: records where each one starts and answers with the next path given."""

    def __init__(self, monkeypatch):
        self.starts: list[str] = []
        self.answers: list[str] = []
        for name in ("getOpenFileName", "getSaveFileName"):
            monkeypatch.setattr(QFileDialog, name, staticmethod(self._file))
        monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(self._folder))

    def _file(self, parent, caption, start, *rest):
        self.starts.append(start)
        return (self.answers.pop(0) if self.answers else ""), ""

    def _folder(self, parent, caption, start, *rest):
        self.starts.append(start)
        return self.answers.pop(0) if self.answers else ""


def write_mask(path: Path, mask: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), mask)
    return path


def test_at_its_smallest_the_window_leaves_the_canvas_most_of_the_width(qtbot, window):
    window.resize(window.minimumSizeHint())
    qtbot.waitUntil(lambda: window.size() == window.minimumSizeHint(), timeout=5000)
    assert window.width() <= 800
    assert window.canvas.width() >= 0.4 * window.width(), (window.canvas.width(), window.width())
    assert window.canvas.height() >= 200
    for name in ("tools", "clusters"):  # narrower, scrolling, but still there
        assert window.docks[name].isVisible() and window.docks[name].width() >= 140


def test_open_dialogs_start_where_that_kind_of_file_was_last_chosen(qtbot, window, tmp_path, monkeypatch):
    dialogs = FakeDialogs(monkeypatch)
    mask = write_mask(tmp_path / "masks" / "m.png", np.where(soft_mask() > 127, 255, 0).astype(np.uint8))
    image = write_mask(tmp_path / "images" / "he.png", np.full((32, 64, 3), 200, np.uint8))
    dialogs.answers = [str(mask)]
    window.open_dialog()
    assert dialogs.starts[-1] == str(default_folder())  # nothing remembered yet
    qtbot.waitUntil(lambda: window.document.path == mask, timeout=WAIT)
    dialogs.answers = [str(image)]
    window.underlay_dialog()
    assert dialogs.starts[-1] == str(default_folder())  # another purpose, its own folder
    window.open_dialog()
    assert dialogs.starts[-1] == str(mask.parent)
    window.underlay_dialog()
    assert dialogs.starts[-1] == str(image.parent)

    qtbot.waitUntil(lambda: Preferences.load().folders.get(MASKS) == str(mask.parent), timeout=5000)
    again = new_window(qtbot)  # the next session
    again.open_dialog()
    assert dialogs.starts[-1] == str(mask.parent)


def test_save_dialogs_never_start_in_a_folder_that_cannot_be_written(qtbot, window, tmp_path, monkeypatch):
    readonly = tmp_path / "readonly"
    mask = write_mask(readonly / "input.png", np.where(soft_mask() > 127, 255, 0).astype(np.uint8))
    window.open_path(mask)
    qtbot.waitUntil(lambda: window.document.path == mask, timeout=WAIT)
    real_access = folder_memory.os.access
    # a read-only folder (chmod does not stop root, who runs these tests in containers)
    monkeypatch.setattr(folder_memory.os, "access", lambda path, mode: Path(path) != readonly and real_access(path, mode))
    dialogs = FakeDialogs(monkeypatch)
    window.save_as()
    assert dialogs.starts[-1] == str(default_folder() / "input.png")

    writable = tmp_path / "writable"
    writable.mkdir()
    window.folders.remember(RESULTS, writable)
    assert window.generation.folders.save_folder(RESULTS) == str(writable)
    window.folders.remember(RESULTS, readonly)
    assert window.generation.folders.save_folder(RESULTS) == str(default_folder())


def test_folder_memory_keeps_folders_and_drops_what_is_gone(tmp_path):
    prefs = Preferences()
    changes = []
    memory = FolderMemory(prefs, lambda: changes.append(1))
    memory.remember("masks", tmp_path / "a.png")  # a file: its folder
    assert memory.open_folder("masks") == str(tmp_path) and changes == [1]
    memory.remember("masks", tmp_path / "a.png")
    assert changes == [1]  # nothing changed, nothing to save
    prefs.folders["masks"] = str(tmp_path / "gone")
    assert memory.open_folder("masks") == str(default_folder())
    path = tmp_path / "preferences.json"
    prefs.folders = {"masks": str(tmp_path)}
    prefs.last_run = str(tmp_path / "run")
    prefs.save(path)
    loaded = Preferences.load(path)
    assert loaded.folders == {"masks": str(tmp_path)} and loaded.last_run == str(tmp_path / "run")
    path.write_text(json.dumps({"folders": {"masks": 3, "x": "/y"}, "last_run": 5}))
    loaded = Preferences.load(path)
    assert loaded.folders == {"x": "/y"} and loaded.last_run is None  # bad entries dropped


def test_an_opened_sketch_names_the_saved_results_and_a_grey_one_is_noticed(qtbot, window, tmp_path):
    grey = write_mask(tmp_path / "liver_03.png", soft_mask())
    window.open_path(grey)
    qtbot.waitUntil(lambda: window.document.path == grey, timeout=WAIT)
    assert window.generation.sketch_name() == "liver_03"
    message = window.statusBar().currentMessage()
    assert message.startswith("liver_03.png: not black and white") and "thresholded at 127" in message

    labelme = tmp_path / "kidney.json"
    labelme.write_text(json.dumps({"imageHeight": 32, "imageWidth": 64, "shapes": [
        {"label": "tissue", "shape_type": "rectangle", "points": [[2, 2], [30, 20]]}]}))
    window.open_path(labelme)
    qtbot.waitUntil(lambda: window.document.path is None, timeout=WAIT)  # an import is saved as a new file
    assert window.document.mask[2:20, 2:30].all() and window.generation.sketch_name() == "kidney"
    assert window.statusBar().currentMessage() == f"opened {labelme}"


def test_a_decompression_bomb_is_one_clear_message(qtbot, window, tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png())
    window.open_path(bomb)
    qtbot.waitUntil(lambda: bool(open_messages()), timeout=WAIT)
    text = open_messages()[0].text()
    assert str(bomb) in text and CLAIM in text and "Assertion" not in text
    open_messages()[0].close()
    dialogs = FakeDialogs(monkeypatch)
    dialogs.answers = [str(bomb)]
    window.underlay_dialog()
    qtbot.waitUntil(lambda: bool(open_messages()), timeout=WAIT)
    assert CLAIM in open_messages()[0].text()


def test_the_last_run_is_reattached_after_a_crash(qtbot, tmp_path, sample_patches):
    from trainer.config import make_config
    from trainer.train import train

    run = tmp_path / "analogy-earlier"
    train(make_config({"model": "analogy", "data": str(sample_patches), "size": (64, 128), "epochs": 1,
                       "max_steps": 3, "options": {"windows_per_patch": 32, "max_windows": 3000},
                       "sample_every": 1000, "checkpoint_every": 1000}), run)
    first = new_window(qtbot)
    first.training.set_run_dir(run)
    qtbot.waitUntil(lambda: Preferences.load().last_run == str(run), timeout=5000)  # written at once
    first.hide()  # a crash: no closeEvent, so the training form of this session is never saved

    second = new_window(qtbot)
    assert second.training.run_dir() is None and not second.training.resume_button.isEnabled()
    second.restore_training()
    assert second.training.run_dir() == run and second.training.resume_button.isEnabled()

    shutil.rmtree(run)  # a run folder deleted since is not re-attached
    third = new_window(qtbot)
    third.restore_training()
    assert third.training.run_dir() is None
