"""A whole synthetic slide from a sketch drawn at reduced resolution, generated and written tile by tile.

The sketch (coarse mask, HxW) is drawn ``scale`` times smaller than the slide. The slide is walked in
``tile``-sided tiles, row band by row band:

1. **Coarse at full resolution**, bilinearly resampled from the sketch and thresholded, computed from
   absolute slide coordinates, so neighbouring tiles see the same coarse pixels; each tile's mask model
   also sees ``context`` pixels around it, so tissue edges continue across tile borders.
2. **Fine mask and RGB** for the tile and an ``overlap`` strip shared with its left and upper neighbours,
   by the engine's models (one stain group for the whole slide, chosen by the seed).
3. **Seams**: in the shared strips the new tile and what is already there meet along the minimum-error
   boundary cut (Efros & Freeman's, one level up: the error is colour difference plus a large penalty
   where the fine masks disagree), so the border winds through places where both agree. Mask and RGB take
   the same side of the cut everywhere, so the RGB stays an exact label of the fine mask.
4. **Streaming**: rows are final once the next band's overlap is past them; they go to the RGB pyramid
   (``slide_writer``) as they are finished and the fine mask to a scratch file that becomes the mask
   pyramid afterwards. Memory holds one band (tile + overlap rows x the slide's width), whatever the height.

Outputs, in level-0 pixels: ``OUT.tif`` (RGB, JPEG; deflate with ``lossless``), ``OUT.mask.tif`` (the fine
mask 0/255, deflate, exact), ``OUT.fine.geojson`` (the fine mask's tissue and holes as QuPath annotations,
traced on the mask area-averaged to at most 4096 px a side, so on a large slide precise to a few pixels) and
``OUT.geojson`` (the sketch's tissue). The mask pyramid is the label: JPEG moves pixels near the threshold by
a few levels, so the paper's rule applied to a JPEG slide gives back ~95 % IoU, and exactly the mask with
``lossless``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np

from .errors import PriorPathError
from .jobs import CancelToken, ProgressFn, check, no_progress
from .quilting import min_error_cut
from .slide_writer import TILE, _Scratch, write_pyramid

MAX_SLIDE_SIDE = 200_000
FINE_GEOJSON_SIDE = 4096  # the fine mask's polygons are traced at most this many pixels a side
MISMATCH = 1e6  # cut error where the two fine masks disagree: a cut through them would break the label


@dataclass(frozen=True)
class SlidePlan:
    height: int
    width: int
    tiles: int
    tissue_tiles: int
    levels: int

    def describe(self) -> str:
        return (f"{self.width}x{self.height} px, {self.tiles} tile{'s' * (self.tiles != 1)} ({self.tissue_tiles} "
                f"with tissue), {self.levels} pyramid level{'s' * (self.levels != 1)}")


@dataclass
class SlideResult:
    rgb: Path
    mask: Path
    annotations: Path
    plan: SlidePlan
    seconds: float
    fine_annotations: Optional[Path] = None


def plan_slide(sketch: np.ndarray, scale: int, tile: int = TILE) -> SlidePlan:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise PriorPathError(f"--scale must be a positive integer, got {scale!r}")
    h, w = sketch.shape[0] * scale, sketch.shape[1] * scale
    if max(h, w) > MAX_SLIDE_SIDE:
        raise PriorPathError(f"a {w}x{h} slide is larger than {MAX_SLIDE_SIDE} px a side; lower --scale")
    ny, nx = -(-h // tile), -(-w // tile)
    small = cv2.resize((sketch > 0).astype(np.uint8), (nx, ny), interpolation=cv2.INTER_AREA) > 0
    levels, side = 1, max(h, w)
    while side > tile:
        side, levels = -(-side // 2), levels + 1
    return SlidePlan(h, w, ny * nx, int(small.sum()), levels)


def estimate_seconds(engine, sketch: np.ndarray, scale: int, tile: int = TILE, overlap: int = 64,
                     context: int = 32) -> float:
    """Seconds the slide will take here: one tile with the most tissue and one of air generated and timed."""
    plan = plan_slide(sketch, scale, tile)
    ny, nx = -(-plan.height // tile), -(-plan.width // tile)
    share = cv2.resize((np.asarray(sketch) > 0).astype(np.float32), (nx, ny), interpolation=cv2.INTER_AREA)
    gen = _Generator(engine, _Coarse(sketch, scale), 0, tile, overlap, context, True, None, None, no_progress, None)
    total = 0.0
    for pick, count in ((np.argmax(share), plan.tissue_tiles), (np.argmin(share), plan.tiles - plan.tissue_tiles)):
        if not count:
            continue
        ty, tx = divmod(int(pick), nx)
        y0, x0 = ty * tile, tx * tile
        started = time.perf_counter()
        gen._tile(max(0, y0 - overlap), min(plan.height, y0 + tile), max(0, x0 - overlap),
                  min(plan.width, x0 + tile), ty, tx)
        total += count * (time.perf_counter() - started)
    return total * 1.15  # cuts, compression and the pyramid: about 15 % more, measured on 2 cores


class _Coarse:
    """The sketch resampled to slide resolution on demand, from absolute coordinates (tiles agree)."""

    def __init__(self, sketch: np.ndarray, scale: int):
        self.sketch = (np.asarray(sketch) > 0).astype(np.float32)
        self.scale = scale
        self.height, self.width = sketch.shape[0] * scale, sketch.shape[1] * scale

    def region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        ys = ((np.arange(y0, y1, dtype=np.float32) + 0.5) / self.scale - 0.5)
        xs = ((np.arange(x0, x1, dtype=np.float32) + 0.5) / self.scale - 0.5)
        map_x = np.broadcast_to(xs[None, :], (y1 - y0, x1 - x0))
        map_y = np.broadcast_to(ys[:, None], (y1 - y0, x1 - x0))
        values = cv2.remap(self.sketch, np.ascontiguousarray(map_x), np.ascontiguousarray(map_y),
                           cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return np.where(values >= 0.5, 255, 0).astype(np.uint8)


class _Generator:
    """Tiles of (fine, RGB) composed into row bands with seam cuts; yields finished RGB rows."""

    def __init__(self, engine, coarse: _Coarse, seed: int, tile: int, overlap: int, context: int, seams: bool,
                 group: Optional[str], fine_rows: _Scratch, progress: ProgressFn, cancel: Optional[CancelToken]):
        self.engine, self.coarse, self.seed, self.tile = engine, coarse, seed, tile
        self.overlap, self.context, self.seams, self.group = overlap, context, seams, group
        self.fine_rows, self.progress, self.cancel = fine_rows, progress, cancel
        self.ny, self.nx = -(-coarse.height // tile), -(-coarse.width // tile)

    def bands(self) -> Iterator[np.ndarray]:
        h, w, t, o = self.coarse.height, self.coarse.width, self.tile, self.overlap
        carry_fine = carry_rgb = None  # the previous band's last `o` rows, still open to this band's cut
        for ty in range(self.ny):
            y0 = ty * t
            top = max(0, y0 - o) if ty else 0
            bottom = min(h, y0 + t)
            fine = np.zeros((bottom - top, w), np.uint8)
            rgb = np.zeros((bottom - top, w, 3), np.uint8)
            if carry_fine is not None:
                fine[: len(carry_fine)], rgb[: len(carry_fine)] = carry_fine, carry_rgb
            for tx in range(self.nx):
                check(self.cancel)
                x0 = tx * t
                left, right = (max(0, x0 - o) if tx else 0), min(w, x0 + t)
                f, c = self._tile(top, bottom, left, right, ty, tx)
                self._compose(fine, rgb, f, c, left, right, rows=y0 - top, cols=x0 - left)
                self.progress(ty * self.nx + tx + 1, self.ny * self.nx, f"tile {ty * self.nx + tx + 1}/{self.ny * self.nx}")
            last = ty == self.ny - 1
            keep = 0 if last else min(o, len(fine))
            done = len(fine) - keep
            self.fine_rows.append(fine[:done, :, None])
            yield rgb[:done]
            carry_fine, carry_rgb = (fine[done:].copy(), rgb[done:].copy()) if keep else (None, None)

    def _tile(self, top: int, bottom: int, left: int, right: int, ty: int, tx: int) -> tuple[np.ndarray, np.ndarray]:
        c, e = self.context, self.engine
        h, w = self.coarse.height, self.coarse.width
        cy0, cy1, cx0, cx1 = max(0, top - c), min(h, bottom + c), max(0, left - c), min(w, right + c)
        coarse = self.coarse.region(cy0, cy1, cx0, cx1)
        seed = int(np.random.default_rng([self.seed, ty, tx]).integers(2 ** 31))
        inner = (slice(top - cy0, bottom - cy0), slice(left - cx0, right - cx0))
        fine = e.fine(coarse, seed, cancel=self.cancel)[inner] if coarse.any() else np.zeros(
            (bottom - top, right - left), np.uint8)
        rgb = e.rgb(_at_least(fine, 16), seed, cancel=self.cancel, style_group=self.group)[: fine.shape[0], : fine.shape[1]]
        return fine, rgb

    def _compose(self, fine: np.ndarray, rgb: np.ndarray, f: np.ndarray, c: np.ndarray, left: int, right: int,
                 rows: int, cols: int) -> None:
        """Paste tile (f, c) at columns [left, right) of the band; its first ``rows`` rows and ``cols`` columns
        overlap what is already there and are decided by minimum-error cuts (without ``seams``: overwritten)."""
        region = (slice(0, f.shape[0]), slice(left, right))
        take = np.ones(f.shape, bool)
        if self.seams and (rows or cols):
            err = ((c.astype(np.float32) - rgb[region]) ** 2).sum(-1) + MISMATCH * (f != fine[region])
            if cols:  # a top-to-bottom path through the left strip: the new tile right of it
                take[:, :cols] &= min_error_cut(err[None, :, :cols])[0]
            if rows:  # a left-to-right path through the top strip: the new tile below it
                take[:rows] &= min_error_cut(np.ascontiguousarray(err[:rows].T)[None])[0].T
        fine[region][take] = f[take]
        rgb[region][take] = c[take]


def _at_least(mask: np.ndarray, side: int) -> np.ndarray:
    """The engine takes masks of at least 16 px a side; edge tiles may be thinner."""
    h, w = mask.shape
    if h >= side and w >= side:
        return mask
    return np.pad(mask, ((0, max(0, side - h)), (0, max(0, side - w))), mode="edge")


def generate_slide(sketch: np.ndarray, scale: int, out, engine, seed: int = 0, tile: int = TILE,
                   overlap: int = 64, context: int = 32, mpp: Optional[float] = None, seams: bool = True,
                   lossless: bool = False,
                   progress: ProgressFn = no_progress, cancel: Optional[CancelToken] = None) -> SlideResult:
    """Write OUT (.tif), its ``.mask.tif``, ``.fine.geojson`` and ``.geojson``; see the module docstring."""
    from .geojson import write_annotations

    if engine.mask is None or engine.rgb_model is None:
        raise PriorPathError("a slide needs both a coarse->fine and a fine->RGB model")
    if not 0 <= overlap < tile // 2:
        raise PriorPathError(f"overlap must be between 0 and half the tile ({tile // 2}), got {overlap}")
    plan = plan_slide(sketch, scale, tile)
    out = Path(out)
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise PriorPathError(f"{out}: a slide is written as a pyramidal TIFF; name it .tif")
    out.parent.mkdir(parents=True, exist_ok=True)
    mask_path, geojson_path = out.with_suffix(".mask.tif"), out.with_suffix(".geojson")
    fine_geojson = out.with_suffix(".fine.geojson")
    groups = engine.style_groups()
    group = groups[int(np.random.default_rng([seed, 7]).integers(len(groups)))] if groups else None
    started = time.perf_counter()
    fine_rows = _Scratch(out.parent, plan.height, plan.width, 1)
    try:
        generator = _Generator(engine, _Coarse(sketch, scale), seed, tile, overlap, context, seams, group, fine_rows,
                               progress, cancel)
        description = (f"PriorPath synthetic slide: seed {seed}, sketch {sketch.shape[1]}x{sketch.shape[0]} x{scale}, "
                       f"models {engine.describe()}")
        write_pyramid(out, plan.height, plan.width, generator.bands(), 3, tile, mpp=mpp, description=description,
                      lossless=lossless)
        write_pyramid(mask_path, plan.height, plan.width, fine_rows.bands(tile), 1, tile, mpp=mpp,
                      description=f"PriorPath fine mask of {out.name} (255 tissue, 0 air)")
        factor = max(1, -(-max(plan.height, plan.width) // FINE_GEOJSON_SIDE))
        write_annotations(fine_geojson, _overview(fine_rows, factor) > 127, factor, name="fine mask")
    finally:
        fine_rows.close()
    write_annotations(geojson_path, sketch, scale, name="sketch")
    return SlideResult(out, mask_path, geojson_path, plan, time.perf_counter() - started, fine_geojson)


def _overview(rows: _Scratch, factor: int) -> np.ndarray:
    """The mask in the scratch file, area-averaged ``factor`` times smaller, read band by band."""
    width = -(-rows.width // factor)
    parts = [cv2.resize(band[..., 0], (width, -(-len(band) // factor)), interpolation=cv2.INTER_AREA)
             for band in rows.bands(factor * 256)]
    return np.vstack(parts)
