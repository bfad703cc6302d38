"""``priorpath generate``: coarse mask files -> DIR/fine/<stem>.png and DIR/rgb/<stem>.png.

With a class-aware engine and ``labels=True`` (``--coarse-labels`` / ``--fine-labels``) the inputs are label
maps (indexed PNGs, with the ``classes.json`` of their table beside them or in the folder above) and the
fine label maps go to DIR/labels/<stem>.png (indexed, the table's palette), with DIR/classes.json.

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
from .inference import MAX_SIDE, MIN_SIDE, Engine, check_mask, model_classes
from .jobs import CancelToken, ProgressFn, check, no_progress
from .pool import ordered_map, resolve_workers, worker_devices

log = logging.getLogger(__name__)
MASK_SUFFIXES = {".png", ".tif", ".tiff", ".bmp", ".json", ".geojson"}
LABEL_SUFFIXES = {".png", ".tif", ".tiff", ".bmp"}  # label maps: images only (classes.json sits beside them)


def read_coarse(path: Union[str, Path], allow_empty: bool = False, geojson_scale: float = 1.0,
                quiet: bool = False) -> np.ndarray:
    """A coarse mask file (PNG/TIFF/BMP, Labelme JSON or QuPath GeoJSON) as HxW uint8 0/255, or a clear error.

    The app's rule (``trainer.data.mask_files``): grey is thresholded at 127, with a warning unless ``quiet``;
    colour is refused. ``allow_empty``: an all-air mask is fine (a fine mask of glass still makes an RGB tile).
    ``geojson_scale``: GeoJSON coordinates are divided by it (a slide's annotations -> a sketch)."""
    from .data.mask_files import read_mask_file

    _refuse_label_map(Path(path))
    read = read_mask_file(path, min_side=MIN_SIDE, max_side=MAX_SIDE, geojson_scale=geojson_scale)
    if read.thresholded and not quiet:
        log.warning("%s", read.notice(path))
    mask = check_mask(read.mask, str(path))
    if not mask.any() and not allow_empty:
        raise PriorPathError(f"{path}: the mask is empty (no tissue); draw some tissue first")
    return mask


def _refuse_label_map(path: Path) -> None:
    """A label map (an indexed PNG with its classes.json beside it) given where a binary mask is expected."""
    from PIL import Image

    if path.suffix.lower() != ".png" or not any((d / "classes.json").is_file() for d in (path.parent, path.parent.parent)):
        return
    with contextlib.suppress(OSError, ValueError), Image.open(path) as image:
        if image.mode == "P":
            raise PriorPathError(f"{path}: a label map (indexed PNG with classes.json), not a binary mask; give it "
                                 f"with --coarse-labels / --fine-labels to class-aware models")


def read_label_input(path: Union[str, Path], table) -> np.ndarray:
    """A label map file for a model drawing ``table``, or one clear line saying why it does not fit.

    A ``classes.json`` beside the file (or in the folder above) must name the same classes; without one the
    file's class ids are taken as the table's. A binary 0/255 mask is refused as such."""
    from PIL import Image

    from .data.classes import read_class_table, read_label_png
    from .image_size import check_image_size

    path = Path(path)
    check_image_size(path)
    beside = next((d / "classes.json" for d in (path.parent, path.parent.parent) if (d / "classes.json").is_file()),
                  None)
    if beside is not None:
        theirs = read_class_table(beside)
        if theirs.names != table.names:
            raise PriorPathError(f"{path}: its {beside} holds classes {', '.join(theirs.names)}, but the model draws "
                                 f"{table.name} label maps ({', '.join(table.names)})")
    try:
        labels, _ = read_label_png(path, table)
    except PriorPathError:
        with contextlib.suppress(OSError, ValueError), Image.open(path) as image:
            if image.mode in ("L", "1") and set(np.unique(np.asarray(image.convert("L"))).tolist()) == {0, 255}:
                raise PriorPathError(f"{path}: a binary mask (0/255), not a label map; the model draws {table.name} "
                                     f"label maps (ids 0-{len(table) - 1}: {', '.join(table.names)})") from None
        raise
    from .inference import check_label_map

    return check_label_map(labels, table, str(path))


@dataclass
class GenerateResult:
    written: int  # samples (fine + RGB) written
    fine_dir: Optional[Path]  # None when the inputs were fine masks
    rgb_dir: Optional[Path]


class GenerateJob:
    """One (input file, variation): read, drawn and PNG-encoded; pickles without its engine (``trainer.pool``)."""

    def __init__(self, engine: Engine, from_fine: bool, seed: int, cancel: Optional[CancelToken] = None,
                 labels: bool = False):
        self.spec, self.engine, self.cancel = engine.spec(), engine, cancel
        self.from_fine, self.seed, self.labels = from_fine, seed, labels

    def __getstate__(self) -> dict:
        return {**self.__dict__, "engine": None, "cancel": None}  # a worker is stopped, not cancelled

    def start(self, device: Optional[str]) -> None:
        self.engine = Engine.from_spec(self.spec, device)

    def __call__(self, item: tuple[str, int, str]) -> tuple[str, Optional[bytes], Optional[bytes]]:
        """(path, k, stem) -> (stem, fine PNG or None when the input was a fine mask, RGB PNG or None)."""
        path, k, stem = item
        if self.labels:
            return self._labels(path, k, stem)
        mask = read_coarse(path, allow_empty=self.from_fine, quiet=True)
        if self.from_fine:
            fine, rgb = None, self.engine.rgb(mask, self.seed + k, cancel=self.cancel)
        else:
            fine, rgb = self.engine.generate(mask, self.seed + k, cancel=self.cancel)
        return stem, *(encode_png(v) if v is not None else None for v in (fine, rgb))

    def _labels(self, path: str, k: int, stem: str) -> tuple[str, Optional[bytes], Optional[bytes]]:
        from .data.classes import encode_label_png

        table = self.engine.classes
        labels = read_label_input(path, table)
        if self.from_fine:
            fine, rgb = None, self.engine.rgb_labels(labels, self.seed + k, cancel=self.cancel)
        else:
            fine, rgb = self.engine.generate_labels(labels, self.seed + k, cancel=self.cancel)
        return (stem, encode_label_png(fine, table) if fine is not None else None,
                encode_png(rgb) if rgb is not None else None)


def generate_files(inputs: Iterable[Union[str, Path]], out: Union[str, Path], engine: Engine, seed: int = 0,
                   variations: int = 1, progress: ProgressFn = no_progress,
                   cancel: Optional[CancelToken] = None, stage: str = "fine",
                   workers: Union[int, str] = 1, labels: bool = False) -> GenerateResult:
    """Fine masks (and RGB tiles when the engine has an RGB model) for every coarse mask in ``inputs``.

    With ``variations`` K > 1 each input gives K samples ``<stem>_v0`` ... with seeds seed ... seed+K-1.
    ``stage="rgb"``: the inputs are fine masks; only RGB tiles are drawn (``fine_dir`` is None).
    ``workers``: processes drawing samples ("auto": see ``trainer.pool``).
    ``labels``: the inputs are label maps of the engine's class table (``fine_dir`` is then DIR/labels).
    """
    if stage not in ("fine", "rgb"):
        raise ValueError(stage)
    from_fine = stage == "rgb"
    if from_fine and engine.rgb_model is None:
        raise PriorPathError("RGB from fine masks needs an RGB model")
    table = engine.classes if labels else None
    if labels and table is None:
        raise PriorPathError("label maps need class-aware models (e.g. resources/models/mask_he3.safetensors and "
                             "rgb_he3.safetensors); these are binary")
    if labels and from_fine and model_classes(engine.rgb_model) is None:
        raise PriorPathError("fine label maps need a class-aware RGB model (e.g. resources/models/rgb_he3.safetensors)")
    out = Path(out)
    given = [Path(p) for p in inputs]
    if isinstance(variations, bool) or not isinstance(variations, int) or variations < 1:
        raise PriorPathError(f"--variations must be a positive integer, got {variations!r}")
    suffixes = LABEL_SUFFIXES if labels else MASK_SUFFIXES
    paths = find_files(given, suffixes, exclude=out)
    if not paths:
        kind = "label maps" if labels else "masks"
        raise PriorPathError(f"no {'fine' if from_fine else 'coarse'} {kind} ({', '.join(sorted(suffixes))}) in "
                             f"{', '.join(map(str, given)) or '(nothing given)'}")
    seen: dict[str, Path] = {}
    for p in paths:
        if p.stem in seen:
            raise PriorPathError(f"two inputs would write the same output name '{p.stem}': {seen[p.stem]} and {p}")
        seen[p.stem] = p
    for i, p in enumerate(paths):  # check everything before writing anything
        check(cancel)
        read_label_input(p, table) if labels else read_coarse(p, allow_empty=from_fine)
        progress(0, len(paths) * variations, f"checked {i + 1}/{len(paths)}")
    fine_dir = None if from_fine else out / ("labels" if labels else "fine")
    rgb_dir = out / "rgb" if engine.rgb_model is not None else None
    for d in (out, fine_dir, rgb_dir):
        if d is not None:
            ensure_writable_dir(d)
            remove_stale_temporaries(d)
    if labels:
        from .data.classes import write_class_table

        write_class_table(out / "classes.json", table)
    total, done = len(paths) * variations, 0
    items = ((str(p), k, p.stem if variations == 1 else f"{p.stem}_v{k}") for p in paths for k in range(variations))
    n = resolve_workers(workers, engine.compute_device.split(":")[0], items=total)
    samples = ordered_map(GenerateJob(engine, from_fine, seed, cancel, labels), items, n, cancel,
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

