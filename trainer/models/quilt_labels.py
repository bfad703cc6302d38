"""Quilt with classes: fine he3 label map -> H&E tile (``quilt`` with ``classes=he3``; ``trainer/quilting_classes.py``).

``priorpath train --model quilt --option classes=he3 --data PREPARED`` collects the same library of real
patches as the binary model (JPEG in the checkpoint); the he3 labels of the library are not stored but
computed by the rule from the decoded pixels when the library is built, with one nuclei threshold per source
slide, so the rule applied to a generated tile (with its slide's threshold) gives back the map. Only the
he3 table can be drawn this way: its classes are defined by a rule on colours, which a generated tile can be
made to obey; a user-defined table (Labelme classes) has no such rule.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..data.classes import HE3, ClassTable
from ..errors import PriorPathError
from ..quilting_classes import LabelLibrary, LabelSynthesis, synthesize_from_coarse, synthesize_labels
from .quilt import Model


class LabelQuilt(Model):
    """The quilt model on he3 label maps; built by ``quilt.Model`` when ``options.classes`` is set."""

    def __init__(self, options, size: tuple[int, int]):
        if options.classes != HE3.name:
            raise PriorPathError(f"quilt with classes draws only he3 label maps (classes defined by the he3 rule on "
                                 f"colours), not {options.classes!r}")
        if options.nuclei_weight < 0:
            raise PriorPathError("quilt: nuclei_weight must not be negative")
        super().__init__(options, size)

    @property
    def table(self) -> ClassTable:
        return HE3

    def build_library(self, tiles: list, groups: list) -> LabelLibrary:
        return LabelLibrary(tiles, groups, self.options.settings(), self.options.nuclei_weight)

    def synthesize(self, labels: np.ndarray, generator: Optional[torch.Generator] = None,
                   group: Optional[str] = None) -> LabelSynthesis:
        """One tile for an HxW he3 label map, with the slide's nuclei threshold (the first item of
        ``translate`` with the same generator)."""
        return self._synthesize_all(np.asarray(labels)[None], generator, group)[0]

    def synthesize_from_sketch(self, coarse: np.ndarray, generator: Optional[torch.Generator] = None,
                               group: Optional[str] = None) -> tuple[np.ndarray, LabelSynthesis]:
        """A coarse label map -> (fine label map, tile) in one pass (``synthesize_from_coarse``)."""
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator).item())
        return synthesize_from_coarse(self.library(), np.asarray(coarse), np.random.default_rng([seed, 0]), group)

    @torch.no_grad()
    def translate(self, labels: torch.Tensor, generator: Optional[torch.Generator] = None,
                  group: Optional[str] = None) -> torch.Tensor:
        """Fine label maps (Bx1xHxW uint8 ids) -> RGB (Bx3xHxW in [-1, 1], exactly uint8 values)."""
        if labels.dtype != torch.uint8:
            raise PriorPathError(f"quilt with classes takes label maps (uint8 class ids), got {labels.dtype}")
        results = self._synthesize_all(labels.detach().cpu()[:, 0].numpy(), generator, group)
        out = [torch.from_numpy(r.rgb).permute(2, 0, 1) for r in results]
        return torch.stack(out).float().div(127.5).sub(1).to(labels.device)

    def _synthesize_all(self, maps: np.ndarray, generator: Optional[torch.Generator], group: Optional[str]
                        ) -> list[LabelSynthesis]:
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator).item())
        library = self.library()
        return [synthesize_labels(library, target, np.random.default_rng([seed, k]), group)
                for k, target in enumerate(maps)]

    @torch.no_grad()
    def preview(self, batch, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        labels = batch["labels"]
        colours = torch.from_numpy(HE3.palette()).float()[labels[:, 0].long().cpu()].permute(0, 3, 1, 2)
        return [colours.div(127.5).sub(1), self.translate(labels, generator), batch["rgb"]]
