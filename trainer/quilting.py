"""Fine mask -> RGB by copying real H&E: image quilting with exact mask agreement (no Qt, no training).

A CPU cannot train a network that draws cells, but it can copy them. The output is walked in ``block``-sided
blocks that overlap by ``overlap`` pixels (Efros & Freeman 2001, "Image quilting"). For each block:

1. **Candidates by mask agreement.** Every library window (a real RGB tile cut on an 8 px grid, with its
   mask from the paper's threshold rule) is described by its mask averaged 4x down; the blocks of the target
   fine mask are described the same way and the ``candidates`` nearest windows are found with one matrix
   product (BLAS top-k). All-tissue and all-air blocks draw at random among windows that are exactly
   all-tissue or all-air, so large uniform areas take the library's own variety. The window that continues
   the left or top neighbour's source (the next window of the same real tile) is always a candidate too:
   copying coherent stretches of real tissue keeps structure larger than a block.
2. **Choice.** Cost = ``mask_weight`` x pixels whose class disagrees with the target + mean squared colour
   error against the neighbours already chosen, in the overlap. One is drawn at random among the candidates
   within ``tolerance`` of the best, so seeds differ and no smooth dark block wins everywhere.
   Blocks are decided in wavefronts (all blocks with the same ``2i + j``), so each wave is one vectorised
   step and every block still sees its left, top and top-right neighbours.
3. **Seams.** Each block is pasted along the minimum-error boundary cut (dynamic programming over the
   overlap error) against its left and top neighbours: no straight seams.
4. **Label-exact.** Every pasted pixel is a real pixel whose class (luma above the threshold = air) is known.
   Where the class disagrees with the target mask (a few pixels along edges), the pixel takes the colour of
   the nearest pixel that is both right and of the right class. The threshold rule applied to the output
   therefore gives back the target mask exactly (IoU 1), and the correction only touches the pixels that
   needed it (``Synthesis.corrected`` says how many).

The library keeps one style per tile: a tile is drawn from one group (one source slide) chosen by the seed,
never from a patchwork of slides.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .data.masks import luma
from .errors import PriorPathError

@dataclass(frozen=True)
class QuiltSettings:
    block: int = 96  # first pass: large blocks carry tissue structure
    overlap: int = 24
    refine: int = 32  # second pass: windows that redraw cells whose class is wrong
    refine_margin: int = 4  # context around each refined cell (cell side = refine - 2 * margin)
    candidates: int = 16
    mask_weight: float = 0.004  # cost of one pixel of the wrong class, against mean squared colour error in [0, 1]
    tolerance: float = 0.15  # draw among candidates within this fraction of the best cost
    threshold: int = 204  # the paper's rule: luma above this is air (H&E 204, IHC 235)

    def check(self) -> None:
        for name, side, pool in (("block", self.block, _pool(self.block)), ("refine", self.refine, _pool(self.refine))):
            if side % pool or side < 16:
                raise PriorPathError(f"quilt: {name} must be at least 16 and a multiple of {pool}, got {side}")
        if not 0 < self.overlap <= self.block // 2 or not 0 <= self.refine_margin < self.refine // 4:
            raise PriorPathError(f"quilt: overlap must be between 1 and half the block ({self.block // 2}), "
                                 f"refine_margin below a quarter of refine ({self.refine // 4})")
        if self.candidates < 1 or self.tolerance < 0 or self.mask_weight < 0:
            raise PriorPathError("quilt: candidates must be at least 1, tolerance and mask_weight not negative")


def _pool(block: int) -> int:
    """Masks are described averaged this much down: an 8x8 description of a block (at least 2x)."""
    return max(2, block // 8)


@dataclass
class Synthesis:
    rgb: np.ndarray  # HxWx3 uint8
    group: str  # the source (slide) the tile was copied from
    raw_wrong: float  # fraction of pixels of the wrong class after the first pass
    refined: float  # fraction of pixels redrawn by the second pass
    corrected: float  # fraction of pixels whose colour was copied from a neighbour to make the label exact
    reuse: float  # fraction of first-pass blocks whose library window was already used in this tile
    coherent: float  # fraction of first-pass blocks that continue a neighbour's source


class WindowIndex:
    """Windows of ``block`` pixels on a ``grid`` over every library tile, described by their pooled mask."""

    def __init__(self, library: "Library", block: int, grid: int):
        self.block, self.pool = block, _pool(block)
        pool = self.pool
        grid = max(grid, pool) // pool * pool
        pos, feats = [], []
        for t in range(len(library)):
            h, w = library.shapes[t]
            if min(h, w) < block:
                continue
            mask = torch.from_numpy(library.tile_mask(t)).float()[None, None]
            hh, ww = h // pool * pool, w // pool * pool
            small = F.avg_pool2d(mask[..., :hh, :ww], pool)
            k, stride = block // pool, grid // pool
            feats.append(F.unfold(small, k, stride=stride)[0].T)  # windows x k*k, raster order
            ny, nx = (hh // pool - k) // stride + 1, (ww // pool - k) // stride + 1
            ys, xs = np.meshgrid(np.arange(ny) * grid, np.arange(nx) * grid, indexing="ij")
            pos.append(np.stack([np.full(ys.size, t), ys.ravel(), xs.ravel()], 1))
        if not pos:
            raise PriorPathError(f"quilt library: no tile of at least {block}x{block} pixels")
        self.windows = np.concatenate(pos).astype(np.int64)  # N x 3 (tile, y, x)
        self.features = torch.cat(feats).contiguous()
        self.norms = (self.features * self.features).sum(1)
        self.group = torch.from_numpy(library.tile_group[self.windows[:, 0]])

    def nearest(self, blocks: np.ndarray, group: int, k: int, gen: torch.Generator) -> np.ndarray:
        """N x k windows (tile, y, x) of ``group`` whose masks are nearest the N x b x b target blocks.

        Exactly equal descriptions (e.g. every all-tissue window) are ordered at random, so uniform areas
        draw from the library's whole variety.
        """
        pool = torch.nonzero(self.group == group).squeeze(1)
        if not len(pool):
            pool = torch.arange(len(self.windows))
        query = torch.from_numpy(np.ascontiguousarray(blocks, dtype=np.float32))[:, None]
        qf = F.avg_pool2d(query, self.pool).flatten(1)
        d = (self.norms[pool][None] - 2 * qf @ self.features[pool].T).double()
        # distances are multiples of 1 / pool**4 apart: noise below that only reorders exact ties
        d += torch.rand(d.shape, generator=gen, dtype=torch.float64) * (0.4 / self.pool ** 4)
        kk = min(k, len(pool))
        near = d.topk(kk, largest=False).indices
        if kk < k:
            near = near[:, torch.randint(0, kk, (k,), generator=gen)]
        return self.windows[pool[near].numpy()]


class Library:
    """Real RGB tiles and their class masks (the threshold rule), grouped by source slide, with two indexes.

    Tiles may differ in size; they are kept as one flat pixel array so that windows of any tile are
    gathered with one fancy-index.
    """

    def __init__(self, tiles: Sequence[np.ndarray], groups: Sequence[str], settings: QuiltSettings):
        settings.check()
        self.settings = settings
        kept = [(t, g) for t, g in zip(tiles, groups) if min(t.shape[:2]) >= settings.refine]
        if not kept:
            raise PriorPathError(f"quilt library: no tiles of at least {settings.refine}x{settings.refine} pixels")
        self.group_names = sorted({g for _, g in kept})
        self.tile_group = np.array([self.group_names.index(g) for _, g in kept], np.int64)
        self.shapes = np.array([t.shape[:2] for t, _ in kept], np.int64)
        sizes = self.shapes[:, 0] * self.shapes[:, 1]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.pixels = np.concatenate([np.ascontiguousarray(t[..., :3]).reshape(-1, 3) for t, _ in kept])
        self.tissue = luma(self.pixels[None])[0] <= settings.threshold  # the paper's rule, per pixel
        if not self.tissue.any():
            raise PriorPathError("quilt library: no tissue in any tile (every pixel is brighter than the "
                                 f"threshold {settings.threshold}); give it real H&E tiles")
        if self.tissue.all():
            raise PriorPathError("quilt library: no air (glass) in any tile; add tiles that show a tissue edge")
        self.coarse = WindowIndex(self, settings.block, settings.block // 6)
        self.fine = WindowIndex(self, settings.refine, settings.refine // 4)

    def __len__(self) -> int:
        return len(self.shapes)

    def tile_mask(self, t: int) -> np.ndarray:
        h, w = self.shapes[t]
        return self.tissue[self.offsets[t]:self.offsets[t] + h * w].reshape(h, w)

    def tile_rgb(self, t: int) -> np.ndarray:
        h, w = self.shapes[t]
        return self.pixels[self.offsets[t]:self.offsets[t] + h * w].reshape(h, w, 3)

    def flat_index(self, src: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Flat pixel indices of windows ``src`` (... x 3: tile, y, x) at offsets rows x cols -> ... x R x C."""
        t, y, x = src[..., 0], src[..., 1], src[..., 2]
        width = self.shapes[t, 1]
        base = self.offsets[t] + y * width + x
        return base[..., None, None] + rows[:, None] * width[..., None, None] + cols[None, :]

    def pick_group(self, target: np.ndarray, rng: np.random.Generator) -> int:
        """A group drawn by its area, among groups holding both classes when the target has both."""
        area = np.bincount(self.tile_group, weights=self.shapes.prod(1), minlength=len(self.group_names))
        tissue = np.bincount(self.tile_group, weights=[m.sum() for m in map(self.tile_mask, range(len(self)))],
                             minlength=len(self.group_names))
        fit = area * ((tissue > 0) | (not target.any())) * ((tissue < area) | bool(target.all()))
        weights = fit if fit.sum() else area
        return int(rng.choice(len(weights), p=weights / weights.sum()))


def synthesize(library: Library, target: np.ndarray, rng: np.random.Generator,
               group: Optional[str] = None) -> Synthesis:
    """An RGB tile whose tissue is exactly ``target`` (HxW bool or 0/255) under the threshold rule."""
    s = library.settings
    target = np.asarray(target) > 0
    h0, w0 = target.shape
    b, o = s.block, s.overlap
    step = b - o
    ny, nx = max(1, math.ceil((h0 - o) / step)), max(1, math.ceil((w0 - o) / step))
    h, w = max(ny * step + o, s.refine), max(nx * step + o, s.refine)
    padded = np.pad(target, ((0, h - h0), (0, w - w0)), mode="edge")
    if group is None:
        g = library.pick_group(target, rng)
    elif group in library.group_names:
        g = library.group_names.index(group)
    else:
        raise PriorPathError(f"quilt: no style group '{group}' in the library ({', '.join(library.group_names)})")
    gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))

    blocks = np.lib.stride_tricks.sliding_window_view(padded, (b, b))[::step, ::step][:ny, :nx]
    cand = library.coarse.nearest(blocks.reshape(-1, b, b), g, s.candidates, gen).reshape(ny, nx, -1, 3)
    src = _choose(library, blocks, cand, rng)
    out, cls = _quilt(library, src, (h, w))
    raw_wrong = float((cls[:h0, :w0] != target).mean())
    refined = _refine(library, out, cls, padded, g, gen, rng)
    out = out[:h0, :w0]
    corrected = _make_label_exact(out, target, s.threshold, cls[:h0, :w0])
    flat = src.reshape(-1, 3)
    unique = len({tuple(r) for r in flat.tolist()})
    return Synthesis(out, library.group_names[g], raw_wrong, refined * h * w / (h0 * w0), corrected,
                     1 - unique / len(flat), _coherent(src, step))


def _choose(library: Library, blocks: np.ndarray, cand: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The source window (tile, y, x) of every block, decided in wavefronts of equal 2i + j."""
    s = library.settings
    b, o = s.block, s.overlap
    step = b - o
    ny, nx = blocks.shape[:2]
    src = np.zeros((ny, nx, 3), np.int64)
    ar_b, ar_o = np.arange(b), np.arange(o)
    colour = library.pixels
    for wave in range(2 * (ny - 1) + nx):
        ii = np.arange(max(0, (wave - nx + 2) // 2), min(ny - 1, wave // 2) + 1)
        jj = wave - 2 * ii
        keep = (jj >= 0) & (jj < nx)
        ii, jj = ii[keep], jj[keep]
        if not len(ii):
            continue
        options = cand[ii, jj]  # n x k x 3
        extra = []
        for di, dj in ((0, -1), (-1, 0)):  # continue the left / top neighbour's source
            ni, nj = ii + di, jj + dj
            ok = (ni >= 0) & (nj >= 0)
            nb = src[np.maximum(ni, 0), np.maximum(nj, 0)].copy()
            nb[:, 1] -= di * step
            nb[:, 2] -= dj * step
            h_t, w_t = library.shapes[nb[:, 0]].T
            ok &= (nb[:, 1] + b <= h_t) & (nb[:, 2] + b <= w_t)
            nb[~ok] = options[~ok, 0]  # no continuation: repeat the first candidate instead
            extra.append(nb[:, None])
        options = np.concatenate([options] + extra, 1)  # n x (k + 2) x 3
        target = blocks[ii, jj]  # n x b x b
        mism = (library.tissue[library.flat_index(options, ar_b, ar_b)] != target[:, None]).sum((2, 3))
        cost = mism * s.mask_weight
        left = jj > 0
        if left.any():
            mine = colour[library.flat_index(options[left], ar_b, ar_o)].astype(np.float32)
            theirs = colour[library.flat_index(src[ii[left], jj[left] - 1], ar_b, ar_o + step)].astype(np.float32)
            cost[left] += ((mine - theirs[:, None]) ** 2).mean((2, 3, 4)) / 65025.0
        top = ii > 0
        if top.any():
            mine = colour[library.flat_index(options[top], ar_o, ar_b)].astype(np.float32)
            theirs = colour[library.flat_index(src[ii[top] - 1, jj[top]], ar_o + step, ar_b)].astype(np.float32)
            cost[top] += ((mine - theirs[:, None]) ** 2).mean((2, 3, 4)) / 65025.0
        best = cost.min(1, keepdims=True)
        ok = cost <= best * (1 + s.tolerance) + 1e-9
        pick = np.array([rng.choice(np.nonzero(r)[0]) for r in ok])
        src[ii, jj] = options[np.arange(len(ii)), pick]
    return src


def _quilt(library: Library, src: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Paste every block's source window along minimum-error cuts; returns the image and each pixel's class."""
    s = library.settings
    b, o = s.block, s.overlap
    step = b - o
    ny, nx = src.shape[:2]
    ar_b = np.arange(b)
    idx = library.flat_index(src.reshape(-1, 3), ar_b, ar_b)  # N x b x b
    pix = library.pixels[idx].reshape(ny, nx, b, b, 3)
    tissue = library.tissue[idx].reshape(ny, nx, b, b)
    take = np.ones((ny, nx, b, b), bool)
    if nx > 1:  # vertical cut in the left overlap, against the left neighbour's pixels
        err = ((pix[:, 1:, :, :o].astype(np.float32) - pix[:, :-1, :, step:]) ** 2).sum(-1)
        take[:, 1:, :, :o] &= _cut(err.reshape(-1, b, o)).reshape(ny, nx - 1, b, o)
    if ny > 1:  # horizontal cut in the top overlap
        err = ((pix[1:, :, :o].astype(np.float32) - pix[:-1, :, step:]) ** 2).sum(-1)
        cut = _cut(err.transpose(0, 1, 3, 2).reshape(-1, b, o)).reshape(ny - 1, nx, b, o)
        take[1:, :, :o] &= cut.transpose(0, 1, 3, 2)
    out = np.zeros((*size, 3), np.uint8)
    cls = np.zeros(size, bool)
    for i in range(ny):
        for j in range(nx):
            y, x = i * step, j * step
            t = take[i, j]
            out[y:y + b, x:x + b][t] = pix[i, j][t]
            cls[y:y + b, x:x + b][t] = tissue[i, j][t]
    return out, cls


def _refine(library: Library, out: np.ndarray, cls: np.ndarray, target: np.ndarray, group: int,
            gen: torch.Generator, rng: np.random.Generator) -> float:
    """Redraw the cells that hold pixels of the wrong class with windows that match the mask there.

    The image is cut into cells of ``refine - 2 * margin``; a cell with wrong pixels gets a ``refine``-sided
    window (the cell and its margin), chosen by mask agreement and by colour agreement with the first pass
    where that was right, and takes that window's pixels only around its wrong pixels (dilated 2 px), so
    the rest of the first pass stays. Returns the fraction of pixels redrawn.
    """
    s = library.settings
    r, m = s.refine, s.refine_margin
    cell = r - 2 * m
    wrong = (cls != target).astype(np.uint8)
    if not wrong.any():
        return 0.0
    h, w = target.shape
    # cells tile the image; each cell's window holds it with a margin of context (less at the borders)
    grid = [(cy, cx, min(max(cy - m, 0), h - r), min(max(cx - m, 0), w - r))
            for cy in range(0, h, cell) for cx in range(0, w, cell)]
    todo = [g for g in grid if wrong[g[0]:g[0] + cell, g[1]:g[1] + cell].any()]
    if not todo:
        return 0.0
    redraw = cv2.dilate(wrong, np.ones((5, 5), np.uint8)).astype(bool)
    done = np.zeros_like(redraw)
    win = np.stack([target[y:y + r, x:x + r] for _, _, y, x in todo])
    cand = library.fine.nearest(win, group, s.candidates, gen)  # n x k x 3
    ar = np.arange(r)
    idx = library.flat_index(cand, ar, ar)  # n x k x r x r
    mism = (library.tissue[idx] != win[:, None]).sum((2, 3))
    have = np.stack([out[y:y + r, x:x + r] for _, _, y, x in todo]).astype(np.float32)
    right = np.stack([wrong[y:y + r, x:x + r] == 0 for _, _, y, x in todo])
    diff = ((library.pixels[idx].astype(np.float32) - have[:, None]) ** 2).sum(-1) * right[:, None]
    colour = diff.sum((2, 3)) / np.maximum(right.sum((1, 2)), 1)[:, None] / (3 * 65025.0)
    cost = mism * s.mask_weight + colour
    best = cost.min(1, keepdims=True)
    ok = cost <= best * (1 + s.tolerance) + 1e-9
    pick = np.array([rng.choice(np.nonzero(row)[0]) for row in ok])
    chosen = idx[np.arange(len(todo)), pick]  # n x r x r
    for (cy, cx, y, x), flat in zip(todo, chosen):
        rows, cols = slice(cy, min(cy + cell, h)), slice(cx, min(cx + cell, w))
        take = redraw[rows, cols]
        src = flat[cy - y:cy - y + take.shape[0], cx - x:cx - x + take.shape[1]][take]
        out[rows, cols][take] = library.pixels[src]
        cls[rows, cols][take] = library.tissue[src]
        done[rows, cols] |= take
    return float(done.mean())


def _cut(err: np.ndarray) -> np.ndarray:
    """N x rows x cols error -> N x rows x cols bool: True right of the cheapest top-to-bottom 8-connected path."""
    n, rows, cols = err.shape
    acc = err.copy()
    inf = np.float32(np.inf)
    for r in range(1, rows):
        prev = acc[:, r - 1]
        left = np.concatenate([np.full((n, 1), inf, np.float32), prev[:, :-1]], 1)
        right = np.concatenate([prev[:, 1:], np.full((n, 1), inf, np.float32)], 1)
        acc[:, r] += np.minimum(prev, np.minimum(left, right))
    path = np.empty((n, rows), np.int64)
    path[:, -1] = acc[:, -1].argmin(1)
    span = np.arange(n)
    for r in range(rows - 2, -1, -1):
        c = path[:, r + 1, None] + np.array([-1, 0, 1])
        vals = acc[span[:, None], r, np.clip(c, 0, cols - 1)]
        vals[(c < 0) | (c >= cols)] = inf
        path[:, r] = c[span, vals.argmin(1)]
    return np.arange(cols)[None, None, :] >= path[:, :, None]


def _make_label_exact(out: np.ndarray, target: np.ndarray, threshold: int, cls: np.ndarray) -> float:
    """Give every pixel of the wrong class the colour of the nearest right pixel of its target class."""
    wrong = cls != target
    if not wrong.any():
        return 0.0
    for want in (True, False):
        bad = wrong & (target == want)
        if not bad.any():
            continue
        good = ~wrong & (target == want)
        if good.any():
            _, (iy, ix) = ndimage.distance_transform_edt(~good, return_indices=True)
            out[bad] = out[iy[bad], ix[bad]]
        else:  # no right pixel of this class anywhere: a neutral colour on the right side of the threshold
            out[bad] = (150, 90, 150) if want else (240, 240, 240)
    # the copied colours are right by construction; assert it rather than trust it
    if ((luma(out) <= threshold) != target).any():
        raise AssertionError("quilt: the label correction left pixels of the wrong class")
    return float(wrong.mean())


def _coherent(src: np.ndarray, step: int) -> float:
    """Fraction of blocks that continue their left or top neighbour's source window."""
    ny, nx = src.shape[:2]
    same = 0
    for i in range(ny):
        for j in range(nx):
            t, y, x = src[i, j]
            if j and (src[i, j - 1] == (t, y, x - step)).all() or i and (src[i - 1, j] == (t, y - step, x)).all():
                same += 1
    return same / (ny * nx)
