"""How the drawing canvas turns pen, mouse, wheel, gestures and keys into edits, zoom and pan.

- Pen (``QTabletEvent``): paints with the current tool; the stroke radius follows pressure through
  ``pressure_radius`` (a light touch still leaves a visible line). The eraser end of the pen erases
  whatever tool is selected. Tablet events are accepted, so Qt does not also send mouse events.
- Mouse: left button uses the tool, right button uses it to erase (brush/eraser erase, fill fills
  with air, lasso cuts air); strokes from the mouse have the full brush radius.
- Lasso: press and drag draws a freehand outline that is filled on release; single clicks place
  polygon corners instead, and a double-click or Enter fills the polygon. Esc or switching tools cancels.
- Zoom: wheel (around the cursor), pinch (touchpad native gesture or touch pinch), Ctrl+0 fits the
  mask to the window. Pan: middle-drag, or hold Space and drag.
- ``[`` / ``]`` shrink / grow the brush by 1.25x; B, E, F, L pick brush, eraser, fill, lasso.
- Classes: 1-9 pick the class that brush, fill and lasso paint (when the document's class table has it);
  the eraser, the pen's eraser end and the right button paint air (class 0) whatever the class.

A mixin of ``CanvasView``, which holds the state it changes (tool, radius, class, stroke, lasso, pan).
"""
from __future__ import annotations

from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QKeySequence, QMouseEvent, QNativeGestureEvent, QPointingDevice, QTabletEvent, QWheelEvent
from PySide6.QtWidgets import QGestureEvent, QPinchGesture

from .document import AIR

TOOL_KEYS = {Qt.Key.Key_B: "brush", Qt.Key.Key_E: "eraser", Qt.Key.Key_F: "fill", Qt.Key.Key_L: "lasso"}
WHEEL_STEP = 1.25  # zoom factor per wheel notch
LASSO_DRAG = 4  # widget pixels the pointer must move before a press becomes a freehand lasso


def pressure_radius(radius: float, pressure: float) -> float:
    """The stamped radius for a pen pressure in [0, 1]: from 20% of the brush at a touch to all of it."""
    pressure = min(max(float(pressure), 0.0), 1.0)
    return max(0.5, radius * (0.2 + 0.8 * pressure))


class CanvasInputMixin:
    """The pointer, wheel, gesture and key handlers of ``CanvasView``."""

    # -- pointer input, shared by pen and mouse ---------------------------------------------------------

    def _value(self, erase: bool) -> int:
        return AIR if erase or self._tool == "eraser" else self._class

    def _press(self, pos: QPointF, erase: bool, radius: float) -> None:
        x, y = self.image_pos(pos)
        value = self._value(erase)
        if self._tool in ("brush", "eraser"):
            self._doc.begin_stroke()
            self._stroking, self._stroke_value = True, value
            self._last_pos, self._last_radius = QPointF(x, y), radius
            self._doc.stamp(x, y, radius, value)
        elif self._tool == "fill":
            self._doc.fill(x, y, value)
        else:
            if not self._lasso:
                self._lasso_value = value
            self._lasso_press = QPointF(pos)
            self._lasso_freehand = False

    def _drag(self, pos: QPointF, radius: float) -> None:
        x, y = self.image_pos(pos)
        if self._stroking:
            last = self._last_pos
            self._doc.stamp_segment(last.x(), last.y(), x, y, self._last_radius, radius, self._stroke_value)
            self._last_pos, self._last_radius = QPointF(x, y), radius
        elif self._lasso_press is not None:
            if not self._lasso_freehand and (pos - self._lasso_press).manhattanLength() >= LASSO_DRAG \
                    and not self._lasso:
                self._lasso_freehand = True
                self._lasso = [QPointF(*self.image_pos(self._lasso_press))]
            if self._lasso_freehand:
                self._lasso.append(QPointF(x, y))
                self.update()

    def _release(self, pos: QPointF) -> None:
        if self._stroking:
            self._stroking = False
            self._doc.end_stroke()
        elif self._lasso_press is not None:
            self._lasso_press = None
            if self._lasso_freehand:
                self._close_lasso()
            else:
                self._lasso.append(QPointF(*self.image_pos(pos)))  # a click places a polygon corner
                self.update()

    def _close_lasso(self) -> None:
        points = [(p.x(), p.y()) for p in self._lasso]
        self._cancel_lasso()
        if len(points) >= 3:
            self._doc.fill_polygon(points, self._lasso_value)

    def _cancel_lasso(self) -> None:
        self._lasso = []
        self._lasso_press = None
        self._lasso_freehand = False
        self.update()

    def _end_interaction(self) -> None:
        """Finish a stroke and drop a lasso in progress (before undo, tool changes, a new document)."""
        if self._stroking:
            self._stroking = False
            self._doc.end_stroke()
        if self._lasso or self._lasso_press is not None:
            self._cancel_lasso()

    # -- Qt events -----------------------------------------------------------------------------------

    def tabletEvent(self, event: QTabletEvent) -> None:
        event.accept()  # no synthesized mouse events: the pen is handled here alone
        pos = event.position()
        kind = event.type()
        erase = event.pointerType() == QPointingDevice.PointerType.Eraser  # the pen turned round
        radius = pressure_radius(self._radius, event.pressure())
        if kind == QEvent.Type.TabletPress:
            if self._space_down:
                self._start_pan(pos)
            else:
                self._press(pos, erase, radius)
        elif kind == QEvent.Type.TabletMove:
            self._set_hover(pos)
            if self._panning:
                self._pan_to(pos)
            else:
                self._drag(pos, radius)
        elif kind == QEvent.Type.TabletRelease:
            if self._panning:
                self._stop_pan()
            else:
                self._release(pos)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        button = event.button()
        pos = event.position()
        if button == Qt.MouseButton.MiddleButton or (button == Qt.MouseButton.LeftButton and self._space_down):
            self._start_pan(pos)
        elif button in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton) and not self._stroking:
            self._press(pos, button == Qt.MouseButton.RightButton, self._radius)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = event.position()
        self._set_hover(pos)
        if self._panning:
            self._pan_to(pos)
        else:
            self._drag(pos, self._radius)
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._panning and event.button() in (Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
            self._stop_pan()
        elif event.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            self._release(event.position())
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if self._tool == "lasso" and self._lasso and not self._lasso_freehand:
            self._close_lasso()  # the first click of the pair already placed the last corner
            event.accept()
        else:
            self.mousePressEvent(event)

    def leaveEvent(self, event) -> None:
        self._set_hover(None)
        super().leaveEvent(event)

    def wheelEvent(self, event: QWheelEvent) -> None:
        notches = event.angleDelta().y() / 120
        if notches:
            self.set_zoom(self._zoom * WHEEL_STEP ** notches, event.position())
        event.accept()

    def event(self, event: QEvent) -> bool:
        kind = event.type()
        if kind == QEvent.Type.NativeGesture and isinstance(event, QNativeGestureEvent):
            if event.gestureType() == Qt.NativeGestureType.ZoomNativeGesture:
                self._native_pinch = True  # touchpads send these; ignore the pinch gesture derived from them
                self.set_zoom(self._zoom * (1 + event.value()), event.position())
                return True
        elif kind == QEvent.Type.Gesture and isinstance(event, QGestureEvent):
            pinch = event.gesture(Qt.GestureType.PinchGesture)
            if isinstance(pinch, QPinchGesture):
                event.accept(pinch)
                if not self._native_pinch and pinch.changeFlags() & QPinchGesture.ChangeFlag.ScaleFactorChanged:
                    centre = self.mapFromGlobal(pinch.centerPoint().toPoint())
                    self.set_zoom(self._zoom * pinch.scaleFactor(), QPointF(centre))
                return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:
        key = event.key()
        mods = event.modifiers()
        if key == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_down = True
            self.setCursor(Qt.CursorShape.OpenHandCursor)
        elif key == Qt.Key.Key_BracketLeft:
            self.shrink_brush()
        elif key == Qt.Key.Key_BracketRight:
            self.grow_brush()
        elif key == Qt.Key.Key_0 and mods & Qt.KeyboardModifier.ControlModifier:
            self.fit_to_window()
        elif key in TOOL_KEYS and not mods & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier):
            self.set_tool(TOOL_KEYS[key])
        elif Qt.Key.Key_1 <= key <= Qt.Key.Key_9 and not mods & (Qt.KeyboardModifier.ControlModifier
                                                                 | Qt.KeyboardModifier.AltModifier):
            if not self.set_current_class(key - Qt.Key.Key_0):  # a class the table lacks: the key is not ours
                super().keyPressEvent(event)
                return
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self._lasso:
            self._close_lasso()
        elif key == Qt.Key.Key_Escape and (self._lasso or self._lasso_press is not None):
            self._cancel_lasso()
        elif event.matches(QKeySequence.StandardKey.Undo):
            self.undo()
        elif event.matches(QKeySequence.StandardKey.Redo):
            self.redo()
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    def keyReleaseEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_down = False
            if not self._panning:
                self.setCursor(Qt.CursorShape.CrossCursor)
            event.accept()
            return
        super().keyReleaseEvent(event)

    def focusOutEvent(self, event) -> None:
        self._space_down = False  # the Space release may go to another widget
        super().focusOutEvent(event)

    def _start_pan(self, pos: QPointF) -> None:
        self._panning = True
        self._pan_from = QPointF(pos)
        self.setCursor(Qt.CursorShape.ClosedHandCursor)

    def _pan_to(self, pos: QPointF) -> None:
        delta = pos - self._pan_from
        self._pan_from = QPointF(pos)
        self.pan(delta.x(), delta.y())

    def _stop_pan(self) -> None:
        self._panning = False
        self.setCursor(Qt.CursorShape.OpenHandCursor if self._space_down else Qt.CursorShape.CrossCursor)
