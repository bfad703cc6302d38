"""The colours the canvas and the tool panel show classes in, and the underlay's pixels.

A class is drawn in its table colour, see-through so an underlay shows, and air not at all (the paper or
the underlay is air). The binary table keeps the canvas's dark magenta: binary sketches look as they did
before there were classes.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtGui import QColor

from trainer.data.classes import BINARY, ClassTable
from trainer.errors import PriorPathError

TISSUE_COLOUR = QColor(128, 0, 96, 170)  # dark magenta, see-through so the underlay shows
CLASS_ALPHA = TISSUE_COLOUR.alpha()


def premultiplied(colour: QColor) -> int:
    a = colour.alpha()
    r, g, b = (round(c * a / 255) for c in (colour.red(), colour.green(), colour.blue()))
    return (a << 24) | (r << 16) | (g << 8) | b


def class_colour(table: ClassTable, class_id: int) -> QColor:
    """The opaque colour of a class (the canvas draws it see-through)."""
    if table == BINARY and class_id == 1:
        return QColor(TISSUE_COLOUR.red(), TISSUE_COLOUR.green(), TISSUE_COLOUR.blue())
    return QColor(*table.classes[class_id].colour)


def class_lut(table: ClassTable) -> np.ndarray:
    """256 premultiplied ARGB32 pixels indexed by class id: air and unknown ids transparent."""
    lut = np.zeros(256, np.uint32)
    for class_id in range(1, len(table)):
        colour = class_colour(table, class_id)
        colour.setAlpha(CLASS_ALPHA)
        lut[class_id] = premultiplied(colour)
    return lut


def rgb32(image: np.ndarray) -> np.ndarray:
    """HxW uint32 pixels 0xffRRGGBB of a grey or RGB(A) image, 8 or 16 bits."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)) or min(image.shape[:2]) < 1:
        raise PriorPathError(f"an underlay must be a grey (HxW) or RGB (HxWx3) image, got shape {image.shape}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype == bool:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        raise PriorPathError(f"an underlay must have 8- or 16-bit pixels, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    r, g, b = (image[..., i].astype(np.uint32) for i in range(3))
    return np.ascontiguousarray(0xFF000000 | (r << 16) | (g << 8) | b)
