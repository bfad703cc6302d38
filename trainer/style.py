"""A stain style reference: real H&E tiles named by the user (``--style DIR|FILE...``), read and checked.

A prepared folder (``priorpath prepare`` output), or patches named from one, gives its ``rgb/`` patches
grouped by source image, so a generated tile copies one slide; any other folder or file gives its images as
one group, the style the user picked. Masks, grey images, images too small to hold a block and a reference without tissue are refused with
one line that says which file and why.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import cv2
import numpy as np

from .data.masks import STAIN_THRESHOLDS, luma
from .errors import PriorPathError
from .fileio import decode_image_file, find_files

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
MIN_SIDE = 64  # smaller images hold too few windows to copy from
MAX_PIXELS = 120_000_000  # a reference this large is surely a whole slide at level 0: crop a region


def read_style(paths: Sequence[Union[str, Path]], threshold: int = STAIN_THRESHOLDS["he"]
               ) -> tuple[list[np.ndarray], list[str]]:
    """RGB tiles (HxWx3 uint8) and their group names from style reference paths."""
    if not paths:
        raise PriorPathError("--style: no reference given")
    tiles: list[np.ndarray] = []
    groups: list[str] = []
    for given in map(Path, paths):
        if not given.exists():
            raise PriorPathError(f"--style {given}: no such file or folder")
        prepared = given.is_dir() and (given / "rgb").is_dir() and (given / "manifest.csv").is_file()
        files = find_files([given / "rgb" if prepared else given], IMAGE_SUFFIXES)
        if not files:
            raise PriorPathError(f"--style {given}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) there")
        for f in files:
            tiles.append(_read_tile(f))
            # a prepared patch (named alone, e.g. a cluster's members) keeps its slide as its group
            from_prepared = prepared or (f.parent.name == "rgb" and (f.parent.parent / "manifest.csv").is_file())
            groups.append(f.stem.rsplit("_x", 1)[0] if from_prepared else "style")
    if sum(t.shape[0] * t.shape[1] for t in tiles) > MAX_PIXELS:
        raise PriorPathError(f"--style: the reference holds more than {MAX_PIXELS // 1_000_000} million pixels; "
                             f"give a few regions of a slide, not a whole slide")
    tissue = [float((luma(t) <= threshold).mean()) for t in tiles]
    if max(tissue) == 0:
        raise PriorPathError(f"--style: no tissue in the reference (every pixel is brighter than grey "
                             f"{threshold}); give real H&E tiles")
    return tiles, groups


def _read_tile(path: Path) -> np.ndarray:
    image = decode_image_file(path, cv2.IMREAD_UNCHANGED)
    if image.dtype != np.uint8:
        raise PriorPathError(f"--style {path}: {image.dtype} pixels; an H&E reference is 8-bit RGB")
    if image.ndim == 2 or image.shape[2] == 1 or _is_grey(image):
        levels = len(np.unique(image))
        what = "a mask" if levels <= 2 else "a grey image"
        raise PriorPathError(f"--style {path}: {what}, not an H&E tile (a style reference is a colour image of "
                             f"stained tissue)")
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise PriorPathError(f"--style {path}: {w}x{h} pixels is too small to copy tissue from "
                             f"(at least {MIN_SIDE} a side)")
    return cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB)


def _is_grey(image: np.ndarray) -> bool:
    colour = image[..., :3]
    return bool((colour == colour[..., :1]).all())
