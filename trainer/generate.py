"""``priorpath generate``: coarse mask files -> DIR/fine/<stem>.png and DIR/rgb/<stem>.png.

Every input is read and checked before anything is written, so a bad file stops the run up front with
its name and the reason; outputs are written atomically, so a cancelled run leaves only whole files.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np

from .data import labelme
from .errors import Cancelled, PriorPathError
from .fileio import decode_image_file, ensure_writable_dir, find_files, remove_stale_temporaries, write_png
from .inference import Engine, check_mask
from .jobs import CancelToken, ProgressFn, check, no_progress

MASK_SUFFIXES = {".png", ".tif", ".tiff", ".bmp", ".json"}


def read_coarse(path: Union[str, Path], allow_empty: bool = False) -> np.ndarray:
    """A coarse mask file (binary PNG/TIFF/BMP, or Labelme JSON) as HxW uint8 0/255, or a clear error.

    ``allow_empty``: an all-air mask is fine (a fine mask of glass only still makes an RGB tile)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        mask = labelme.read_labelme(path)
    else:
        image = decode_image_file(path)
        if image.ndim == 3:
            colour = image[..., :3]
            if not (colour == colour[..., :1]).all():
                raise PriorPathError(f"{path}: a colour image, not a mask (a coarse mask is black air and white "
                                     f"tissue)")
            image = colour[..., 0]
        mask = check_mask(image, str(path))
    if not mask.any() and not allow_empty:
        raise PriorPathError(f"{path}: the mask is empty (no tissue); draw some tissue first")
    return mask


@dataclass
class GenerateResult:
    written: int  # samples (fine + RGB) written
    fine_dir: Optional[Path]  # None when the inputs were fine masks
    rgb_dir: Optional[Path]


def generate_files(inputs: Iterable[Union[str, Path]], out: Union[str, Path], engine: Engine, seed: int = 0,
                   variations: int = 1, progress: ProgressFn = no_progress,
                   cancel: Optional[CancelToken] = None, stage: str = "fine") -> GenerateResult:
    """Fine masks (and RGB tiles when the engine has an RGB model) for every coarse mask in ``inputs``.

    With ``variations`` K > 1 each input gives K samples ``<stem>_v0`` ... with seeds seed ... seed+K-1.
    ``stage="rgb"``: the inputs are fine masks; only RGB tiles are drawn (``fine_dir`` is None).
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
    try:
        for p in paths:
            mask = read_coarse(p, allow_empty=from_fine)
            for k in range(variations):
                check(cancel)
                stem = p.stem if variations == 1 else f"{p.stem}_v{k}"
                if from_fine:
                    fine, rgb = mask, engine.rgb(mask, seed + k, cancel=cancel)
                else:
                    fine, rgb = engine.generate(mask, seed + k, cancel=cancel)
                    write_png(fine_dir / f"{stem}.png", fine)
                if rgb_dir is not None and rgb is not None:
                    write_png(rgb_dir / f"{stem}.png", rgb)
                done += 1
                progress(done, total, stem)
    except Cancelled:
        raise Cancelled(f"stopped after {done} of {total} samples; the files written are complete") from None
    return GenerateResult(done, fine_dir, rgb_dir)

