"""A large repository of coarse masks grown from a few hand-drawn sketches (paper §2.4).

Each output is one sketch under a random flip, affine transform, elastic deformation and
morphological jitter, binarised at the working size. Layout of an output folder DIR::

    DIR/coarse/aug_000000.png   augmented coarse mask, 255 tissue / 0 air
    DIR/manifest.csv            stem, source sketch, seed, augmentation parameters (JSON)

Output ``i`` is drawn from ``np.random.default_rng([seed, i])`` alone, so it does not depend on
``count`` or on what an earlier run already wrote: asking for more masks later extends the
repository, and a rerun after a crash rewrites only the masks that are missing.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Union

import cv2
import numpy as np

from ..errors import PriorPathError
from ..fileio import (atomic_write_text, decode_image_file, describe_os_error, ensure_writable_dir,
                      find_files, remove_stale_temporaries, write_png)
from ..image_size import header_size
from ..jobs import CancelToken, ProgressFn, check, no_progress
from . import labelme
from .mask_files import threshold_image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
SKETCH_SUFFIXES = IMAGE_SUFFIXES | {".json"}
MANIFEST_FIELDS = ["stem", "source", "seed", "params"]

# Augmentation ranges. Lengths are fractions of the output's shorter side, so a sketch looks the same
# whatever working size is chosen.
ROTATION_DEG = 25.0  # on a non-square canvas larger turns push tissue off the frame; flips cover 180°
ROTATION_DEG_SQUARE = 180.0
SCALE = (0.8, 1.25)  # drawn log-uniformly, so shrinking and growing are equally likely
SHEAR_DEG = 10.0
TRANSLATE = 0.10  # of the width and height respectively
ELASTIC_ALPHA = (0.01, 0.05)  # largest displacement
ELASTIC_SIGMA = (0.04, 0.10)  # smoothness of the displacement field
MORPH_RADIUS = 0.012  # largest dilation/erosion radius
#: What the warp pulls in from beyond the sketch's edges: "reflect" or "air". Air frames tissue that reaches
#: the edges with the straight sides of the turned canvas (on real coarse masks the mean tissue fraction fell
#: from 0.74 to 0.59); a mirrored border keeps it (0.72) at the cost of some symmetric shapes at the edges.
BORDER = "reflect"
_BORDERS = {"air": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101}
MAX_ATTEMPTS = 10  # draws before falling back to the plain sketch when augmentation loses all tissue


def load_sketch(path: Union[str, Path], allow_empty: bool = False) -> np.ndarray:
    """A sketch as an HxW uint8 mask (255 tissue, 0 air).

    Images: tissue is grey brighter than 127 (16-bit and float images scaled to 8 bits first; a mask
    stored as 0/1 counts 1 as tissue; a grey sketch is logged as thresholded); transparent pixels are air.
    ``.json`` files are Labelme.
    An all-air sketch is an error unless ``allow_empty`` (the editor may reopen a blank canvas).
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        mask = labelme.read_labelme(path)
    else:
        read = threshold_image(decode_image_file(path))  # the mask files' rule, colour taken by its luma
        if read.thresholded:
            log.warning("%s", read.notice(path))
        mask = read.mask
    if not allow_empty and not mask.any():
        raise PriorPathError(f"{path}: sketch has no tissue (nothing brighter than grey 127)")
    return mask


@dataclass
class SketchSet:
    """The sketches that could be read, and a line for every file that was left out and why."""

    paths: list[Path]
    masks: list[np.ndarray]
    skipped: list[str]


def read_sketch_set(paths: Iterable[Union[str, Path]], size: Optional[tuple[int, int]] = None,
                    stop_at_first: bool = False) -> SketchSet:
    """Every readable sketch among ``paths`` (fitted to ``size`` when given), checked before any work starts.

    An unreadable or empty file is skipped and reported, all of them, not only the first; with
    ``stop_at_first`` the first one stops the run instead. An image that a Labelme JSON among ``paths`` was
    drawn on is left out: the annotation is the sketch, and counting both would draw the same sketch twice.
    """
    paths = [Path(p) for p in paths]
    drawn_on = _labelme_images(paths)
    kept, masks, skipped = [], [], []
    for path in paths:
        annotation = drawn_on.get(path.resolve())
        if annotation is not None:
            skipped.append(f"{path}: the image {annotation.name} was drawn on; its annotation is the sketch")
            continue
        try:
            mask = load_sketch(path)
        except PriorPathError as exc:
            if stop_at_first:
                raise
            skipped.append(str(exc))
            continue
        kept.append(path)
        masks.append(fit_to_size(mask, size) if size else mask)
    if not kept:
        shown = "; ".join(skipped[:5]) + (f"; and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        raise PriorPathError(f"none of the {len(paths)} sketch files could be used: {shown}")
    return SketchSet(kept, masks, skipped)


def _labelme_images(paths: list[Path]) -> dict[Path, Path]:
    """The images (resolved) that Labelme JSON files among ``paths`` name as drawn on, by the JSON file."""
    drawn_on = {}
    for path in paths:
        if path.suffix.lower() != ".json":
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue  # the reader reports it when it is read as a sketch
        image = data.get("imagePath") if isinstance(data, dict) and "shapes" in data else None
        if isinstance(image, str) and image:
            drawn_on[(path.parent / image).resolve()] = path
    return drawn_on


def fit_to_size(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``size`` (HxW) keeping the grey edge values, so later steps can binarise smoothly.

    The sketch is stretched if its aspect ratio differs; sketches are meant to be drawn at the working aspect.
    """
    h, w = size
    if mask.shape == (h, w):
        return mask
    shrinking = h * w < mask.shape[0] * mask.shape[1]
    return cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def augment_sketch(mask: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """One random augmentation of ``mask`` as a binary 0/255 uint8 array of ``size`` (HxW), and its parameters.

    The sketch is first fitted to ``size`` so that every length below is in output pixels; the flip,
    affine and elastic warps are then applied as a single resampling (one interpolation, not three
    blurs), binarised at 127, and jittered by a dilation or erosion. Draws that leave no tissue are
    repeated; after ``MAX_ATTEMPTS`` the plainly resized sketch is returned.
    """
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise PriorPathError(f"size must be two positive integers HxW, got {size}")
    base = fit_to_size(np.asarray(mask, dtype=np.uint8), (h, w)).astype(np.float32)
    for attempt in range(MAX_ATTEMPTS):
        params = _draw_params(rng, h, w)
        out = _apply(base, params, rng)
        if out.any():
            params["attempt"] = attempt
            return out, params
    plain = np.where(base > 127, 255, 0).astype(np.uint8)
    if not plain.any():  # a speck that shrank below half a pixel: keep where it went
        plain = np.where(base > 0, 255, 0).astype(np.uint8)
    return plain, {"fallback": True, "attempt": MAX_ATTEMPTS}


def _draw_params(rng: np.random.Generator, h: int, w: int) -> dict:
    short = min(h, w)
    max_rot = ROTATION_DEG_SQUARE if 0.8 <= h / w <= 1.25 else ROTATION_DEG
    return {
        "border": BORDER,
        "hflip": bool(rng.random() < 0.5),
        "vflip": bool(rng.random() < 0.5),
        "rotation_deg": _r(rng.uniform(-max_rot, max_rot)),
        "scale": _r(math.exp(rng.uniform(math.log(SCALE[0]), math.log(SCALE[1])))),
        "shear_deg": _r(rng.uniform(-SHEAR_DEG, SHEAR_DEG)),
        "translate": [_r(rng.uniform(-TRANSLATE, TRANSLATE)), _r(rng.uniform(-TRANSLATE, TRANSLATE))],
        "elastic_alpha": _r(rng.uniform(*ELASTIC_ALPHA) * short),
        "elastic_sigma": _r(rng.uniform(*ELASTIC_SIGMA) * short),
        "morph": ("dilate", "erode")[int(rng.integers(2))],
        "morph_radius": int(rng.integers(0, max(1, round(MORPH_RADIUS * short)) + 1)),
    }


def _r(v: float) -> float:
    """Rounded so the manifest is short and the parameters used are exactly the ones recorded."""
    return round(float(v), 6)


def _apply(base: np.ndarray, p: dict, rng: np.random.Generator) -> np.ndarray:
    base = flipped(base, p)
    map_x, map_y = warp_maps(base.shape, p, rng)
    warped = cv2.remap(base, map_x, map_y, cv2.INTER_LINEAR, borderMode=_BORDERS[p["border"]], borderValue=0)
    return jittered(np.where(warped > 127, 255, 0).astype(np.uint8), p)


def flipped(base: np.ndarray, p: dict) -> np.ndarray:
    if p["hflip"]:
        base = base[:, ::-1]
    if p["vflip"]:
        base = base[::-1, :]
    return np.ascontiguousarray(base)


def jittered(out: np.ndarray, p: dict) -> np.ndarray:
    """The morphological jitter of an augmentation (dilation or erosion by ``morph_radius``)."""
    r = p["morph_radius"]
    if r > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        # OpenCV's default border never wins a max or min, so the canvas edge itself neither grows nor eats tissue.
        out = (cv2.dilate if p["morph"] == "dilate" else cv2.erode)(out, kernel)
    return out


def warp_maps(shape: tuple[int, int], p: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps of an augmentation's affine and elastic warp (draws the elastic field from ``rng``)."""
    h, w = shape
    # Output pixel -> sketch pixel: undo the affine (about the canvas centre) after the elastic offset.
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    theta, shear = math.radians(p["rotation_deg"]), math.radians(p["shear_deg"])
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    forward = rot @ np.array([[1.0, math.tan(shear)], [0.0, 1.0]]) * p["scale"]
    (a, b), (c, d) = (tuple(map(float, row)) for row in np.linalg.inv(forward))  # floats keep maps float32
    tx, ty = p["translate"][0] * w, p["translate"][1] * h

    dx, dy = _displacement(rng, h, w, p["elastic_alpha"], p["elastic_sigma"])
    xs = np.arange(w, dtype=np.float32)[None, :] + dx - np.float32(cx + tx)
    ys = np.arange(h, dtype=np.float32)[:, None] + dy - np.float32(cy + ty)
    map_x = (a * xs + b * ys + cx).astype(np.float32)
    map_y = (c * xs + d * ys + cy).astype(np.float32)
    return map_x, map_y


def _displacement(rng: np.random.Generator, h: int, w: int, alpha: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random field with largest displacement ``alpha`` pixels and correlation length ``sigma``.

    The noise is smoothed on a grid ``step`` times coarser and upsampled: the same field as smoothing
    full-resolution noise with a wide Gaussian, at a fraction of the cost.
    """
    step = max(1, int(sigma // 4))
    gh, gw = -(-h // step) + 1, -(-w // step) + 1
    fields = []
    for _ in range(2):
        noise = rng.uniform(-1.0, 1.0, (gh, gw)).astype(np.float32)
        smooth = cv2.GaussianBlur(noise, (0, 0), sigma / step, borderType=cv2.BORDER_REFLECT)
        peak = float(np.abs(smooth).max())
        smooth *= alpha / peak if peak > 0 else 0.0
        fields.append(cv2.resize(smooth, (w, h), interpolation=cv2.INTER_CUBIC))
    return fields[0], fields[1]


def find_sketches(paths: Iterable[Union[str, Path]], exclude: Optional[Path] = None) -> list[Path]:
    """Files as given, folders expanded to sketch files (recursively, sorted), skipping anything under ``exclude``.

    Our own outputs must never become sketches of a rerun (that would change every draw), hence ``exclude``.
    """
    return find_files(paths, SKETCH_SUFFIXES, exclude=exclude)


def augment_sketches(
    sketch_paths: Iterable[Union[str, Path]],
    out: Union[str, Path],
    count: int,
    size: tuple[int, int] = (512, 1024),
    seed: int = 0,
    progress: ProgressFn = no_progress,
    cancel: Optional[CancelToken] = None,
) -> int:
    """Write ``count`` augmented masks to ``out/coarse`` and ``out/manifest.csv``; returns how many are present.

    Every sketch is read before anything is written, so a bad sketch fails the run up front. Outputs
    already on disk that match what this run would draw are kept; any that differ (another seed or other
    sketches) are replaced, so the masks always agree with the manifest. Masks numbered ``count`` or
    above, left by an earlier and larger run, are not touched and not listed.
    """
    out = Path(out)
    given = [Path(p) for p in sketch_paths]
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise PriorPathError(f"--count must be a non-negative integer, got {count!r}")
    h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise PriorPathError(f"--size must be two positive integers HxW, got {size}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PriorPathError(f"--seed must be a non-negative integer, got {seed!r}")
    paths = find_sketches(given, exclude=out)
    if not paths:
        raise PriorPathError(f"no sketch files ({', '.join(sorted(SKETCH_SUFFIXES))}) in "
                             f"{', '.join(map(str, given)) or '(nothing given)'}")
    # Kept at the output size: a hundred large scans would otherwise hold gigabytes.
    sketches = [fit_to_size(load_sketch(p), (h, w)) for p in paths]
    sources = [str(p.resolve()) for p in paths]

    coarse = out / "coarse"
    ensure_writable_dir(out)
    ensure_writable_dir(coarse)
    remove_stale_temporaries(coarse)
    remove_stale_temporaries(out)

    rows: list[dict] = []
    progress(0, count, "")
    try:
        for i in range(count):
            check(cancel)
            rng = np.random.default_rng([seed, i])
            which = int(rng.integers(len(sketches)))
            mask, params = augment_sketch(sketches[which], (h, w), rng)
            stem = f"aug_{i:06d}"
            target = coarse / f"{stem}.png"
            if not _same_mask(target, mask):
                write_png(target, mask)
            rows.append({"stem": stem, "source": sources[which], "seed": seed,
                         "params": json.dumps(params, sort_keys=True, separators=(",", ":"))})
            progress(i + 1, count, stem)
    finally:
        # Also after a cancel or error: the manifest then lists exactly the masks finished so far.
        _write_manifest(out, rows)
    return len(rows)


def _same_mask(path: Path, mask: np.ndarray) -> bool:
    if not path.is_file():
        return False
    claimed = header_size(path)
    if claimed is not None and claimed != mask.shape:
        return False  # another size: no need to decode it (it may be anything a user put there)
    existing = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    return existing is not None and existing.shape == mask.shape and bool(np.array_equal(existing, mask))


def _write_manifest(out: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "manifest.csv", buf.getvalue())


def read_manifest(folder: Union[str, Path]) -> list[dict]:
    """Rows of an augmented folder's ``manifest.csv``, with ``params`` parsed."""
    path = Path(folder) / "manifest.csv"
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise PriorPathError(f"{path}: cannot read ({describe_os_error(exc)})") from exc
    for row in rows:
        row["params"] = json.loads(row["params"])
    return rows
