"""CycleGAN: shapes, sizes, learning on real masks, the image pools and step isolation."""
from __future__ import annotations

import pytest
import torch

from trainer.errors import PriorPathError
from trainer.models.cyclegan import Model, Options

from .conftest import SIZE, adam, assert_steps_isolated, mean_change

SMALL = Options(ngf=8, ndf=8, n_blocks=1)


@pytest.mark.parametrize("size", [(256, 512), (512, 1024), (40, 88)])
def test_generators_keep_the_input_shape(size):
    model = Model(Options(ngf=4, ndf=4, n_blocks=1), size)
    x = torch.rand(1, 1, *size) * 2 - 1
    with torch.no_grad():
        fine, coarse = model.translate(x), model.G_B(x)
    assert fine.shape == coarse.shape == (1, 1, *size)
    assert fine.abs().max() <= 1


def test_sizes_outside_the_multiple_are_refused_with_the_rule():
    with pytest.raises(PriorPathError, match="multiples of 4"):
        Model(Options(), (254, 512))
    with pytest.raises(PriorPathError, match="at least 24"):
        Model(Options(), (16, 64))


def test_cycle_loss_falls_on_real_masks(real_batch):
    torch.manual_seed(0)
    batch = real_batch(("coarse", "fine"))
    model = Model(SMALL, SIZE)
    optimizers = adam(model)
    history = [model.train_step(batch, optimizers) for _ in range(20)]
    first, last = mean_change(history, "cycle_A", "cycle_B")
    assert last < 0.5 * first, (first, last)
    assert set(history[0]) == set(Model.loss_names)
    preview = model.preview(batch, seed=1)
    assert [p.shape[1] for p in preview] == [1, 1, 1, 1]
    assert all(p.shape[2:] == SIZE and p.abs().max() <= 1 for p in preview)


def test_pools_round_trip_through_extra_state():
    torch.manual_seed(0)
    size = (32, 32)
    model = Model(Options(ngf=4, ndf=4, n_blocks=1, pool_size=3), size)
    optimizers = adam(model)
    batch = {"coarse": torch.rand(2, 1, *size) * 2 - 1, "fine": torch.rand(2, 1, *size) * 2 - 1}
    for _ in range(2):
        model.train_step(batch, optimizers)
    state = model.extra_state()
    assert sorted(state) == [f"pool_coarse.{i}" for i in range(3)] + [f"pool_fine.{i}" for i in range(3)]
    restored = Model(Options(ngf=4, ndf=4, n_blocks=1, pool_size=3), size)
    restored.load_extra_state({k: v.clone() for k, v in state.items()})
    for pool, other in ((model.pool_fine, restored.pool_fine), (model.pool_coarse, restored.pool_coarse)):
        assert len(other.images) == 3
        assert all(torch.equal(a, b) for a, b in zip(pool.images, other.images))
    # a full pool answers from its history: the same draws give the same images
    new = torch.rand(4, 1, *size)
    torch.manual_seed(5)
    expected = model.pool_fine.query(new)
    torch.manual_seed(5)
    assert torch.equal(restored.pool_fine.query(new), expected)


def test_generator_and_discriminator_steps_are_isolated():
    torch.manual_seed(0)
    model = Model(Options(ngf=4, ndf=4, n_blocks=1), (32, 32))
    batch = {"coarse": torch.rand(1, 1, 32, 32) * 2 - 1, "fine": torch.rand(1, 1, 32, 32) * 2 - 1}
    assert assert_steps_isolated(model, batch) == ["G", "D"]
