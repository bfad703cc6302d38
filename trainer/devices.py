"""Device choice and the torchrun (DDP) process group."""
from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch

from .errors import PriorPathError

log = logging.getLogger(__name__)


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` prefers CUDA, then Apple MPS, then the CPU; an explicit choice must be available."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if cuda else "mps" if mps else "cpu"
    if name == "cuda":
        if not cuda:
            raise PriorPathError(f"device cuda requested, but this torch ({torch.__version__}) sees no CUDA GPU; "
                                 f"use --device cpu or auto")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name == "mps":
        if not mps:
            raise PriorPathError("device mps requested, but Apple's Metal backend is not available here; "
                                 "use --device cpu or auto")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise PriorPathError(f"unknown device '{name}' (choose auto, cpu, cuda or mps)")


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    #: the process-group backend ("nccl", "gloo"); empty when not launched by torchrun
    backend: str = ""

    @property
    def enabled(self) -> bool:
        """In a process group: launched by torchrun, even as its only process (DDP on one GPU uses nccl)."""
        return bool(self.backend)

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_distributed(device_name: str) -> Distributed:
    """Join the process group torchrun describes in the environment (gloo on CPU, nccl on CUDA).

    A plain process (no ``WORLD_SIZE``/``MASTER_ADDR`` from torchrun) trains alone without a group."""
    if "WORLD_SIZE" not in os.environ or "MASTER_ADDR" not in os.environ:
        return Distributed()
    import torch.distributed as dist

    world = int(os.environ["WORLD_SIZE"])
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if pick_device(device_name, local_rank).type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
        log.debug("rank %d of %d joined (%s)", rank, world, backend)
    return Distributed(rank, world, local_rank, str(dist.get_backend()))


def stop_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
