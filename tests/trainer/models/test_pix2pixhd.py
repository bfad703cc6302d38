"""pix2pixHD: shapes (with and without the local enhancer), sizes, learning on real tiles, VGG weights."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from trainer.errors import PriorPathError
from trainer.models.pix2pixhd import Model, Options, vgg19_features

from .conftest import SIZE, adam, assert_steps_isolated, mean_change

TINY = dict(ngf=4, ndf=4, n_blocks=1, n_blocks_local=1)


@pytest.mark.parametrize("size", [(256, 512), (512, 1024), (96, 160)])
@pytest.mark.parametrize("local", [0, 1])
def test_translate_gives_rgb_of_the_input_size(size, local):
    model = Model(Options(local_enhancers=local, **TINY), size)
    with torch.no_grad():
        rgb = model.translate(torch.rand(1, 1, *size) * 2 - 1)
    assert rgb.shape == (1, 3, *size)
    assert rgb.abs().max() <= 1


def test_size_rule_follows_the_downsamplings_and_the_enhancer():
    with pytest.raises(PriorPathError, match="multiples of 16"):
        Model(Options(), (264, 512))
    with pytest.raises(PriorPathError, match="multiples of 32"):
        Model(Options(local_enhancers=1), (272, 512))
    Model(Options(n_downsampling=2, **TINY), (260, 516))
    with pytest.raises(PriorPathError, match="at least 32"):
        Model(Options(), (16, 64))


def test_output_approaches_the_real_tiles(real_batch):
    torch.manual_seed(0)
    batch = real_batch(("fine", "rgb"))
    model = Model(Options(ngf=8, ndf=8, n_blocks=1, n_downsampling=3), SIZE)

    def l1() -> float:
        with torch.no_grad():
            return (model.translate(batch["fine"]) - batch["rgb"]).abs().mean().item()

    before = l1()
    optimizers = adam(model)
    history = [model.train_step(batch, optimizers) for _ in range(25)]
    first, last = mean_change(history, "G_feat")
    assert last < 0.5 * first, (first, last)
    assert l1() < 0.5 * before
    mask, fake, real = model.preview(batch)
    assert (mask.shape[1], fake.shape[1], real.shape[1]) == (1, 3, 3)
    assert fake.shape == real.shape


def test_local_enhancer_trains():
    torch.manual_seed(0)
    model = Model(Options(local_enhancers=1, n_downsampling=2, **TINY), (32, 64))
    batch = {"fine": torch.rand(1, 1, 32, 64).sign(), "rgb": torch.rand(1, 3, 32, 64) * 2 - 1}
    assert assert_steps_isolated(model, batch) == ["G", "D"]


@pytest.fixture
def vgg_file(tmp_path):
    torch.manual_seed(0)
    net = vgg19_features()
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight)
    path = tmp_path / "vgg19.safetensors"
    save_file({f"features.{k}": v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def test_vgg_loss_with_user_weights(vgg_file):
    torch.manual_seed(0)
    size = (32, 64)
    model = Model(Options(n_downsampling=2, vgg_weights=str(vgg_file), **TINY), size)
    assert all(not p.requires_grad for p in model.vgg.parameters())
    batch = {"fine": torch.rand(1, 1, *size).sign(), "rgb": torch.rand(1, 3, *size) * 2 - 1}
    losses = model.train_step(batch, adam(model))
    assert losses["G_vgg"] > 0
    real = batch["rgb"]
    assert model.vgg(real, real).item() == 0


def test_vgg_weights_missing_or_foreign_give_clear_errors(tmp_path, vgg_file):
    with pytest.raises(PriorPathError, match="not found"):
        Model(Options(vgg_weights=str(tmp_path / "none.safetensors"), **TINY), (64, 64))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x80\x04 not a safetensors file")
    with pytest.raises(PriorPathError, match="not a readable safetensors"):
        Model(Options(vgg_weights=str(junk), **TINY), (64, 64))
    foreign = tmp_path / "foreign.safetensors"
    save_file({"features.0.weight": torch.zeros(8, 3, 3, 3)}, str(foreign))
    with pytest.raises(PriorPathError, match="not VGG19 weights"):
        Model(Options(vgg_weights=str(foreign), **TINY), (64, 64))
