"""A small image pane: shows a numpy mask or RGB tile fitted to its size, with wheel zoom and drag panning.

Zoom 1 means "fit the widget" (aspect kept); the wheel zooms up to 16x around the middle, dragging pans and a
double click returns to fit. Masks are scaled with nearest-neighbour when enlarged so their edges stay crisp.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import QPoint, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QSizePolicy, QWidget

MAX_ZOOM = 16.0
ZOOM_STEP = 1.25


def array_to_qimage(array: np.ndarray) -> QImage:
    """An HxW (grey) or HxWx3 (RGB) uint8 array as a QImage that owns a copy of the pixels."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {array.dtype}")
    if array.ndim == 2:
        h, w = array.shape
        image = QImage(array.data, w, h, array.strides[0], QImage.Format.Format_Grayscale8)
    elif array.ndim == 3 and array.shape[2] == 3:
        h, w = array.shape[:2]
        image = QImage(array.data, w, h, array.strides[0], QImage.Format.Format_RGB888)
    else:
        raise ValueError(f"expected an HxW or HxWx3 image, got shape {array.shape}")
    return image.copy()  # the QImage above only borrows the numpy buffer


def array_to_pixmap(array: np.ndarray) -> QPixmap:
    return QPixmap.fromImage(array_to_qimage(array))


class ImageView(QWidget):
    """Displays one image (or a placeholder text); see the module docstring."""

    zoomChanged = Signal(float)

    def __init__(self, placeholder: str = "", parent: Optional[QWidget] = None):
        super().__init__(parent)
        self._array: Optional[np.ndarray] = None
        self._pixmap: Optional[QPixmap] = None
        self._placeholder = placeholder
        self._zoom = 1.0
        self._pan = QPointF(0, 0)  # offset of the image centre from the widget centre, in widget pixels
        self._drag_from: Optional[QPoint] = None
        self.setMinimumSize(96, 64)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    # --- content ----------------------------------------------------------------------------------------------
    def set_image(self, array: Optional[np.ndarray]) -> None:
        """Show ``array`` (kept as given; ``image()`` returns it) or, with None, the placeholder."""
        self._array = array
        self._pixmap = array_to_pixmap(array) if array is not None else None
        self.update()

    def image(self) -> Optional[np.ndarray]:
        return self._array

    def clear(self) -> None:
        self.set_image(None)

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        self.update()

    def placeholder(self) -> str:
        return self._placeholder

    # --- zoom -------------------------------------------------------------------------------------------------
    def zoom(self) -> float:
        return self._zoom

    def set_zoom(self, zoom: float) -> None:
        zoom = min(MAX_ZOOM, max(1.0, float(zoom)))
        if zoom == 1.0:
            self._pan = QPointF(0, 0)
        if zoom != self._zoom:
            self._zoom = zoom
            self.zoomChanged.emit(zoom)
        self.update()

    def reset_zoom(self) -> None:
        self.set_zoom(1.0)

    def wheelEvent(self, event) -> None:
        steps = event.angleDelta().y() / 120
        if steps:
            self.set_zoom(self._zoom * ZOOM_STEP ** steps)
        event.accept()

    def mouseDoubleClickEvent(self, event) -> None:
        self.reset_zoom()

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self._zoom > 1:
            self._drag_from = event.position().toPoint()

    def mouseMoveEvent(self, event) -> None:
        if self._drag_from is not None:
            here = event.position().toPoint()
            self._pan += QPointF(here - self._drag_from)
            self._drag_from = here
            self.update()

    def mouseReleaseEvent(self, event) -> None:
        self._drag_from = None

    # --- painting ---------------------------------------------------------------------------------------------
    def target_rect(self) -> QRectF:
        """Where the image is drawn in widget coordinates (empty without an image)."""
        if self._pixmap is None:
            return QRectF()
        iw, ih = self._pixmap.width(), self._pixmap.height()
        scale = min(self.width() / iw, self.height() / ih) * self._zoom
        w, h = iw * scale, ih * scale
        centre = QPointF(self.width() / 2, self.height() / 2) + self._pan
        return QRectF(centre.x() - w / 2, centre.y() - h / 2, w, h)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().window())
        if self._pixmap is None:
            painter.setPen(QColor(128, 128, 128))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                             self._placeholder)
            return
        target = self.target_rect()
        enlarging = target.width() > self._pixmap.width()
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, not enlarging)
        painter.drawPixmap(target, self._pixmap, QRectF(self._pixmap.rect()))

    def sizeHint(self) -> QSize:
        return QSize(320, 200)
