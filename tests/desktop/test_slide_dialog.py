"""File → Export as slide: size and time before Start, a slide OpenSlide reads after, Stop leaves nothing."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import openslide
import pytest

from priorpath_desktop.slide_dialog import SlideDialog
from trainer.inference import Engine

REPO = Path(__file__).resolve().parents[2]
WAIT = 120000  # ms: generous for a busy 2-core machine, never reached when things work


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(device="cpu")


@pytest.fixture
def sketch() -> np.ndarray:
    full = cv2.imread(str(REPO / "resources" / "sample" / "sketches" / "sketch_01.png"), cv2.IMREAD_GRAYSCALE)
    return cv2.resize(full, (128, 64), interpolation=cv2.INTER_NEAREST)


def test_the_dialog_shows_size_and_time_then_writes_a_slide(qtbot, engine, sketch, tmp_path):
    dialog = SlideDialog(lambda: engine, sketch, "my sketch")
    qtbot.addWidget(dialog)
    assert dialog.out_edit.text().endswith("my sketch.tif")
    dialog.scale_spin.setValue(6)
    assert dialog.plan_label.text().startswith("768x384 px, 2 tiles (2 with tissue)")
    qtbot.waitUntil(lambda: "on this machine" in dialog.estimate_label.text(), timeout=WAIT)
    dialog.out_edit.setText(str(tmp_path / "slide.tif"))
    dialog.mpp_spin.setValue(0.5)
    dialog.start()
    assert dialog.is_running() and not dialog.start_button.isEnabled()
    qtbot.waitUntil(lambda: not dialog.is_running(), timeout=WAIT)
    assert dialog.status.text().startswith("done"), dialog.status.text()
    slide = openslide.OpenSlide(str(tmp_path / "slide.tif"))
    assert slide.dimensions == (768, 384) and float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.5)
    assert (tmp_path / "slide.mask.tif").is_file() and (tmp_path / "slide.geojson").is_file()
    assert dialog.open_button.isEnabled()


def test_stop_leaves_no_slide_and_an_empty_sketch_is_refused(qtbot, engine, sketch, tmp_path):
    dialog = SlideDialog(lambda: engine, sketch)
    qtbot.addWidget(dialog)
    dialog.scale_spin.setValue(16)  # 16 tiles: Stop lands long before the end
    dialog.out_edit.setText(str(tmp_path / "slide.tif"))
    dialog.start()
    dialog.stop()
    qtbot.waitUntil(lambda: not dialog.is_running(), timeout=WAIT)
    assert "no slide was written" in dialog.status.text()
    assert list(tmp_path.iterdir()) == []
    empty = SlideDialog(lambda: engine, np.zeros_like(sketch))
    qtbot.addWidget(empty)
    empty.out_edit.setText(str(tmp_path / "e.tif"))
    empty.start()
    assert not empty.is_running() and "empty" in empty.status.text()
