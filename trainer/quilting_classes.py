"""Fine he3 label map -> H&E tile by copying real tissue, with nuclei where the map says (no Qt, no training).

The binary quilt (``trainer/quilting.py``) makes the paper's air rule give back a fine mask exactly. This
module does the same for the three classes of ``prepare --labels he3`` (``trainer.data.labels``): the he3
rule applied to the output, with the source slide's nuclei threshold, gives back the fine label map: air and
tissue exactly, nuclei as closely as the rule's smoothing and blob cleaning allow.

1. **Library labels.** Every library tile is labelled by the he3 rule on its decoded pixels, with one nuclei
   threshold per group (slide): Otsu's threshold of that group's library tiles (``labels.nuclei_threshold``).
2. **Candidates by class layout.** Windows are described by their per-class pooled one-hot layout (stroma and
   nuclei each averaged to 8x8, nuclei weighted ``NUCLEI_FEATURE_WEIGHT``); a block's candidates are the
   nearest windows of the tile's group, plus the windows continuing its left and top neighbours.
3. **Choice** by the correction a window needs: the mean luma change for air/tissue (as the binary quilt,
   except that air wants glass: a pixel the map calls air costs until it is as bright as glass,
   ``GLASS_LUMA``, so pale tissue is not passed off as air), plus ``nuclei_weight`` x the fraction of pixels
   whose nuclei/stroma class disagrees with the map, plus the colour error against the neighbours in the
   overlap; drawn among the near-best. The slide is drawn by how well its glass, stroma and nuclei fractions
   cover the map's. Blocks are pasted along minimum-error cuts.
   **Air/tissue exact** (``_make_air_exact``): a pixel on the wrong side of the air threshold moves toward
   the slide's glass colour or the colour of the tissue around it: just across the threshold at a region's
   edge, all the way ``DEEP`` pixels inside it, so the map's holes look like glass, not bleached tissue.
4. **Nuclei where the map says** (``trainer/nuclei_paint.py``): unwanted nuclei of the copy painted over with
   stroma, wanted ones stamped with real nuclei of the same slide (turned and stretched to the blob), then a
   few rounds of adding or removing haematoxylin until the rule agrees.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from . import quilting
from .data.classes import AIR
from .data.labels import NUCLEI, STROMA, coarse_labels, haematoxylin, he3_labels, nuclei_threshold
from .data.masks import luma
from .errors import PriorPathError
from .nuclei_paint import collect_stamps, paint_nuclei, settle_nuclei
from .quilting import Library, QuiltSettings

NUCLEI_FEATURE_WEIGHT = 2.0  # nuclei layout counts this much more than stroma layout in the search
GLASS_LUMA = 224  # a library pixel this bright is glass; paler "air" by the rule is tissue too pale to count
GLASS_GREY = 16  # ... and this close to grey (channels at most this far apart): pale pink tissue is not glass
DEFAULT_GLASS = (242, 242, 242)  # a slide without any glass in the library
DEEP = 3.0  # px: a pixel this far inside the region it must join takes that region's colour in full
CORRECTION_SIGMA = 4.0  # px: the neighbourhood whose tissue colour a pixel that must become tissue takes
AIR_MARGIN = 3.0  # px: tissue this close to the sketch's tissue is its fine edge (sketch -> tile)
SKETCH_BLOCK = 48  # px: sketch -> tile blocks (benchmarks/class_generation.py: sketch agreement against 64 and 96)
SKETCH_CANDIDATES = 48
MAX_POOL = 12000  # windows searched per block: a random sample of a large group keeps the search linear in area
FIT_SAMPLE = 3000  # windows a group sampled to tell how well it fits a sketch
FIT_SCALE = 0.03  # per-feature distance at which a slide's weight falls by e
UNIFORM_SUPPLY = 4  # a slide should hold this many windows mostly of a class per sketch block mostly of it
SKETCH_CLASS_WEIGHTS = np.array([1.0, 1.0, 3.0], np.float32)  # air, stroma, nuclei-dense pixels of a sketch
REUSE_PENALTY = 0.1  # cost per earlier paste of the same window (as 2.5 % more of a block's coarse class wrong)
TIE_BREAK = 1e-6  # below any difference of real layouts (one 6x6 cell differing by one pixel: 1/36^2 ~ 8e-4)
COARSE_WEIGHT = 4.0  # weight of the coarse-class disagreement against the overlap colour error (sketch -> tile)


@dataclass
class LabelSynthesis:
    rgb: np.ndarray  # HxWx3 uint8
    group: str  # the source slide
    nuclei_threshold: float  # the he3 rule's threshold for this slide: he3_labels(rgb, it) gives the map back
    corrected: float  # fraction of pixels moved across the air threshold
    painted: float  # fraction of pixels whose nuclei/stroma colour was painted or settled


class LabelLibrary:
    """A quilting ``Library`` plus he3 labels of its pixels, a class-layout window index and nucleus stamps."""

    def __init__(self, tiles: Sequence[np.ndarray], groups: Sequence[str], settings: QuiltSettings,
                 nuclei_weight: float = 1.0):
        self.base = base = Library(tiles, groups, settings)
        self.settings, self.nuclei_weight = base.settings, nuclei_weight
        n_groups = len(base.group_names)
        members = [np.nonzero(base.tile_group == g)[0] for g in range(n_groups)]
        hs = [haematoxylin(base.tile_rgb(t)) for t in range(len(base))]
        air = settings.threshold
        self.thresholds = np.array([nuclei_threshold([base.tile_rgb(t) for t in m], air) for m in members])
        self.labels = np.concatenate([he3_labels(base.tile_rgb(t), self.thresholds[base.tile_group[t]], air,
                                                 h=hs[t]).ravel() for t in range(len(base))])
        counts = np.stack([np.bincount(self.tile_labels(t).ravel(), minlength=3)[:3] for t in range(len(base))])
        spread = base.pixels.max(1).astype(np.int16) - base.pixels.min(1)
        bright = (base.margin >= GLASS_LUMA - settings.threshold) & (spread <= GLASS_GREY)
        glass = np.add.reduceat(bright, base.offsets)  # glass pixels per tile
        counts[:, AIR] = glass  # what covers a map's air is glass, not tissue pale enough to pass the rule
        self.group_fractions = np.stack([counts[m].sum(0) / max(1, counts[m].sum()) for m in members])
        # each slide's glass colour: the median of its glass pixels (every 5th is enough)
        pixel_group = np.repeat(base.tile_group, base.shapes.prod(1))[::5]
        sample, sample_bright = base.pixels[::5], bright[::5]
        self.glass = np.array([np.median(sample[sample_bright & (pixel_group == g)], 0)
                               if (sample_bright & (pixel_group == g)).any() else DEFAULT_GLASS
                               for g in range(n_groups)], np.float32)
        self.index = LabelWindowIndex(self, self.settings.block, self.settings.block // 6)
        self._coarse_index, self.coarse, self.coarse_fractions, self.uniform_windows = None, None, None, None
        self.stamps = [collect_stamps([(base.tile_rgb(t), self.tile_labels(t)) for t in m]) for m in members]

    @property
    def group_names(self) -> list[str]:
        return self.base.group_names

    def sketch_settings(self) -> QuiltSettings:
        """Blocks for sketch -> tile: smaller than the library's (``SKETCH_BLOCK``), so the tile follows the
        sketch's class layout more closely, with more candidates, as a sketch constrains less than a fine map."""
        s = self.settings
        block = min(s.block, SKETCH_BLOCK)
        return dataclasses.replace(s, block=block, overlap=min(s.overlap, block // 4),
                                   candidates=max(s.candidates, SKETCH_CANDIDATES))

    def coarse_index(self) -> "LabelWindowIndex":
        """Windows described by the coarse label map of their tile (``labels.coarse_labels``, the rule that
        made the training sketches), built on first use: only sketch -> tile generation needs it."""
        if self._coarse_index is None:
            base = self.base
            self.coarse = np.concatenate([coarse_labels(self.tile_labels(t)).ravel() for t in range(len(base))])
            block = self.sketch_settings().block
            self._coarse_index = LabelWindowIndex(self, block, block // 6,
                                                  labels_of=self.tile_coarse)
            # windows mostly (half or more) of one coarse class, per group and class: what such blocks draw from
            feats = self._coarse_index.features.numpy()
            cells = feats.shape[1] // 2
            stroma, nuclei = feats[:, :cells], feats[:, cells:] / NUCLEI_FEATURE_WEIGHT
            air = 1 - stroma - nuclei
            group = base.tile_group[self._coarse_index.windows[:, 0]]
            # [mostly, only] x class: windows at least half of a class, and windows of that class throughout
            self.uniform_windows = np.stack([np.stack([np.bincount(group[m], minlength=len(base.group_names))
                                                       for m in (share.mean(1) >= 0.5, share.min(1) > 0.999)])
                                             for share in (air, stroma, nuclei)], -1).transpose(1, 0, 2)  # G x 2 x 3
            counts = np.stack([np.bincount(self.tile_coarse(t).ravel(), minlength=3)[:3] for t in range(len(base))])
            self.coarse_fractions = np.stack([counts[base.tile_group == g].sum(0) / max(1, counts[
                base.tile_group == g].sum()) for g in range(len(base.group_names))])
        return self._coarse_index

    def tile_coarse(self, t: int) -> np.ndarray:
        return self.base.tile_view(self.coarse, t)

    def tile_labels(self, t: int) -> np.ndarray:
        return self.base.tile_view(self.labels, t)

    def pick_group(self, target: np.ndarray, rng: np.random.Generator, fractions: Optional[np.ndarray] = None,
                   supply: Optional[np.ndarray] = None) -> int:
        """A group (slide) drawn by area and by how well its class fractions (``fractions``, default: of the
        fine labels) cover the map's: a slide with a tenth of the glass a map asks for would fill the rest with
        tissue bleached past the air threshold. Each class the map holds weighs (group fraction / map
        fraction, at most 1) squared; ``supply`` (per group, at most 1) multiplies in."""
        fractions = self.group_fractions if fractions is None else fractions
        want = np.bincount(np.asarray(target).ravel(), minlength=3)[:3] / max(1, np.asarray(target).size)
        cover = np.where(want > 0, np.minimum(1.0, fractions / np.maximum(want, 1e-9)), 1.0)
        weights = self.base.group_area * (cover ** 2).prod(1) * (1.0 if supply is None else supply)
        weights = weights if weights.sum() > 0 else self.base.group_area
        return int(rng.choice(len(weights), p=weights / weights.sum()))


class LabelWindowIndex:
    """Windows of the library on a grid, described by their class layout (stroma and nuclei fractions averaged
    to 8x8) of the fine labels, or of ``labels_of(t)`` (its coarse labels), and searched by nearest layout."""

    def __init__(self, library: LabelLibrary, block: int, grid: int, labels_of=None):
        base = library.base
        labels_of = labels_of or library.tile_labels
        self.block, self.pool = block, max(2, block // 8)
        pool = self.pool
        grid = max(grid, pool) // pool * pool
        pos, feats = [], []
        for t in range(len(base)):
            h, w = base.shapes[t]
            if min(h, w) < block:
                continue
            hh, ww = h // pool * pool, w // pool * pool
            small = self._layout(labels_of(t)[None, :hh, :ww])
            k, stride = block // pool, grid // pool
            feats.append(F.unfold(small, k, stride=stride)[0].T)
            ny, nx = (hh // pool - k) // stride + 1, (ww // pool - k) // stride + 1
            ys, xs = np.meshgrid(np.arange(ny) * grid, np.arange(nx) * grid, indexing="ij")
            pos.append(np.stack([np.full(ys.size, t), ys.ravel(), xs.ravel()], 1))
        if not pos:
            raise PriorPathError(f"quilt library: no tile of at least {block}x{block} pixels")
        self.windows = np.concatenate(pos).astype(np.int64)
        self.features = torch.cat(feats).contiguous()
        self.norms = (self.features * self.features).sum(1)
        group = base.tile_group[self.windows[:, 0]]
        self.pools = {int(g): torch.from_numpy(np.nonzero(group == g)[0]) for g in np.unique(group)}

    def _layout(self, labels: np.ndarray) -> torch.Tensor:
        """N x H x W ids -> N x 2 x H/pool x W/pool: stroma and (weighted) nuclei fractions."""
        x = torch.from_numpy(np.stack([labels == STROMA, labels == NUCLEI], 1)).float()
        x[:, 1] *= NUCLEI_FEATURE_WEIGHT
        return F.avg_pool2d(x, self.pool)

    def group_fit(self, blocks: np.ndarray, n_groups: int) -> np.ndarray:
        """n_groups x N: the distance (per feature) from each of the N x b x b label blocks to the group's
        nearest window (inf for a group without windows), on an even sample of ``FIT_SAMPLE`` windows a
        group: how well a slide can draw each part of a layout at all."""
        qf = self._layout(np.ascontiguousarray(blocks)).flatten(1)
        qn = (qf * qf).sum(1, keepdim=True)
        fit = np.full((n_groups, len(blocks)), np.inf)
        for g, pool in self.pools.items():
            sample = pool[torch.linspace(0, len(pool) - 1, min(len(pool), FIT_SAMPLE)).long()]
            d = qn + self.norms[sample][None] - 2 * qf @ self.features[sample].T
            fit[g] = d.min(1).values.clamp(min=0).numpy() / qf.shape[1]
        return fit

    def nearest(self, blocks: np.ndarray, group: int, k: int, gen: torch.Generator) -> np.ndarray:
        """N x k windows (tile, y, x) of ``group`` whose class layouts are nearest the N x b x b label blocks."""
        pool = self.pools.get(group)
        if pool is None:
            pool = torch.arange(len(self.windows))
        pool = pool[torch.randperm(len(pool), generator=gen)[:MAX_POOL]]  # random order: ties broken at random
        qf = self._layout(np.ascontiguousarray(blocks)).flatten(1)
        d = self.norms[pool][None] - 2 * qf @ self.features[pool].T
        # equal layouts (every all-stroma window, say) ordered at random per block, not once for the batch:
        # else every uniform block gets the same few candidates and one window repeats across the area
        d += TIE_BREAK * torch.rand(d.shape, generator=gen)
        kk = min(k, len(pool))
        near = d.topk(kk, largest=False, sorted=False).indices
        if kk < k:
            near = near[:, torch.randint(0, kk, (k,), generator=gen)]
        return self.windows[pool[near].numpy()]


def synthesize_labels(library: LabelLibrary, target: np.ndarray, rng: np.random.Generator,
                      group: Optional[str] = None) -> LabelSynthesis:
    """An RGB tile whose he3 rule labels are the HxW label map ``target`` (0 air, 1 stroma, 2 nuclei)."""
    base, s = library.base, library.settings
    target = np.asarray(target)
    h0, w0 = target.shape
    b = s.block
    padded, blocks = quilting.block_grid(target, s)
    ny, nx = blocks.shape[:2]
    g = library.pick_group(target, rng) if group is None else quilting.group_index(library.group_names, group)
    gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
    cand = library.index.nearest(blocks.reshape(-1, b, b), g, s.candidates, gen).reshape(ny, nx, -1, 3)
    src = _choose(library, blocks, cand, rng)
    out = quilting._quilt(base, src, padded.shape)[0]  # (image, tissue, ...): the image
    out = np.ascontiguousarray(out[:h0, :w0])
    tissue = target != AIR
    corrected = _make_air_exact(out, tissue, s.threshold, library.glass[g])
    t = float(library.thresholds[g])
    before = out.copy()
    paint_nuclei(out, target, t, library.stamps[g], rng, s.threshold)
    settle_nuclei(out, target, t, s.threshold)
    painted = float(np.any(out != before, -1).mean())
    return LabelSynthesis(out, library.group_names[g], t, corrected, painted)


def _fine_cost(library: LabelLibrary, where: np.ndarray, target: np.ndarray) -> np.ndarray:
    """n x k cost of windows (flat pixel indices ``where``) under fine label blocks: the air correction they
    need plus the share of the map's tissue whose nuclei/stroma class they get wrong (what painting fixes)."""
    s = library.settings
    cost = s.mask_weight * _correction(library.base.margin[where], target != AIR, GLASS_LUMA - s.threshold)
    tissue = np.maximum((target != AIR).sum((-2, -1)), 1)
    wrong = ((library.labels[where] == NUCLEI) != (target == NUCLEI)) & (target != AIR)
    return cost + library.nuclei_weight * wrong.sum((-2, -1)) / tissue


def _coarse_cost(library: LabelLibrary, where: np.ndarray, target: np.ndarray) -> np.ndarray:
    """n x k cost of windows under coarse label blocks: the share of pixels whose coarse class differs."""
    weight = SKETCH_CLASS_WEIGHTS[target]  # a sketch's nuclei-dense strokes are thin and rare: they count more
    return COARSE_WEIGHT * ((library.coarse[where] != target) * weight).sum((-2, -1)) / weight.sum((-2, -1))


def synthesize_from_coarse(library: LabelLibrary, coarse: np.ndarray, rng: np.random.Generator,
                           group: Optional[str] = None) -> tuple[np.ndarray, LabelSynthesis]:
    """A sketch (HxW coarse label map) -> (fine label map, RGB tile) in one pass, nothing painted.

    Windows are matched on the coarse label map their own tile's labels give (the rule that made the
    training sketches), chosen by agreement with the sketch and with the neighbours' colours, and pasted
    along minimum-error cuts; the fine label map is the he3 rule applied to the quilt with the slide's
    threshold. Label and image both come from real tissue, so nuclei keep their real shape and chromatin
    and the map is the image's label by definition; the sketch is followed as closely as the library's
    coarse layouts allow (measured in ``benchmarks/class_generation.py``).
    """
    base = library.base
    s = library.sketch_settings()
    coarse = np.asarray(coarse)
    h0, w0 = coarse.shape
    b = s.block
    padded, blocks = quilting.block_grid(coarse, s)
    ny, nx = blocks.shape[:2]
    index = library.coarse_index()
    if group is None:
        # a slide with a handful of mostly-stroma windows would fill a large stroma area with them
        flat = blocks.reshape(len(blocks) * blocks.shape[1], -1)
        share = np.stack([(flat == c).mean(1) for c in range(3)], 1)
        need = np.stack([(share >= 0.5).sum(0), (share == 1).sum(0)])  # blocks mostly / only of each class
        supply = np.where(need > 0, np.minimum(1.0, library.uniform_windows / np.maximum(
            UNIFORM_SUPPLY * need, 1)), 1.0).prod((1, 2)) ** 2
        # and by how well its windows fit the sketch's blocks at all (a bone slide's few nuclei-dense windows
        # line glass, so a band of cells drawn in stroma came out as bone with glass gaps)
        # each tissue class the sketch draws counts alike (the blocks holding a tenth of it or more), so a thin
        # band of cells weighs as much as the stroma around it
        per_block = index.group_fit(blocks.reshape(-1, b, b), len(library.group_names))
        drawn = [share[:, c] >= 0.1 for c in (STROMA, NUCLEI)]
        parts = [part for part in drawn if part.any()] or [np.ones(len(share), bool)]
        fit = np.mean([per_block[:, part].mean(1) for part in parts], 0)
        supply = supply * np.exp(-(fit - fit[np.isfinite(fit)].min()) / FIT_SCALE)
        g = library.pick_group(coarse, rng, library.coarse_fractions, supply)
    else:
        g = quilting.group_index(library.group_names, group)
    gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
    cand = index.nearest(blocks.reshape(-1, b, b), g, s.candidates, gen).reshape(ny, nx, -1, 3)
    src = _choose(library, blocks, cand, rng, _coarse_cost, s)
    out = np.ascontiguousarray(quilting._quilt(base, src, padded.shape, s)[0][:h0, :w0])
    cleared = _clear_air(out, coarse != AIR, s.threshold, library.glass[g])
    t = float(library.thresholds[g])
    fine = he3_labels(out, t, s.threshold)
    return fine, LabelSynthesis(out, library.group_names[g], t, cleared, 0.0)  # cleared air, nothing painted


def _clear_air(out: np.ndarray, sketch_tissue: np.ndarray, threshold: int, glass: np.ndarray) -> float:
    """Copied tissue where the sketch says air, more than ``AIR_MARGIN`` px from its tissue, faded toward the
    slide's glass (in place): just past the air threshold at the margin, glass ``DEEP`` px further in. The
    coarse rule smooths a real mask's outline by about that margin, so tissue within it is the sketch's own
    fine edge and stays. Returns the fraction of pixels changed."""
    outside = (~sketch_tissue).astype(np.uint8)
    depth = cv2.distanceTransform(outside, cv2.DIST_L2, 3) - AIR_MARGIN
    lum = luma(out).astype(np.float32)
    move = (depth > 0) & ((lum <= threshold) | (depth > 1))
    if not move.any():
        return 0.0
    img = out.astype(np.float32)
    c, lc = img[move], lum[move]
    lg = float(glass @ quilting.LUMA_WEIGHTS)
    goal = threshold + 1 + quilting.CORRECTION_MARGIN
    reach = np.where(lc < goal, (goal - lc) / np.maximum(lg - lc, 1e-3), 0.0)
    t = np.clip(np.maximum(reach, depth[move] / DEEP), 0, 1)
    img[move] = c + t[:, None] * (glass - c)
    fixed = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    for _ in range(255):  # rounding or a pale glass colour: step on until the rule calls it air
        off = move & (luma(fixed) <= threshold)
        if not off.any():
            break
        fixed[off] = np.clip(fixed[off].astype(np.int16) + 1, 0, 255).astype(np.uint8)
    changed = np.any(fixed != out, -1)
    out[...] = fixed
    return float(changed.mean())


def _choose(library: LabelLibrary, blocks: np.ndarray, cand: np.ndarray, rng: np.random.Generator,
            window_cost=_fine_cost, settings: Optional[QuiltSettings] = None) -> np.ndarray:
    """``quilting``'s wavefront choice with ``window_cost`` (fine: nuclei/stroma disagreement added to the air
    correction) in place of the binary correction."""
    base, s = library.base, settings or library.settings
    b, o = s.block, s.overlap
    step = b - o
    ny, nx = blocks.shape[:2]
    src = np.zeros((ny, nx, 3), np.int64)
    ar_b, ar_o = np.arange(b), np.arange(o)
    colour = base.pixels
    sub = ar_b[::2]
    used = np.zeros((0, 3), np.int64)  # the windows pasted so far
    near = max(1, step // 2)  # a window moved less than this is the same texture again (a neighbour's
    # continuation, moved by a whole step, is not)
    for wave in range(2 * (ny - 1) + nx):
        ii = np.arange(max(0, (wave - nx + 2) // 2), min(ny - 1, wave // 2) + 1)
        jj = wave - 2 * ii
        keep = (jj >= 0) & (jj < nx)
        ii, jj = ii[keep], jj[keep]
        if not len(ii):
            continue
        options = cand[ii, jj]
        extra = []
        for di, dj in ((0, -1), (-1, 0)):  # continue the left / top neighbour's source
            ni, nj = ii + di, jj + dj
            ok = (ni >= 0) & (nj >= 0)
            nb = src[np.maximum(ni, 0), np.maximum(nj, 0)].copy()
            nb[:, 1] -= di * step
            nb[:, 2] -= dj * step
            h_t, w_t = base.shapes[nb[:, 0]].T
            ok &= (nb[:, 1] + b <= h_t) & (nb[:, 2] + b <= w_t)
            nb[~ok] = options[~ok, 0]
            extra.append(nb[:, None])
        options = np.concatenate([options] + extra, 1)
        cost = window_cost(library, base.flat_index(options, sub, sub), blocks[ii, jj][:, None, ::2, ::2])
        for side, (rows, cols, nb_rows, nb_cols, di, dj) in enumerate(((ar_b, ar_o, ar_b, ar_o + step, 0, -1),
                                                                        (ar_o, ar_b, ar_o + step, ar_b, -1, 0))):
            has = (jj > 0) if side == 0 else (ii > 0)
            if has.any():
                mine = colour[base.flat_index(options[has], rows, cols)].astype(np.float32)
                theirs = colour[base.flat_index(src[ii[has] + di, jj[has] + dj], nb_rows, nb_cols)].astype(np.float32)
                cost[has] += ((mine - theirs[:, None]) ** 2).mean((2, 3, 4)) / 65025.0
        if len(used):  # a window pasted again: a slide with few windows of a layout would tile the area with them
            same = (options[:, :, None, 0] == used[:, 0]) & \
                (np.abs(options[:, :, None, 1:] - used[:, 1:]) < near).all(-1)
            cost += REUSE_PENALTY * same.sum(-1)
        best = cost.min(1, keepdims=True)
        ok = cost <= best * (1 + s.tolerance) + 1e-9
        pick = np.array([rng.choice(np.nonzero(r)[0]) for r in ok])
        src[ii, jj] = options[np.arange(len(ii)), pick]
        used = np.concatenate([used, src[ii, jj]])
    return src


def _correction(margin: np.ndarray, tissue: np.ndarray, glass: int) -> np.ndarray:
    """Mean luma change (in [0, 1]) windows (``margin`` = luma - threshold) need: tissue down to the threshold,
    air up to glass (``glass`` = its margin)."""
    m = margin.astype(np.float32)
    need = np.where(tissue, np.maximum(m, 0), np.maximum(glass - m, 0))
    return need.mean((-2, -1)) / 255.0


def _make_air_exact(out: np.ndarray, tissue: np.ndarray, threshold: int, glass: np.ndarray) -> float:
    """Every pixel on the wrong side of the air threshold moved across it (in place); returns the fraction moved.

    Toward glass (air) or the Gaussian-weighted colour of the right tissue around it (tissue): at least as far
    as the rule needs (``CORRECTION_MARGIN`` past the threshold), and further the deeper the pixel lies in the
    region it must join, all the way at ``DEEP`` px. Air that is right by the rule (pale tissue, tinted glass)
    goes the same way by depth: it stays air, as glass is brighter than the threshold."""
    lum = luma(out).astype(np.float32)
    wrong = (lum <= threshold) != tissue
    img = out.astype(np.float32)
    # pale tissue the rule already calls air, deep in the map's air: on toward glass too, or its wisps show
    air_depth = cv2.distanceTransform((~tissue).astype(np.uint8), cv2.DIST_L2, 3)
    pale = ~tissue & ~wrong & (air_depth > 1)
    if pale.any():
        img[pale] += np.clip((air_depth[pale, None] - 1) / DEEP, 0, 1) * (glass - img[pale])
    if not wrong.any():
        out[...] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        return 0.0
    for want_tissue in (False, True):
        move = wrong & (tissue == want_tissue)
        if not move.any():
            continue
        region = tissue if want_tissue else ~tissue
        depth = cv2.distanceTransform(region.astype(np.uint8), cv2.DIST_L2, 3)[move]
        if want_tissue:
            good = (~wrong & tissue).astype(np.float32)
            typical = img[good > 0].mean(0) if good.any() else np.array(quilting.FALLBACK_TISSUE, np.float32)
            num = cv2.GaussianBlur(img * good[..., None], (0, 0), CORRECTION_SIGMA)
            den = cv2.GaussianBlur(good, (0, 0), CORRECTION_SIGMA)[..., None]
            goal_colour = np.where(den > 0.05, num / np.maximum(den, 1e-6), typical)[move]
            goal = threshold - quilting.CORRECTION_MARGIN
        else:
            goal_colour = np.broadcast_to(glass, (int(move.sum()), 3))
            goal = threshold + 1 + quilting.CORRECTION_MARGIN
        c, lc = img[move], lum[move]
        lg = goal_colour @ quilting.LUMA_WEIGHTS
        reach = np.where(np.abs(lg - lc) > 1e-3, (goal - lc) / np.where(np.abs(lg - lc) > 1e-3, lg - lc, 1), 1.0)
        t = np.clip(np.maximum(reach, (depth - 1) / DEEP), 0, 1)
        img[move] = c + t[:, None] * (goal_colour - c)
    fixed = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    for _ in range(255):  # a goal colour on the wrong side itself, or rounding: step on until the rule holds
        off = (luma(fixed) <= threshold) != tissue
        if not off.any():
            break
        step = np.where(tissue[off], -1, 1)[:, None]
        fixed[off] = np.clip(fixed[off].astype(np.int16) + step, 0, 255).astype(np.uint8)
    out[...] = fixed
    return float(wrong.mean())


