"""Labelme JSON annotations as coarse masks (the PriorPath paper drew its coarse masks in Labelme).

We parse the JSON ourselves so users need not install Labelme (and its Qt stack) next to ours.

Coordinates follow Labelme's own rasterisation: a point (x, y) is a position in pixel units in
which pixel (col, row) has its centre at (col, row). Shapes are painted in file order, so a later
shape overrides an earlier one; shapes labelled as holes paint air (0), all others tissue (255).
Painting is clipped to the canvas, so shapes may reach past the image edges.

With a class table (:func:`labelme_to_labels`), each shape paints the id of the class its label names
instead, so a lab's own annotations become coarse label maps.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import math
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

import cv2
import numpy as np

from ..errors import PriorPathError
from ..fileio import describe_os_error, ensure_writable_dir, find_files, remove_stale_temporaries, write_png
from ..image_size import check_image_size
from ..jobs import CancelToken, ProgressFn, check, no_progress
from .classes import ClassTable, table_from_names, write_class_table, write_label_png

log = logging.getLogger(__name__)

#: Labels painted as air unless the caller says otherwise (compared case-insensitively).
DEFAULT_HOLE_LABELS = frozenset({"air", "background", "hole", "lumen"})

TISSUE, AIR = 255, 0
_IGNORED_SHAPES = {"line", "linestrip", "point", "points"}
_SHIFT = 4  # fixed-point bits for cv2.fillPoly: vertices kept to 1/16 pixel instead of truncated
#: Larger coordinates can only come from a corrupt file, and would overflow the fixed-point vertices.
_MAX_COORD = 1e7
_AIR_NAMES = {"air", "glass", "background"}  # the names a class table accepts for id 0


def labelme_to_mask(data: dict, hole_labels: Iterable[str] = DEFAULT_HOLE_LABELS, source: str = "") -> np.ndarray:
    """Paint the shapes of a parsed Labelme document into an HxW uint8 mask (255 tissue, 0 air).

    ``source`` names the file in error messages.
    """
    holes = {str(h).strip().lower() for h in hole_labels}
    return _paint_shapes(data, lambda label: AIR if label.lower() in holes else TISSUE, source)


def labelme_to_labels(data: dict, table: Optional[ClassTable] = None, air_labels: Iterable[str] = DEFAULT_HOLE_LABELS,
                      source: str = "") -> tuple[np.ndarray, ClassTable]:
    """Paint the shapes of a parsed Labelme document as class ids: (HxW uint8 label map, class table).

    A shape whose label names a class of ``table`` (ignoring case) paints that id; otherwise a label among
    ``air_labels`` (or air, glass, background) paints air (0). Any other label is an error that names them
    all. Without a table, one is made from the file's labels in order of appearance (``table_from_names``).
    """
    where = f"{source}: " if source else ""
    _check_document(data, where)
    air = {str(a).strip().lower() for a in air_labels} | _AIR_NAMES
    if table is None:
        table = table_from_names(shape_labels([data], air), "labelme")
    ids = {c.name.strip().lower(): c.id for c in table.classes}
    unknown = [lab for lab in shape_labels([data], keep_empty=True)
               if lab.lower() not in ids and lab.lower() not in air]
    if unknown:
        raise PriorPathError(f"{where}labels not in class table {table.name!r} ({', '.join(table.names)}): "
                             f"{', '.join(map(repr, unknown))}")
    return _paint_shapes(data, lambda label: ids.get(label.lower(), AIR), source), table


def shape_labels(docs: Iterable[dict], skip: Iterable[str] = (), keep_empty: bool = False) -> list[str]:
    """The distinct shape labels of parsed Labelme documents, in order of first appearance, less ``skip``
    (compared ignoring case) and less the empty label unless ``keep_empty``."""
    skip = {s.lower() for s in skip}
    seen: dict[str, str] = {}
    for data in docs:
        for shape in data.get("shapes", []) if isinstance(data, dict) else []:
            label = str(shape.get("label", "")).strip() if isinstance(shape, dict) else ""
            if (label or keep_empty) and label.lower() not in skip and label.lower() not in seen:
                seen[label.lower()] = label
    return list(seen.values())


def _paint_shapes(data: dict, value_of: Callable[[str], int], source: str) -> np.ndarray:
    """An HxW uint8 canvas of air with every shape painted, in file order, with ``value_of(label)``."""
    where = f"{source}: " if source else ""
    _check_document(data, where)
    height = _canvas_side(data, "imageHeight", where)
    width = _canvas_side(data, "imageWidth", where)
    mask = np.zeros((height, width), np.uint8)
    for index, shape in enumerate(data["shapes"]):
        if not isinstance(shape, dict):
            raise PriorPathError(f"{where}shape {index} is not a JSON object")
        label = str(shape.get("label", "")).strip()
        value = value_of(label)
        kind = shape.get("shape_type") or "polygon"  # files from old Labelme versions omit it
        what = f"{where}shape {index} ('{label}', {kind})"
        if kind in _IGNORED_SHAPES:
            log.warning("%signoring shape %d ('%s'): a %s encloses no area", where, index, label, kind)
            continue
        points = _points(shape, what)
        if kind == "polygon":
            _paint_polygon(mask, points, value, what)
        elif kind == "rectangle":
            _paint_rectangle(mask, points, value, what)
        elif kind == "circle":
            _paint_circle(mask, points, value, what)
        elif kind == "mask":
            _paint_bitmap(mask, points, shape.get("mask"), value, what)
        else:
            log.warning("%signoring shape %d ('%s'): unknown shape type '%s'", where, index, label, kind)
    return mask


def read_labelme(path: Union[str, Path], hole_labels: Iterable[str] = DEFAULT_HOLE_LABELS) -> np.ndarray:
    """The mask of one Labelme ``.json`` file."""
    path = Path(path)
    return labelme_to_mask(_load(path), hole_labels, source=str(path))


def read_labelme_labels(path: Union[str, Path], table: Optional[ClassTable] = None,
                        air_labels: Iterable[str] = DEFAULT_HOLE_LABELS) -> tuple[np.ndarray, ClassTable]:
    """The coarse label map of one Labelme ``.json`` file, and its class table (see :func:`labelme_to_labels`)."""
    path = Path(path)
    return labelme_to_labels(_load(path), table, air_labels, source=str(path))


def _load(path: Path) -> dict:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PriorPathError(f"{path}: cannot read ({describe_os_error(exc)})") from exc
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise PriorPathError(f"{path}: not a Labelme file (not UTF-8 text)") from exc
    except json.JSONDecodeError as exc:
        raise PriorPathError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc


def find_labelme_files(paths: Iterable[Union[str, Path]]) -> list[Path]:
    """Files as given, folders expanded to the ``.json`` files they hold (recursively, sorted)."""
    return find_files(paths, {".json"})


def import_labelme_files(
    paths: Iterable[Union[str, Path]],
    out: Union[str, Path],
    hole_labels: Iterable[str] = DEFAULT_HOLE_LABELS,
    progress: ProgressFn = no_progress,
    cancel: Optional[CancelToken] = None,
    classes: Union[ClassTable, str, None] = None,
) -> list[Path]:
    """Convert Labelme files (or folders of them) into ``out/<stem>.png`` masks; returns the written paths.

    With ``classes`` (a class table, or "auto" for one made from all the files' labels in order of first
    appearance), the PNGs are indexed label maps and ``out/classes.json`` holds the table; ``hole_labels``
    then paint air unless the table names them. Rerunning overwrites, so fixing an annotation and importing
    again just works.
    """
    given = [Path(p) for p in paths]
    files = find_labelme_files(given)
    if not files:
        raise PriorPathError(f"no Labelme .json files in {', '.join(map(str, given)) or '(nothing given)'}")
    # Two inputs with one stem would silently overwrite each other's mask: refuse before writing anything.
    owners: dict[str, Path] = {}
    for f in files:
        other = owners.setdefault(f.stem, f)
        if other is not f:
            raise PriorPathError(f"{f} and {other} would both be written as {f.stem}.png; rename one of them")
    out = Path(out)
    ensure_writable_dir(out)
    remove_stale_temporaries(out)
    holes = frozenset(hole_labels)
    if classes == "auto":
        skip = {h.lower() for h in holes} | _AIR_NAMES
        classes = table_from_names(shape_labels((_load(f) for f in files), skip), "labelme")
    if classes is not None:  # every file checked against the table before anything is written
        for f in files:
            read_labelme_labels(f, classes, holes)
        write_class_table(out / "classes.json", classes)
    written: list[Path] = []
    progress(0, len(files), "")
    for i, f in enumerate(files):
        check(cancel)
        target = out / f"{f.stem}.png"
        if classes is None:
            write_png(target, read_labelme(f, holes))
        else:
            write_label_png(target, read_labelme_labels(f, classes, holes)[0], classes)
        written.append(target)
        progress(i + 1, len(files), f.name)
    return written


# -- painting -------------------------------------------------------------------------------------

def _check_document(data, where: str) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise PriorPathError(f"{where}not a Labelme file (no 'shapes' list)")


def _canvas_side(data: dict, key: str, where: str) -> int:
    value = data.get(key)
    if value is None:
        raise PriorPathError(f"{where}not a Labelme file (no '{key}')")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
        raise PriorPathError(f"{where}'{key}' must be a positive integer, got {value!r}")
    return int(value)


def _points(shape: dict, what: str) -> np.ndarray:
    raw = shape.get("points")
    try:
        pts = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        pts = None
    if pts is None or pts.ndim != 2 or pts.shape[1] != 2:
        raise PriorPathError(f"{what}: 'points' must be a list of [x, y] pairs")
    if not np.all(np.isfinite(pts)) or np.any(np.abs(pts) > _MAX_COORD):
        raise PriorPathError(f"{what}: has a coordinate that is not a number or is absurdly large")
    return pts


def _need(points: np.ndarray, n: int, what: str, exact: bool = False) -> None:
    if len(points) < n or (exact and len(points) != n):
        raise PriorPathError(f"{what}: needs {'exactly' if exact else 'at least'} {n} points, has {len(points)}")


def _paint_polygon(mask: np.ndarray, points: np.ndarray, value: int, what: str) -> None:
    _need(points, 3, what)
    fixed = np.round(points * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(mask, [fixed], value, lineType=cv2.LINE_8, shift=_SHIFT)


def _paint_rectangle(mask: np.ndarray, points: np.ndarray, value: int, what: str) -> None:
    """Every pixel between the two corners, both included, corners rounded to the nearest pixel."""
    _need(points, 2, what, exact=True)
    (x0, x1), (y0, y1) = np.sort(points[:, 0]), np.sort(points[:, 1])
    h, w = mask.shape
    c0, c1 = max(_nearest(x0), 0), min(_nearest(x1), w - 1)
    r0, r1 = max(_nearest(y0), 0), min(_nearest(y1), h - 1)
    if c0 <= c1 and r0 <= r1:
        mask[r0 : r1 + 1, c0 : c1 + 1] = value


def _paint_circle(mask: np.ndarray, points: np.ndarray, value: int, what: str) -> None:
    """Pixels whose centres lie within the circle through the rim point."""
    _need(points, 2, what, exact=True)
    (cx, cy), rim = points
    r = math.hypot(rim[0] - cx, rim[1] - cy)
    h, w = mask.shape
    c0, c1 = max(math.ceil(cx - r), 0), min(math.floor(cx + r), w - 1)
    r0, r1 = max(math.ceil(cy - r), 0), min(math.floor(cy + r), h - 1)
    if c0 > c1 or r0 > r1:
        return
    yy, xx = np.ogrid[r0 : r1 + 1, c0 : c1 + 1]
    inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r + 1e-9
    mask[r0 : r1 + 1, c0 : c1 + 1][inside] = value


def _paint_bitmap(mask: np.ndarray, points: np.ndarray, encoded, value: int, what: str) -> None:
    """Labelme's 'mask' shape: a base64 PNG whose top-left pixel sits at the first box corner."""
    _need(points, 2, what, exact=True)
    if not isinstance(encoded, str) or not encoded:
        raise PriorPathError(f"{what}: has no base64 'mask' image")
    try:
        buf = np.frombuffer(base64.b64decode(encoded, validate=False), np.uint8)
    except (binascii.Error, ValueError) as exc:
        raise PriorPathError(f"{what}: 'mask' is not valid base64") from exc
    check_image_size(buf.tobytes(), f"{what}: 'mask'")  # an embedded image can be a decompression bomb too
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    except cv2.error:
        image = None
    if image is None:
        raise PriorPathError(f"{what}: 'mask' is not a decodable image")
    if image.ndim == 3:
        on = image[..., : min(3, image.shape[2])].max(axis=2) > 0
        if image.shape[2] == 4:
            on &= image[..., 3] > 0
    else:
        on = image > 0
    x0, y0 = (_nearest(v) for v in points.min(axis=0))
    box_w, box_h = (_nearest(v) for v in points.max(axis=0) - points.min(axis=0) + 1)
    if (box_h, box_w) != on.shape:
        log.warning("%s: mask image is %dx%d but its box is %dx%d; placing it at the box's corner",
                    what, on.shape[0], on.shape[1], box_h, box_w)
    h, w = mask.shape
    # Clip the bitmap to the canvas.
    top, left = max(y0, 0), max(x0, 0)
    bottom, right = min(y0 + on.shape[0], h), min(x0 + on.shape[1], w)
    if top >= bottom or left >= right:
        return
    window = on[top - y0 : bottom - y0, left - x0 : right - x0]
    mask[top:bottom, left:right][window] = value


def _nearest(v: float) -> int:
    """Round half up, so 2.5 -> 3 like OpenCV's fixed-point vertices (Python's round() would give 2)."""
    return int(math.floor(v + 0.5))
