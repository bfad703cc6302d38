"""Generation per class, the work the view runs (no widgets): a sketch drawn in classes -> a fine label map
-> a labelled H&E tile, and saving them.

Class sketches are drawn by class-aware models: the user's own checkpoints when they draw the sketch's
classes, else the shipped he3 models (``mask_he3``/``rgb_he3``). For he3 the tile comes with what the he3
rule reads back from it, so the view can outline those nuclei over the tile: they should sit where the
fine map says nuclei. Label maps are saved as indexed PNGs with their ``classes.json`` (``label_files``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import cv2
import numpy as np

from trainer.data.classes import HE3, ClassTable, tissue_of
from trainer.data.labels import he3_labels
from trainer.fileio import ensure_writable_dir, write_png
from trainer.inference import Engine, default_model_path, model_classes
from trainer.jobs import CancelToken, ProgressFn, check, no_progress

from .generation_work import Sample, free_name, load_engine
from .label_files import write_label_map

CLASS_MODELS = "he3"  # the shipped class-aware models
OUTLINE = (255, 230, 0)  # yellow: stands out on both eosin pink and haematoxylin purple


def load_class_engine(device: str = "auto", style: Optional[Sequence[str]] = None) -> Engine:
    """The shipped class-aware models (the RGB one indexes its library on load: a few seconds)."""
    return load_engine(str(default_model_path("mask", CLASS_MODELS)), str(default_model_path("rgb", CLASS_MODELS)),
                       device, list(style) if style else None)


def draws(engine: Optional[Engine], table: ClassTable) -> bool:
    """Whether ``engine`` draws label maps of ``table``'s classes (by name: colours are the user's own)."""
    return engine is not None and engine.classes is not None and engine.classes.names == table.names


def unsupported_note(table: ClassTable, engine: Engine) -> str:
    """Why a class sketch gets no preview from the loaded class models, and what to do."""
    theirs = engine.classes
    return (f"no model draws this sketch's classes ({', '.join(table.names)}): the class models draw "
            f"{theirs.name} ({', '.join(theirs.names)}). Train class-aware models on labels of these classes "
            f"(priorpath train --option classes={table.name}) and load them in the Models menu")


def generate_class_sample(engine: Engine, coarse: np.ndarray, seed: int,
                          on_fine: Optional[Callable[[np.ndarray], None]] = None, progress: ProgressFn = no_progress,
                          cancel: Optional[CancelToken] = None, table: Optional[ClassTable] = None) -> Sample:
    """Coarse label map -> fine label map (handed to ``on_fine`` at once) -> RGB tile and, for he3, its rule
    labels. With the he3 quilt the fine map and the tile come from one pass (``Engine.sketch_labels``): the
    map is the rule's reading of the tile. ``table``: the sketch's own (its colours); by default the engine's."""
    table = table or engine.classes
    if engine.joint_sketches:
        fine, result = engine.sketch_labels(coarse, seed, cancel)
        if on_fine is not None:
            on_fine(fine)
        progress(1, 1, "")
        return Sample(seed, coarse, fine, result.rgb, table, fine if table.names == HE3.names else None)
    fine = engine.fine_labels(coarse, seed, cancel)
    check(cancel)
    if on_fine is not None:
        on_fine(fine)
    rgb = rule = None
    if engine.rgb_model is not None and model_classes(engine.rgb_model) is None:
        rgb = engine.rgb(tissue_of(fine), seed, progress, cancel)  # a binary RGB model: tissue only
    elif engine.rgb_model is not None:
        result = engine.rgb_labels(fine, seed, cancel, details=True)
        rgb = result.rgb
        if table.names == HE3.names:
            rule = he3_labels(rgb, result.nuclei_threshold)
        progress(1, 1, "")
    return Sample(seed, coarse, fine, rgb, table, rule)


def nuclei_outlines(sample: Sample) -> Optional[np.ndarray]:
    """The tile with the rule's nuclei ringed (a line just outside each, so the nucleus itself stays visible),
    or None without a rule."""
    if sample.rgb is None or sample.rule is None:
        return None
    nuclei = (sample.rule == sample.table.id_of("nuclei")).astype(np.uint8)
    ring = cv2.dilate(nuclei, np.ones((3, 3), np.uint8)) > nuclei
    out = sample.rgb.copy()
    out[ring] = OUTLINE
    return out


def save_label_image(path: Union[str, Path], labels: np.ndarray, table: ClassTable) -> list[Path]:
    """An indexed PNG (``.png`` added when missing) and the classes.json it uses; both paths."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_name(path.name + ".png")
    ensure_writable_dir(path.parent)
    return [path, write_label_map(path, labels, table)]


def save_class_results(folder: Union[str, Path], name: str, sample: Sample) -> list[Path]:
    """``<name>_coarse.png`` and ``<name>_fine.png`` as label maps, their classes.json, ``<name>_rgb.png``;
    a name already used becomes ``<name>-2`` (``free_name``)."""
    folder = Path(folder)
    ensure_writable_dir(folder)
    name = free_name(folder, name)
    written: list[Path] = []
    for kind, labels in (("coarse", sample.coarse), ("fine", sample.fine)):
        if labels is not None:
            written += [p for p in save_label_image(folder / f"{name}_{kind}.png", labels, sample.table)
                        if p not in written]
    if sample.rgb is not None:
        write_png(folder / f"{name}_rgb.png", sample.rgb)
        written.append(folder / f"{name}_rgb.png")
    return written
