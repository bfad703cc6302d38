"""Paired (coarse, fine, rgb) patches from a prepared folder, for training.

Tensors are float32 in [-1, 1] (the range a tanh generator outputs): masks are 1xHxW, RGB is 3xHxW.
Label maps (``labels``, ``coarse_labels``: indexed PNGs of ``prepare --labels``) are 1xHxW uint8 class ids.
"""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import PriorPathError
from ..image_size import check_image_size
from .prepare import read_manifest

KINDS = ("coarse", "fine", "rgb")
LABEL_KINDS = ("coarse_labels", "labels")  # class-aware models read these instead of coarse/fine


def read_image(path: Path, kind: str) -> np.ndarray:
    """A mask (HxW uint8, 0/255), a label map (HxW uint8 ids) or an RGB patch (HxWx3 uint8) written by ``prepare``."""
    if kind in LABEL_KINDS:
        from .classes import read_label_png

        check_image_size(path)
        return np.array(read_label_png(path)[0])  # a writable copy for torch
    flag = cv2.IMREAD_GRAYSCALE if kind != "rgb" else cv2.IMREAD_COLOR
    check_image_size(path)  # a prepared folder can be any folder the user names
    image = cv2.imread(str(path), flag)
    if image is None:
        raise PriorPathError(f"{path}: missing or unreadable image")
    if kind == "rgb":
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a 0/255 mask and keep it binary.

    Downscaling averages each output pixel's footprint and keeps the majority (ties go to tissue), which
    preserves thin structures better than nearest-neighbour sampling; upscaling is nearest-neighbour.
    """
    h, w = size
    if mask.shape == (h, w):
        return mask
    shrinking = h <= mask.shape[0] and w <= mask.shape[1]
    resized = cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_NEAREST)
    return np.where(resized >= 128, 255, 0).astype(np.uint8)


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a label map: downscaling keeps each output pixel's majority class (per-class area averages),
    upscaling is nearest-neighbour, so no id is ever invented between two others."""
    h, w = size
    if labels.shape == (h, w):
        return labels
    if not (h <= labels.shape[0] and w <= labels.shape[1]):
        return cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
    ids = np.unique(labels)
    shares = np.stack([cv2.resize((labels == c).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
                       for c in ids])
    return ids[shares.argmax(0)].astype(np.uint8)


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    if rgb.shape[:2] == (h, w):
        return rgb
    shrinking = h <= rgb.shape[0] and w <= rgb.shape[1]
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def transforms_for(size: tuple[int, int]) -> list[tuple[int, bool]]:
    """Label-preserving (k quarter turns, mirror) pairs that keep the HxW shape.

    A square patch has all 8 symmetries of the square; a non-square one only the 4 that keep its
    orientation (identity, the two mirrors, and a half turn).
    """
    if size[0] == size[1]:
        return [(k, m) for k in range(4) for m in (False, True)]
    return [(0, False), (0, True), (2, False), (2, True)]


def apply_transform(image: np.ndarray, k: int, mirror: bool) -> np.ndarray:
    out = np.rot90(image, k, axes=(0, 1))
    if mirror:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def _to_tensor(image: np.ndarray, kind: str = "") -> torch.Tensor:
    if kind in LABEL_KINDS:
        return torch.from_numpy(np.ascontiguousarray(image)).unsqueeze(0)  # ids stay ids
    t = torch.from_numpy(image).float().div_(127.5).sub_(1.0)
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1).contiguous()


class PairedMaskDataset(Dataset):
    """(coarse, fine, rgb) triples of a prepared folder.

    ``size`` resizes every patch (HxW) to a working size, e.g. (256, 512) for CPU training.
    With ``augment``, each item gets a random symmetry drawn from (seed, epoch, index), so a run is
    reproducible and the draws differ between epochs once ``set_epoch`` is called.
    """

    def __init__(
        self,
        root: Union[str, Path],
        stems: Optional[Sequence[str]] = None,
        size: Optional[tuple[int, int]] = None,
        augment: bool = False,
        seed: int = 0,
        kinds: Sequence[str] = KINDS,
    ):
        self.root = Path(root)
        if stems is None:
            stems = [r["stem"] for r in read_manifest(self.root)]
        self.stems = list(stems)
        if not self.stems:
            raise PriorPathError(f"{self.root}: no patches to load")
        unknown = set(kinds) - set(KINDS) - set(LABEL_KINDS)
        if unknown:
            raise PriorPathError(f"unknown kinds {sorted(unknown)}; expected a subset of {KINDS + LABEL_KINDS}")
        missing = [k for k in kinds if k in LABEL_KINDS and not (self.root / k).is_dir()]
        if missing:
            raise PriorPathError(f"{self.root}: no {missing[0]}/ folder; a class-aware model learns from label maps "
                                 f"(prepare with --labels he3)")
        self.kinds = tuple(kinds)
        self.size = tuple(size) if size else None
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.stems)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def load_arrays(self, index: int) -> dict[str, np.ndarray]:
        """The untransformed arrays of one patch, checked for consistency."""
        stem = self.stems[index]
        arrays = {k: read_image(self.root / k / f"{stem}.png", k) for k in self.kinds}
        shapes = {k: a.shape[:2] for k, a in arrays.items()}
        if len(set(shapes.values())) != 1:
            raise PriorPathError(f"{self.root}: patch '{stem}' has mismatched sizes {shapes}")
        for k, a in arrays.items():
            if k in KINDS and k != "rgb" and not np.isin(a, (0, 255)).all():
                raise PriorPathError(f"{self.root / k / stem}.png: mask is not binary (values other than 0/255)")
        return arrays

    def __getitem__(self, index: int) -> dict:
        arrays = self.load_arrays(index)
        if self.size:
            resize = {"rgb": resize_rgb, "labels": resize_labels, "coarse_labels": resize_labels}
            arrays = {k: resize.get(k, resize_mask)(a, self.size) for k, a in arrays.items()}
        if self.augment:
            shape = next(iter(arrays.values())).shape[:2]
            rng = np.random.default_rng([self.seed, self.epoch, index])
            options = transforms_for(shape)
            k, mirror = options[int(rng.integers(len(options)))]
            arrays = {name: apply_transform(a, k, mirror) for name, a in arrays.items()}
        item = {k: _to_tensor(a, k) for k, a in arrays.items()}
        item["stem"] = self.stems[index]
        return item


def split_by_source(
    rows: Iterable[dict],
    test_fraction: float = 0.2,
    seed: int = 0,
    group_pattern: Optional[str] = None,
) -> tuple[list[str], list[str]]:
    """Split patch stems into (train, test) so that no source slide has patches on both sides.

    ``group_pattern`` (a regular expression searched in the source's file name; its first group, or the
    whole match) groups several files that come from one slide or patient, e.g. ``Case-\\d+``.
    Whole groups go to the test side, in a seeded random order, until it holds ``test_fraction`` of
    the patches.
    """
    rows = list(rows)
    if not 0.0 <= test_fraction < 1.0:
        raise PriorPathError(f"test fraction must be within [0, 1), got {test_fraction}")
    groups: dict[str, list[str]] = {}
    for r in rows:
        groups.setdefault(_group_key(r["source"], group_pattern), []).append(r["stem"])
    keys = sorted(groups)
    if test_fraction > 0 and len(keys) < 2:
        raise PriorPathError(f"cannot split by source: all {len(rows)} patches come from one source ({keys})")
    random.Random(seed).shuffle(keys)
    target = test_fraction * len(rows)
    test: list[str] = []
    train: list[str] = []
    for i, key in enumerate(keys):
        take = test_fraction > 0 and (not test or len(test) < target) and i < len(keys) - 1
        (test if take else train).extend(groups[key])
    return sorted(train), sorted(test)


def _group_key(source: str, pattern: Optional[str]) -> str:
    if not pattern:
        return source
    name = Path(source).name
    m = re.search(pattern, name)
    if not m:
        return source
    return m.group(1) if m.groups() else m.group(0)
