"""Undo steps of a label map, stored as packed bit planes; Qt-free.

A region of class ids is stored as ``b`` bit planes, each packed eight pixels to a byte, where ``b`` is
the bit length of the largest id in that region (at least 1). A binary map therefore costs one bit per
pixel, as the binary-only document did, and a region holding only air and class 1 stays at one bit even
in a multi-class document; ten classes need at most four bits.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

if TYPE_CHECKING:
    from .document import MaskDocument

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1; x1 and y1 excluded
TILE = 64


class Packed:
    """Class ids of an HxW region as bit planes. ``nbytes`` is what the region costs in memory."""

    __slots__ = ("data", "bits", "shape")

    def __init__(self, ids: np.ndarray):
        ids = np.ascontiguousarray(ids, dtype=np.uint8)
        self.shape = ids.shape
        self.bits = max(1, int(ids.max(initial=0)).bit_length())
        if self.bits == 1:
            self.data = np.packbits(ids)  # ids are 0/1 here: packbits keeps nonzero as 1
        else:
            self.data = np.concatenate([np.packbits((ids >> k) & 1) for k in range(self.bits)])

    @property
    def nbytes(self) -> int:
        return self.data.nbytes

    def unpack(self) -> np.ndarray:
        n = self.shape[0] * self.shape[1]
        per = (n + 7) // 8
        out = np.unpackbits(self.data[:per], count=n)
        for k in range(1, self.bits):
            out |= np.unpackbits(self.data[k * per:(k + 1) * per], count=n) << k
        return out.reshape(self.shape)


class RegionStep:
    """One undoable change confined to a rectangle: the ids before and after."""

    def __init__(self, rect: Rect, before: np.ndarray, after: np.ndarray):
        self.rect = rect
        self.before = Packed(before)
        self.after = Packed(after)

    def _put(self, doc: "MaskDocument", packed: Packed) -> Rect:
        x0, y0, x1, y1 = self.rect
        doc._labels[y0:y1, x0:x1] = packed.unpack()
        return self.rect

    def undo(self, doc: "MaskDocument") -> Rect:
        return self._put(doc, self.before)

    def redo(self, doc: "MaskDocument") -> Rect:
        return self._put(doc, self.after)


class ReplaceStep:
    """A whole new label map, possibly of another size."""

    def __init__(self, before: np.ndarray, after: np.ndarray):
        self.before = Packed(before)
        self.after = Packed(after)

    @staticmethod
    def _load(doc: "MaskDocument", packed: Packed) -> Rect:
        doc._labels = packed.unpack()
        return (0, 0, packed.shape[1], packed.shape[0])

    def undo(self, doc: "MaskDocument") -> Rect:
        return self._load(doc, self.before)

    def redo(self, doc: "MaskDocument") -> Rect:
        return self._load(doc, self.after)


def step_bytes(step) -> int:
    return step.before.nbytes + step.after.nbytes


class OpenStroke:
    """What a stroke in progress has touched: the original content of each tile, and the bounding box.

    Tiles are copied the first time a stamp touches them, so starting a stroke never copies the whole map."""

    def __init__(self) -> None:
        self.tiles: dict[tuple[int, int], np.ndarray] = {}
        self.box: Optional[list[int]] = None

    def remember(self, labels: np.ndarray, rect: Rect) -> None:
        x0, y0, x1, y1 = rect
        for ty in range(y0 // TILE, (y1 - 1) // TILE + 1):
            for tx in range(x0 // TILE, (x1 - 1) // TILE + 1):
                if (ty, tx) not in self.tiles:
                    self.tiles[ty, tx] = labels[ty * TILE:(ty + 1) * TILE, tx * TILE:(tx + 1) * TILE].copy()
        if self.box is None:
            self.box = list(rect)
        else:
            b = self.box
            b[0], b[1], b[2], b[3] = min(b[0], x0), min(b[1], y0), max(b[2], x1), max(b[3], y1)

    def before(self, labels: np.ndarray, rect: Rect) -> np.ndarray:
        """The content of ``rect`` as it was when the stroke began."""
        x0, y0, x1, y1 = rect
        out = labels[y0:y1, x0:x1].copy()
        for (ty, tx), tile in self.tiles.items():
            ty0, tx0 = ty * TILE, tx * TILE
            # intersection of the tile and the rectangle
            a0, a1 = max(ty0, y0), min(ty0 + tile.shape[0], y1)
            b0, b1 = max(tx0, x0), min(tx0 + tile.shape[1], x1)
            if a0 < a1 and b0 < b1:
                out[a0 - y0:a1 - y0, b0 - x0:b1 - x0] = tile[a0 - ty0:a1 - ty0, b0 - tx0:b1 - tx0]
        return out
