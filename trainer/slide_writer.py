"""Streaming writer of pyramidal tiled TIFF slides that OpenSlide (``generic-tiff``) and QuPath open.

Level 0 arrives as bands of whole rows (any height, top to bottom, e.g. from a generator that computes
them), so an image of any height is written with memory bounded by one band plus one row of tiles. Each finished tile row is compressed into the TIFF
at once and, area-averaged 2x, appended to a raw scratch file that becomes the next level; levels halve
until the smaller side fits in one tile. Each level is a full tiled IFD in decreasing size (what
OpenSlide's generic TIFF reader expects); the first carries the description and resolution.

RGB is JPEG-compressed (``quality``; or deflate with ``lossless``); a mask (one channel) is deflate-compressed, and its lower levels are
area averages (grey at edges), as a viewer expects of an overview. The file is written under a temporary
name and renamed when complete, so a cancelled or failed run never leaves a truncated slide.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Optional

import cv2
import numpy as np

from .errors import PriorPathError
from .fileio import describe_os_error

TILE = 512


class _Scratch:
    """A raw HxWxC uint8 image in a temporary file, written by row bands and read by tile rows."""

    def __init__(self, folder: Path, height: int, width: int, channels: int):
        self.height, self.width, self.channels = height, width, channels
        self.fh = tempfile.TemporaryFile(dir=folder)
        self.rows = 0

    def append(self, band: np.ndarray) -> None:
        self.fh.seek(self.rows * self.width * self.channels)
        self.fh.write(np.ascontiguousarray(band).tobytes())
        self.rows += band.shape[0]

    def read(self, y: int, h: int) -> np.ndarray:
        self.fh.seek(y * self.width * self.channels)
        data = self.fh.read(h * self.width * self.channels)
        return np.frombuffer(data, np.uint8).reshape(h, self.width, self.channels)

    def bands(self, rows: int) -> Iterator[np.ndarray]:
        for y in range(0, self.rows, rows):
            yield self.read(y, min(rows, self.rows - y))

    def close(self) -> None:
        self.fh.close()


def write_pyramid(path, height: int, width: int, bands: Iterable[np.ndarray], channels: int = 3,
                  tile: int = TILE, quality: int = 90, mpp: Optional[float] = None, description: str = "",
                  lossless: bool = False) -> Path:
    """Write the level-0 row ``bands`` (HxWxC uint8, top to bottom, summing to ``height`` rows) as a pyramid.

    ``bands`` may be a generator that computes each band on demand: that is what keeps memory flat.
    ``mpp``: microns per pixel at level 0, recorded as the TIFF resolution (pixels per centimetre).
    ``lossless``: deflate instead of JPEG for RGB (exact pixels, files several times larger)."""
    import tifffile

    if channels not in (1, 3):
        raise ValueError(channels)
    if min(height, width) < 1:
        raise PriorPathError(f"slide size {height}x{width}: both sides must be at least 1 pixel")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    jpeg = channels == 3 and not lossless
    options = {"tile": (tile, tile), "photometric": "rgb" if channels == 3 else "minisblack",
               "compression": "jpeg" if jpeg else "zlib", "compressionargs": {"level": quality if jpeg else 6}}
    try:
        with tifffile.TiffWriter(tmp, bigtiff=True) as tiff:
            scratch = _Scratch(path.parent, -(-height // 2), -(-width // 2), channels)
            resolution = {}
            if mpp:
                resolution = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
            tiff.write(_tiles(_checked(bands, height, width, channels), height, width, channels, tile, scratch),
                       shape=_shape(height, width, channels), dtype=np.uint8, subfiletype=0, description=description,
                       metadata=None, **resolution, **options)
            h, w = scratch.height, scratch.width
            while True:
                last = max(h, w) <= tile
                following = None if last else _Scratch(path.parent, -(-h // 2), -(-w // 2), channels)
                tiff.write(_tiles(scratch.bands(tile), h, w, channels, tile, following), shape=_shape(h, w, channels),
                           dtype=np.uint8, subfiletype=1, metadata=None, **options)
                scratch.close()
                if last:
                    break
                scratch, h, w = following, following.height, following.width
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PriorPathError(f"{path}: cannot write the slide ({describe_os_error(exc)})") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _checked(bands: Iterable[np.ndarray], height: int, width: int, channels: int) -> Iterator[np.ndarray]:
    rows = 0
    for band in bands:
        band = np.asarray(band, np.uint8)
        band = band[..., None] if band.ndim == 2 else band
        if band.shape[1:] != (width, channels):
            raise ValueError(f"band of shape {band.shape}, expected (rows, {width}, {channels})")
        rows += band.shape[0]
        if rows > height:
            raise ValueError(f"more than {height} rows")
        yield band
    if rows != height:
        raise ValueError(f"{rows} rows given for a slide of {height}")


def _tiles(bands: Iterable[np.ndarray], height: int, width: int, channels: int, tile: int,
           following: Optional[_Scratch]) -> Iterator[np.ndarray]:
    """Row-major tiles from row bands; each finished tile row also goes, halved, to the next level."""
    pending = np.zeros((0, width, channels), np.uint8)
    done = 0
    for band in bands:
        pending = np.concatenate([pending, band])
        while len(pending) >= tile or (done + len(pending) == height and len(pending)):
            rows, pending = pending[:tile], pending[tile:]
            done += len(rows)
            if following is not None:
                following.append(_halve(rows))
            for x in range(0, width, tile):
                block = _pad(rows[:, x:x + tile], tile)
                yield block if channels == 3 else block[..., 0]


def _shape(height: int, width: int, channels: int) -> tuple[int, ...]:
    return (height, width, 3) if channels == 3 else (height, width)  # tifffile reads HxWx1 as W-wide pages


def _halve(rows: np.ndarray) -> np.ndarray:
    h, w = rows.shape[:2]
    small = cv2.resize(rows, (-(-w // 2), -(-h // 2)), interpolation=cv2.INTER_AREA)
    return small.reshape(small.shape[0], small.shape[1], rows.shape[2])


def _pad(block: np.ndarray, tile: int) -> np.ndarray:
    if block.shape[:2] == (tile, tile):
        return block
    out = np.zeros((tile, tile, block.shape[2]), np.uint8)
    out[: block.shape[0], : block.shape[1]] = block
    return out
