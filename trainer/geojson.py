"""Masks as GeoJSON polygons that QuPath reads (annotations, tissue with holes), and QuPath GeoJSON back to masks.

Coordinates are level-0 pixels (x right, y down), QuPath's convention. A mask pixel (x, y) covers
[x, x+1) x [y, y+1); contours run through pixel centres, so a ring vertex is (x + 0.5) * scale.
Reading accepts what QuPath exports: a FeatureCollection, a bare list of Features, or one Feature, with
Polygon and MultiPolygon geometries; the first ring of a polygon is its outline, the others its holes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from .errors import PriorPathError
from .fileio import atomic_write_text

TISSUE_COLOUR = [200, 0, 120]


def mask_polygons(mask: np.ndarray, scale: float = 1.0) -> list[list[list[list[float]]]]:
    """Polygons (outline ring, then hole rings; rings closed) of the tissue (> 0) of ``mask``."""
    binary = (np.asarray(mask) > 0).astype(np.uint8)
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    hierarchy = hierarchy[0]
    polygons = []
    for i, contour in enumerate(contours):
        if hierarchy[i][3] != -1:  # a hole: added with its outline below
            continue
        rings = [_ring(contour, scale)]
        child = hierarchy[i][2]
        while child != -1:
            rings.append(_ring(contours[child], scale))
            child = hierarchy[child][0]
        polygons.append([r for r in rings if len(r) >= 4])
    return [p for p in polygons if p]


def _ring(contour: np.ndarray, scale: float) -> list[list[float]]:
    xy = contour[:, 0].astype(np.float64)
    if len(xy) == 2:  # a straight one-pixel line, simplified to its ends: walk it there and back
        n = int(np.abs(xy[1] - xy[0]).max())
        walk = xy[0] + (xy[1] - xy[0]) * (np.arange(n + 1)[:, None] / n)
        xy = np.concatenate([walk, walk[-2:0:-1]])
    points = [[round((x + 0.5) * scale, 2), round((y + 0.5) * scale, 2)] for x, y in xy]
    if len(points) < 3:  # a single pixel: a small square inside it
        x, y = points[0]
        half = 0.25 * scale  # inside the pixel, so reading it back gives that pixel alone
        points = [[x - half, y - half], [x + half, y - half], [x + half, y + half], [x - half, y + half]]
    return points + [points[0]]


def write_annotations(path: Union[str, Path], mask: np.ndarray, scale: float = 1.0, name: str = "tissue",
                      classification: str = "Tissue") -> Path:
    """The tissue of ``mask`` as one QuPath annotation per connected piece (MultiPolygon-free, QuPath-style)."""
    features = [{
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": rings},
        "properties": {"objectType": "annotation", "name": name,
                       "classification": {"name": classification, "color": TISSUE_COLOUR}},
    } for rings in mask_polygons(mask, scale)]
    atomic_write_text(Path(path), json.dumps({"type": "FeatureCollection", "features": features}) + "\n")
    return Path(path)


def is_geojson(data) -> bool:
    if isinstance(data, list):
        return all(isinstance(f, dict) and f.get("type") == "Feature" for f in data) and bool(data)
    return isinstance(data, dict) and data.get("type") in ("FeatureCollection", "Feature", "Polygon", "MultiPolygon")


def geojson_extent(path: Union[str, Path]) -> tuple[int, int]:
    """(height, width) the polygons of a GeoJSON file reach from the origin, in its own (level-0) pixels."""
    rings = [r for poly in _polygons(Path(path), 1.0) for r in poly]
    top = np.max([r.max(0) for r in rings], 0)
    return int(np.ceil(top[1])), int(np.ceil(top[0]))


def fitting_scale(path: Union[str, Path], longest: int) -> int:
    """The smallest whole factor that brings a GeoJSON file's extent within ``longest`` pixels a side."""
    return max(1, -(-max(geojson_extent(path)) // longest))


def read_geojson(path: Union[str, Path], shape: Optional[tuple[int, int]] = None, scale: float = 1.0) -> np.ndarray:
    """QuPath GeoJSON -> HxW uint8 0/255 mask, coordinates divided by ``scale``.

    ``shape``: the mask's size; by default the polygons' extent (from the origin, as a slide's level 0)."""
    rings = _polygons(Path(path), scale)
    if shape is None:
        top = np.max([r.max(0) for poly in rings for r in poly], 0)
        shape = (int(np.ceil(top[1])), int(np.ceil(top[0])))
    mask = np.zeros(shape, np.uint8)
    for poly in rings:  # outline filled, then its holes cleared, polygon by polygon
        cv2.fillPoly(mask, [np.round(poly[0] - 0.5).astype(np.int32)], 255)
        if len(poly) > 1:
            holes = [np.round(r - 0.5).astype(np.int32) for r in poly[1:]]
            cv2.fillPoly(mask, holes, 0)
            # a hole's ring runs through the centres of the tissue pixels around it: they stay tissue
            cv2.polylines(mask, holes, True, 255)
    return mask


def _polygons(path: Path, scale: float) -> list[list[np.ndarray]]:
    """Every polygon of the file as rings of (x, y) / ``scale``; a clear error when there are none."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PriorPathError(f"{path}: not readable as GeoJSON ({exc})") from exc
    if not is_geojson(data):
        raise PriorPathError(f"{path}: not GeoJSON (expected a FeatureCollection, Features or polygons)")
    features = data if isinstance(data, list) else data.get("features", [data])
    polygons = []
    for feature in features:
        geometry = feature.get("geometry", feature) if isinstance(feature, dict) else None
        kind = (geometry or {}).get("type")
        coords = (geometry or {}).get("coordinates") or []
        if kind == "Polygon":
            polygons.append(coords)
        elif kind == "MultiPolygon":
            polygons.extend(coords)
    try:
        rings = [[np.asarray(r, np.float64)[:, :2] / scale for r in poly] for poly in polygons if poly]
    except (ValueError, IndexError, TypeError) as exc:
        raise PriorPathError(f"{path}: malformed polygon coordinates ({exc})") from exc
    if not rings:
        raise PriorPathError(f"{path}: no Polygon or MultiPolygon annotations (QuPath exports tissue as polygons)")
    return rings
