"""Nuclei where a he3 label map says, on a tile of copied real tissue (``quilting_classes``; no Qt).

1. **Paint** (``paint_nuclei``). Real nuclei of the copied tissue that the map does not want are covered with
   stroma copied from beside them (a shifted copy that lands wholly on stroma; else the stroma colour around
   them with their own grain, damped). A wanted nucleus the copy mostly lacks gets a real nucleus of the same
   slide (a *stamp*, ``collect_stamps``: its own pixels, chromatin texture and rim), chosen among those of
   about its area for the most alike elongation, turned to its long axis and stretched along both axes to
   its spreads; what the stamp leaves uncovered, and a wanted nucleus the copy mostly has, take the colour of
   the nearest nuclear pixel. Painted edges are softened over about a pixel, as real nuclei fade out.
2. **Settle** (``settle_nuclei``). A few rounds of adding or removing haematoxylin at the pixels the he3
   rule still labels wrongly: optical density along the haematoxylin stain vector, so the colour moves as
   more or less stain would move it, until the rule agrees or stops improving; tissue is kept at or under
   the air threshold throughout (``keep_tissue``), so air/tissue stays exact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
from scipy import ndimage

from .data.classes import AIR
from .data.labels import NUCLEI, haematoxylin, nuclei_mask, smoothed
from .data.masks import luma

STAMP_AREA = (6, 400)  # px: the nuclei kept as stamps (the rule's smallest blob to a large nucleus at 10x)
STAMPS_PER_GROUP = 4000
STAMP_CHOICES = 24  # a blob's stamp is one of this many of the nearest area ...
STAMP_BEST = 4  # ... drawn among the few most alike in elongation
STAMP_SCALE = (0.6, 1.6)  # stretch along either axis
STAMP_REDDER = 0.08  # blue/red of a stamp's mean colour this far under the slide's median: a red-cell clump
MOSTLY_THERE = 0.5  # a wanted blob the copy covers this much is grown, not stamped
EDGE_SIGMA = 0.8  # px: the softening of painted nucleus edges
ERASE_SHIFTS = np.array([(0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1)])  # x blob size
ERASE_SIGMA = 3.0  # px: the neighbourhood whose stroma colour paints over an unwanted nucleus
SETTLE_ROUNDS = 12
SETTLE_MARGIN = 0.004  # haematoxylin (rgb2hed units) past the threshold a settled pixel lands
LOG_ADJUST = math.log(1e-6)  # skimage's separate_stains scale
H_VECTOR = np.array([0.65, 0.70, 0.29], np.float32)  # rgb_from_hed[0]: optical density of haematoxylin


@dataclass
class Stamps:
    """Real nuclei of one group: crops of RGB and mask, sorted by area, with their shapes (``_shape``)."""

    rgb: list
    mask: list
    area: np.ndarray
    shape: np.ndarray  # n x 5: centroid x, y, angle, spread along and across the long axis

    @property
    def elongation(self) -> np.ndarray:
        return self.shape[:, 3] / self.shape[:, 4]



def collect_stamps(tiles: Sequence[tuple[np.ndarray, np.ndarray]]) -> Stamps:
    """The real nuclei of one slide's (RGB, he3 labels) tiles, away from tile edges, at most ``STAMPS_PER_GROUP``
    (an even spread, small and large alike)."""
    rgbs, masks, areas, shapes = [], [], [], []
    per_tile = -(-STAMPS_PER_GROUP // max(1, len(tiles)))
    for rgb, labels in tiles:
        n, comp, stats, _ = cv2.connectedComponentsWithStats((labels == NUCLEI).astype(np.uint8), connectivity=8)
        h, w = labels.shape
        x, y, bw, bh, area = stats.T
        fit = np.nonzero((area >= STAMP_AREA[0]) & (area <= STAMP_AREA[1]) & (x >= 2) & (y >= 2)
                         & (x + bw <= w - 2) & (y + bh <= h - 2))[0]
        fit = fit[fit > 0]
        if len(fit) > per_tile:  # an even spread over the tile, small and large alike
            fit = fit[np.linspace(0, len(fit) - 1, per_tile).round().astype(int)]
        for c in fit:
            x, y, bw, bh, area = (int(v) for v in stats[c])
            mask = comp[y - 2:y + bh + 2, x - 2:x + bw + 2] == c
            rgbs.append(rgb[y - 2:y + bh + 2, x - 2:x + bw + 2].copy())
            masks.append(mask)
            areas.append(area)
            shapes.append(_shape(mask))
    if areas:  # the rule also takes clumps of red cells for nuclei: stamps far redder than the slide's are left out
        mean = np.array([r.reshape(-1, 3)[m.ravel()].mean(0) for r, m in zip(rgbs, masks)])
        blue = mean[:, 2] / np.maximum(mean[:, 0], 1)
        keep = np.nonzero(blue >= np.median(blue) - STAMP_REDDER)[0]
        if len(keep) > STAMPS_PER_GROUP:
            keep = keep[np.linspace(0, len(keep) - 1, STAMPS_PER_GROUP).round().astype(int)]
        rgbs, masks = [rgbs[i] for i in keep], [masks[i] for i in keep]
        areas, shapes = [areas[i] for i in keep], [shapes[i] for i in keep]
    order = np.argsort(areas, kind="stable")
    return Stamps([rgbs[i] for i in order], [masks[i] for i in order], np.asarray(areas, np.float32)[order],
                  np.asarray(shapes, np.float32).reshape(-1, 5)[order])



def paint_nuclei(out: np.ndarray, target: np.ndarray, t: float, stamps: Stamps, rng: np.random.Generator,
                  air_threshold: int) -> None:
    """Paint over the nuclei the map does not want and put real nuclei where it wants them (in place)."""
    tissue = target != AIR
    want = target == NUCLEI
    have = nuclei_mask(out, tissue, t)
    img = out.astype(np.float32)
    # unwanted nuclei and their dark rim: stroma texture from beside them
    erase = cv2.dilate((have & ~want).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & tissue & ~want
    if erase.any():
        _erase(img, erase, tissue & ~want & ~erase & ~have, rng)
    # wanted nuclei: kept where real, stamped where mostly missing, the rest from the nearest nuclear pixel
    source = want & have
    if want.any() and len(stamps.area):
        n, comp, stats, _ = cv2.connectedComponentsWithStats(want.astype(np.uint8), connectivity=8)
        covered = np.bincount(comp[source], minlength=n)
        for c in np.nonzero(covered < MOSTLY_THERE * stats[:, cv2.CC_STAT_AREA])[0]:
            if c:
                _stamp(img, source, comp, c, stats[c], stamps, rng)
    fill = want & ~source
    if fill.any() and source.any():
        _, (iy, ix) = ndimage.distance_transform_edt(~source, return_indices=True)
        img[fill] = img[iy[fill], ix[fill]]
    # real nuclei fade into their surroundings over a pixel or so: soften the painted edges alike
    edge = cv2.morphologyEx(want.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(bool)
    edge &= tissue
    img[edge] = cv2.GaussianBlur(img, (0, 0), EDGE_SIGMA)[edge]
    out[...] = keep_tissue(img, tissue, air_threshold)


def _erase(img: np.ndarray, erase: np.ndarray, stroma: np.ndarray, rng: np.random.Generator) -> None:
    """Cover each unwanted nucleus with stroma copied from beside it: the first of a few shifted copies that
    lands wholly on stroma, else the Gaussian-weighted stroma colour around it with its own grain, damped."""
    h, w = erase.shape
    n, comp, stats, _ = cv2.connectedComponentsWithStats(erase.astype(np.uint8), connectivity=8)
    left = np.zeros_like(erase)
    for c in range(1, n):
        x, y, bw, bh, _ = (int(v) for v in stats[c])
        ys, xs = np.nonzero(comp[y:y + bh, x:x + bw] == c)
        ys, xs = ys + y, xs + x
        for dy, dx in ERASE_SHIFTS[rng.permutation(len(ERASE_SHIFTS))]:
            sy, sx = ys + dy * max(bh, 4), xs + dx * max(bw, 4)
            if sy.min() >= 0 and sx.min() >= 0 and sy.max() < h and sx.max() < w and stroma[sy, sx].all():
                img[ys, xs] = img[sy, sx]
                break
        else:
            left[ys, xs] = True
    if left.any():
        good = stroma.astype(np.float32)
        num = cv2.GaussianBlur(img * good[..., None], (0, 0), ERASE_SIGMA)
        den = cv2.GaussianBlur(good, (0, 0), ERASE_SIGMA)[..., None]
        fallback = img[stroma].mean(0) if stroma.any() else img[left].mean(0)
        local = np.where(den > 0.02, num / np.maximum(den, 1e-6), fallback)
        grain = img - cv2.GaussianBlur(img, (0, 0), 1.5)
        img[left] = local[left] + 0.5 * grain[left]


def _shape(mask: np.ndarray) -> tuple[float, float, float, float, float]:
    """A blob's centroid (x, y), long-axis angle (radians, image axes) and spreads along and across it."""
    m = cv2.moments(mask.astype(np.uint8), binaryImage=True)
    a, b, c = m["mu20"] / m["m00"], m["mu11"] / m["m00"], m["mu02"] / m["m00"]
    half, root = (a + c) / 2, math.sqrt(((a - c) / 2) ** 2 + b * b)
    return (m["m10"] / m["m00"], m["m01"] / m["m00"], 0.5 * math.atan2(2 * b, a - c),
            math.sqrt(max(half + root, 0.25)), math.sqrt(max(half - root, 0.25)))


def _stamp(img: np.ndarray, source: np.ndarray, comp: np.ndarray, c: int, stat: np.ndarray, stamps: Stamps,
           rng: np.random.Generator) -> None:
    """Paint component ``c`` of the wanted nuclei with a real nucleus of similar size and shape, turned and
    stretched along its axes to fit (in place)."""
    x, y, bw, bh, area = (int(v) for v in stat)
    pad = 3
    y0, x0 = max(0, y - pad), max(0, x - pad)
    y1, x1 = min(img.shape[0], y + bh + pad), min(img.shape[1], x + bw + pad)
    blob = comp[y0:y1, x0:x1] == c
    bx, by, angle, major, minor = _shape(blob)
    near = np.searchsorted(stamps.area, area)
    lo = max(0, min(near - STAMP_CHOICES // 2, len(stamps.area) - STAMP_CHOICES))
    pool = np.arange(lo, min(lo + STAMP_CHOICES, len(stamps.area)))
    # the most alike in elongation among those of about the same area, drawn among the best few
    misfit = np.abs(np.log(stamps.elongation[pool] / (major / minor)))
    k = int(pool[np.argsort(misfit)[:STAMP_BEST]][rng.integers(min(STAMP_BEST, len(pool)))])
    sx, sy, s_angle, s_major, s_minor = stamps.shape[k]
    scale = np.clip([major / s_major, minor / s_minor], *STAMP_SCALE)
    to_axes = np.array([[math.cos(-s_angle), -math.sin(-s_angle)], [math.sin(-s_angle), math.cos(-s_angle)]])
    back = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    linear = back @ np.diag(scale) @ to_axes
    matrix = np.concatenate([linear, (np.array([bx, by]) - linear @ np.array([sx, sy]))[:, None]], 1)
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(stamps.rgb[k].astype(np.float32), matrix, size, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpAffine(stamps.mask[k].astype(np.float32), matrix, size, flags=cv2.INTER_LINEAR) > 0.5
    paint = inside & blob
    img[y0:y1, x0:x1][paint] = warped[paint]
    source[y0:y1, x0:x1] |= paint


def settle_nuclei(out: np.ndarray, target: np.ndarray, t: float, air_threshold: int) -> None:
    """Move haematoxylin at the pixels the rule still labels wrongly until it labels them right (in place).

    Adding haematoxylin h multiplies RGB by exp(LOG_ADJUST * h * H_VECTOR): the rgb2hed reading goes up by h,
    eosin stays. The rule reads haematoxylin smoothed (sigma 0.7 px), so a pixel gets its shortfall over
    about half its weight in the smoothing; a few rounds settle what the neighbours' changes move back."""
    tissue = target != AIR
    want = target == NUCLEI
    left = None
    for _ in range(SETTLE_ROUNDS):
        h = haematoxylin(out)
        got = nuclei_mask(out, tissue, t, h=h)
        under, over = want & ~got, tissue & ~want & got
        wrong = int(under.sum() + over.sum())
        if left is not None and wrong >= left:  # none left, or stuck: tissue too pale to lose more stain
            return
        left = wrong
        hs = smoothed(h)
        delta = np.zeros(h.shape, np.float32)
        delta[under] = 2.0 * (t + SETTLE_MARGIN - hs[under])
        # a stroma pixel the rule calls nucleus: less stain there and in the pixels it is smoothed with
        ring = cv2.dilate(over.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & tissue & ~want
        delta[ring] = np.minimum(delta[ring], 2.0 * (t - SETTLE_MARGIN - hs[ring]))
        delta[over] = np.minimum(delta[over], 2.0 * (t - SETTLE_MARGIN - hs[over]))
        img = out.astype(np.float32) + 0.5
        img *= np.exp(LOG_ADJUST * delta[..., None] * H_VECTOR)
        out[...] = keep_tissue(img - 0.5, tissue, air_threshold)


def keep_tissue(img: np.ndarray, tissue: np.ndarray, air_threshold: int) -> np.ndarray:
    """Rounded uint8 with every tissue pixel at or under the air threshold (darkened evenly where a paint
    or a removal of stain lifted it over), so air/tissue stays exact."""
    fixed = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    over = tissue & (luma(fixed) > air_threshold)
    if over.any():  # the same amount off R, G and B: luma lands on the threshold, the hue stays
        lift = luma(fixed[over][None])[0].astype(np.float32) - air_threshold
        fixed[over] = np.clip(np.rint(fixed[over] - lift[:, None]), 0, 255).astype(np.uint8)
    for _ in range(255):  # rounding and clipping at 0 can leave one short: step on
        over = tissue & (luma(fixed) > air_threshold)
        if not over.any():
            break
        fixed[over] = np.clip(fixed[over].astype(np.int16) - 1, 0, 255).astype(np.uint8)
    return fixed
