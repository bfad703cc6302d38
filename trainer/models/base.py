"""The contract every model implements, so one training loop, one checkpoint format and one inference
engine serve them all.

A model is an ``nn.Module`` that owns its networks (named in ``network_names``), declares which prepared
folders it reads (``kinds``), how its parameters split into optimizers (``optimizer_groups``), and does one
full optimisation step in ``train_step``. The trainer builds the optimizers, sets the learning rate, wraps
networks for DDP, and handles checkpoints and events; the model does the maths of its paper.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, ClassVar, Iterator, Mapping, Optional

import torch
from torch import nn

from ..errors import PriorPathError


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """Base of each model's hyperparameters; every field has the paper's default."""


def options_from_mapping(options_type: type, values: Mapping[str, Any], model: str) -> Any:
    """Build an options dataclass from config/CLI values, converting strings to the field's type."""
    fields = {f.name: f for f in dataclasses.fields(options_type)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise PriorPathError(f"{model}: unknown option(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(fields))}")
    converted = {}
    for name, value in values.items():
        default = getattr(options_type(), name)
        converted[name] = _convert(value, default, f"{model} option '{name}'")
    return options_type(**converted)


def _convert(value: Any, default: Any, what: str) -> Any:
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        if isinstance(default, bool) and not isinstance(value, bool):
            raise PriorPathError(f"{what}: expected true/false, got {value!r}")
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
    try:
        if isinstance(default, bool):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return type(default)(value)
    except ValueError:
        raise PriorPathError(f"{what}: expected a {type(default).__name__}, got {value!r}") from None


def unwrap(net: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper (or the network itself)."""
    return net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net


class GanModel(nn.Module):
    name: ClassVar[str]
    #: prepared sub-folders the model reads, condition first (e.g. ("coarse", "fine")); ("fine",) for noise models
    kinds: ClassVar[tuple[str, ...]]
    #: False when condition and target are drawn independently (CycleGAN)
    paired: ClassVar[bool] = True
    network_names: ClassVar[tuple[str, ...]]
    options_type: ClassVar[type]
    #: the loss names train_step reports, in display order
    loss_names: ClassVar[tuple[str, ...]]

    def __init__(self, options: Any, size: tuple[int, int]):
        super().__init__()
        self.check_size(options, size)
        self.options = options
        self.size = tuple(size)
        self.amp_dtype: Optional[torch.dtype] = None  # set by the trainer: bf16 on CUDA

    # --- sizes -------------------------------------------------------------------------------------------
    @classmethod
    def size_multiple(cls, options: Any, size: tuple[int, int]) -> int:
        """Both sides must be a multiple of this (2**downsamplings)."""
        return 1

    @classmethod
    def min_side(cls, options: Any, size: tuple[int, int]) -> int:
        """The smallest height or width the networks can take (e.g. so a reflection pad has room)."""
        return 1

    @classmethod
    def check_size(cls, options: Any, size: tuple[int, int]) -> None:
        h, w = size
        m = cls.size_multiple(options, size)
        smallest = max(m, cls.min_side(options, size))
        if min(h, w) < smallest or h % m or w % m:
            low = -(-smallest // m) * m
            examples = ", ".join(f"{a}x{b}" for a, b in ((low, low), (low, 2 * low), (2 * low, 4 * low)))
            rule = f"multiples of {m} and at least {smallest}" if m > 1 else f"at least {smallest}"
            raise PriorPathError(f"{cls.name} cannot take {h}x{w} with these options: height and width must be "
                                 f"{rule} (e.g. {examples}); resize with --size HxW")

    # --- data and options -----------------------------------------------------------------------------------
    @classmethod
    def data_kinds(cls, options: Any) -> tuple[str, ...]:
        """The prepared sub-folders this model with these options reads (``kinds`` unless options change it:
        a class-aware model reads label maps)."""
        return cls.kinds

    def use_data(self, folder: Any) -> None:
        """Called by the trainer with the prepared folder, after any resumed state is loaded: a model that
        needs more than the patches (a class table) reads or checks it here."""

    def saved_options(self) -> dict[str, Any]:
        """The options as checkpoints record them."""
        return dataclasses.asdict(self.options)

    # --- training contract ---------------------------------------------------------------------------------
    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters per optimizer, e.g. {"G": [...], "D": [...]}."""
        raise NotImplementedError

    def train_step(self, batch: dict[str, torch.Tensor], optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        """One optimisation step of every network on a batch; returns the losses as floats."""
        raise NotImplementedError

    @torch.no_grad()
    def preview(self, batch: dict[str, torch.Tensor], seed: int = 0) -> list[torch.Tensor]:
        """Images in [-1, 1] (Bx{1,3}xHxW) shown side by side in training samples, e.g. [input, output, target]."""
        raise NotImplementedError

    def extra_state(self) -> dict[str, torch.Tensor]:
        """Tensors beyond weights that an exact resume needs (e.g. CycleGAN's image pools)."""
        return {}

    def load_extra_state(self, tensors: dict[str, torch.Tensor]) -> None:
        pass

    # --- helpers for subclasses ----------------------------------------------------------------------------
    def networks(self) -> dict[str, nn.Module]:
        """The bare networks by name (DDP wrappers removed) — what checkpoints store."""
        return {n: unwrap(getattr(self, n)) for n in self.network_names}

    @contextlib.contextmanager
    def unwrapped(self) -> Iterator[None]:
        """Bare networks for work only one DDP rank does (previews): DDP's forward would wait for the others."""
        wrapped = {n: getattr(self, n) for n in self.network_names}
        for name, net in wrapped.items():
            setattr(self, name, unwrap(net))
        try:
            yield
        finally:
            for name, net in wrapped.items():
                setattr(self, name, net)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA when the trainer enables it; a no-op otherwise."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        device = next(self.parameters()).device.type
        return torch.autocast(device, dtype=self.amp_dtype)

    @contextlib.contextmanager
    def frozen(self, *nets: nn.Module) -> Iterator[None]:
        """Use discriminators in a generator step without computing (or syncing) their gradients."""
        params = [p for net in nets for p in net.parameters()]
        states = [p.requires_grad for p in params]
        with contextlib.ExitStack() as stack:
            for net in nets:
                if isinstance(net, nn.parallel.DistributedDataParallel):
                    stack.enter_context(net.no_sync())
            for p in params:
                p.requires_grad_(False)
            try:
                yield
            finally:
                for p, s in zip(params, states):
                    p.requires_grad_(s)

    @contextlib.contextmanager
    def seeded(self, seed: int) -> Iterator[None]:
        """Draw previews from their own seed without disturbing the training RNG streams."""
        device = next(self.parameters(), torch.empty(0)).device  # CPU for a model without weights (analogy)
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda"):
            torch.manual_seed(seed)
            yield

    @staticmethod
    def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
