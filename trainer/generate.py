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


def read_coarse(path: Union[str, Path]) -> np.ndarray:
    """A coarse mask file (binary PNG/TIFF/BMP, or Labelme JSON) as HxW uint8 0/255, or a clear error."""
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
    if not mask.any():
        raise PriorPathError(f"{path}: the mask is empty (no tissue); draw some tissue first")
    return mask


@dataclass
class GenerateResult:
    written: int  # samples (fine + RGB) written
    fine_dir: Path
    rgb_dir: Optional[Path]


def generate_files(inputs: Iterable[Union[str, Path]], out: Union[str, Path], engine: Engine, seed: int = 0,
                   variations: int = 1, progress: ProgressFn = no_progress,
                   cancel: Optional[CancelToken] = None) -> GenerateResult:
    """Fine masks (and RGB tiles when the engine has an RGB model) for every coarse mask in ``inputs``.

    With ``variations`` K > 1 each input gives K samples ``<stem>_v0`` ... with seeds seed ... seed+K-1.
    """
    out = Path(out)
    given = [Path(p) for p in inputs]
    if isinstance(variations, bool) or not isinstance(variations, int) or variations < 1:
        raise PriorPathError(f"--variations must be a positive integer, got {variations!r}")
    paths = find_files(given, MASK_SUFFIXES, exclude=out)
    if not paths:
        raise PriorPathError(f"no coarse masks ({', '.join(sorted(MASK_SUFFIXES))}) in "
                             f"{', '.join(map(str, given)) or '(nothing given)'}")
    seen: dict[str, Path] = {}
    for p in paths:
        if p.stem in seen:
            raise PriorPathError(f"two inputs would write the same output name '{p.stem}': {seen[p.stem]} and {p}")
        seen[p.stem] = p
    for i, p in enumerate(paths):  # check everything before writing anything
        check(cancel)
        read_coarse(p)
        progress(0, len(paths) * variations, f"checked {i + 1}/{len(paths)}")
    fine_dir = out / "fine"
    rgb_dir = out / "rgb" if engine.rgb_model is not None else None
    for d in (out, fine_dir, rgb_dir):
        if d is not None:
            ensure_writable_dir(d)
            remove_stale_temporaries(d)
    total, done = len(paths) * variations, 0
    try:
        for p in paths:
            coarse = read_coarse(p)
            for k in range(variations):
                check(cancel)
                stem = p.stem if variations == 1 else f"{p.stem}_v{k}"
                fine, rgb = engine.generate(coarse, seed + k, cancel=cancel)
                write_png(fine_dir / f"{stem}.png", fine)
                if rgb_dir is not None and rgb is not None:
                    write_png(rgb_dir / f"{stem}.png", rgb)
                done += 1
                progress(done, total, stem)
    except Cancelled:
        raise Cancelled(f"stopped after {done} of {total} samples; the files written are complete") from None
    return GenerateResult(done, fine_dir, rgb_dir)

