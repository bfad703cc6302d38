"""Label maps of a set, for the per-class part of ``priorpath eval``.

A set holds label maps (HxW class ids, ``trainer.data.classes``) when its folder is

- a prepared or export folder (``manifest.csv`` and ``fine/``) with a ``labels/`` folder and a
  ``classes.json`` in the folder or in ``labels/``: the binary metrics still use ``fine/``;
- a folder of indexed (palette) PNGs with ``classes.json`` in it or in its parent (``DIR/labels`` of
  a prepared folder): the binary metrics then use the tissue of the label maps (every class but air).

A ``classes.json`` in the parent alone needs an indexed PNG as the folder's first image, so a prepared
folder's ``fine/`` (greyscale 0/255) stays a binary set.

Per class, compared as two samples of per-map values like the binary statistics
(``distributions``): the **class fraction**, the share of a map's pixels with that class id; KS on it
(no bins) and KL on 20 equal bins on [0, 1] with the same Laplace smoothing as the tissue fraction.
**FID on label maps**: each map coloured with the real set's class table (``ClassTable.colourise``;
the real table for every set, so two tables that differ only in colours give the same number) and
passed through the same Inception network and resizing as RGB tiles (``InceptionFeatures.rgb``).
"""
from __future__ import annotations

import csv
import hashlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from ..data.classes import ClassTable, class_fractions, read_class_table, read_label_png
from ..errors import PriorPathError
from ..fileio import find_files
from ..jobs import CancelToken, check
from . import distributions

log = logging.getLogger(__name__)

CLASSES_FILE = "classes.json"
FRACTION_EDGES = distributions.BIN_EDGES[distributions.TISSUE]  # a class fraction is a share like tissue


@dataclass
class LabelSet:
    """The label maps of one set; ``fractions`` (N x classes) after `scan`, ``features`` later."""

    label: str  # how messages name the set
    folder: Path
    table: ClassTable
    files: list[Path]
    keys: list[str] = field(default_factory=list)
    fractions: Optional[np.ndarray] = None
    shape: Optional[tuple[int, int]] = None
    features: Optional[np.ndarray] = None
    palette: Optional[np.ndarray] = None  # the colours used for FID (the real set's)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def name(self) -> str:
        return f"{self.label} label maps"

    def read(self, path: Path) -> np.ndarray:
        return read_label_png(path, self.table)[0]

    def load(self, i: int) -> tuple[str, np.ndarray]:
        """(cache key, coloured map) of map ``i``, as the feature pass needs it."""
        labels = self.read(self.files[i])
        return label_key(labels, self.palette), self.palette[labels]


def _is_indexed_png(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            return image.format == "PNG" and image.mode == "P"
    except (OSError, ValueError):
        return False  # reading it later names the file


def label_folder(folder: Path) -> Optional[tuple[Path, Path]]:
    """(folder of label PNGs, its classes.json) for a set folder, or None when the set is binary."""
    folder = Path(folder)
    if (folder / "manifest.csv").is_file() and (folder / "fine").is_dir():
        labels = folder / "labels"
        if not labels.is_dir():
            return None
        for table in (folder / CLASSES_FILE, labels / CLASSES_FILE):
            if table.is_file():
                return labels, table
        log.warning("%s holds label maps but no %s; evaluating its binary masks only", labels, CLASSES_FILE)
        return None
    if not folder.is_dir():
        return None
    if (folder / CLASSES_FILE).is_file():
        return folder, folder / CLASSES_FILE
    if (folder.parent / CLASSES_FILE).is_file():
        pngs = find_files([folder], (".png",))
        if pngs and _is_indexed_png(pngs[0]):
            return folder, folder.parent / CLASSES_FILE
    return None


def find_label_set(label: str, folder: Path) -> Optional[LabelSet]:
    """The label maps of a set folder (see the module docstring), listed but not read yet."""
    found = label_folder(folder)
    if found is None:
        return None
    labels, table_path = found
    files = find_files([labels], (".png",))
    if not files:
        raise PriorPathError(f"{label}: no label maps (.png) in {labels}")
    return LabelSet(label, labels, read_class_table(table_path), files)


def check_tables(real: LabelSet, fake: LabelSet) -> None:
    """Per-class metrics compare classes by id; the same ids must mean the same classes."""
    if real.table.names != fake.table.names:
        raise PriorPathError(f"{fake.label}: class table {fake.table.names} does not match the real set's "
                             f"{real.table.names}; per-class metrics need the same classes in the same order")


def label_key(labels: np.ndarray, palette: np.ndarray) -> str:
    """Feature-cache key of a coloured label map; prefixed so it never equals a binary mask's key."""
    h, w = labels.shape
    digest = hashlib.sha256(f"labels:{h}x{w}:{palette.tobytes().hex()}:".encode())
    digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()


def scan(s: LabelSet, palette: np.ndarray, progress, cancel: Optional[CancelToken]) -> None:
    """Read every label map once: one size per set, class fractions, cache keys."""
    s.palette = palette
    rows, first = [], None
    for i, path in enumerate(s.files):
        check(cancel)
        labels = s.read(path)
        if s.shape is None:
            s.shape, first = labels.shape, path
        elif labels.shape != s.shape:
            raise PriorPathError(f"{s.label}: label maps have different sizes: {first} is "
                                 f"{s.shape[0]}x{s.shape[1]}, {path} is {labels.shape[0]}x{labels.shape[1]}")
        rows.append(class_fractions(labels, len(s.table)))
        s.keys.append(label_key(labels, palette))
        progress(i + 1)
    s.fractions = np.stack(rows)


def compare(real: LabelSet, fake: LabelSet, alpha: float) -> dict[str, float]:
    """``ks_class_<name>`` and ``kl_class_<name>`` for every class, on per-map class fractions."""
    out: dict[str, float] = {}
    for c, name in enumerate(real.table.names):
        a, b = real.fractions[:, c], fake.fractions[:, c]
        out[f"ks_class_{name}"] = distributions.ks_statistic(a, b)
        out[f"kl_class_{name}"] = distributions.kl_divergence(
            distributions.histogram(a, FRACTION_EDGES), distributions.histogram(b, FRACTION_EDGES), alpha)
    return out


def csv_columns(names: list[str]) -> list[tuple[str, str]]:
    """metrics.csv columns for the per-class metrics, after the binary ones."""
    cols = [("FID labels", "fid_labels"), ("N labels", "n_labels")]
    for name in names:
        cols += [(f"KS {name}", f"ks_class_{name}"), (f"KL {name}", f"kl_class_{name}")]
    return cols


def fractions_csv(sets: list[LabelSet], set_names: list[str]) -> str:
    """class_fractions.csv: every label map's class fractions, one row per map."""
    names = sets[0].table.names
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["set", "file", *names])
    for s, set_name in zip(sets, set_names):
        for path, row in zip(s.files, s.fractions):
            try:
                rel = path.relative_to(s.folder)
            except ValueError:
                rel = path
            writer.writerow([set_name, str(rel), *(f"{v:.6g}" for v in row)])
    return buf.getvalue()
