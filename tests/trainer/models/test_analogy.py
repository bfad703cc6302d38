"""The example-based analogy model: collection, the reservoir, packing, both synthesis modes, and quilting
with overlapping blocks and minimum-error cuts."""
from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainer.errors import PriorPathError
from trainer.models.analogy import Model, Options, min_cut, quilt

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
    with pytest.raises(PriorPathError, match="overlap must be 0 to block / 2"):
        Model(Options(overlap=9), SIZE)


# sha256 of the output (tissue = 1) of the model before overlap existed, seed 3: overlap 0 must keep it
FIXED_GRID = {("copy", 64, 128): "fe461377047f5fa1", ("copy", 50, 70): "fbf3a80a4d04b0ec",
              ("residual", 64, 128): "48fec312719598bd", ("residual", 50, 70): "76dc7ac880b36115"}


@pytest.mark.parametrize("mode", ["copy", "residual"])
def test_no_overlap_gives_exactly_what_the_fixed_grid_gave(real_batch, mode):
    model = collected(real_batch, windows_per_patch=40, mode=mode)
    coarse = real_batch(("coarse",), n=2)["coarse"]
    for h, w in ((64, 128), (50, 70)):
        out = model.translate(coarse[..., :h, :w], torch.Generator().manual_seed(3))
        assert hashlib.sha256((out > 0).numpy().tobytes()).hexdigest()[:16] == FIXED_GRID[mode, h, w]


@pytest.mark.parametrize("mode,overlap", [("copy", 4), ("copy", 8), ("residual", 4)])
def test_quilted_synthesis_is_binary_sized_like_its_input_and_seeded(real_batch, mode, overlap):
    model = collected(real_batch, windows_per_patch=40, mode=mode).with_options(overlap=overlap)
    coarse = F.interpolate(real_batch(("coarse",), n=2)["coarse"], size=(100, 70), mode="nearest")
    a = model.translate(coarse, torch.Generator().manual_seed(1))
    b = model.translate(coarse, torch.Generator().manual_seed(1))
    c = model.translate(coarse, torch.Generator().manual_seed(2))
    assert a.shape == coarse.shape and set(a.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(a, b) and (a != c).float().mean() > 0.01
    agreement = ((a > 0) == (coarse > 0)).float().mean()
    assert 0.75 < agreement < 1.0
    tiny = model.translate(coarse[..., :9, :13], torch.Generator().manual_seed(1))  # less than one block
    assert tiny.shape == (2, 1, 9, 13) and set(tiny.unique().tolist()) <= {-1.0, 1.0}


def seam_ratio(masks: torch.Tensor, period: int) -> float:
    """Pixel pairs that differ across lines at one phase modulo ``period`` (the worst phase), against all
    lines: about 1 for texture without a grid, well above 1 where blocks meet on straight lines."""
    across = (masks[..., :, 1:] != masks[..., :, :-1]).float().mean((0, 1, 2))
    down = (masks[..., 1:, :] != masks[..., :-1, :]).float().mean((0, 1, 3))
    lines = torch.cat([across, down])
    worst = max(torch.cat([across[p::period], down[p::period]]).mean() for p in range(period))
    return float(worst / lines.mean())


def test_overlapping_blocks_leave_no_seams_on_their_grid(real_batch):
    """Uniform tissue with an oval hole: the fixed grid shows its 16 px lines, quilted blocks do not."""
    model = collected(real_batch, windows_per_patch=40)
    yy, xx = torch.meshgrid(torch.arange(128), torch.arange(256), indexing="ij")
    hole = ((yy - 64) / 40) ** 2 + ((xx - 128) / 70) ** 2 < 1
    coarse = torch.where(hole, -1.0, 1.0)[None, None].expand(4, 1, -1, -1)
    for overlap in (0, 4, 8):
        quilted = model.with_options(overlap=overlap)
        out = torch.cat([quilted.translate(coarse, torch.Generator().manual_seed(s)) > 0 for s in (0, 1)])
        ratio = seam_ratio(out, 16 - overlap)
        assert (ratio > 2.0) if overlap == 0 else (ratio < 1.5), (overlap, ratio)


def test_min_cut_finds_the_cheapest_connected_path():
    known = np.ones((6, 4), np.int32)
    path = [0, 1, 2, 2, 3, 2]
    known[np.arange(6), path] = 0
    assert min_cut(known).tolist() == path
    surfaces = np.random.default_rng(0).integers(0, 3, (20, 5, 3))  # every path checked by brute force
    found = min_cut(surfaces)
    for surface, cut in zip(surfaces, found):
        assert all(abs(a - b) <= 1 for a, b in zip(cut[1:], cut[:-1]))
        best = min(sum(surface[r, c] for r, c in enumerate(p)) for p in itertools.product(range(3), repeat=5)
                   if all(abs(a - b) <= 1 for a, b in zip(p[1:], p[:-1])))
        assert sum(surface[r, c] for r, c in enumerate(cut)) == best


def test_quilt_shows_every_pixel_once_and_picks_the_agreeing_candidate():
    rng = np.random.default_rng(1)
    candidates = rng.random((2, 3, 4, 3, 16, 16)) < 0.5
    chosen, shown = quilt(candidates, 4, rng.random((2, 3, 4, 3)), tolerance=0)
    cover = F.fold(torch.from_numpy(shown).float().reshape(2, 12, 256).transpose(1, 2), (3 * 12 + 4, 4 * 12 + 4),
                   16, stride=12)
    assert torch.equal(cover, torch.ones_like(cover))
    # the right-hand block has one candidate that continues its left neighbour in the overlap
    left = rng.random((16, 16)) < 0.5
    options = rng.random((1, 1, 2, 4, 16, 16)) < 0.5
    options[0, 0, 0] = left
    options[0, 0, 1, 2, :, :4] = left[:, 12:]
    for seed in range(5):
        chosen, _ = quilt(options, 4, np.random.default_rng(seed).random((1, 1, 2, 4)), tolerance=0)
        assert np.array_equal(chosen[0, 0, 1], options[0, 0, 1, 2])


def test_overlap_can_be_given_to_a_model_collected_without_it(real_batch):
    model = collected(real_batch, windows_per_patch=10)
    quilted = model.with_options(overlap="6", tolerance="2")  # as a command line gives them
    assert quilted.options.overlap == 6 and quilted.options.tolerance == 2.0
    assert quilted.fine_blocks is model.fine_blocks and model.options.overlap == 0
    with pytest.raises(PriorPathError, match="cannot change after collection"):
        model.with_options(block=8)
