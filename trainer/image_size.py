"""The one guard against images too large to decode: the size an image file claims is read from its header first.

A decoder allocates what the header claims before it reads a pixel, so a tiny file whose header says
100000x100000 (a decompression bomb, or a damaged header) would take tens of gigabytes, or stop inside OpenCV
with a bare assertion. Every reader of image files (``fileio.decode_image_file``, the eval and prepare readers)
asks ``check_image_size`` before decoding, and the user gets one line naming the file and the size it claims.
"""
from __future__ import annotations

import io
import struct
import threading
from pathlib import Path
from typing import BinaryIO, Optional, Union

from .errors import PriorPathError

#: OpenCV's own decoding ceiling (CV_IO_MAX_IMAGE_PIXELS), about 32768 x 32768: nothing larger decodes anyway
MAX_PIXELS = 1 << 30

Source = Union[str, Path, bytes, bytearray, memoryview]
_pillow_init_lock = threading.Lock()


def header_size(source: Source) -> Optional[tuple[int, int]]:
    """(height, width) the header of an image (a path, or the file's bytes) claims; None when no reader knows
    the format (the decoder then reports its own error). Only the header is read, never the pixels."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _size_from_stream(io.BytesIO(bytes(source)))
    try:
        with open(source, "rb") as fh:
            return _size_from_stream(fh)
    except OSError:
        return None  # a missing or unreadable file: the decoder's own read names the problem


def check_image_size(source: Source, name: Union[str, Path, None] = None, *, max_pixels: int = MAX_PIXELS,
                     min_side: int = 1, max_side: Optional[int] = None,
                     what: str = "an image") -> Optional[tuple[int, int]]:
    """Refuse, before any decoding, an image whose header claims more than ``max_pixels`` pixels or a side outside
    ``min_side``..``max_side``; returns the claimed (height, width), or None for a format no reader knows.

    ``name`` labels the error (default: the path); ``what`` says what the sides are limits of ("a mask")."""
    size = header_size(source)
    if size is None:
        return None
    label = name if name is not None else source if isinstance(source, (str, Path)) else "image"
    h, w = size
    if h * w > max_pixels:
        raise PriorPathError(f"{label}: its header claims {h}x{w} pixels (HxW, {h * w / 1e6:,.0f} megapixels), "
                             f"more than the {max_pixels / 1e6:,.0f} megapixels an image may have; not decoded "
                             f"(a damaged file or a decompression bomb)")
    if min(h, w) < min_side or (max_side is not None and max(h, w) > max_side):
        sides = f"{min_side} to {max_side}" if max_side is not None else f"at least {min_side}"
        raise PriorPathError(f"{label}: its header claims {h}x{w} pixels (HxW); {what}'s sides must be {sides} "
                             f"pixels")
    return size


def _size_from_stream(fh: BinaryIO) -> Optional[tuple[int, int]]:
    """Pillow's format readers parse only the header when an image is opened. ``Image.open`` itself refuses a
    huge size without saying what it is, so each reader whose magic bytes match is asked directly."""
    from PIL import Image

    with _pillow_init_lock:
        Image.init()  # every format reader registered (idempotent)
    prefix = fh.read(16)
    for fmt in Image.ID:
        factory, accept = Image.OPEN[fmt]
        if accept is None:
            continue  # readers without magic bytes would guess at any file
        matched = accept(prefix)
        if not matched or isinstance(matched, str):  # a string is Pillow's "looks like X, but unsupported"
            continue
        fh.seek(0)
        try:
            width, height = factory(fh, "").size
        except (SyntaxError, IndexError, TypeError, ValueError, OSError, EOFError, struct.error):
            continue  # not this format after all, or a header too damaged to read: let the decoder say so
        return int(height), int(width)
    return None
