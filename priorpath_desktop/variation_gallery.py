"""The variations gallery: one thumbnail per seed (fine mask above RGB tile), as large as the room allows.

Thumbnails are made larger than they are shown and scaled to fit on every resize: the columns and the icon
size are chosen so that all of them fit when they can, at the largest size that does; when that would be too
small to judge them (``USABLE_THUMB``), they fill the gallery's width at a usable size and it scrolls.
The highlighted item is always the current seed's (``highlight_seed``), whoever changed it.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QAbstractItemView, QListView, QListWidget, QListWidgetItem, QWidget

from .image_view import array_to_pixmap

THUMB_SOURCE_WIDTH = 360  # pixels a thumbnail is made with; never shown larger
USABLE_THUMB = 140  # below this, a thumbnail is too small to judge: fewer show at once, and the gallery scrolls
MIN_THUMB = 64  # in a very narrow gallery
CELL_PAD = 10  # room around an icon inside its grid cell
SEED_ROLE = Qt.ItemDataRole.UserRole + 1


class VariationGallery(QListWidget):
    """Thumbnails of variations; ``chosen(index)`` when one is clicked."""

    chosen = Signal(int)

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(True)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setMinimumWidth(MIN_THUMB + 2 * CELL_PAD)
        self._aspect = 1.0  # height / width of the thumbnails
        self.itemClicked.connect(lambda item: self.chosen.emit(item.data(Qt.ItemDataRole.UserRole)))
        self._fit()

    def add_variation(self, index: int, seed: int, thumbnail: np.ndarray) -> QListWidgetItem:
        item = QListWidgetItem(QIcon(array_to_pixmap(thumbnail)), f"seed {seed}")
        item.setData(Qt.ItemDataRole.UserRole, index)
        item.setData(SEED_ROLE, seed)
        self._aspect = thumbnail.shape[0] / max(1, thumbnail.shape[1])
        self.addItem(item)
        self._fit()
        return item

    def highlight_seed(self, seed: Optional[int]) -> None:
        """Select the variation with ``seed`` (the current one), or nothing when no variation has it."""
        for i in range(self.count()):
            item = self.item(i)
            if seed is not None and item.data(SEED_ROLE) == seed:
                self.setCurrentItem(item)
                item.setSelected(True)
                return
        self.clearSelection()
        self.setCurrentItem(None)

    def highlighted_seed(self) -> Optional[int]:
        items = self.selectedItems()
        return items[0].data(SEED_ROLE) if items else None

    def icon_width(self) -> int:
        return self.iconSize().width()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        """All thumbnails at once, at the largest size at which they fit (over every number of columns); when that
        is smaller than ``USABLE_THUMB``, rows as wide as the gallery of thumbnails at least that size, scrolling."""
        room = self.contentsRect()  # inside the frame, scroll bars included, so a bar appearing changes nothing
        width_room, height_room = room.width() - 2, room.height() - 2
        text = self.fontMetrics().height() + 4
        n = max(1, self.count())
        best = 0.0
        for cols in range(1, n + 1):
            rows = math.ceil(n / cols)
            across = width_room / cols - CELL_PAD
            down = (height_room / rows - CELL_PAD - text) / self._aspect
            best = max(best, min(across, down))
        if best < USABLE_THUMB:
            cols = max(1, min(n, int(width_room // (USABLE_THUMB + CELL_PAD))))
            best = min(width_room / cols - CELL_PAD, (height_room - CELL_PAD - text) / self._aspect)
        width = int(min(max(best, MIN_THUMB), THUMB_SOURCE_WIDTH))
        height = max(1, round(width * self._aspect))
        if self.iconSize() != QSize(width, height):
            self.setIconSize(QSize(width, height))
            self.setGridSize(QSize(width + CELL_PAD, height + CELL_PAD + text))
