"""DCGAN: noise vector -> fine mask, the paper's noise-to-mask baseline (Fig. 1a, Table 2; Radford et al. 2016).

The generator turns z (B x nz x 1 x 1) into a small "base grid" with one transposed conv whose kernel is the
grid, then doubles the resolution ``n_up`` times with 4x4 stride-2 transposed convs (batch norm + ReLU,
widths halving towards ngf, capped at ``max_width``), ending in tanh. ``n_up`` follows from the working
size: the largest number of doublings that leaves the grid's shorter side at least ``base`` (4), so 256x512
grows from 4x8 in 6 steps and 512x1024 in 7; sides must then be multiples of 2**n_up. The discriminator
mirrors it (strided 4x4 convs, batch norm except on the first, LeakyReLU 0.2) and ends in one conv over the
base grid to a single logit. Loss: the original (vanilla, cross-entropy) GAN loss; D steps first.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import torch
from torch import nn

from .base import GanModel, ModelOptions
from .layers import GANLoss, evaluating, init_weights


@dataclasses.dataclass(frozen=True)
class Options(ModelOptions):
    nz: int = 100  # length of the noise vector
    ngf: int = 64  # width of the generator's last hidden layer (doubling towards the base grid)
    ndf: int = 64  # width of the discriminator's first layer
    max_width: int = 512  # cap on any layer's width
    base: int = 4  # smallest shorter side of the base grid


def growth(options, size: tuple[int, int]) -> tuple[int, tuple[int, int]]:
    """(n_up, base grid): as many doublings as keep the base grid's shorter side >= options.base."""
    n_up = int(math.floor(math.log2(min(size) / options.base))) if min(size) >= options.base else 0
    return n_up, (size[0] // 2 ** n_up, size[1] // 2 ** n_up)


def widths(options, n_up: int, first: int) -> list[int]:
    """Widths at each resolution from the base grid outwards: ``first`` doubled per level, capped."""
    return [min(options.max_width, first * 2 ** (n_up - 1 - i)) for i in range(n_up)]


class Generator(nn.Module):
    def __init__(self, o: Options, size: tuple[int, int]):
        super().__init__()
        n_up, grid = growth(o, size)
        w = widths(o, n_up, o.ngf) or [o.ngf]
        layers: list[nn.Module] = [nn.ConvTranspose2d(o.nz, w[0], grid, 1, 0, bias=False), nn.BatchNorm2d(w[0]),
                                   nn.ReLU(True)]
        for i in range(1, n_up):
            layers += [nn.ConvTranspose2d(w[i - 1], w[i], 4, 2, 1, bias=False), nn.BatchNorm2d(w[i]), nn.ReLU(True)]
        layers.append(nn.ConvTranspose2d(w[-1], 1, 4, 2, 1) if n_up else nn.Conv2d(w[-1], 1, 1))
        layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Discriminator(nn.Module):
    def __init__(self, o: Options, size: tuple[int, int]):
        super().__init__()
        n_up, grid = growth(o, size)
        w = widths(o, n_up, o.ndf)[::-1] or [1]
        layers: list[nn.Module] = []
        for i in range(n_up):
            layers.append(nn.Conv2d(1 if i == 0 else w[i - 1], w[i], 4, 2, 1, bias=i == 0))
            if i:
                layers.append(nn.BatchNorm2d(w[i]))
            layers.append(nn.LeakyReLU(0.2, True))
        layers.append(nn.Conv2d(w[-1], 1, grid))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class NoiseModel(GanModel):
    """What DCGAN and DEPAS share: the noise input, mask generation and the preview."""

    kinds = ("fine",)
    network_names = ("G", "D")

    @classmethod
    def size_multiple(cls, options, size: tuple[int, int]) -> int:
        return 2 ** growth(options, size)[0]

    @classmethod
    def min_side(cls, options, size: tuple[int, int]) -> int:
        return options.base

    loss_names = ("G", "D_real", "D_fake")
    #: factor on the discriminator's loss (DEPAS halves it, as pix2pixHD does)
    d_loss_weight = 1.0

    def optimizer_groups(self):
        return {"G": list(self.G.parameters()), "D": list(self.D.parameters())}

    def train_step(self, batch, optimizers):
        real = batch["fine"]
        z = self.noise(real.shape[0])
        with self.autocast():
            fake = self.G(z)
            d_real = self.gan_loss(self.D(real), True)
            d_fake = self.gan_loss(self.D(fake.detach()), False)
        self.step(optimizers["D"], self.d_loss_weight * (d_real + d_fake))
        with self.frozen(self.D), self.autocast():
            g = self.gan_loss(self.D(fake), True)
        self.step(optimizers["G"], g)
        return {"G": g.item(), "D_real": d_real.item(), "D_fake": d_fake.item()}

    def noise(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """n noise vectors (n x nz x 1 x 1) on the model's device; drawn on CPU when a (CPU) generator is
        given, so a seed means the same vectors on every device."""
        device = next(self.parameters()).device
        if generator is None:
            return torch.randn(n, self.options.nz, 1, 1, device=device)
        return torch.randn(n, self.options.nz, 1, 1, generator=generator).to(device)

    def sample(self, z: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return self.G(z)

    @torch.no_grad()
    def generate(self, n: int, seed: int, chunk: int = 8) -> torch.Tensor:
        """n masks (n x 1 x H x W in [-1, 1]) on the model's device; the same seed gives the same masks.
        The generator runs in eval mode (batch norm on running statistics), so a mask does not depend on the
        others drawn with it."""
        generator = torch.Generator().manual_seed(seed)
        z = self.noise(n, generator)
        out = []
        with evaluating(self.G), self.autocast():
            for part in z.split(chunk):
                out.append(self.sample(part, generator).float())
        return torch.cat(out)

    @torch.no_grad()
    def preview(self, batch, seed: int = 0):
        """[generated masks from a fixed seed, real masks]."""
        real = batch["fine"]
        return [self.generate(real.shape[0], seed), real]


class Model(NoiseModel):
    name = "dcgan"
    options_type = Options

    def __init__(self, options: Options, size: tuple[int, int]):
        super().__init__(options, size)
        self.G = Generator(options, size)
        self.D = Discriminator(options, size)
        init_weights(self)
        self.gan_loss = GANLoss("vanilla")

