"""Analogy with classes: coarse label map -> fine label map by example (``analogy`` with ``classes`` set).

``priorpath train --model analogy --option classes=he3 --data PREPARED`` collects windows of real
(``coarse_labels``, ``labels``) pairs instead of (coarse, fine) masks; everything else is the binary
model's method (``analogy``), on class ids:

- **Storage.** Windows are stored as bit planes, ceil(log2 n) bits a pixel for n classes: 2 for he3, so a
  window (a 32x32 coarse context and its 16x16 fine block) takes 320 bytes, 12.8 MB for 40 000 windows
  (binary: 160 bytes). The class table is the prepared folder's ``classes.json``, kept in the checkpoint
  (``extra.classes``); a resume on a folder with another table is refused.
- **Description.** Per-class pooled one-hot features: for every class but air, the context averaged 4x and
  the centre block 2x (the binary model's features, once per class).
- **Search.** A window of one class throughout draws at random among the stored windows of that class;
  every other window searches its ``choices`` nearest among the stored mixed windows.
- **Quilting** (overlap > 0): candidates are decided by label disagreement with the chosen neighbours in the
  overlap, less the disagreement expected by chance from the strips' class fractions (so plain blocks do not
  win for being plain), and blocks meet along the minimum cut through the pixels whose labels differ.
- **He3 output is rule-shaped.** With the he3 table, nuclei blobs under ``MIN_NUCLEUS_AREA`` pixels become
  stroma and holes of at most ``MAX_HOLE_AREA`` pixels in nuclei become nuclei, as the labelling rule cleans
  them (``trainer.data.labels``): cuts through real blobs leave slivers the rule could never give back.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..data.classes import AIR, HE3, ClassTable, check_labels, read_class_table
from ..data.labels import MAX_HOLE_AREA, MIN_NUCLEUS_AREA, NUCLEI, STROMA, _drop_small
from ..errors import PriorPathError
from .analogy import Model, _count, shown_parts


class LabelModel(Model):
    """The analogy model on label maps; built by ``analogy.Model`` when ``options.classes`` is set."""

    def __init__(self, options, size: tuple[int, int]):
        if options.mode != "copy":
            raise PriorPathError("analogy with classes: only mode copy (residual flips binary pixels)")
        super().__init__(options, size)
        self.table: Optional[ClassTable] = None
        self.coarse_windows = torch.zeros(0, options.context, options.context, dtype=torch.uint8)
        self.fine_blocks = torch.zeros(0, options.block, options.block, dtype=torch.uint8)

    # --- the class table ------------------------------------------------------------------------------------
    def use_data(self, folder) -> None:
        path = Path(folder) / "classes.json"
        if not path.is_file():
            raise PriorPathError(f"{folder}: no classes.json; a class-aware model learns from a folder prepared "
                                 f"with --labels he3 (or labelled with label_prepared)")
        self.set_table(read_class_table(path))

    def set_table(self, table: ClassTable) -> None:
        if table.name != self.options.classes:
            raise PriorPathError(f"the data's class table is {table.name!r}, the model was asked for "
                                 f"{self.options.classes!r} (--option classes={table.name})")
        if self.table is not None and self.table != table:
            raise PriorPathError(f"this run collected windows with class table {self.table.names}, the data has "
                                 f"{table.names}; start a new run with another --out")
        self.table = table

    def _need_table(self) -> ClassTable:
        if self.table is None:
            raise PriorPathError("analogy with classes has no class table: train it on a labelled prepared folder")
        return self.table

    @property
    def bits(self) -> int:
        return max(1, (len(self._need_table()) - 1).bit_length())

    # --- collection -------------------------------------------------------------------------------------------
    def train_step(self, batch, optimizers):
        table = self._need_table()
        coarse = batch["coarse_labels"].detach().cpu()
        fine = batch["labels"].detach().cpu()
        for what, t in (("coarse label map", coarse), ("label map", fine)):
            if t.numel() and int(t.max()) >= len(table):
                raise PriorPathError(f"a training {what} holds class id {int(t.max())}, beyond table {table.name!r}")
        o = self.options
        margin = (o.context - o.block) // 2
        h, w = coarse.shape[-2:]
        n = o.windows_per_patch
        padded = F.pad(coarse.float(), (margin,) * 4, mode="replicate").to(torch.uint8)
        new_c, new_f = [], []
        for b in range(coarse.shape[0]):
            ys = torch.randint(0, h - o.block + 1, (n,))
            xs = torch.randint(0, w - o.block + 1, (n,))
            for y, x in zip(ys.tolist(), xs.tolist()):
                new_c.append(padded[b, 0, y:y + o.context, x:x + o.context])
                new_f.append(fine[b, 0, y:y + o.block, x:x + o.block])
        self._add(torch.stack(new_c), torch.stack(new_f))
        return {"windows": float(len(self.fine_blocks))}

    def extra_state(self) -> dict[str, torch.Tensor]:
        table = self._need_table()
        return {"coarse": pack_labels(self.coarse_windows, self.bits), "fine": pack_labels(self.fine_blocks, self.bits),
                "seen": torch.tensor([self.seen], dtype=torch.int64),
                "classes": torch.frombuffer(bytearray(json.dumps(table.to_json()).encode()), dtype=torch.uint8)}

    def load_extra_state(self, tensors: dict[str, torch.Tensor]) -> None:
        o = self.options
        if not {"coarse", "fine", "classes"} <= set(tensors):
            raise PriorPathError("analogy checkpoint with classes holds no window index or class table "
                                 "(extra.coarse / extra.fine / extra.classes)")
        try:
            table = ClassTable.from_json(json.loads(bytes(tensors["classes"].numpy()).decode()), "checkpoint")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PriorPathError(f"analogy checkpoint: unreadable class table ({exc})") from None
        self.table = None
        self.set_table(table)
        self.coarse_windows = unpack_labels(tensors["coarse"], o.context, self.bits)
        self.fine_blocks = unpack_labels(tensors["fine"], o.block, self.bits)
        if len(self.coarse_windows) != len(self.fine_blocks):
            raise PriorPathError("analogy checkpoint: coarse and fine windows differ in number")
        self.seen = int(tensors["seen"][0]) if "seen" in tensors else len(self.fine_blocks)
        self._index = None

    # --- synthesis --------------------------------------------------------------------------------------------
    def _describe(self, windows: torch.Tensor) -> torch.Tensor:
        """Per-class pooled one-hot features of N x C x C label windows: per class but air, the context
        averaged 4x and the centre block 2x."""
        o = self.options
        margin = (o.context - o.block) // 2
        n = len(self._need_table())
        x = torch.stack([(windows == c) for c in range(1, n)], 1).float()
        context = F.avg_pool2d(x, 4).flatten(1) * o.context_weight
        centre = F.avg_pool2d(x[..., margin:margin + o.block, margin:margin + o.block], 2).flatten(1)
        return torch.cat([context, centre], 1)

    def _kinds(self, windows: torch.Tensor) -> torch.Tensor:
        """The class of a window of one class throughout, else n (mixed)."""
        first = windows[:, 0, 0]
        uniform = (windows == first[:, None, None]).flatten(1).all(1)
        return torch.where(uniform, first.long(), torch.full_like(first, len(self._need_table()), dtype=torch.long))

    def features(self):
        if self._index is None:
            if not len(self.fine_blocks):
                raise PriorPathError("analogy model has no windows yet: train it on a prepared folder first")
            mixed = len(self._need_table())
            kinds = self._kinds(self.coarse_windows)
            pools = {k: torch.nonzero(kinds == k).squeeze(1) for k in range(mixed + 1)}
            features = self._describe(self.coarse_windows)
            searched = features[pools[mixed] if len(pools[mixed]) else slice(None)]
            ranking = {mixed: (searched.t().contiguous(), searched.pow(2).sum(1))}
            self._index = (features, pools, ranking)
        return self._index[:2]

    def _candidates(self, windows: torch.Tensor, generator: Optional[torch.Generator], pick: bool) -> torch.Tensor:
        """N x 1 (``pick``) or N x ``choices`` stored windows per query window: uniform windows draw among
        the stored windows of their class, the others search the nearest mixed ones."""
        features, pools = self.features()
        mixed = len(self._need_table())
        kinds = self._kinds(windows)
        width = 1 if pick else self.options.choices
        chosen = torch.empty(len(windows), width, dtype=torch.long)
        for kind in range(mixed + 1):
            rows = torch.nonzero(kinds == kind).squeeze(1)
            if not len(rows):
                continue
            if kind != mixed and len(pools[kind]):
                pool = pools[kind]
                chosen[rows] = pool[torch.randint(0, len(pool), (len(rows), width), generator=generator)]
                continue
            searched = mixed if len(pools[mixed]) else None
            pool = pools[mixed] if searched is not None else torch.arange(len(features))
            k = min(self.options.choices, len(pool))
            query = self._describe(windows[rows])
            if searched is None:  # no mixed windows at all: rank everything
                nearest = torch.cdist(query, features).topk(k, largest=False).indices
            else:
                nearest = self._nearest(query, mixed, k)
            if pick:
                nearest = nearest.gather(1, torch.randint(0, k, (len(rows), 1), generator=generator))
            chosen[rows] = pool[nearest[:, torch.arange(width) % nearest.shape[1]]]
        return chosen

    @torch.no_grad()
    def translate(self, coarse: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Coarse label maps (Bx1xHxW uint8 ids, any size) -> fine label maps (Bx1xHxW uint8)."""
        table = self._need_table()
        o = self.options
        if coarse.dtype != torch.uint8:
            raise PriorPathError(f"analogy with classes takes label maps (uint8 class ids), got {coarse.dtype}")
        b, _, h0, w0 = coarse.shape
        step = o.block - o.overlap
        dy, dx = torch.randint(0, step, (2,), generator=generator).tolist() if o.overlap else (0, 0)
        grid = (b, _count(h0 + dy, o.block, step), _count(w0 + dx, o.block, step))
        h, w = (grid[1] - 1) * step + o.block, (grid[2] - 1) * step + o.block
        margin = (o.context - o.block) // 2
        padded = F.pad(coarse.detach().cpu().float(), (margin + dx, margin + w - w0 - dx, margin + dy,
                                                       margin + h - h0 - dy), mode="replicate")
        windows = F.unfold(padded, o.context, stride=step).transpose(1, 2).reshape(-1, o.context, o.context)
        windows = windows.to(torch.uint8).contiguous()
        if o.overlap == 0:
            blocks = self.fine_blocks[self._candidates(windows, generator, pick=True)[:, 0]]
        else:
            candidates = self.fine_blocks[self._candidates(windows, generator, pick=False)]
            noise = torch.rand(candidates.shape[:2], generator=generator)
            chosen, shown = quilt_labels(candidates.numpy().reshape(grid + candidates.shape[1:]), o.overlap,
                                         noise.numpy().reshape(grid + (-1,)), o.tolerance, len(table))
            blocks = torch.from_numpy(chosen * shown)
        columns = blocks.float().reshape(b, -1, o.block * o.block).transpose(1, 2)
        out = F.fold(columns, (h, w), o.block, stride=step)[..., dy:dy + h0, dx:dx + w0].round().to(torch.uint8)
        if table.names == HE3.names:
            out = torch.stack([torch.from_numpy(rule_shaped(m.numpy()))[None] for m in out[:, 0]])
        return out.to(coarse.device)

    @torch.no_grad()
    def preview(self, batch, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        coarse, fine = batch["coarse_labels"], batch["labels"]
        return [self._colour(coarse), self._colour(self.translate(coarse, generator)), self._colour(fine)]

    def _colour(self, labels: torch.Tensor) -> torch.Tensor:
        palette = torch.from_numpy(self._need_table().palette()).float()
        return palette[labels[:, 0].long().cpu()].permute(0, 3, 1, 2).div(127.5).sub(1)


def quilt_labels(candidates: np.ndarray, overlap: int, noise: np.ndarray, tolerance: float, n_classes: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``analogy.quilt`` on label maps: B x rows x cols x K x S x S candidate ids -> the chosen blocks
    (uint8) and where each is shown (bool). The overlap cost is the label disagreement less what the strips'
    class fractions give by chance (``_excess``); the cuts run through the pixels whose labels differ."""
    b, rows, cols, k, side, _ = candidates.shape
    step = side - overlap
    chosen = np.zeros((b, rows, cols, side, side), np.uint8)
    left_hist = _histogram(candidates[..., :overlap], n_classes)
    top_hist = _histogram(candidates[..., :overlap, :], n_classes)
    for wave in range(rows + cols - 1):
        i = np.arange(max(0, wave - cols + 1), min(rows, wave + 1))
        j = wave - i
        options = candidates[:, i, j]
        cost = (_excess(options[..., :overlap], left_hist[:, i, j], chosen[:, i, j - 1, None, :, step:], n_classes)
                * (j > 0)[:, None]
                + _excess(options[..., :overlap, :], top_hist[:, i, j], chosen[:, i - 1, j, None, step:, :],
                          n_classes) * (i > 0)[:, None])
        tied = cost <= cost.min(-1, keepdims=True) + tolerance
        pick = np.where(tied, noise[:, i, j], -1.0).argmax(-1)
        chosen[:, i, j] = options[np.arange(b)[:, None], np.arange(len(i)), pick]
    return chosen, shown_parts(chosen, overlap)


def _histogram(strips: np.ndarray, n_classes: int) -> np.ndarray:
    """... x h x w ids -> ... x n_classes pixel counts."""
    return np.stack([np.count_nonzero(strips == c, axis=(-2, -1)) for c in range(n_classes)], -1)


def _excess(candidates: np.ndarray, hist: np.ndarray, placed: np.ndarray, n_classes: int) -> np.ndarray:
    """Disagreeing pixels of each candidate strip with the placed one, less those expected by chance
    (for two classes this is the binary model's ``_excess``)."""
    area = placed.shape[-2] * placed.shape[-1]
    agree = np.count_nonzero(candidates == placed, axis=(-2, -1))
    expected = (hist * _histogram(placed, n_classes)).sum(-1) / area
    return expected - agree


def rule_shaped(labels: np.ndarray) -> np.ndarray:
    """A he3 label map with its nuclei cleaned as the labelling rule cleans them: blobs (8-connected) under
    ``MIN_NUCLEUS_AREA`` px become stroma, holes (4-connected) of at most ``MAX_HOLE_AREA`` px become nuclei."""
    tissue = labels != AIR
    on = _drop_small(labels == NUCLEI, MIN_NUCLEUS_AREA, connectivity=8)
    on |= ~_drop_small(~on, MAX_HOLE_AREA + 1, connectivity=4)
    return np.where(tissue, np.where(on & tissue, NUCLEI, STROMA), AIR).astype(np.uint8)


def pack_labels(labels: torch.Tensor, bits: int) -> torch.Tensor:
    """N x S x S ids -> N x bytes: ``bits`` bit planes, each packed 8 pixels a byte."""
    flat = labels.numpy().reshape(len(labels), -1)
    planes = np.concatenate([(flat >> b) & 1 for b in range(bits)], 1).astype(bool)
    return torch.from_numpy(np.packbits(planes, axis=1))


def unpack_labels(packed: torch.Tensor, side: int, bits: int) -> torch.Tensor:
    planes = np.unpackbits(packed.numpy(), axis=1, count=bits * side * side).reshape(len(packed), bits, -1)
    ids = (planes.astype(np.uint8) << np.arange(bits, dtype=np.uint8)[None, :, None]).sum(1, dtype=np.uint8)
    return torch.from_numpy(ids).reshape(-1, side, side)


def check_label_input(labels: np.ndarray, table: ClassTable, what: str) -> np.ndarray:
    """A label map for a class-aware model, refused with one clear line otherwise."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.dtype == np.uint8 and labels.size and set(np.unique(labels).tolist()) <= {0, 255} \
            and labels.max() == 255:
        raise PriorPathError(f"{what}: a binary mask (0/255), but the model draws {table.name} label maps "
                             f"(ids 0-{len(table) - 1}: {', '.join(table.names)}); give a label map, or use a "
                             f"binary model")
    check_labels(labels, table, what)
    return labels
