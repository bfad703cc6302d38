"""Class labels of H&E patches by rule: air, stroma/cytoplasm, nuclei (``prepare --labels he3``).

Like the paper's §2.1 fine-mask rule, the rule uses only the patch's colours and one number per slide.
Sizes are pixels at the prepared level; they are chosen for the sources in ../shared/data, from whole
sections at about 2 µm/px (nuclei 3-6 px across) to 10x tiles (nuclei 8-15 px across).

1. **Air** (id 0) is exactly the paper's fine mask: luma (ITU-R 601) above the source's air threshold
   (H&E 204), so ``tissue_of(labels) == fine`` pixel for pixel.
2. **Haematoxylin** per pixel by colour deconvolution with the fixed Ruifrok-Johnston H/E/DAB matrix
   (``skimage.color.rgb2hed``, channel 0), smoothed by a Gaussian of sigma ``SMOOTH_SIGMA`` = 0.7 px
   against JPEG blocks and pixel noise (a wider one merges the 2-3 px nuclei of whole sections).
   A fixed matrix rather than a Macenko estimate per slide: it cannot fail on a slide with little
   haematoxylin, and gives the same number for the same colour on every slide; the slide-to-slide
   intensity differences are absorbed by the per-slide threshold. (On nine real slides, nuclei from a
   per-slide Macenko haematoxylin agree with these at Dice 0.78-0.995, median 0.94.)
3. **Per-slide threshold**: Otsu's threshold of the smoothed haematoxylin of that source's tissue pixels
   (``HIST_BINS`` = 500 bins over [0, 0.25]), from up to ``SAMPLE_PIXELS`` = 8 Mpx of patches spread
   evenly over the source's grid (all of them for a small image), never below ``MIN_THRESHOLD`` = 0.01:
   pure eosin gives 0, so Otsu would split noise on a slide without nuclei, while real slides measured
   0.012 (a pale frozen section) to 0.084 (a 40x crop). Recorded per patch in ``manifest.csv``.
4. **Nuclei** (id 2): tissue pixels whose haematoxylin is above the threshold, cleaned to nucleus-sized
   blobs: 8-connected components under ``MIN_NUCLEUS_AREA`` = 6 px are dropped (the smallest nucleus
   here, 3 px across in a whole section, covers about 7 px; smaller blobs are chromatin grain, JPEG
   blocks or colour fringes), and holes (4-connected) of at most ``MAX_HOLE_AREA`` = 12 px are filled (a
   pale nucleolus or vesicular chromatin at 10x, 2-4 px across), then cut back to tissue. Touching nuclei
   stay one blob: this is a semantic class, not instances.
5. **Stroma/cytoplasm** (id 1): the rest of the tissue (red blood cells included).

The **coarse label map** is made like the coarse mask: its tissue is exactly ``masks.coarse_mask(fine)``
(opening 5x5, closing 10x10). **Nuclei-dense** (id 2) is where nuclei crowd: in a ``DENSE_WINDOW`` = 31
px square (about three cell diameters at 10x), nuclei pixels are at least ``DENSE_FRACTION`` = 0.25 of
the tissue pixels (of half the window at least, ``DENSE_MIN_TISSUE``, so one nucleus on a wisp of tissue
is not a region; the patch edge mirrored); that map goes through the same opening 5x5 and closing 10x10,
and is cut back to the coarse tissue. **Stroma** (id 1) is the rest of the coarse tissue.
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence, Union

import cv2
import numpy as np
from skimage.color import rgb2hed
from skimage.filters import threshold_otsu

from ..errors import PriorPathError
from ..fileio import atomic_write_text, decode_image_file, ensure_writable_dir, remove_stale_temporaries
from . import masks
from .classes import AIR, HE3, write_class_table, write_label_png

STROMA, NUCLEI = HE3.id_of("stroma"), HE3.id_of("nuclei")
CLASSES_FILE = "classes.json"

SMOOTH_SIGMA = 0.7
HIST_BINS, HIST_MAX = 500, 0.25  # rgb2hed haematoxylin of real tissue lies in [0, 0.2]; bins of 0.0005
MIN_THRESHOLD = 0.01  # under every real slide's Otsu (lowest seen 0.012); pure eosin gives 0
SAMPLE_PIXELS = 8_000_000  # enough for a stable histogram, a few seconds per source
MIN_TISSUE_PIXELS = 2_000  # fewer sampled tissue pixels than this: no histogram worth splitting
MIN_NUCLEUS_AREA = 6
MAX_HOLE_AREA = 12
DENSE_WINDOW = 31
DENSE_FRACTION = 0.25
DENSE_MIN_TISSUE = 0.5


def haematoxylin(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel haematoxylin concentration (rgb2hed channel 0, OD units scaled as skimage does), float32."""
    return rgb2hed(np.asarray(rgb))[..., 0].astype(np.float32)


def smoothed(h: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(np.asarray(h, np.float32), (0, 0), SMOOTH_SIGMA, borderType=cv2.BORDER_REFLECT)


def tissue_mask(rgb: np.ndarray, air_threshold: int) -> np.ndarray:
    """The paper's fine mask (255 tissue, 0 air)."""
    return masks.fine_mask(masks.luma(rgb), air_threshold)


def haematoxylin_histogram(rgb: np.ndarray, air_threshold: int, h: Optional[np.ndarray] = None) -> np.ndarray:
    """``HIST_BINS`` counts of the smoothed haematoxylin of the tissue pixels (values past the range go last)."""
    h = smoothed(haematoxylin(rgb) if h is None else h)
    values = h[tissue_mask(rgb, air_threshold) > 0]
    index = np.clip((values * (HIST_BINS / HIST_MAX)).astype(np.int64), 0, HIST_BINS - 1)
    return np.bincount(index, minlength=HIST_BINS)


def threshold_from_histogram(counts: np.ndarray) -> float:
    """Otsu's threshold of a haematoxylin histogram, floored at ``MIN_THRESHOLD``, rounded to 6 decimals
    (the value the manifest records is the value used)."""
    counts = np.asarray(counts, np.int64)
    if counts.sum() < MIN_TISSUE_PIXELS or np.count_nonzero(counts) < 2:
        return MIN_THRESHOLD
    centres = (np.arange(HIST_BINS) + 0.5) * (HIST_MAX / HIST_BINS)
    t = float(threshold_otsu(hist=(counts, centres)))
    return round(max(t, MIN_THRESHOLD), 6)


def nuclei_threshold(tiles: Sequence[np.ndarray], air_threshold: int = 204) -> float:
    """The per-slide threshold from RGB tiles of one slide."""
    counts = sum((haematoxylin_histogram(t, air_threshold) for t in tiles), np.zeros(HIST_BINS, np.int64))
    return threshold_from_histogram(counts)


def sample_positions(positions: Sequence, patch: tuple[int, int], budget: int = SAMPLE_PIXELS) -> list:
    """At most ``budget`` pixels' worth of ``positions``, spread evenly (all of them if they fit)."""
    n = max(1, budget // (patch[0] * patch[1]))
    if len(positions) <= n:
        return list(positions)
    return [positions[i] for i in np.linspace(0, len(positions) - 1, n).round().astype(int)]


def source_threshold(reader, positions: Sequence[tuple[int, int]], patch: tuple[int, int], level: int,
                     downsample: float, air_threshold: int) -> float:
    """The per-slide threshold of an open source, from an even sample of its grid ``positions`` (x, y at
    ``level``), read as ``prepare`` reads patches."""
    counts = np.zeros(HIST_BINS, np.int64)
    for x, y in sample_positions(positions, patch):
        x0, y0 = int(round(x * downsample)), int(round(y * downsample))
        counts += haematoxylin_histogram(reader.read_region(x0, y0, patch[1], patch[0], level), air_threshold)
    return threshold_from_histogram(counts)


def nuclei_mask(rgb: np.ndarray, tissue: np.ndarray, threshold: float, h: Optional[np.ndarray] = None,
                min_area: int = MIN_NUCLEUS_AREA, max_hole: int = MAX_HOLE_AREA) -> np.ndarray:
    """Bool HxW nuclei: smoothed haematoxylin above ``threshold`` on ``tissue``, cleaned to blobs.

    ``h`` replaces rgb2hed's haematoxylin (for checks against another deconvolution)."""
    h = smoothed(haematoxylin(rgb) if h is None else h)
    on = (h > threshold) & (tissue > 0)
    on = _drop_small(on, min_area, connectivity=8)
    on |= ~_drop_small(~on, max_hole + 1, connectivity=4)  # holes up to max_hole px become nucleus
    return on & (tissue > 0)


def _drop_small(mask: np.ndarray, min_area: int, connectivity: int) -> np.ndarray:
    """``mask`` without its components smaller than ``min_area`` pixels."""
    if min_area <= 1 or not mask.any():
        return mask.copy()
    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=connectivity)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False  # the background of the labelling
    return keep[comp]


def he3_labels(rgb: np.ndarray, nuclei_threshold: float, air_threshold: int = 204,
               h: Optional[np.ndarray] = None) -> np.ndarray:
    """HxW uint8 fine label map (0 air, 1 stroma, 2 nuclei) of an RGB patch."""
    tissue = tissue_mask(rgb, air_threshold)
    labels = np.where(tissue > 0, STROMA, AIR).astype(np.uint8)
    labels[nuclei_mask(rgb, tissue, nuclei_threshold, h)] = NUCLEI
    return labels


def coarse_labels(labels: np.ndarray, coarse: Optional[np.ndarray] = None) -> np.ndarray:
    """Coarse label map of a fine one: coarse tissue as ``masks.coarse_mask``, nuclei-dense regions by density.

    ``coarse`` is the coarse mask when already made (it must be ``masks.coarse_mask`` of the fine mask)."""
    labels = np.asarray(labels)
    if coarse is None:
        coarse = masks.coarse_mask(np.where(labels != AIR, 255, 0).astype(np.uint8))
    # nuclei per tissue pixel in the window, so air gaps between cells do not dilute a cellular region,
    # but per half window at least, so one nucleus on a wisp of tissue is not a region; the patch edge
    # is mirrored (pixels outside the patch are unknown, not empty)
    window = (DENSE_WINDOW, DENSE_WINDOW)
    nuclei = cv2.blur((labels == NUCLEI).astype(np.float32), window, borderType=cv2.BORDER_REFLECT)
    tissue = cv2.blur((labels != AIR).astype(np.float32), window, borderType=cv2.BORDER_REFLECT)
    dense = np.where(nuclei >= DENSE_FRACTION * np.maximum(tissue, DENSE_MIN_TISSUE), 255, 0).astype(np.uint8)
    dense = masks.coarse_mask(dense)
    out = np.where(coarse > 0, STROMA, AIR).astype(np.uint8)
    out[(dense > 0) & (coarse > 0)] = NUCLEI
    return out


def write_patch_labels(out: Path, stem: str, rgb: np.ndarray, coarse: np.ndarray, nuclei_threshold: float,
                       air_threshold: int) -> None:
    """``out/labels/<stem>.png`` and ``out/coarse_labels/<stem>.png`` of one patch (``coarse``: its coarse mask)."""
    fine = he3_labels(rgb, nuclei_threshold, air_threshold)
    write_label_png(out / "labels" / f"{stem}.png", fine, HE3)
    write_label_png(out / "coarse_labels" / f"{stem}.png", coarse_labels(fine, coarse), HE3)


def label_prepared(folder: Union[str, Path]) -> dict[str, float]:
    """Add he3 labels to a folder written by ``prepare`` without them; returns source -> nuclei threshold.

    The per-source threshold comes from the folder's own (kept) RGB patches of that source, so it can differ
    slightly from ``prepare --labels he3``, which also sees the patches it drops. The thresholds go to
    ``labels.csv`` (stem, nuclei_threshold); the manifest is left as ``prepare`` wrote it.
    """
    from .prepare import read_manifest  # prepare imports this module

    folder = Path(folder)
    by_source = defaultdict(list)
    for row in read_manifest(folder):
        by_source[row["source"]].append(row)
    for sub in ("labels", "coarse_labels"):
        ensure_writable_dir(folder / sub)
        remove_stale_temporaries(folder / sub)
    thresholds, lines = {}, []
    for source, rows in by_source.items():
        air = int(rows[0]["threshold"])
        patch = (int(rows[0]["height"]), int(rows[0]["width"]))
        sample = sample_positions(rows, patch)
        counts = sum((haematoxylin_histogram(_rgb(folder, r["stem"]), air) for r in sample),
                     np.zeros(HIST_BINS, np.int64))
        thresholds[source] = t = threshold_from_histogram(counts)
        for r in rows:
            coarse = decode_image_file(folder / "coarse" / f"{r['stem']}.png", cv2.IMREAD_GRAYSCALE)
            write_patch_labels(folder, r["stem"], _rgb(folder, r["stem"]), coarse, t, int(r["threshold"]))
            lines.append((r["stem"], f"{t:g}"))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([("stem", "nuclei_threshold"), *lines])
    atomic_write_text(folder / "labels.csv", buf.getvalue())
    write_class_table(folder / CLASSES_FILE, HE3)
    return thresholds


def _rgb(folder: Path, stem: str) -> np.ndarray:
    image = decode_image_file(folder / "rgb" / f"{stem}.png", cv2.IMREAD_COLOR)
    if image.ndim != 3:
        raise PriorPathError(f"{folder / 'rgb' / stem}.png: not an RGB patch")
    return np.ascontiguousarray(image[..., ::-1])  # OpenCV decodes BGR
