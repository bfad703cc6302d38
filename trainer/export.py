"""``priorpath export``: a synthetic dataset grown from a few sketches, in the layout ``prepare`` writes.

    DIR/coarse/syn_000000.png   the sketch, augmented (or only resized with augment off)
    DIR/fine/syn_000000.png     the mask model's fine mask (0/255)
    DIR/rgb/syn_000000.png      the RGB model's tile (absent with --rgb-model none)
    DIR/manifest.csv            stem, source sketch, augmentation parameters, seed, model hashes
    DIR/export.json             the settings, so a rerun can tell continuing from mixing two datasets

Sample ``i`` is a function of (seed, i, sketches, models) alone, drawn from ``np.random.default_rng([seed, i])``.
Samples are made by ``workers`` processes (``trainer.pool``; 1 = in this process) and written here one at
a time, in index order, with a bounded number in flight (memory stays flat in N): the three images
atomically, then the sample's manifest row is appended. A sample counts as done only when its row and its
files are all there, so a rerun after ``kill -9`` at any moment redoes at most the samples in flight, never
duplicates one, and leaves no truncated file. A larger ``count`` later extends the dataset. The files are
byte for byte the same whatever the number of workers.

With class-aware models (``Engine.classes`` set, e.g. ``mask_he3``/``rgb_he3``) the sketches are label maps
(indexed PNGs of that table) and each sample also has, segmentation-ready beside ``rgb/<stem>.png``::

    DIR/labels/syn_000000.png         the fine label map (indexed PNG: pixel values are class ids)
    DIR/coarse_labels/syn_000000.png  the augmented sketch
    DIR/classes.json                  the class table (also in export.json: a resume with another is refused)

``coarse/`` and ``fine/`` then hold their tissue masks, and the manifest a ``class_fractions`` column (the
fine label map's fraction of each class id, as JSON).

``shard=(K, N)`` makes only the samples ``i`` with ``i % N == K``: N shards, run anywhere, together hold
the dataset of one run with the same settings, and ``priorpath merge-exports`` (``trainer.merge``) joins
them. A shard's export.json also records the shard and the count.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np

from .data.sketches import augment_sketch, find_sketches, read_sketch_set
from .errors import Cancelled, PriorPathError
from .fileio import (atomic_write_bytes, atomic_write_text, describe_os_error, encode_png, ensure_writable_dir,
                     remove_stale_temporaries)
from .inference import Engine, file_hash, model_classes
from .jobs import CancelToken, ProgressFn, no_progress
from .pool import ordered_map, resolve_workers, worker_devices

MANIFEST_FIELDS = ["stem", "source", "augment", "params", "seed", "mask_model", "rgb_model"]
LABEL_FIELDS = ["class_fractions"]  # label exports only, so binary manifests stay as they were
LABEL_KINDS = ("coarse_labels", "labels")
SETTINGS_FILE = "export.json"
SHARD_KEYS = ("shard", "count")  # in a shard's export.json only; "count" may change (a larger one extends)


@dataclass
class ExportResult:
    count: int  # samples present
    generated: int  # samples made by this run (the rest were already done)
    out: Path
    skipped: list[str] = field(default_factory=list)  # sketch files left out, each with the reason


def parse_shard(text: str) -> tuple[int, int]:
    """``--shard K/N`` -> (K, N), 0 <= K < N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match or int(match[1]) >= int(match[2]):
        raise PriorPathError(f"--shard must be K/N with 0 <= K < N (shard K of N, counted from 0), got '{text}'")
    return int(match[1]), int(match[2])


class ExportJob:
    """Sample ``i`` from its index alone; pickles without its engine, so a worker process rebuilds that."""

    def __init__(self, engine: Engine, sketches: list[np.ndarray], seed: int, augment: bool,
                 size: tuple[int, int], cancel: Optional[CancelToken] = None, table=None):
        self.spec, self.engine, self.cancel = engine.spec(), engine, cancel
        self.sketches, self.seed, self.augment, self.size = sketches, seed, augment, size
        self.table = table  # a class table: the sketches are label maps

    def __getstate__(self) -> dict:
        return {**self.__dict__, "engine": None, "cancel": None}  # a worker is stopped, not cancelled

    def start(self, device: Optional[str]) -> None:
        self.engine = Engine.from_spec(self.spec, device)

    def __call__(self, i: int) -> tuple[int, int, dict, int, dict[str, bytes]]:
        """(i, which sketch, augmentation parameters, sample seed, PNG bytes by folder)."""
        rng = np.random.default_rng([self.seed, i])
        sketches = self.sketches
        which = int(rng.integers(len(sketches))) if self.augment else i % len(sketches)
        if self.table is not None:
            return self._labelled(i, which, rng)
        if self.augment:
            coarse, params = augment_sketch(sketches[which], self.size, rng)
        else:
            coarse, params = np.where(sketches[which] > 127, 255, 0).astype(np.uint8), {}
        sample_seed = int(rng.integers(2 ** 31))
        fine, rgb = self.engine.generate(coarse, sample_seed, cancel=self.cancel)
        images = {"coarse": coarse, "fine": fine, "rgb": rgb}
        return i, which, params, sample_seed, {k: encode_png(v) for k, v in images.items() if v is not None}

    def _labelled(self, i: int, which: int, rng: np.random.Generator) -> tuple[int, int, dict, int, dict[str, bytes]]:
        from .data.classes import class_fractions, encode_label_png, tissue_of
        from .data.label_sketches import augment_labels

        if self.augment:
            coarse, params = augment_labels(self.sketches[which], self.size, rng, len(self.table))
        else:
            coarse, params = self.sketches[which], {}
        sample_seed = int(rng.integers(2 ** 31))
        fine, rgb = self.engine.generate_labels(coarse, sample_seed, cancel=self.cancel)
        pngs = {"coarse": encode_png(tissue_of(coarse)), "fine": encode_png(tissue_of(fine)),
                "coarse_labels": encode_label_png(coarse, self.table), "labels": encode_label_png(fine, self.table)}
        if rgb is not None:
            pngs["rgb"] = encode_png(rgb)
        params["class_fractions"] = [round(float(f), 4) for f in class_fractions(fine, len(self.table))]
        return i, which, params, sample_seed, pngs


def export_dataset(sketch_paths: Iterable[Union[str, Path]], out: Union[str, Path], count: int, engine: Engine,
                   augment: bool = True, seed: int = 0, size: Optional[tuple[int, int]] = None,
                   progress: ProgressFn = no_progress, cancel: Optional[CancelToken] = None,
                   workers: Union[int, str] = 1, shard: Optional[tuple[int, int]] = None,
                   stop_at_bad_sketch: bool = False) -> ExportResult:
    """``workers``: processes making samples ("auto": see ``trainer.pool``); ``shard``: (K, N), see above.

    Unreadable sketch files are skipped and listed in ``ExportResult.skipped`` (``stop_at_bad_sketch``: the
    first one stops the export before anything is written)."""
    out = Path(out)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise PriorPathError(f"--count must be a positive integer, got {count!r}")
    first, step = (0, 1) if shard is None else parse_shard(f"{shard[0]}/{shard[1]}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PriorPathError(f"--seed must be a non-negative integer, got {seed!r}")
    if engine.mask is None:
        raise PriorPathError("export needs a coarse->fine model")
    size = tuple(int(v) for v in (size or engine.mask.size))
    if min(size) < 16:
        raise PriorPathError(f"--size must be at least 16x16, got {size[0]}x{size[1]}")
    given = [Path(p) for p in sketch_paths]
    table = model_classes(engine.mask)
    paths = find_sketches(given, exclude=out)
    if table is not None:  # label maps: images only (classes.json sits beside them)
        paths = [p for p in paths if p.suffix.lower() != ".json"]
    if not paths:
        raise PriorPathError(f"no sketches in {', '.join(map(str, given)) or '(nothing given)'}")
    if table is not None:
        from .data.label_sketches import read_label_sketches

        read = read_label_sketches(paths, table, size, stop_at_bad_sketch)
    else:
        read = read_sketch_set(paths, size, stop_at_bad_sketch)  # every sketch checked before any write
    paths, sketches = read.paths, read.masks
    sources = [str(p.resolve()) for p in paths]
    mask_hash = engine.mask.sha
    rgb_hash = engine.rgb_model.sha if engine.rgb_model is not None else "none"

    folders = {k: out / k for k in ("coarse", "fine", "rgb") + (LABEL_KINDS if table is not None else ())}
    if engine.rgb_model is None:
        del folders["rgb"]
    for folder in (out, *folders.values()):
        ensure_writable_dir(folder)
        remove_stale_temporaries(folder)
    settings = {"seed": seed, "augment": augment, "size": list(size), "mask_model": mask_hash,
                "rgb_model": rgb_hash, "sketches": [file_hash(p) for p in paths]}
    if engine.style_sha:  # only when set, so exports made before --style existed still resume
        settings["style"] = engine.style_sha
    if table is not None:  # only then, so binary exports made before classes existed still resume
        settings["classes"] = table.to_json()
        settings["sketch_path"] = "joint" if engine.joint_sketches else "staged"
    if shard is not None:
        settings.update(shard=f"{first}/{step}", count=count)
    _check_settings(out, settings)
    if table is not None:
        from .data.classes import write_class_table

        write_class_table(out / "classes.json", table)
    done = finished_rows(out, folders)
    _rewrite_manifest(out, done, table is not None)

    generated = 0
    wanted = range(first, count, step)  # this shard's samples (all of them unsharded)
    present = sum(1 for s in done if sample_index(s) < count)
    todo = (i for i in wanted if _stem(i) not in done)  # lazy: no list of N indices
    n = resolve_workers(workers, engine.compute_device.split(":")[0], items=len(wanted) - present)
    job = ExportJob(engine, sketches, seed, augment, size, cancel, table)
    samples = ordered_map(job, todo, n, cancel, worker_devices(engine.compute_device, n))
    manifest = open(out / "manifest.csv", "a", newline="", encoding="utf-8")
    try:
        fields = MANIFEST_FIELDS + (LABEL_FIELDS if table is not None else [])
        writer = csv.DictWriter(manifest, fieldnames=fields, lineterminator="\n")
        progress(present, len(wanted), "resuming" if present else "")
        with contextlib.closing(samples):  # leaving early (an error) stops the workers at once
            for i, which, params, sample_seed, pngs in samples:
                stem = _stem(i)
                for kind, data in pngs.items():
                    atomic_write_bytes(folders[kind] / f"{stem}.png", data)
                fractions = params.pop("class_fractions", None)
                row = {"stem": stem, "source": sources[which], "augment": int(augment),
                       "params": json.dumps(params, sort_keys=True, separators=(",", ":")), "seed": sample_seed,
                       "mask_model": mask_hash, "rgb_model": rgb_hash}
                if fractions is not None:
                    row["class_fractions"] = json.dumps(fractions, separators=(",", ":"))
                writer.writerow(row)
                manifest.flush()  # the row lands after its files: a row always means a whole sample
                done[stem] = row
                generated += 1
                present += 1
                progress(present, len(wanted), stem)
    except Cancelled:
        raise Cancelled(f"export stopped with {present} of {len(wanted)} samples done; rerun the same command "
                        f"to continue") from None
    except OSError as exc:
        raise PriorPathError(f"{out / 'manifest.csv'}: cannot write ({describe_os_error(exc)}); rerun the same "
                             f"command to continue") from exc
    finally:
        manifest.close()
    _rewrite_manifest(out, done, table is not None)  # sorted, and without the half line a killed run may have left
    return ExportResult(sum(1 for s in done if sample_index(s) < count), generated, out, read.skipped)


def sample_index(stem: str) -> int:
    return int(stem.split("_")[-1])


def _stem(i: int) -> str:
    return f"syn_{i:06d}"


def read_settings(out: Path) -> Optional[dict]:
    """An export folder's export.json, None when there is none, or a clear error when it is unreadable."""
    path = out / SETTINGS_FILE
    if not path.is_file():
        return None
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PriorPathError(f"{path}: unreadable ({exc}); delete the folder or choose another --out") from exc
    if not isinstance(settings, dict):
        raise PriorPathError(f"{path}: not an export's settings; delete the folder or choose another --out")
    return settings


def _check_settings(out: Path, settings: dict) -> None:
    """Refuse to continue an export made with other settings; its samples would not match the new ones."""
    path = out / SETTINGS_FILE
    before = read_settings(out)
    if before is not None:
        keys = (set(settings) | set(before)) - {"count"}
        changed = sorted(k for k in keys if before.get(k) != settings.get(k))
        if changed:
            raise PriorPathError(f"{out} holds an export made with other {', '.join(changed)}; rerun with the "
                                 f"same settings to continue it, or choose another --out")
        if before.get("count") != settings.get("count"):  # a shard extended: merge checks it against this
            atomic_write_text(path, json.dumps(settings, indent=1) + "\n")
        return
    if (out / "manifest.csv").is_file():
        raise PriorPathError(f"{out} holds a manifest.csv that is not an export's; choose another --out")
    atomic_write_text(path, json.dumps(settings, indent=1) + "\n")


def finished_rows(out: Path, folders: dict[str, Path]) -> dict[str, dict]:
    """Manifest rows whose files are all present, by stem (a half-written last line is dropped)."""
    path = out / "manifest.csv"
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # kill -9 mid-row
    rows = {}
    for row in csv.DictReader(io.StringIO(text)):
        if None in row or any(v is None for v in row.values()):
            continue
        stem = row.get("stem", "")
        if stem.startswith("syn_") and all((f / f"{stem}.png").is_file() for f in folders.values()):
            rows[stem] = row
    return rows


def manifest_text(rows: dict[str, dict], labelled: Optional[bool] = None) -> str:
    """manifest.csv's text: the header, then the rows sorted by stem; ``labelled`` adds ``LABEL_FIELDS``
    (None: when the rows have them)."""
    buf = io.StringIO()
    if labelled is None:
        labelled = any("class_fractions" in row for row in rows.values())
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS + (LABEL_FIELDS if labelled else []), lineterminator="\n")
    writer.writeheader()
    for stem in sorted(rows):
        writer.writerow(rows[stem])
    return buf.getvalue()


def _rewrite_manifest(out: Path, rows: dict[str, dict], labelled: bool = False) -> None:
    atomic_write_text(out / "manifest.csv", manifest_text(rows, labelled), durable=False)
