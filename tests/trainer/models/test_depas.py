"""DEPAS (our interpretation): binary outputs, the straight-through gradient, spatial noise, learning."""
from __future__ import annotations

import pytest
import torch

from trainer.errors import PriorPathError
from trainer.models.depas import Model, NoiseInjection, Options
from trainer.models.layers import straight_through_sign

from .conftest import SIZE, assert_noise_gan_learns, assert_steps_isolated

SMALL = Options(ngf=8, ndf=8, max_width=64)


def _binary(x: torch.Tensor) -> bool:
    return bool(((x == 1) | (x == -1)).all())


@pytest.mark.parametrize("size", [(256, 512), (512, 1024), (48, 96)])
def test_masks_are_exactly_binary_at_every_size(size):
    model = Model(SMALL, size)
    masks = model.generate(2, seed=0)
    assert masks.shape == (2, 1, *size) and _binary(masks)
    with torch.no_grad():
        assert _binary(model.G(model.noise(2)))  # training mode too


def test_straight_through_sign_is_hard_forward_and_smooth_backward():
    x = torch.linspace(-2, 2, 41, requires_grad=True)
    y = straight_through_sign(x, tau=0.5)
    assert _binary(y) and torch.equal(y, torch.where(x >= 0, 1.0, -1.0))
    y.sum().backward()
    assert torch.allclose(x.grad, (1 - torch.tanh(x.detach() / 0.5) ** 2) / 0.5, atol=1e-6)


def test_gradient_reaches_every_generator_parameter():
    torch.manual_seed(0)
    model = Model(SMALL, (32, 64))
    masks = model.G(model.noise(2))
    (masks * torch.randn_like(masks)).sum().backward()
    for name, p in model.G.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert sum(isinstance(m, NoiseInjection) for m in model.G.modules()) == len(model.G.norms) >= 3


def test_spatial_noise_varies_masks_of_one_noise_vector():
    torch.manual_seed(0)
    model = Model(SMALL, (32, 64))
    for m in model.G.modules():
        if isinstance(m, NoiseInjection):
            m.scale.data.fill_(1.0)
    z = model.noise(1).expand(2, -1, -1, -1)
    with torch.no_grad():
        a, b = model.G(z)
    assert not torch.equal(a, b)


def test_generate_is_reproducible_per_seed():
    torch.manual_seed(0)
    model = Model(SMALL, (32, 64))
    assert torch.equal(model.generate(3, seed=7), model.generate(3, seed=7))
    assert not torch.equal(model.generate(3, seed=7), model.generate(3, seed=8))


def test_sizes_outside_the_multiple_are_refused_with_the_rule():
    with pytest.raises(PriorPathError, match="multiples of 64"):
        Model(Options(), (256, 500))


def test_discriminators_learn_and_generator_follows_them(real_batch):
    torch.manual_seed(0)
    # against fixed discriminators and fixed noise (z and the spatial maps) the generator's loss must fall
    assert_noise_gan_learns(Model(SMALL, SIZE), real_batch(("fine",)), g_factor=0.75, noise_seed=7)


def test_generator_and_discriminator_steps_are_isolated():
    torch.manual_seed(0)
    model = Model(SMALL, (32, 64))
    assert assert_steps_isolated(model, {"fine": torch.rand(2, 1, 32, 64).sign()}) == ["D", "G"]
