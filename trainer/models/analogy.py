"""Analogy: coarse mask -> fine mask by example (image analogies), a model with no gradient training.

The paper's pix2pix learns the coarse->fine texture slowly; this model copies it from real pairs instead.
"Training" collects windows of real (coarse, fine) pairs: for random positions, the coarse mask's
``context``-sided window and the fine mask's ``block``-sided centre. To translate a new coarse mask it is
cut into ``block``-sided blocks; each block is described like the stored windows (the context averaged
down 4x, the block itself averaged down 2x), the ``choices`` nearest stored windows are found (Euclidean,
ties broken at random) and one of them, drawn from the seed, supplies the fine texture:

- ``copy``: the stored fine block replaces the block;
- ``residual``: the pixels where the stored fine block differs from its own coarse block are flipped in
  the new coarse block, so the new sketch's edges stay where they were drawn.

Windows are stored as packed bits (``extra.coarse``/``extra.fine``), so an index of 40k windows is ~6 MB.
Collection runs through the normal training loop: one step ingests one batch, and the index is the
checkpoint's extra state, so ``priorpath train --model analogy`` resumes like any other model. Beyond
``max_windows`` a reservoir keeps a uniform sample of everything seen. Idea after Hertzmann et al. 2001
("Image Analogies") and Efros & Freeman 2001 (texture by quilting); the PILOT-CPU note measured it.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PriorPathError
from .base import GanModel, ModelOptions

MODES = ("copy", "residual")


@dataclasses.dataclass(frozen=True)
class Options(ModelOptions):
    block: int = 16  # side of the pasted fine blocks (a multiple of 4)
    context: int = 32  # side of the coarse window that describes a block (block + an even margin, multiple of 4)
    windows_per_patch: int = 128  # windows taken from each training patch
    max_windows: int = 40000  # the index keeps a uniform sample of at most this many
    choices: int = 4  # draw the texture from this many nearest windows
    mode: str = "copy"
    context_weight: float = 1.0  # weight of the context features against the block's own


class Model(GanModel):
    name = "analogy"
    kinds = ("coarse", "fine")
    network_names = ()
    options_type = Options
    loss_names = ("windows",)

    def __init__(self, options: Options, size: tuple[int, int]):
        o = options
        if o.mode not in MODES:
            raise PriorPathError(f"analogy: unknown mode '{o.mode}' (choose one of: {', '.join(MODES)})")
        if o.block % 4 or o.context < o.block or (o.context - o.block) % 8 or o.choices < 1:
            raise PriorPathError("analogy: block must be a multiple of 4, context at least block with a margin "
                                 "that is a multiple of 4 on each side, choices at least 1")
        super().__init__(options, size)
        self.coarse_windows = torch.zeros(0, o.context, o.context, dtype=torch.bool)
        self.fine_blocks = torch.zeros(0, o.block, o.block, dtype=torch.bool)
        self.seen = 0
        self._features: Optional[torch.Tensor] = None

    @classmethod
    def min_side(cls, options: Options, size: tuple[int, int]) -> int:
        return options.block

    def optimizer_groups(self):
        return {}

    # --- collection ---------------------------------------------------------------------------------------
    def train_step(self, batch, optimizers):
        coarse = batch["coarse"].detach().cpu() > 0
        fine = batch["fine"].detach().cpu() > 0
        o = self.options
        margin = (o.context - o.block) // 2
        h, w = coarse.shape[-2:]
        n = o.windows_per_patch
        padded = F.pad(coarse.float(), (margin,) * 4, mode="replicate") > 0.5
        new_c, new_f = [], []
        for b in range(coarse.shape[0]):
            ys = torch.randint(0, h - o.block + 1, (n,))
            xs = torch.randint(0, w - o.block + 1, (n,))
            for y, x in zip(ys.tolist(), xs.tolist()):
                new_c.append(padded[b, 0, y:y + o.context, x:x + o.context])
                new_f.append(fine[b, 0, y:y + o.block, x:x + o.block])
        self._add(torch.stack(new_c), torch.stack(new_f))
        return {"windows": float(len(self.fine_blocks))}

    def _add(self, coarse: torch.Tensor, fine: torch.Tensor) -> None:
        """Reservoir sampling: every window seen so far is kept with the same probability."""
        cap = self.options.max_windows
        room = max(0, cap - len(self.fine_blocks))
        self.coarse_windows = torch.cat([self.coarse_windows, coarse[:room]])
        self.fine_blocks = torch.cat([self.fine_blocks, fine[:room]])
        for i in range(room, len(fine)):
            j = int(torch.randint(0, self.seen + i + 1, ()).item())
            if j < cap:
                self.coarse_windows[j] = coarse[i]
                self.fine_blocks[j] = fine[i]
        self.seen += len(fine)
        self._features = None

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {"coarse": _pack(self.coarse_windows), "fine": _pack(self.fine_blocks),
                "seen": torch.tensor([self.seen], dtype=torch.int64)}

    def load_extra_state(self, tensors: dict[str, torch.Tensor]) -> None:
        o = self.options
        if "coarse" not in tensors or "fine" not in tensors:
            raise PriorPathError("analogy checkpoint holds no window index (extra.coarse / extra.fine)")
        self.coarse_windows = _unpack(tensors["coarse"], o.context)
        self.fine_blocks = _unpack(tensors["fine"], o.block)
        if len(self.coarse_windows) != len(self.fine_blocks):
            raise PriorPathError("analogy checkpoint: coarse and fine windows differ in number")
        self.seen = int(tensors["seen"][0]) if "seen" in tensors else len(self.fine_blocks)
        self._features = None

    # --- synthesis ----------------------------------------------------------------------------------------
    def _describe(self, windows01: torch.Tensor) -> torch.Tensor:
        """Features of N x C x C coarse windows in {0, 1}: the context averaged 4x, the centre block 2x."""
        o = self.options
        margin = (o.context - o.block) // 2
        x = windows01.float().unsqueeze(1)
        context = F.avg_pool2d(x, 4).flatten(1) * o.context_weight
        centre = F.avg_pool2d(x[..., margin:margin + o.block, margin:margin + o.block], 2).flatten(1)
        return torch.cat([context, centre], 1)

    def features(self) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """The index: features of every stored window, and the windows by kind (see ``_kind``)."""
        if self._features is None:
            if not len(self.fine_blocks):
                raise PriorPathError("analogy model has no windows yet: train it on a prepared folder first")
            kinds = _kind(self.coarse_windows)
            pools = {k: torch.nonzero(kinds == k).squeeze(1) for k in (AIR, TISSUE, MIXED)}
            self._features = (self._describe(self.coarse_windows), pools)
        return self._features

    @torch.no_grad()
    def translate(self, coarse: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Coarse masks (Bx1xHxW in [-1, 1], any size) -> fine masks, exactly +-1."""
        o = self.options
        b, _, h0, w0 = coarse.shape
        h, w = -(-h0 // o.block) * o.block, -(-w0 // o.block) * o.block  # whole blocks, cropped at the end
        margin = (o.context - o.block) // 2
        binary = (coarse.detach().float().cpu() > 0).float()
        padded = F.pad(binary, (margin, margin + w - w0, margin, margin + h - h0), mode="replicate")
        # every block's context window, as N x C x C (N = b * blocks), in raster order
        windows = F.unfold(padded, o.context, stride=o.block).transpose(1, 2).reshape(-1, o.context, o.context)
        windows = windows.contiguous()
        chosen = self._choose(windows, generator)
        pasted = self.fine_blocks[chosen].float()  # N x block x block
        if o.mode == "residual":
            own = self.coarse_windows[chosen][:, margin:margin + o.block, margin:margin + o.block].float()
            centres = windows[:, margin:margin + o.block, margin:margin + o.block]
            pasted = (centres + (pasted - own).abs()) % 2  # flip where the example's fine left its coarse
        cols = pasted.reshape(b, -1, o.block * o.block).transpose(1, 2)
        out = F.fold(cols, (h, w), o.block, stride=o.block)[..., :h0, :w0]
        return (out * 2 - 1).to(coarse.device, coarse.dtype)

    def _choose(self, windows: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        """For each query window, the index of the stored window that supplies its texture.

        A window wholly inside tissue (or air) matches every such stored window equally well, so it draws
        one of them uniformly; only windows across an edge search their ``choices`` nearest neighbours
        among the stored edge windows. That keeps a 256x512 mask near 10 ms of distance computations.
        """
        features, pools = self.features()
        kinds = _kind(windows)
        chosen = torch.empty(len(windows), dtype=torch.long)
        for kind in (AIR, TISSUE, MIXED):
            rows = torch.nonzero(kinds == kind).squeeze(1)
            if not len(rows):
                continue
            pool = pools[kind] if len(pools[kind]) else torch.arange(len(features))
            if kind != MIXED and len(pools[kind]):
                chosen[rows] = pool[torch.randint(0, len(pool), (len(rows),), generator=generator)]
                continue
            k = min(self.options.choices, len(pool))
            query = self._describe(windows[rows])
            nearest = torch.cdist(query, features[pool]).topk(k, largest=False).indices
            which = torch.randint(0, k, (len(rows), 1), generator=generator)
            chosen[rows] = pool[nearest.gather(1, which).squeeze(1)]
        return chosen

    @torch.no_grad()
    def preview(self, batch, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        return [batch["coarse"], self.translate(batch["coarse"], generator), batch["fine"]]


AIR, TISSUE, MIXED = 0, 1, 2


def _kind(windows: torch.Tensor) -> torch.Tensor:
    """AIR, TISSUE or MIXED for each N x C x C window of a binary mask."""
    flat = windows.reshape(len(windows), -1).bool()
    kinds = torch.full((len(windows),), MIXED, dtype=torch.long)
    kinds[~flat.any(1)] = AIR
    kinds[flat.all(1)] = TISSUE
    return kinds


def _pack(windows: torch.Tensor) -> torch.Tensor:
    bits = np.packbits(windows.numpy().reshape(len(windows), -1), axis=1)
    return torch.from_numpy(bits)


def _unpack(packed: torch.Tensor, side: int) -> torch.Tensor:
    bits = np.unpackbits(packed.numpy(), axis=1, count=side * side)
    return torch.from_numpy(bits.astype(bool)).reshape(-1, side, side)
