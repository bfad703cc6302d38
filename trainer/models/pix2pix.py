"""pix2pix: coarse mask -> fine mask with a U-Net generator and a PatchGAN (paper §2.5, eq. 1-3).

G minimises cGAN + λ·L1 (λ = 100); D sees (coarse, fine) pairs. As in the paper, dropout in the inner
decoder blocks is the noise z and stays on at inference, so one coarse mask yields several fine masks.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import GanModel, ModelOptions
from ..errors import PriorPathError
from .layers import (AlwaysDropout, GANLoss, MultiscaleDiscriminator, NoiseInjection, PatchDiscriminator,
                     feature_matching_loss, init_weights, noise_map, norm_layer, straight_through_sign)

UPSAMPLERS = ("transposed", "resize")


@dataclasses.dataclass(frozen=True)
class Options(ModelOptions):
    ngf: int = 64
    ndf: int = 64
    #: downsamplings of the U-Net; 0 picks min(8, log2(shorter side)) from the input size
    depth: int = 0
    d_layers: int = 3  # 3 = the 70x70 PatchGAN
    norm: str = "batch"
    dropout: float = 0.5
    lambda_l1: float = 100.0
    gan_mode: str = "vanilla"
    #: "transposed" (the paper's 4x4 transposed convs) or "resize" (bilinear x2 + 3x3 conv, no checkerboard)
    upsample: str = "transposed"
    # Texture options (docs/models.md, "texture pix2pix"); the defaults are the paper's network.
    #: a noise map as an extra input channel and StyleGAN noise injection after every decoder up-conv
    noise: bool = False
    #: binarise G's output to exactly +-1 in the forward pass (straight-through gradient), so D sees only
    #: binary masks, fake or real
    binary: bool = False
    #: 0 = one PatchGAN (the paper); n >= 1 = n PatchGANs at full, 1/2, 1/4 ... resolution (pix2pixHD)
    num_d: int = 0
    #: weight of the discriminator feature-matching loss (needs num_d >= 1)
    lambda_fm: float = 0.0


def unet_depth(options: Options, size: tuple[int, int]) -> int:
    if options.depth:
        return options.depth
    return max(1, min(8, int(math.log2(max(1, min(size))))))


def _up(in_ch: int, out_ch: int, mode: str, bias: bool) -> nn.Module:
    if mode == "transposed":
        return nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=bias)
    if mode == "resize":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                             nn.ReflectionPad2d(1), nn.Conv2d(in_ch, out_ch, 3, bias=bias))
    raise ValueError(f"unknown upsample '{mode}' (choose one of: {', '.join(UPSAMPLERS)})")


class UNetGenerator(nn.Module):
    """Encoder-decoder with skip connections by channel concatenation.

    Level i halves the resolution and has ngf·min(2^i, 8) channels; the decoder mirrors it. The innermost
    encoder block and the outermost decoder block have no norm; the output is tanh.
    """

    def __init__(self, in_ch: int, out_ch: int, depth: int, ngf: int = 64, norm: str = "batch",
                 dropout: float = 0.5, upsample: str = "transposed", noise: bool = False):
        super().__init__()
        self.noise = noise
        in_ch += int(noise)
        widths = [ngf * min(2 ** i, 8) for i in range(depth)]
        bias = norm != "batch"
        downs = [nn.Conv2d(in_ch, widths[0], 4, 2, 1, bias=bias)]
        for i in range(1, depth):
            innermost = i == depth - 1
            downs.append(nn.Sequential(nn.LeakyReLU(0.2, True),
                                       nn.Conv2d(widths[i - 1], widths[i], 4, 2, 1, bias=bias or innermost),
                                       nn.Identity() if innermost else norm_layer(norm, widths[i])))
        ups = []
        for i in range(depth):
            in_width = widths[i] if i == depth - 1 else 2 * widths[i]
            if i == 0:
                ups.append(nn.Sequential(nn.ReLU(True), _up(in_width, out_ch, upsample, True), nn.Tanh()))
                continue
            layers = [nn.ReLU(True), _up(in_width, widths[i - 1], upsample, bias), norm_layer(norm, widths[i - 1])]
            # the reference puts dropout in the 8·ngf-wide blocks between the innermost and the outer four
            if dropout and 4 <= i <= depth - 2:
                layers.append(AlwaysDropout(dropout))
            ups.append(nn.Sequential(*layers))
        self.downs = nn.ModuleList(downs)
        self.ups = nn.ModuleList(ups)
        # up block i (i >= 1) outputs widths[i - 1] channels; noise goes in right after its up-conv
        self.noises = nn.ModuleList(NoiseInjection(widths[i - 1]) for i in range(1, depth)) if noise else None

    def _up_block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        block = self.ups[i]
        if self.noises is None or i == 0:
            return block(x)
        x = block[1](block[0](x))  # ReLU, up-conv
        x = self.noises[i - 1](x)
        for layer in list(block)[2:]:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.noise:
            x = torch.cat([x, noise_map(x, None)], 1)
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        x = self._up_block(len(self.ups) - 1, skips[-1])
        for i in range(len(self.ups) - 2, -1, -1):
            x = self._up_block(i, torch.cat([skips[i], x], 1))
        return x


class Model(GanModel):
    name = "pix2pix"
    kinds = ("coarse", "fine")
    network_names = ("G", "D")
    options_type = Options
    loss_names = ("G_gan", "G_l1", "D_real", "D_fake")

    def __init__(self, options: Options, size: tuple[int, int]):
        super().__init__(options, size)
        depth = unet_depth(options, size)
        if options.lambda_fm and not options.num_d:
            raise PriorPathError("pix2pix: lambda_fm needs the multi-scale discriminator (num_d >= 1)")
        self.G = UNetGenerator(1, 1, depth, options.ngf, options.norm, options.dropout, options.upsample,
                               options.noise)
        if options.num_d:
            self.D = MultiscaleDiscriminator(2, options.ndf, options.d_layers, options.norm, options.num_d)
        else:
            self.D = PatchDiscriminator(2, options.ndf, options.d_layers, options.norm)
        init_weights(self)
        self.gan_loss = GANLoss(options.gan_mode)

    @classmethod
    def size_multiple(cls, options: Options, size: tuple[int, int]) -> int:
        return 2 ** unet_depth(options, size)

    def optimizer_groups(self):
        return {"G": list(self.G.parameters()), "D": list(self.D.parameters())}

    def translate(self, coarse: torch.Tensor) -> torch.Tensor:
        """Coarse masks (Bx1xHxW in [-1, 1]) -> fine masks in [-1, 1] (exactly +-1 with ``binary``)."""
        out = self.G(coarse)
        return straight_through_sign(out.float()).to(out.dtype) if self.options.binary else out

    def train_step(self, batch, optimizers):
        coarse, fine = batch["coarse"], batch["fine"]
        with self.autocast():
            fake = self.translate(coarse)
            # D first: real pairs vs generated pairs, halved so D learns at half G's pace (reference)
            d_fake = self.gan_loss(self.D(torch.cat([coarse, fake.detach()], 1)), False)
            d_real = self.gan_loss(self.D(torch.cat([coarse, fine], 1)), True)
        self.step(optimizers["D"], 0.5 * (d_fake + d_real))
        with self.frozen(self.D), self.autocast():
            d_on_fake = self.D(torch.cat([coarse, fake], 1))
            g_gan = self.gan_loss(d_on_fake, True)
            g_l1 = F.l1_loss(fake.float(), fine)
            loss = g_gan + self.options.lambda_l1 * g_l1
            if self.options.lambda_fm:
                with torch.no_grad():
                    d_on_real = self.D(torch.cat([coarse, fine], 1))
                loss = loss + self.options.lambda_fm * feature_matching_loss(d_on_fake, d_on_real)
        self.step(optimizers["G"], loss)
        return {"G_gan": g_gan.item(), "G_l1": g_l1.item(), "D_real": d_real.item(), "D_fake": d_fake.item()}

    @torch.no_grad()
    def preview(self, batch, seed: int = 0):
        with self.seeded(seed):
            fake = self.translate(batch["coarse"])
        return [batch["coarse"], fake, batch["fine"]]
