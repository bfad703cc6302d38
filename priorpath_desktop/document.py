"""The coarse sketch being drawn, with undo and redo; Qt-free so it can be tested and benchmarked alone.

The sketch is a label map: an HxW uint8 array of class ids from the document's ``ClassTable`` (0 is air;
``BINARY``, air/tissue, by default). ``mask`` is its 255/0 tissue mask (every class but air is tissue),
which is what generation and export consume. Coordinates are continuous image coordinates: pixel
(col, row) covers ``[col, col+1) x [row, row+1)``, so its centre is at ``(col + 0.5, row + 0.5)``. A
changed rectangle is ``(x0, y0, x1, y1)`` with the end excluded.

Edits take a class id; ``TISSUE`` (255), the value of the binary-only document, still means class 1.
Undo keeps one step per stroke or operation, and a step stores only the rectangle that changed, before
and after, as packed bit planes (``undo_steps``: one bit a pixel for a binary map), so a long session of
small strokes costs little.
"""
from __future__ import annotations

import itertools
import math
from collections import deque
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import cv2
import numpy as np

from trainer.data.classes import AIR, BINARY, ClassTable, binary_labels, check_labels, tissue_of
from trainer.data.mask_files import read_mask_file
from trainer.data.sketches import IMAGE_SUFFIXES
from trainer.errors import PriorPathError
from trainer.fileio import atomic_write_bytes, decode_image_file, encode_png

from .label_files import is_indexed_png, read_label_map, write_label_map
from .undo_steps import OpenStroke, RegionStep, ReplaceStep, step_bytes

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1; x1 and y1 excluded
RectListener = Callable[[Rect], None]
StepListener = Callable[[], None]

TISSUE = 255  # the binary mask's tissue value; as an edit's value it means class 1
MIN_SIDE, MAX_SIDE = 16, 20000
DEFAULT_UNDO_DEPTH = 200
#: Undo history is also capped in bytes: inverting a 20000x20000 binary map is a 100 MB step (one bit per
#: pixel, before and after), so 200 of them would not fit in memory. The newest step is always kept.
UNDO_BUDGET_BYTES = 512 * 1024 * 1024
OPEN_SUFFIXES = IMAGE_SUFFIXES | {".json", ".geojson"}
GEOJSON_CANVAS_SIDE = 4096  # QuPath annotations of a whole slide open scaled down to at most this a side
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


class MaskDocument:
    """A label map (binary by default) with undoable edits.

    Every change is announced to the rect listeners with the rectangle it touched (also during a stroke,
    so a view can repaint as the pen moves); step listeners hear when a whole step is done (a stroke
    ended, a fill, clear, invert, replace, undo or redo). ``version`` counts completed steps; ``dirty``
    says whether the mask differs from the last open or save (undoing back to it makes it clean again).
    """

    _step_ids = itertools.count(1)

    def __init__(self, height: int, width: int, undo_depth: int = DEFAULT_UNDO_DEPTH,
                 undo_budget: int = UNDO_BUDGET_BYTES, classes: ClassTable = BINARY):
        check_size(height, width)
        if undo_depth < 0:
            raise PriorPathError(f"undo depth must be 0 or more, got {undo_depth}")
        self._labels = np.zeros((int(height), int(width)), np.uint8)
        self._classes = classes
        self._tissue: Optional[np.ndarray] = None  # the 255/0 mask, made when first asked for, then kept in step
        self.undo_depth = int(undo_depth)
        self.undo_budget = int(undo_budget)
        self.path: Optional[Path] = None
        self.open_notice: Optional[str] = None  # what reading the file changed (a grey mask thresholded)
        self.version = 0
        self._undo: deque[tuple[int, object]] = deque()
        self._redo: list[tuple[int, object]] = []
        self._stroke: Optional[OpenStroke] = None
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
        return cls.from_labels(binary_labels(mask), BINARY, path, undo_depth)

    @classmethod
    def from_labels(cls, labels: np.ndarray, classes: ClassTable, path: Optional[Union[str, Path]] = None,
                    undo_depth: int = DEFAULT_UNDO_DEPTH) -> "MaskDocument":
        """A document holding the label map ``labels`` of ``classes``, clean, with nothing to undo."""
        check_labels(labels, classes)
        check_size(*labels.shape, what=str(path) if path else "label map")
        doc = cls(*labels.shape, undo_depth=undo_depth, classes=classes)
        doc._labels = np.array(labels, dtype=np.uint8)
        doc.path = Path(path) if path is not None else None
        return doc

    @classmethod
    def open(cls, path: Union[str, Path], undo_depth: int = DEFAULT_UNDO_DEPTH) -> "MaskDocument":
        """Read a mask from a PNG/TIFF/JPEG image or a Labelme ``.json`` file, or a label map from an indexed PNG.

        An indexed PNG is a label map with its classes (``label_files``). Other images follow
        ``trainer.data.mask_files``, the rule the command line uses too: grey is thresholded at 127 (and
        ``open_notice`` then says so, for the window to show), transparent pixels are air, 0/1 masks and 16-bit
        images are understood, and a colour image is refused (it belongs under the mask as an underlay). The size
        is checked from the file's header before anything is decoded.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in OPEN_SUFFIXES:
            raise PriorPathError(f"{path}: cannot open '{suffix or 'no extension'}' files as masks "
                                 f"(expected {', '.join(sorted(OPEN_SUFFIXES))})")
        if suffix == ".png" and is_indexed_png(path):
            label_map = read_label_map(path, MIN_SIDE, MAX_SIDE)
            if label_map is not None:
                doc = cls.from_labels(label_map.labels, label_map.classes, path, undo_depth)
                doc.open_notice = label_map.notice
                return doc
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
        """Write the sketch as a PNG atomically (to ``path`` or the document's own path); the document is clean.

        A binary sketch is a grey 255/0 mask; any other is an indexed PNG with its classes.json beside it."""
        self._commit_stroke()
        target = Path(path) if path is not None else self.path
        if target is None:
            raise PriorPathError("this mask has no file yet: choose where to save it")
        if target.suffix.lower() != ".png":
            raise PriorPathError(f"{target}: masks are saved as .png")
        if not target.parent.is_dir():
            raise PriorPathError(f"{target}: folder {target.parent} does not exist")
        if self.is_binary:
            atomic_write_bytes(target, encode_png(self.mask, compression=3))
        else:
            write_label_map(target, self._labels, self._classes)
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
        """The live 255/0 tissue mask (every class but air); read it, never write it (edits must go through
        the methods to be undoable). Kept up to date rectangle by rectangle once asked for."""
        if self._tissue is None or self._tissue.shape != self._labels.shape:
            self._tissue = tissue_of(self._labels)
        return self._tissue

    @property
    def labels(self) -> np.ndarray:
        """The live label map of class ids; read it, never write it."""
        return self._labels

    @property
    def classes(self) -> ClassTable:
        return self._classes

    @property
    def is_binary(self) -> bool:
        """Air and tissue only: saved and autosaved as a 255/0 mask, as before classes existed."""
        return self._classes == BINARY

    def class_value(self, value: int) -> int:
        """The class id an edit's ``value`` paints: itself, or class 1 for ``TISSUE`` (255)."""
        value = int(value)
        if value == TISSUE:
            return 1
        if not 0 <= value < len(self._classes):
            raise PriorPathError(f"class id {value} is not in table {self._classes.name!r} "
                                 f"(ids 0-{len(self._classes) - 1})")
        return value

    @property
    def height(self) -> int:
        return self._labels.shape[0]

    @property
    def width(self) -> int:
        return self._labels.shape[1]

    @property
    def shape(self) -> tuple[int, int]:
        return self._labels.shape

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
        if self._tissue is not None:
            if self._tissue.shape != self._labels.shape:
                self._tissue = None
            else:
                x0, y0, x1, y1 = rect
                self._tissue[y0:y1, x0:x1] = tissue_of(self._labels[y0:y1, x0:x1])
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
        self._stroke = OpenStroke()

    def stamp(self, x: float, y: float, radius: float, value: int) -> Optional[Rect]:
        """Paint a disc of class ``value``: the pixels whose centres lie within ``radius`` of (x, y). Returns the
        rectangle touched, or None if the disc is off the canvas. Outside a stroke it is a step of its own."""
        return self.stamp_segment(x, y, x, y, radius, radius, value)

    def stamp_segment(self, x0: float, y0: float, x1: float, y1: float,
                      radius0: float, radius1: float, value: int) -> Optional[Rect]:
        """The pixels whose centres lie within the radius of the segment, the radius going linearly from
        ``radius0`` to ``radius1`` (a tapered capsule): no gaps however fast the pen moved, and exact discs
        (no one-pixel nubs at the poles, which OpenCV's circles leave) where the segment is a point."""
        value = self.class_value(value)
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
        self._stroke.remember(self._labels, rect)
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
        self._labels[ya:yb, xa:xb][d2 <= r * r] = value
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
        return self._record(rect, stroke.before(self._labels, rect))

    def _commit_stroke(self) -> None:
        if self._stroke is not None:
            self.end_stroke()

    # -- whole operations ----------------------------------------------------------------------------

    def fill(self, x: float, y: float, value: int) -> Optional[Rect]:
        """Flood-fill the 4-connected region of one class around (x, y) with class ``value``."""
        self._commit_stroke()
        col, row = math.floor(x), math.floor(y)
        value = self.class_value(value)
        if not (0 <= col < self.width and 0 <= row < self.height) or self._labels[row, col] == value:
            return None
        region = np.zeros((self.height + 2, self.width + 2), np.uint8)
        _, _, _, (rx, ry, rw, rh) = cv2.floodFill(self._labels, region, (col, row), 0, 0, 0,
                                                 4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8))
        rect = (rx, ry, rx + rw, ry + rh)
        before = self._labels[ry:ry + rh, rx:rx + rw].copy()
        self._labels[ry:ry + rh, rx:rx + rw][region[ry + 1:ry + rh + 1, rx + 1:rx + rw + 1] > 0] = value
        self._announce(rect)
        return self._record(rect, before)

    def fill_polygon(self, points: Sequence[tuple[float, float]], value: int) -> Optional[Rect]:
        """Fill the polygon through ``points`` (image coordinates, at least 3) with class ``value``: the pixels
        whose centres are inside and those its outline passes through (so a lasso never leaves a seam)."""
        self._commit_stroke()
        value = self.class_value(value)
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if len(pts) < 3 or not np.all(np.isfinite(pts)):
            return None
        rect = self._clip((math.floor(pts[:, 0].min()), math.floor(pts[:, 1].min()),
                           math.ceil(pts[:, 0].max()) + 1, math.ceil(pts[:, 1].max()) + 1))
        if rect is None:
            return None
        x0, y0, x1, y1 = rect
        before = self._labels[y0:y1, x0:x1].copy()
        fixed = np.round((pts - 0.5) * (1 << _SHIFT)).astype(np.int32)
        cv2.fillPoly(self._labels, [fixed], value, lineType=cv2.LINE_8, shift=_SHIFT)
        self._announce(rect)
        return self._record(rect, before)

    def clear(self) -> Optional[Rect]:
        """Everything air."""
        self._commit_stroke()
        rect = _bbox(self._labels > 0)
        if rect is None:
            return None
        x0, y0, x1, y1 = rect
        before = self._labels[y0:y1, x0:x1].copy()
        self._labels[y0:y1, x0:x1] = AIR
        self._announce(rect)
        return self._record(rect, before)

    def invert(self, value: int = 1) -> Rect:
        """Tissue (every class) becomes air, and air becomes class ``value``."""
        self._commit_stroke()
        value = self.class_value(value)
        before = self._labels.copy()
        self._labels[...] = np.where(before == AIR, np.uint8(value), np.uint8(AIR))
        rect = (0, 0, self.width, self.height)
        self._announce(rect)
        return self._record(rect, before)

    def replace(self, mask: np.ndarray, classes: Optional[ClassTable] = None) -> Rect:
        """Load a whole new mask (binarised at 127, tissue as class 1; it may have another size) as one
        undoable step; with ``classes``, which must be the document's table, a label map of those classes."""
        self._commit_stroke()
        if classes is not None and classes != self._classes:
            raise PriorPathError(f"a label map of table {classes.name!r} cannot replace a sketch drawn in "
                                 f"table {self._classes.name!r}")
        if classes is not None:
            check_labels(mask, classes)
        new = np.array(mask, np.uint8) if classes is not None else binary_labels(binarise(mask))
        check_size(*new.shape)
        before, self._labels = self._labels, new
        self._push(ReplaceStep(before, self._labels))
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
        """Make the change from ``before`` to the map now in ``rect`` a step, trimmed to what really changed."""
        x0, y0, x1, y1 = rect
        changed = _bbox(before != self._labels[y0:y1, x0:x1])
        if changed is None:
            return None
        cx0, cy0, cx1, cy1 = changed
        trimmed = (x0 + cx0, y0 + cy0, x0 + cx1, y0 + cy1)
        after = self._labels[trimmed[1]:trimmed[3], trimmed[0]:trimmed[2]]
        self._push(RegionStep(trimmed, before[cy0:cy1, cx0:cx1], after))
        self._step_done()
        return trimmed

    def _push(self, step) -> None:
        self._redo.clear()
        self._undo.append((next(self._step_ids), step))
        held = sum(step_bytes(s) for _, s in self._undo)
        while len(self._undo) > self.undo_depth or (held > self.undo_budget and len(self._undo) > 1):
            # the oldest step becomes the base state: remember which id that is for ``dirty``
            state, oldest = self._undo.popleft()
            self._base_state = state
            held -= step_bytes(oldest)

    def undo_bytes(self) -> int:
        """Memory held by the undo history (packed bit planes)."""
        return sum(step_bytes(s) for _, s in self._undo)

    def _clip(self, rect: Rect) -> Optional[Rect]:
        x0, y0, x1, y1 = rect
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(self.width, x1), min(self.height, y1)
        return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


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
