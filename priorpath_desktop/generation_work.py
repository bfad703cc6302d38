"""The generation view's work, which touches no widget: one sample (coarse -> fine -> RGB), variations,
thumbnails and saving. ``generation_view`` runs it in workers; ``class_generation`` adds label maps.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import cv2
import numpy as np

from trainer.data.classes import ClassTable
from trainer.errors import PriorPathError
from trainer.fileio import ensure_writable_dir, write_png
from trainer.inference import Engine
from trainer.jobs import CancelToken, ProgressFn, check, no_progress

from .variation_gallery import THUMB_SOURCE_WIDTH
from .workers import describe_error

MAX_SEED = 2 ** 31 - 1
MAX_VARIATIONS = 16
UNTITLED = "untitled"  # the base name of saved results while the sketch has no file
OUTPUT_KINDS = ("coarse", "fine", "rgb")
EMPTY_HINT = "draw some tissue to see a preview"
FULL_HINT = "the sketch is all tissue: erase some air to see a preview"


@dataclass
class Sample:
    """One generated result: the coarse mask as sent, its fine mask and (with an RGB model) its RGB tile.

    With ``table`` set, coarse and fine are label maps of that class table, and ``rule`` is what the class
    rule reads back from the RGB tile (None when the table has no such rule)."""

    seed: int
    coarse: Optional[np.ndarray]  # None when the user opened a fine mask (the mask stage was skipped)
    fine: np.ndarray
    rgb: Optional[np.ndarray]
    table: Optional[ClassTable] = None
    rule: Optional[np.ndarray] = None

    def arrays(self) -> dict[str, np.ndarray]:
        found = {"coarse": self.coarse, "fine": self.fine, "rgb": self.rgb}
        return {k: v for k, v in found.items() if v is not None}


def mask_hint(mask: np.ndarray, labels: bool = False) -> Optional[str]:
    """Why a sketch gets no preview yet (no tissue, or nothing but tissue), or None.

    ``check_mask`` accepts both (a model can run on them) but neither is worth a model run while drawing;
    real defects (wrong shape, grey levels) are left to ``check_mask`` to name. A label map (``labels``) all
    of tissue is worth one: its classes still make a layout.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0:
        return None
    if not mask.any():
        return EMPTY_HINT
    if mask.all() and not labels:
        return FULL_HINT
    return None


def load_engine(mask_model: Optional[str], rgb_model: Optional[str], device: str = "auto",
                style: Optional[list[str]] = None) -> Engine:
    """An Engine (with a stain style reference when given), any failure turned into one message."""
    try:
        return Engine(mask_model, rgb_model, device=device, style=style)
    except PriorPathError:
        raise  # already names the file and the problem
    except Exception as exc:  # a checkpoint that parses but does not run, a device that is not there, ...
        raise PriorPathError(f"cannot load models (mask: {mask_model or 'default'}, RGB: {rgb_model or 'default'}):"
                             f" {describe_error(exc)}") from exc


def generate_sample(engine: Engine, coarse: np.ndarray, seed: int,
                    on_fine: Optional[Callable[[np.ndarray], None]] = None, progress: ProgressFn = no_progress,
                    cancel: Optional[CancelToken] = None) -> Sample:
    """Coarse -> fine (handed to ``on_fine`` at once) -> RGB when the engine has an RGB model."""
    fine = engine.fine(coarse, seed, cancel=cancel)
    check(cancel)
    if on_fine is not None:
        on_fine(fine)
    rgb = engine.rgb(fine, seed, progress, cancel) if engine.rgb_model is not None else None
    return Sample(seed, coarse, fine, rgb)


def variation_seeds(first: int, count: int) -> list[int]:
    """``first``, ``first+1``, ... wrapping around so every seed stays in the spinbox's range."""
    return [(first + k) % (MAX_SEED + 1) for k in range(count)]


def generate_variations(engine: Engine, coarse: np.ndarray, first_seed: int, count: int,
                        on_sample: Callable[[int, Sample], None], progress: ProgressFn = no_progress,
                        cancel: Optional[CancelToken] = None, make: Optional[Callable[..., Sample]] = None
                        ) -> list[Sample]:
    """``count`` samples for consecutive seeds, each handed to ``on_sample`` as soon as it is done.

    ``make(engine, coarse, seed, cancel=...)`` makes one (default: ``generate_sample``)."""
    make = make or generate_sample
    samples = []
    for k, seed in enumerate(variation_seeds(first_seed, count)):
        check(cancel)
        sample = make(engine, coarse, seed, cancel=cancel)
        samples.append(sample)
        on_sample(k, sample)
        progress(k + 1, count, f"variation {k + 1}/{count} (seed {seed})")
    return samples


def variation_thumbnail(sample: Sample, width: int = THUMB_SOURCE_WIDTH) -> np.ndarray:
    """The fine mask (a label map in its classes' colours) above the RGB tile (when there is one), as one RGB
    image ``width`` pixels wide."""
    fine = sample.table.colourise(sample.fine) if sample.table is not None else sample.fine[..., None]
    parts = [np.broadcast_to(fine, sample.fine.shape + (3,))]
    if sample.rgb is not None:
        parts.append(sample.rgb)
    strip = np.concatenate(parts, axis=0)
    h, w = strip.shape[:2]
    return cv2.resize(strip, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def save_image(path: Union[str, Path], image: np.ndarray) -> Path:
    """Write one result as PNG (atomically), adding ``.png`` when the name has another suffix."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_name(path.name + ".png")
    ensure_writable_dir(path.parent)
    write_png(path, image)
    return path


def free_name(folder: Union[str, Path], name: str, kinds=OUTPUT_KINDS) -> str:
    """``name``, or ``name-2``, ``name-3``, ...: the first for which no ``<name>_<kind>.png`` is in ``folder``, so
    the results of another sketch (or an earlier save) are never overwritten, and the three stay one set."""
    folder, candidate, n = Path(folder), name, 2
    while any((folder / f"{candidate}_{kind}.png").exists() for kind in kinds):
        candidate, n = f"{name}-{n}", n + 1
    return candidate


def save_results(folder: Union[str, Path], name: str, results: dict[str, np.ndarray]) -> list[Path]:
    """``<name>_coarse.png``, ``<name>_fine.png``, ``<name>_rgb.png`` (those present) in ``folder``; a name whose
    files exist already becomes ``<name>-2`` (``free_name``)."""
    folder = Path(folder)
    ensure_writable_dir(folder)
    name = free_name(folder, name)
    written = []
    for kind in OUTPUT_KINDS:
        if results.get(kind) is not None:
            path = folder / f"{name}_{kind}.png"
            write_png(path, results[kind])
            written.append(path)
    return written
