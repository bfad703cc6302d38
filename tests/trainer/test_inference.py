"""The inference engine on real (small) checkpoints: sizes, binarity, seeds, tiling, threads, bad input."""
from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest
import torch

from trainer.errors import Cancelled, PriorPathError
from trainer.inference import Engine, _ramp, _starts, check_mask
from trainer.jobs import CancelToken

from .helpers import read_png


@pytest.fixture(scope="module")
def coarse(sample_patches) -> np.ndarray:
    """A real coarse mask (256x512) with tissue and air."""
    for p in sorted((sample_patches / "coarse").glob("*.png")):
        m = read_png(p)
        if 0.3 < (m > 0).mean() < 0.8:
            return m
    raise AssertionError("no mixed coarse mask in the sample")


@pytest.mark.parametrize("mask_model", ["analogy", "pix2pix"])
@pytest.mark.parametrize("shape", [(256, 512), (70, 135), (300, 200), (16, 16)])
def test_outputs_have_the_input_size_and_fine_masks_are_binary(engine_models, coarse, mask_model, shape):
    engine = Engine(engine_models[mask_model], engine_models["pix2pixhd"], device="cpu")
    mask = np.ascontiguousarray(np.resize(coarse, shape))  # tiles the real mask to any shape
    fine, rgb = engine.generate(mask, seed=3)
    assert fine.shape == shape and fine.dtype == np.uint8
    assert set(np.unique(fine).tolist()) <= {0, 255}
    assert rgb.shape == (*shape, 3) and rgb.dtype == np.uint8


@pytest.mark.parametrize("mask_model", ["analogy", "pix2pix"])
def test_the_same_seed_repeats_and_another_seed_varies(engine_models, coarse, mask_model):
    engine = Engine(engine_models[mask_model], "none", device="cpu")
    a, b, c = engine.fine(coarse, 1), engine.fine(coarse, 1), engine.fine(coarse, 2)
    assert np.array_equal(a, b)
    assert (a != c).mean() > 0.001


def test_a_seed_gives_the_same_mask_whatever_ran_before(engine_models, coarse):
    engine = Engine(engine_models["pix2pix"], "none", device="cpu")
    first = engine.fine(coarse, 5)
    torch.rand(1000)  # disturb the global RNG
    engine.fine(coarse, 9)
    assert np.array_equal(engine.fine(coarse, 5), first)


def test_analogy_copies_real_fine_texture(engine_models, coarse):
    """Every 16x16 block of its output is a block of a real fine mask it stored."""
    engine = Engine(engine_models["analogy"], "none", device="cpu")
    fine = engine.fine(coarse, 0)
    stored = {b.numpy().tobytes() for b in engine.mask.module.fine_blocks}
    blocks = fine.reshape(16, 16, 32, 16).transpose(0, 2, 1, 3).reshape(-1, 16, 16) > 0
    assert all(b.tobytes() in stored for b in blocks)
    assert (fine != coarse).mean() > 0.01  # it does change the coarse mask


def test_tiles_are_blended_without_seams(engine_models):
    """With a per-pixel network, tiled and whole-image outputs must agree exactly; a seam would show."""
    engine = Engine("none", engine_models["pix2pixhd"], device="cpu", tile="always")
    conv = torch.nn.Conv2d(1, 3, 1)
    engine.rgb_model.module.translate = lambda x: torch.tanh(conv(x))
    rng = np.random.default_rng(0)
    mask = np.where(rng.random((300, 700)) > 0.5, 255, 0).astype(np.uint8)
    tiled = engine.rgb(mask)
    engine.tile = "never"
    whole = engine.rgb(mask)
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1


def test_tile_layout_covers_the_image_with_overlap():
    assert _starts(700, 128, 64) == [0, 64, 128, 192, 256, 320, 384, 448, 512, 572]
    assert _starts(100, 128, 64) == [0]
    ramp = _ramp(256, 64)
    assert ramp.min() > 0 and ramp[64] == 1 and torch.all(ramp[:64][1:] > ramp[:64][:-1])


def test_large_inputs_are_tiled_and_report_progress(engine_models):
    engine = Engine(engine_models["pix2pix"], "none", device="cpu")  # trained at 64x128: 200x400 is tiled
    calls = []
    out = engine.fine(np.full((200, 400), 255, np.uint8), 0, progress=lambda d, t, m: calls.append((d, t)))
    assert out.shape == (200, 400)
    assert calls[-1][0] == calls[-1][1] > 1
    # the overlap shrinks with a small model's tile (a quarter of it): 4x4 tiles, not one per pixel step
    assert calls[-1][1] == 16


def test_cancel_stops_a_tiled_run(engine_models):
    engine = Engine(engine_models["pix2pix"], "none", device="cpu")
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        engine.fine(np.full((200, 400), 255, np.uint8), 0, cancel=token)


def test_threads_share_one_engine(engine_models, coarse):
    engine = Engine(engine_models["pix2pix"], "none", device="cpu")
    coarse = np.ascontiguousarray(coarse[:64, :128])  # the model's own size: one forward per call
    expected = {s: engine.fine(coarse, s) for s in range(4)}
    results, errors = {}, []

    def work(seed):
        try:
            results[seed] = engine.fine(coarse, seed)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(np.array_equal(results[s], expected[s]) for s in range(4))


@pytest.mark.parametrize("mask, fragment", [
    (np.arange(64 * 64, dtype=np.uint8).reshape(64, 64), "not a binary mask"),
    (np.zeros((8, 300), np.uint8), "outside the sizes"),
    (np.zeros((64, 64, 3), np.uint8), "single-channel"),
])
def test_bad_masks_are_refused_with_the_reason(mask, fragment):
    with pytest.raises(PriorPathError, match=fragment):
        check_mask(mask, "sketch.png")


def test_missing_foreign_and_wrong_role_checkpoints_are_refused(engine_models, tmp_path):
    with pytest.raises(PriorPathError, match="checkpoint not found"):
        Engine(tmp_path / "nope.safetensors", "none", device="cpu")
    with pytest.raises(PriorPathError, match="not a coarse mask -> fine mask model"):
        Engine(engine_models["pix2pixhd"], "none", device="cpu")
    with pytest.raises(PriorPathError, match="not a fine mask -> RGB model"):
        Engine("none", engine_models["pix2pix"], device="cpu")


class _Boom:
    def __reduce__(self):
        return (open, ("/tmp/priorpath-pwned-by-pickle", "w"))


@pytest.mark.parametrize("name", ["evil.safetensors", "evil.pt"])
def test_a_hostile_pickle_checkpoint_is_never_unpickled(tmp_path, name):
    marker = "/tmp/priorpath-pwned-by-pickle"
    import os

    if os.path.exists(marker):
        os.remove(marker)
    path = tmp_path / name
    path.write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(PriorPathError, match="pickle|not a readable safetensors"):
        Engine(path, "none", device="cpu")
    assert not os.path.exists(marker)


def test_a_compacted_checkpoint_is_smaller_and_generates_nearly_the_same(engine_models, coarse, tmp_path):
    from trainer.checkpoint import compact_checkpoint

    sizes = compact_checkpoint(engine_models["pix2pixhd"], tmp_path / "rgb.safetensors")
    assert sizes["after"] < sizes["before"] / 3  # no Adam moments, half-size weights
    crop = coarse[:64, :128]  # the model's own size: one forward pass, no tile blending to average errors out
    full = Engine("none", engine_models["pix2pixhd"], device="cpu").rgb(crop, 0)
    small = Engine("none", tmp_path / "rgb.safetensors", device="cpu").rgb(crop, 0)
    assert np.abs(full.astype(int) - small.astype(int)).mean() < 2
