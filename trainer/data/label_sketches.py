"""Sketches as label maps: reading them for a class table, and augmenting them like binary sketches.

``augment_labels`` is ``sketches.augment_sketch`` for a label map: the same parameters drawn from the same
generator, so the tissue outline of an augmented label map is exactly the augmented binary sketch of its
tissue; inside it, each pixel takes the class whose warped area is largest there (classes moved by the same
warp, grown by the same dilation).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Union

import cv2
import numpy as np

from ..errors import PriorPathError
from .classes import AIR, ClassTable
from .dataset import resize_labels
from .sketches import _BORDERS, MAX_ATTEMPTS, SketchSet, _draw_params, fit_to_size, flipped, jittered, warp_maps


def read_label_sketches(paths: Iterable[Union[str, Path]], table: ClassTable, size: tuple[int, int],
                        stop_at_first: bool = False) -> SketchSet:
    """Every label map among ``paths`` that fits ``table``, resized to ``size``; the others skipped, each
    with its reason (``stop_at_first``: the first one stops the run)."""
    from ..generate import read_label_input

    kept, maps, skipped = [], [], []
    for path in (Path(p) for p in paths):
        try:
            labels = read_label_input(path, table)
            if not (labels != AIR).any():
                raise PriorPathError(f"{path}: the label map is all air; draw some tissue first")
        except PriorPathError as exc:
            if stop_at_first:
                raise
            skipped.append(str(exc))
            continue
        kept.append(path)
        maps.append(resize_labels(labels, size))
    if not kept:
        shown = "; ".join(skipped[:5]) + (f"; and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        raise PriorPathError(f"none of the label map sketches could be used: {shown}")
    return SketchSet(kept, maps, skipped)


def augment_labels(labels: np.ndarray, size: tuple[int, int], rng: np.random.Generator,
                   n_classes: int) -> tuple[np.ndarray, dict]:
    """One random augmentation of a label map, at ``size``, and its parameters (as ``augment_sketch``, whose
    output for the map's tissue mask, from the same generator, is exactly the tissue of this one)."""
    h, w = int(size[0]), int(size[1])
    labels = np.asarray(labels, np.uint8)
    tissue = fit_to_size(np.where(labels != AIR, 255, 0).astype(np.uint8), (h, w)).astype(np.float32)
    shares = [fit_to_size(np.where(labels == c, 255, 0).astype(np.uint8), (h, w)).astype(np.float32)
              for c in range(1, n_classes)]
    for attempt in range(MAX_ATTEMPTS):
        params = _draw_params(rng, h, w)
        out = _apply(tissue, shares, params, rng)
        if (out != AIR).any():
            params["attempt"] = attempt
            return out, params
    plain = tissue > 127 if (tissue > 127).any() else tissue > 0
    return np.where(plain, np.argmax(shares, 0) + 1, AIR).astype(np.uint8), {"fallback": True, "attempt": MAX_ATTEMPTS}


def _apply(tissue: np.ndarray, shares: list, p: dict, rng: np.random.Generator) -> np.ndarray:
    """``sketches._apply`` on the tissue, and the same warp (and dilation) on every class's share."""
    tissue = flipped(tissue, p)
    map_x, map_y = warp_maps(tissue.shape, p, rng)

    def warp(channel: np.ndarray) -> np.ndarray:
        return cv2.remap(flipped(channel, p), map_x, map_y, cv2.INTER_LINEAR, borderMode=_BORDERS[p["border"]],
                         borderValue=0)

    inside = jittered(np.where(cv2.remap(tissue, map_x, map_y, cv2.INTER_LINEAR, borderMode=_BORDERS[p["border"]],
                                         borderValue=0) > 127, 255, 0).astype(np.uint8), p) > 0
    moved = np.stack([jittered(warp(c), p) if p["morph"] == "dilate" else warp(c) for c in shares])
    return np.where(inside, moved.argmax(0) + 1, AIR).astype(np.uint8)
