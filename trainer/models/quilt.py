"""Quilt: fine mask -> H&E tile by copying real tissue (``trainer/quilting.py``), a model with no gradients.

"Training" fills a library with real RGB patches from a prepared folder: one step takes one batch, and a
reservoir keeps a uniform sample of at most ``max_tiles`` patches, each tagged with its source image so a
generated tile copies one slide's stain, never a patchwork. Patches are stored JPEG-compressed (quality
``jpeg_quality``) in the checkpoint's extra state, so ``priorpath train --model quilt`` resumes and
``compact-model`` copies like any other model. The class of every library pixel comes from the paper's rule
(luma above ``threshold`` is air) applied to the decoded pixels, which is what makes the output label-exact.

A style reference (``set_style``) replaces the library for as long as it is set: real H&E tiles given by
the user, indexed in well under a second.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Optional

import cv2
import numpy as np
import torch

from ..errors import PriorPathError
from ..quilting import Library, QuiltSettings, synthesize
from .base import GanModel, ModelOptions


@dataclasses.dataclass(frozen=True)
class Options(ModelOptions):
    block: int = 96  # blocks this large carry tissue structure
    overlap: int = 24
    candidates: int = 16
    mask_weight: float = 1.0
    tolerance: float = 0.15
    threshold: int = 204  # the paper's rule: H&E 204, IHC 235
    max_tiles: int = 160  # patches the library keeps (a uniform sample of all seen)
    jpeg_quality: int = 95
    #: "" (fine masks) or "he3": fine he3 label maps -> RGB whose he3 rule labels give the map back
    #: (``quilt_labels``, ``trainer/quilting_classes.py``)
    classes: str = ""
    nuclei_weight: float = 1.0  # with classes: weight of nuclei/stroma disagreement in choosing windows

    def settings(self) -> QuiltSettings:
        names = {f.name for f in dataclasses.fields(QuiltSettings)}
        return QuiltSettings(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})


class Model(GanModel):
    name = "quilt"
    kinds = ("fine", "rgb")
    network_names = ()
    options_type = Options
    loss_names = ("tiles",)

    def __new__(cls, options: Options, size: tuple[int, int]):
        if cls is Model and options.classes:  # the class-aware model: same library, label maps in
            from .quilt_labels import LabelQuilt

            cls = LabelQuilt
        return super().__new__(cls)

    def __init__(self, options: Options, size: tuple[int, int]):
        options.settings().check()
        if options.max_tiles < 1 or not 50 <= options.jpeg_quality <= 100:
            raise PriorPathError("quilt: max_tiles must be at least 1 and jpeg_quality between 50 and 100")
        super().__init__(options, size)
        self.encoded: list[np.ndarray] = []  # JPEG bytes per library patch
        self.groups: list[str] = []  # source image of each patch
        self.seen = 0
        self._library: Optional[Library] = None
        self._style: Optional[Library] = None

    @classmethod
    def min_side(cls, options: Options, size: tuple[int, int]) -> int:
        return 16

    @classmethod
    def data_kinds(cls, options: Options) -> tuple[str, ...]:
        return ("labels", "rgb") if options.classes else cls.kinds

    def saved_options(self) -> dict:
        saved = dataclasses.asdict(self.options)
        if not saved["classes"]:  # binary checkpoints stay as they were before classes existed
            del saved["classes"], saved["nuclei_weight"]
        return saved

    def optimizer_groups(self):
        return {}

    # --- collection ---------------------------------------------------------------------------------------
    def train_step(self, batch, optimizers):
        rgb = ((batch["rgb"].detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).byte()
        stems = batch.get("stem") or [f"patch{self.seen + i}" for i in range(len(rgb))]
        rng = np.random.default_rng([self.seen, 7])
        for tile, stem in zip(rgb.permute(0, 2, 3, 1).numpy(), stems):
            self._add(self._encode(tile), str(stem).rsplit("_x", 1)[0], rng)
        return {"tiles": float(len(self.encoded))}

    def _encode(self, rgb: np.ndarray) -> np.ndarray:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, self.options.jpeg_quality])
        if not ok:
            raise PriorPathError("quilt: could not encode a library patch")
        return data.reshape(-1)

    def _add(self, data: np.ndarray, group: str, rng: np.random.Generator) -> None:
        """Reservoir sampling: every patch seen so far is kept with the same probability."""
        self.seen += 1
        if len(self.encoded) < self.options.max_tiles:
            self.encoded.append(data)
            self.groups.append(group)
        else:
            j = int(rng.integers(self.seen))
            if j < self.options.max_tiles:
                self.encoded[j], self.groups[j] = data, group
        self._library = None

    def extra_state(self) -> dict[str, torch.Tensor]:
        sizes = [len(e) for e in self.encoded]
        data = np.concatenate(self.encoded) if self.encoded else np.zeros(0, np.uint8)
        return {"jpeg": torch.from_numpy(data), "jpeg_sizes": torch.tensor(sizes, dtype=torch.int64),
                "groups": torch.frombuffer(bytearray(json.dumps(self.groups).encode()), dtype=torch.uint8),
                "seen": torch.tensor([self.seen], dtype=torch.int64)}

    def load_extra_state(self, tensors: dict[str, torch.Tensor]) -> None:
        if not {"jpeg", "jpeg_sizes", "groups"} <= set(tensors):
            raise PriorPathError("quilt checkpoint holds no library (extra.jpeg / extra.jpeg_sizes / extra.groups)")
        data, sizes = tensors["jpeg"].numpy(), tensors["jpeg_sizes"].tolist()
        try:
            groups = json.loads(bytes(tensors["groups"].numpy()).decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PriorPathError(f"quilt checkpoint: unreadable group names ({exc})") from None
        if sum(sizes) != len(data) or len(groups) != len(sizes) or min(sizes, default=1) < 1:
            raise PriorPathError("quilt checkpoint: library sizes do not match its data")
        ends = np.cumsum(sizes)
        self.encoded = [data[e - s:e].copy() for s, e in zip(sizes, ends)]
        self.groups = [str(g) for g in groups]
        self.seen = int(tensors["seen"][0]) if "seen" in tensors else len(self.encoded)
        self._library = None

    # --- synthesis ----------------------------------------------------------------------------------------
    def library(self) -> Library:
        """The style reference when one is set, else the library built from the stored patches."""
        if self._style is not None:
            return self._style
        if self._library is None:
            if not self.encoded:
                raise PriorPathError("quilt model has no library yet: train it on a prepared folder first")
            tiles = []
            for k, data in enumerate(self.encoded):
                image = cv2.imdecode(data, cv2.IMREAD_COLOR)
                if image is None:
                    raise PriorPathError(f"quilt checkpoint: library patch {k} is not a readable JPEG")
                tiles.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            self._library = self.build_library(tiles, self.groups)
        return self._library

    def build_library(self, tiles: list, groups: list) -> Library:
        """A library of these real tiles (the stored patches, or a style reference) for this model."""
        return Library(tiles, groups, self.options.settings())

    def set_style(self, library: Optional[Library]) -> None:
        """Draw from this library (a style reference, built with ``options.settings()``) instead; None resets."""
        self._style = library

    def style_groups(self) -> list[str]:
        return list(self.library().group_names)

    @torch.no_grad()
    def translate(self, fine: torch.Tensor, generator: Optional[torch.Generator] = None,
                  group: Optional[str] = None) -> torch.Tensor:
        """Fine masks (Bx1xHxW in [-1, 1]) -> RGB (Bx3xHxW in [-1, 1], exactly uint8 values)."""
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator).item())
        library = self.library()
        out = []
        for k, mask in enumerate(fine.detach().float().cpu()[:, 0].numpy() > 0):
            result = synthesize(library, mask, np.random.default_rng([seed, k]), group)
            out.append(torch.from_numpy(result.rgb).permute(2, 0, 1))
        return torch.stack(out).float().div(127.5).sub(1).to(fine.device)

    @torch.no_grad()
    def preview(self, batch, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        return [batch["fine"].expand(-1, 3, -1, -1), self.translate(batch["fine"], generator), batch["rgb"]]
