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


def write_pyramid_tiff(path: Path, rgb: np.ndarray, levels: int = 3) -> None:
    """A tiled, deflate-compressed pyramid TIFF that OpenSlide reads as a generic-tiff slide."""
    with tifffile.TiffWriter(path) as tw:
        level = rgb
        for i in range(levels):
            tw.write(level, tile=(256, 256), photometric="rgb", compression="zlib", subfiletype=1 if i else 0)
            level = cv2.resize(level, (level.shape[1] // 2, level.shape[0] // 2), interpolation=cv2.INTER_AREA)


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)
