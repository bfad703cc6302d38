"""What the cluster browser shows of one cluster member, loaded in workers; Qt-free.

A member of a binary clustering has its fine mask, its coarse mask (derived from the fine one the way
``prepare`` makes it when the folder has no ``coarse/``) and maybe its RGB patch. A member of a label-map
clustering (``ClusterResult.has_labels``) also has its fine and coarse label maps; its previews and its
underlay are the label maps in the class colours, and its sketch is the coarse label map with the class table.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from trainer.clusters import (ClusterResult, member_labels, member_thumbnail, mosaic, read_image, read_mask,
                              thumbnail)
from trainer.data.classes import tissue_of
from trainer.data.masks import coarse_mask
from trainer.jobs import CancelToken, ProgressFn, check

EXEMPLARS_PER_TILE = 3
TILE_CELL = (36, 72)  # (h, w) of one exemplar inside a cluster tile
MEMBER_THUMB = (48, 96)
PREVIEW = (110, 220)
ALL_TISSUE = "this coarse mask is all tissue: there is no layout to sketch from"
NO_TISSUE = "this coarse mask has no tissue: draw some to see a fine mask"
SKETCH_TIP = "Replace the canvas with this coarse mask (undoable)"
LABEL_SKETCH_TIP = ("Draw from this coarse label map in its classes: it replaces a sketch drawn in the same "
                    "classes (undoable), else it becomes a new class sketch")


def sketch_start_problem(coarse: np.ndarray) -> Optional[str]:
    """Why a coarse mask makes a poor starting sketch (all tissue or no tissue: no preview to see), or None."""
    if not coarse.any():
        return NO_TISSUE
    if coarse.all():
        return ALL_TISSUE
    return None


def cluster_tiles(result: ClusterResult, progress: ProgressFn, cancel: CancelToken) -> list[np.ndarray]:
    """One picture per cluster: its first exemplars (nearest the centroid), one above the other."""
    tiles = []
    for c in range(result.k):
        check(cancel)
        progress(c, result.k, "loading exemplars")
        exemplars = [member_thumbnail(result, stem, TILE_CELL) for stem in result.members(c)[:EXEMPLARS_PER_TILE]]
        tiles.append(mosaic(exemplars, columns=1))
    return tiles


def page_job(result: ClusterResult, cluster: int, page: int, stems: list[str]):
    """``fn -> (result, cluster, page, [(stem, thumbnail)])`` for one page of a cluster."""
    def run(progress: ProgressFn, cancel: CancelToken):
        thumbs = []
        for i, stem in enumerate(stems):
            check(cancel)
            progress(i, len(stems), stem)
            thumbs.append((stem, member_thumbnail(result, stem, MEMBER_THUMB)))
        return result, cluster, page, thumbs
    return run


def member_images(result: ClusterResult, stem: str, cancel: Optional[CancelToken] = None) -> dict[str, np.ndarray]:
    """Full-size images of one member: "fine" and "coarse" (0/255 masks), "rgb" when the folder has it, and for
    a label-map clustering "labels" and "coarse_labels" (class ids of ``result.classes``, whose tissue the
    masks are)."""
    images = {}
    if result.has_labels:
        images["labels"] = member_labels(result, stem, "labels")
        check(cancel)
        images["coarse_labels"] = member_labels(result, stem, "coarse_labels")
        images["fine"], images["coarse"] = tissue_of(images["labels"]), tissue_of(images["coarse_labels"])
    else:
        images["fine"] = read_mask(result.path(stem, "fine"))
        check(cancel)
        coarse = result.path(stem, "coarse")
        images["coarse"] = read_mask(coarse) if coarse.is_file() else coarse_mask(images["fine"])
    check(cancel)
    rgb = result.path(stem, "rgb")
    if rgb.is_file():
        images["rgb"] = read_image(rgb, "rgb")
    return images


def shown(result: ClusterResult, images: dict[str, np.ndarray], kind: str) -> np.ndarray:
    """What stands for a member's ``kind`` ("fine", "coarse", "rgb"): a label map in the class colours when
    the member has one, else the image itself."""
    source = {"fine": "labels", "coarse": "coarse_labels"}.get(kind)
    if source in images:
        return result.classes.colourise(images[source])
    return images[kind]


def member_job(result: ClusterResult, stem: str):
    """``fn -> (stem, images, {"fine", "coarse", "rgb"?: preview image}, class table or None)``; ``images`` as
    ``member_images``."""
    def run(progress: ProgressFn, cancel: CancelToken):
        images = member_images(result, stem, cancel)
        previews = {kind: thumbnail(shown(result, images, kind), PREVIEW)
                    for kind in ("fine", "coarse", "rgb") if kind in images}
        return stem, images, previews, result.classes
    return run
