"""``priorpath generate``: coarse mask files -> DIR/fine/<stem>.png and DIR/rgb/<stem>.png.

Every input is read and checked before anything is written, so a bad file stops the run up front with
its name and the reason; outputs are written atomically, so a cancelled run leaves only whole files.
``workers`` processes draw the samples (``trainer.pool``; 1 = in this process), with the same output.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np

from .errors import Cancelled, PriorPathError
from .fileio import (atomic_write_bytes, encode_png, ensure_writable_dir, find_files,
                     remove_stale_temporaries)
from .inference import MAX_SIDE, MIN_SIDE, Engine, check_mask
from .jobs import CancelToken, ProgressFn, check, no_progress
from .pool import ordered_map, resolve_workers, worker_devices

log = logging.getLogger(__name__)
MASK_SUFFIXES = {".png", ".tif", ".tiff", ".bmp", ".json", ".geojson"}


def read_coarse(path: Union[str, Path], allow_empty: bool = False, geojson_scale: float = 1.0,
                quiet: bool = False) -> np.ndarray:
    """A coarse mask file (PNG/TIFF/BMP, Labelme JSON or QuPath GeoJSON) as HxW uint8 0/255, or a clear error.

    The app's rule (``trainer.data.mask_files``): grey is thresholded at 127, with a warning unless ``quiet``;
    colour is refused. ``allow_empty``: an all-air mask is fine (a fine mask of glass still makes an RGB tile).
    ``geojson_scale``: GeoJSON coordinates are divided by it (a slide's annotations -> a sketch)."""
    from .data.mask_files import read_mask_file

    read = read_mask_file(path, min_side=MIN_SIDE, max_side=MAX_SIDE, geojson_scale=geojson_scale)
    if read.thresholded and not quiet:
        log.warning("%s", read.notice(path))
    mask = check_mask(read.mask, str(path))
    if not mask.any() and not allow_empty:
        raise PriorPathError(f"{path}: the mask is empty (no tissue); draw some tissue first")
    return mask


@dataclass
class GenerateResult:
    written: int  # samples (fine + RGB) written
    fine_dir: Optional[Path]  # None when the inputs were fine masks
    rgb_dir: Optional[Path]


class GenerateJob:
    """One (input file, variation): read, drawn and PNG-encoded; pickles without its engine (``trainer.pool``)."""

    def __init__(self, engine: Engine, from_fine: bool, seed: int, cancel: Optional[CancelToken] = None):
        self.spec, self.engine, self.cancel = engine.spec(), engine, cancel
        self.from_fine, self.seed = from_fine, seed

    def __getstate__(self) -> dict:
        return {**self.__dict__, "engine": None, "cancel": None}  # a worker is stopped, not cancelled

    def start(self, device: Optional[str]) -> None:
        self.engine = Engine.from_spec(self.spec, device)

    def __call__(self, item: tuple[str, int, str]) -> tuple[str, Optional[bytes], Optional[bytes]]:
        """(path, k, stem) -> (stem, fine PNG or None when the input was a fine mask, RGB PNG or None)."""
        path, k, stem = item
        mask = read_coarse(path, allow_empty=self.from_fine, quiet=True)
        if self.from_fine:
            fine, rgb = None, self.engine.rgb(mask, self.seed + k, cancel=self.cancel)
        else:
            fine, rgb = self.engine.generate(mask, self.seed + k, cancel=self.cancel)
        return stem, *(encode_png(v) if v is not None else None for v in (fine, rgb))


def generate_files(inputs: Iterable[Union[str, Path]], out: Union[str, Path], engine: Engine, seed: int = 0,
                   variations: int = 1, progress: ProgressFn = no_progress,
                   cancel: Optional[CancelToken] = None, stage: str = "fine",
                   workers: Union[int, str] = 1) -> GenerateResult:
    """Fine masks (and RGB tiles when the engine has an RGB model) for every coarse mask in ``inputs``.

    With ``variations`` K > 1 each input gives K samples ``<stem>_v0`` ... with seeds seed ... seed+K-1.
    ``stage="rgb"``: the inputs are fine masks; only RGB tiles are drawn (``fine_dir`` is None).
    ``workers``: processes drawing samples ("auto": see ``trainer.pool``).
    """
    if stage not in ("fine", "rgb"):
        raise ValueError(stage)
    from_fine = stage == "rgb"
    if from_fine and engine.rgb_model is None:
        raise PriorPathError("RGB from fine masks needs an RGB model")
    out = Path(out)
    given = [Path(p) for p in inputs]
    if isinstance(variations, bool) or not isinstance(variations, int) or variations < 1:
        raise PriorPathError(f"--variations must be a positive integer, got {variations!r}")
    paths = find_files(given, MASK_SUFFIXES, exclude=out)
    if not paths:
        raise PriorPathError(f"no {'fine' if from_fine else 'coarse'} masks ({', '.join(sorted(MASK_SUFFIXES))}) in "
                             f"{', '.join(map(str, given)) or '(nothing given)'}")
    seen: dict[str, Path] = {}
    for p in paths:
        if p.stem in seen:
            raise PriorPathError(f"two inputs would write the same output name '{p.stem}': {seen[p.stem]} and {p}")
        seen[p.stem] = p
    for i, p in enumerate(paths):  # check everything before writing anything
        check(cancel)
        read_coarse(p, allow_empty=from_fine)
        progress(0, len(paths) * variations, f"checked {i + 1}/{len(paths)}")
    fine_dir = None if from_fine else out / "fine"
    rgb_dir = out / "rgb" if engine.rgb_model is not None else None
    for d in (out, fine_dir, rgb_dir):
        if d is not None:
            ensure_writable_dir(d)
            remove_stale_temporaries(d)
    total, done = len(paths) * variations, 0
    items = ((str(p), k, p.stem if variations == 1 else f"{p.stem}_v{k}") for p in paths for k in range(variations))
    n = resolve_workers(workers, engine.compute_device.split(":")[0], items=total)
    samples = ordered_map(GenerateJob(engine, from_fine, seed, cancel), items, n, cancel,
                          worker_devices(engine.compute_device, n))
    try:
        with contextlib.closing(samples):  # leaving early (an error) stops the workers at once
            for stem, fine_png, rgb_png in samples:
                if fine_png is not None:
                    atomic_write_bytes(fine_dir / f"{stem}.png", fine_png)
                if rgb_dir is not None and rgb_png is not None:
                    atomic_write_bytes(rgb_dir / f"{stem}.png", rgb_png)
                done += 1
                progress(done, total, stem)
    except Cancelled:
        raise Cancelled(f"stopped after {done} of {total} samples; the files written are complete") from None
    return GenerateResult(done, fine_dir, rgb_dir)

