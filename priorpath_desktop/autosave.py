"""Crash recovery: the mask being drawn is written after every completed edit; Qt-free.

The folder holds ``autosave.png`` (the mask, fast PNG compression) and ``autosave.json`` (where the
mask came from, its version, size, class table and when it was written), each replaced atomically. A
binary sketch is saved as a grey 255/0 mask as always; a multi-class one as an indexed PNG of class ids
whose palette holds the class colours, so the PNG alone tells which it is. A clean exit or
an explicit save calls ``discard()``; anything still there when the next session starts was left by a
session that crashed, and ``recoverable()`` reports it.

The PNG is written before the JSON, so a crash between the two leaves the newer mask with the older
description; ``recover`` trusts the PNG and only uses the JSON for the source path and the class names
(when the JSON's table matches the PNG's palette; else the palette names the classes). A 512x1024 mask
encodes in a few milliseconds (see ``benchmarks/results/canvas.md``), so the canvas saves synchronously
on pen-up for ordinary sizes and in a background job for very large masks.

One folder serves one running app: a second instance started at the same time shares the slot.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from trainer.data.classes import BINARY, ClassTable, binary_labels, encode_label_png, tissue_of
from trainer.errors import PriorPathError
from trainer.fileio import (atomic_write_bytes, atomic_write_text, decode_image_file, describe_os_error,
                            encode_png, remove_stale_temporaries)

from .document import MaskDocument, binarise
from .label_files import decode_indexed_png, is_indexed_png, palette_table
from .preferences import config_dir

log = logging.getLogger(__name__)

MASK_NAME = "autosave.png"
INFO_NAME = "autosave.json"


@dataclass(frozen=True)
class AutosaveInfo:
    """What a crashed session left: enough to ask the user whether to recover it."""

    mask_path: Path
    source: Optional[str]  # the file the mask was opened from or saved to; None for a new sketch
    version: int
    saved_at: float  # seconds since the epoch
    height: int
    width: int
    classes: Optional[str] = None  # the class table's name for a multi-class sketch

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.saved_at))
        what = Path(self.source).name if self.source else "an unsaved sketch"
        kind = f", classes {self.classes}" if self.classes else ""
        return f"{what} ({self.height}x{self.width}{kind}), autosaved {when}"


def default_folder() -> Path:
    return config_dir() / "autosave"


class Autosaver:
    def __init__(self, folder: Optional[Union[str, Path]] = None):
        self.folder = Path(folder) if folder is not None else default_folder()
        self.saves = 0  # how many times this session wrote (tests and the status bar read it)
        # Writes come from the GUI thread and from a worker (large masks): one at a time, and a snapshot
        # taken before the last discard() is dropped, so a saved or closed sketch is never "recovered".
        self._lock = threading.Lock()
        self._generation = 0

    def snapshot_generation(self) -> int:
        """Pass to ``save_mask`` with a snapshot taken now; a discard() in between cancels that write."""
        return self._generation

    @property
    def mask_path(self) -> Path:
        return self.folder / MASK_NAME

    @property
    def info_path(self) -> Path:
        return self.folder / INFO_NAME

    def save(self, doc: MaskDocument) -> None:
        """Write the document's label map now (on the calling thread)."""
        self.save_labels(doc.labels, doc.classes, doc.path, doc.version)

    def save_mask(self, mask: np.ndarray, source: Optional[Union[str, Path]], version: int,
                  generation: Optional[int] = None) -> bool:
        """Write a binary 255/0 ``mask``; see ``save_labels``."""
        return self.save_labels(binary_labels(mask), BINARY, source, version, generation)

    def save_labels(self, labels: np.ndarray, classes: ClassTable, source: Optional[Union[str, Path]],
                    version: int, generation: Optional[int] = None) -> bool:
        """Write ``labels`` (a snapshot the caller will not change meanwhile: safe from a worker thread).
        False when a discard() since ``generation`` made the snapshot obsolete (nothing written)."""
        with self._lock:
            if generation is not None and generation != self._generation:
                return False
            self._write(labels, classes, source, version)
            return True

    def _write(self, labels: np.ndarray, classes: ClassTable, source, version: int) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = describe_os_error(exc)
            raise PriorPathError(f"{self.folder}: cannot create the autosave folder ({why})") from exc
        if self.saves == 0:
            remove_stale_temporaries(self.folder)
        binary = classes == BINARY
        data = encode_png(tissue_of(labels), compression=1) if binary else encode_label_png(labels, classes)
        atomic_write_bytes(self.mask_path, data)
        info = {"source": str(source) if source is not None else None, "version": int(version),
                "saved_at": time.time(), "height": int(labels.shape[0]), "width": int(labels.shape[1]),
                "pid": os.getpid()}
        if not binary:
            info["classes"] = classes.to_json()
        atomic_write_text(self.info_path, json.dumps(info, indent=1) + "\n", durable=False)
        self.saves += 1

    def recoverable(self) -> Optional[AutosaveInfo]:
        """The autosave left behind, or None if there is none (or it is unreadable, which is logged)."""
        if not self.mask_path.is_file():
            return None
        info = self._read_info()
        try:
            version = int(info.get("version", 0))
            saved_at = float(info.get("saved_at", self.mask_path.stat().st_mtime))
        except (TypeError, ValueError, OSError):
            version, saved_at = 0, 0.0
        height, width = _png_size(self.mask_path)  # the PNG may be newer than its description
        source = info.get("source")
        table = info.get("classes")
        classes = str(table.get("name", "custom")) if isinstance(table, dict) else None
        return AutosaveInfo(self.mask_path, source if isinstance(source, str) else None, version, saved_at,
                            height, width, classes if is_indexed_png(self.mask_path) else None)

    def recover(self) -> MaskDocument:
        """The autosaved mask as a document: dirty (it was never saved) and pointing at its source file."""
        info = self.recoverable()
        if info is None:
            raise PriorPathError(f"{self.folder}: no autosaved mask to recover")
        try:
            if is_indexed_png(info.mask_path):
                doc = MaskDocument.from_labels(*self._read_labels(info.mask_path), path=info.source)
            else:
                mask = decode_image_file(info.mask_path, cv2.IMREAD_GRAYSCALE)
                doc = MaskDocument.from_array(binarise(mask), info.source)
        except PriorPathError as exc:
            raise PriorPathError(f"the autosaved mask is damaged and cannot be recovered ({exc})") from exc
        doc.mark_unsaved()
        return doc

    def _read_labels(self, path: Path) -> tuple[np.ndarray, ClassTable]:
        labels, palette = decode_indexed_png(path, str(path))
        n_used = int(labels.max(initial=0)) + 1
        try:
            table = ClassTable.from_json(self._read_info().get("classes"))
        except PriorPathError:
            table = None
        # the JSON may describe an older sketch (a crash between the two writes): it must match the palette
        if table is None or len(table) < n_used or not np.array_equal(palette[:len(table)], table.palette()):
            table = palette_table(palette, n_used)
        return labels, table

    def discard(self) -> None:
        """Forget the autosave (after an explicit save or a clean exit)."""
        with self._lock:
            self._generation += 1
            self._remove_files()

    def _remove_files(self) -> None:
        for p in (self.mask_path, self.info_path):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot remove autosave %s: %s", p, exc)

    def _read_info(self) -> dict:
        try:
            data = json.loads(self.info_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("autosave description %s unreadable (%s); recovering the mask alone", self.info_path, exc)
            return {}
        return data if isinstance(data, dict) else {}


def _png_size(path: Path) -> tuple[int, int]:
    """Height and width from a PNG's header, without decoding it; (0, 0) if it is not a PNG."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
    except OSError:
        return 0, 0
    if len(head) < 24 or not head.startswith(b"\x89PNG\r\n\x1a\n"):
        return 0, 0
    return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
