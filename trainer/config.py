"""Training configuration: paper §2.8 defaults, overridable by a TOML/JSON file and then by CLI flags.

A config file has a ``[train]`` table (fields of ``TrainConfig``) and a ``[model]`` table (the chosen
model's options, see ``trainer/models/<name>.py``)::

    [train]
    model = "pix2pix"
    size = "256x512"
    epochs = 100

    [model]
    ngf = 32
    lambda_l1 = 10.0
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping, Optional

from .errors import PriorPathError

DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    model: str = "pix2pix"
    data: str = ""
    #: working size (height, width); None = the prepared patches' own size
    size: Optional[tuple[int, int]] = None
    #: total epochs; the learning rate is constant, then decays linearly to zero over the last decay_epochs
    epochs: int = 100
    #: None = half of the epochs (the paper: 50 constant + 50 decaying)
    decay_epochs: Optional[int] = None
    batch_size: int = 1
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    #: stop after this many optimizer steps in total (0 = run all epochs)
    max_steps: int = 0
    seed: int = 0
    #: random symmetries of each patch (flips, half turns; quarter turns too for square patches)
    augment: bool = True
    device: str = "auto"
    #: bf16 autocast on CUDA
    amp: bool = True
    #: channels-last memory format (used on CUDA, where it speeds convolutions up)
    channels_last: bool = True
    #: data-loading processes (-1 = automatic: 0 on CPU, up to 4 on GPU)
    workers: int = -1
    log_every: int = 10
    sample_every: int = 500
    checkpoint_every: int = 1000
    #: periodic checkpoints kept besides latest.safetensors
    keep_checkpoints: int = 3
    #: the model's options (see the model module), e.g. {"ngf": 32}
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def total_decay_epochs(self) -> int:
        return self.epochs // 2 if self.decay_epochs is None else self.decay_epochs

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["size"] = list(self.size) if self.size else None
        d["options"] = dict(self.options)
        return d


#: fields whose change alters the maths of a run, so a resume must keep them
FIXED_ON_RESUME = ("model", "data", "size", "epochs", "decay_epochs", "batch_size", "lr", "beta1", "beta2",
                   "seed", "augment", "options")


def _field_types() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(TrainConfig)}


def parse_size_value(value: Any) -> Optional[tuple[int, int]]:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        from .data.prepare import parse_size

        return parse_size(value)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    raise PriorPathError(f"size: expected 'HxW' or [H, W], got {value!r}")


def make_config(values: Mapping[str, Any], base: Optional[TrainConfig] = None) -> TrainConfig:
    """``base`` (default: the defaults) with ``values`` applied, checked field by field."""
    fields = _field_types()
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise PriorPathError(f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    merged = (base or TrainConfig()).to_dict()
    merged.update(values)
    merged["size"] = parse_size_value(merged["size"])
    merged["options"] = dict(merged["options"] or {})
    config = TrainConfig(**merged)
    _validate(config)
    return config


def _validate(c: TrainConfig) -> None:
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise PriorPathError(message)

    for name in ("epochs", "batch_size", "log_every", "sample_every", "checkpoint_every"):
        value = getattr(c, name)
        need(isinstance(value, int) and value >= 1, f"{name} must be a positive integer, got {value!r}")
    need(isinstance(c.max_steps, int) and c.max_steps >= 0, f"max_steps must be >= 0, got {c.max_steps!r}")
    need(0 <= c.total_decay_epochs() <= c.epochs,
         f"decay_epochs must be between 0 and epochs ({c.epochs}), got {c.decay_epochs}")
    need(c.lr > 0, f"lr must be positive, got {c.lr}")
    need(0 <= c.beta1 < 1 and 0 <= c.beta2 < 1, f"betas must be in [0, 1), got ({c.beta1}, {c.beta2})")
    need(c.device in DEVICES, f"device must be one of {', '.join(DEVICES)}, got '{c.device}'")
    need(c.keep_checkpoints >= 0, f"keep_checkpoints must be >= 0, got {c.keep_checkpoints}")


def read_config_file(path: Path) -> tuple[dict, dict]:
    """(train settings, model options) from a TOML or JSON file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PriorPathError(f"{path}: cannot read config ({exc.strerror or exc})") from exc
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError and json.JSONDecodeError are ValueErrors
        raise PriorPathError(f"{path}: not a valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'} "
                             f"config: {exc}") from exc
    extra = sorted(set(data) - {"train", "model"})
    if extra:
        raise PriorPathError(f"{path}: unknown table(s) {', '.join(extra)}; expected [train] and [model]")
    train, model = data.get("train", {}), data.get("model", {})
    if not isinstance(train, dict) or not isinstance(model, dict):
        raise PriorPathError(f"{path}: [train] and [model] must be tables")
    return dict(train), dict(model)


def lr_factor(step: int, config: TrainConfig, steps_per_epoch: int) -> float:
    """Learning-rate multiplier after ``step`` optimizer steps: 1, then linear to 0 over the decay epochs.

    The decay is applied per step rather than per epoch, so short runs decay smoothly too.
    """
    total = config.epochs * steps_per_epoch
    decay = config.total_decay_epochs() * steps_per_epoch
    if decay <= 0:
        return 1.0
    return max(0.0, min(1.0, (total - step) / decay))
