"""Reading a mask file by one rule, the same in the app and on the command line.

* Black and white is the mask as it is: 255 (or 1, in a 0/1 label image) is tissue, 0 is air.
* Grey (soft edges, JPEG artefacts, a scaled or blurred mask) is thresholded at 127: brighter is tissue.
  That is what a user who drew or saved a mask means, and it is what export and eval do too. It is never
  silent: ``MaskRead.notice`` says how much of the image was grey, for the status bar or the log, so a grey
  photo opened by mistake does not quietly become a mask.
* Colour is refused: a tissue tile belongs under the mask as an underlay, not in it.
* Transparent pixels are air; 16-bit and float images are scaled to 8 bits first.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..errors import PriorPathError
from ..fileio import decode_image_file
from . import labelme
from .masks import luma

THRESHOLD = 127  # a grey pixel brighter than this is tissue
COLOUR_TOLERANCE = 8  # channels further apart than this (in any pixel) make an image colour, not grey


@dataclass(frozen=True)
class MaskRead:
    """A mask file's HxW uint8 0/255 mask, and how many of its pixels were grey (thresholded at 127)."""

    mask: np.ndarray
    grey_pixels: int = 0

    @property
    def thresholded(self) -> bool:
        return self.grey_pixels > 0

    def notice(self, name: Union[str, Path]) -> Optional[str]:
        """One line telling the user that a grey mask was thresholded, or None for a black-and-white one."""
        if not self.thresholded:
            return None
        share = 100.0 * self.grey_pixels / max(1, self.mask.size)
        percent = f"{share:.0f}" if share >= 10 else f"{share:.2g}"  # 69, 6.2, 0.05 (never 1e+02)
        return (f"{name}: not black and white ({percent}% of the pixels grey); thresholded at {THRESHOLD}, "
                f"brighter is tissue")


def read_mask_file(path: Union[str, Path], *, min_side: int = 1, max_side: Optional[int] = None,
                   geojson_scale: float = 1.0) -> MaskRead:
    """A mask image (PNG/TIFF/JPEG/BMP), a Labelme ``.json`` or a QuPath GeoJSON file, by the rule above;
    errors name the file.

    The image's size is checked against ``min_side``/``max_side`` from its header, before it is decoded.
    GeoJSON coordinates (a slide's level-0 pixels) are divided by ``geojson_scale``."""
    path = Path(path)
    if path.suffix.lower() in (".json", ".geojson"):
        from ..geojson import is_geojson, read_geojson

        if path.suffix.lower() == ".geojson" or is_geojson(_json(path)):
            return MaskRead(read_geojson(path, scale=geojson_scale))
        return MaskRead(labelme.read_labelme(path))
    image = decode_image_file(path, min_side=min_side, max_side=max_side, what="a mask")
    refuse_colour(image, path)
    return threshold_image(image)


def _json(path: Path):
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None  # the Labelme reader says what is wrong with it


def refuse_colour(image: np.ndarray, name: Union[str, Path]) -> None:
    """A clear error for a colour picture opened as a mask (thresholding it would make a meaningless mask)."""
    if image.ndim == 3 and image.shape[2] >= 3:
        colour = image[..., :3]
        spread = (colour.max(axis=2) - colour.min(axis=2)).max()  # max >= min: no unsigned wrap-around
        if spread > COLOUR_TOLERANCE * (257 if image.dtype == np.uint16 else 1):
            raise PriorPathError(f"{name}: is a colour image, not a mask (white tissue on black air); "
                                 "load it as an underlay to trace over it instead")


def threshold_image(image: np.ndarray) -> MaskRead:
    """A decoded image (OpenCV's channel order, any depth) as a 0/255 mask; colour is taken by its luma."""
    alpha = None
    if image.ndim == 3:
        channels = image.shape[2]
        if channels in (2, 4):
            alpha = image[..., -1]
        colour = image[..., : 1 if channels <= 2 else 3]
        image = colour[..., 0] if colour.shape[2] == 1 else colour[..., ::-1]  # BGR -> RGB
    grey = _to_8bit(image)
    if grey.ndim == 3:
        grey = luma(grey)
    tissue = grey > THRESHOLD
    if alpha is not None:
        tissue &= _to_8bit(alpha) > THRESHOLD
    grey_pixels = int(np.count_nonzero((grey != 0) & (grey != 255)))
    return MaskRead(np.where(tissue, 255, 0).astype(np.uint8), grey_pixels)


def _to_8bit(image: np.ndarray) -> np.ndarray:
    top = image.max() if image.size else 0
    if np.issubdtype(image.dtype, np.integer) and top == 1:
        return (image == 1).astype(np.uint8) * 255  # a 0/1 label image
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        scaled = image * 255.0 if top <= 1.0 else image
        return np.clip(np.nan_to_num(scaled), 0, 255).astype(np.uint8)
    return np.clip(image, 0, 255).astype(np.uint8)
