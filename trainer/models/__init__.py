"""Model registry: ``--model NAME`` resolves here. Each model lives in its own module."""
from __future__ import annotations

import importlib

from ..errors import PriorPathError
from .base import GanModel

#: name -> module defining ``Model`` (imported lazily so listing names stays cheap)
REGISTRY = {
    "pix2pix": "trainer.models.pix2pix",
    "cyclegan": "trainer.models.cyclegan",
    "pix2pixhd": "trainer.models.pix2pixhd",
    "dcgan": "trainer.models.dcgan",
    "depas": "trainer.models.depas",
    "analogy": "trainer.models.analogy",
}


def model_class(name: str) -> type[GanModel]:
    if name not in REGISTRY:
        raise PriorPathError(f"unknown model '{name}' (choose one of: {', '.join(REGISTRY)})")
    return importlib.import_module(REGISTRY[name]).Model


__all__ = ["REGISTRY", "GanModel", "model_class"]
