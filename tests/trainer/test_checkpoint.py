"""Checkpoints: round trip, and a clear error for every kind of bad file — never code execution."""
from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.errors import PriorPathError
from trainer.models import model_class

SIZE = (64, 128)


def tiny_pix2pix(ngf=8):
    cls = model_class("pix2pix")
    return cls(cls.options_type(ngf=ngf, ndf=8), SIZE)


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = tiny_pix2pix()
    opts = {n: torch.optim.Adam(p, 2e-4, betas=(0.5, 0.999)) for n, p in model.optimizer_groups().items()}
    batch = {"coarse": torch.rand(1, 1, *SIZE) * 2 - 1, "fine": torch.rand(1, 1, *SIZE) * 2 - 1}
    model.train_step(batch, opts)
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, model, {"model": "pix2pix"}, {"step": 1}, opts)
    return path, model


def test_round_trip_restores_weights_options_and_optimizer_moments(saved):
    path, model = saved
    ckpt = load_checkpoint(path)
    assert ckpt.model_name == "pix2pix" and ckpt.size == SIZE and ckpt.state == {"step": 1}
    assert ckpt.options["ngf"] == 8 and set(ckpt.optimizer_groups) == {"G", "D"}
    rebuilt = ckpt.build_model()
    for (k, a), (_, b) in zip(model.state_dict().items(), rebuilt.state_dict().items()):
        assert torch.equal(a, b), k
    assert any(k.startswith("optim.G.") and k.endswith("exp_avg_sq") for k in ckpt.tensors)
    assert not list(path.parent.glob(".*tmp-*"))  # the temporary was renamed into place


class Hostile:
    """Unpickling this would create a file: proof that a loader executed code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("name", ["evil.pt", "evil.pth", "evil.safetensors", "evil.ckpt"])
def test_pickles_are_refused_without_running_them(tmp_path, name):
    marker = tmp_path / "pwned"
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"state_dict": Hostile(marker)}, protocol=4))
    with pytest.raises(PriorPathError, match="pickle-based PyTorch file; PriorPath never unpickles"):
        load_checkpoint(path)
    assert not marker.exists()


def test_torch_save_zip_files_are_refused(tmp_path):
    path = tmp_path / "weights.bin.safetensors"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(PriorPathError, match="pickle-based"):
        load_checkpoint(path)


def test_corrupt_and_truncated_files(saved, tmp_path):
    path, _ = saved
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(PriorPathError, match="not a readable safetensors file"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(PriorPathError, match="not a readable safetensors file"):
        load_checkpoint(garbage)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(PriorPathError, match="not a readable safetensors file"):
        load_checkpoint(empty)
    with pytest.raises(PriorPathError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_foreign_safetensors_and_foreign_architectures(saved, tmp_path):
    foreign = tmp_path / "other.safetensors"
    save_file({"conv1.weight": torch.zeros(3, 3)}, str(foreign))
    with pytest.raises(PriorPathError, match="not a PriorPath checkpoint"):
        load_checkpoint(foreign)
    # a PriorPath checkpoint whose header claims another width than its tensors hold
    path, _ = saved
    wider = tmp_path / "wider.safetensors"
    save_checkpoint(wider, tiny_pix2pix(ngf=16), {}, {"step": 0})
    ckpt = load_checkpoint(wider)
    ckpt.options["ngf"] = 8
    with pytest.raises(PriorPathError, match=r"do not fit network G of pix2pix: .*wrong shape"):
        ckpt.build_model()
    ckpt = load_checkpoint(path)
    ckpt.tensors = {k: v for k, v in ckpt.tensors.items() if not k.startswith("net.D.blocks.0")}
    with pytest.raises(PriorPathError, match=r"network D of pix2pix: 2 missing"):
        ckpt.build_model()


def test_a_temporary_file_that_cannot_be_created_is_a_clear_error(tmp_path, monkeypatch):
    import errno
    import tempfile

    from trainer.fileio import atomic_write_bytes

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    with pytest.raises(PriorPathError, match="no space left on device"):
        atomic_write_bytes(tmp_path / "x.bin", b"data")
