"""Reading image sources region by region.

Two back ends cover what pathologists have on disk:

* whole-slide formats (.svs, .ndpi, .mrxs, tiled pyramid TIFF, ...) through OpenSlide, which reads
  any region of any pyramid level without decoding the rest of the slide;
* plain images (PNG, JPEG, TIFF; RGB, RGBA, grey, 16-bit) through libvips, which decodes lazily and
  spills large images to a temporary file instead of holding them in memory.

Every reader returns 8-bit RGB regions; transparency is composited onto white (air), the
background colour of a glass slide.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import PriorPathError
from ..fileio import find_files
from ..image_size import check_image_size

WSI_SUFFIXES = {".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide", ".tif", ".tiff"}
TIFF_SUFFIXES = {".tif", ".tiff"}
PLAIN_SUFFIXES = {".png", ".jpg", ".jpeg"} | TIFF_SUFFIXES
SUPPORTED_SUFFIXES = WSI_SUFFIXES | PLAIN_SUFFIXES


@dataclass(frozen=True)
class Level:
    width: int
    height: int
    downsample: float


class SourceReader:
    """Region access to one image source; use as a context manager."""

    path: Path
    levels: list[Level]

    def read_region(self, x: int, y: int, width: int, height: int, level: int) -> np.ndarray:
        """RGB uint8 array (height, width, 3); ``x``, ``y`` are level-0 coordinates."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "SourceReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class OpenSlideReader(SourceReader):
    def __init__(self, path: Path, slide):
        self.path = path
        self._slide = slide
        self.levels = [
            Level(int(w), int(h), float(d))
            for (w, h), d in zip(slide.level_dimensions, slide.level_downsamples)
        ]

    def read_region(self, x: int, y: int, width: int, height: int, level: int) -> np.ndarray:
        try:
            rgba = np.asarray(self._slide.read_region((x, y), level, (width, height)))
        except Exception as exc:
            raise PriorPathError(f"{self.path}: cannot read region at ({x}, {y}) level {level} ({exc})") from exc
        return _flatten_rgba(rgba)

    def close(self) -> None:
        self._slide.close()


class VipsReader(SourceReader):
    def __init__(self, path: Path):
        import pyvips

        self.path = path
        if path.suffix.lower() not in TIFF_SUFFIXES:
            # libvips decodes a PNG or JPEG whole (into a temporary file) before any region can be read, so a
            # decompression bomb is refused first; a TIFF is read strip by strip and may be as large as a slide
            check_image_size(path)
        try:
            image = pyvips.Image.new_from_file(str(path), fail_on="error")
            self._image = _to_rgb8(image)
        except pyvips.Error as exc:
            raise PriorPathError(f"{path}: cannot read image ({_vips_reason(exc)})") from exc
        self.levels = [Level(self._image.width, self._image.height, 1.0)]

    def read_region(self, x: int, y: int, width: int, height: int, level: int) -> np.ndarray:
        import pyvips

        if level != 0:
            raise PriorPathError(f"{self.path}: a plain image has only level 0, not level {level}")
        try:
            region = self._image.crop(x, y, width, height).numpy()
        except pyvips.Error as exc:
            raise PriorPathError(f"{self.path}: corrupt or truncated image, cannot decode region at ({x}, {y}) "
                                 f"({_vips_reason(exc)})") from exc
        return np.ascontiguousarray(region)


def _vips_reason(exc: Exception) -> str:
    """The most specific line of a libvips error (its first line is often a generic wrapper)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    for line in lines:
        if ":" in line and not line.startswith("unable to"):
            return line
    return lines[0] if lines else type(exc).__name__


def _to_rgb8(image):
    """Any vips image to 3-band uchar sRGB, with alpha composited onto white."""
    if image.hasalpha():
        image = image.flatten(background=[255] * (image.bands - 1) if image.bands > 2 else [255])
    if image.format not in ("uchar", "char"):
        # 16-bit and float images: colourspace() maps rgb16/grey16 to 8 bits by value, not by clipping.
        image = image.colourspace("srgb") if image.interpretation in ("rgb16", "grey16") else image.cast("uchar")
    if image.bands == 1:
        image = image.bandjoin([image, image])
    elif image.bands != 3:
        image = image.colourspace("srgb")
    return image


def _flatten_rgba(rgba: np.ndarray) -> np.ndarray:
    """Composite OpenSlide's (non-premultiplied) RGBA onto white; alpha is 0 outside scanned areas."""
    rgb = rgba[..., :3].astype(np.uint16)
    alpha = rgba[..., 3:4].astype(np.uint16)
    out = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return out.astype(np.uint8)


def open_source(path: Path) -> SourceReader:
    """A reader for ``path``: OpenSlide for slide formats and pyramids, libvips for everything else."""
    path = Path(path)
    if not path.exists():
        raise PriorPathError(f"{path}: no such file")
    if not os.access(path, os.R_OK):
        raise PriorPathError(f"{path}: permission denied")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise PriorPathError(
            f"{path}: unsupported file type '{path.suffix}' (expected one of {', '.join(sorted(SUPPORTED_SUFFIXES))})"
        )
    slide = _open_slide(path) if suffix in WSI_SUFFIXES else None
    if slide is not None:
        # OpenSlide's generic-tiff reader takes any tiled TIFF but only 8-bit RGB(A); a single-level one
        # (possibly grey or 16-bit) is better served by libvips.
        if slide.level_count > 1 or slide.properties.get("openslide.vendor") != "generic-tiff":
            return OpenSlideReader(path, slide)
        slide.close()
    return VipsReader(path)


def _open_slide(path: Path):
    """An open OpenSlide handle if OpenSlide recognises ``path``, else None."""
    import openslide

    try:
        if openslide.OpenSlide.detect_format(str(path)) is None:
            return None
        return openslide.OpenSlide(str(path))
    except Exception as exc:  # OpenSlideError: a recognised but damaged slide
        if path.suffix.lower() in (".tif", ".tiff"):
            return None  # let libvips try, and report its own reason
        raise PriorPathError(f"{path}: cannot open whole-slide image ({exc})") from exc


def find_sources(paths: Iterable[Path]) -> list[Path]:
    """Expand folders into the supported image files they hold (recursively, sorted); keep files as given.

    A .mrxs slide keeps its data in a sibling folder of the same name; that folder is not searched.
    """
    return find_files(paths, SUPPORTED_SUFFIXES, skip_dir=_is_mrxs_data_dir)


def _is_mrxs_data_dir(folder: Path) -> bool:
    return any(folder.with_name(folder.name + s).is_file() for s in (".mrxs", ".MRXS"))


def level_histogram(reader: SourceReader, level: int, band: int = 1024) -> np.ndarray:
    """256-bin luma histogram of a whole level, read in horizontal bands."""
    from .masks import luma

    lv = reader.levels[level]
    hist = np.zeros(256, np.int64)
    for y in range(0, lv.height, band):
        h = min(band, lv.height - y)
        region = reader.read_region(0, int(round(y * lv.downsample)), lv.width, h, level)
        hist += np.bincount(luma(region).ravel(), minlength=256)
    return hist


def histogram_level(reader: SourceReader, level: int, min_pixels: int = 4_000_000) -> int:
    """The coarsest level at or above ``level`` that still has ``min_pixels`` pixels (for Otsu)."""
    best = level
    for i in range(level, len(reader.levels)):
        lv = reader.levels[i]
        if lv.width * lv.height >= min_pixels:
            best = i
    return best
