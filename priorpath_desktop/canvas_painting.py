"""How the drawing canvas paints: the mask over its underlay, a lasso in progress and the brush outline.

Drawing is cheap at any mask size: each document change repaints only its rectangle in widget
coordinates, and a paint converts only the exposed part of the mask (subsampled when zoomed out) to
pixels. Nothing is cached per mask pixel, so a 20000x20000 mask costs no more than the screen it fills.

A mixin of ``CanvasView``, which holds the state it paints (document, zoom, offset, underlay, lasso, hover).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPaintEvent, QPen

from .document import Rect

OUTSIDE_COLOUR = QColor(96, 96, 96)
PAPER_COLOUR = QColor(255, 255, 255)


class CanvasPaintingMixin:
    """``paintEvent`` of ``CanvasView`` and the brush outline that follows the pointer."""

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
