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
    "quilt": "trainer.models.quilt",
}

#: models without networks that copy real examples: run whole (never tiled), seeded by a generator
EXAMPLE_BASED = frozenset({"analogy", "quilt"})


def model_class(name: str) -> type[GanModel]:
    if name not in REGISTRY:
        raise PriorPathError(f"unknown model '{name}' (choose one of: {', '.join(REGISTRY)})")
    return importlib.import_module(REGISTRY[name]).Model


__all__ = ["EXAMPLE_BASED", "REGISTRY", "GanModel", "model_class"]
