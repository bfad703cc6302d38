"""A class sketch in the main window: File -> New class sketch, drawing, save, open, crash recovery."""
from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QMessageBox

from priorpath_desktop.messages import open_messages
from trainer.data.classes import HE3, read_class_table

from .test_canvas import pen_stroke
from .test_main_window import WAIT, make_window


def test_a_class_sketch_is_drawn_saved_reopened_and_recovered(qtbot, tmp_path):
    window = make_window(qtbot)
    dialog = window.new_class_sketch()
    assert dialog.table() == HE3  # the first offer
    dialog.height_spin.setValue(96)
    dialog.width_spin.setValue(160)
    dialog.accept()
    doc = window.document
    assert doc.classes == HE3 and doc.shape == (96, 160) and "[he3]" in window.windowTitle()
    assert [b.text() for b in window.tools.classes.buttons.values()] == ["1  stroma", "2  nuclei"]
    canvas = window.canvas
    with qtbot.waitSignal(window.generation.previewShown, timeout=WAIT):
        pen_stroke(canvas, [canvas.widget_pos(x, 48) for x in np.linspace(20, 140, 10)], 1.0)
    canvas.set_current_class(2)
    with qtbot.waitSignal(window.generation.previewShown, timeout=WAIT):
        pen_stroke(canvas, [canvas.widget_pos(x, 48) for x in np.linspace(60, 100, 6)], 0.3)
    assert set(np.unique(doc.labels)) == {0, 1, 2}
    results = window.generation.current_results()  # generation gets the label map, drawn by the he3 models
    assert np.array_equal(results["coarse"], doc.labels) and set(np.unique(results["fine"])) <= {0, 1, 2}
    assert results["rgb"].shape == (96, 160, 3) and "rgb_he3" in window.generation.models_label.text()
    drawn = doc.labels.copy()

    assert window._save_to(tmp_path / "three.png")
    assert read_class_table(tmp_path / "classes.json") == HE3 and not window.document.dirty
    window.canvas.clear()
    window.open_path(tmp_path / "three.png")
    qtbot.waitUntil(lambda: window.document is not doc, timeout=WAIT)
    assert window.document.classes == HE3 and np.array_equal(window.document.labels, drawn)

    canvas.set_current_class(2)
    pen_stroke(canvas, [canvas.widget_pos(x, 20) for x in np.linspace(20, 60, 6)], 1.0)
    crashed = window.document.labels.copy()
    qtbot.waitUntil(canvas.autosave_idle, timeout=WAIT)
    window.hide()  # a crash: no closeEvent, so the autosave stays
    again = make_window(qtbot)
    question = [b for b in open_messages() + again.findChildren(QMessageBox) if b.objectName() == "recoveryQuestion"]
    assert question and "classes he3" in question[0].text()
    question[0].button(QMessageBox.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: again.document.classes == HE3, timeout=WAIT)
    assert np.array_equal(again.document.labels, crashed) and again.document.dirty
    assert [b.text() for b in again.tools.classes.buttons.values()] == ["1  stroma", "2  nuclei"]
    again.close()
