"""``priorpath prepare``: cut slides into patches with fine and coarse masks (paper §2.1, §2.3).

Layout of an output folder DIR::

    DIR/rgb/<stem>.png      RGB patch
    DIR/fine/<stem>.png     fine mask, 255 tissue / 0 air
    DIR/coarse/<stem>.png   coarse mask
    DIR/labels/<stem>.png, DIR/coarse_labels/<stem>.png, DIR/classes.json   with ``labels`` (see labels.py)
    DIR/manifest.csv        one row per kept patch
    DIR/.prepare/           settings and a journal of every grid position already decided

The journal is what makes a run resumable and idempotent: a position is appended to it only after its
files are in place, so after a crash a rerun skips what is done and redoes the rest.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np

from ..errors import PriorPathError
from ..fileio import atomic_write_text, ensure_writable_dir, remove_stale_temporaries, write_png
from ..jobs import CancelToken, ProgressFn, check, no_progress
from . import labels, masks
from .classes import HE3, write_class_table
from .slides import SourceReader, find_sources, histogram_level, level_histogram, open_source

log = logging.getLogger(__name__)

MANIFEST_FIELDS = [
    "stem", "source", "x", "y", "width", "height", "level", "downsample",
    "stain", "threshold", "background_fraction",
]
JOURNAL_FIELDS = MANIFEST_FIELDS + ["kept"]
SUBFOLDERS = ("rgb", "fine", "coarse")
LABEL_SUBFOLDERS = ("labels", "coarse_labels")
LABEL_RULES = ("he3",)
STATE_DIR = ".prepare"


@dataclass(frozen=True)
class PrepareSettings:
    stain: str = "he"
    patch: tuple[int, int] = (512, 1024)  # (height, width)
    stride: Optional[tuple[int, int]] = None  # defaults to the patch size: a non-overlapping grid
    threshold: Union[int, str, None] = None  # None = the stain's paper value; "auto" = Otsu per source
    max_background: float = 0.85
    level: int = 0
    labels: Optional[str] = None  # "he3": also class label maps by rule (labels.py)

    def resolved(self) -> "PrepareSettings":
        """Validate and fill in defaults; raises PriorPathError with the offending value."""
        stain = str(self.stain).lower()
        if stain not in masks.STAIN_THRESHOLDS:
            raise PriorPathError(f"unknown stain '{self.stain}' (choose one of: {', '.join(masks.STAIN_THRESHOLDS)})")
        for name, size in (("patch", self.patch), ("stride", self.stride or self.patch)):
            if len(size) != 2 or min(size) < 1:
                raise PriorPathError(f"--{name} must be two positive integers HxW, got {size}")
        threshold = self.threshold
        if threshold is None:
            threshold = masks.STAIN_THRESHOLDS[stain]
        elif threshold != "auto":
            if not (isinstance(threshold, int) and 0 <= threshold <= 255):
                raise PriorPathError(f"--threshold must be an integer 0-255 or 'auto', got {threshold!r}")
        if not 0.0 <= self.max_background <= 1.0:
            raise PriorPathError(f"--max-background must be within [0, 1], got {self.max_background}")
        if self.level < 0:
            raise PriorPathError(f"--level must be >= 0, got {self.level}")
        if self.labels is not None and self.labels not in LABEL_RULES:
            raise PriorPathError(f"unknown --labels '{self.labels}' (choose one of: {', '.join(LABEL_RULES)})")
        if self.labels == "he3" and stain != "he":
            raise PriorPathError("--labels he3 is a rule for H&E slides; it needs --stain he")
        return PrepareSettings(stain, tuple(self.patch), tuple(self.stride or self.patch), threshold,
                               float(self.max_background), int(self.level), self.labels)


@dataclass
class SourcePlan:
    path: Path
    stem: str
    positions: list[tuple[int, int]]  # (x, y) at the working level
    downsample: float


@dataclass
class PrepareResult:
    out: Path
    kept: int = 0
    dropped: int = 0
    skipped_sources: list[str] = field(default_factory=list)
    per_source: dict[str, dict] = field(default_factory=dict)


def grid_positions(width: int, height: int, patch: tuple[int, int], stride: tuple[int, int]) -> list[tuple[int, int]]:
    """Top-left corners (x, y) of every whole patch on the grid anchored at the top-left."""
    ph, pw = patch
    sh, sw = stride
    return [(x, y) for y in range(0, height - ph + 1, sh) for x in range(0, width - pw + 1, sw)]


def parse_size(text: str) -> tuple[int, int]:
    """'512x1024' -> (512, 1024), read as height x width."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(text))
    if not m:
        raise PriorPathError(f"expected a size HxW such as 512x1024, got '{text}'")
    return int(m.group(1)), int(m.group(2))


def prepare(
    sources: Iterable[Union[str, Path]],
    out: Union[str, Path],
    settings: PrepareSettings = PrepareSettings(),
    progress: ProgressFn = no_progress,
    cancel: Optional[CancelToken] = None,
    workers: int = 0,
) -> PrepareResult:
    """Cut every source into patches and write rgb/fine/coarse PNGs plus ``manifest.csv`` under ``out``."""
    settings = settings.resolved()
    out = Path(out)
    given = [Path(s) for s in sources]
    if not given:
        raise PriorPathError("no sources given")
    paths = find_sources(given)  # a missing path is an error here
    if not paths:
        raise PriorPathError(f"no supported image files in {', '.join(map(str, given))}")

    state = _State(out, settings)
    result = PrepareResult(out)
    plans = _plan(paths, set(map(Path.resolve, (g for g in given if g.is_file()))), settings, state, result)
    if not plans:
        raise PriorPathError("no source is large enough for one patch of "
                             f"{settings.patch[0]}x{settings.patch[1]} at level {settings.level}")

    state.open_for_writing()
    succeeded = False
    total = sum(len(p.positions) for p in plans)
    done = 0
    progress(0, total, "")
    workers = workers or min(4, os.cpu_count() or 1)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for plan in plans:
                counts = _process_source(plan, settings, state, pool, 2 * workers, cancel,
                                         lambda n: progress(done + n, total, plan.path.name))
                done += len(plan.positions)
                result.per_source[str(plan.path)] = counts
                result.kept += counts["kept"]
                result.dropped += counts["dropped"]
        succeeded = True
    finally:
        state.close(discard_if_empty=not succeeded)
    progress(total, total, "")
    return result


def _plan(paths, explicit, settings, state, result) -> list[SourcePlan]:
    """Open every source once up front, so bad inputs fail before any work starts."""
    plans = []
    for path in paths:
        with open_source(path) as reader:
            if settings.level >= len(reader.levels):
                raise PriorPathError(f"{path}: has levels 0-{len(reader.levels) - 1}, not level {settings.level}")
            lv = reader.levels[settings.level]
            positions = grid_positions(lv.width, lv.height, settings.patch, settings.stride)
        if not positions:
            message = (f"{path}: image is {lv.height}x{lv.width} at level {settings.level}, "
                       f"smaller than one {settings.patch[0]}x{settings.patch[1]} patch")
            if path.resolve() in explicit:
                raise PriorPathError(message)
            log.warning("skipping %s", message)
            result.skipped_sources.append(str(path))
            continue
        plans.append(SourcePlan(path, state.stem_for(path), positions, lv.downsample))
    return plans


def _process_source(plan: SourcePlan, settings: PrepareSettings, state: "_State", pool, window: int, cancel,
                    progress) -> dict:
    counts = {"kept": 0, "dropped": 0, "positions": len(plan.positions)}
    todo = []
    for x, y in plan.positions:
        row = state.done.get(_patch_stem(plan.stem, x, y))
        if row is not None and (row["kept"] == "0" or state.files_exist(row["stem"])):
            counts["kept" if row["kept"] == "1" else "dropped"] += 1
        else:
            todo.append((x, y))
    progress(len(plan.positions) - len(todo))
    if not todo:
        return counts

    with open_source(plan.path) as reader:
        threshold = _threshold_for(reader, settings)
        nuclei = None
        if settings.labels:  # once per source, like the air threshold
            nuclei = labels.source_threshold(reader, plan.positions, settings.patch, settings.level,
                                             plan.downsample, threshold)
        source = str(plan.path.resolve())
        pending = []
        finished = len(plan.positions) - len(todo)

        def drain(limit: int) -> None:
            nonlocal finished
            while len(pending) > limit:
                row = pending.pop(0).result()
                state.append(row)
                counts["kept" if row["kept"] == "1" else "dropped"] += 1
                finished += 1
                progress(finished)

        try:
            for x, y in todo:
                check(cancel)
                x0, y0 = int(round(x * plan.downsample)), int(round(y * plan.downsample))
                rgb = reader.read_region(x0, y0, settings.patch[1], settings.patch[0], settings.level)
                meta = {
                    "stem": _patch_stem(plan.stem, x, y), "source": source, "x": x0, "y": y0,
                    "width": settings.patch[1], "height": settings.patch[0], "level": settings.level,
                    "downsample": f"{plan.downsample:g}", "stain": settings.stain, "threshold": threshold,
                }
                if nuclei is not None:
                    meta["nuclei_threshold"] = f"{nuclei:g}"
                # Mask computation and PNG encoding release the GIL; reading stays on this thread.
                pending.append(pool.submit(_make_patch, rgb, meta, threshold, settings.max_background, state.out,
                                           nuclei))
                drain(limit=window)
            drain(limit=0)
        finally:
            for f in pending:  # let in-flight writes finish so nothing is half-done
                f.exception()
    return counts


def _make_patch(rgb: np.ndarray, meta: dict, threshold: int, max_background: float, out: Path,
                nuclei: Optional[float] = None) -> dict:
    grey = masks.luma(rgb)
    fine = masks.fine_mask(grey, threshold)
    bg = masks.background_fraction(fine)
    row = dict(meta, background_fraction=f"{bg:.6f}", kept="0")
    if bg > max_background:
        return row
    coarse = masks.coarse_mask(fine)
    stem = meta["stem"]
    for folder, image in (("rgb", rgb), ("fine", fine), ("coarse", coarse)):
        write_png(out / folder / f"{stem}.png", image)
    if nuclei is not None:
        labels.write_patch_labels(out, stem, rgb, coarse, nuclei, threshold)
    row["kept"] = "1"
    return row


def _threshold_for(reader: SourceReader, settings: PrepareSettings) -> int:
    if settings.threshold != "auto":
        return int(settings.threshold)
    level = histogram_level(reader, settings.level)
    return masks.otsu_threshold(level_histogram(reader, level))


def _patch_stem(source_stem: str, x: int, y: int) -> str:
    return f"{source_stem}_x{x}_y{y}"


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class _State:
    """Settings, journal and manifest of one output folder."""

    def __init__(self, out: Path, settings: PrepareSettings):
        self.out = out
        self.settings = settings
        self.state_dir = out / STATE_DIR
        self.journal_path = self.state_dir / "journal.csv"
        extra = ["nuclei_threshold"] if settings.labels else []  # absent without labels: files as before
        self.manifest_fields, self.journal_fields = MANIFEST_FIELDS + extra, JOURNAL_FIELDS + extra
        self.subfolders = SUBFOLDERS + (LABEL_SUBFOLDERS if settings.labels else ())
        self.done: dict[str, dict] = {}
        self._stems: dict[str, str] = {}  # source stem -> resolved source path
        self._fh = None
        if self.state_dir.exists():
            self._check_settings()
            self._load_journal()

    # -- settings ---------------------------------------------------------------------------------
    def _settings_dict(self) -> dict:
        d = asdict(self.settings)
        d["patch"], d["stride"] = list(self.settings.patch), list(self.settings.stride)
        if d["labels"] is None:
            del d["labels"]  # settings.json of a run without labels stays as it was
        return d

    def _check_settings(self) -> None:
        path = self.state_dir / "settings.json"
        if not path.exists():
            return
        try:
            previous = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise PriorPathError(f"{path}: unreadable settings of an earlier run ({exc})") from exc
        current = self._settings_dict()
        if previous != current:
            keys = dict.fromkeys([*current, *previous])  # both ways: an option added or dropped
            changed = ", ".join(f"{k} {previous.get(k)} -> {current.get(k)}" for k in keys
                                if previous.get(k) != current.get(k))
            raise PriorPathError(f"{self.out} was prepared with other settings ({changed}); "
                                 "choose a new --out folder")

    # -- journal ----------------------------------------------------------------------------------
    def _load_journal(self) -> None:
        if not self.journal_path.exists():
            return
        data = self.journal_path.read_bytes()
        if data and not data.endswith(b"\n"):
            # A kill mid-append leaves a torn last line: drop it so the next append starts clean.
            data = data[: data.rfind(b"\n") + 1]
            with open(self.journal_path, "r+b") as fh:
                fh.truncate(len(data))
        for row in csv.DictReader(io.StringIO(data.decode("utf-8", "replace"))):
            if None in row.values() or set(row) != set(self.journal_fields) or row["kept"] not in ("0", "1"):
                continue
            self.done[row["stem"]] = row
            base = row["stem"].rsplit("_x", 1)[0]
            self._stems.setdefault(base, row["source"])

    def stem_for(self, path: Path) -> str:
        """A file-name-safe stem unique to this source, stable across reruns."""
        resolved = str(path.resolve())
        base = _UNSAFE.sub("_", path.stem).strip("._") or "source"
        owner = self._stems.get(base)
        if owner is not None and owner != resolved:
            base = f"{base}-{hashlib.sha1(resolved.encode()).hexdigest()[:8]}"
        self._stems[base] = resolved
        return base

    def files_exist(self, stem: str) -> bool:
        return all((self.out / f / f"{stem}.png").is_file() for f in self.subfolders)

    def open_for_writing(self) -> None:
        self._created_dirs = [d for d in (self.out, *(self.out / f for f in self.subfolders), self.state_dir)
                              if not d.exists()]
        ensure_writable_dir(self.out)
        for f in self.subfolders:
            ensure_writable_dir(self.out / f)
            remove_stale_temporaries(self.out / f)
        ensure_writable_dir(self.state_dir)
        remove_stale_temporaries(self.out)
        new = not self.journal_path.exists()
        table = self.out / labels.CLASSES_FILE
        self._created_files = [p for p in (self.state_dir / "settings.json", self.journal_path, table)
                               if not p.exists()]
        atomic_write_text(self.state_dir / "settings.json", json.dumps(self._settings_dict(), indent=2) + "\n")
        if self.settings.labels:
            write_class_table(table, HE3)
        self._fh = open(self.journal_path, "a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._fh, fieldnames=self.journal_fields, lineterminator="\n")
        if new:
            self._writer.writeheader()
            self._fh.flush()

    def append(self, row: dict) -> None:
        try:
            self._writer.writerow(row)
            self._fh.flush()  # in the OS after each patch: a killed process loses nothing decided
        except OSError as exc:
            raise PriorPathError(f"{self.journal_path}: cannot write ({exc.strerror})") from exc
        self.done[row["stem"]] = {k: str(v) for k, v in row.items()}

    def close(self, discard_if_empty: bool = False) -> None:
        """Flush the journal and write the manifest; a failed run that decided nothing leaves no trace."""
        if self._fh is None:
            return
        try:
            os.fsync(self._fh.fileno())
        except OSError:
            pass
        self._fh.close()
        self._fh = None
        if discard_if_empty and not self.done:
            self._remove_created()
        else:
            self.write_manifest()

    def _remove_created(self) -> None:
        for p in self._created_files:
            try:
                p.unlink()
            except OSError:
                pass
        for d in reversed(self._created_dirs):
            try:
                d.rmdir()  # only if empty
            except OSError:
                pass

    def write_manifest(self) -> None:
        rows = [r for r in self.done.values() if r["kept"] == "1" and self.files_exist(r["stem"])]
        rows.sort(key=lambda r: (r["source"], int(r["y"]), int(r["x"])))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.manifest_fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.out / "manifest.csv", buf.getvalue())


def read_manifest(folder: Union[str, Path]) -> list[dict]:
    """Rows of a prepared folder's ``manifest.csv``."""
    path = Path(folder) / "manifest.csv"
    if not path.is_file():
        raise PriorPathError(f"{folder}: no manifest.csv (is this a folder written by 'priorpath prepare'?)")
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def link_subset(prepared: Union[str, Path], out: Union[str, Path], stems: Iterable[str]) -> Path:
    """A prepared folder holding only ``stems`` of ``prepared`` (hard links where the disk allows, else copies),
    with their manifest rows: a train or held-out split that ``priorpath train`` and ``eval`` read as is."""
    prepared, out = Path(prepared), Path(out)
    keep = set(stems)
    kinds = ("coarse", "fine", "rgb") + tuple(k for k in LABEL_SUBFOLDERS if (prepared / k).is_dir())
    for kind in kinds:
        (out / kind).mkdir(parents=True, exist_ok=True)
        for stem in sorted(keep):
            src, dst = prepared / kind / f"{stem}.png", out / kind / f"{stem}.png"
            if dst.exists() or not src.exists():
                continue
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
    if (prepared / labels.CLASSES_FILE).is_file():
        shutil.copyfile(prepared / labels.CLASSES_FILE, out / labels.CLASSES_FILE)
    rows = [r for r in read_manifest(prepared) if r["stem"] in keep]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "manifest.csv", buf.getvalue())
    return out
