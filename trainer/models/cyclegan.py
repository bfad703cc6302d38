"""CycleGAN: unpaired coarse <-> fine mask translation (paper §2.5, eq. 4-7; Zhu et al. 2017).

Two ResNet generators, G_A: coarse -> fine (the paper's G) and G_B: fine -> coarse (the paper's F), and two
70x70 PatchGANs, D_A judging fine masks (D_Y) and D_B judging coarse masks (D_X). As in the reference code
the GAN terms of eq. 6 are least-squares (LSGAN), the cycle loss of eq. 7 is weighted λ = 10 in both
directions, an identity loss (0.5·λ) keeps a generator from changing masks already in its target domain, and
each discriminator sees a pool of the last 50 generated masks. Coarse and fine masks are drawn independently.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from .base import GanModel, ModelOptions
from .layers import GANLoss, ImagePool, PatchDiscriminator, ResnetGenerator, init_weights


@dataclasses.dataclass(frozen=True)
class Options(ModelOptions):
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9  # residual blocks per generator; the reference uses 6 for 128 px images
    d_layers: int = 3  # 3 = the 70x70 PatchGAN
    norm: str = "instance"
    gan_mode: str = "lsgan"
    lambda_cycle: float = 10.0  # λ of eq. 5, both directions
    lambda_identity: float = 0.5  # identity loss weight, times lambda_cycle; 0 disables it
    pool_size: int = 50  # generated masks kept per discriminator; 0 disables the pool


N_DOWN = 2  # stride-2 convolutions per generator


class Model(GanModel):
    name = "cyclegan"
    kinds = ("coarse", "fine")
    paired = False
    network_names = ("G_A", "G_B", "D_A", "D_B")
    options_type = Options
    loss_names = ("G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B", "D_A", "D_B")

    def __init__(self, options: Options, size: tuple[int, int]):
        super().__init__(options, size)
        o = options
        self.G_A = ResnetGenerator(1, 1, o.ngf, N_DOWN, o.n_blocks, o.norm)
        self.G_B = ResnetGenerator(1, 1, o.ngf, N_DOWN, o.n_blocks, o.norm)
        self.D_A = PatchDiscriminator(1, o.ndf, o.d_layers, o.norm)
        self.D_B = PatchDiscriminator(1, o.ndf, o.d_layers, o.norm)
        init_weights(self)
        self.gan_loss = GANLoss(o.gan_mode)
        self.pool_fine = ImagePool(o.pool_size)  # G_A's outputs, for D_A
        self.pool_coarse = ImagePool(o.pool_size)  # G_B's outputs, for D_B

    @classmethod
    def size_multiple(cls, options: Options, size: tuple[int, int]) -> int:
        return 2 ** N_DOWN

    @classmethod
    def min_side(cls, options: Options, size: tuple[int, int]) -> int:
        # the residual blocks reflect-pad a grid of size/4; the PatchGAN shrinks a side to size/2**d_layers - 2
        return max(2 * 2 ** N_DOWN, 3 * 2 ** options.d_layers)

    def optimizer_groups(self):
        return {"G": [*self.G_A.parameters(), *self.G_B.parameters()],
                "D": [*self.D_A.parameters(), *self.D_B.parameters()]}

    def translate(self, coarse: torch.Tensor) -> torch.Tensor:
        """Coarse masks (Bx1xHxW in [-1, 1]) -> fine masks in [-1, 1] (not thresholded)."""
        return self.G_A(coarse)

    def train_step(self, batch, optimizers):
        o = self.options
        real_a, real_b = batch["coarse"], batch["fine"]
        lam, lam_idt = o.lambda_cycle, o.lambda_cycle * o.lambda_identity
        with self.frozen(self.D_A, self.D_B), self.autocast():
            fake_b = self.G_A(real_a)
            fake_a = self.G_B(real_b)
            g_a = self.gan_loss(self.D_A(fake_b), True)
            g_b = self.gan_loss(self.D_B(fake_a), True)
            cycle_a = F.l1_loss(self.G_B(fake_b).float(), real_a)
            cycle_b = F.l1_loss(self.G_A(fake_a).float(), real_b)
            loss = g_a + g_b + lam * (cycle_a + cycle_b)
            if lam_idt:
                idt_a = F.l1_loss(self.G_A(real_b).float(), real_b)
                idt_b = F.l1_loss(self.G_B(real_a).float(), real_a)
                loss = loss + lam_idt * (idt_a + idt_b)
            else:
                idt_a = idt_b = torch.zeros(())
        self.step(optimizers["G"], loss)

        pooled_b = self.pool_fine.query(fake_b.detach())
        pooled_a = self.pool_coarse.query(fake_a.detach())
        with self.autocast():
            d_a = 0.5 * (self.gan_loss(self.D_A(real_b), True) + self.gan_loss(self.D_A(pooled_b), False))
            d_b = 0.5 * (self.gan_loss(self.D_B(real_a), True) + self.gan_loss(self.D_B(pooled_a), False))
        self.step(optimizers["D"], d_a + d_b)
        values = {"G_A": g_a, "G_B": g_b, "cycle_A": cycle_a, "cycle_B": cycle_b, "idt_A": idt_a,
                  "idt_B": idt_b, "D_A": d_a, "D_B": d_b}
        return {k: v.item() for k, v in values.items()}

    @torch.no_grad()
    def preview(self, batch, seed: int = 0):
        """[coarse, G_A(coarse), fine, G_B(fine)]; coarse and fine need not be a pair."""
        with self.seeded(seed):
            return [batch["coarse"], self.G_A(batch["coarse"]).float(), batch["fine"],
                    self.G_B(batch["fine"]).float()]

    def extra_state(self):
        return {**self.pool_fine.state("pool_fine"), **self.pool_coarse.state("pool_coarse")}

    def load_extra_state(self, tensors):
        device = next(self.parameters()).device
        self.pool_fine.load_state(tensors, "pool_fine", device)
        self.pool_coarse.load_state(tensors, "pool_coarse", device)
