"""DEPAS: noise -> binary fine mask, the paper's state-of-the-art noise baseline (Fig. 1b, Table 2; ref. [25]).

The paper names DEPAS's three additions to DCGAN without defining them; this is our interpretation:

1. Spatial noise in every hidden generator layer (StyleGAN-style): after each hidden conv, a fresh noise map
   (B x 1 x H x W, N(0, 1)) is added, scaled by a learned per-channel factor that starts at 0. The trunk is
   DCGAN's (z -> base grid -> ``n_up`` doublings, batch norm + ReLU, widths halving towards ngf), but each
   doubling is nearest-neighbour upsampling + a reflection-padded 3x3 conv, which avoids the checkerboard
   artifacts transposed convs leave in masks.
2. Multi-scale discriminators: ``num_d`` (3) PatchGANs on the mask at full, 1/2 and 1/4 resolution
   (pix2pixHD's discriminator, instance norm, LeakyReLU 0.2), trained with the least-squares (LSGAN) loss;
   the D loss is halved and D steps before G, as in DCGAN.
3. A discrete adaptive final block: the generator's last conv gives a logit map x; a per-image threshold
   t = t0 + w·z (a learned scalar plus a learned linear function of the noise vector, both starting at 0,
   so each sample may choose its own tissue fraction) binarises it. Forward: exactly +1 where x >= t, else
   -1; backward: the gradient of tanh((x - t) / tau) (straight-through estimator), which reaches both the
   generator and the threshold. The discriminator therefore only ever sees binary masks, real or fake.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .base import ModelOptions
from .dcgan import NoiseModel, growth, widths
from .layers import GANLoss, MultiscaleDiscriminator, NoiseInjection, init_weights, straight_through_sign


@dataclasses.dataclass(frozen=True)
class Options(ModelOptions):
    nz: int = 100  # length of the noise vector
    ngf: int = 64  # width of the generator's last hidden layer (doubling towards the base grid)
    ndf: int = 64  # width of each discriminator's first layer
    max_width: int = 512  # cap on any generator layer's width
    base: int = 4  # smallest shorter side of the base grid
    num_d: int = 3  # discriminator scales
    d_layers: int = 3  # layers per PatchGAN (3 = 70x70 at each scale)
    d_norm: str = "instance"
    gan_mode: str = "lsgan"
    tau: float = 1.0  # temperature of the tanh surrogate in the straight-through gradient


class Generator(nn.Module):
    def __init__(self, o: Options, size: tuple[int, int]):
        super().__init__()
        n_up, grid = growth(o, size)
        w = widths(o, n_up, o.ngf) or [o.ngf]
        self.convs = nn.ModuleList([nn.ConvTranspose2d(o.nz, w[0], grid, 1, 0, bias=False)])
        self.convs.extend(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1),
                                        nn.Conv2d(w[i - 1], w[i], 3, bias=False)) for i in range(1, n_up))
        self.noises = nn.ModuleList(NoiseInjection(c) for c in w)
        self.norms = nn.ModuleList(nn.BatchNorm2d(c) for c in w)
        self.to_logits = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest") if n_up else nn.Identity(),
                                       nn.ReflectionPad2d(1), nn.Conv2d(w[-1], 1, 3))
        self.threshold = nn.Linear(o.nz, 1)  # t = t0 + w.z, the adaptive part of the discrete block
        self.tau = o.tau

    def logits(self, z: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """The continuous map x - t that the discrete block binarises (x >= t is tissue)."""
        x = z
        for conv, noise, norm in zip(self.convs, self.noises, self.norms):
            x = F.relu(norm(noise(conv(x), generator)))
        return self.to_logits(x).float() - self.threshold(z.flatten(1).float()).view(-1, 1, 1, 1)

    def forward(self, z: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Binary masks: exactly -1 (background) or +1 (tissue), with a straight-through gradient."""
        return straight_through_sign(self.logits(z, generator), self.tau)


class Model(NoiseModel):
    name = "depas"
    options_type = Options
    d_loss_weight = 0.5

    def __init__(self, options: Options, size: tuple[int, int]):
        super().__init__(options, size)
        self.G = Generator(options, size)
        self.D = MultiscaleDiscriminator(1, options.ndf, options.d_layers, options.d_norm, options.num_d)
        init_weights(self)
        nn.init.zeros_(self.G.threshold.weight)  # the threshold starts at 0 for every image
        self.gan_loss = GANLoss(options.gan_mode)

    def sample(self, z: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return self.G(z, generator)
