"""Fine and coarse tissue masks from RGB patches (paper §2.1 and §2.3).

Masks are single-channel uint8 arrays: 255 = tissue, 0 = air.
"""
from __future__ import annotations

import cv2
import numpy as np

#: Paper §2.1: a pixel whose grey value is above this is air.
STAIN_THRESHOLDS = {"he": 204, "ihc": 235}

OPEN_KERNEL = 5  # paper §2.3, first stage
CLOSE_KERNEL = 10  # paper §2.3, second stage


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma as uint8, bit-exact with Pillow's ``convert('L')``.

    Pillow uses 16-bit fixed point weights (19595, 38470, 7471) with rounding; matching it keeps our
    masks identical to what most published pipelines (and the paper's likely PIL code) produce.
    """
    if rgb.ndim == 2:
        return rgb.astype(np.uint8, copy=False)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB array, got shape {rgb.shape}")
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def fine_mask(grey: np.ndarray, threshold: int) -> np.ndarray:
    """Tissue (255) where the grey value is at most ``threshold``, air (0) where brighter."""
    return np.where(grey > threshold, 0, 255).astype(np.uint8)


def background_fraction(fine: np.ndarray) -> float:
    return float(np.count_nonzero(fine == 0)) / fine.size


def coarse_mask(fine: np.ndarray, open_size: int = OPEN_KERNEL, close_size: int = CLOSE_KERNEL) -> np.ndarray:
    """Opening with an ``open_size`` square, then closing with a ``close_size`` square (paper §2.3).

    Pixels outside the patch never influence the result (OpenCV's default border for morphology).
    An even square has no centre pixel; OpenCV's ``morphologyEx`` would erode with the same anchor it
    dilated with, which shifts the result by a pixel and can delete tissue. We erode with the mirrored
    anchor instead, so the closing is a true closing: it only ever adds tissue and is idempotent.
    """
    out = _open(fine, open_size)
    return _close(out, close_size)


def _square(size: int) -> np.ndarray:
    return np.ones((size, size), np.uint8)


def _anchors(size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    a = size // 2
    b = size - 1 - a  # the mirrored anchor; equals ``a`` for odd sizes
    return (a, a), (b, b)


def _open(mask: np.ndarray, size: int) -> np.ndarray:
    first, mirrored = _anchors(size)
    k = _square(size)
    eroded = cv2.erode(mask, k, anchor=first)
    return cv2.dilate(eroded, k, anchor=mirrored)


def _close(mask: np.ndarray, size: int) -> np.ndarray:
    first, mirrored = _anchors(size)
    k = _square(size)
    dilated = cv2.dilate(mask, k, anchor=first)
    return cv2.erode(dilated, k, anchor=mirrored)


def otsu_threshold(histogram: np.ndarray) -> int:
    """Otsu's threshold on a 256-bin grey histogram; pixels above it are air.

    Returns the grey value ``t`` that maximises the between-class variance of {<= t} and {> t},
    the same convention as ``skimage.filters.threshold_otsu`` on integer images.
    """
    hist = np.asarray(histogram, dtype=np.float64)
    if hist.shape != (256,):
        raise ValueError("expected a 256-bin histogram")
    levels = np.nonzero(hist)[0]
    if levels.size == 0:
        raise ValueError("empty histogram")
    if levels.size == 1:
        return int(levels[0])
    # Restrict to the occupied range, as skimage does, so ties resolve the same way.
    lo, hi = levels[0], levels[-1]
    h = hist[lo : hi + 1]
    values = np.arange(lo, hi + 1, dtype=np.float64)
    w0 = np.cumsum(h)
    w1 = np.cumsum(h[::-1])[::-1]
    m0 = np.cumsum(h * values) / w0
    m1 = (np.cumsum((h * values)[::-1]) / w1[::-1])[::-1]
    between = w0[:-1] * w1[1:] * (m0[:-1] - m1[1:]) ** 2
    return int(values[int(np.argmax(between))])
