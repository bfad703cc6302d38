"""Fixtures for the model tests: real patches cut from the bundled sample with the data pipeline."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import torch

from trainer.data.dataset import PairedMaskDataset

SIZE = (64, 128)  # working size of the training tests


@pytest.fixture(scope="session")
def prepared(sample_patches) -> Path:
    return sample_patches


@pytest.fixture(scope="session")
def real_batch(prepared) -> Callable[..., dict[str, torch.Tensor]]:
    """load(kinds, n=2): a fixed batch of the first n patches (manifest order) whose fine mask is 40-90 %
    tissue, so both tissue and background are in every mask; float tensors in [-1, 1] at SIZE."""
    full = PairedMaskDataset(prepared, size=SIZE, kinds=("fine",))
    chosen = [s for i, s in enumerate(full.stems) if 0.4 <= (full[i]["fine"] > 0).float().mean().item() <= 0.9]

    def load(kinds, n: int = 2) -> dict[str, torch.Tensor]:
        ds = PairedMaskDataset(prepared, stems=chosen[:n], size=SIZE, kinds=kinds)
        items = [ds[i] for i in range(len(ds))]
        return {k: torch.stack([it[k] for it in items]) for k in kinds}

    assert len(chosen) >= 4
    return load


class RecordingSGD(torch.optim.SGD):
    """SGD that notes, when it steps, the gradient of every parameter of the model (None if unset)."""

    def __init__(self, params, name: str, model: torch.nn.Module, log: list, lr: float = 1e-3):
        super().__init__(params, lr=lr)
        self.name, self.model, self.log = name, model, log

    def step(self, closure=None):
        self.log.append((self.name, {n: None if p.grad is None else p.grad.clone()
                                     for n, p in self.model.named_parameters()}))
        return super().step(closure)


def assert_steps_isolated(model, batch) -> list[str]:
    """One train_step from fresh gradients: when the first optimizer steps, no parameter outside its group
    has a gradient (the other networks were frozen or fed detached inputs), and the second step's backward
    leaves the first group's gradients as they were. Returns the optimizer order."""
    groups = model.optimizer_groups()
    names = {id(p): n for n, p in model.named_parameters()}
    members = {g: {names[id(p)] for p in ps} for g, ps in groups.items()}
    network_params = {n for n, p in model.named_parameters() if n.split(".")[0] in model.network_names}
    assert set().union(*members.values()) == network_params, "optimizer groups must cover every network"
    assert sum(len(m) for m in members.values()) == len(network_params), "optimizer groups overlap"
    log: list = []
    model.zero_grad(set_to_none=True)
    model.train_step(batch, {g: RecordingSGD(ps, g, model, log) for g, ps in groups.items()})
    (first, grads1), (second, grads2) = log
    for n in network_params - members[first]:
        assert grads1[n] is None, f"{n} got a gradient in the {first} step"
    for n in members[first]:
        assert grads1[n] is not None, f"{n} got no gradient in the {first} step"
        assert torch.equal(grads1[n], grads2[n]), f"the {second} step changed {n}'s gradient"
    for n in members[second]:
        assert grads2[n] is not None, f"{n} got no gradient in the {second} step"
    return [first, second]


def mean_change(history: list[dict[str, float]], *keys: str, window: int = 5) -> tuple[float, float]:
    """Mean of the summed losses over the first and the last ``window`` steps."""
    totals = [sum(h[k] for k in keys) for h in history]
    return sum(totals[:window]) / window, sum(totals[-window:]) / window


def adam(model, lr: float = 1e-3, **lrs: float) -> dict[str, torch.optim.Optimizer]:
    """Adam per optimizer group (paper betas); ``lrs`` overrides a group's rate (0 freezes it)."""
    return {g: torch.optim.Adam(ps, lrs.get(g, lr), betas=(0.5, 0.999)) for g, ps in model.optimizer_groups().items()}


def assert_noise_gan_learns(model, batch, g_factor: float, noise_seed=None, steps: int = 20) -> None:
    """D's loss on real vs generated masks halves; then, against D frozen (learning rate 0), G's loss falls
    below ``g_factor`` of its start. ``noise_seed`` reseeds before every step so G chases one fixed sample."""
    optimizers = adam(model)
    first, last = mean_change([model.train_step(batch, optimizers) for _ in range(steps)], "D_real", "D_fake")
    assert last < 0.5 * first, (first, last)
    optimizers = adam(model, D=0.0)
    history = []
    for _ in range(steps):
        if noise_seed is not None:
            torch.manual_seed(noise_seed)
        history.append(model.train_step(batch, optimizers))
    first, last = mean_change(history, "G")
    assert last < g_factor * first, (first, last)
