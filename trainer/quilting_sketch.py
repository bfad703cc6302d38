"""Binary sketch -> (fine mask, H&E tile) in one pass by copying real tissue (no Qt, no training).

The binary pipeline draws a fine mask first (the mask model) and then makes a quilt obey it, which means
moving about a third of the pixels across the paper's air threshold (``quilting._make_label_exact``); those
moves are what keeps the realism benchmark at 1.5x its floor. Here the quilt follows the *coarse* sketch
instead, and the fine mask is read from the tile by the paper's rule (luma above the threshold = air):

1. Every library tile's coarse mask is made by the rule that made the training sketches
   (``masks.coarse_mask`` of its fine mask), and windows are described by it (``quilting.WindowIndex``).
2. Blocks of ``SKETCH_BLOCK`` px are chosen by how many pixels of the window's coarse mask disagree with the
   sketch and by colour agreement with the neighbours, and pasted along minimum-error cuts.
3. Tissue further than ``AIR_MARGIN`` px into the sketch's air is faded to the slide's glass (``clear_air``).
4. The fine mask is the rule applied to the tile: the tile's exact label by construction. Nothing is painted.

The class-aware variant (he3 label maps) is ``quilting_classes.synthesize_from_coarse``.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import cv2
import numpy as np
import torch

from . import quilting
from .data.masks import coarse_mask, luma
from .quilting import Library, QuiltSettings, Synthesis, WindowIndex, block_grid, group_index

SKETCH_BLOCK = 48  # px: blocks small enough to follow a sketch's outline (as the class variant)
SKETCH_CANDIDATES = 48
COARSE_WEIGHT = 4.0  # weight of the share of coarse pixels that disagree, against the overlap colour error
AIR_MARGIN = 3.0  # px: tissue this close to the sketch's tissue is its fine edge
DEEP = 3.0  # px further in, cleared tissue is the slide's glass in full
GLASS_LUMA = 224  # a library pixel this bright ...
GLASS_GREY = 16  # ... and this grey (channels at most this far apart) is glass
DEFAULT_GLASS = (242, 242, 242)  # a slide without glass in the library


def sketch_settings(settings: QuiltSettings) -> QuiltSettings:
    """The library's settings with sketch-sized blocks and more candidates (a sketch constrains less)."""
    block = min(settings.block, SKETCH_BLOCK)
    return dataclasses.replace(settings, block=block, overlap=min(settings.overlap, block // 4),
                               candidates=max(settings.candidates, SKETCH_CANDIDATES))


class SketchIndex:
    """The coarse masks of a binary library's tiles, a window index on them and each slide's glass colour."""

    def __init__(self, library: Library):
        self.settings = s = sketch_settings(library.settings)
        self.coarse = np.concatenate([coarse_mask(library.tile_mask(t).astype(np.uint8) * 255).ravel() > 0
                                      for t in range(len(library))])
        self._library = library
        self.index = WindowIndex(library, s.block, s.block // 6, mask_of=self.tile_coarse)
        self.glass = glass_colours(library)

    def tile_coarse(self, t: int) -> np.ndarray:
        lib = self._library
        h, w = lib.shapes[t]
        return self.coarse[lib.offsets[t]:lib.offsets[t] + h * w].reshape(h, w)


def glass_colours(library: Library) -> np.ndarray:
    """Per group: the median colour of its glass pixels (every 5th pixel looked at), or ``DEFAULT_GLASS``."""
    spread = library.pixels.max(1).astype(np.int16) - library.pixels.min(1)
    bright = (library.margin >= GLASS_LUMA - library.settings.threshold) & (spread <= GLASS_GREY)
    pixel_group = np.repeat(library.tile_group, library.shapes.prod(1))[::5]
    sample, sample_bright = library.pixels[::5], bright[::5]
    return np.array([np.median(sample[sample_bright & (pixel_group == g)], 0)
                     if (sample_bright & (pixel_group == g)).any() else DEFAULT_GLASS
                     for g in range(len(library.group_names))], np.float32)


def synthesize_from_sketch(library: Library, sketch_index: SketchIndex, coarse: np.ndarray,
                           rng: np.random.Generator, group: Optional[str] = None) -> tuple[np.ndarray, Synthesis]:
    """A coarse mask (HxW, tissue > 0) -> (fine mask 0/255, tile) whose fine mask is the rule's reading."""
    s = sketch_index.settings
    coarse = np.asarray(coarse) > 0
    h0, w0 = coarse.shape
    b = s.block
    padded, blocks = block_grid(coarse, s)
    ny, nx = blocks.shape[:2]
    g = library.pick_group(coarse, rng) if group is None else group_index(library.group_names, group)
    gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
    cand = sketch_index.index.nearest(blocks.reshape(-1, b, b), g, s.candidates, gen).reshape(ny, nx, -1, 3)

    def mismatch(where: np.ndarray, target: np.ndarray) -> np.ndarray:
        return COARSE_WEIGHT * (sketch_index.coarse[where] != target).mean((-2, -1))

    src = quilting._choose(library, blocks, cand, rng, mismatch, s)
    out = np.ascontiguousarray(quilting._quilt(library, src, padded.shape, s)[0][:h0, :w0])
    cleared = clear_air(out, coarse, library.settings.threshold, sketch_index.glass[g])
    fine = np.where(luma(out) <= library.settings.threshold, 255, 0).astype(np.uint8)
    return fine, Synthesis(out, library.group_names[g], cleared)


def clear_air(out: np.ndarray, sketch_tissue: np.ndarray, threshold: int, glass: np.ndarray) -> float:
    """Copied tissue where the sketch says air, more than ``AIR_MARGIN`` px from its tissue, faded toward the
    slide's glass (in place): just past the air threshold at the margin, glass ``DEEP`` px further in. The
    coarse rule smooths a real mask's outline by about that margin, so tissue within it is the sketch's own
    fine edge and stays. Returns the fraction of pixels changed."""
    outside = (~np.asarray(sketch_tissue, bool)).astype(np.uint8)
    depth = cv2.distanceTransform(outside, cv2.DIST_L2, 3) - AIR_MARGIN
    lum = luma(out).astype(np.float32)
    move = (depth > 0) & ((lum <= threshold) | (depth > 1))
    if not move.any():
        return 0.0
    img = out.astype(np.float32)
    c, lc = img[move], lum[move]
    goal = threshold + 1 + quilting.CORRECTION_MARGIN
    lg = float(np.asarray(glass, np.float32) @ quilting.LUMA_WEIGHTS)
    reach = np.where(lc < goal, (goal - lc) / np.maximum(lg - lc, 1e-3), 0.0)
    t = np.clip(np.maximum(reach, depth[move] / DEEP), 0, 1)
    img[move] = c + t[:, None] * (np.asarray(glass, np.float32) - c)
    fixed = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    for _ in range(255):  # rounding or a pale glass colour: step on until the rule calls it air
        off = move & (luma(fixed) <= threshold)
        if not off.any():
            break
        fixed[off] = np.clip(fixed[off].astype(np.int16) + 1, 0, 255).astype(np.uint8)
    changed = np.any(fixed != out, -1)
    out[...] = fixed
    return float(changed.mean())
