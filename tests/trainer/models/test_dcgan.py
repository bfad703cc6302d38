"""DCGAN: the base grid follows the size, seeded generation, sizes, learning on real masks."""
from __future__ import annotations

import pytest
import torch

from trainer.errors import PriorPathError
from trainer.models.dcgan import Model, Options, growth
from trainer.models.layers import evaluating

from .conftest import SIZE, assert_noise_gan_learns, assert_steps_isolated

SMALL = Options(ngf=8, ndf=8, max_width=64)


@pytest.mark.parametrize("size,n_up,grid", [((256, 512), 6, (4, 8)), ((512, 1024), 7, (4, 8)),
                                             ((48, 96), 3, (6, 12)), ((64, 64), 4, (4, 4))])
def test_generator_grows_from_a_base_grid_of_the_target_aspect(size, n_up, grid):
    assert growth(Options(), size) == (n_up, grid)
    model = Model(SMALL, size)
    masks = model.generate(2, seed=0)
    assert masks.shape == (2, 1, *size)
    assert masks.abs().max() <= 1
    assert model.D(masks).shape == (2, 1)


def test_generate_is_reproducible_per_seed():
    torch.manual_seed(0)
    model = Model(SMALL, (32, 64))
    a, b, c = model.generate(3, seed=7), model.generate(3, seed=7), model.generate(3, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    z = model.noise(3)
    with evaluating(model.G), torch.no_grad():  # generate's eval-mode batch norm: a mask ignores its batch
        assert torch.allclose(model.G(z)[:1], model.G(z[:1]), atol=1e-6)
    assert model.G.training
    state = torch.random.get_rng_state()
    model.preview({"fine": torch.zeros(2, 1, 32, 64)}, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_sizes_outside_the_multiple_are_refused_with_the_rule():
    with pytest.raises(PriorPathError, match="multiples of 16"):
        Model(Options(), (100, 200))
    with pytest.raises(PriorPathError, match="at least 4"):
        Model(Options(), (2, 8))


def test_discriminator_learns_and_generator_follows_it(real_batch):
    torch.manual_seed(0)
    assert_noise_gan_learns(Model(SMALL, SIZE), real_batch(("fine",)), g_factor=0.5)


def test_generator_and_discriminator_steps_are_isolated():
    torch.manual_seed(0)
    model = Model(SMALL, (32, 64))
    assert assert_steps_isolated(model, {"fine": torch.rand(2, 1, 32, 64).sign()}) == ["D", "G"]
