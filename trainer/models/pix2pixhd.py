"""pix2pixHD: fine mask -> RGB tile (paper §2.7; Wang et al. 2018).

The global generator is a residual network (reflection padding, instance norm, n_downsampling stride-2
convs, 9 residual blocks, matching transposed convs, tanh). With ``local_enhancers`` = n > 0 the global
network (twice as wide per enhancer, without its last layers) runs on the input average-pooled n times and
each local enhancer sums its own features with the coarser network's output, as in the reference. Two
PatchGANs look at cat(mask, rgb) at full and half resolution (the paper's "two multiscale discriminators").
G minimises LSGAN + λ_feat·feature matching (+ λ_vgg·VGG19 perceptual loss when the user gives VGG19
weights as a safetensors file); D minimises the halved LSGAN loss. As in the reference, G steps before D.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PriorPathError
from .base import GanModel, ModelOptions
from .layers import (GANLoss, MultiscaleDiscriminator, ResidualBlock, ResnetGenerator, conv_bias,
                     feature_matching_loss, init_weights, norm_layer)


@dataclasses.dataclass(frozen=True)
class Options(ModelOptions):
    ngf: int = 64
    ndf: int = 64
    n_downsampling: int = 4  # stride-2 convs of the global generator
    n_blocks: int = 9  # residual blocks of the global generator
    local_enhancers: int = 0  # 1 = pix2pixHD's 2x local enhancer (the global net then runs at half size)
    n_blocks_local: int = 3  # residual blocks per local enhancer
    norm: str = "instance"
    num_d: int = 2  # discriminator scales
    d_layers: int = 3
    gan_mode: str = "lsgan"
    lambda_feat: float = 10.0  # discriminator feature matching; 0 disables it
    vgg_weights: str = ""  # path to VGG19 weights (safetensors, torchvision key names); "" = no VGG loss
    lambda_vgg: float = 10.0


class LocalEnhancer(nn.Module):
    """The global generator on a 2**n-times pooled input, refined by n local branches (coarsest first)."""

    def __init__(self, in_ch: int, out_ch: int, o: Options):
        super().__init__()
        n, bias = o.local_enhancers, conv_bias(o.norm)
        self.global_net = ResnetGenerator(in_ch, out_ch, o.ngf * 2 ** n, o.n_downsampling, o.n_blocks, o.norm).body
        self.downs, self.ups = nn.ModuleList(), nn.ModuleList()
        for i in range(1, n + 1):
            w = o.ngf * 2 ** (n - i)
            self.downs.append(nn.Sequential(
                nn.ReflectionPad2d(3), nn.Conv2d(in_ch, w, 7, bias=bias), norm_layer(o.norm, w), nn.ReLU(True),
                nn.Conv2d(w, 2 * w, 3, 2, 1, bias=bias), norm_layer(o.norm, 2 * w), nn.ReLU(True)))
            up: list[nn.Module] = [ResidualBlock(2 * w, o.norm) for _ in range(o.n_blocks_local)]
            up += [nn.ConvTranspose2d(2 * w, w, 3, 2, 1, output_padding=1, bias=bias), norm_layer(o.norm, w),
                   nn.ReLU(True)]
            self.ups.append(nn.Sequential(*up))
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(o.ngf, out_ch, 7), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = [x]
        for _ in self.downs:
            inputs.append(F.avg_pool2d(inputs[-1], 3, stride=2, padding=1, count_include_pad=False))
        y = self.global_net(inputs[-1])
        for down, up, inp in zip(self.downs, self.ups, reversed(inputs[:-1])):
            y = up(down(inp) + y)
        return self.head(y)


# torchvision's vgg19().features up to relu5_1 (index 29); "M" = 2x2 max pool
VGG19_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512)
VGG_TAPS = (1, 6, 11, 20, 29)  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
VGG_TAP_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


def vgg19_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    width = 3
    for v in VGG19_LAYERS:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(width, v, 3, padding=1), nn.ReLU(False)]
            width = v
    return nn.Sequential(*layers)


class VGGLoss(nn.Module):
    """pix2pixHD's perceptual loss: weighted L1 between VGG19 activations of fake and real images.

    Inputs in [-1, 1] are mapped to ImageNet-normalised [0, 1] (the reference feeds [-1, 1] unnormalised).
    """

    def __init__(self, path: str):
        super().__init__()
        self.net = vgg19_features()
        self.net.load_state_dict(load_vgg19_weights(path, self.net))
        self.net.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.net):
            x = layer(x)
            if i in VGG_TAPS:
                out.append(x)
        return out

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            targets = self.features(real)
        return sum(w * F.l1_loss(f.float(), t.float())
                   for w, f, t in zip(VGG_TAP_WEIGHTS, self.features(fake), targets))


def load_vgg19_weights(path: str, net: nn.Sequential) -> dict[str, torch.Tensor]:
    """The conv weights of a VGG19 safetensors file (keys 'features.N.weight' as torchvision saves them,
    or 'N.weight'); anything else in the file (classifier, deeper layers) is ignored."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = Path(path).expanduser()
    if not file.is_file():
        raise PriorPathError(f"pix2pixhd: VGG19 weights not found at {file} (set vgg_weights to a VGG19 "
                             f"safetensors file, or to '' for no VGG loss)")
    try:
        tensors = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as e:
        raise PriorPathError(f"pix2pixhd: {file} is not a readable safetensors file ({e})") from None
    wanted = net.state_dict()
    state = {}
    for key, param in wanted.items():
        value = tensors.get(f"features.{key}", tensors.get(key))
        if value is None or value.shape != param.shape:
            found = "missing" if value is None else f"shape {tuple(value.shape)}"
            raise PriorPathError(f"pix2pixhd: {file} is not VGG19 weights: 'features.{key}' expected "
                                 f"{tuple(param.shape)}, {found}")
        state[key] = value.float()
    return state


class Model(GanModel):
    name = "pix2pixhd"
    kinds = ("fine", "rgb")
    network_names = ("G", "D")
    options_type = Options
    loss_names = ("G_gan", "G_feat", "G_vgg", "D_real", "D_fake")

    def __init__(self, options: Options, size: tuple[int, int]):
        super().__init__(options, size)
        o = options
        if o.local_enhancers:
            self.G = LocalEnhancer(1, 3, o)
        else:
            self.G = ResnetGenerator(1, 3, o.ngf, o.n_downsampling, o.n_blocks, o.norm)
        self.D = MultiscaleDiscriminator(4, o.ndf, o.d_layers, o.norm, o.num_d)
        init_weights(self)
        self.gan_loss = GANLoss(o.gan_mode)
        self.vgg = VGGLoss(o.vgg_weights) if o.vgg_weights else None

    @classmethod
    def size_multiple(cls, options: Options, size: tuple[int, int]) -> int:
        return 2 ** (options.n_downsampling + options.local_enhancers)

    @classmethod
    def min_side(cls, options: Options, size: tuple[int, int]) -> int:
        return 2 * cls.size_multiple(options, size)  # residual blocks reflect-pad the innermost grid

    def optimizer_groups(self):
        return {"G": list(self.G.parameters()), "D": list(self.D.parameters())}

    def translate(self, fine_mask: torch.Tensor) -> torch.Tensor:
        """Fine masks (Bx1xHxW in [-1, 1]) -> RGB tiles (Bx3xHxW in [-1, 1])."""
        return self.G(fine_mask)

    def train_step(self, batch, optimizers):
        o = self.options
        mask, real = batch["fine"], batch["rgb"]
        real_pair = torch.cat([mask, real], 1)
        with self.frozen(self.D), self.autocast():
            fake = self.G(mask)
            pred_fake = self.D(torch.cat([mask, fake], 1))
            g_gan = self.gan_loss(pred_fake, True)
            loss = g_gan
            g_feat = g_vgg = torch.zeros(())
            if o.lambda_feat:
                g_feat = feature_matching_loss(pred_fake, self.D(real_pair))
                loss = loss + o.lambda_feat * g_feat
            if self.vgg is not None and o.lambda_vgg:
                g_vgg = self.vgg(fake, real)
                loss = loss + o.lambda_vgg * g_vgg
        self.step(optimizers["G"], loss)

        with self.autocast():
            d_fake = self.gan_loss(self.D(torch.cat([mask, fake.detach()], 1)), False)
            d_real = self.gan_loss(self.D(real_pair), True)
        self.step(optimizers["D"], 0.5 * (d_fake + d_real))
        return {"G_gan": g_gan.item(), "G_feat": g_feat.item(), "G_vgg": g_vgg.item(),
                "D_real": d_real.item(), "D_fake": d_fake.item()}

    @torch.no_grad()
    def preview(self, batch, seed: int = 0):
        with self.seeded(seed):
            fake = self.translate(batch["fine"]).float()
        return [batch["fine"], fake, batch["rgb"]]
