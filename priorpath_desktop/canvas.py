"""The drawing canvas: a view of a ``MaskDocument`` that turns pen, mouse and keys into edits.

Input:

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

Drawing is cheap at any mask size: each document change repaints only its rectangle in widget
coordinates, and a paint converts only the exposed part of the mask (subsampled when zoomed out) to
pixels. Nothing is cached per mask pixel, so a 20000x20000 mask costs no more than the screen it fills.
"""
from __future__ import annotations

import logging
import math
from typing import Optional

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import (QColor, QImage, QKeySequence, QMouseEvent, QNativeGestureEvent, QPainter, QPainterPath,
                           QPaintEvent, QPen, QPointingDevice, QTabletEvent, QWheelEvent)
from PySide6.QtWidgets import QGestureEvent, QPinchGesture, QWidget

from trainer.errors import PriorPathError

from .autosave import Autosaver
from .canvas_colours import TISSUE_COLOUR, class_lut, rgb32  # noqa: F401 (TISSUE_COLOUR: kept importable here)
from .canvas_colours import premultiplied as _premultiplied  # noqa: F401 (the canvas benchmark's baseline uses it)
from .document import AIR, MaskDocument, Rect
from .messages import show_error
from .workers import LatestOnly

log = logging.getLogger(__name__)

TOOLS = ("brush", "eraser", "fill", "lasso")
TOOL_KEYS = {Qt.Key.Key_B: "brush", Qt.Key.Key_E: "eraser", Qt.Key.Key_F: "fill", Qt.Key.Key_L: "lasso"}
MIN_RADIUS, MAX_RADIUS = 1, 256
RADIUS_STEP = 1.25
MIN_ZOOM, MAX_ZOOM = 1 / 64, 64.0
WHEEL_STEP = 1.25  # zoom factor per wheel notch
FIT_MARGIN = 8  # widget pixels left around the mask by ``fit_to_window``
LASSO_DRAG = 4  # widget pixels the pointer must move before a press becomes a freehand lasso
SYNC_AUTOSAVE_PIXELS = 4_000_000  # larger masks are autosaved in a background job (PNG encoding takes longer)

OUTSIDE_COLOUR = QColor(96, 96, 96)
PAPER_COLOUR = QColor(255, 255, 255)


def pressure_radius(radius: float, pressure: float) -> float:
    """The stamped radius for a pen pressure in [0, 1]: from 20% of the brush at a touch to all of it."""
    pressure = min(max(float(pressure), 0.0), 1.0)
    return max(0.5, radius * (0.2 + 0.8 * pressure))


class CanvasView(QWidget):
    documentEdited = Signal()  # a stroke, fill, clear, invert, replace, undo or redo has completed
    zoomChanged = Signal(float)
    brushRadiusChanged = Signal(int)
    toolChanged = Signal(str)
    classChanged = Signal(int)  # the class id brush, fill and lasso paint
    classesChanged = Signal(object)  # the ClassTable of a newly shown document
    cursorMoved = Signal(int, int)  # image pixel under the pointer
    underlayChanged = Signal(bool)  # whether there is an underlay now
    underlayOpacityChanged = Signal(float)

    def __init__(self, parent: Optional[QWidget] = None, document: Optional[MaskDocument] = None):
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.setAttribute(Qt.WidgetAttribute.WA_AcceptTouchEvents, True)
        self.grabGesture(Qt.GestureType.PinchGesture)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setMinimumSize(64, 64)

        self._doc: Optional[MaskDocument] = None
        self._shape = (0, 0)
        self._tool = "brush"
        self._radius = 12
        self._zoom = 1.0
        self._offset = QPointF(0, 0)  # widget position of the image's top-left corner
        self._fit_mode = True  # refit on resize until the user zooms or pans
        self._lut = np.zeros(256, np.uint32)  # class id -> pixel, from the document's class table
        self._class = 1

        self._underlay: Optional[QImage] = None
        self._underlay_pixels: Optional[np.ndarray] = None  # keeps the QImage's memory alive
        self._opacity = 0.4

        self._stroking = False
        self._stroke_value = 1
        self._last_pos = QPointF()  # image coordinates of the last stamp
        self._last_radius = 0.0
        self._panning = False
        self._pan_from = QPointF()
        self._space_down = False
        self._lasso: list[QPointF] = []  # image coordinates
        self._lasso_value = 1
        self._lasso_press: Optional[QPointF] = None  # widget position of a press that may become a drag
        self._lasso_freehand = False
        self._hover: Optional[QPointF] = None  # widget position of the brush outline
        self._native_pinch = False

        self._autosaver: Optional[Autosaver] = None
        self._autosave_jobs: Optional[LatestOnly] = None
        self._autosave_error_shown = False

        self.last_update_rect: Optional[QRect] = None  # widget rectangle of the last document repaint
        self.last_paint_rect: Optional[QRect] = None  # what the last paint event covered

        self.set_document(document or MaskDocument(512, 1024))

    # -- document ------------------------------------------------------------------------------------

    def document(self) -> MaskDocument:
        return self._doc

    def set_document(self, doc: MaskDocument) -> None:
        """Show ``doc`` (fitted to the window); the previous document is no longer watched."""
        if self._doc is not None:
            self._end_interaction()
            self._doc.remove_listener(self._on_document_rect)
            self._doc.remove_step_listener(self._on_document_step)
        old_classes = self._doc.classes if self._doc is not None else None
        self._doc = doc
        self._shape = doc.shape
        self._lut = class_lut(doc.classes)
        doc.add_listener(self._on_document_rect)
        doc.add_step_listener(self._on_document_step)
        self.fit_to_window()
        if doc.classes != old_classes:
            if self._class >= len(doc.classes):
                self.set_current_class(1)
            self.classesChanged.emit(doc.classes)

    def set_autosaver(self, autosaver: Optional[Autosaver]) -> None:
        """Write the mask through ``autosaver`` after every completed edit."""
        self._autosaver = autosaver

    def undo(self) -> None:
        self._end_interaction()
        self._doc.undo()

    def redo(self) -> None:
        self._end_interaction()
        self._doc.redo()

    def clear(self) -> None:
        self._end_interaction()
        self._doc.clear()

    def invert(self) -> None:
        self._end_interaction()
        self._doc.invert(self._class)

    def _on_document_rect(self, rect: Rect) -> None:
        if self._doc.shape != self._shape:  # replace() or its undo changed the size
            self._shape = self._doc.shape
            if self._fit_mode:
                self.fit_to_window()
            self.update()
            return
        area = self._widget_rect(rect).adjusted(-1, -1, 1, 1) & self.rect()
        self.last_update_rect = area
        self.update(area)

    def _on_document_step(self) -> None:
        self._autosave()
        self.documentEdited.emit()

    # -- tools ---------------------------------------------------------------------------------------

    def tool(self) -> str:
        return self._tool

    def set_tool(self, name: str) -> None:
        if name not in TOOLS:
            raise ValueError(f"unknown tool {name!r}; expected one of {', '.join(TOOLS)}")
        if name == self._tool:
            return
        self._end_interaction()
        self._tool = name
        self.update()
        self.toolChanged.emit(name)

    def current_class(self) -> int:
        return self._class

    def set_current_class(self, class_id: int) -> bool:
        """Paint class ``class_id`` (1 or more) from now on; False, and nothing changes, if the table lacks it."""
        if not 1 <= class_id < len(self._doc.classes):
            return False
        if class_id != self._class:
            self._class = class_id
            self.classChanged.emit(class_id)
        return True

    def brush_radius(self) -> int:
        return self._radius

    def set_brush_radius(self, radius: int) -> None:
        radius = int(min(max(round(radius), MIN_RADIUS), MAX_RADIUS))
        if radius == self._radius:
            return
        self._update_brush_outline()
        self._radius = radius
        self._update_brush_outline()
        self.brushRadiusChanged.emit(radius)

    def grow_brush(self) -> None:
        self.set_brush_radius(max(self._radius + 1, round(self._radius * RADIUS_STEP)))

    def shrink_brush(self) -> None:
        self.set_brush_radius(min(self._radius - 1, round(self._radius / RADIUS_STEP)))

    # -- underlay ------------------------------------------------------------------------------------

    def set_underlay(self, image: Optional[np.ndarray]) -> None:
        """Show ``image`` (HxW grey or HxWx3 RGB, uint8 or uint16) under the mask, stretched to its size;
        None removes it. Raises PriorPathError for anything else."""
        if image is None:
            self._underlay = self._underlay_pixels = None
        else:
            self._underlay_pixels = rgb32(image)
            h, w = self._underlay_pixels.shape
            self._underlay = QImage(self._underlay_pixels.data, w, h, w * 4, QImage.Format.Format_RGB32)
        self.update()
        self.underlayChanged.emit(self._underlay is not None)

    def has_underlay(self) -> bool:
        return self._underlay is not None

    def underlay_opacity(self) -> float:
        return self._opacity

    def set_underlay_opacity(self, opacity: float) -> None:
        opacity = min(max(float(opacity), 0.0), 1.0)
        if opacity == self._opacity:
            return
        self._opacity = opacity
        if self._underlay is not None:
            self.update()
        self.underlayOpacityChanged.emit(opacity)

    # -- zoom and pan --------------------------------------------------------------------------------

    def zoom(self) -> float:
        return self._zoom

    def set_zoom(self, zoom: float, anchor: Optional[QPointF] = None) -> None:
        """Zoom so that the image point under ``anchor`` (widget coordinates; default the centre) stays put."""
        zoom = min(max(float(zoom), MIN_ZOOM), MAX_ZOOM)
        anchor = QPointF(anchor) if anchor is not None else QPointF(self.width() / 2, self.height() / 2)
        x, y = self.image_pos(anchor)
        self._zoom = zoom
        self._offset = QPointF(anchor.x() - x * zoom, anchor.y() - y * zoom)
        self._fit_mode = False
        self.update()
        self.zoomChanged.emit(zoom)

    def pan(self, dx: float, dy: float) -> None:
        """Move the image by (dx, dy) widget pixels."""
        self._offset += QPointF(dx, dy)
        self._fit_mode = False
        self.update()

    def fit_to_window(self) -> None:
        h, w = self._doc.shape
        room_w, room_h = max(1, self.width() - 2 * FIT_MARGIN), max(1, self.height() - 2 * FIT_MARGIN)
        zoom = min(max(min(room_w / w, room_h / h), MIN_ZOOM), MAX_ZOOM)
        self._zoom = zoom
        self._offset = QPointF((self.width() - w * zoom) / 2, (self.height() - h * zoom) / 2)
        self._fit_mode = True
        self.update()
        self.zoomChanged.emit(zoom)

    def image_pos(self, widget_point) -> tuple[float, float]:
        """Continuous image coordinates of a widget point (pixel (c, r) spans [c, c+1) x [r, r+1))."""
        p = QPointF(widget_point)
        return ((p.x() - self._offset.x()) / self._zoom, (p.y() - self._offset.y()) / self._zoom)

    def widget_pos(self, x: float, y: float) -> QPointF:
        """The widget point showing image coordinates (x, y); ``widget_pos(c + 0.5, r + 0.5)`` is pixel (c, r)."""
        return QPointF(self._offset.x() + x * self._zoom, self._offset.y() + y * self._zoom)

    def _widget_rect(self, rect: Rect) -> QRect:
        x0, y0, x1, y1 = rect
        left, top = self.widget_pos(x0, y0).toTuple()
        right, bottom = self.widget_pos(x1, y1).toTuple()
        return QRect(QPoint(math.floor(left), math.floor(top)), QPoint(math.ceil(right), math.ceil(bottom)))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fit_mode:
            self.fit_to_window()

    # -- painting ------------------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        exposed = event.rect()
        self.last_paint_rect = exposed
        h, w = self._doc.shape
        painter = QPainter(self)
        painter.fillRect(exposed, OUTSIDE_COLOUR)
        image_area = QRectF(self._offset, self.widget_pos(w, h))
        visible = image_area.intersected(QRectF(exposed))
        if not visible.isEmpty():
            painter.setClipRect(visible)
            painter.fillRect(visible, PAPER_COLOUR)
            x0, y0 = self.image_pos(visible.topLeft())
            x1, y1 = self.image_pos(visible.bottomRight())
            region = (max(0, math.floor(x0)), max(0, math.floor(y0)), min(w, math.ceil(x1)), min(h, math.ceil(y1)))
            if region[0] < region[2] and region[1] < region[3]:
                self._paint_underlay(painter, region)
                self._paint_mask(painter, region)
            painter.setClipping(False)
        self._paint_lasso(painter)
        self._paint_brush_outline(painter)
        painter.end()

    def _paint_underlay(self, painter: QPainter, region: Rect) -> None:
        if self._underlay is None or self._opacity <= 0:
            return
        h, w = self._doc.shape
        sx, sy = self._underlay.width() / w, self._underlay.height() / h
        x0, y0, x1, y1 = region
        source = QRectF(x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy)
        painter.setOpacity(self._opacity)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        painter.drawImage(QRectF(self.widget_pos(x0, y0), self.widget_pos(x1, y1)), self._underlay, source)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        painter.setOpacity(1.0)

    def _paint_mask(self, painter: QPainter, region: Rect) -> None:
        x0, y0, x1, y1 = region
        step = max(1, math.floor(1 / self._zoom))  # zoomed out: one mask sample per screen pixel or so
        pixels = np.ascontiguousarray(self._lut[self._doc.labels[y0:y1:step, x0:x1:step]])
        rows, cols = pixels.shape
        image = QImage(pixels.data, cols, rows, cols * 4, QImage.Format.Format_ARGB32_Premultiplied)
        target = QRectF(self.widget_pos(x0, y0), self.widget_pos(x0 + cols * step, y0 + rows * step))
        painter.drawImage(target, image)

    def _paint_lasso(self, painter: QPainter) -> None:
        if not self._lasso:
            return
        path = QPainterPath(self.widget_pos(self._lasso[0].x(), self._lasso[0].y()))
        for p in self._lasso[1:]:
            path.lineTo(self.widget_pos(p.x(), p.y()))
        if self._hover is not None and not self._lasso_freehand:
            path.lineTo(self._hover)  # the edge the next click would add
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(QPen(QColor(255, 255, 255), 3))
        painter.drawPath(path)
        painter.setPen(QPen(QColor(0, 0, 0), 1, Qt.PenStyle.DashLine))
        painter.drawPath(path)

    def _paint_brush_outline(self, painter: QPainter) -> None:
        if self._hover is None or self._tool not in ("brush", "eraser") or self._panning:
            return
        r = self._radius * self._zoom
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(QPen(QColor(255, 255, 255), 1))
        painter.drawEllipse(self._hover, r + 1, r + 1)
        painter.setPen(QPen(QColor(0, 0, 0), 1))
        painter.drawEllipse(self._hover, r, r)

    def _brush_outline_rect(self) -> Optional[QRect]:
        if self._hover is None:
            return None
        r = math.ceil(self._radius * self._zoom) + 3
        c = self._hover.toPoint()
        return QRect(c.x() - r, c.y() - r, 2 * r + 1, 2 * r + 1)

    def _update_brush_outline(self) -> None:
        area = self._brush_outline_rect()
        if area is not None:
            self.update(area)

    def _set_hover(self, pos: Optional[QPointF]) -> None:
        self._update_brush_outline()
        self._hover = QPointF(pos) if pos is not None else None
        self._update_brush_outline()
        if self._lasso and not self._lasso_freehand:
            self.update()  # the rubber-band edge of a polygon in progress
        if pos is not None:
            x, y = self.image_pos(pos)
            self.cursorMoved.emit(math.floor(x), math.floor(y))

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

    # -- autosave ------------------------------------------------------------------------------------

    def _autosave(self) -> None:
        saver, doc = self._autosaver, self._doc
        if saver is None:
            return
        if doc.height * doc.width <= SYNC_AUTOSAVE_PIXELS:
            try:
                saver.save(doc)
            except PriorPathError as exc:
                self._autosave_failed(str(exc))
            return
        # Large masks: encode a snapshot off the GUI thread; a newer request replaces one still waiting,
        # and the one running always finishes its write, so the newest state is always written last.
        if self._autosave_jobs is None:
            self._autosave_jobs = LatestOnly(self)
            self._autosave_jobs.failed.connect(self._autosave_failed)
        snapshot, classes, source, version = doc.labels.copy(), doc.classes, doc.path, doc.version
        generation = saver.snapshot_generation()
        self._autosave_jobs.submit(
            lambda progress, cancel: saver.save_labels(snapshot, classes, source, version, generation), "autosave")

    def autosave_idle(self) -> bool:
        """Whether every autosave requested so far has been written (background saves of large masks)."""
        return self._autosave_jobs is None or self._autosave_jobs.idle

    def _autosave_failed(self, message: str) -> None:
        log.warning("autosave failed: %s", message)
        if not self._autosave_error_shown:  # once per session: a full disk would otherwise pop up every stroke
            self._autosave_error_shown = True
            show_error(self, "Autosave failed", f"Your strokes are not being saved for crash recovery:\n{message}")
