"""``priorpath export``: a synthetic dataset grown from a few sketches, in the layout ``prepare`` writes.

    DIR/coarse/syn_000000.png   the sketch, augmented (or only resized with augment off)
    DIR/fine/syn_000000.png     the mask model's fine mask (0/255)
    DIR/rgb/syn_000000.png      the RGB model's tile (absent with --rgb-model none)
    DIR/manifest.csv            stem, source sketch, augmentation parameters, seed, model hashes
    DIR/export.json             the settings, so a rerun can tell continuing from mixing two datasets

Sample ``i`` is a function of (seed, i, sketches, models) alone, drawn from ``np.random.default_rng([seed, i])``.
Samples are written one at a time (memory stays flat in N): the three images atomically, then the sample's
manifest row is appended. A sample counts as done only when its row and its files are all there, so a
rerun after ``kill -9`` at any moment redoes at most the sample in flight, never duplicates one, and
leaves no truncated file. A larger ``count`` later extends the dataset.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np

from .data.sketches import augment_sketch, find_sketches, fit_to_size, load_sketch
from .errors import Cancelled, PriorPathError
from .fileio import atomic_write_text, describe_os_error, ensure_writable_dir, remove_stale_temporaries, write_png
from .inference import Engine, file_hash
from .jobs import CancelToken, ProgressFn, check, no_progress

MANIFEST_FIELDS = ["stem", "source", "augment", "params", "seed", "mask_model", "rgb_model"]
SETTINGS_FILE = "export.json"


@dataclass
class ExportResult:
    count: int  # samples present
    generated: int  # samples made by this run (the rest were already done)
    out: Path


def export_dataset(sketch_paths: Iterable[Union[str, Path]], out: Union[str, Path], count: int, engine: Engine,
                   augment: bool = True, seed: int = 0, size: Optional[tuple[int, int]] = None,
                   progress: ProgressFn = no_progress, cancel: Optional[CancelToken] = None) -> ExportResult:
    out = Path(out)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise PriorPathError(f"--count must be a positive integer, got {count!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PriorPathError(f"--seed must be a non-negative integer, got {seed!r}")
    if engine.mask is None:
        raise PriorPathError("export needs a coarse->fine model")
    size = tuple(int(v) for v in (size or engine.mask.size))
    if min(size) < 16:
        raise PriorPathError(f"--size must be at least 16x16, got {size[0]}x{size[1]}")
    given = [Path(p) for p in sketch_paths]
    paths = find_sketches(given, exclude=out)
    if not paths:
        raise PriorPathError(f"no sketches in {', '.join(map(str, given)) or '(nothing given)'}")
    sketches = [fit_to_size(load_sketch(p), size) for p in paths]  # every sketch checked before any write
    sources = [str(p.resolve()) for p in paths]
    mask_hash = engine.mask.sha
    rgb_hash = engine.rgb_model.sha if engine.rgb_model is not None else "none"

    folders = {k: out / k for k in ("coarse", "fine", "rgb")}
    if engine.rgb_model is None:
        del folders["rgb"]
    for folder in (out, *folders.values()):
        ensure_writable_dir(folder)
        remove_stale_temporaries(folder)
    settings = {"seed": seed, "augment": augment, "size": list(size), "mask_model": mask_hash,
                "rgb_model": rgb_hash, "sketches": [file_hash(p) for p in paths]}
    if engine.style_sha:  # only when set, so exports made before --style existed still resume
        settings["style"] = engine.style_sha
    _check_settings(out, settings)
    done = _finished_rows(out, folders)
    _rewrite_manifest(out, done)

    generated = 0
    manifest = open(out / "manifest.csv", "a", newline="", encoding="utf-8")
    try:
        writer = csv.DictWriter(manifest, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
        present = sum(1 for s in done if _index(s) < count)
        progress(present, count, "resuming" if present else "")
        for i in range(count):
            stem = f"syn_{i:06d}"
            if stem in done:
                continue
            check(cancel)
            rng = np.random.default_rng([seed, i])
            which = int(rng.integers(len(sketches))) if augment else i % len(sketches)
            if augment:
                coarse, params = augment_sketch(sketches[which], size, rng)
            else:
                coarse, params = np.where(sketches[which] > 127, 255, 0).astype(np.uint8), {}
            sample_seed = int(rng.integers(2 ** 31))
            fine, rgb = engine.generate(coarse, sample_seed, cancel=cancel)
            write_png(folders["coarse"] / f"{stem}.png", coarse)
            write_png(folders["fine"] / f"{stem}.png", fine)
            if rgb is not None:
                write_png(folders["rgb"] / f"{stem}.png", rgb)
            row = {"stem": stem, "source": sources[which], "augment": int(augment),
                   "params": json.dumps(params, sort_keys=True, separators=(",", ":")), "seed": sample_seed,
                   "mask_model": mask_hash, "rgb_model": rgb_hash}
            writer.writerow(row)
            manifest.flush()  # the row lands after its files: a row always means a whole sample
            done[stem] = row
            generated += 1
            present += 1
            progress(present, count, stem)
    except Cancelled:
        raise Cancelled(f"export stopped with {present} of {count} samples done; rerun the same command to "
                        f"continue") from None
    except OSError as exc:
        raise PriorPathError(f"{out / 'manifest.csv'}: cannot write ({describe_os_error(exc)}); rerun the same "
                             f"command to continue") from exc
    finally:
        manifest.close()
    _rewrite_manifest(out, done)  # sorted, and without the half line a killed run may have left
    return ExportResult(sum(1 for s in done if _index(s) < count), generated, out)


def _index(stem: str) -> int:
    return int(stem.split("_")[-1])


def _check_settings(out: Path, settings: dict) -> None:
    """Refuse to continue an export made with other settings; its samples would not match the new ones."""
    path = out / SETTINGS_FILE
    if path.is_file():
        try:
            before = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PriorPathError(f"{path}: unreadable ({exc}); delete the folder or choose another --out") from exc
        changed = sorted(k for k in set(settings) | set(before) if before.get(k) != settings.get(k))
        if changed:
            raise PriorPathError(f"{out} holds an export made with other {', '.join(changed)}; rerun with the "
                                 f"same settings to continue it, or choose another --out")
        return
    if (out / "manifest.csv").is_file():
        raise PriorPathError(f"{out} holds a manifest.csv that is not an export's; choose another --out")
    atomic_write_text(path, json.dumps(settings, indent=1) + "\n")


def _finished_rows(out: Path, folders: dict[str, Path]) -> dict[str, dict]:
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


def _rewrite_manifest(out: Path, rows: dict[str, dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    for stem in sorted(rows):
        writer.writerow(rows[stem])
    atomic_write_text(out / "manifest.csv", buf.getvalue(), durable=False)
