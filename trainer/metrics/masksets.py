"""Find, read and check the mask files of one set (the real masks or one generated set).

A mask is a single-channel 8-bit image, 255 = tissue and 0 = air, as ``priorpath prepare`` writes them.
Generated masks are often not exactly that (JPEG artefacts, soft edges from a tanh output), so a mask
with other values is binarised at 127 (above 127 = tissue) and counted, and the count is reported: a
silent binarisation would hide a generator that never commits to tissue or air. Things that cannot be a
mask of this kind (a colour image, a 0/1 label image, 16-bit data) are errors, because binarising them
at 127 would produce empty masks that still get a score.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import PriorPathError
from ..fileio import describe_os_error, find_files
from ..image_size import check_image_size

MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: A pixel brighter than this is tissue when a mask is not strictly 0/255.
BINARY_THRESHOLD = 127


@dataclass(frozen=True)
class MaskFile:
    """One decoded mask: ``tissue`` is a boolean HxW array."""

    path: Path
    tissue: np.ndarray
    nonbinary: bool  # the file held values other than 0 and 255 and was binarised

    @property
    def shape(self) -> tuple[int, int]:
        return self.tissue.shape  # type: ignore[return-value]


def mask_folder(folder: Path) -> Path:
    """The folder that holds the masks: ``DIR/fine`` for a folder written by ``priorpath prepare``.

    A prepared folder also holds ``rgb/`` and ``coarse/``; evaluating all three together would be
    meaningless, and the fine masks are the real masks the paper compares against.
    """
    folder = Path(folder)
    if (folder / "manifest.csv").is_file() and (folder / "fine").is_dir():
        return folder / "fine"
    return folder


def list_masks(name: str, folder: Path) -> list[Path]:
    """Mask files under ``folder`` (recursively, sorted); a missing or empty folder is an error."""
    folder = Path(folder)
    if not folder.exists():
        raise PriorPathError(f"{name}: {folder}: no such folder")
    if not folder.is_dir():
        raise PriorPathError(f"{name}: {folder} is not a folder")
    files = find_files([mask_folder(folder)], MASK_SUFFIXES)
    if not files:
        raise PriorPathError(f"{name}: no mask images ({', '.join(MASK_SUFFIXES)}) in {folder}")
    return files


def read_mask(path: Path) -> MaskFile:
    """Decode one mask file; unreadable files and images that are not masks are errors naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PriorPathError(f"{path}: cannot read ({describe_os_error(exc)})") from exc
    check_image_size(data, path)  # a decompression bomb is refused before OpenCV allocates it
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    except cv2.error:
        image = None
    if image is None:
        raise PriorPathError(f"{path}: unreadable or corrupt image")
    if image.dtype != np.uint8:
        raise PriorPathError(f"{path}: {image.dtype} image; masks must be 8-bit (0 = air, 255 = tissue)")
    grey = _single_channel(path, image)
    values = np.unique(grey)
    if values.tolist() == [0, 1] and np.count_nonzero(grey) >= 0.001 * grey.size:
        raise PriorPathError(f"{path}: mask values are 0 and 1; expected 0 (air) and 255 (tissue) "
                             "(multiply the labels by 255)")
    nonbinary = not np.isin(values, (0, 255)).all()
    return MaskFile(path, grey > BINARY_THRESHOLD, bool(nonbinary))


def _single_channel(path: Path, image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    channels = image.shape[2]
    colour = image[..., :1] if channels in (1, 2) else image[..., :3]  # drop alpha
    if colour.shape[2] == 3 and not (np.array_equal(colour[..., 0], colour[..., 1])
                                     and np.array_equal(colour[..., 0], colour[..., 2])):
        raise PriorPathError(f"{path}: colour image, not a mask (expected one channel, 0 = air, 255 = tissue)")
    return np.ascontiguousarray(colour[..., 0])


def mask_key(tissue: np.ndarray) -> str:
    """Content hash of a binarised mask: the feature-cache key.

    It hashes the decoded binary pixels rather than the file bytes, so the same mask saved as PNG or
    JPEG, or re-encoded, shares one cache entry, and a changed binarisation can never reuse stale features.
    """
    h, w = tissue.shape
    digest = hashlib.sha256(f"{h}x{w}:".encode())
    digest.update(np.packbits(tissue, axis=None).tobytes())
    return digest.hexdigest()
