"""Drawing classes on the canvas: keys 1-9, the palette in the tools dock, class colours, autosave and recovery."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QColor, QPointingDevice
from PySide6.QtWidgets import QToolButton

from priorpath_desktop import canvas as canvas_module
from priorpath_desktop.autosave import Autosaver
from priorpath_desktop.canvas import CanvasView
from priorpath_desktop.class_sketch import ClassSketchDialog
from priorpath_desktop.document import MaskDocument
from priorpath_desktop.tool_panel import ToolPanel
from trainer.data.classes import BINARY, HE3, encode_label_png, table_from_names

from .test_autosave import drag
from .test_canvas import RIGHT, at, click, mouse, mouse_stroke, pen_stroke

STROMA, NUCLEI = 1, 2


@pytest.fixture
def canvas(qtbot):
    view = CanvasView(document=MaskDocument(128, 256, classes=HE3))
    qtbot.addWidget(view)
    view.resize(528, 272)  # the map at 2x
    view.show()
    qtbot.waitExposed(view)
    return view


def test_keys_1_to_9_select_the_classes_the_table_has(canvas, qtbot):
    seen = []
    canvas.classChanged.connect(seen.append)
    assert canvas.current_class() == STROMA
    qtbot.keyClick(canvas, Qt.Key.Key_2)
    assert canvas.current_class() == NUCLEI
    qtbot.keyClick(canvas, Qt.Key.Key_3)  # he3 has no class 3
    qtbot.keyClick(canvas, Qt.Key.Key_9)
    assert canvas.current_class() == NUCLEI
    qtbot.keyClick(canvas, Qt.Key.Key_1)
    qtbot.keyClick(canvas, Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)  # not a class key
    assert seen == [NUCLEI, STROMA] and canvas.current_class() == STROMA
    nine = table_from_names([f"c{i}" for i in range(1, 10)])
    canvas.set_document(MaskDocument(64, 64, classes=nine))
    qtbot.keyClick(canvas, Qt.Key.Key_9)
    assert canvas.current_class() == 9
    canvas.set_document(MaskDocument(64, 64))  # binary: class 9 is gone, tissue is drawn again
    assert canvas.current_class() == 1
    qtbot.keyClick(canvas, Qt.Key.Key_2)
    assert canvas.current_class() == 1


def test_brush_fill_and_lasso_paint_the_current_class_and_erasing_paints_air(canvas, qtbot):
    doc = canvas.document()
    canvas.set_brush_radius(6)
    mouse_stroke(canvas, [at(canvas, 20, 20), at(canvas, 120, 20)])
    assert doc.labels[20, 70] == STROMA
    qtbot.keyClick(canvas, Qt.Key.Key_2)
    mouse_stroke(canvas, [at(canvas, 20, 60), at(canvas, 120, 60)])
    assert doc.labels[60, 70] == NUCLEI
    mouse_stroke(canvas, [at(canvas, 70, 10), at(canvas, 70, 70)], RIGHT)  # right button: air
    assert doc.labels[20, 70] == doc.labels[60, 70] == 0 and doc.labels[60, 40] == NUCLEI
    assert pen_stroke(canvas, [at(canvas, 40, 55), at(canvas, 40, 65)], 1.0, QPointingDevice.PointerType.Eraser)
    assert doc.labels[60, 40] == 0  # the pen's eraser end
    qtbot.keyClick(canvas, Qt.Key.Key_E)
    mouse_stroke(canvas, [at(canvas, 100, 20), at(canvas, 110, 20)])
    assert doc.labels[20, 105] == 0
    qtbot.keyClick(canvas, Qt.Key.Key_1)
    qtbot.keyClick(canvas, Qt.Key.Key_L)
    for x, y in [(150, 10), (240, 10), (240, 100), (150, 100)]:
        click(canvas, at(canvas, x, y))
    qtbot.keyClick(canvas, Qt.Key.Key_Return)
    assert doc.labels[50, 200] == STROMA
    qtbot.keyClick(canvas, Qt.Key.Key_2)
    qtbot.keyClick(canvas, Qt.Key.Key_F)
    click(canvas, at(canvas, 200, 50))  # the stroma square becomes nuclei
    assert doc.labels[50, 200] == NUCLEI and doc.labels[10, 150] == NUCLEI and doc.labels[110, 200] == 0
    before = doc.labels.copy()
    canvas.undo()
    canvas.redo()
    assert np.array_equal(doc.labels, before)


def test_the_canvas_draws_each_class_in_its_colour(canvas):
    doc = canvas.document()
    doc.fill_polygon([(0, 0), (128, 0), (128, 128), (0, 128)], STROMA)
    doc.fill_polygon([(128, 0), (256, 0), (256, 128), (128, 128)], NUCLEI)
    shot = canvas.grab().toImage()
    stroma, nuclei = (shot.pixelColor(at(canvas, x, 64).toPoint()) for x in (60, 200))
    alpha = 170 / 255  # see-through over the white paper
    for seen, colour in ((stroma, HE3.classes[1].colour), (nuclei, HE3.classes[2].colour)):
        expected = [round(c * alpha + 255 * (1 - alpha)) for c in colour]
        assert max(abs(a - b) for a, b in zip(seen.getRgb()[:3], expected)) <= 2, (seen.getRgb(), expected)
    doc.clear()
    assert canvas.grab().toImage().pixelColor(at(canvas, 60, 64).toPoint()) == QColor(255, 255, 255)


def test_the_palette_shows_the_classes_and_follows_the_canvas(canvas, qtbot):
    panel = ToolPanel(canvas)
    qtbot.addWidget(panel)
    palette = panel.classes
    assert [b.text() for b in palette.buttons.values()] == ["1  stroma", "2  nuclei"]
    assert palette.buttons[STROMA].isChecked() and palette.buttons[STROMA].font().bold()
    assert "air" in palette.air_label.text()
    palette.buttons[NUCLEI].click()
    assert canvas.current_class() == NUCLEI and not palette.buttons[STROMA].font().bold()
    qtbot.keyClick(canvas, Qt.Key.Key_1)
    assert palette.buttons[STROMA].isChecked() and not palette.buttons[NUCLEI].isChecked()
    icon = palette.buttons[NUCLEI].icon().pixmap(16, 16).toImage()
    assert icon.pixelColor(8, 8) == QColor(*HE3.classes[2].colour)
    canvas.set_document(MaskDocument(32, 32))
    assert [b.text() for b in palette.buttons.values()] == ["1  tissue"]
    assert palette.buttons[1].isChecked()
    shown = [b.text() for b in palette.findChildren(QToolButton)]  # the old swatches are gone at once
    assert shown == ["1  tissue"]


def test_autosave_and_recovery_keep_the_classes(canvas, tmp_path):
    saver = Autosaver(tmp_path)
    canvas.set_autosaver(saver)
    canvas.set_brush_radius(5)
    drag(canvas, [(20, 20), (100, 20)])
    canvas.set_current_class(NUCLEI)
    drag(canvas, [(20, 60), (100, 60)])
    expected = canvas.document().labels.copy()
    after_crash = Autosaver(tmp_path)
    info = after_crash.recoverable()
    assert info.classes == "he3" and "classes he3" in info.describe()
    doc = after_crash.recover()
    assert doc.classes == HE3 and np.array_equal(doc.labels, expected) and doc.dirty


def test_large_class_maps_autosave_in_the_background(canvas, tmp_path, qtbot, monkeypatch):
    monkeypatch.setattr(canvas_module, "SYNC_AUTOSAVE_PIXELS", 0)
    saver = Autosaver(tmp_path)
    canvas.set_autosaver(saver)
    canvas.set_current_class(NUCLEI)
    drag(canvas, [(10, 30), (150, 30)])
    qtbot.waitUntil(canvas.autosave_idle, timeout=10000)
    doc = Autosaver(tmp_path).recover()
    assert doc.classes == HE3 and np.array_equal(doc.labels, canvas.document().labels)


def test_recovery_trusts_the_png_when_the_description_is_older(tmp_path):
    """A crash between the PNG and the JSON write: the JSON names a binary sketch, the PNG holds classes."""
    saver = Autosaver(tmp_path)
    saver.save(MaskDocument(32, 32))
    labels = np.zeros((32, 32), np.uint8)
    labels[4:12, 4:12] = NUCLEI
    saver.mask_path.write_bytes(encode_label_png(labels, HE3))
    doc = Autosaver(tmp_path).recover()
    assert np.array_equal(doc.labels, labels) and np.array_equal(doc.classes.palette(), HE3.palette())
    binary = MaskDocument(32, 32)
    binary.stamp(10, 10, 4, 255)
    saver.save(binary)  # and a binary sketch autosaves the grey mask it always did
    again = Autosaver(tmp_path).recover()
    assert again.classes == BINARY and np.array_equal(again.mask, binary.mask)
    assert Autosaver(tmp_path).recoverable().classes is None


def test_the_new_class_sketch_dialog_offers_builtin_and_file_tables(qtbot, tmp_path):
    from trainer.data.classes import write_class_table

    dialog = ClassSketchDialog((100, 200))
    qtbot.addWidget(dialog)
    assert dialog.table() == HE3 and dialog.sketch_size() == (100, 200)
    dialog.table_combo.setCurrentIndex(1)
    assert dialog.table() == BINARY
    custom = table_from_names(["tumour", "stroma"], name="lab")
    write_class_table(tmp_path / "lab.json", custom)
    assert dialog.load_table(tmp_path / "lab.json")
    assert dialog.table() == custom and "lab.json" in dialog.table_combo.currentText()
    (tmp_path / "bad.json").write_text("{}")
    from priorpath_desktop.messages import open_messages

    assert not dialog.load_table(tmp_path / "bad.json")
    boxes = open_messages()
    assert boxes and "class table" in boxes[0].text()
    boxes[0].close()
    assert dialog.table() == custom


def test_the_eraser_end_leaves_the_class_chosen(canvas):
    canvas.set_current_class(NUCLEI)
    pen_stroke(canvas, [at(canvas, 40, 40), at(canvas, 60, 40)], 1.0, QPointingDevice.PointerType.Eraser)
    assert canvas.current_class() == NUCLEI
    mouse(canvas, QEvent.Type.MouseButtonPress, QPointF(at(canvas, 50, 50)))
    mouse(canvas, QEvent.Type.MouseButtonRelease, QPointF(at(canvas, 50, 50)))
    assert canvas.document().labels[50, 50] == NUCLEI
