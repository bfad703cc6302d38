"""Shared test fixtures: where the real images live, and small checkpoints trained for real by ``train``."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from trainer.config import make_config
from trainer.data.prepare import PrepareSettings, prepare
from trainer.train import train

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PRIORPATH_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
SAMPLE = REPO / "resources" / "sample"

#: tiny networks, so a test checkpoint trains in seconds
ENGINE_MODELS = {
    "analogy": ("analogy", {"windows_per_patch": 32, "max_windows": 3000}, 74),
    "pix2pix": ("pix2pix", {"ngf": 8, "ndf": 8, "noise": True, "dropout": 0.0, "norm": "instance"}, 3),
    "pix2pixhd": ("pix2pixhd", {"ngf": 4, "ndf": 4, "n_downsampling": 2, "n_blocks": 1}, 2),
}


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real H&E/IHC collection (../shared/data); tests that need it skip without it."""
    if not (DATA / "SOURCES.md").is_file():
        pytest.skip(f"real image collection not found at {DATA} (set PRIORPATH_SHARED)")
    return DATA


@pytest.fixture(scope="session")
def sample_patches(tmp_path_factory) -> Path:
    """Real H&E patches (256x512) prepared from the bundled sample."""
    out = tmp_path_factory.mktemp("sample_he")
    prepare([SAMPLE / "he"], out, PrepareSettings(stain="he", patch=(256, 512)))
    return out


@pytest.fixture(scope="session")
def engine_models(tmp_path_factory, sample_patches) -> dict[str, Path]:
    """name -> checkpoint of a small model trained on the sample at 64x128 (analogy, pix2pix, pix2pixhd)."""
    root = tmp_path_factory.mktemp("engine_models")
    paths = {}
    for name, (model, options, steps) in ENGINE_MODELS.items():
        config = make_config({"model": model, "data": str(sample_patches), "size": (64, 128), "epochs": 1,
                              "max_steps": steps, "options": options, "sample_every": 1000,
                              "checkpoint_every": 1000})
        paths[name] = train(config, root / name).checkpoint
    return paths
