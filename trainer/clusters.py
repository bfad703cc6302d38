"""K-means clusters of the real fine masks of a prepared folder (paper §2.4).

The paper clustered real tissue masks with K-means and drew coarse sketches guided by the clusters. Here
each fine mask becomes a small feature vector describing where its tissue lies and how ragged it is;
the vectors are standardised, reduced by PCA, and clustered. When k is not given it is the one with the
best silhouette score. Results are cached as JSON keyed by the folder's masks, so reopening a dataset
is instant.

A folder with class label maps (``labels/*.png`` beside ``classes.json``, as ``prepare --labels he3`` and
``export --classes`` write them) is clustered on its label maps instead (``label_features``): the tissue
layout as above, and per class where it lies and how it is textured, so nuclei-rich and stroma-only
patches fall apart even when their tissue outlines agree. ``features="binary"`` clusters such a folder's
fine masks as before; a folder without label maps is clustered exactly as before.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import cv2
import numpy as np

from .data.classes import AIR, HE3, ClassTable, read_class_table, read_label_png
from .errors import PriorPathError
from .fileio import atomic_write_text, decode_image_file
from .image_size import check_image_size
from .jobs import CancelToken, ProgressFn, check, no_progress

log = logging.getLogger(__name__)

#: bump when mask_features or the clustering changes, so old cache files are not reused
FEATURE_VERSION = 1
WORK_SIZE = (128, 256)  # (h, w): every mask is first resized to this fixed 1:2 aspect (prepare's default)
GRID = (16, 32)  # (h, w): tissue fraction per cell, 8x8 working pixels each
MAX_PCA_DIMS = 32
MIN_MASKS = 3  # fewer cannot be clustered meaningfully (a silhouette needs k < n)
KINDS = ("fine", "coarse", "rgb", "labels", "coarse_labels")
#: what is clustered: label maps when the folder has them (auto), or the fine masks (binary) whatever it has
FEATURES = ("auto", "binary", "labels")
LABEL_FEATURE_VERSION = 1  # bump when label_features changes (the binary cache key does not hold it)
CLASS_GRID = (8, 16)  # (h, w): where each class lies; coarser than GRID, as there is one grid per class
CLASSES_FILE = "classes.json"


def mask_features(mask: np.ndarray) -> np.ndarray:
    """A 1-D float32 description of a mask's tissue layout.

    The coarse grid of tissue fractions says *where* the tissue is (the layout a sketch reproduces);
    the overall tissue fraction, the edge density (how ragged the boundary is) and the number of
    separate pieces add what a coarse grid averages away. Resizing to one fixed size first makes masks
    of any size comparable.
    """
    if mask.ndim != 2 or mask.size == 0:
        raise PriorPathError(f"expected an HxW mask, got shape {mask.shape}")
    tissue = (mask > 127).astype(np.float32)
    h, w = WORK_SIZE
    work = cv2.resize(tissue, (w, h), interpolation=cv2.INTER_AREA)
    grid = cv2.resize(work, (GRID[1], GRID[0]), interpolation=cv2.INTER_AREA)
    binary = work >= 0.5
    edges = (np.count_nonzero(binary[:, 1:] != binary[:, :-1])
             + np.count_nonzero(binary[1:] != binary[:-1])) / binary.size
    pieces = cv2.connectedComponents(binary.astype(np.uint8), connectivity=8)[0] - 1
    extras = [float(work.mean()), float(edges), float(np.log1p(pieces))]  # log: 1 vs 5 pieces matters, 50 vs 55 not
    return np.concatenate([grid.ravel(), extras]).astype(np.float32)


def label_features(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """A 1-D float32 description of a label map of ``n_classes`` classes (id 0 air).

    First ``mask_features`` of its tissue (every class but air): the layout a sketch reproduces. Then, for
    each class after air, where it lies (a ``CLASS_GRID`` of its fraction per cell) and its texture: its
    share of the patch and of the tissue, its edge density, and its number of separate pieces per megapixel
    (log). Edges and pieces are counted at full resolution, where a small class such as nuclei is still
    whole, per pixel, so larger fields at the same resolution compare. A two-class map adds nothing to the
    tissue layout. Clustering weighs the layout and each class alike (``label_blocks``).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.size == 0:
        raise PriorPathError(f"expected an HxW label map, got shape {labels.shape}")
    tissue = labels != AIR
    parts = [mask_features(np.where(tissue, 255, 0).astype(np.uint8))]
    if n_classes > 2:
        in_tissue = max(1, int(np.count_nonzero(tissue)))
        for c in range(1, n_classes):
            on = labels == c
            grid = cv2.resize(on.astype(np.float32), (CLASS_GRID[1], CLASS_GRID[0]), interpolation=cv2.INTER_AREA)
            edges = (np.count_nonzero(on[:, 1:] != on[:, :-1]) + np.count_nonzero(on[1:] != on[:-1])) / on.size
            pieces = cv2.connectedComponents(on.astype(np.uint8), connectivity=8)[0] - 1
            extras = [float(on.mean()), np.count_nonzero(on) / in_tissue, float(edges),
                      float(np.log1p(pieces * 1e6 / on.size))]
            parts.append(np.concatenate([grid.ravel(), extras]))
    return np.concatenate(parts).astype(np.float32)


@dataclass
class ClusterResult:
    """Cluster labels of every mask of a prepared folder; clusters are numbered largest first."""

    folder: Path
    stems: list[str]
    labels: list[int]
    distances: list[float]  # each mask's distance to its cluster's centroid (in the reduced feature space)
    k: int
    silhouette: dict[int, float]  # k -> score, for every k tried (empty when k was given)
    seed: int = 0
    features: str = "binary"  # "binary": fine masks were clustered; "labels": label maps of ``classes``
    classes: Optional[ClassTable] = None  # the folder's class table when label maps were clustered
    from_cache: bool = field(default=False, compare=False)

    @property
    def counts(self) -> list[int]:
        return np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=self.k).tolist()

    def members(self, cluster: int) -> list[str]:
        """Stems of the cluster's masks, nearest to its centroid first (so the first are exemplars)."""
        if not 0 <= cluster < self.k:
            raise IndexError(f"cluster {cluster} out of range 0..{self.k - 1}")
        picked = [i for i, label in enumerate(self.labels) if label == cluster]
        picked.sort(key=lambda i: (self.distances[i], self.stems[i]))
        return [self.stems[i] for i in picked]

    def path(self, stem: str, kind: str = "fine") -> Path:
        if kind not in KINDS:
            raise ValueError(kind)
        return self.folder / kind / f"{stem}.png"

    @property
    def has_rgb(self) -> bool:
        return (self.folder / "rgb").is_dir()

    @property
    def has_labels(self) -> bool:
        """Whether label maps were clustered (then ``classes`` is their table)."""
        return self.features == "labels"

    def to_json(self) -> dict:
        data = {"folder": str(self.folder), "stems": self.stems, "labels": self.labels,
                "distances": self.distances, "k": self.k, "seed": self.seed,
                "silhouette": {str(k): v for k, v in self.silhouette.items()}}
        if self.has_labels:  # a binary result is written exactly as before label maps existed
            data.update(features=self.features, classes=self.classes.to_json())
        return data

    @classmethod
    def from_json(cls, data: dict, folder: Path) -> "ClusterResult":
        result = cls(folder=folder, stems=[str(s) for s in data["stems"]],
                     labels=[int(v) for v in data["labels"]], distances=[float(v) for v in data["distances"]],
                     k=int(data["k"]), silhouette={int(k): float(v) for k, v in data["silhouette"].items()},
                     seed=int(data["seed"]), from_cache=True)
        if data.get("features", "binary") == "labels":
            result.features, result.classes = "labels", ClassTable.from_json(data["classes"], "cluster cache")
        elif "features" in data and data["features"] != "binary":
            raise ValueError(f"unknown features {data['features']!r}")
        if not (len(result.stems) == len(result.labels) == len(result.distances)) \
                or any(not 0 <= v < result.k for v in result.labels):
            raise ValueError("inconsistent cluster cache")
        return result


def cluster_dataset(
    folder: Union[str, Path],
    k: Optional[int] = None,
    k_range: tuple[int, int] = (2, 10),
    seed: int = 0,
    progress: ProgressFn = no_progress,
    cancel: Optional[CancelToken] = None,
    cache_dir: Union[str, Path, None] = None,
    features: str = "auto",
) -> ClusterResult:
    """Cluster a prepared folder's masks with K-means; ``k=None`` picks k in ``k_range`` by silhouette.

    ``features``: "auto" clusters the label maps ``folder/labels/*.png`` (classes from ``folder/classes.json``)
    when the folder has them and the fine masks otherwise; "binary" always the fine masks; "labels" always
    the label maps (an error without them)."""
    folder = Path(folder)
    classes = folder_classes(folder, features)
    masks = label_map_files(folder) if classes is not None else fine_mask_files(folder)
    n = len(masks)
    lo, hi = int(k_range[0]), int(k_range[1])
    if lo < 2 or hi < lo:
        raise PriorPathError(f"k range must be two integers 2 <= low <= high, got {k_range}")
    if k is not None and not 2 <= int(k) <= n:
        raise PriorPathError(f"k must be between 2 and the number of masks ({n}), got {k}")

    cache_file = None
    if cache_dir is not None:
        cache_file = Path(cache_dir) / f"{_cache_key(folder, masks, k, (lo, hi), seed, classes)}.json"
        cached = _read_cache(cache_file, folder, masks, classes)
        if cached is not None:
            progress(1, 1, "clusters loaded from cache")
            return cached

    candidates = _candidates(k, lo, hi, n, distinct=n)
    total = n + len(candidates)
    vectors = []
    for i, path in enumerate(masks):
        check(cancel)
        progress(i, total, f"reading {path.name}")
        if classes is None:
            vectors.append(mask_features(read_mask(path)))
        else:
            vectors.append(label_features(read_labels(path, classes), len(classes)))
    points = _reduce(np.stack(vectors), seed, None if classes is None else label_blocks(len(classes)))

    # K-means cannot find more clusters than there are distinct points (identical masks)
    distinct = len(np.unique(np.round(points, 6), axis=0))  # rounded: PCA leaves ~1e-15 noise on equal rows
    candidates = _candidates(k, lo, hi, n, distinct)
    total = n + len(candidates)
    scores: dict[int, float] = {}
    if distinct < 2:  # every mask alike: one cluster, nothing to fit
        labels, distances = np.zeros(n, np.int64), np.zeros(n)
    else:
        from sklearn.cluster import KMeans  # imported here: slow to import and only needed now
        from sklearn.metrics import silhouette_score

        best = None
        for j, kk in enumerate(candidates):
            check(cancel)
            progress(n + j, total, f"K-means with k={kk}")
            model = KMeans(n_clusters=kk, n_init=10, random_state=seed).fit(points)
            if k is None:
                if 2 <= len(np.unique(model.labels_)) <= n - 1:  # else no silhouette exists
                    scores[kk] = float(silhouette_score(points, model.labels_))
                if best is not None and scores.get(kk, -2.0) <= scores.get(best.n_clusters, -2.0):
                    continue
            best = model
        labels = _largest_first(best.labels_)
        distances = np.linalg.norm(points - best.cluster_centers_[best.labels_], axis=1)
    progress(total, total, "clustered")

    result = ClusterResult(folder=folder, stems=[p.stem for p in masks], labels=labels.tolist(),
                           distances=[float(d) for d in distances], k=int(labels.max()) + 1,
                           silhouette=scores, seed=seed)
    if classes is not None:
        result.features, result.classes = "labels", classes
    if cache_file is not None:
        _write_cache(cache_file, result)
    return result


def _candidates(k: Optional[int], lo: int, hi: int, n: int, distinct: int) -> list[int]:
    """The k values to try: the given one, or the range capped so a silhouette exists (k < n, k <= distinct)."""
    if k is not None:
        return [min(int(k), max(distinct, 1))]
    top = min(hi, n - 1, max(distinct, 2))
    return list(range(min(lo, top), top + 1))


def fine_mask_files(folder: Path) -> list[Path]:
    """The fine masks of a prepared folder, sorted; clear errors when there are too few to cluster."""
    if not folder.exists():
        raise PriorPathError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise PriorPathError(f"{folder}: not a folder")
    fine = folder / "fine"
    masks = sorted(p for p in fine.glob("*.png") if not p.name.startswith(".")) if fine.is_dir() else []
    if not masks:
        raise PriorPathError(f"{folder}: no fine masks (expected fine/*.png, a folder written by 'priorpath prepare')")
    if len(masks) < MIN_MASKS:
        raise PriorPathError(f"{folder}: only {len(masks)} fine mask(s); clustering needs at least {MIN_MASKS}")
    return masks


def label_map_files(folder: Path) -> list[Path]:
    """The label maps of a folder (``labels/*.png``), sorted; clear errors when there are too few to cluster."""
    found = _label_pngs(folder)
    if len(found) < MIN_MASKS:
        raise PriorPathError(f"{folder}: only {len(found)} label map(s) in labels/; clustering needs at least "
                             f"{MIN_MASKS}")
    return found


def _label_pngs(folder: Path) -> list[Path]:
    labels = folder / "labels"
    return sorted(p for p in labels.glob("*.png") if not p.name.startswith(".")) if labels.is_dir() else []


def folder_classes(folder: Union[str, Path], features: str = "auto") -> Optional[ClassTable]:
    """The class table whose label maps ``cluster_dataset`` clusters with these ``features``, or None when it
    clusters fine masks. Label maps without a readable ``classes.json`` are an error, not a silent fallback."""
    folder = Path(folder)
    if features not in FEATURES:
        raise PriorPathError(f"features must be one of {', '.join(FEATURES)}, got {features!r}")
    if features == "binary" or not folder.is_dir():
        return None  # fine_mask_files names a missing folder
    if not _label_pngs(folder):
        if features == "labels":
            raise PriorPathError(f"{folder}: no label maps (expected labels/*.png and {CLASSES_FILE}, a folder "
                                 f"written by 'priorpath prepare --labels he3')")
        return None
    table = folder / CLASSES_FILE
    if not table.is_file():
        raise PriorPathError(f"{folder}: labels/ holds label maps but {CLASSES_FILE} is missing, so their classes "
                             f"are unknown; put the class table there, or cluster the fine masks (binary)")
    return read_class_table(table)


def read_labels(path: Path, classes: ClassTable) -> np.ndarray:
    """An HxW uint8 label map of ``classes``; an unreadable file or an id outside the table is an error naming it."""
    check_image_size(path, what="a label map")  # a decompression bomb is refused before decoding
    try:
        labels, _ = read_label_png(path, classes)
    except PriorPathError as exc:  # name the file with its folder, once
        message = str(exc)
        raise PriorPathError(message if str(path) in message else f"{path}: {message}") from None
    return labels


def member_labels(result: ClusterResult, stem: str, kind: str = "labels") -> np.ndarray:
    """A member's fine (``kind="labels"``) or coarse (``"coarse_labels"``) label map. A missing coarse label
    map of an he3 folder is made by ``prepare``'s rule; of any other table, the fine map stands in for it."""
    if not result.has_labels or kind not in ("labels", "coarse_labels"):
        raise ValueError(f"no {kind} in a {result.features} cluster result")
    path = result.path(stem, kind)
    if kind == "labels" or path.is_file():
        return read_labels(path, result.classes)
    fine = read_labels(result.path(stem, "labels"), result.classes)
    if result.classes.names == HE3.names:
        from .data.labels import coarse_labels  # imports skimage: only when needed
        return coarse_labels(fine)
    return fine


def read_mask(path: Path) -> np.ndarray:
    """An HxW uint8 0/255 mask; a missing or undecodable file is an error naming it."""
    image = read_image(path, "fine")
    return np.where(image > 127, 255, 0).astype(np.uint8)


def read_image(path: Path, kind: str) -> np.ndarray:
    """A grey mask (HxW uint8) or, for ``kind == "rgb"``, an HxWx3 RGB uint8 image."""
    image = decode_image_file(path, cv2.IMREAD_COLOR if kind == "rgb" else cv2.IMREAD_GRAYSCALE)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if kind == "rgb" else image


def thumbnail(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` shrunk to fit within ``size`` (h, w), aspect kept, as HxWx3 RGB uint8 (masks in grey)."""
    h, w = image.shape[:2]
    scale = min(size[0] / h, size[1] / w, 1.0)
    out = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return np.repeat(out[..., None], 3, axis=2) if out.ndim == 2 else out


def member_thumbnail(result: ClusterResult, stem: str, size: tuple[int, int],
                     kind: Optional[str] = None) -> np.ndarray:
    """The picture that stands for one mask: by default its label map in the class colours when label maps
    were clustered, else its RGB patch when the folder has one, else the fine mask; or the ``kind`` asked for
    (``"labels"`` and ``"coarse_labels"`` in the class colours)."""
    if kind is None and result.has_labels:
        kind = "labels"
    if kind in ("labels", "coarse_labels"):
        return thumbnail(result.classes.colourise(member_labels(result, stem, kind)), size)
    if kind is not None:
        image = read_mask(result.path(stem, kind)) if kind != "rgb" else read_image(result.path(stem, kind), kind)
        return thumbnail(image, size)
    rgb = result.path(stem, "rgb")
    if rgb.is_file():
        return thumbnail(read_image(rgb, "rgb"), size)
    return thumbnail(read_mask(result.path(stem, "fine")), size)


def mosaic(images: Sequence[np.ndarray], columns: int, gap: int = 2, fill: int = 255) -> np.ndarray:
    """RGB images laid out on a grid (row by row), each cell the size of the largest image."""
    if not images:
        raise ValueError("no images")
    ch = max(i.shape[0] for i in images)
    cw = max(i.shape[1] for i in images)
    columns = max(1, min(columns, len(images)))
    rows = -(-len(images) // columns)
    out = np.full((rows * ch + (rows - 1) * gap, columns * cw + (columns - 1) * gap, 3), fill, np.uint8)
    for n, image in enumerate(images):
        y, x = (n // columns) * (ch + gap), (n % columns) * (cw + gap)
        out[y:y + image.shape[0], x:x + image.shape[1]] = image
    return out


_SAMPLE_LOCK = threading.Lock()


def bundled_sample_dataset(cache_root: Union[str, Path], progress: ProgressFn = no_progress,
                           cancel: Optional[CancelToken] = None) -> Path:
    """The bundled H&E sample, prepared into ``cache_root/sample_he`` on first use; returns that folder.

    ``prepare`` is resumable and a finished rerun changes nothing, so calling this every time is cheap
    and repairs an interrupted first run.
    """
    from .data.prepare import PrepareSettings, prepare  # heavy imports, only when the sample is wanted
    from .inference import resources_dir

    out = Path(cache_root) / "sample_he"
    with _SAMPLE_LOCK:  # a recluster may start while a cancelled preparation is still finishing its patch
        prepare([resources_dir() / "sample" / "he"], out, PrepareSettings(stain="he", patch=(256, 512)),
                progress=progress, cancel=cancel)
    return out


def label_blocks(n_classes: int) -> list[int]:
    """Lengths of the parts of ``label_features``: the tissue layout, then one part per class after air."""
    return [GRID[0] * GRID[1] + 3] + [CLASS_GRID[0] * CLASS_GRID[1] + 4] * (n_classes - 1 if n_classes > 2 else 0)


def _reduce(features: np.ndarray, seed: int, blocks: Optional[Sequence[int]] = None) -> np.ndarray:
    """Standardise every feature (grid cells and the scalar extras weigh alike), then PCA to <= 32 dims.

    With ``blocks`` (label maps), each block of features is then scaled to a total variance of one, so the
    tissue layout and each class weigh alike however many grid cells describe them."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    points = StandardScaler().fit_transform(features.astype(np.float64))
    if blocks is not None:
        if sum(blocks) != points.shape[1]:
            raise ValueError(f"blocks {list(blocks)} do not cover {points.shape[1]} features")
        start = 0
        for length in blocks:
            part = points[:, start:start + length]
            part /= np.sqrt(max(1, np.count_nonzero(np.ptp(part, axis=0))))  # constant features are 0 already
            start += length
    dims = min(MAX_PCA_DIMS, points.shape[0], points.shape[1])
    if points.shape[1] > dims and np.ptp(points, axis=0).any():  # PCA of constant data divides by zero
        points = PCA(n_components=dims, svd_solver="full", random_state=seed).fit_transform(points)
    return points


def _largest_first(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters by size, largest first (ties: the one holding the earliest mask), without gaps."""
    order = sorted(np.unique(labels), key=lambda c: (-np.count_nonzero(labels == c), int(np.argmax(labels == c))))
    mapping = {int(c): i for i, c in enumerate(order)}
    return np.array([mapping[int(c)] for c in labels], dtype=np.int64)


def _cache_key(folder: Path, masks: list[Path], k, k_range, seed: int, classes: Optional[ClassTable] = None) -> str:
    """Keyed by the clustered files; label maps also by their class table and features (a binary key is the
    one written before label maps existed, so old caches stay valid)."""
    files = []
    for p in masks:
        st = p.stat()
        files.append([p.name, st.st_size, st.st_mtime_ns])
    key = {"folder": str(folder.resolve()), "files": files, "k": k, "k_range": list(k_range), "seed": seed,
           "version": FEATURE_VERSION}
    if classes is not None:
        key.update(features="labels", label_version=LABEL_FEATURE_VERSION, classes=classes.to_json())
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:32]


def _read_cache(path: Path, folder: Path, masks: list[Path],
                classes: Optional[ClassTable] = None) -> Optional[ClusterResult]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        result = ClusterResult.from_json(data, folder)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, PriorPathError) as exc:
        log.warning("ignoring unreadable cluster cache %s: %s", path, exc)
        return None
    if result.stems != [p.stem for p in masks] or result.classes != classes:
        return None
    return result


def _write_cache(path: Path, result: ClusterResult) -> None:
    """Best effort: a cache that cannot be written costs time next run, never this run's result."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(result.to_json()) + "\n", durable=False)
    except (OSError, PriorPathError) as exc:
        log.warning("cannot write cluster cache %s: %s", path, exc)
