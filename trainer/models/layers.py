"""Building blocks shared by the GAN models: init, norms, discriminators, losses, image pool.

Conventions follow the reference pix2pix/CycleGAN and pix2pixHD code (see docs in REFERENCE-FACTS):
weights from N(0, 0.02), LeakyReLU(0.2) in discriminators, reflection padding in residual generators.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("batch", "instance", "none")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """Batch norm (learned affine, running stats), instance norm (no affine, as in the references) or none."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{kind}' (choose one of: {', '.join(NORMS)})")


def conv_bias(norm: str) -> bool:
    """Batch norm's shift makes a conv bias redundant; instance norm without affine needs the bias."""
    return norm != "batch"


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """Conv/linear weights from N(0, gain), biases 0, batch-norm scales from N(1, gain) (paper §2.8)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


class AlwaysDropout(nn.Module):
    """Dropout that stays on in eval mode: pix2pix's only source of randomness (its noise z)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p, training=True)


class ResidualBlock(nn.Module):
    """Two reflection-padded 3x3 convs with a skip (ResNet generators of CycleGAN and pix2pixHD)."""

    def __init__(self, channels: int, norm: str, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=conv_bias(norm)),
                                   norm_layer(norm, channels), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=conv_bias(norm)),
                   norm_layer(norm, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN: a grid of real/fake logits, each seeing a patch of the input.

    ``n_layers`` 3 gives the 70x70 receptive field of pix2pix. With ``features`` the forward returns
    every block's output (the last is the logit map), which pix2pixHD's feature-matching loss needs.
    """

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch",
                 padding: int = 1, features: bool = False):
        super().__init__()
        self.features = features
        blocks: list[nn.Sequential] = [nn.Sequential(nn.Conv2d(in_channels, ndf, 4, 2, padding),
                                                     nn.LeakyReLU(0.2, True))]
        width = ndf
        for n in range(1, n_layers + 1):
            stride = 2 if n < n_layers else 1
            out = ndf * min(2 ** n, 8)
            blocks.append(nn.Sequential(nn.Conv2d(width, out, 4, stride, padding, bias=conv_bias(norm)),
                                        norm_layer(norm, out), nn.LeakyReLU(0.2, True)))
            width = out
        blocks.append(nn.Sequential(nn.Conv2d(width, 1, 4, 1, padding)))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, list[torch.Tensor]]:
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return outputs if self.features else x


class MultiscaleDiscriminator(nn.Module):
    """``num_d`` PatchGANs on the input and on 2x, 4x ... average-pooled copies (pix2pixHD).

    Returns one list of block outputs per scale, finest first, so the caller can use both the logits
    (each list's last item) and the intermediate features.
    """

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
                 num_d: int = 2):
        super().__init__()
        self.scales = nn.ModuleList(PatchDiscriminator(in_channels, ndf, n_layers, norm, padding=2, features=True)
                                    for _ in range(num_d))
        self.n_layers = n_layers

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        results = []
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            results.append(d(x))
        return results


Prediction = Union[torch.Tensor, Sequence]


class GANLoss(nn.Module):
    """Adversarial loss against a constant real/fake target.

    ``vanilla`` is the cross-entropy of the original GAN (pix2pix, eq. 1); ``lsgan`` the least-squares
    loss (CycleGAN, pix2pixHD). A multi-scale prediction (list of per-scale block lists) is averaged over
    scales, using each scale's last output.
    """

    def __init__(self, mode: str = "vanilla"):
        super().__init__()
        if mode not in ("vanilla", "lsgan"):
            raise ValueError(f"unknown GAN loss '{mode}' (choose vanilla or lsgan)")
        self.mode = mode

    def _single(self, pred: torch.Tensor, real: bool) -> torch.Tensor:
        pred = pred.float()
        target = torch.ones_like(pred) if real else torch.zeros_like(pred)
        if self.mode == "lsgan":
            return F.mse_loss(pred, target)
        return F.binary_cross_entropy_with_logits(pred, target)

    def forward(self, prediction: Prediction, real: bool) -> torch.Tensor:
        if isinstance(prediction, torch.Tensor):
            return self._single(prediction, real)
        preds = [p[-1] if isinstance(p, (list, tuple)) else p for p in prediction]
        return sum(self._single(p, real) for p in preds) / len(preds)


def feature_matching_loss(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]]) -> torch.Tensor:
    """pix2pixHD's discriminator feature matching: L1 between intermediate D features of fake and real,
    weighted 4/(n_layers+1) per layer and 1/num_D per scale (the logits themselves are excluded)."""
    num_d = len(fake)
    total = fake[0][0].new_zeros((), dtype=torch.float32)
    for f_scale, r_scale in zip(fake, real):
        weight = 4.0 / (len(f_scale) - 1) / num_d  # len - 1 == n_layers + 1 feature blocks
        for f, r in zip(f_scale[:-1], r_scale[:-1]):
            total = total + weight * F.l1_loss(f.float(), r.detach().float())
    return total


class ImagePool:
    """A history of generated images (Shrivastava et al.; CycleGAN uses 50).

    Once full, each query returns a stored image with probability 0.5 and stores the new one in its place,
    so the discriminator also sees older generator outputs. Draws use the global torch RNG, which the
    trainer checkpoints, so a resumed run draws the same numbers.
    """

    def __init__(self, size: int = 50):
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size <= 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand(()).item() < 0.5:
                slot = int(torch.randint(0, self.size, ()).item())
                out.append(self.images[slot].clone())
                self.images[slot] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.{i}": t.detach().cpu().contiguous() for i, t in enumerate(self.images)}

    def load_state(self, tensors: dict[str, torch.Tensor], prefix: str, device: torch.device) -> None:
        keys = sorted((k for k in tensors if k.startswith(prefix + ".")), key=lambda k: int(k.rsplit(".", 1)[1]))
        self.images = [tensors[k].to(device) for k in keys]


class ResnetGenerator(nn.Module):
    """The residual generator of CycleGAN (``n_down`` 2) and pix2pixHD's global network (``n_down`` 4).

    Reflect-pad 3 + 7x7 conv (ngf) -> ``n_down`` 3x3 stride-2 convs doubling the width -> ``n_blocks``
    residual blocks -> matching transposed convs (k3 s2 p1, output_padding 1) -> reflect-pad 3 + 7x7 conv
    + tanh. ``body`` ends with ngf channels at full resolution (pix2pixHD's local enhancer sums its own
    features with it and drops ``head``). Sides must be multiples of 2**n_down.
    """

    def __init__(self, in_ch: int, out_ch: int, ngf: int = 64, n_down: int = 2, n_blocks: int = 9,
                 norm: str = "instance", dropout: float = 0.0):
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7, bias=bias),
                                   norm_layer(norm, ngf), nn.ReLU(True)]
        for i in range(n_down):
            w = ngf * 2 ** i
            layers += [nn.Conv2d(w, 2 * w, 3, 2, 1, bias=bias), norm_layer(norm, 2 * w), nn.ReLU(True)]
        layers += [ResidualBlock(ngf * 2 ** n_down, norm, dropout) for _ in range(n_blocks)]
        for i in range(n_down, 0, -1):
            w = ngf * 2 ** i
            layers += [nn.ConvTranspose2d(w, w // 2, 3, 2, 1, output_padding=1, bias=bias),
                       norm_layer(norm, w // 2), nn.ReLU(True)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@contextlib.contextmanager
def evaluating(*nets: nn.Module) -> Iterator[None]:
    """Run networks in eval mode (batch norm on running statistics) and restore their modes afterwards."""
    modes = [(m, m.training) for net in nets for m in net.modules()]
    try:
        for net in nets:
            net.eval()
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def straight_through_sign(x: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Exactly ±1 forward (x >= 0 -> +1); backward is the gradient of tanh(x / tau), a straight-through
    estimator that lets a binary output train its generator (DEPAS's discrete block)."""
    soft = torch.tanh(x / tau)
    hard = torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))
    return hard + (soft - soft.detach())


def noise_map(like: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """A B x 1 x H x W N(0, 1) map; from ``generator`` (on CPU, so seeds are device-independent) if given."""
    shape = (like.shape[0], 1, *like.shape[2:])
    if generator is None:
        return torch.randn(shape, device=like.device, dtype=like.dtype)
    return torch.randn(shape, generator=generator).to(like.device, like.dtype)


class NoiseInjection(nn.Module):
    """x + scale[c] * noise, one noise map shared by all channels, a learned scale per channel (StyleGAN)."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return x + self.scale.to(x.dtype) * noise_map(x, generator)
