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

With ``overlap`` 0 the blocks tile a fixed grid, and where neighbours disagree a straight seam shows on it.
With ``overlap`` > 0 the blocks are quilted (Efros & Freeman): they sit ``block - overlap`` apart on a
grid the seed shifts, each keeps its ``choices`` candidates (nearest, or drawn) and the candidates are
decided in wavefronts (all blocks on one anti-diagonal ``i + j`` at once, each given its chosen left and
top neighbours): the candidate whose fine pixels agree best with the neighbours in the overlap wins
(Hamming distance less the disagreement expected by chance, so plain blocks do not win for being plain),
drawn from the seed among those within ``tolerance`` pixels of the best. Then each block meets its left
and top neighbours along the minimum-error boundary cut through the overlap (dynamic programming over
the pixels where the two disagree), so no seam runs straight. ``overlap`` only changes synthesis, so a
checkpoint collected without it can use it (``with_options``).

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
from .base import GanModel, ModelOptions, options_from_mapping

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
    overlap: int = 0  # pixels shared by neighbouring blocks, at most block / 2 (0: a fixed grid, no cuts)
    tolerance: float = 4.0  # with overlap: candidates within this many disagreeing pixels of the best tie
    #: "" (binary masks) or the name of the prepared folder's class table (e.g. "he3"): learn coarse label
    #: map -> fine label map from coarse_labels/ and labels/ (``analogy_labels``)
    classes: str = ""


SYNTHESIS_OPTIONS = ("choices", "mode", "context_weight", "overlap", "tolerance")  # with_options may change


class Model(GanModel):
    name = "analogy"
    kinds = ("coarse", "fine")
    network_names = ()
    options_type = Options
    loss_names = ("windows",)

    def __new__(cls, options: Options, size: tuple[int, int]):
        if cls is Model and options.classes:  # the class-aware model: same options, label maps in and out
            from .analogy_labels import LabelModel

            cls = LabelModel
        return super().__new__(cls)

    def __init__(self, options: Options, size: tuple[int, int]):
        o = options
        if o.mode not in MODES:
            raise PriorPathError(f"analogy: unknown mode '{o.mode}' (choose one of: {', '.join(MODES)})")
        if o.block % 4 or o.context < o.block or (o.context - o.block) % 8 or o.choices < 1:
            raise PriorPathError("analogy: block must be a multiple of 4, context at least block with a margin "
                                 "that is a multiple of 4 on each side, choices at least 1")
        if not 0 <= o.overlap <= o.block // 2 or o.tolerance < 0:
            raise PriorPathError(f"analogy: overlap must be 0 to block / 2 ({o.block // 2}) and tolerance "
                                 f"at least 0, got overlap {o.overlap}, tolerance {o.tolerance}")
        super().__init__(options, size)
        self.coarse_windows = torch.zeros(0, o.context, o.context, dtype=torch.bool)
        self.fine_blocks = torch.zeros(0, o.block, o.block, dtype=torch.bool)
        self.seen = 0
        self._index: Optional[tuple] = None  # see ``features``

    @classmethod
    def min_side(cls, options: Options, size: tuple[int, int]) -> int:
        return options.block

    @classmethod
    def data_kinds(cls, options: Options) -> tuple[str, ...]:
        return ("coarse_labels", "labels") if options.classes else cls.kinds

    def saved_options(self) -> dict:
        saved = dataclasses.asdict(self.options)
        if not saved["classes"]:
            del saved["classes"]  # binary checkpoints stay as they were before classes existed
        return saved

    def optimizer_groups(self):
        return {}

    def with_options(self, **changes) -> "Model":
        """This model with other synthesis options (``SYNTHESIS_OPTIONS``, e.g. ``overlap=8``), sharing its
        window index. How an engine gives a checkpoint collected without overlap one; strings are converted
        as on the command line. Building from ``Checkpoint.options`` with the option added works too."""
        fixed = sorted(set(changes) - set(SYNTHESIS_OPTIONS))
        if fixed:
            raise PriorPathError(f"analogy: {', '.join(fixed)} cannot change after collection; "
                                 f"only {', '.join(SYNTHESIS_OPTIONS)} can")
        options = options_from_mapping(Options, {**dataclasses.asdict(self.options), **changes}, self.name)
        twin = Model(options, self.size)
        twin.coarse_windows, twin.fine_blocks, twin.seen = self.coarse_windows, self.fine_blocks, self.seen
        if getattr(self, "table", None) is not None:
            twin.table = self.table
        if options.context_weight == self.options.context_weight:
            twin._index = self._index
        return twin

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
        self._index = None

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
        self._index = None

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
        if self._index is None:
            if not len(self.fine_blocks):
                raise PriorPathError("analogy model has no windows yet: train it on a prepared folder first")
            kinds = _kind(self.coarse_windows)
            pools = {k: torch.nonzero(kinds == k).squeeze(1) for k in (AIR, TISSUE, MIXED)}
            features = self._describe(self.coarse_windows)
            # each pool's features for ranking by one matrix product (``_nearest``)
            searched = {k: features[pool if len(pool) else slice(None)] for k, pool in pools.items()}
            ranking = {k: (f.t().contiguous(), f.pow(2).sum(1)) for k, f in searched.items()}
            self._index = (features, pools, ranking)
        return self._index[:2]

    @torch.no_grad()
    def translate(self, coarse: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Coarse masks (Bx1xHxW in [-1, 1], any size) -> fine masks, exactly +-1."""
        o = self.options
        b, _, h0, w0 = coarse.shape
        step = o.block - o.overlap
        # with overlap the seed also shifts the grid, so blocks along edges differ between seeds too
        dy, dx = torch.randint(0, step, (2,), generator=generator).tolist() if o.overlap else (0, 0)
        grid = (b, _count(h0 + dy, o.block, step), _count(w0 + dx, o.block, step))
        h, w = (grid[1] - 1) * step + o.block, (grid[2] - 1) * step + o.block  # whole blocks, cropped at the end
        margin = (o.context - o.block) // 2
        binary = (coarse.detach().float().cpu() > 0).float()
        padded = F.pad(binary, (margin + dx, margin + w - w0 - dx, margin + dy, margin + h - h0 - dy),
                       mode="replicate")
        # every block's context window, as N x C x C (N = b x blocks down x blocks across), in raster order
        windows = F.unfold(padded, o.context, stride=step).transpose(1, 2).reshape(-1, o.context, o.context)
        windows = windows.contiguous()
        if o.overlap == 0:
            blocks = self._pixels(self._candidates(windows, generator, pick=True), windows)[:, 0]
        else:
            candidates = self._pixels(self._candidates(windows, generator, pick=False), windows)
            noise = torch.rand(candidates.shape[:2], generator=generator)
            chosen, shown = quilt(candidates.numpy().reshape(grid + candidates.shape[1:]), o.overlap,
                                  noise.numpy().reshape(grid + (-1,)), o.tolerance)
            blocks = torch.from_numpy(chosen & shown)
        columns = blocks.float().reshape(b, -1, o.block * o.block).transpose(1, 2)
        out = F.fold(columns, (h, w), o.block, stride=step)
        return (out[..., dy:dy + h0, dx:dx + w0] * 2 - 1).to(coarse.device, coarse.dtype)

    def _pixels(self, chosen: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        """N x K stored windows -> N x K x block x block fine pixels (bool) to paste for the N query windows."""
        o = self.options
        pasted = self.fine_blocks[chosen]
        if o.mode == "residual":  # flip where the example's fine left its own coarse
            margin = (o.context - o.block) // 2
            centre = slice(margin, margin + o.block)
            own = self.coarse_windows[chosen][..., centre, centre]
            pasted = (windows[:, None, centre, centre] > 0.5) ^ pasted ^ own
        return pasted

    def _candidates(self, windows: torch.Tensor, generator: Optional[torch.Generator], pick: bool) -> torch.Tensor:
        """For each query window, stored windows that may supply its texture: N x 1 drawn with ``pick``,
        else N x ``choices`` for the quilt to decide among.

        A window wholly inside tissue (or air) matches every such stored window equally well, so it draws
        from all of them uniformly; only windows across an edge search their ``choices`` nearest neighbours
        among the stored edge windows. That keeps a 256x512 mask near 10 ms of distance computations.
        """
        features, pools = self.features()
        kinds = _kind(windows)
        width = 1 if pick else self.options.choices
        chosen = torch.empty(len(windows), width, dtype=torch.long)
        for kind in (AIR, TISSUE, MIXED):
            rows = torch.nonzero(kinds == kind).squeeze(1)
            if not len(rows):
                continue
            pool = pools[kind] if len(pools[kind]) else torch.arange(len(features))
            if kind != MIXED and len(pools[kind]):
                chosen[rows] = pool[torch.randint(0, len(pool), (len(rows), width), generator=generator)]
                continue
            k = min(self.options.choices, len(pool))
            query = self._describe(windows[rows])
            if pick:  # exactly as before overlap existed, so outputs stay the same
                nearest = torch.cdist(query, features[pool]).topk(k, largest=False).indices
                nearest = nearest.gather(1, torch.randint(0, k, (len(rows), 1), generator=generator))
            else:
                nearest = self._nearest(query, kind, k)
            chosen[rows] = pool[nearest[:, torch.arange(width) % nearest.shape[1]]]  # repeats if k < width
        return chosen

    def _nearest(self, query: torch.Tensor, kind: int, k: int) -> torch.Tensor:
        """Positions in the pool of ``kind`` of each query's ``k`` nearest stored windows, ranked by the
        squared distance less the query's own norm, |f|^2 - 2 q.f: one matrix product against the pool's
        precomputed side, cheaper than ``cdist`` (up to 2x on two busy cores) but not bit-identical to it."""
        transposed, norms = self._index[2][kind]
        return torch.addmm(norms, query, transposed, alpha=-2).topk(k, largest=False).indices

    @torch.no_grad()
    def preview(self, batch, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        return [batch["coarse"], self.translate(batch["coarse"], generator), batch["fine"]]


AIR, TISSUE, MIXED = 0, 1, 2


def _count(side: int, block: int, step: int) -> int:
    """Blocks ``step`` apart needed to cover ``side`` pixels (at least one)."""
    return max(1, -(-(side - block) // step) + 1)


def quilt(candidates: np.ndarray, overlap: int, noise: np.ndarray, tolerance: float
          ) -> tuple[np.ndarray, np.ndarray]:
    """Decide and cut overlapping blocks ``S - overlap`` apart: B x rows x cols x K x S x S candidate pixels
    (bool) -> the chosen block and where it is shown, both B x rows x cols x S x S (bool). Every pixel of
    the image is shown by exactly one block.

    A block's candidates are compared with its chosen left and top neighbours in the overlap (``_excess``);
    the winner is the one with the highest ``noise`` (B x rows x cols x K, uniform) among those within
    ``tolerance`` pixels of the best. Blocks on one anti-diagonal depend only on earlier ones, so each
    diagonal is one vectorised step. Then every block is cut against its left and top neighbours
    (``min_cut``) and shows only what no later block covers on its side of a cut.
    """
    b, rows, cols, k, side, _ = candidates.shape
    step = side - overlap
    chosen = np.zeros((b, rows, cols, side, side), bool)
    left_sums = np.count_nonzero(candidates[..., :overlap], axis=(-2, -1))  # tissue in each candidate's strips
    top_sums = np.count_nonzero(candidates[..., :overlap, :], axis=(-2, -1))
    for wave in range(rows + cols - 1):
        i = np.arange(max(0, wave - cols + 1), min(rows, wave + 1))
        j = wave - i
        options = candidates[:, i, j]  # B x n x K x S x S
        cost = (_excess(options[..., :overlap], left_sums[:, i, j], chosen[:, i, j - 1, None, :, step:])
                * (j > 0)[:, None]
                + _excess(options[..., :overlap, :], top_sums[:, i, j], chosen[:, i - 1, j, None, step:, :])
                * (i > 0)[:, None])
        tied = cost <= cost.min(-1, keepdims=True) + tolerance
        pick = np.where(tied, noise[:, i, j], -1.0).argmax(-1)  # B x n
        chosen[:, i, j] = options[np.arange(b)[:, None], np.arange(len(i)), pick]
    return chosen, shown_parts(chosen, overlap)


def shown_parts(chosen: np.ndarray, overlap: int) -> np.ndarray:
    """Where each of the chosen B x rows x cols x S x S blocks is shown: every block is cut against its left
    and top neighbours along the minimum-error cut through the pixels where they differ (``min_cut``), and
    shows only what no later block covers on its side of a cut. Works on masks and on label maps alike."""
    side = chosen.shape[-1]
    step = side - overlap
    # where each block's own pixels start: right of its cut with the left neighbour, below the top one's
    seen = np.ones(chosen.shape, bool)
    span = np.arange(side)
    across = min_cut(chosen[:, :, 1:, :, :overlap] != chosen[:, :, :-1, :, step:])  # column per row
    seen[:, :, 1:] &= span >= across[..., None]
    down = min_cut(np.swapaxes(chosen[:, 1:, :, :overlap, :] != chosen[:, :-1, :, step:, :], -1, -2))
    seen[:, 1:] &= span[:, None] >= down[..., None, :]
    # a block is pasted after its left and upper neighbours: hide what the later ones cover with their own
    shown = seen.copy()
    shown[:, :, :-1, :, step:] &= ~seen[:, :, 1:, :, :overlap]  # the right neighbour
    shown[:, :-1, :, step:, :] &= ~seen[:, 1:, :, :overlap, :]  # the one below
    shown[:, :-1, :-1, step:, step:] &= ~seen[:, 1:, 1:, :overlap, :overlap]  # below right
    shown[:, :-1, 1:, step:, :overlap] &= ~seen[:, 1:, :-1, :overlap, step:]  # below left
    return shown


def _excess(candidates: np.ndarray, tissue: np.ndarray, placed: np.ndarray) -> np.ndarray:
    """Pixels where each candidate strip (... x K x h x w, with ``tissue`` pixels of tissue) disagrees with
    the placed one (... x 1 x h x w), less the number expected by chance from the two strips' tissue
    fractions (which comes to -2 x their covariance x h x w). Plain Hamming distance would favour plain
    blocks (a block without holes disagrees least with anything) and wipe out the texture."""
    area = placed.shape[-2] * placed.shape[-1]
    both = np.count_nonzero(candidates & placed, axis=(-2, -1))
    return 2 * (tissue * np.count_nonzero(placed, axis=(-2, -1)) / area - both)


def min_cut(error: np.ndarray) -> np.ndarray:
    """The cheapest top-to-bottom path through ... x L x W error surfaces, moving at most one column per
    row: the path's column in each row (... x L). Dynamic programming, vectorised over the leading axes."""
    *lead, length, width = error.shape
    total = error.reshape(-1, length, width).astype(np.int32)  # cheapest cost of a path ending here
    for r in range(1, length):
        above = total[:, r - 1]
        best = above.copy()
        best[:, 1:] = np.minimum(best[:, 1:], above[:, :-1])
        best[:, :-1] = np.minimum(best[:, :-1], above[:, 1:])
        total[:, r] += best
    surfaces = np.arange(len(total))
    path = np.empty(total.shape[:2], np.int64)
    path[:, -1] = total[:, -1].argmin(-1)
    moves = np.array([0, -1, 1])  # straight on first when paths tie
    for r in range(length - 2, -1, -1):
        reach = np.clip(path[:, r + 1, None] + moves, 0, width - 1)
        path[:, r] = reach[surfaces, total[surfaces[:, None], r, reach].argmin(-1)]
    return path.reshape(*lead, length)


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
