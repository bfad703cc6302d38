"""The canvas with synthesized pen, mouse, wheel and key events, and its tool panel."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import (QColor, QInputDevice, QMouseEvent, QNativeGestureEvent, QPointingDevice, QTabletEvent,
                           QWheelEvent)
from PySide6.QtWidgets import QApplication

from priorpath_desktop.canvas import CanvasView, pressure_radius
from priorpath_desktop.document import MaskDocument
from priorpath_desktop.tool_panel import ToolPanel
from trainer.errors import PriorPathError

LEFT, RIGHT, NO_BUTTON = Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton, Qt.MouseButton.NoButton
_devices: dict = {}


def device(kind: QPointingDevice.PointerType) -> QPointingDevice:
    if kind not in _devices:  # kept alive for the whole session: events refer to them
        caps = QInputDevice.Capability.Position | QInputDevice.Capability.Pressure
        _devices[kind] = QPointingDevice(f"test {kind.name}", 1000 + len(_devices), QInputDevice.DeviceType.Stylus,
                                         kind, caps, 1, 3)
    return _devices[kind]


def tablet(canvas, kind, pos: QPointF, pressure: float, pointer=QPointingDevice.PointerType.Pen) -> bool:
    button = NO_BUTTON if kind == QEvent.Type.TabletMove and pressure == 0 else LEFT
    held = NO_BUTTON if kind == QEvent.Type.TabletRelease else button
    ev = QTabletEvent(kind, device(pointer), QPointF(pos), canvas.mapToGlobal(QPointF(pos)), pressure, 0, 0, 0, 0, 0,
                      Qt.KeyboardModifier.NoModifier, button if kind != QEvent.Type.TabletMove else NO_BUTTON, held)
    QApplication.sendEvent(canvas, ev)
    return ev.isAccepted()


def pen_stroke(canvas, points, pressure, pointer=QPointingDevice.PointerType.Pen):
    accepted = tablet(canvas, QEvent.Type.TabletPress, points[0], pressure, pointer)
    for p in points[1:]:
        accepted &= tablet(canvas, QEvent.Type.TabletMove, p, pressure, pointer)
    accepted &= tablet(canvas, QEvent.Type.TabletRelease, points[-1], pressure, pointer)
    return accepted


def mouse(canvas, kind, pos: QPointF, button=LEFT, buttons=None):
    if buttons is None:
        buttons = NO_BUTTON if kind == QEvent.Type.MouseButtonRelease else button
    ev = QMouseEvent(kind, QPointF(pos), canvas.mapToGlobal(QPointF(pos)), button, buttons,
                     Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(canvas, ev)


def mouse_stroke(canvas, points, button=LEFT):
    mouse(canvas, QEvent.Type.MouseButtonPress, points[0], button)
    for p in points[1:]:
        mouse(canvas, QEvent.Type.MouseMove, p, NO_BUTTON, button)
    mouse(canvas, QEvent.Type.MouseButtonRelease, points[-1], button)


def click(canvas, pos, button=LEFT):
    mouse_stroke(canvas, [pos], button)


def at(canvas, x, y) -> QPointF:
    """Widget position of the centre of image pixel (x, y)."""
    return canvas.widget_pos(x + 0.5, y + 0.5)


@pytest.fixture
def canvas(qtbot):
    view = CanvasView(document=MaskDocument(128, 256))
    qtbot.addWidget(view)
    view.resize(528, 272)  # fits the mask at 2x (8 px margins)
    view.show()
    qtbot.waitExposed(view)
    return view


def test_fit_shows_the_whole_mask(canvas):
    assert canvas.zoom() == pytest.approx(2.0)
    assert canvas.image_pos(canvas.rect().center())[0] == pytest.approx(128, abs=1)


def test_pen_pressure_changes_the_stamped_radius(canvas):
    doc = canvas.document()
    canvas.set_brush_radius(10)
    pen_stroke(canvas, [at(canvas, 60, 64)], 0.2)
    pen_stroke(canvas, [at(canvas, 190, 64)], 1.0)
    light = np.count_nonzero(doc.mask[:, :128])
    firm = np.count_nonzero(doc.mask[:, 128:])
    assert light > 0 and firm > 4 * light
    ys, xs = np.nonzero(doc.mask[:, 128:])
    assert xs.max() - xs.min() + 1 == pytest.approx(2 * 10 + 1, abs=1)
    assert pressure_radius(10, 0.0) < pressure_radius(10, 0.5) < pressure_radius(10, 1.0) == 10


def test_pen_events_are_accepted_and_strokes_follow_the_pen(canvas):
    doc = canvas.document()
    canvas.set_brush_radius(2)
    points = [at(canvas, x, 40) for x in range(20, 101, 20)]
    assert pen_stroke(canvas, points, 0.8)  # accepted: Qt will not synthesize mouse events as well
    assert np.all(doc.mask[40, 20:101] == 255)
    assert doc.version == 1  # the whole stroke is one step


def test_the_eraser_end_of_the_pen_erases_whatever_the_tool(canvas):
    doc = canvas.document()
    doc.replace(np.full(doc.shape, 255, np.uint8))
    canvas.set_tool("brush")
    canvas.set_brush_radius(5)
    pen_stroke(canvas, [at(canvas, 30, 60), at(canvas, 90, 60)], 1.0, QPointingDevice.PointerType.Eraser)
    assert np.all(doc.mask[60, 30:91] == 0)
    assert np.count_nonzero(doc.mask == 0) < 0.1 * doc.mask.size
    assert canvas.tool() == "brush"


def test_mouse_paints_right_button_erases_and_undo_redo(canvas, qtbot):
    doc = canvas.document()
    canvas.set_brush_radius(3)
    edited = []
    canvas.documentEdited.connect(lambda: edited.append(doc.version))
    mouse_stroke(canvas, [at(canvas, 10, 10), at(canvas, 60, 30), at(canvas, 120, 30)])
    one = doc.mask.copy()
    assert one[30, 90] == 255 and one[10, 10] == 255
    mouse_stroke(canvas, [at(canvas, 50, 100), at(canvas, 200, 100)])
    two = doc.mask.copy()
    mouse_stroke(canvas, [at(canvas, 90, 0), at(canvas, 90, 60)], RIGHT)
    three = doc.mask.copy()
    assert three[30, 90] == 0 and two[30, 90] == 255
    assert edited == [1, 2, 3]
    canvas.undo()
    assert np.array_equal(doc.mask, two)
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(doc.mask, one)
    canvas.redo()
    canvas.redo()
    assert np.array_equal(doc.mask, three)
    assert edited == [1, 2, 3, 4, 5, 6, 7]


def test_fill_tool_and_clear_invert(canvas):
    doc = canvas.document()
    canvas.set_brush_radius(2)
    # a closed ring drawn with the mouse, then filled inside
    corners = [(40, 20), (120, 20), (120, 100), (40, 100), (40, 20)]
    mouse_stroke(canvas, [at(canvas, x, y) for x, y in corners])
    canvas.set_tool("fill")
    click(canvas, at(canvas, 80, 60))
    assert np.all(doc.mask[25:96, 45:116] == 255) and doc.mask[60, 200] == 0
    click(canvas, at(canvas, 80, 60), RIGHT)  # right button fills with air
    assert doc.mask[60, 80] == 0
    canvas.undo()
    filled = doc.mask.copy()
    canvas.invert()
    assert np.array_equal(doc.mask, 255 - filled)
    canvas.clear()
    assert not doc.mask.any()
    canvas.undo()
    canvas.undo()
    assert np.array_equal(doc.mask, filled)


def test_lasso_freehand_polygon_and_cancel(canvas, qtbot):
    doc = canvas.document()
    canvas.set_tool("lasso")
    qtbot.keyClick(canvas, Qt.Key.Key_L)
    # freehand: press, drag around a square, release
    outline = [(10, 10), (50, 10), (50, 50), (10, 50)]
    mouse_stroke(canvas, [at(canvas, x, y) for x, y in outline])
    assert np.all(doc.mask[11:50, 11:50] == 255) and doc.mask[60, 60] == 0
    assert doc.version == 1
    # polygon: clicks place corners, Enter fills
    for x, y in [(100, 20), (200, 20), (150, 100)]:
        click(canvas, at(canvas, x, y))
    assert doc.version == 1
    qtbot.keyClick(canvas, Qt.Key.Key_Return)
    assert doc.mask[50, 150] == 255 and doc.mask[90, 110] == 0 and doc.version == 2
    # Esc drops a polygon in progress
    for x, y in [(200, 60), (250, 60), (250, 120)]:
        click(canvas, at(canvas, x, y))
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    qtbot.keyClick(canvas, Qt.Key.Key_Return)
    assert doc.mask[100, 240] == 0 and doc.version == 2


def test_zoom_and_pan_keep_painting_aligned(canvas, qtbot):
    doc = canvas.document()
    canvas.set_zoom(3.0, QPointF(100, 80))
    canvas.pan(37, -21)
    canvas.set_brush_radius(1)
    x, y = 71, 52
    target = canvas.widget_pos(x + 0.5, y + 0.5)
    assert canvas.image_pos(target) == pytest.approx((x + 0.5, y + 0.5))
    click(canvas, target)
    ys, xs = np.nonzero(doc.mask)
    assert doc.mask[y, x] == 255 and (xs.mean(), ys.mean()) == (x, y)  # a radius-1 disc centred on it
    # and the screen shows the tissue exactly there: sample the rendered widget
    shot = canvas.grab().toImage()
    painted = shot.pixelColor(target.toPoint())
    beside = shot.pixelColor(canvas.widget_pos(x + 3.5, y + 0.5).toPoint())
    assert painted.red() < 200 and painted.green() < 100  # magenta tissue
    assert beside == QColor(255, 255, 255)  # paper
    # the wheel zooms around the cursor: the image point under it does not move
    cursor = QPointF(200, 100)
    under = canvas.image_pos(cursor)
    wheel = QWheelEvent(cursor, canvas.mapToGlobal(cursor), QPoint(0, 0), QPoint(0, 240), NO_BUTTON,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(canvas, wheel)
    assert canvas.zoom() == pytest.approx(3.0 * 1.25 ** 2)
    assert canvas.image_pos(cursor) == pytest.approx(under)
    qtbot.keyClick(canvas, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert canvas.zoom() == pytest.approx(2.0)


def test_middle_drag_pans(canvas):
    before = canvas.image_pos(QPointF(100, 100))
    mouse(canvas, QEvent.Type.MouseButtonPress, QPointF(100, 100), Qt.MouseButton.MiddleButton)
    mouse(canvas, QEvent.Type.MouseMove, QPointF(140, 110), NO_BUTTON, Qt.MouseButton.MiddleButton)
    mouse(canvas, QEvent.Type.MouseButtonRelease, QPointF(140, 110), Qt.MouseButton.MiddleButton)
    assert canvas.image_pos(QPointF(140, 110)) == pytest.approx(before)
    assert not canvas.document().mask.any()


def test_space_drag_pans_instead_of_painting(canvas, qtbot):
    canvas.setFocus()
    before = canvas.image_pos(QPointF(100, 100))
    qtbot.keyPress(canvas, Qt.Key.Key_Space)
    mouse_stroke(canvas, [QPointF(100, 100), QPointF(130, 120), QPointF(160, 120)])
    qtbot.keyRelease(canvas, Qt.Key.Key_Space)
    assert canvas.image_pos(QPointF(160, 120)) == pytest.approx(before)
    assert not canvas.document().mask.any()
    mouse_stroke(canvas, [QPointF(100, 100), QPointF(160, 120)])  # Space released: the mouse paints again
    assert canvas.document().mask.any()


def test_a_touchpad_pinch_zooms_around_the_fingers(canvas):
    anchor = QPointF(200, 120)
    under = canvas.image_pos(anchor)
    zoom = canvas.zoom()
    ev = QNativeGestureEvent(Qt.NativeGestureType.ZoomNativeGesture, device(QPointingDevice.PointerType.Finger),
                             2, anchor, anchor, canvas.mapToGlobal(anchor), 0.5, QPointF(0, 0))
    QApplication.sendEvent(canvas, ev)
    assert canvas.zoom() == pytest.approx(zoom * 1.5)
    assert canvas.image_pos(anchor) == pytest.approx(under)  # the point under the fingers stays put


def test_a_small_stroke_repaints_only_a_small_rectangle(qtbot):
    view = CanvasView(document=MaskDocument(512, 1024))
    qtbot.addWidget(view)
    view.resize(1040, 528)
    view.show()
    qtbot.waitExposed(view)
    view.set_brush_radius(4)
    qtbot.waitUntil(lambda: view.last_paint_rect is not None, timeout=5000)
    view.last_paint_rect = None
    view.document().stamp(500.5, 250.5, 4, 255)
    qtbot.waitUntil(lambda: view.last_paint_rect is not None, timeout=5000)
    area = view.last_paint_rect.width() * view.last_paint_rect.height()
    assert area <= 16 * 16
    assert view.last_update_rect.contains(view.widget_pos(500.5, 250.5).toPoint())


def test_brush_keys_and_tool_keys(canvas, qtbot):
    canvas.set_brush_radius(10)
    radii = []
    canvas.brushRadiusChanged.connect(radii.append)
    qtbot.keyClick(canvas, Qt.Key.Key_BracketRight)
    qtbot.keyClick(canvas, Qt.Key.Key_BracketLeft)
    qtbot.keyClick(canvas, Qt.Key.Key_BracketLeft)
    assert radii == [12, 10, 8]
    for _ in range(20):
        qtbot.keyClick(canvas, Qt.Key.Key_BracketLeft)
    assert canvas.brush_radius() == 1
    for key, tool in [(Qt.Key.Key_E, "eraser"), (Qt.Key.Key_F, "fill"), (Qt.Key.Key_B, "brush")]:
        qtbot.keyClick(canvas, key)
        assert canvas.tool() == tool
    with pytest.raises(ValueError):
        canvas.set_tool("spray")


def test_underlay_shows_through_with_its_opacity(canvas):
    doc = canvas.document()
    rgb = np.zeros((64, 128, 3), np.uint8)
    rgb[..., 2] = 255  # blue, at half the mask's size: stretched to fit
    canvas.set_underlay(rgb)
    canvas.set_underlay_opacity(1.0)
    p = at(canvas, 200, 100).toPoint()
    assert canvas.grab().toImage().pixelColor(p) == QColor(0, 0, 255)
    canvas.set_underlay_opacity(0.0)
    assert canvas.grab().toImage().pixelColor(p) == QColor(255, 255, 255)
    canvas.set_underlay(None)
    assert not canvas.has_underlay()
    with pytest.raises(PriorPathError, match="grey .* or RGB"):
        canvas.set_underlay(np.zeros((4, 4, 2), np.uint8))
    assert not doc.mask.any()


def test_replacing_with_another_size_refits(canvas):
    doc = canvas.document()
    doc.replace(np.zeros((256, 256), np.uint8))
    assert canvas.zoom() == pytest.approx((272 - 16) / 256)
    canvas.set_document(MaskDocument(64, 64))
    doc.stamp(10, 10, 3, 255)  # the old document is no longer watched
    assert canvas.document().shape == (64, 64)


def test_tool_panel_follows_and_drives_the_canvas(canvas, qtbot):
    panel = ToolPanel(canvas)
    qtbot.addWidget(panel)
    panel.tool_buttons["fill"].click()
    assert canvas.tool() == "fill"
    canvas.set_tool("lasso")
    assert panel.tool_buttons["lasso"].isChecked() and not panel.tool_buttons["fill"].isChecked()
    panel.radius_spin.setValue(33)
    assert canvas.brush_radius() == 33 and panel.radius_slider.value() == 33
    qtbot.keyClick(canvas, Qt.Key.Key_BracketRight)
    assert panel.radius_spin.value() == canvas.brush_radius() == 41
    assert not panel.remove_underlay_button.isEnabled()
    canvas.set_underlay(np.full((32, 32), 128, np.uint8))
    assert panel.remove_underlay_button.isEnabled()
    panel.opacity_slider.setValue(75)
    assert canvas.underlay_opacity() == pytest.approx(0.75) and panel.opacity_label.text() == "75%"
    panel.remove_underlay_button.click()
    assert not canvas.has_underlay() and not panel.remove_underlay_button.isEnabled()
    panel.invert_button.click()
    assert canvas.document().mask.all()
    panel.clear_button.click()
    assert not canvas.document().mask.any() and canvas.document().version == 2


def test_zoomed_out_rendering_puts_tissue_where_it_is(qtbot):
    doc = MaskDocument(256, 512)
    doc.fill_polygon([(256, 0), (512, 0), (512, 256), (256, 256)], 255)  # the right half is tissue
    view = CanvasView(document=doc)
    qtbot.addWidget(view)
    view.resize(144, 80)  # a quarter of the size or less: the mask is subsampled to paint it
    view.show()
    qtbot.waitExposed(view)
    assert view.zoom() < 0.5
    shot = view.grab().toImage()
    for x in (40, 200, 250, 262, 300, 500):
        colour = shot.pixelColor(view.widget_pos(x + 0.5, 128).toPoint())
        assert (colour == QColor(255, 255, 255)) == (x < 256), x
