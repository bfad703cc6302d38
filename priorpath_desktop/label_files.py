"""Label maps on disk for the app: indexed PNGs whose class names live in a classes.json beside them; Qt-free.

Reading looks for the class table in ``<stem>.classes.json``, then ``classes.json`` in the PNG's folder,
then in the folder above (a prepared dataset keeps its table beside ``labels/``); the first that covers
every id in the map names the classes. Without one, the PNG's palette gives the colours and the classes
are called class_1, class_2, ... A palette PNG whose colours are all grey and that has no table is a
black-and-white picture saved with a palette, not a label map: the mask rule reads it as before.

Writing puts the table in ``classes.json`` unless that file already holds another table (other label
maps in the folder use it); then in ``<stem>.classes.json``, which reading prefers.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from trainer.data.classes import (MAX_CLASSES, ClassTable, LabelClass, check_labels, read_class_table,
                                  write_class_table, write_label_png)
from trainer.errors import PriorPathError
from trainer.image_size import check_image_size

CLASSES_NAME = "classes.json"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class LabelRead:
    labels: np.ndarray
    classes: ClassTable
    notice: Optional[str] = None  # what the user should know (classes named from the palette)


def is_indexed_png(source: Union[str, Path, bytes]) -> bool:
    """Whether a PNG file (or its bytes) has a palette (IHDR colour type 3), from its first 26 bytes."""
    if isinstance(source, (bytes, bytearray)):
        head = bytes(source[:26])
    else:
        try:
            with open(source, "rb") as fh:
                head = fh.read(26)
        except OSError:
            return False  # the reader that follows names the problem
    return len(head) == 26 and head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR" and head[25] == 3


def decode_indexed_png(source: Union[str, Path, bytes], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Palette indices (HxW uint8) and the (n, 3) palette of an indexed PNG whose size was already checked."""
    from PIL import PngImagePlugin

    try:
        fh = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else open(source, "rb")
        with fh:
            # PngImageFile directly: Image.open would refuse large maps (its own pixel cap), which the
            # header check before this already bounds
            image = PngImagePlugin.PngImageFile(fh)
            image.load()
            if image.mode != "P":
                raise PriorPathError(f"{name}: not an indexed (palette) PNG")
            labels = np.asarray(image, dtype=np.uint8).copy()
            palette = np.array(image.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
    except FileNotFoundError:
        raise PriorPathError(f"{name}: no such file") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise PriorPathError(f"{name}: not a readable PNG ({exc})") from None
    return labels, palette


def palette_table(palette: np.ndarray, n_used: int) -> ClassTable:
    """A table from a PNG's palette: every entry when the palette is short enough to be a table, else the used ones."""
    n = len(palette) if len(palette) <= MAX_CLASSES else n_used
    n = max(n, n_used, 2)  # air and one class at least, so something can be drawn
    colours = [tuple(int(v) for v in palette[i]) if i < len(palette) else (0, 0, 0) for i in range(n)]
    return ClassTable("from-png", (LabelClass(0, "air", colours[0]),)
                      + tuple(LabelClass(i, f"class_{i}", colours[i]) for i in range(1, n)))


def table_candidates(path: Path) -> list[Path]:
    return [path.with_name(f"{path.stem}.{CLASSES_NAME}"), path.parent / CLASSES_NAME,
            path.parent.parent / CLASSES_NAME]


def find_class_table(path: Path, n_used: int) -> tuple[Optional[ClassTable], Optional[str]]:
    """The first table beside ``path`` that covers ids below ``n_used``, and a note on tables passed over."""
    skipped = []
    for candidate in table_candidates(path):
        if not candidate.is_file():
            continue
        try:
            table = read_class_table(candidate)
        except PriorPathError as exc:
            skipped.append(str(exc))
            continue
        if len(table) >= n_used:
            return table, None
        skipped.append(f"{candidate.name} has {len(table)} classes, the map uses {n_used}")
    return None, "; ".join(skipped) or None


def read_label_map(path: Union[str, Path], min_side: int, max_side: int) -> Optional[LabelRead]:
    """An indexed PNG as a label map and its classes; None when it is a grey picture that merely has a palette."""
    path = Path(path)
    check_image_size(path, min_side=min_side, max_side=max_side, what="a label map")
    labels, palette = decode_indexed_png(path, str(path))
    n_used = int(labels.max(initial=0)) + 1
    table, skipped = find_class_table(path, n_used) if n_used <= MAX_CLASSES else (None, None)
    if table is not None:
        return LabelRead(labels, table)
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=256))
    used = np.array([palette[i] if i < len(palette) else (0, 0, 0) for i in present], dtype=int)
    if np.all(used == used[:, :1]):
        return None
    if n_used > MAX_CLASSES:
        raise PriorPathError(f"{path}: holds palette index {n_used - 1}; a label map has at most {MAX_CLASSES} "
                             f"classes (ids 0-{MAX_CLASSES - 1}), so this is a picture, not a label map")
    table = palette_table(palette, n_used)
    notice = (f"{path.name}: no {CLASSES_NAME} names its classes, so they are called "
              f"{', '.join(table.names[1:])} (colours from the file)")
    if skipped:
        notice += f"; not used: {skipped}"
    return LabelRead(labels, table, notice)


def write_label_map(path: Union[str, Path], labels: np.ndarray, table: ClassTable) -> Path:
    """Write the indexed PNG, then its table (see the module's rule); returns the table's path."""
    path = Path(path)
    check_labels(labels, table)
    own, shared = path.with_name(f"{path.stem}.{CLASSES_NAME}"), path.parent / CLASSES_NAME
    target = own
    if not own.exists():
        try:
            fits = not shared.exists() or read_class_table(shared) == table
        except PriorPathError:
            fits = False  # an unreadable shared table is left alone
        target = shared if fits else own
    write_label_png(path, labels, table)
    write_class_table(target, table)
    return target
