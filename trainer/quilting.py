"""Fine mask -> RGB by copying real H&E: image quilting chosen for label agreement (no Qt, no training).

A CPU cannot train a network that draws cells, but it can copy them. The output is walked in ``block``-sided
blocks that overlap by ``overlap`` pixels (Efros & Freeman 2001, "Image quilting"):

1. **Candidates by the correction they need.** Every library window (a real RGB tile cut on a grid, its
   class mask from the paper's rule, luma above the threshold = air) is scored, and the ``candidates`` that
   would need the least luma change to obey the target block (``_correction``) are found exactly with one
   matrix product, as that change is linear in the target mask; equal costs (e.g. all-tissue) are
   ordered at random, so uniform areas draw from the library's whole variety. Shortlisting by mask layout
   instead (the mask averaged to 8x8) offered dense red bone for pale porous tissue of the same tissue
   fraction, whose forced pores showed as pink snow. The windows that continue the left and top
   neighbours' sources are candidates too: coherent stretches of real tissue keep structure larger than a
   block.
2. **Choice.** Cost = ``mask_weight`` x the mean luma change the window would need to obey the target mask
   (``_correction``: 0 for a window already on the right side of the threshold everywhere, little for pale
   tissue under a porous mask, much for white glass under tissue) + the mean squared colour error against
   the neighbours already chosen, in the overlap. One is drawn at random among the candidates within
   ``tolerance`` of the best, so seeds differ. Blocks are decided in wavefronts (equal ``2i + j``), each
   wave one vectorised step that still sees its left and top neighbours.
3. **Slide.** Each chosen window slides by up to ``SETTLE_REACH`` px to where it needs the least correction
   (``_settle``): the index's windows lie on a grid, and the holes of porous tissue meet the mask's only at
   finer offsets.
4. **Seams.** Each block is pasted along the minimum-error boundary cut (dynamic programming over the
   overlap error) against its left and top neighbours.
5. **Label-exact.** Where a pasted pixel is on the wrong side of the threshold it is moved across it
   (``_make_label_exact``): just across, except inside holes the mask cuts into tissue, which take the
   slide's glass. The rule applied to the output gives back the target mask exactly, and
   ``Synthesis.corrected`` says how many pixels needed it.

Pixel-exact agreement cannot come from choosing alone: porous tissue has masks whose holes no library
window repeats (the best 96 px window still disagrees in ~45 % of the pixels of such a block). Choosing
windows that need the smallest luma change, not the fewest wrong pixels, is what keeps the correction
invisible: on the realism benchmark it took crop FID from 181 (fewest wrong pixels, wrong ones recoloured
from their neighbours) to 137.

The library keeps one style per tile: a tile is drawn from one group (one source slide) chosen by the seed,
never from a patchwork of slides.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np
import torch

from .data.masks import luma
from .errors import PriorPathError


@dataclass(frozen=True)
class QuiltSettings:
    block: int = 96  # blocks this large carry tissue structure
    overlap: int = 24
    candidates: int = 16
    mask_weight: float = 1.0  # weight of the mean luma correction a window needs, against mean squared colour error
    tolerance: float = 0.15  # draw among candidates within this fraction of the best cost
    threshold: int = 204  # the paper's rule: luma above this is air (H&E 204, IHC 235)

    def check(self) -> None:
        if self.block % _pool(self.block) or self.block < 16:
            raise PriorPathError(f"quilt: block must be at least 16 and a multiple of {_pool(self.block)}, "
                                 f"got {self.block}")
        if not 0 < self.overlap <= self.block // 2:
            raise PriorPathError(f"quilt: overlap must be between 1 and half the block ({self.block // 2})")
        if self.candidates < 1 or self.tolerance < 0 or self.mask_weight < 0:
            raise PriorPathError("quilt: candidates must be at least 1, tolerance and mask_weight not negative")


SEARCH_POOL = 4000  # windows of a larger group searched per tile; 12000 measured the same
SAMPLES_PER_SIDE = 12  # a window's correction is estimated on a 12 x 12 grid of its pixels
SETTLE_REACH = 8  # px a chosen window may slide to line its pores up with the mask's
CHUNK = 256  # target blocks costed at once: 256 x SEARCH_POOL floats (4 MB) at most
CORRECTION_MARGIN = 1  # grey levels past the threshold a corrected pixel lands
GLASS_DEPTHS = 12  # px from tissue over which a slide's glass is described (deeper counts as 12)
CORRECTION_SIGMA = 4.0  # px: the neighbourhood whose tissue colour a pixel that must become tissue moves toward
FALLBACK_TISSUE = (150, 80, 150)  # when the tile holds no right tissue pixel at all
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)


def _pool(block: int) -> int:
    """Masks are described averaged this much down: an 8x8 description of a block (at least 2x)."""
    return max(2, block // 8)


@dataclass
class Synthesis:
    rgb: np.ndarray  # HxWx3 uint8
    group: str  # the source (slide) the tile was copied from
    corrected: float  # fraction of pixels moved across the threshold


class WindowIndex:
    """Windows of ``block`` pixels on a ``grid`` over every library tile, ranked for a target block by the
    exact correction they would need.

    The correction a window needs under a target mask is linear in the mask (``_correction``: a tissue
    pixel needs max(margin, 0), an air pixel max(1 - margin, 0)), so the cost of every window for every block
    is one constant per window plus one matrix product, on pixels sampled every ``sample`` px.
    """

    def __init__(self, library: "Library", block: int, grid: int):
        self.block = block
        self.sample = max(1, block // SAMPLES_PER_SIDE)
        self.at = np.arange(self.sample // 2, block, self.sample)
        pos = []
        for t in range(len(library)):
            h, w = library.shapes[t]
            if min(h, w) < block:
                continue
            ys, xs = np.meshgrid(np.arange(0, h - block + 1, grid), np.arange(0, w - block + 1, grid), indexing="ij")
            pos.append(np.stack([np.full(ys.size, t), ys.ravel(), xs.ravel()], 1))
        if not pos:
            raise PriorPathError(f"quilt library: no tile of at least {block}x{block} pixels")
        self.windows = np.concatenate(pos).astype(np.int64)  # N x 3 (tile, y, x)
        margin = np.concatenate([library.margin[library.flat_index(self.windows[i:i + 4096], self.at, self.at)]
                                 for i in range(0, len(self.windows), 4096)]).reshape(len(self.windows), -1)
        margin = margin.astype(np.float32)
        # cost = sum(max(1 - m, 0)) + target . (max(m, 0) - max(1 - m, 0)); margins are whole grey levels
        self.constant = torch.from_numpy(np.maximum(1 - margin, 0).sum(1))
        self.slope = torch.from_numpy(np.maximum(margin, 0) - np.maximum(1 - margin, 0))
        group = library.tile_group[self.windows[:, 0]]
        self.pools = {int(g): torch.from_numpy(np.nonzero(group == g)[0]) for g in np.unique(group)}
        self._cached: tuple = (None, None)  # (group, its pool): consecutive tiles mostly share a slide

    def nearest(self, blocks: np.ndarray, group: int, k: int, gen: torch.Generator) -> np.ndarray:
        """N x k windows (tile, y, x) of ``group`` that need the least correction under the N x b x b target
        blocks; equal costs (all-tissue under all-tissue, say) ordered at random per block, so uniform areas
        draw from the library's whole variety."""
        pool, slope, constant = self._pool(group, gen)
        near = np.concatenate([self._cheapest(np.asarray(blocks[i:i + CHUNK], np.float32), slope, constant, k, gen)
                               for i in range(0, len(blocks), CHUNK)])  # chunks: memory stays flat for slides
        return self.windows[pool.numpy()[near]]

    def _pool(self, group: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The group's windows (a random ``SEARCH_POOL`` of a larger group), their slopes (windows x samples)
        and constants; a group small enough to search whole is kept for the next tile."""
        pool = self.pools.get(group)
        if pool is None:
            pool = torch.arange(len(self.windows))
        if len(pool) > SEARCH_POOL:
            pool = pool[torch.randperm(len(pool), generator=gen)[:SEARCH_POOL]]
            return pool, self.slope[pool], self.constant[pool]
        if self._cached[0] != group:
            self._cached = (group, (pool, self.slope[pool], self.constant[pool]))
        return self._cached[1]

    def _cheapest(self, target: np.ndarray, slope: torch.Tensor, constant: torch.Tensor, k: int,
                  gen: torch.Generator) -> np.ndarray:
        """N x k indices into the pool of the windows needing the least correction."""
        at = self.at
        query = torch.from_numpy(np.ascontiguousarray(target[:, at][:, :, at]).reshape(len(target), -1))
        cost = query @ slope.T + constant[None]
        # random order among equal costs, per block (else uniform areas all get the same few windows):
        # below one grey level, so it breaks ties only
        cost += torch.rand(cost.shape, generator=gen) * 0.5
        kk = min(k, cost.shape[1])
        near = cost.topk(kk, largest=False, sorted=False).indices
        if kk < k:
            near = near[:, torch.randint(0, kk, (k,), generator=gen)]
        return near.numpy()


class Library:
    """Real RGB tiles and their class masks (the threshold rule), grouped by source slide, with a window index.

    Tiles may differ in size; they are kept as one flat pixel array so that windows of any tile are
    gathered with one fancy-index.
    """

    def __init__(self, tiles: Sequence[np.ndarray], groups: Sequence[str], settings: QuiltSettings):
        settings.check()
        self.settings = settings
        side = min(settings.block, max(min(t.shape[:2]) for t in tiles)) if len(tiles) else 0
        kept = [(t, g) for t, g in zip(tiles, groups) if min(t.shape[:2]) >= side]
        if not kept or side < 16:
            raise PriorPathError("quilt library: no tiles of at least 16x16 pixels")
        self.group_names = sorted({g for _, g in kept})
        self.tile_group = np.array([self.group_names.index(g) for _, g in kept], np.int64)
        self.shapes = np.array([t.shape[:2] for t, _ in kept], np.int64)
        sizes = self.shapes[:, 0] * self.shapes[:, 1]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.pixels = np.concatenate([np.ascontiguousarray(t[..., :3]).reshape(-1, 3) for t, _ in kept])
        # how far each pixel's luma is from the threshold: > 0 is air, <= 0 tissue (the paper's rule)
        self.margin = luma(self.pixels[None])[0].astype(np.int16) - settings.threshold
        self.tissue = self.margin <= 0
        if not self.tissue.any():
            raise PriorPathError("quilt library: no tissue in any tile (every pixel is brighter than the "
                                 f"threshold {settings.threshold}); give it real H&E tiles")
        if self.tissue.all():
            raise PriorPathError("quilt library: no air (glass) in any tile; add tiles that show a tissue edge")
        if side < settings.block:  # small tiles (a style reference of thumbnails): smaller blocks
            block = side // _pool(side) * _pool(side)
            settings = dataclasses.replace(settings, block=block, overlap=min(settings.overlap, block // 4))
            self.settings = settings
        self._index: Optional[WindowIndex] = None
        self._glass: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        n = len(self.group_names)
        self.group_area = np.bincount(self.tile_group, weights=self.shapes.prod(1), minlength=n)
        self.group_tissue = np.bincount(self.tile_group, minlength=n,
                                        weights=[m.sum() for m in map(self.tile_mask, range(len(self)))])

    def __len__(self) -> int:
        return len(self.shapes)

    @property
    def index(self) -> WindowIndex:
        """The window index, built on first use (the class-aware library searches its own)."""
        if self._index is None:
            self._index = WindowIndex(self, self.settings.block, self.settings.block // 6)
        return self._index

    def glass(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        """Group ``g``'s real glass: the median luma of its air pixels by distance from tissue (index 1 ..
        ``GLASS_DEPTHS`` px; the threshold where it has none) and the median colour of its glass at least 5 px
        from tissue; computed once."""
        if g not in self._glass:
            counts = np.zeros((GLASS_DEPTHS + 1, 256), np.int64)  # distance x luma histogram of air pixels
            colour = np.zeros((3, 256), np.int64)
            for t in np.nonzero(self.tile_group == g)[0]:
                air = ~self.tile_mask(t)
                depth = air_depth(air)
                rgb = self.tile_rgb(t)
                counts += np.bincount((depth * 256 + luma(rgb))[air], minlength=counts.size).reshape(counts.shape)
                for c in range(3):
                    colour[c] += np.bincount(rgb[..., c][depth >= 5], minlength=256)
            self._glass[g] = (np.array([_median(row, self.settings.threshold) for row in counts], np.float32),
                              np.array([_median(row, 255) for row in colour], np.float32))
        return self._glass[g]

    def tile_view(self, flat: np.ndarray, t: int) -> np.ndarray:
        """Tile ``t``'s part of a per-pixel array laid out like ``pixels`` (pixels x ...), as H x W x ..."""
        h, w = self.shapes[t]
        return flat[self.offsets[t]:self.offsets[t] + h * w].reshape(h, w, *flat.shape[1:])

    def tile_mask(self, t: int) -> np.ndarray:
        return self.tile_view(self.tissue, t)

    def tile_rgb(self, t: int) -> np.ndarray:
        return self.tile_view(self.pixels, t)

    def flat_index(self, src: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Flat pixel indices of windows ``src`` (... x 3: tile, y, x) at offsets rows x cols -> ... x R x C."""
        t, y, x = src[..., 0], src[..., 1], src[..., 2]
        width = self.shapes[t, 1]
        base = self.offsets[t] + y * width + x
        return base[..., None, None] + rows[:, None] * width[..., None, None] + cols[None, :]

    def pick_group(self, target: np.ndarray, rng: np.random.Generator) -> int:
        """A group drawn by its area, among groups holding both classes when the target has both."""
        area, tissue = self.group_area, self.group_tissue
        fit = area * ((tissue > 0) | (not target.any())) * ((tissue < area) | bool(target.all()))
        weights = fit if fit.sum() else area
        return int(rng.choice(len(weights), p=weights / weights.sum()))


def synthesize(library: Library, target: np.ndarray, rng: np.random.Generator,
               group: Optional[str] = None, label_exact: bool = True) -> Synthesis:
    """An RGB tile whose tissue is exactly ``target`` (HxW bool or 0/255) under the threshold rule.

    ``label_exact=False`` leaves the pasted pixels as they are (the rule does not give the mask back; for
    measuring what the correction costs), with ``corrected`` the fraction that would have needed it."""
    s = library.settings
    target = np.asarray(target) > 0
    h0, w0 = target.shape
    b = s.block
    padded, blocks = block_grid(target, s)
    ny, nx = blocks.shape[:2]
    h, w = padded.shape
    g = library.pick_group(target, rng) if group is None else group_index(library.group_names, group)
    gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))

    cand = library.index.nearest(blocks.reshape(-1, b, b), g, s.candidates, gen).reshape(ny, nx, -1, 3)
    src = _settle(library, blocks, _choose(library, blocks, cand, rng))
    out, cls = _quilt(library, src, (h, w))
    out = out[:h0, :w0]
    cls = cls[:h0, :w0]
    corrected = (_make_label_exact(out, target, s.threshold, cls, library.glass(g)) if label_exact
                 else float((cls != target).mean()))
    return Synthesis(out, library.group_names[g], corrected)


def block_grid(target: np.ndarray, settings: QuiltSettings) -> tuple[np.ndarray, np.ndarray]:
    """``target`` padded (edge values) to whole blocks of ``settings`` overlapping by its overlap, and the
    ny x nx x block x block view of its blocks."""
    b, o = settings.block, settings.overlap
    step = b - o
    h0, w0 = target.shape
    ny, nx = max(1, math.ceil((h0 - o) / step)), max(1, math.ceil((w0 - o) / step))
    padded = np.pad(target, ((0, ny * step + o - h0), (0, nx * step + o - w0)), mode="edge")
    return padded, np.lib.stride_tricks.sliding_window_view(padded, (b, b))[::step, ::step][:ny, :nx]


def group_index(names: Sequence[str], group: str) -> int:
    """The index of style group ``group``, or one clear error naming those there are."""
    if group not in names:
        raise PriorPathError(f"quilt: no style group '{group}' in the library ({', '.join(names)})")
    return list(names).index(group)


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
        # the correction a window needs, on every other pixel: enough to rank, a quarter of the gathering
        sub = ar_b[::2]
        needs = _correction(library.margin[library.flat_index(options, sub, sub)], target[:, None, ::2, ::2])
        cost = s.mask_weight * needs
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


def _settle(library: Library, blocks: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Slide every chosen window by up to ``SETTLE_REACH`` px to where it needs the least correction, costed
    at every pixel and every offset (the correction is linear in the mask: two cross-correlations per block);
    ties stay put. The index offers windows on a grid of a sixth of the block; the holes of porous tissue line
    up with the mask's only at finer offsets, and a few pixels' slide keeps the tissue chosen."""
    b, r = library.settings.block, SETTLE_REACH
    settled = src.reshape(-1, 3).copy()
    targets = blocks.reshape(-1, b, b).astype(np.float32)
    offsets = np.abs(np.arange(-r, r + 1))
    stay = 1e-3 * (offsets[:, None] + offsets[None, :])  # below any real difference: ties keep the choice
    for k, (t, y, x) in enumerate(settled):
        y0, x0 = max(y - r, 0), max(x - r, 0)
        m = library.tile_view(library.margin, t)[y0:y + b + r, x0:x + b + r].astype(np.float32)
        to_air, to_tissue = np.maximum(1 - m, 0), np.maximum(m, 0)  # the change each pixel needs (``_correction``)
        cost = (cv2.matchTemplate(to_air, 1 - targets[k], cv2.TM_CCORR)
                + cv2.matchTemplate(to_tissue, targets[k], cv2.TM_CCORR))
        cost += stay[y0 - y + r:y0 - y + r + cost.shape[0], x0 - x + r:x0 - x + r + cost.shape[1]]
        dy, dx = np.unravel_index(int(cost.argmin()), cost.shape)
        settled[k, 1:] = y0 + dy, x0 + dx
    return settled.reshape(src.shape)


def _quilt(library: Library, src: np.ndarray, size: tuple[int, int], settings: Optional[QuiltSettings] = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Paste every block's source window along minimum-error cuts; returns the image and each pixel's class.
    ``settings``: the block and overlap the sources were chosen with (default: the library's)."""
    s = settings or library.settings
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
        take[:, 1:, :, :o] &= min_error_cut(err.reshape(-1, b, o)).reshape(ny, nx - 1, b, o)
    if ny > 1:  # horizontal cut in the top overlap
        err = ((pix[1:, :, :o].astype(np.float32) - pix[:-1, :, step:]) ** 2).sum(-1)
        cut = min_error_cut(err.transpose(0, 1, 3, 2).reshape(-1, b, o)).reshape(ny - 1, nx, b, o)
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


def min_error_cut(err: np.ndarray) -> np.ndarray:
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


def _correction(margin: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean luma change (in [0, 1]) that would make windows' pixels (``margin`` = luma - threshold, ... x r x r)
    obey the target mask: a window whose texture is already on the right side of the threshold costs 0, a
    pale window under a porous mask costs little, white glass where the mask says tissue costs a lot."""
    m = margin.astype(np.float32)
    need = np.where(target, np.maximum(m, 0), np.maximum(1 - m, 0))
    return need.mean((-2, -1)) / 255.0


def air_depth(air: np.ndarray) -> np.ndarray:
    """Each air pixel's distance from the nearest tissue in whole px (1 at a hole's rim, capped at
    ``GLASS_DEPTHS``); 0 on tissue."""
    depth = np.rint(cv2.distanceTransform(air.astype(np.uint8), cv2.DIST_L2, 3))
    return np.minimum(depth, GLASS_DEPTHS).astype(np.int64)


def _median(histogram: np.ndarray, empty: float) -> float:
    """The median value of a 256-bin histogram, or ``empty`` when it counts nothing."""
    total = histogram.sum()
    return float(np.searchsorted(np.cumsum(histogram), total / 2)) if total else float(empty)


def _make_label_exact(out: np.ndarray, target: np.ndarray, threshold: int, cls: np.ndarray,
                      glass: tuple[np.ndarray, np.ndarray]) -> float:
    """Put every pixel of the wrong class across the threshold.

    A pixel that must become air at a hole's rim (1 px from tissue) gets the same amount added to R, G and
    B: luma moves just past the threshold and the hue stays (invisible on pale tissue). One deeper inside a
    hole is blended toward the slide's glass (``glass``, from ``Library.glass``) until its luma is the
    slide's median at that distance from tissue: a hole the mask cuts into dense tissue is white inside
    like real glass, not a pale pink blot (``benchmarks/rgb_realism.py``: crop FID 140.2 -> 123.0; whitening
    the rim too measured worse than not whitening at all). A pixel that must become tissue is blended
    toward the colour of the tissue around it (the Gaussian-weighted mean of the right tissue pixels
    nearby) only as far as the rule needs, so glass under a speck of tissue turns faintly stained, not
    grey. Blocks were chosen to need little of either (``_correction``). Returns the fraction changed.
    """
    wrong = cls != target
    if not wrong.any():
        return 0.0
    img = out.astype(np.float32)
    lum = luma(out).astype(np.float32)
    air = wrong & ~target
    depth = air_depth(~target)
    deep = air & (depth >= 2)
    if deep.any():
        profile, colour = glass
        goal = np.maximum(profile[depth[deep]], threshold + 1 + CORRECTION_MARGIN)
        c, lc = img[deep], lum[deep]
        t = np.clip((goal - lc) / np.maximum(float(colour @ LUMA_WEIGHTS) - lc, 1e-3), 0, 1)
        c = c + t[:, None] * (colour - c)
        img[deep] = c + np.maximum(goal - c @ LUMA_WEIGHTS, 0)[:, None]  # glass darker than the goal: add
    rim = air & ~deep
    img[rim] += (threshold + 1 + CORRECTION_MARGIN - lum[rim])[:, None]
    tissue = wrong & target
    if tissue.any():
        goal = threshold - CORRECTION_MARGIN
        good = (~wrong & target).astype(np.float32)
        typical = img[good > 0].mean(0) if good.any() else np.array(FALLBACK_TISSUE, np.float32)
        num = cv2.GaussianBlur(img * good[..., None], (0, 0), CORRECTION_SIGMA)
        den = cv2.GaussianBlur(good, (0, 0), CORRECTION_SIGMA)[..., None]
        local = np.where(den > 0.05, num / np.maximum(den, 1e-6), typical)[tissue]
        c, lc = img[tissue], lum[tissue]
        lq = local @ LUMA_WEIGHTS
        t = np.where(lq < goal, (lc - goal) / np.maximum(lc - lq, 1e-6), 1.0)
        img[tissue] = c + np.clip(t, 0, 1)[:, None] * (local - c)
    fixed = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    # a pale neighbourhood, clipping or rounding can leave a pixel short: step it on until the rule holds
    for _ in range(255):
        off = (luma(fixed) <= threshold) != target
        if not off.any():
            break
        step = np.where(target[off], -1, 1)[:, None]
        fixed[off] = np.clip(fixed[off].astype(np.int16) + step, 0, 255).astype(np.uint8)
    if ((luma(fixed) <= threshold) != target).any():
        raise AssertionError("quilt: the label correction left pixels of the wrong class")
    out[...] = fixed
    return float(wrong.mean())

