"""The export dialog's label maps (no widgets): telling label-map sketches from masks, and storing a class
sketch from the canvas where ``trainer.export`` reads it with its class table.

An export is of label maps when the current sketch is drawn in classes or a chosen sketch is an indexed PNG;
it then runs on class-aware models (``priorpath export --classes he3`` in the app), as one export holds one
kind: label maps among masks (or masks among label maps) are skipped, each with its reason.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Iterable, Union

import numpy as np

from trainer.data.classes import AIR, ClassTable, check_labels
from trainer.data.sketches import find_sketches
from trainer.errors import PriorPathError
from trainer.fileio import ensure_writable_dir

from .label_files import is_indexed_png, write_label_map


def holds_label_maps(sources: Iterable[Union[str, Path]]) -> bool:
    """Whether any sketch file among ``sources`` (files or folders) is an indexed PNG, i.e. a label map."""
    return any(p.suffix.lower() == ".png" and is_indexed_png(p) for p in find_sketches([Path(s) for s in sources]))


def store_label_sketch(labels: np.ndarray, table: ClassTable, folder: Path) -> Path:
    """Write the canvas's label map as ``<folder>/<table>_<hash>/sketch_<h>x<w>_<hash>.png`` with the table's
    classes.json beside it (a folder per table: the export reads the classes.json in the sketch's folder)."""
    check_labels(labels, table, "the current sketch")
    if not (np.asarray(labels) != AIR).any():
        raise PriorPathError("the current sketch has no tissue; draw some, or leave it out of the export")
    table_hash = hashlib.sha256(json.dumps(table.to_json(), sort_keys=True).encode()).hexdigest()[:8]
    digest = hashlib.sha256(np.ascontiguousarray(labels).tobytes()).hexdigest()[:16]
    name = re.sub(r"[^\w-]", "_", table.name)  # a table's name is the user's: keep it a plain folder name
    path = Path(folder) / f"{name}_{table_hash}" / f"sketch_{labels.shape[0]}x{labels.shape[1]}_{digest}.png"
    if not path.is_file():
        ensure_writable_dir(path.parent)
        write_label_map(path, labels, table)
    return path
