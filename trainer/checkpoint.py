"""Checkpoints as safetensors files: weights, optimizer moments, RNG states and the run's config.

One file holds everything a resume needs, so a checkpoint is either entirely there or not at all (it is
written to a temporary file and renamed). Nothing is ever unpickled: tensors live in the safetensors body,
everything else (config, options, counters, optimizer hyperparameters) is JSON in its metadata header.
Pickle-based ``.pt``/``.pth`` files are refused before they are opened by anything that could run code.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from .errors import PriorPathError
from .fileio import atomic_write_with
from .models import GanModel, model_class
from .models.base import options_from_mapping

FORMAT = "priorpath-checkpoint/1"
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar"}
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default container (a zip holding a pickle)


@dataclass
class Checkpoint:
    """A loaded checkpoint: its model, with optional training state for resuming."""

    path: Path
    model_name: str
    options: dict
    size: tuple[int, int]
    config: dict
    state: dict
    tensors: dict[str, torch.Tensor]
    #: each optimizer's param_groups (hyperparameters), by optimizer name
    optimizer_groups: dict = dataclasses.field(default_factory=dict)

    def build_model(self, device: torch.device | str = "cpu") -> GanModel:
        """The model with these weights, on ``device``."""
        cls = model_class(self.model_name)
        model = cls(options_from_mapping(cls.options_type, self.options, self.model_name), self.size)
        load_weights(model, self.tensors, self.path)
        return model.to(device)


def save_checkpoint(path: Path, model: GanModel, config: dict, state: dict,
                    optimizers: Optional[dict[str, torch.optim.Optimizer]] = None,
                    rng: Optional[dict[str, torch.Tensor]] = None) -> None:
    """Write weights (+ optimizer states, RNG and extra model state when given) atomically to ``path``."""
    tensors: dict[str, torch.Tensor] = {}
    for name, net in model.networks().items():
        for key, value in net.state_dict().items():
            tensors[f"net.{name}.{key}"] = value
    for key, value in model.extra_state().items():
        tensors[f"extra.{key}"] = value
    groups = {}
    for name, opt in (optimizers or {}).items():
        sd = opt.state_dict()
        groups[name] = sd["param_groups"]
        for index, fields in sd["state"].items():
            for field, value in fields.items():
                tensors[f"optim.{name}.{index}.{field}"] = torch.as_tensor(value)
    for key, value in (rng or {}).items():
        tensors[f"rng.{key}"] = value
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    metadata = {
        "format": FORMAT,
        "model": model.name,
        "options": json.dumps(model.saved_options()),
        "size": json.dumps(list(model.size)),
        "config": json.dumps(config),
        "state": json.dumps(state),
        "optimizers": json.dumps(groups),
    }

    def write(tmp: Path) -> None:
        from safetensors import SafetensorError
        from safetensors.torch import save_file

        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as exc:  # e.g. a full disk, reported by the Rust writer
            raise OSError(str(exc)) from exc

    atomic_write_with(Path(path), write, durable=True)


def refuse_pickle(path: Path) -> None:
    """Reject pickle-based PyTorch files: unpickling can execute arbitrary code."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(9)
    size = path.stat().st_size
    # a safetensors file starts with its JSON header's length (8 bytes, little-endian), then '{'
    safetensors_like = len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8
    pickle_like = head.startswith(_ZIP_MAGIC) or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03",
                                                                                       b"\x04", b"\x05"))
    if path.suffix.lower() in PICKLE_SUFFIXES or (pickle_like and not safetensors_like):
        raise PriorPathError(
            f"{path}: this is a pickle-based PyTorch file; PriorPath never unpickles files because that can run "
            f"arbitrary code. Use a .safetensors checkpoint written by 'priorpath train' (or convert trusted "
            f"weights yourself with safetensors.torch.save_file).")


def load_checkpoint(path: Path, with_tensors: bool = True) -> Checkpoint:
    """Read a checkpoint, with a specific error for missing, pickled, corrupt or foreign files.

    ``with_tensors=False`` reads only the JSON header (config, counters), not hundreds of MB of weights.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise PriorPathError(f"{path}: checkpoint not found")
    refuse_pickle(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()} if with_tensors else {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise PriorPathError(f"{path}: not a readable safetensors file (corrupt or truncated?): {exc}") from exc
    if metadata.get("format") != FORMAT:
        raise PriorPathError(f"{path}: a safetensors file, but not a PriorPath checkpoint (no '{FORMAT}' "
                             f"header); weights from other programs cannot be loaded as a PriorPath model")
    try:
        size = tuple(json.loads(metadata["size"]))
        return Checkpoint(path=path, model_name=metadata["model"], options=json.loads(metadata["options"]),
                          size=(int(size[0]), int(size[1])), config=json.loads(metadata["config"]),
                          state=json.loads(metadata["state"]), tensors=tensors,
                          optimizer_groups=json.loads(metadata.get("optimizers", "{}")))
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise PriorPathError(f"{path}: PriorPath checkpoint with a damaged header ({exc})") from exc


def load_weights(model: GanModel, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Copy ``net.*`` and ``extra.*`` tensors into ``model``, naming what does not fit."""
    for name, net in model.networks().items():
        prefix = f"net.{name}."
        sub = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        expected = net.state_dict()
        missing = sorted(set(expected) - set(sub))
        unexpected = sorted(set(sub) - set(expected))
        wrong = sorted(k for k in set(sub) & set(expected) if sub[k].shape != expected[k].shape)
        if missing or unexpected or wrong:
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
            if wrong:
                k = wrong[0]
                parts.append(f"{len(wrong)} of the wrong shape (e.g. {k}: {tuple(sub[k].shape)} "
                             f"vs {tuple(expected[k].shape)})")
            raise PriorPathError(f"{source}: weights do not fit network {name} of {model.name}: "
                                 f"{'; '.join(parts)} tensors")
        net.load_state_dict(sub)
    model.load_extra_state({k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")})


def optimizer_state(checkpoint: Checkpoint, name: str) -> dict:
    """Rebuild ``optimizer.state_dict()`` for optimizer ``name`` from a checkpoint."""
    if name not in checkpoint.optimizer_groups:
        raise PriorPathError(f"{checkpoint.path}: holds no state for optimizer {name}; cannot resume from it")
    tensors = checkpoint.tensors
    prefix = f"optim.{name}."
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            index, field = key[len(prefix):].split(".", 1)
            state.setdefault(int(index), {})[field] = value
    return {"state": state, "param_groups": checkpoint.optimizer_groups[name]}


def compact_checkpoint(src: Path, dst: Path, half: bool = True) -> dict[str, int]:
    """A copy of ``src`` for inference only: weights (float16 with ``half``) and extra model state.

    Optimizer moments and RNG states, about two thirds of a training checkpoint, are dropped; the header
    keeps the config, options, size and counters, so the model card and ``load_checkpoint`` still know
    what it is. The result loads like any checkpoint but cannot be resumed. Returns bytes before and after.
    """
    from safetensors import safe_open

    ckpt = load_checkpoint(Path(src))
    with safe_open(str(src), framework="pt") as fh:
        metadata = dict(fh.metadata())
    tensors = {}
    for key, value in ckpt.tensors.items():
        if key.startswith(("optim.", "rng.")):
            continue
        if half and key.startswith("net.") and value.is_floating_point():
            value = value.half()
        tensors[key] = value.contiguous()
    metadata["optimizers"] = "{}"
    metadata["compacted"] = json.dumps({"from": Path(src).name, "half": half})

    def write(tmp: Path) -> None:
        from safetensors import SafetensorError
        from safetensors.torch import save_file

        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as exc:
            raise OSError(str(exc)) from exc

    atomic_write_with(Path(dst), write, durable=True)
    return {"before": Path(src).stat().st_size, "after": Path(dst).stat().st_size}
