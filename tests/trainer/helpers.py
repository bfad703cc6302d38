"""Small helpers shared by the trainer tests (independent of the code under test)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import Image


def tcga_region(data_dir: Path, box=(0, 0, 3100, 2100)) -> np.ndarray:
    """A region of the TCGA frozen section, which the bundled sample does not contain."""
    path = next((data_dir / "tcga_hnsc_frozen_TCGA-CR-7395").iterdir())
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").crop(box))


APERIO_DESCRIPTION = "Aperio Image Library v12.0.15\n{w}x{h} [0,0 {w}x{h}] (256x256) RGB|AppMag = 20|MPP = 0.499"


def write_pyramid_tiff(path: Path, rgb: np.ndarray, levels: int = 3, aperio: bool = False) -> None:
    """A tiled, deflate-compressed pyramid TIFF; OpenSlide reads it as generic-tiff, or as an Aperio SVS
    slide when ``aperio`` gives it the ImageDescription Aperio scanners write."""
    with tifffile.TiffWriter(path) as tw:
        level = rgb
        for i in range(levels):
            h, w = level.shape[:2]
            description = APERIO_DESCRIPTION.format(w=w, h=h) if aperio else None
            tw.write(level, tile=(256, 256), photometric="rgb", compression="zlib", subfiletype=1 if i else 0,
                     description=description, metadata=None)
            level = cv2.resize(level, (level.shape[1] // 2, level.shape[0] // 2), interpolation=cv2.INTER_AREA)


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)
