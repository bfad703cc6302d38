"""``priorpath eval``: compare generated mask sets with a real one and write the report folder.

Steps, in the order that makes mistakes cheap: list every folder (missing/empty folders fail at once),
load and verify the FID network, read every mask once to check it and compute its statistics
(unreadable files, non-masks and mismatched sizes fail before any long work), then Inception features
for the masks not in the cache, the metrics, the t-SNE grid analysis and the files:

    REPORT/metrics.json   {NAME: {"fid", "kid", "kid_std", "ks", "kl", "ks_boundary", "kl_boundary",
                           "ks_components", "kl_components", "precision", "recall", "density", "coverage",
                           "cells_covered", "local_fid_mean", "n", "n_real", "nonbinary", "grid": {...}}}
    REPORT/metrics.csv    one row per generated set, the paper's Table 2 columns first
                          (Method, Dataset, KS, KL, FID), then the others
    REPORT/meta.json      the real set (N, folder, size), settings, network, bins, versions, date
    REPORT/per_mask.csv   every mask's statistics, t-SNE position and grid cell
    REPORT/tsne.png, REPORT/grid.png, REPORT/histograms.png

When the real set and a generated set both hold label maps (see ``labelsets``), that set's metrics also
hold ``fid_labels``, ``n_labels``, ``ks_class_<name>``, ``kl_class_<name>`` and ``class_fraction_mean``,
metrics.csv gets their columns after the others, meta.json the class table, and two more files are
written: REPORT/class_fractions.csv (every label map's class fractions) and REPORT/class_histograms.png.
A set of binary masks only gives exactly the report above.

All sets must hold masks of one size (the statistics depend on resolution; FID does not, but comparing
sets at different resolutions is almost always a mistake). See the modules for each metric's definition.
"""
from __future__ import annotations

import csv
import datetime
import io
import json
import logging
import math
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..data.classes import AIR
from ..errors import PriorPathError
from ..fileio import atomic_write_bytes, atomic_write_text, ensure_writable_dir
from ..jobs import CancelToken, ProgressFn, check, no_progress
from . import coverage, distributions, labelsets, plots
from .frechet import fid, kid
from .inception import FeatureCache, InceptionFeatures, default_cache_dir
from .labelsets import LabelSet
from .masksets import BINARY_THRESHOLD, MaskFile, list_masks, mask_folder, mask_key, read_mask
from .prdc import K, prdc

log = logging.getLogger(__name__)

CSV_COLUMNS = [
    ("Method", None), ("Dataset", None), ("KS", "ks"), ("KL", "kl"), ("FID", "fid"), ("KID", "kid"),
    ("Precision", "precision"), ("Recall", "recall"), ("Density", "density"), ("Coverage", "coverage"),
    ("Cells covered", "cells_covered"), ("Local FID mean", "local_fid_mean"),
    ("KS boundary", "ks_boundary"), ("KL boundary", "kl_boundary"),
    ("KS components", "ks_components"), ("KL components", "kl_components"), ("N", "n"), ("N real", "n_real"),
]
REPORT_FILES = ("metrics.json", "metrics.csv", "meta.json", "per_mask.csv", "tsne.png", "grid.png", "histograms.png")
LABEL_REPORT_FILES = ("class_fractions.csv", "class_histograms.png")  # only when label maps are compared


@dataclass(frozen=True)
class EvalSettings:
    device: str = "auto"
    dataset: Optional[str] = None  # the Dataset column of metrics.csv; default: the real folder's name
    cache_dir: Optional[Path] = None  # default: inception.default_cache_dir()
    use_cache: bool = True
    weights: Optional[Path] = None  # default: inception.locate_weights()
    batch_size: int = 32
    k: int = K
    grid: int = coverage.GRID
    min_cell: int = coverage.MIN_COUNT
    tsne_max: int = coverage.MAX_PER_SET
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    kl_alpha: float = distributions.KL_ALPHA
    seed: int = 0

    def check(self) -> None:
        for name in ("batch_size", "k", "grid", "min_cell", "tsne_max", "kid_subsets", "kid_subset_size"):
            if int(getattr(self, name)) < (2 if name in ("kid_subset_size", "min_cell", "tsne_max") else 1):
                raise PriorPathError(f"{name} is too small: {getattr(self, name)}")
        if self.kl_alpha <= 0:
            raise PriorPathError(f"KL smoothing must be positive, got {self.kl_alpha}")


@dataclass
class MaskSet:
    """One folder of masks after the checking pass; ``features`` come later."""

    name: str
    label: str  # how messages name the set: "real" or "fake 'NAME'"
    folder: Path
    files: list[Path]
    keys: list[str] = field(default_factory=list)
    stats: dict[str, np.ndarray] = field(default_factory=dict)
    shape: Optional[tuple[int, int]] = None
    nonbinary: int = 0
    features: Optional[np.ndarray] = None
    labels: Optional[LabelSet] = None  # the set's label maps, when it has them
    from_labels: bool = False  # the masks are the tissue of the label maps (a folder of label maps)

    def __len__(self) -> int:
        return len(self.files)

    def read(self, path: Path) -> MaskFile:
        if self.from_labels:
            assert self.labels is not None
            return MaskFile(path, self.labels.read(path) != AIR, False)
        return read_mask(path)

    def load(self, i: int) -> tuple[str, np.ndarray]:
        """(cache key, tissue) of mask ``i``, as the feature pass needs it."""
        tissue = self.read(self.files[i]).tissue
        return mask_key(tissue), tissue


@dataclass
class EvalResult:
    out: Path
    metrics: dict[str, dict]
    real: MaskSet
    fakes: list[MaskSet]
    computed: int  # masks whose features were computed (not cached)


def evaluate(
    real: Union[str, Path],
    fakes: Sequence[tuple[str, Union[str, Path]]],
    out: Union[str, Path],
    settings: EvalSettings = EvalSettings(),
    progress: ProgressFn = no_progress,
    cancel: Optional[CancelToken] = None,
) -> EvalResult:
    """Evaluate every (name, folder) in ``fakes`` against the masks in ``real``; write the report to ``out``."""
    settings.check()
    out = Path(out)
    _check_names([n for n, _ in fakes])
    real_set = _mask_set("real", "real", Path(real))
    fake_sets = [_mask_set(n, f"fake '{n}'", Path(f)) for n, f in fakes]
    sets = [real_set, *fake_sets]
    for s in sets:
        if len(s) <= settings.k:
            raise PriorPathError(f"{s.label}: only {len(s)} masks in {s.folder}; at least {settings.k + 1} "
                                 "are needed")
    labelled = _label_pairs(real_set, fake_sets, settings.k)  # the fakes compared class by class
    extractor = InceptionFeatures(settings.device, settings.weights)
    extractor.load()

    total = sum(len(s) for s in sets)
    done = 0
    for s in sets:
        _scan(s, lambda i: progress(done + i, total, f"checking {s.name}"), cancel)
        done += len(s)
    _check_sizes(real_set, fake_sets)
    label_sets = [real_set.labels, *(s.labels for s in labelled)] if labelled else []
    _scan_labels(label_sets, progress, cancel)
    ensure_writable_dir(out)

    cache = FeatureCache((settings.cache_dir or default_cache_dir()) if settings.use_cache else None, extractor.tag)
    computed = _features(sets, extractor, cache, settings.batch_size, progress, cancel)
    computed += _features(label_sets, extractor.rgb, cache, settings.batch_size, progress, cancel, "label maps")

    steps = len(fake_sets) + 2
    metrics: dict[str, dict] = {}
    for i, s in enumerate(fake_sets):
        check(cancel)
        progress(i, steps, f"metrics {s.name}")
        metrics[s.name] = _metrics(real_set, s, settings)
        if any(s is t for t in labelled):
            metrics[s.name].update(_class_metrics(real_set.labels, s.labels, settings))
    progress(len(fake_sets), steps, "t-SNE")
    chosen, points, grid, grids = coverage.coverage_analysis(
        real_set.features, {s.name: s.features for s in fake_sets}, settings.grid, settings.min_cell,
        settings.tsne_max, settings.seed)
    for s in fake_sets:
        metrics[s.name].update(cells_covered=grids[s.name].cells_covered, local_fid_mean=grids[s.name].local_fid_mean,
                               grid=grids[s.name].as_dict())
    check(cancel)
    progress(len(fake_sets) + 1, steps, "writing report")
    dataset = settings.dataset or _dataset_name(real_set.folder)
    _write_report(out, metrics, real_set, fake_sets, chosen, points, grid, grids, settings, dataset, extractor,
                  labelled)
    progress(steps, steps, "")
    return EvalResult(out, metrics, real_set, fake_sets, computed)


def _check_names(names: list[str]) -> None:
    if not names:
        raise PriorPathError("no generated set given (--fake NAME=DIR)")
    seen: set[str] = set()
    for n in names:
        if not n or not n.strip():
            raise PriorPathError("a generated set has an empty name (use --fake NAME=DIR)")
        if n in seen:
            raise PriorPathError(f"two generated sets are named '{n}'; names must be unique")
        seen.add(n)


def _mask_set(name: str, label: str, folder: Path) -> MaskSet:
    """A set's masks, and its label maps when it has them (a folder of label maps gives both)."""
    labels = labelsets.find_label_set(label, folder)
    if labels is not None and labels.folder == folder:
        return MaskSet(name, label, folder, labels.files, labels=labels, from_labels=True)
    return MaskSet(name, label, folder, list_masks(label, folder), labels=labels)


def _label_pairs(real: MaskSet, fakes: list[MaskSet], k: int) -> list[MaskSet]:
    """The fakes whose label maps are compared with the real ones; tables and counts checked now."""
    if real.labels is None:
        for s in fakes:
            if s.labels is not None:
                log.warning("%s has label maps but the real set has none; per-class metrics skipped", s.label)
        return []
    pairs = []
    for s in fakes:
        if s.labels is None:
            log.warning("%s has no label maps; its per-class metrics are left blank", s.label)
            continue
        labelsets.check_tables(real.labels, s.labels)
        pairs.append(s)
    for ls in [real.labels, *(s.labels for s in pairs)] if pairs else []:
        if len(ls) <= k:
            raise PriorPathError(f"{ls.label}: only {len(ls)} label maps in {ls.folder}; at least {k + 1} "
                                 "are needed")
    return pairs


def _scan_labels(label_sets: list[LabelSet], progress, cancel: Optional[CancelToken]) -> None:
    if not label_sets:
        return
    palette = label_sets[0].table.palette()  # the real set's colours for every set (see labelsets)
    total, done = sum(len(s) for s in label_sets), 0
    for s in label_sets:
        labelsets.scan(s, palette, lambda i: progress(done + i, total, "checking label maps"), cancel)
        done += len(s)
    real = label_sets[0]
    for s in label_sets[1:]:
        if s.shape != real.shape:
            raise PriorPathError(f"{s.label}: label maps are {_hw(s.shape)} (HxW) but the real ones are "
                                 f"{_hw(real.shape)}; resize one set so both have the same size")


def _scan(s: MaskSet, progress, cancel: Optional[CancelToken]) -> None:
    """Read every mask once: check it, hash it, compute its statistics."""
    rows: list[dict[str, float]] = []
    first: Optional[Path] = None
    for i, path in enumerate(s.files):
        check(cancel)
        mask = s.read(path)
        if s.shape is None:
            s.shape, first = mask.shape, path
        elif mask.shape != s.shape:
            raise PriorPathError(f"{s.label}: masks have different sizes: {first} is {_hw(s.shape)}, {path} is "
                                 f"{_hw(mask.shape)} (all masks of a set must have one size)")
        s.nonbinary += mask.nonbinary
        s.keys.append(mask_key(mask.tissue))
        rows.append(distributions.mask_statistics(mask.tissue))
        progress(i + 1)
    s.stats = {stat: np.array([r[stat] for r in rows]) for stat in distributions.STATISTICS}
    if s.nonbinary:
        log.warning("%s: %d of %d masks are not binary (values other than 0 and 255); binarised at %d "
                    "(above %d = tissue)", s.label, s.nonbinary, len(s), BINARY_THRESHOLD, BINARY_THRESHOLD)


def _hw(shape) -> str:
    return f"{shape[0]}x{shape[1]}"


def _check_sizes(real: MaskSet, fakes: list[MaskSet]) -> None:
    for s in fakes:
        if s.shape != real.shape:
            raise PriorPathError(f"fake '{s.name}': masks are {_hw(s.shape)} (HxW) but the real masks are "
                                 f"{_hw(real.shape)}; resize one set so both have the same size")


def _features(sets: list, extractor, cache: FeatureCache, batch_size: int, progress: ProgressFn,
              cancel: Optional[CancelToken], what: str = "masks") -> int:
    """Fill every set's features from the cache or ``extractor``; returns how many images were computed.

    A set has ``keys``, ``files`` and ``load(i) -> (key, image)`` (a `MaskSet` or a `LabelSet`)."""
    known: dict[str, np.ndarray] = {}
    todo: list[tuple[MaskSet, int]] = []
    for s in sets:
        for i, key in enumerate(s.keys):
            if key in known:
                continue
            cached = cache.get(key)
            if cached is not None:
                known[key] = cached
            else:
                known[key] = None  # type: ignore[assignment]  # placeholder: computed below, once per key
                todo.append((s, i))
    total = len(todo)
    if not sets:
        return 0
    progress(0, total, "Inception features")
    for start in range(0, total, batch_size):
        check(cancel)
        batch = todo[start:start + batch_size]
        images = []
        for s, i in batch:
            key, image = s.load(i)
            if key != s.keys[i]:
                raise PriorPathError(f"{s.files[i]}: the file changed during the evaluation; run it again")
            images.append(image)
        features = extractor(images)
        for (s, i), f in zip(batch, features):
            known[s.keys[i]] = f
            cache.put(s.keys[i], f)
        progress(start + len(batch), total, f"Inception features ({batch[-1][0].name})")
    for s in sets:
        s.features = np.stack([known[k] for k in s.keys]).astype(np.float32)
    log.info("Inception features of %s: %d computed, %d from the cache so far", what, total, cache.hits)
    return total


def _metrics(real: MaskSet, fake: MaskSet, settings: EvalSettings) -> dict:
    assert real.features is not None and fake.features is not None
    kid_mean, kid_std = kid(real.features, fake.features, settings.kid_subsets, settings.kid_subset_size,
                            settings.seed)
    result = {"n": len(fake), "n_real": len(real), "fid": fid(real.features, fake.features),
              "kid": kid_mean, "kid_std": kid_std}
    result.update(distributions.compare(real.stats, fake.stats, settings.kl_alpha))
    result.update(prdc(real.features, fake.features, settings.k))
    result["nonbinary"] = fake.nonbinary
    return result


def _class_metrics(real: LabelSet, fake: LabelSet, settings: EvalSettings) -> dict:
    result = {"n_labels": len(fake), "fid_labels": fid(real.features, fake.features)}
    result.update(labelsets.compare(real, fake, settings.kl_alpha))
    result["class_fraction_mean"] = dict(zip(real.table.names, fake.fractions.mean(axis=0).tolist()))
    return result


def _dataset_name(folder: Path) -> str:
    folder = Path(folder).resolve()
    return folder.parent.name if folder.name == "fine" else folder.name


def _json_ready(value):
    """numpy scalars to Python, NaN/inf to null (JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.6g}" if math.isfinite(float(value)) else ""


def metrics_csv(metrics: dict[str, dict], dataset: str, columns: Sequence[tuple[str, str]] = ()) -> str:
    """``columns``: (header, key) pairs after the standard ones (the per-class metrics)."""
    cols = [*CSV_COLUMNS, *columns]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([c for c, _ in cols])
    for name, m in metrics.items():
        writer.writerow([name, dataset, *(_fmt(m.get(key)) for _, key in cols[2:])])
    return buf.getvalue()


def _per_mask_csv(sets: list[MaskSet], chosen, points, grid: coverage.Grid) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["set", "file", "key", *distributions.STATISTICS, "tsne_x", "tsne_y", "cell"])
    for s in sets:
        tag = "" if s is sets[0] else s.name
        where = {int(i): j for j, i in enumerate(chosen[tag])}
        cells = grid.cells(points[tag])
        base = mask_folder(s.folder)
        for i, path in enumerate(s.files):
            j = where.get(i)
            pos = ["", "", ""] if j is None else [f"{points[tag][j, 0]:.4f}", f"{points[tag][j, 1]:.4f}",
                                                  str(cells[j] + 1) if cells[j] >= 0 else ""]
            try:
                rel = path.relative_to(base)
            except ValueError:
                rel = path
            writer.writerow([s.name, str(rel), s.keys[i], *(_fmt(s.stats[k][i]) for k in distributions.STATISTICS),
                             *pos])
    return buf.getvalue()


def _meta(real: MaskSet, fakes: list[MaskSet], settings: EvalSettings, dataset: str, extractor: InceptionFeatures,
          grid: coverage.Grid) -> dict:
    import sklearn
    import torch

    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dataset": dataset,
        "real": {"folder": str(real.folder), "n": len(real), "size_hw": list(real.shape or ()),
                 "nonbinary": real.nonbinary},
        "fakes": {s.name: {"folder": str(s.folder), "n": len(s), "nonbinary": s.nonbinary} for s in fakes},
        "network": {"tag": extractor.tag, "weights": str(extractor.weights), "device": str(extractor.device)},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()},
        "binary_threshold": BINARY_THRESHOLD,
        "kl_bins": {k: v.tolist() for k, v in distributions.BIN_EDGES.items()},
        "grid": {"x_edges": grid.x_edges.tolist(), "y_edges": grid.y_edges.tolist(),
                 "cells": "numbered row by row from the lowest t-SNE y and x"},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": np.__version__, "scikit-learn": sklearn.__version__},
    }


def _write_report(out: Path, metrics: dict, real: MaskSet, fakes: list[MaskSet], chosen, points, grid, grids,
                  settings: EvalSettings, dataset: str, extractor: InceptionFeatures,
                  labelled: Sequence[MaskSet] = ()) -> None:
    sets = [real, *fakes]
    atomic_write_text(out / "metrics.json", json.dumps(_json_ready(metrics), indent=2) + "\n")
    columns = labelsets.csv_columns(real.labels.table.names) if labelled else ()
    atomic_write_text(out / "metrics.csv", metrics_csv(metrics, dataset, columns))
    meta = _meta(real, fakes, settings, dataset, extractor, grid)
    if labelled:
        meta["classes"] = {"table": real.labels.table.to_json(), "real": str(real.labels.folder),
                           "n_real": len(real.labels), "size_hw": list(real.labels.shape or ()),
                           "real_fraction_mean": dict(zip(real.labels.table.names,
                                                          real.labels.fractions.mean(axis=0).tolist())),
                           "fakes": {s.name: str(s.labels.folder) for s in labelled},
                           "fraction_bins": labelsets.FRACTION_EDGES.tolist()}
        label_sets, names = [real.labels, *(s.labels for s in labelled)], ["real", *(s.name for s in labelled)]
        atomic_write_text(out / "class_fractions.csv", labelsets.fractions_csv(label_sets, names))
        atomic_write_bytes(out / "class_histograms.png", plots.class_histograms_png(
            real.labels.table.names, {"": real.labels.fractions, **{s.name: s.labels.fractions for s in labelled}},
            real_label=f"real {dataset}"))
    atomic_write_text(out / "meta.json", json.dumps(_json_ready(meta), indent=2) + "\n")
    atomic_write_text(out / "per_mask.csv", _per_mask_csv(sets, chosen, points, grid))
    atomic_write_bytes(out / "tsne.png", plots.tsne_png(points, grid, real_label=f"real {dataset}"))
    atomic_write_bytes(out / "grid.png", plots.grid_png(grids, {n: m["fid"] for n, m in metrics.items()},
                                                        settings.min_cell))
    stats = {"": real.stats, **{s.name: s.stats for s in fakes}}
    atomic_write_bytes(out / "histograms.png", plots.histograms_png(stats, real_label=f"real {dataset}"))
