"""``priorpath merge-exports``: the shards of ``export --shard K/N`` joined into one export folder.

The result is what one unsharded run with the same settings and count writes: every shard's files, one
sorted manifest.csv and an export.json without the shard's own keys (byte for byte, when the shards read
the sketches from the same paths; the manifest's ``source`` column names the path each shard read).

Everything is checked before anything is written. Refused, with one line: shards of different settings,
a shard given twice or missing, a shard with fewer samples than its share of the count, and an --out that
holds something else. Files are hard-linked where the file system allows, copied otherwise, each one
atomically; export.json goes first and manifest.csv last, so rerunning an interrupted merge finishes it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Union

from .errors import Cancelled, PriorPathError
from .export import LABEL_KINDS, SETTINGS_FILE, SHARD_KEYS, finished_rows, manifest_text, parse_shard, read_settings, sample_index
from .fileio import atomic_copy, atomic_write_text, ensure_writable_dir, remove_stale_temporaries
from .jobs import CancelToken, ProgressFn, check, no_progress


@dataclass
class Shard:
    folder: Path
    settings: dict
    k: int
    n: int


@dataclass
class MergeResult:
    count: int  # samples in the merged export
    out: Path


def merge_exports(shard_dirs: Iterable[Union[str, Path]], out: Union[str, Path], progress: ProgressFn = no_progress,
                  cancel: Optional[CancelToken] = None) -> MergeResult:
    out = Path(out)
    shards = [_read_shard(Path(d)) for d in shard_dirs]
    if not shards:
        raise PriorPathError("merge-exports: no shard folders given")
    first = shards[0]
    for shard in shards[1:]:
        keys = (set(first.settings) | set(shard.settings)) - {"shard"}
        changed = sorted(k for k in keys if first.settings.get(k) != shard.settings.get(k))
        if changed:
            raise PriorPathError(f"{shard.folder} and {first.folder} are shards of different exports (other "
                                 f"{', '.join(changed)}); merge the shards of one export command")
    n, count = first.n, first.settings.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise PriorPathError(f"{first.folder / SETTINGS_FILE}: no valid count; rerun its export command")
    by_k: dict[int, Shard] = {}
    for shard in shards:
        if shard.k in by_k:
            raise PriorPathError(f"shard {shard.k}/{n} given twice: {by_k[shard.k].folder} and {shard.folder}")
        by_k[shard.k] = shard
    missing = [f"{k}/{n}" for k in range(n) if k not in by_k]
    if missing:
        raise PriorPathError(f"shard{'s' * (len(missing) > 1)} {', '.join(missing)} missing; give all {n} shard "
                             f"folders")

    kinds = ["coarse", "fine"] + ([] if first.settings.get("rgb_model") == "none" else ["rgb"])
    labelled = "classes" in first.settings  # an export of label maps: their folders and table too
    if labelled:
        kinds += list(LABEL_KINDS)
    rows: dict[str, tuple[Path, dict]] = {}  # stem -> (the shard folder holding it, its manifest row)
    for k in range(n):
        shard = by_k[k]
        done = finished_rows(shard.folder, {kind: shard.folder / kind for kind in kinds})
        mine = {stem: row for stem, row in done.items() if sample_index(stem) < count}
        strays = [stem for stem in mine if sample_index(stem) % n != k]
        if strays:
            raise PriorPathError(f"{shard.folder}: holds {strays[0]}, which is not in shard {k}/{n}; it is not a "
                                 f"shard made by 'export --shard {k}/{n}'")
        share = len(range(k, count, n))
        if len(mine) != share:
            raise PriorPathError(f"{shard.folder}: shard {k}/{n} is incomplete ({len(mine)} of its {share} "
                                 f"samples); rerun its export command to finish it, then merge")
        rows.update((stem, (shard.folder, row)) for stem, row in mine.items())

    merged = {key: value for key, value in first.settings.items() if key not in SHARD_KEYS}
    manifest = manifest_text({stem: row for stem, (_, row) in rows.items()}, labelled)
    _check_out(out, merged, manifest, [s.folder for s in shards])

    # export.json first: it marks the folder as this merge's, so an interrupted merge can be rerun
    for folder in (out, *(out / kind for kind in kinds)):
        ensure_writable_dir(folder)
        remove_stale_temporaries(folder)
    atomic_write_text(out / SETTINGS_FILE, json.dumps(merged, indent=1) + "\n")
    if labelled:
        from .data.classes import ClassTable, write_class_table

        write_class_table(out / "classes.json", ClassTable.from_json(merged["classes"], f"{first.folder} export.json"))
    progress(0, len(rows), "")
    try:
        for done, stem in enumerate(sorted(rows), 1):
            check(cancel)
            folder = rows[stem][0]
            for kind in kinds:
                atomic_copy(folder / kind / f"{stem}.png", out / kind / f"{stem}.png")
            progress(done, len(rows), stem)
    except Cancelled:
        raise Cancelled("merge stopped; rerun the same command to finish it") from None
    except OSError as exc:  # the hard link and the copy both failed
        raise PriorPathError(f"{out}: cannot copy a shard's file ({exc}); rerun the same command to finish it") from exc
    atomic_write_text(out / "manifest.csv", manifest)  # last: a merged folder with a manifest is complete
    return MergeResult(len(rows), out)


def _read_shard(folder: Path) -> Shard:
    if not folder.is_dir():
        raise PriorPathError(f"{folder}: no such folder")
    settings = read_settings(folder)
    if settings is None:
        raise PriorPathError(f"{folder}: not an export folder (no {SETTINGS_FILE})")
    if "shard" not in settings:
        raise PriorPathError(f"{folder}: an export made without --shard; merge-exports joins shards")
    try:
        k, n = parse_shard(settings["shard"])
    except PriorPathError:
        raise PriorPathError(f"{folder / SETTINGS_FILE}: not a valid shard ({settings['shard']!r})") from None
    return Shard(folder, settings, k, n)


def _check_out(out: Path, merged: dict, manifest: str, shard_folders: list[Path]) -> None:
    """--out must be new, empty, or this very merge (interrupted, or done before); never a shard."""
    target = out.resolve()
    for folder in shard_folders:
        f = folder.resolve()
        if target == f or target.is_relative_to(f) or f.is_relative_to(target):
            raise PriorPathError(f"--out {out} overlaps the shard folder {folder}; choose a folder of its own")
    if not out.exists():
        return
    if not out.is_dir():
        raise PriorPathError(f"--out {out} is a file; choose a new or empty folder")
    if not any(out.iterdir()):
        return
    ours = read_settings(out) == merged if (out / SETTINGS_FILE).is_file() else False
    manifest_path = out / "manifest.csv"
    if ours and (not manifest_path.is_file() or manifest_path.read_text(encoding="utf-8") == manifest):
        return  # an interrupted merge (no manifest yet), or this merge done already: finish or redo it
    raise PriorPathError(f"--out {out} already holds something else; choose a new or empty folder")
