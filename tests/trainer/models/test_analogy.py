"""The example-based analogy model: collection, the reservoir, packing, and both synthesis modes."""
from __future__ import annotations

import pytest
import torch

from trainer.errors import PriorPathError
from trainer.models.analogy import Model, Options

from .conftest import SIZE


def collected(real_batch, **options) -> Model:
    model = Model(Options(**options), SIZE)
    batch = real_batch(("coarse", "fine"), n=4)
    torch.manual_seed(0)
    for _ in range(3):
        model.train_step(batch, {})
    return model


def test_collection_keeps_a_uniform_sample_under_the_cap(real_batch):
    model = collected(real_batch, windows_per_patch=10, max_windows=50)
    assert len(model.fine_blocks) == len(model.coarse_windows) == 50
    assert model.seen == 3 * 4 * 10
    assert model.coarse_windows.shape[1:] == (32, 32) and model.fine_blocks.shape[1:] == (16, 16)


def test_the_index_survives_packing(real_batch):
    model = collected(real_batch, windows_per_patch=10)
    again = Model(model.options, SIZE)
    again.load_extra_state(model.extra_state())
    assert torch.equal(again.coarse_windows, model.coarse_windows)
    assert torch.equal(again.fine_blocks, model.fine_blocks)
    assert again.seen == model.seen


def test_stored_fine_blocks_sit_inside_their_coarse_windows(real_batch):
    """The fine block of a window is the real fine mask under the window's centre: they mostly agree."""
    model = collected(real_batch, windows_per_patch=20)
    centres = model.coarse_windows[:, 8:24, 8:24]
    assert (centres == model.fine_blocks).float().mean() > 0.8


@pytest.mark.parametrize("mode", ["copy", "residual"])
def test_synthesis_is_binary_seeded_and_follows_the_sketch(real_batch, mode):
    model = collected(real_batch, windows_per_patch=40, mode=mode)
    coarse = real_batch(("coarse",), n=2)["coarse"]
    a = model.translate(coarse, torch.Generator().manual_seed(1))
    b = model.translate(coarse, torch.Generator().manual_seed(1))
    c = model.translate(coarse, torch.Generator().manual_seed(2))
    assert a.shape == coarse.shape and set(a.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(a, b) and not torch.equal(a, c)
    agreement = ((a > 0) == (coarse > 0)).float().mean()
    assert 0.75 < agreement < 1.0  # the sketch's layout, with texture of its own


def test_an_empty_model_and_bad_options_are_refused(real_batch):
    with pytest.raises(PriorPathError, match="no windows yet"):
        Model(Options(), SIZE).translate(real_batch(("coarse",), n=1)["coarse"])
    with pytest.raises(PriorPathError, match="unknown mode"):
        Model(Options(mode="blend"), SIZE)
    with pytest.raises(PriorPathError, match="multiple of 4"):
        Model(Options(block=10), SIZE)
