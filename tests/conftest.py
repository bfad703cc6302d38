"""Shared test fixtures: where the real images live."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PRIORPATH_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
SAMPLE = REPO / "resources" / "sample"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real H&E/IHC collection (../shared/data); tests that need it skip without it."""
    if not (DATA / "SOURCES.md").is_file():
        pytest.skip(f"real image collection not found at {DATA} (set PRIORPATH_SHARED)")
    return DATA
