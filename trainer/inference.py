"""The inference engine: coarse mask -> fine mask -> RGB tile with trained checkpoints (no Qt).

``Engine`` loads a coarse->fine model (pix2pix, CycleGAN or the example-based ``analogy``) and a
fine->RGB model (pix2pixHD) from our safetensors checkpoints; with no path given it uses the default
models shipped in ``resources/models``. Inputs of any size are padded to what the network takes, or, when
much larger than the size the model was trained at, cut into overlapping tiles that are blended with a
linear ramp and cropped back. Fine masks come out binary (0/255, uint8), RGB tiles as HxWx3 uint8.

Each call takes a seed: the same seed gives the same output, another seed another plausible one (the
models' noise: dropout or noise maps in pix2pix, the example choice in analogy). One engine may be shared
by threads; calls are serialised by a lock because seeding touches torch's global RNG. ``Engine.spec()``
describes an engine in a picklable form, so a worker process can build the same engine
(``Engine.from_spec``) for bulk generation (``trainer.pool``).

Class-aware models (``analogy``/``quilt`` trained with ``classes=he3``; defaults ``mask_he3``/``rgb_he3``)
take and give label maps (HxW uint8 class ids) instead: ``fine_labels``, ``rgb_labels`` and
``generate_labels``. ``Engine.classes`` is their class table (None for binary models); a binary mask given
to a class-aware model, or a label map to a binary one, is refused with the reason.
"""
from __future__ import annotations

import contextlib
import hashlib
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .devices import pick_device
from .errors import PriorPathError
from .jobs import CancelToken, ProgressFn, check, no_progress
from .models import EXAMPLE_BASED

#: coarse->fine models and fine->RGB models, by the prepared folders they read
MASK_KINDS = ("coarse", "fine")
RGB_KINDS = ("fine", "rgb")
MIN_SIDE = 16  # smaller inputs hold no texture worth generating
MAX_SIDE = 20000  # beyond this a mask is surely a mistake (a whole slide at level 0 wants --level)
TILE_OVERLAP = 64
TILE_BATCH = 4  # tiles per forward pass: throughput on large images, bounded memory


def resources_dir() -> Path:
    """``resources/`` of a source checkout, or of a PyInstaller bundle (``sys._MEIPASS``)."""
    frozen = getattr(sys, "_MEIPASS", None)
    return Path(frozen) / "resources" if frozen else Path(__file__).resolve().parents[1] / "resources"


def default_model_path(role: str, classes: Optional[str] = None) -> Path:
    """The shipped default model for ``role`` ("mask" or "rgb"); with ``classes`` (e.g. "he3") the
    class-aware one (``mask_he3.safetensors``)."""
    if role not in ("mask", "rgb"):
        raise ValueError(role)
    return resources_dir() / "models" / f"{role}_{classes or 'default'}.safetensors"


def model_classes(model: Optional["LoadedModel"]):
    """The class table of a loaded class-aware model, None for a binary one (or no model)."""
    return getattr(model.module, "table", None) if model is not None else None


def file_hash(path: Path) -> str:
    """The first 16 hex digits of the file's SHA-256: names a model version in manifests."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


@dataclass
class LoadedModel:
    path: Path
    name: str  # the model type, e.g. "pix2pix"
    size: tuple[int, int]  # the size it was trained at
    steps: int
    sha: str
    module: torch.nn.Module

    @property
    def label(self) -> str:
        return f"{self.name} ({self.path.name}, {self.steps} steps, {self.size[0]}x{self.size[1]})"


def load_model(path: Union[str, Path], role: str, device: torch.device,
               options: Optional[dict] = None) -> LoadedModel:
    """Load a checkpoint for ``role`` ("mask": coarse->fine, "rgb": fine->RGB), refusing one of another kind.

    ``options`` override the checkpoint's model options (e.g. the quilt model's block size)."""
    path = Path(path)
    ckpt = load_checkpoint(path)
    from .models import model_class

    if options:
        ckpt.options = {**ckpt.options, **options}

    kinds = model_class(ckpt.model_name).kinds
    wanted = MASK_KINDS if role == "mask" else RGB_KINDS
    if tuple(kinds) != wanted:
        what = "coarse mask -> fine mask" if role == "mask" else "fine mask -> RGB"
        raise PriorPathError(f"{path}: a {ckpt.model_name} checkpoint ({' -> '.join(kinds)}), not a {what} model")
    module = ckpt.build_model(device)
    module.eval()
    return LoadedModel(path, ckpt.model_name, ckpt.size, int(ckpt.state.get("step", 0)), file_hash(path), module)


def check_mask(mask: np.ndarray, what: str) -> np.ndarray:
    """A coarse or fine mask as HxW uint8 0/255; anything else is refused with the reason."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise PriorPathError(f"{what}: a mask must be a single-channel image, got shape {mask.shape}")
    h, w = mask.shape
    if min(h, w) < MIN_SIDE or max(h, w) > MAX_SIDE:
        raise PriorPathError(f"{what}: {h}x{w} is outside the sizes the engine takes "
                             f"({MIN_SIDE} to {MAX_SIDE} pixels a side)")
    levels = np.unique(mask)
    if len(levels) > 2 and levels.max() < 10 and mask.dtype == np.uint8:
        raise PriorPathError(f"{what}: a label map (class ids {', '.join(map(str, levels.tolist()))}), but this model "
                             f"is binary (tissue/air); give a binary mask, or load a class-aware model "
                             f"(e.g. resources/models/mask_he3.safetensors with --coarse-labels)")
    if len(levels) > 2 or not set(levels.tolist()) <= {0, 1, 255}:
        raise PriorPathError(f"{what}: not a binary mask ({len(levels)} grey levels, e.g. "
                             f"{', '.join(map(str, levels[:4].tolist()))}); a mask holds only air (0) and "
                             f"tissue (255 or 1) — threshold it first")
    return np.where(mask > 0, 255, 0).astype(np.uint8)


SKETCH_PATHS = ("auto", "joint", "staged")  # class sketch -> tile: one pass, or fine map first (generate_labels)


@dataclass(frozen=True)
class EngineSpec:
    """What an engine was built from, picklable: a worker process rebuilds the same engine from it."""

    mask_model: str  # a checkpoint path, or "none"
    rgb_model: str
    device: str  # "cpu", "cuda:0", "mps"
    half: bool
    tile: str
    style: Optional[tuple[str, ...]]  # style reference paths, as given
    style_groups: Optional[tuple[str, ...]]
    rgb_options: Optional[dict]
    #: the SHA-256 prefixes of both models and of the style reference: a rebuilt engine must match them,
    #: or a file changed on disk and the worker's samples would differ from the parent's
    shas: tuple[Optional[str], Optional[str], Optional[str]]
    sketch_path: str = "auto"


class Engine:
    """Coarse -> fine -> RGB with loaded models; see the module docstring."""

    def __init__(self, mask_model: Union[str, Path, None] = None, rgb_model: Union[str, Path, None] = None,
                 device: str = "auto", half: Optional[bool] = None, tile: str = "auto",
                 style: Optional[Sequence[Union[str, Path]]] = None, style_groups: Optional[Sequence[str]] = None,
                 rgb_options: Optional[dict] = None, sketch_path: str = "auto"):
        """``mask_model``/``rgb_model``: checkpoint paths, None for the default, "none" for no model.
        ``sketch_path``: how a class sketch becomes a tile (``generate_labels``): "joint", "staged" or "auto".
        ``half``: fp16 autocast (default: on CUDA). ``tile``: "auto", "always" or "never".
        ``style``: a stain reference (see ``set_style``). ``rgb_options``: override the RGB model's options.
        ``device`` may name a GPU, "cuda:1" (a worker process per GPU)."""
        if tile not in ("auto", "always", "never"):
            raise PriorPathError(f"tile must be auto, always or never, got {tile!r}")
        self.device = _pick_device(device)
        self.half = (self.device.type == "cuda") if half is None else bool(half)
        self.tile = tile
        if sketch_path not in SKETCH_PATHS:
            raise PriorPathError(f"sketch path must be one of {', '.join(SKETCH_PATHS)}, got {sketch_path!r}")
        self.sketch_path = sketch_path
        self._lock = threading.Lock()
        self._normaliser = None  # stain normalisation to the style reference, for neural RGB models
        self.style: Optional[str] = None  # what the style reference is, in words
        self.style_sha: Optional[str] = None
        self._style_given: tuple[Optional[tuple[str, ...]], Optional[tuple[str, ...]]] = (None, None)
        self._rgb_options = dict(rgb_options) if rgb_options else None
        self.mask = self._load(mask_model, "mask")
        self.rgb_model = self._load(rgb_model, "rgb", rgb_options)
        if style:
            self.set_style(style, style_groups)

    def _load(self, path, role: str, options: Optional[dict] = None) -> Optional[LoadedModel]:
        if path is not None and str(path).lower() == "none":
            return None
        path = default_model_path(role) if path is None else Path(path)
        if not path.is_file() and path == default_model_path(role):
            raise PriorPathError(f"the default {role} model is missing ({path}); reinstall, or name a checkpoint")
        model = load_model(path, role, self.device, options)
        if model.name == "analogy":
            model.module.features()  # build the search index now, not on the first pen-up
        elif model.name == "quilt":
            model.module.library()
        return model

    def set_style(self, paths: Optional[Sequence[Union[str, Path]]], groups: Optional[Sequence[str]] = None) -> None:
        """Copy (quilt) or normalise to (neural models) the stain of real H&E tiles; None goes back to the default.

        ``paths``: image files, folders of images, or prepared folders (see ``trainer.style``); ``groups``
        names a group per file found (e.g. its slide) where the caller knows better than the folders.
        """
        from .stain import StainNormaliser
        from .style import read_style

        if self.rgb_model is None:
            raise PriorPathError("--style needs an RGB model")
        if not paths:
            with self._lock:
                self._normaliser, self.style, self.style_sha = None, None, None
                self._style_given = (None, None)
                if self.rgb_model.name == "quilt":
                    self.rgb_model.module.set_style(None)
            return
        # reading the reference and indexing it happen outside the lock: generation goes on meanwhile
        tiles, found = read_style(paths, getattr(self.rgb_model.module.options, "threshold", 204))
        if groups is not None:
            if len(groups) != len(tiles):
                raise PriorPathError(f"--style: {len(groups)} group names for {len(tiles)} images")
            found = list(groups)
        quilt = self.rgb_model.name == "quilt"
        library = self.rgb_model.module.build_library(tiles, found) if quilt else None
        normaliser = None if quilt else StainNormaliser.fit(tiles)
        digest = hashlib.sha256()
        for tile, group in zip(tiles, found):
            digest.update(group.encode())
            digest.update(np.ascontiguousarray(tile).tobytes())
        with self._lock:
            if quilt:
                self.rgb_model.module.set_style(library)
            self._normaliser = normaliser
            self.style = f"{len(tiles)} reference image{'s' * (len(tiles) != 1)} ({Path(paths[0]).name}" + \
                (f" and {len(paths) - 1} more)" if len(paths) > 1 else ")")
            self.style_sha = digest.hexdigest()[:16]  # names the reference in export manifests
            self._style_given = (tuple(str(p) for p in paths), tuple(groups) if groups is not None else None)

    def spec(self) -> EngineSpec:
        """This engine as a picklable description (see ``from_spec``)."""
        style, groups = self._style_given
        return EngineSpec(str(self.mask.path) if self.mask else "none",
                          str(self.rgb_model.path) if self.rgb_model else "none", str(self.device), self.half,
                          self.tile, style, groups, self._rgb_options,
                          (self.mask.sha if self.mask else None, self.rgb_model.sha if self.rgb_model else None,
                           self.style_sha), self.sketch_path)

    @classmethod
    def from_spec(cls, spec: EngineSpec, device: Optional[str] = None) -> "Engine":
        """The engine ``spec`` describes (on ``device`` when given), refused if a file changed since."""
        engine = cls(spec.mask_model, spec.rgb_model, device=device or spec.device, half=spec.half, tile=spec.tile,
                     style=spec.style, style_groups=spec.style_groups, rgb_options=spec.rgb_options,
                     sketch_path=spec.sketch_path)
        now = (engine.mask.sha if engine.mask else None, engine.rgb_model.sha if engine.rgb_model else None,
               engine.style_sha)
        for what, before, after in zip(("mask model " + spec.mask_model, "RGB model " + spec.rgb_model,
                                        "style reference"), spec.shas, now):
            if before != after:
                raise PriorPathError(f"the {what} changed on disk while the run was starting; rerun the command")
        return engine

    @property
    def compute_device(self) -> str:
        """Where the work runs: the device (e.g. "cuda:0"), or "cpu" when every loaded model is example-based
        (numpy on the CPU whatever the device), so bulk jobs size their workers by cores, not by GPUs."""
        models = [m for m in (self.mask, self.rgb_model) if m is not None]
        if models and all(m.name in EXAMPLE_BASED for m in models):
            return "cpu"
        return str(self.device)

    def style_groups(self) -> list[str]:
        """The slides an example-based RGB model can copy a tile's stain from (empty for neural models)."""
        if self.rgb_model is None or self.rgb_model.name != "quilt":
            return []
        return self.rgb_model.module.style_groups()

    def describe(self) -> dict[str, str]:
        described = {role: (m.label if m else "none") for role, m in (("mask", self.mask), ("rgb", self.rgb_model))}
        if self.style:
            described["rgb"] += f", style from {self.style}"
        return described

    @property
    def classes(self):
        """The class table the engine draws (the mask model's, else the RGB model's); None when binary."""
        return model_classes(self.mask) or model_classes(self.rgb_model)

    # --- public calls ---------------------------------------------------------------------------------------
    def fine(self, coarse: np.ndarray, seed: int = 0, progress: ProgressFn = no_progress,
             cancel: Optional[CancelToken] = None) -> np.ndarray:
        """A coarse mask (HxW, 0/255) -> a fine mask of the same size (0/255 uint8)."""
        if self.mask is None:
            raise PriorPathError("no coarse->fine model loaded")
        _refuse_classes(self.mask, "coarse mask", "fine_labels (generate --coarse-labels)")
        coarse = check_mask(coarse, "coarse mask")
        x = torch.from_numpy(coarse).float().div(127.5).sub(1)[None]
        out = self._run(self.mask, x, seed, progress, cancel)
        return np.where(out[0] >= 0, 255, 0).astype(np.uint8)

    def rgb(self, fine: np.ndarray, seed: int = 0, progress: ProgressFn = no_progress,
            cancel: Optional[CancelToken] = None, style_group: Optional[str] = None) -> np.ndarray:
        """A fine mask (HxW, 0/255) -> an RGB tile (HxWx3 uint8).

        ``style_group``: copy from this group (slide) of the quilt model's library; by default the seed
        picks one."""
        if self.rgb_model is None:
            raise PriorPathError("no fine->RGB model loaded")
        _refuse_classes(self.rgb_model, "fine mask", "rgb_labels (generate --fine-labels)")
        fine = check_mask(fine, "fine mask")
        x = torch.from_numpy(fine).float().div(127.5).sub(1)[None]
        out = self._run(self.rgb_model, x, seed, progress, cancel, group=style_group)
        rgb = np.clip((out.transpose(1, 2, 0) + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
        if self._normaliser is not None:
            rgb = self._normaliser.apply(rgb)
        return rgb

    def generate(self, coarse: np.ndarray, seed: int = 0, cancel: Optional[CancelToken] = None
                 ) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Coarse -> (fine, RGB or None when no RGB model is loaded)."""
        fine = self.fine(coarse, seed, cancel=cancel)
        return fine, (self.rgb(fine, seed, cancel=cancel) if self.rgb_model is not None else None)

    def fine_labels(self, coarse: np.ndarray, seed: int = 0, cancel: Optional[CancelToken] = None) -> np.ndarray:
        """A coarse label map (HxW uint8 class ids of ``classes``) -> a fine label map of the same size."""
        table = model_classes(self.mask)
        if table is None:
            raise PriorPathError("the coarse->fine model is binary (tissue/air): give it a coarse mask, or load a "
                                 "class-aware one (e.g. resources/models/mask_he3.safetensors)" if self.mask else
                                 "no coarse->fine model loaded")
        coarse = check_label_map(coarse, table, "coarse label map")
        return self._run_labels(self.mask, coarse, seed, cancel)

    def rgb_labels(self, fine: np.ndarray, seed: int = 0, cancel: Optional[CancelToken] = None,
                   style_group: Optional[str] = None, details: bool = False):
        """A fine label map (HxW uint8 ids) -> an RGB tile (HxWx3 uint8) whose class rule gives the map back.

        ``details``: the ``quilting_classes.LabelSynthesis`` instead (the tile, its slide and the slide's
        nuclei threshold, with which ``trainer.data.labels.he3_labels`` labels the tile)."""
        table = model_classes(self.rgb_model)
        if table is None:
            raise PriorPathError("the fine->RGB model is binary (tissue/air): give it a fine mask, or load a "
                                 "class-aware one (e.g. resources/models/rgb_he3.safetensors)" if self.rgb_model else
                                 "no fine->RGB model loaded")
        fine = check_label_map(fine, table, "fine label map")
        result = self._run_labels(self.rgb_model, fine, seed, cancel, style_group)
        return result if details else result.rgb

    @property
    def joint_sketches(self) -> bool:
        """Whether class sketches become tiles in one pass (``sketch_labels``): the RGB model can (the he3
        quilt) and ``sketch_path`` is not "staged"."""
        can = self.rgb_model is not None and hasattr(self.rgb_model.module, "synthesize_from_sketch")
        if self.sketch_path == "joint" and not can:
            raise PriorPathError("--sketch-path joint needs an example-based class RGB model (quilt with "
                                 "classes=he3, e.g. resources/models/rgb_he3.safetensors)")
        return can and self.sketch_path != "staged"

    def sketch_labels(self, coarse: np.ndarray, seed: int = 0, cancel: Optional[CancelToken] = None,
                      style_group: Optional[str] = None):
        """A coarse label map -> (fine label map, ``LabelSynthesis``) in one pass: real tissue copied to the
        sketch's class layout, the fine map the he3 rule read from it (``quilting_classes.synthesize_from_coarse``)."""
        table = model_classes(self.rgb_model) if self.rgb_model is not None else None
        if table is None or not hasattr(self.rgb_model.module, "synthesize_from_sketch"):
            raise PriorPathError("a one-pass class tile needs an example-based class RGB model (quilt with "
                                 "classes=he3, e.g. resources/models/rgb_he3.safetensors)")
        coarse = check_label_map(coarse, table, "coarse label map")
        with self._lock, torch.inference_mode(), self._seeded(seed):
            check(cancel)
            generator = torch.Generator().manual_seed(int(seed))
            return self.rgb_model.module.synthesize_from_sketch(coarse, generator, style_group)

    def generate_labels(self, coarse: np.ndarray, seed: int = 0, cancel: Optional[CancelToken] = None
                        ) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Coarse label map -> (fine label map, RGB or None without an RGB model). With the he3 quilt the two
        come from one pass (``sketch_labels``) unless ``sketch_path`` is "staged": then the mask model draws
        the fine map and the RGB model a tile for it. With a binary RGB model the tile is drawn for the fine
        map's tissue (``tissue_of``): air/tissue exact, classes not drawn."""
        if self.joint_sketches:
            fine, result = self.sketch_labels(coarse, seed, cancel)
            return fine, result.rgb
        fine = self.fine_labels(coarse, seed, cancel)
        if self.rgb_model is None:
            return fine, None
        if model_classes(self.rgb_model) is None:
            from .data.classes import tissue_of

            return fine, self.rgb(tissue_of(fine), seed, cancel=cancel)
        return fine, self.rgb_labels(fine, seed, cancel)

    def _run_labels(self, model: LoadedModel, labels: np.ndarray, seed: int, cancel: Optional[CancelToken],
                    group: Optional[str] = None):
        """A class-aware example-based model on one label map: the mask model's fine label map, or the RGB
        model's ``LabelSynthesis``."""
        with self._lock, torch.inference_mode(), self._seeded(seed):
            check(cancel)
            generator = torch.Generator().manual_seed(int(seed))
            if model is self.rgb_model:
                return model.module.synthesize(labels, generator, group)
            out = model.module.translate(torch.from_numpy(np.array(labels))[None, None], generator)
            return out[0, 0].numpy()

    # --- the work ---------------------------------------------------------------------------------------------
    def _run(self, model: LoadedModel, x: torch.Tensor, seed: int, progress: ProgressFn,
             cancel: Optional[CancelToken], group: Optional[str] = None) -> np.ndarray:
        """x: CxHxW in [-1, 1] -> the network's output CxHxW (float32, numpy), padded or tiled as needed."""
        with self._lock, torch.inference_mode(), self._seeded(seed):
            h, w = x.shape[-2:]
            th, tw = model.size
            tiled = self.tile == "always" or (self.tile == "auto" and (h > 2 * th or w > 2 * tw))
            if model.name in EXAMPLE_BASED:
                tiled = False  # it works block by block at any size already
            if not tiled:
                check(cancel)
                out = self._forward(model, x[None], seed, group)[0]
                progress(1, 1, "")
                return out.numpy()
            return self._tiled(model, x, (th, tw), seed, progress, cancel)

    def _forward(self, model: LoadedModel, batch: torch.Tensor, seed: int, group: Optional[str] = None
                 ) -> torch.Tensor:
        """Pad a Bx C x H x W batch to the network's multiple, run it, crop back; float32 on the CPU."""
        net = model.module
        h, w = batch.shape[-2:]
        m = net.size_multiple(net.options, model.size)
        low = max(m, net.min_side(net.options, model.size))
        ph, pw = max(low, -(-h // m) * m) - h, max(low, -(-w // m) * m) - w
        if ph or pw:
            batch = torch.nn.functional.pad(batch, (0, pw, 0, ph), mode="replicate")
        batch = batch.to(self.device)
        if model.name == "quilt":
            out = net.translate(batch, torch.Generator().manual_seed(seed), group)
        elif model.name in EXAMPLE_BASED:
            out = net.translate(batch, torch.Generator().manual_seed(seed))
        else:
            with self._autocast():
                out = net.translate(batch)
        return out[..., :h, :w].float().cpu()

    def _tiled(self, model: LoadedModel, x: torch.Tensor, tile: tuple[int, int], seed: int,
               progress: ProgressFn, cancel: Optional[CancelToken]) -> np.ndarray:
        """Run overlapping tiles ``TILE_BATCH`` at a time and blend them with a linear ramp."""
        h, w = x.shape[-2:]
        th, tw = min(tile[0], h), min(tile[1], w)
        # A quarter of the tile at most: with a small model (64 px) a 64 px overlap would step 1 px at a time.
        oh, ow = min(TILE_OVERLAP, th // 4), min(TILE_OVERLAP, tw // 4)
        origins = [(y, x0) for y in _starts(h, th, oh) for x0 in _starts(w, tw, ow)]
        weight = _ramp(th, oh)[:, None] * _ramp(tw, ow)[None, :]
        total: Optional[torch.Tensor] = None
        norm = torch.zeros(h, w)
        for first in range(0, len(origins), TILE_BATCH):
            check(cancel)
            group = origins[first:first + TILE_BATCH]
            batch = torch.stack([x[:, y:y + th, x0:x0 + tw] for y, x0 in group])
            out = self._forward(model, batch, seed + first)
            if total is None:
                total = torch.zeros(out.shape[1], h, w)
            for (y, x0), tile_out in zip(group, out):
                total[:, y:y + th, x0:x0 + tw] += tile_out * weight
                norm[y:y + th, x0:x0 + tw] += weight
            done = first + len(group)
            progress(done, len(origins), f"tile {done}/{len(origins)}")
        return (total / norm).numpy()

    def _autocast(self):
        if self.half and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def _seeded(self, seed: int) -> Iterator[None]:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise PriorPathError(f"seed must be a non-negative integer, got {seed!r}")
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type="cuda"):
            torch.manual_seed(int(seed))
            yield


def check_label_map(labels: np.ndarray, table, what: str) -> np.ndarray:
    """A label map of ``table`` within the engine's sizes, or one clear line saying what is wrong."""
    from .models.analogy_labels import check_label_input

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise PriorPathError(f"{what}: a label map must be a single-channel image, got shape {labels.shape}")
    h, w = labels.shape
    if min(h, w) < MIN_SIDE or max(h, w) > MAX_SIDE:
        raise PriorPathError(f"{what}: {h}x{w} is outside the sizes the engine takes "
                             f"({MIN_SIDE} to {MAX_SIDE} pixels a side)")
    return check_label_input(labels, table, what)


def _refuse_classes(model: LoadedModel, what: str, instead: str) -> None:
    table = model_classes(model)
    if table is not None:
        raise PriorPathError(f"{model.path.name} draws {table.name} label maps ({', '.join(table.names)}), not "
                             f"binary masks: a {what} does not fit it; use {instead}, or a binary model")


def _pick_device(name: str) -> torch.device:
    """``pick_device`` that also takes "cuda:N" (N wraps around the GPUs there are)."""
    base, sep, index = str(name).partition(":")
    if not sep:
        return pick_device(base)
    if base != "cuda" or not index.isdigit():
        raise PriorPathError(f"unknown device '{name}' (choose auto, cpu, cuda, cuda:N or mps)")
    return pick_device(base, int(index))


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering [0, length) with at least ``overlap`` pixels shared by neighbours."""
    if tile >= length:
        return [0]
    step = max(1, tile - overlap)
    starts = list(range(0, length - tile, step)) + [length - tile]
    return sorted(set(starts))


def _ramp(length: int, overlap: int) -> torch.Tensor:
    """Blend weights along one side of a tile: rising over ``overlap`` pixels at both ends, never 0."""
    ramp = torch.ones(length)
    n = min(overlap, length // 2)
    if n:
        edge = (torch.arange(n, dtype=torch.float32) + 1) / (n + 1)
        ramp[:n] = edge
        ramp[-n:] = edge.flip(0)
    return ramp
