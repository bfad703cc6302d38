"""Atomic file writes and image encoding.

Every output is written to a temporary file in the destination folder and renamed into place, so a
killed process or a full disk never leaves a truncated file under the final name.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Collection, Iterable, Iterator, Optional, Union

import cv2
import numpy as np

from .errors import PriorPathError
from .image_size import check_image_size

TMP_MARK = ".tmp-"


def atomic_write_bytes(path: Path, data: bytes, durable: bool = False) -> None:
    """Write ``data`` to ``path`` atomically; ``durable`` also fsyncs (for state files)."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    atomic_write_with(path, write, durable)


def atomic_write_with(path: Path, writer: Callable[[Path], None], durable: bool = False) -> None:
    """Let ``writer`` fill a temporary file beside ``path``, then rename it into place.

    For libraries that write to a path themselves (safetensors), so large files need no extra copy in memory.
    """
    path = Path(path)
    try:  # creating the temporary file fails like the write would (full disk, read-only folder)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise PriorPathError(f"{path}: cannot write ({describe_os_error(exc)})") from exc
    try:
        writer(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise PriorPathError(f"{path}: cannot write ({describe_os_error(exc)})") from exc
    except BaseException:
        _remove_quietly(tmp)
        raise


def atomic_copy(src: Path, dst: Path) -> None:
    """Put ``src``'s bytes at ``dst`` atomically: a hard link where the file system allows (no copy; our
    outputs are replaced, never edited in place, so sharing the file is safe), else a byte copy."""
    src, dst = Path(src), Path(dst)
    link = dst.parent / f".{dst.name}{TMP_MARK}link-{os.getpid()}"
    try:
        _remove_quietly(link)
        os.link(src, link)
        os.replace(link, dst)
        _remove_quietly(link)  # rename() leaves both names when dst was already a link to src
        return
    except OSError:  # another file system, or one without hard links
        _remove_quietly(link)
    atomic_write_with(dst, lambda tmp: shutil.copyfile(src, tmp))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str, durable: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def encode_png(image: np.ndarray, compression: int = 1) -> bytes:
    """PNG bytes of a grey (HxW) or RGB (HxWx3) uint8 array."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise PriorPathError("PNG encoding failed")
    return buf.tobytes()


def write_png(path: Path, image: np.ndarray) -> None:
    atomic_write_bytes(path, encode_png(image))


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temporaries a killed run left behind; returns how many."""
    n = 0
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(".") and TMP_MARK in p.name:
                _remove_quietly(p)
                n += 1
    return n


def ensure_writable_dir(folder: Path) -> None:
    """Create ``folder`` and prove we can write in it, with a clear error if we cannot."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".probe{TMP_MARK}", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise PriorPathError(f"{folder}: output folder is not writable ({describe_os_error(exc)})") from exc


def decode_image_file(path: Union[str, Path], flags: int = cv2.IMREAD_UNCHANGED, *, min_side: int = 1,
                      max_side: Optional[int] = None, what: str = "an image") -> np.ndarray:
    """Decode an image file with OpenCV, or raise a PriorPathError that names the file and the problem.

    The size the header claims is checked first (``image_size.check_image_size``, with these side limits), so
    a decompression bomb is refused before anything is allocated. Read as bytes: ``cv2.imread`` cannot open
    non-ASCII paths on Windows and says nothing on failure.
    """
    check_image_size(path, min_side=min_side, max_side=max_side, what=what)
    try:
        raw = np.fromfile(path, np.uint8)
    except OSError as exc:
        raise PriorPathError(f"{path}: cannot read ({describe_os_error(exc)})") from exc
    try:
        image = cv2.imdecode(raw, flags) if raw.size else None
    except cv2.error as exc:  # a format the header guard does not know: OpenCV's own refusal, in one line
        raise PriorPathError(f"{path}: cannot decode ({_one_line(exc)})") from exc
    if image is None:
        raise PriorPathError(f"{path}: not a readable image (corrupt, truncated or not an image file)")
    return image


def _one_line(exc: Exception) -> str:
    """The last line of a library's error (OpenCV puts its reason there)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def describe_os_error(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    return exc.strerror or str(exc)


def _remove_quietly(p) -> None:
    try:
        os.remove(p)
    except OSError:
        pass


def find_files(
    paths: Iterable[Union[str, Path]],
    suffixes: Collection[str],
    exclude: Optional[Path] = None,
    skip_dir: Optional[Callable[[Path], bool]] = None,
) -> list[Path]:
    """Files as given, folders expanded to the files with ``suffixes`` they hold (recursively, sorted).

    Hidden entries, anything under ``exclude`` and folders for which ``skip_dir`` is true are not searched;
    a file reached twice is listed once. A named path that does not exist is an error.
    """
    suffixes = {s.lower() for s in suffixes}
    excluded = Path(exclude).resolve() if exclude is not None else None
    found: list[Path] = []
    seen: set[Path] = set()

    def walk(folder: Path) -> Iterator[Path]:
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(".") or (excluded is not None and entry.resolve().is_relative_to(excluded)):
                continue
            if entry.is_dir():
                if not (skip_dir and skip_dir(entry)):
                    yield from walk(entry)
            elif entry.suffix.lower() in suffixes:
                yield entry

    for p in map(Path, paths):
        if p.is_dir():
            candidates: Iterable[Path] = walk(p)
        elif p.exists():
            candidates = [p]
        else:
            raise PriorPathError(f"{p}: no such file or folder")
        for q in candidates:
            key = q.resolve()
            if key not in seen:
                seen.add(key)
                found.append(q)
    return found
