"""The drawing canvas: a view of a ``MaskDocument`` that turns pen, mouse and keys into edits.

This module holds ``CanvasView``'s state and API (the document, tools, classes, underlay, zoom and pan) and
its autosave after every completed edit; ``canvas_input`` turns pen, mouse, wheel, gestures and keys into
edits (the controls are listed there), and ``canvas_painting`` paints the mask, a lasso and the brush outline.
"""
from __future__ import annotations

import logging
import math
from typing import Optional

import numpy as np
from PySide6.QtCore import QPoint, QPointF, QRect, Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QWidget

from trainer.errors import PriorPathError

from .autosave import Autosaver
from .canvas_colours import TISSUE_COLOUR, class_lut, rgb32  # noqa: F401 (TISSUE_COLOUR: kept importable here)
from .canvas_colours import premultiplied as _premultiplied  # noqa: F401 (the canvas benchmark's baseline uses it)
from .canvas_input import LASSO_DRAG, TOOL_KEYS, WHEEL_STEP, CanvasInputMixin, pressure_radius  # noqa: F401
from .canvas_painting import OUTSIDE_COLOUR, PAPER_COLOUR, CanvasPaintingMixin  # noqa: F401
from .document import MaskDocument, Rect
from .messages import show_error
from .workers import LatestOnly

log = logging.getLogger(__name__)

TOOLS = ("brush", "eraser", "fill", "lasso")
MIN_RADIUS, MAX_RADIUS = 1, 256
RADIUS_STEP = 1.25
MIN_ZOOM, MAX_ZOOM = 1 / 64, 64.0
FIT_MARGIN = 8  # widget pixels left around the mask by ``fit_to_window``
SYNC_AUTOSAVE_PIXELS = 4_000_000  # larger masks are autosaved in a background job (PNG encoding takes longer)


class CanvasView(CanvasInputMixin, CanvasPaintingMixin, QWidget):
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
