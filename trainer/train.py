"""The one training loop behind ``priorpath train`` and the app's training panel.

It owns everything model-independent: data order, learning-rate schedule, devices and DDP, events,
samples, checkpoints, cancellation and exact resume. The model (``trainer/models``) owns the maths.

Exact resume: data order and augmentation are pure functions of (seed, epoch, index), the RNG streams and
optimizer moments are checkpointed, and the learning rate is a function of the step, so stopping at step N
and resuming gives the same weights as never stopping.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from . import events as ev
from .checkpoint import Checkpoint, load_checkpoint, load_weights, optimizer_state, save_checkpoint
from .config import FIXED_ON_RESUME, TrainConfig, lr_factor, make_config
from .data.dataset import PairedMaskDataset, read_image
from .data.prepare import read_manifest
from .devices import Distributed, pick_device, start_distributed, stop_distributed
from .errors import Cancelled, PriorPathError
from .fileio import ensure_writable_dir, remove_stale_temporaries, write_png
from .jobs import CancelToken, ProgressFn, no_progress
from .models import GanModel, model_class
from .models.base import options_from_mapping

log = logging.getLogger(__name__)

LATEST = "latest.safetensors"
PREVIEW_ITEMS = 4
STOP_FILE = "STOP"  # created in the run folder by a GUI to ask for a clean stop after the current step
#: A STOP file older than this process is stale (left by a GUI that crashed): a request made while this
#: process was still starting (loading data, building the model) counts, one from before does not.
_PROCESS_STARTED = time.time()


@dataclass
class TrainResult:
    step: int
    total_steps: int
    checkpoint: Path
    seconds: float
    losses: dict[str, float] = field(default_factory=dict)


class UnpairedDataset(Dataset):
    """Condition i with a target drawn from a seeded per-epoch permutation, so CycleGAN never sees true pairs.

    Conditions and targets are separate single-kind datasets, so each item reads two files, not four.
    """

    def __init__(self, root: Path, kinds: tuple[str, str], size: tuple[int, int], augment: bool, seed: int):
        self.condition_kind, self.target_kind = kinds
        self.conditions = PairedMaskDataset(root, size=size, augment=augment, seed=seed, kinds=(kinds[0],))
        self.targets = PairedMaskDataset(root, self.conditions.stems, size, augment, seed, kinds=(kinds[1],))
        self.seed = seed
        self.set_epoch(0)

    def __len__(self) -> int:
        return len(self.conditions)

    def set_epoch(self, epoch: int) -> None:
        self.conditions.set_epoch(epoch)
        self.targets.set_epoch(epoch)
        self.order = np.random.default_rng([self.seed, epoch, 1]).permutation(len(self.conditions))

    def __getitem__(self, index: int) -> dict:
        item = self.conditions[index]
        item[self.target_kind] = self.targets[int(self.order[index])][self.target_kind]
        return item


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def resume_config(run_dir: Path, overrides: Mapping[str, Any]) -> TrainConfig:
    """The stored config of ``run_dir`` with ``overrides`` applied; changing the maths of the run is refused."""
    ckpt = _latest(run_dir, with_tensors=False)
    stored = make_config(ckpt.config)
    changed = [k for k in FIXED_ON_RESUME if k in overrides and _differs(overrides[k], getattr(stored, k))]
    if changed:
        raise PriorPathError(f"{run_dir}: cannot change {', '.join(changed)} when resuming (the run was started "
                             f"with {', '.join(f'{k}={getattr(stored, k)!r}' for k in changed)}); "
                             f"start a new run with another --out instead")
    return make_config({k: v for k, v in overrides.items() if k not in FIXED_ON_RESUME}, base=stored)


def _differs(given: Any, stored: Any) -> bool:
    if isinstance(stored, tuple) or isinstance(given, (list, tuple)):
        return tuple(given) != tuple(stored) if given is not None and stored is not None else given != stored
    if isinstance(stored, Mapping):
        return dict(given) != dict(stored)
    return given != stored


def _latest(run_dir: Path, with_tensors: bool = True) -> Checkpoint:
    path = checkpoint_dir(run_dir) / LATEST
    if not path.is_file():
        raise PriorPathError(f"{run_dir}: no checkpoint to resume from ({path} is missing)")
    return load_checkpoint(path, with_tensors)


def native_size(data: Path) -> tuple[int, int]:
    rows = read_manifest(Path(data))
    if not rows:
        raise PriorPathError(f"{data}: the prepared folder lists no patches")
    first = rows[0]
    if first.get("height") and first.get("width"):
        return int(first["height"]), int(first["width"])
    return read_image(Path(data) / "fine" / f"{first['stem']}.png", "fine").shape[:2]


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def _rng_state(device: torch.device, dist: Distributed) -> dict[str, torch.Tensor]:
    """RNG states of every rank, gathered on rank 0 so a DDP resume is exact too."""
    states = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    if not dist.enabled:
        return {f"{k}.r0": v for k, v in states.items()}
    import torch.distributed as tdist

    out = {}
    for key, state in states.items():
        local = state.to(device) if device.type == "cuda" else state
        gathered = [torch.empty_like(local) for _ in range(dist.world)]
        tdist.all_gather(gathered, local)
        out.update({f"{key}.r{r}": g.cpu() for r, g in enumerate(gathered)})
    return out


def _restore_rng(tensors: dict[str, torch.Tensor], device: torch.device, rank: int) -> bool:
    cpu = tensors.get(f"rng.cpu.r{rank}")
    if cpu is None:
        return False
    torch.set_rng_state(cpu)
    cuda = tensors.get(f"rng.cuda.r{rank}")
    if cuda is not None and device.type == "cuda":
        torch.cuda.set_rng_state(cuda, device)
    return True


def _preview_image(images: list[torch.Tensor]) -> np.ndarray:
    """One row per item, one column per image of ``model.preview``; grey gutters, as masks are mostly white."""
    rows = []
    for i in range(images[0].shape[0]):
        cells = []
        for t in images:
            a = ((t[i].detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte()
            a = a.expand(3, -1, -1) if a.shape[0] == 1 else a
            cells.append(a.permute(1, 2, 0).numpy())
            cells.append(np.full((a.shape[1], 4, 3), 96, np.uint8))
        rows.append(np.concatenate(cells[:-1], 1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 96, np.uint8))
    return np.concatenate(rows[:-1], 0)


def uses_channels_last(device: torch.device, config: TrainConfig) -> bool:
    return config.channels_last and device.type == "cuda"


def place_model(model: GanModel, device: torch.device, config: TrainConfig) -> GanModel:
    """Move a model to ``device`` with the speed settings training uses there (the benchmark uses it too)."""
    model.to(device)
    if uses_channels_last(device, config):
        model.to(memory_format=torch.channels_last)
    if device.type == "cuda" and config.amp:
        model.amp_dtype = torch.bfloat16
    return model


def place_tensor(t: torch.Tensor, device: torch.device, config: TrainConfig) -> torch.Tensor:
    t = t.to(device, non_blocking=True)
    return t.contiguous(memory_format=torch.channels_last) if uses_channels_last(device, config) else t


def make_optimizers(model: GanModel, config: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    return {name: torch.optim.Adam(params, lr=config.lr, betas=(config.beta1, config.beta2))
            for name, params in model.optimizer_groups().items()}


class Trainer:
    """One run: build everything, then ``run()``."""

    def __init__(self, config: TrainConfig, run_dir: Path, resume: bool = False,
                 progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None):
        self.config, self.run_dir, self.resume = config, Path(run_dir), resume
        self.progress, self.cancel = progress or no_progress, cancel or CancelToken()
        self.dist = start_distributed(config.device)
        self.device = pick_device(config.device, self.dist.local_rank)
        self.ckpt_dir = checkpoint_dir(self.run_dir)
        self.model_cls = model_class(config.model)
        self.options = options_from_mapping(self.model_cls.options_type, config.options, config.model)
        if not config.data:
            raise PriorPathError("no training data given (--data DIR, a folder written by 'priorpath prepare')")
        self.size = tuple(config.size) if config.size else native_size(Path(config.data))
        self.model_cls.check_size(self.options, self.size)  # before loading anything, so a bad size fails fast
        checkpoint = self._open_run()
        self._build_data()
        self._build_model(checkpoint)
        log_path = self.run_dir / "events.jsonl" if self.dist.main else None
        if log_path is not None:
            # a resume redoes the steps after its checkpoint; a fresh run forgets a run killed before its first
            ev.truncate_after(log_path, self.step if checkpoint is not None else -1)
        self.events = ev.EventLog(log_path)

    # --- setup ----------------------------------------------------------------------------------------------
    def _open_run(self) -> Optional[Checkpoint]:
        latest = self.ckpt_dir / LATEST
        if self.dist.main:
            ensure_writable_dir(self.ckpt_dir)
            (self.run_dir / "samples").mkdir(exist_ok=True)
            remove_stale_temporaries(self.ckpt_dir)
        if not self.resume:
            if latest.exists():
                raise PriorPathError(f"{self.run_dir} already holds a training run; pass --resume to continue it "
                                     f"or choose another --out")
            return None
        ckpt = _latest(self.run_dir)
        stored = make_config(ckpt.config)
        changed = [k for k in FIXED_ON_RESUME if _differs(getattr(self.config, k), getattr(stored, k))]
        if changed or ckpt.model_name != self.config.model:
            raise PriorPathError(f"{latest}: the run was started with different {', '.join(changed) or 'model'}; "
                                 f"resume with the same settings")
        return ckpt

    def _build_data(self) -> None:
        c = self.config
        kinds = self.model_cls.data_kinds(self.options)
        if self.model_cls.paired:
            self.dataset = PairedMaskDataset(c.data, size=self.size, augment=c.augment, seed=c.seed, kinds=kinds)
        else:
            self.dataset = UnpairedDataset(Path(c.data), kinds, self.size, c.augment, c.seed)
        per_step = c.batch_size * self.dist.world
        self.steps_per_epoch = len(self.dataset) // per_step
        if self.steps_per_epoch == 0:
            raise PriorPathError(f"{c.data}: {len(self.dataset)} patches are fewer than one batch "
                                 f"({c.batch_size} x {self.dist.world} processes)")
        self.total_steps = c.epochs * self.steps_per_epoch
        if c.max_steps:
            self.total_steps = min(self.total_steps, c.max_steps)
        still = PairedMaskDataset(c.data, size=self.size, augment=False, kinds=kinds)
        items = [still[i] for i in range(min(PREVIEW_ITEMS, len(still)))]
        self.preview_batch = {k: torch.stack([it[k] for it in items]) for k in kinds}
        self.workers = c.workers if c.workers >= 0 else (min(4, os.cpu_count() or 1) if self.device.type == "cuda" else 0)

    def _build_model(self, checkpoint: Optional[Checkpoint]) -> None:
        c = self.config
        torch.manual_seed(c.seed + self.dist.rank)
        model: GanModel = self.model_cls(self.options, self.size)
        self.step, self.seconds_before = 0, 0.0
        if checkpoint is not None:
            load_weights(model, checkpoint.tensors, checkpoint.path)
        model.use_data(Path(c.data))  # a class-aware model takes (or checks) the folder's class table
        place_model(model, self.device, c)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            for name, net in model.networks().items():
                ids = [self.device.index] if self.device.type == "cuda" else None
                setattr(model, name, DDP(net, device_ids=ids))
        self.model = model
        self.optimizers = make_optimizers(model, c)
        if checkpoint is not None:
            for name, opt in self.optimizers.items():
                opt.load_state_dict(optimizer_state(checkpoint, name))
            self.step = int(checkpoint.state["step"])
            self.seconds_before = float(checkpoint.state.get("seconds", 0.0))
            if not _restore_rng(checkpoint.tensors, self.device, self.dist.rank):
                log.warning("checkpoint has no RNG state for rank %d; the resumed run will not be bit-identical",
                            self.dist.rank)

    # --- the loop ---------------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        c = self.config
        self.start_time = time.perf_counter()
        losses: dict[str, float] = {}
        kind = "resume" if self.step else "start"
        self.events.emit(kind, self.step, self.seconds(), model=c.model, total_steps=self.total_steps,
                         steps_per_epoch=self.steps_per_epoch, device=str(self.device), world=self.dist.world,
                         backend=self.dist.backend or None,
                         size=list(self.size))
        self.model.train()
        try:
            while self.step < self.total_steps:
                epoch, position = divmod(self.step, self.steps_per_epoch)
                for batch in self._batches(epoch, position):
                    losses = self._one_step(batch, epoch)
                    if self._cancel_requested():
                        path = self._checkpoint(periodic=False)
                        self.events.emit("cancelled", self.step, self.seconds(), path=str(path))
                        raise Cancelled(f"training stopped at step {self.step}; checkpoint saved to {path} "
                                        f"(continue with --resume)")
                    if self.step >= self.total_steps:
                        break
            path = self._checkpoint(periodic=False)
            if self.dist.main:
                self._sample()
            self.events.emit("end", self.step, self.seconds(), path=str(path), losses=losses)
            return TrainResult(self.step, self.total_steps, path, self.seconds(), losses)
        except PriorPathError as exc:
            if not isinstance(exc, Cancelled):  # e.g. divergence or a full disk: readers of the log see why
                self.events.emit("error", self.step, self.seconds(), message=str(exc))
            raise
        finally:
            self.events.close()

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.start_time

    def _batches(self, epoch: int, position: int):
        c, world, rank = self.config, self.dist.world, self.dist.rank
        self.dataset.set_epoch(epoch)
        order = epoch_order(len(self.dataset), c.seed, epoch)[: self.steps_per_epoch * c.batch_size * world]
        mine = order[rank::world][position * c.batch_size:]
        loader = DataLoader(Subset(self.dataset, mine), batch_size=c.batch_size, shuffle=False, drop_last=True,
                            num_workers=self.workers, pin_memory=self.device.type == "cuda",
                            generator=torch.Generator())  # keeps the loader off the global RNG stream
        for batch in loader:
            # tensors go to the device; the patches' stems travel along (the quilt model groups tiles by source)
            yield {k: self._to_device(v) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
                   if isinstance(v, torch.Tensor) or k == "stem"}

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        return place_tensor(t, self.device, self.config)

    def _one_step(self, batch: dict[str, torch.Tensor], epoch: int) -> dict[str, float]:
        c = self.config
        lr = c.lr * lr_factor(self.step, c, self.steps_per_epoch)
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = lr
        losses = self.model.train_step(batch, self.optimizers)
        self.step += 1
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        if bad:
            raise PriorPathError(f"training diverged at step {self.step}: loss {', '.join(bad)} is not finite; "
                                 f"resume from the last checkpoint with a lower lr")
        text = " ".join(f"{k} {v:.3f}" for k, v in losses.items())
        self.progress(self.step, self.total_steps, text)
        if self.step % c.log_every == 0 or self.step == 1:
            self.events.emit("step", self.step, self.seconds(), epoch=epoch, lr=lr,
                             losses={k: round(v, 6) for k, v in losses.items()})
        if self.step % c.sample_every == 0 and self.dist.main:
            self._sample()
        if self.step % c.checkpoint_every == 0 and self.step < self.total_steps:
            self._checkpoint(periodic=True)
        return losses

    def _cancel_requested(self) -> bool:
        # The stop file works where signals don't reach a child process cleanly (Windows consoles).
        flag = self.cancel.cancelled or (self.dist.main and _stop_requested(self.run_dir))
        if self.dist.enabled:  # every rank must stop at the same step, or the collectives would hang
            import torch.distributed as tdist

            t = torch.tensor([int(flag)], device=self.device if self.device.type == "cuda" else "cpu")
            tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
            flag = bool(t.item())
        return flag

    def _sample(self) -> None:
        was_training = self.model.training
        self.model.eval()
        batch = {k: self._to_device(v) for k, v in self.preview_batch.items()}
        with self.model.unwrapped():
            images = self.model.preview(batch, seed=self.config.seed)
        self.model.train(was_training)
        path = self.run_dir / "samples" / f"step_{self.step:07d}.png"
        write_png(path, _preview_image(images))
        self.events.emit("sample", self.step, self.seconds(), path=str(path))

    def _checkpoint(self, periodic: bool) -> Path:
        """Write the latest checkpoint (and a periodic copy); every rank joins the RNG gather."""
        rng = _rng_state(self.device, self.dist)
        latest = self.ckpt_dir / LATEST
        if not self.dist.main:
            return latest
        state = {"step": self.step, "epoch": self.step // self.steps_per_epoch, "seconds": self.seconds(),
                 "world": self.dist.world}
        save_checkpoint(latest, self.model, self.config.to_dict(), state, self.optimizers, rng)
        if periodic and self.config.keep_checkpoints:
            _link_or_copy(latest, self.ckpt_dir / f"step_{self.step:07d}.safetensors")
            old = sorted(self.ckpt_dir.glob("step_*.safetensors"))[: -self.config.keep_checkpoints]
            for p in old:
                p.unlink(missing_ok=True)
        self.events.emit("checkpoint", self.step, self.seconds(), path=str(latest))
        return latest


def _link_or_copy(src: Path, dst: Path) -> None:
    """A periodic copy of the latest checkpoint without writing hundreds of MB twice where links work."""
    import shutil

    tmp = dst.with_name(f".{dst.name}.tmp-link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def train(config: TrainConfig, run_dir: Path, resume: bool = False, progress: Optional[ProgressFn] = None,
          cancel: Optional[CancelToken] = None) -> TrainResult:
    """Train ``config.model`` on ``config.data``, writing checkpoints, samples and events to ``run_dir``."""
    try:
        trainer = Trainer(config, run_dir, resume, progress, cancel)
        try:
            result = trainer.run()
        except Cancelled:
            _wait_for_all_ranks(trainer.dist)  # every rank stopped at the same step (all-reduced)
            raise
        _wait_for_all_ranks(trainer.dist)  # rank 0 may still be writing its last sample
        return result
    finally:
        # leave the process group explicitly: a rank exiting with it open was aborted by gloo at times
        stop_distributed()


def _wait_for_all_ranks(dist: Distributed) -> None:
    if dist.enabled:
        import torch.distributed as tdist

        tdist.barrier()


def _stop_requested(run_dir: Path) -> bool:
    try:
        return (run_dir / STOP_FILE).stat().st_mtime >= _PROCESS_STARTED - 1.0  # 1 s: coarse file clocks
    except OSError:
        return False
