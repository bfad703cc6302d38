"""Class tables and label maps: the multi-class form of a mask.

A label map is an HxW uint8 array of class ids. Id 0 is always air (glass), so a binary mask is the
two-class case (0 air, 1 tissue). A class table names each id and gives it a colour; it is stored as
``classes.json`` beside prepared labels and exports, and inside an indexed PNG's palette, so a label map
saved by us opens in any image viewer in its colours and in any training code as plain class ids.

``classes.json``::

    {"format": "priorpath-classes", "version": 1, "name": "he3",
     "classes": [{"id": 0, "name": "air", "colour": [255, 255, 255]}, ...]}
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np
from PIL import Image

from trainer.errors import PriorPathError
from trainer.fileio import atomic_write_bytes, atomic_write_text

FORMAT = "priorpath-classes"
MAX_CLASSES = 10  # keys 0-9 in the app: air plus at most nine drawn classes
AIR = 0


@dataclass(frozen=True)
class LabelClass:
    id: int
    name: str
    colour: tuple[int, int, int]


@dataclass(frozen=True)
class ClassTable:
    name: str
    classes: tuple[LabelClass, ...]

    def __post_init__(self) -> None:
        ids = [c.id for c in self.classes]
        if not ids or ids[0] != AIR or self.classes[0].name.lower() not in {"air", "glass", "background"}:
            raise PriorPathError("a class table must start with id 0 = air")
        if ids != list(range(len(ids))):
            raise PriorPathError(f"class ids must be 0, 1, 2, ... in order, got {ids}")
        if len(ids) > MAX_CLASSES:
            raise PriorPathError(f"a class table holds at most {MAX_CLASSES} classes, got {len(ids)}")
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise PriorPathError(f"class names must be unique, got {names}")
        for c in self.classes:
            if len(c.colour) != 3 or not all(0 <= int(v) <= 255 for v in c.colour):
                raise PriorPathError(f"class {c.name!r} needs an RGB colour of three 0-255 values")

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def id_of(self, name: str) -> int:
        for c in self.classes:
            if c.name == name:
                return c.id
        raise PriorPathError(f"no class {name!r} in table {self.name!r} (it has {', '.join(self.names)})")

    def palette(self) -> np.ndarray:
        """(n, 3) uint8 RGB colours indexed by class id."""
        return np.array([c.colour for c in self.classes], dtype=np.uint8)

    def colourise(self, labels: np.ndarray) -> np.ndarray:
        """HxWx3 RGB picture of a label map (for figures and FID on label maps)."""
        check_labels(labels, self)
        return self.palette()[labels]

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": 1, "name": self.name,
                "classes": [{"id": c.id, "name": c.name, "colour": list(c.colour)} for c in self.classes]}

    @classmethod
    def from_json(cls, data: dict, where: str = "class table") -> "ClassTable":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise PriorPathError(f"{where} is not a PriorPath class table (format {FORMAT!r} expected)")
        try:
            classes = tuple(LabelClass(int(c["id"]), str(c["name"]), tuple(int(v) for v in c["colour"]))
                            for c in data["classes"])
            return cls(str(data.get("name", "custom")), classes)
        except (KeyError, TypeError, ValueError) as exc:
            raise PriorPathError(f"{where} has a malformed class entry: {exc}") from None


BINARY = ClassTable("binary", (LabelClass(0, "air", (255, 255, 255)), LabelClass(1, "tissue", (200, 90, 150))))
#: The rule-derived H&E table (``prepare --labels he3``): glass, stroma/cytoplasm, nuclei.
HE3 = ClassTable("he3", (LabelClass(0, "air", (255, 255, 255)), LabelClass(1, "stroma", (236, 150, 190)),
                         LabelClass(2, "nuclei", (70, 40, 150))))
BUILTIN = {t.name: t for t in (BINARY, HE3)}


def table_from_names(names: Sequence[str], name: str = "custom") -> ClassTable:
    """A table for the given class names after air, in order, coloured from a fixed qualitative palette."""
    colours = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
               (213, 94, 0), (204, 121, 167), (120, 120, 120), (150, 80, 40)]
    names = [n for n in names if n.lower() not in {"air", "glass", "background"}]
    if len(names) + 1 > MAX_CLASSES:
        raise PriorPathError(f"at most {MAX_CLASSES - 1} classes besides air, got {len(names)}")
    return ClassTable(name, (LabelClass(0, "air", (255, 255, 255)),)
                      + tuple(LabelClass(i + 1, n, colours[i]) for i, n in enumerate(names)))


def read_class_table(path: Union[str, Path]) -> ClassTable:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PriorPathError(f"{path}: no such class table") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PriorPathError(f"{path}: cannot read the class table ({exc})") from None
    return ClassTable.from_json(data, where=str(path))


def write_class_table(path: Union[str, Path], table: ClassTable) -> None:
    atomic_write_text(Path(path), json.dumps(table.to_json(), indent=1) + "\n")


def check_labels(labels: np.ndarray, table: ClassTable, what: str = "label map") -> None:
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise PriorPathError(f"a {what} must be a 2-D uint8 array, got {labels.dtype} {labels.shape}")
    if labels.size and int(labels.max()) >= len(table):
        raise PriorPathError(f"{what} holds class id {int(labels.max())}, but table {table.name!r} "
                             f"has only ids 0-{len(table) - 1}")


def binary_labels(mask: np.ndarray) -> np.ndarray:
    """A 255/0 (or 0/1, bool) tissue mask as a two-class label map."""
    mask = np.asarray(mask)
    return (mask > (0 if mask.dtype == bool or mask.max(initial=0) <= 1 else 127)).astype(np.uint8)


def tissue_of(labels: np.ndarray) -> np.ndarray:
    """The binary 255/0 tissue mask of a label map (every class but air is tissue)."""
    return np.where(np.asarray(labels) != AIR, 255, 0).astype(np.uint8)


def encode_label_png(labels: np.ndarray, table: ClassTable) -> bytes:
    """An indexed (palette) PNG: pixel values are class ids, the palette holds the table's colours."""
    check_labels(labels, table)
    image = Image.fromarray(labels, mode="P")
    image.putpalette(table.palette().ravel().tolist())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def write_label_png(path: Union[str, Path], labels: np.ndarray, table: ClassTable) -> None:
    atomic_write_bytes(Path(path), encode_label_png(labels, table))


def read_label_png(path: Union[str, Path], table: Optional[ClassTable] = None) -> tuple[np.ndarray, ClassTable]:
    """Read a label map. Indexed PNGs give their indices; greyscale PNGs their values as ids; RGB ones are
    matched to the table's colours (every pixel must be one of them). Without a table, an indexed PNG's
    palette becomes one (names class_1, class_2, ...) and a greyscale map is taken as binary when 0/255."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            mode, data = image.mode, image
            if mode == "P":
                labels = np.asarray(data, dtype=np.uint8)
                palette = np.array(data.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
            elif mode in {"L", "I", "I;16"}:
                labels, palette = np.asarray(data), None
            else:
                labels, palette = np.asarray(data.convert("RGB")), None
    except FileNotFoundError:
        raise PriorPathError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise PriorPathError(f"{path}: not a readable image ({exc})") from None
    if labels.ndim == 3:
        if table is None:
            raise PriorPathError(f"{path}: a colour label map needs a class table to read its colours")
        return _labels_from_colours(labels, table, path), table
    if labels.ndim == 2 and labels.dtype != np.uint8:
        if labels.max(initial=0) >= MAX_CLASSES:
            raise PriorPathError(f"{path}: values up to {int(labels.max())} are not class ids")
        labels = labels.astype(np.uint8)
    if table is None:
        if palette is not None:
            n = int(labels.max(initial=0)) + 1
            table = ClassTable("from-png", (LabelClass(0, "air", tuple(int(v) for v in palette[0])),)
                               + tuple(LabelClass(i, f"class_{i}", tuple(int(v) for v in palette[i]))
                                       for i in range(1, n)))
        elif set(np.unique(labels).tolist()) <= {0, 255}:
            return binary_labels(labels), BINARY
        else:
            raise PriorPathError(f"{path}: a greyscale label map needs a class table (classes.json)")
    check_labels(labels, table, what=f"label map {path.name}")
    return labels, table


def _labels_from_colours(rgb: np.ndarray, table: ClassTable, path: Path) -> np.ndarray:
    palette = table.palette().astype(np.int32)
    key = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    keys = (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]
    labels = np.full(key.shape, 255, np.uint8)
    for class_id, k in enumerate(keys):
        labels[key == k] = class_id
    if (labels == 255).any():
        raise PriorPathError(f"{path}: {int((labels == 255).sum())} pixels have colours that are not in "
                             f"class table {table.name!r}")
    return labels


def class_fractions(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Fraction of pixels per class id (length n_classes)."""
    counts = np.bincount(np.asarray(labels).ravel(), minlength=n_classes)[:n_classes]
    return counts / max(1, np.asarray(labels).size)

