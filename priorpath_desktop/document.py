"""The coarse mask being drawn, with undo and redo; Qt-free so it can be tested and benchmarked alone.

The mask is an HxW uint8 array, 255 tissue / 0 air, always exactly those two values. Coordinates are
continuous image coordinates: pixel (col, row) covers ``[col, col+1) x [row, row+1)``, so its centre is
at ``(col + 0.5, row + 0.5)``. A changed rectangle is ``(x0, y0, x1, y1)`` with the end excluded.

Undo keeps one step per stroke or operation, and a step stores only the rectangle that changed, before
and after, as packed bits (a mask pixel is one bit), so a long session of small strokes costs little.
During a stroke the state before it is kept per 64x64 tile the first time a stamp touches the tile,
which avoids copying the whole mask when a stroke starts.
"""
from __future__ import annotations

import itertools
import math
from collections import deque
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import cv2
import numpy as np

from trainer.data.mask_files import read_mask_file
from trainer.data.sketches import IMAGE_SUFFIXES
from trainer.errors import PriorPathError
from trainer.fileio import atomic_write_bytes, decode_image_file, encode_png

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1; x1 and y1 excluded
RectListener = Callable[[Rect], None]
StepListener = Callable[[], None]

TISSUE, AIR = 255, 0
MIN_SIDE, MAX_SIDE = 16, 20000
DEFAULT_UNDO_DEPTH = 200
#: Undo history is also capped in bytes: inverting a 20000x20000 mask is a 100 MB step (one bit per pixel,
#: before and after), so 200 of them would not fit in memory. The newest step is always kept.
UNDO_BUDGET_BYTES = 512 * 1024 * 1024
OPEN_SUFFIXES = IMAGE_SUFFIXES | {".json", ".geojson"}
GEOJSON_CANVAS_SIDE = 4096  # QuPath annotations of a whole slide open scaled down to at most this a side
_TILE = 64
_SHIFT = 4  # fixed-point bits for OpenCV drawing: centres and radii kept to 1/16 pixel


def check_size(height: int, width: int, what: str = "mask") -> None:
    if not (MIN_SIDE <= height <= MAX_SIDE and MIN_SIDE <= width <= MAX_SIDE):
        raise PriorPathError(f"{what} is {height}x{width} pixels; each side must be {MIN_SIDE} to {MAX_SIDE}")


def binarise(mask: np.ndarray) -> np.ndarray:
    """255 where the value is above 127, else 0 (a 0/1 mask counts 1 as tissue)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise PriorPathError(f"a mask must be a 2-D array, got shape {mask.shape}")
    if mask.dtype == bool or (mask.size and np.issubdtype(mask.dtype, np.integer) and mask.max() == 1):
        return np.where(mask > 0, TISSUE, AIR).astype(np.uint8)
    return np.where(mask > 127, TISSUE, AIR).astype(np.uint8)


class _RegionStep:
    """One undoable change confined to a rectangle: the bits before and after."""

    def __init__(self, rect: Rect, before: np.ndarray, after: np.ndarray):
        self.rect = rect
        self.before = np.packbits(before > 0)
        self.after = np.packbits(after > 0)

    def _put(self, doc: "MaskDocument", packed: np.ndarray) -> Rect:
        x0, y0, x1, y1 = self.rect
        h, w = y1 - y0, x1 - x0
        bits = np.unpackbits(packed, count=h * w).reshape(h, w)
        doc._mask[y0:y1, x0:x1] = bits * np.uint8(TISSUE)
        return self.rect

    def undo(self, doc: "MaskDocument") -> Rect:
        return self._put(doc, self.before)

    def redo(self, doc: "MaskDocument") -> Rect:
        return self._put(doc, self.after)


class _ReplaceStep:
    """A whole new mask, possibly of another size."""

    def __init__(self, before: np.ndarray, after: np.ndarray):
        self.shapes = (before.shape, after.shape)
        self.before = np.packbits(before > 0)
        self.after = np.packbits(after > 0)

    @staticmethod
    def _load(doc: "MaskDocument", packed: np.ndarray, shape: tuple[int, int]) -> Rect:
        bits = np.unpackbits(packed, count=shape[0] * shape[1]).reshape(shape)
        doc._mask = bits * np.uint8(TISSUE)
        return (0, 0, shape[1], shape[0])

    def undo(self, doc: "MaskDocument") -> Rect:
        return self._load(doc, self.before, self.shapes[0])

    def redo(self, doc: "MaskDocument") -> Rect:
        return self._load(doc, self.after, self.shapes[1])


class _OpenStroke:
    """What a stroke in progress has touched: the original content of each tile, and the bounding box."""

    def __init__(self) -> None:
        self.tiles: dict[tuple[int, int], np.ndarray] = {}
        self.box: Optional[list[int]] = None

    def remember(self, mask: np.ndarray, rect: Rect) -> None:
        x0, y0, x1, y1 = rect
        for ty in range(y0 // _TILE, (y1 - 1) // _TILE + 1):
            for tx in range(x0 // _TILE, (x1 - 1) // _TILE + 1):
                if (ty, tx) not in self.tiles:
                    self.tiles[ty, tx] = mask[ty * _TILE:(ty + 1) * _TILE, tx * _TILE:(tx + 1) * _TILE].copy()
        if self.box is None:
            self.box = list(rect)
        else:
            b = self.box
            b[0], b[1], b[2], b[3] = min(b[0], x0), min(b[1], y0), max(b[2], x1), max(b[3], y1)

    def before(self, mask: np.ndarray, rect: Rect) -> np.ndarray:
        """The content of ``rect`` as it was when the stroke began."""
        x0, y0, x1, y1 = rect
        out = mask[y0:y1, x0:x1].copy()
        for (ty, tx), tile in self.tiles.items():
            ty0, tx0 = ty * _TILE, tx * _TILE
            # intersection of the tile and the rectangle
            a0, a1 = max(ty0, y0), min(ty0 + tile.shape[0], y1)
            b0, b1 = max(tx0, x0), min(tx0 + tile.shape[1], x1)
            if a0 < a1 and b0 < b1:
                out[a0 - y0:a1 - y0, b0 - x0:b1 - x0] = tile[a0 - ty0:a1 - ty0, b0 - tx0:b1 - tx0]
        return out


class MaskDocument:
    """A binary mask with undoable edits.

    Every change is announced to the rect listeners with the rectangle it touched (also during a stroke,
    so a view can repaint as the pen moves); step listeners hear when a whole step is done (a stroke
    ended, a fill, clear, invert, replace, undo or redo). ``version`` counts completed steps; ``dirty``
    says whether the mask differs from the last open or save (undoing back to it makes it clean again).
    """

    _step_ids = itertools.count(1)

    def __init__(self, height: int, width: int, undo_depth: int = DEFAULT_UNDO_DEPTH,
                 undo_budget: int = UNDO_BUDGET_BYTES):
        check_size(height, width)
        if undo_depth < 0:
            raise PriorPathError(f"undo depth must be 0 or more, got {undo_depth}")
        self._mask = np.zeros((int(height), int(width)), np.uint8)
        self.undo_depth = int(undo_depth)
        self.undo_budget = int(undo_budget)
        self.path: Optional[Path] = None
        self.open_notice: Optional[str] = None  # what reading the file changed (a grey mask thresholded)
        self.version = 0
        self._undo: deque[tuple[int, object]] = deque()
        self._redo: list[tuple[int, object]] = []
        self._stroke: Optional[_OpenStroke] = None
        self._base_state = 0  # state id with nothing to undo
        self._saved_state: Optional[int] = 0
        self._rect_listeners: list[RectListener] = []
        self._step_listeners: list[StepListener] = []

    # -- construction and files ---------------------------------------------------------------------

    @classmethod
    def from_array(cls, mask: np.ndarray, path: Optional[Union[str, Path]] = None,
                   undo_depth: int = DEFAULT_UNDO_DEPTH) -> "MaskDocument":
        """A document holding ``mask`` (binarised at 127), clean, with nothing to undo."""
        mask = binarise(mask)
        check_size(*mask.shape, what=str(path) if path else "mask")
        doc = cls(*mask.shape, undo_depth=undo_depth)
        doc._mask = mask
        doc.path = Path(path) if path is not None else None
        return doc

    @classmethod
    def open(cls, path: Union[str, Path], undo_depth: int = DEFAULT_UNDO_DEPTH) -> "MaskDocument":
        """Read a mask from a PNG/TIFF/JPEG image or a Labelme ``.json`` file.

        Images follow ``trainer.data.mask_files``, the rule the command line uses too: grey is thresholded at
        127 (and ``open_notice`` then says so, for the window to show), transparent pixels are air, 0/1 masks
        and 16-bit images are understood, and a colour image is refused (it belongs under the mask as an
        underlay). The size is checked from the file's header before anything is decoded.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in OPEN_SUFFIXES:
            raise PriorPathError(f"{path}: cannot open '{suffix or 'no extension'}' files as masks "
                                 f"(expected {', '.join(sorted(OPEN_SUFFIXES))})")
        scale = _annotation_scale(path)
        read = read_mask_file(path, min_side=MIN_SIDE, max_side=MAX_SIDE,  # an all-air mask saved earlier reopens
                              geojson_scale=scale)
        check_size(*read.mask.shape, what=str(path))
        doc = cls.from_array(read.mask, path, undo_depth)
        doc.open_notice = read.notice(path.name)
        if scale > 1:
            doc.open_notice = (f"{path.name}: QuPath annotations drawn at 1/{scale} of their slide's size; "
                               f"Export as slide with scale {scale} generates them at full size")
        return doc

    def save_png(self, path: Optional[Union[str, Path]] = None) -> Path:
        """Write the mask as a PNG atomically (to ``path`` or the document's own path); the document is clean."""
        self._commit_stroke()
        target = Path(path) if path is not None else self.path
        if target is None:
            raise PriorPathError("this mask has no file yet: choose where to save it")
        if target.suffix.lower() != ".png":
            raise PriorPathError(f"{target}: masks are saved as .png")
        if not target.parent.is_dir():
            raise PriorPathError(f"{target}: folder {target.parent} does not exist")
        atomic_write_bytes(target, encode_png(self._mask, compression=3))
        self.path = target
        self.mark_clean()
        return target

    def mark_clean(self) -> None:
        self._saved_state = self._state()

    def mark_unsaved(self) -> None:
        """Dirty until the next save whatever is undone (a recovered autosave was never saved)."""
        self._saved_state = None

    # -- state ---------------------------------------------------------------------------------------

    @property
    def mask(self) -> np.ndarray:
        """The live mask; read it, never write it (edits must go through the methods to be undoable)."""
        return self._mask

    @property
    def height(self) -> int:
        return self._mask.shape[0]

    @property
    def width(self) -> int:
        return self._mask.shape[1]

    @property
    def shape(self) -> tuple[int, int]:
        return self._mask.shape

    @property
    def dirty(self) -> bool:
        return self._stroke is not None or self._state() != self._saved_state

    @property
    def can_undo(self) -> bool:
        return bool(self._undo) or self._stroke is not None

    @property
    def can_redo(self) -> bool:
        return bool(self._redo) and self._stroke is None

    @property
    def in_stroke(self) -> bool:
        return self._stroke is not None

    def _state(self) -> int:
        return self._undo[-1][0] if self._undo else self._base_state

    # -- listeners -----------------------------------------------------------------------------------

    def add_listener(self, fn: RectListener) -> None:
        """``fn(rect)`` after every change of pixels, with the rectangle changed."""
        self._rect_listeners.append(fn)

    def remove_listener(self, fn: RectListener) -> None:
        if fn in self._rect_listeners:
            self._rect_listeners.remove(fn)

    def add_step_listener(self, fn: StepListener) -> None:
        """``fn()`` after every completed step (stroke end, fill, clear, invert, replace, undo, redo)."""
        self._step_listeners.append(fn)

    def remove_step_listener(self, fn: StepListener) -> None:
        if fn in self._step_listeners:
            self._step_listeners.remove(fn)

    def _announce(self, rect: Rect) -> None:
        for fn in list(self._rect_listeners):
            fn(rect)

    def _step_done(self) -> None:
        self.version += 1
        for fn in list(self._step_listeners):
            fn()

    # -- strokes -------------------------------------------------------------------------------------

    def begin_stroke(self) -> None:
        """Start collecting stamps into one undo step (ends a stroke still open)."""
        self._commit_stroke()
        self._stroke = _OpenStroke()

    def stamp(self, x: float, y: float, radius: float, value: int) -> Optional[Rect]:
        """Paint a disc: the pixels whose centres lie within ``radius`` of (x, y). Returns the rectangle
        touched, or None if the disc is off the canvas. Outside a stroke it is a step of its own."""
        return self.stamp_segment(x, y, x, y, radius, radius, value)

    def stamp_segment(self, x0: float, y0: float, x1: float, y1: float,
                      radius0: float, radius1: float, value: int) -> Optional[Rect]:
        """The pixels whose centres lie within the radius of the segment, the radius going linearly from
        ``radius0`` to ``radius1`` (a tapered capsule): no gaps however fast the pen moved, and exact discs
        (no one-pixel nubs at the poles, which OpenCV's circles leave) where the segment is a point."""
        value = TISSUE if value else AIR
        r0, r1 = max(0.5, float(radius0)), max(0.5, float(radius1))
        rmax = max(r0, r1)
        length = math.hypot(x1 - x0, y1 - y0)
        if length > 8 * rmax + 64:  # keep each piece's bounding box small: a long diagonal is not a full square
            pieces = math.ceil(length / (8 * rmax + 64))
            implicit = self._stroke is None
            if implicit:
                self.begin_stroke()
            rects = []
            for i in range(pieces):
                a, b = i / pieces, (i + 1) / pieces
                rects.append(self.stamp_segment(x0 + (x1 - x0) * a, y0 + (y1 - y0) * a, x0 + (x1 - x0) * b,
                                                y0 + (y1 - y0) * b, r0 + (r1 - r0) * a, r0 + (r1 - r0) * b, value))
            if implicit:
                self.end_stroke()
            rects = [r for r in rects if r is not None]
            return (min(r[0] for r in rects), min(r[1] for r in rects), max(r[2] for r in rects),
                    max(r[3] for r in rects)) if rects else None
        rect = self._clip((math.floor(min(x0, x1) - rmax), math.floor(min(y0, y1) - rmax),
                           math.ceil(max(x0, x1) + rmax) + 1, math.ceil(max(y0, y1) + rmax) + 1))
        if rect is None:
            return None
        implicit = self._stroke is None
        if implicit:
            self.begin_stroke()
        self._stroke.remember(self._mask, rect)
        xa, ya, xb, yb = rect
        px = np.arange(xa, xb, dtype=np.float32)[None, :] + 0.5  # pixel centres
        py = np.arange(ya, yb, dtype=np.float32)[:, None] + 0.5
        dx, dy = x1 - x0, y1 - y0
        if length > 0:
            t = np.clip(((px - x0) * dx + (py - y0) * dy) / (length * length), 0.0, 1.0)
        else:
            t = np.zeros((1, 1), np.float32)
        d2 = (px - (x0 + dx * t)) ** 2 + (py - (y0 + dy * t)) ** 2
        r = r0 + (r1 - r0) * t
        self._mask[ya:yb, xa:xb][d2 <= r * r] = value
        self._announce(rect)
        if implicit:
            self.end_stroke()
        return rect

    def end_stroke(self) -> Optional[Rect]:
        """Close the stroke as one undo step; returns the rectangle that changed (None if nothing did)."""
        stroke, self._stroke = self._stroke, None
        if stroke is None or stroke.box is None:
            return None
        rect = tuple(stroke.box)
        return self._record(rect, stroke.before(self._mask, rect))

    def _commit_stroke(self) -> None:
        if self._stroke is not None:
            self.end_stroke()

    # -- whole operations ----------------------------------------------------------------------------

    def fill(self, x: float, y: float, value: int) -> Optional[Rect]:
        """Flood-fill the 4-connected region of equal pixels around (x, y) with ``value``."""
        self._commit_stroke()
        col, row = math.floor(x), math.floor(y)
        value = TISSUE if value else AIR
        if not (0 <= col < self.width and 0 <= row < self.height) or self._mask[row, col] == value:
            return None
        region = np.zeros((self.height + 2, self.width + 2), np.uint8)
        _, _, _, (rx, ry, rw, rh) = cv2.floodFill(self._mask, region, (col, row), 0, 0, 0,
                                                 4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8))
        rect = (rx, ry, rx + rw, ry + rh)
        before = self._mask[ry:ry + rh, rx:rx + rw].copy()
        self._mask[ry:ry + rh, rx:rx + rw][region[ry + 1:ry + rh + 1, rx + 1:rx + rw + 1] > 0] = value
        self._announce(rect)
        return self._record(rect, before)

    def fill_polygon(self, points: Sequence[tuple[float, float]], value: int) -> Optional[Rect]:
        """Fill the polygon through ``points`` (image coordinates, at least 3) with ``value``: the pixels
        whose centres are inside and those its outline passes through (so a lasso never leaves a seam)."""
        self._commit_stroke()
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if len(pts) < 3 or not np.all(np.isfinite(pts)):
            return None
        rect = self._clip((math.floor(pts[:, 0].min()), math.floor(pts[:, 1].min()),
                           math.ceil(pts[:, 0].max()) + 1, math.ceil(pts[:, 1].max()) + 1))
        if rect is None:
            return None
        x0, y0, x1, y1 = rect
        before = self._mask[y0:y1, x0:x1].copy()
        fixed = np.round((pts - 0.5) * (1 << _SHIFT)).astype(np.int32)
        cv2.fillPoly(self._mask, [fixed], TISSUE if value else AIR, lineType=cv2.LINE_8, shift=_SHIFT)
        self._announce(rect)
        return self._record(rect, before)

    def clear(self) -> Optional[Rect]:
        """Everything air."""
        self._commit_stroke()
        rect = _bbox(self._mask > 0)
        if rect is None:
            return None
        x0, y0, x1, y1 = rect
        before = self._mask[y0:y1, x0:x1].copy()
        self._mask[y0:y1, x0:x1] = AIR
        self._announce(rect)
        return self._record(rect, before)

    def invert(self) -> Rect:
        """Tissue becomes air and air tissue."""
        self._commit_stroke()
        before = self._mask.copy()
        np.subtract(TISSUE, self._mask, out=self._mask)
        rect = (0, 0, self.width, self.height)
        self._announce(rect)
        return self._record(rect, before)

    def replace(self, mask: np.ndarray) -> Rect:
        """Load a whole new mask (binarised at 127; it may have another size) as one undoable step."""
        self._commit_stroke()
        new = binarise(mask)
        check_size(*new.shape)
        before, self._mask = self._mask, new.copy()
        self._push(_ReplaceStep(before, self._mask))
        rect = (0, 0, self.width, self.height)
        self._announce(rect)
        self._step_done()
        return rect

    # -- undo ----------------------------------------------------------------------------------------

    def undo(self) -> Optional[Rect]:
        self._commit_stroke()
        if not self._undo:
            return None
        entry = self._undo.pop()
        rect = entry[1].undo(self)
        self._redo.append(entry)
        self._announce(rect)
        self._step_done()
        return rect

    def redo(self) -> Optional[Rect]:
        self._commit_stroke()
        if not self._redo:
            return None
        entry = self._redo.pop()
        rect = entry[1].redo(self)
        self._undo.append(entry)
        self._announce(rect)
        self._step_done()
        return rect

    def _record(self, rect: Rect, before: np.ndarray) -> Optional[Rect]:
        """Make the change from ``before`` to the mask now in ``rect`` a step, trimmed to what really changed."""
        x0, y0, x1, y1 = rect
        changed = _bbox(before != self._mask[y0:y1, x0:x1])
        if changed is None:
            return None
        cx0, cy0, cx1, cy1 = changed
        trimmed = (x0 + cx0, y0 + cy0, x0 + cx1, y0 + cy1)
        after = self._mask[trimmed[1]:trimmed[3], trimmed[0]:trimmed[2]]
        self._push(_RegionStep(trimmed, before[cy0:cy1, cx0:cx1], after))
        self._step_done()
        return trimmed

    def _push(self, step) -> None:
        self._redo.clear()
        self._undo.append((next(self._step_ids), step))
        held = sum(_step_bytes(s) for _, s in self._undo)
        while len(self._undo) > self.undo_depth or (held > self.undo_budget and len(self._undo) > 1):
            # the oldest step becomes the base state: remember which id that is for ``dirty``
            state, oldest = self._undo.popleft()
            self._base_state = state
            held -= _step_bytes(oldest)

    def undo_bytes(self) -> int:
        """Memory held by the undo history (packed bits)."""
        return sum(_step_bytes(s) for _, s in self._undo)

    def _clip(self, rect: Rect) -> Optional[Rect]:
        x0, y0, x1, y1 = rect
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(self.width, x1), min(self.height, y1)
        return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def _step_bytes(step) -> int:
    return step.before.nbytes + step.after.nbytes


def _bbox(on: np.ndarray) -> Optional[Rect]:
    rows = np.flatnonzero(on.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(on.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def _annotation_scale(path: Path) -> int:
    """1 for a mask image or Labelme file; for QuPath GeoJSON (in slide pixels) the factor that fits the canvas."""
    if path.suffix.lower() not in (".json", ".geojson"):
        return 1
    from trainer.geojson import fitting_scale, is_geojson

    try:
        import json

        if path.suffix.lower() == ".json" and not is_geojson(json.loads(path.read_text(encoding="utf-8"))):
            return 1
        return fitting_scale(path, GEOJSON_CANVAS_SIDE)
    except (OSError, UnicodeDecodeError, ValueError, PriorPathError):
        return 1  # the reader says what is wrong with the file


def read_image(path: Union[str, Path]) -> np.ndarray:
    """Any image as HxWx3 uint8 RGB (for an underlay to trace over); errors name the file."""
    return cv2.cvtColor(decode_image_file(Path(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def mask_files_filter() -> str:
    """A file-dialog filter for what ``MaskDocument.open`` reads."""
    images = " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES))
    return f"Masks ({images} *.json *.geojson);;Images ({images});;Labelme (*.json);;QuPath GeoJSON (*.geojson *.json)"
