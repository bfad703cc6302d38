"""Fixtures for the evaluation tests: a private feature cache and real prepared masks."""
from __future__ import annotations

from pathlib import Path

import pytest

from trainer.data.prepare import PrepareSettings, prepare

from ...conftest import SAMPLE


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture(autouse=True)
def _private_cache(feature_cache, monkeypatch):
    """Never touch the user's ~/.cache; one cache per test session so repeated masks are computed once."""
    monkeypatch.setenv("PRIORPATH_FEATURE_CACHE", str(feature_cache))
    monkeypatch.delenv("PRIORPATH_FID_WEIGHTS", raising=False)


@pytest.fixture(scope="session")
def prepared_he(tmp_path_factory) -> Path:
    """The bundled H&E sample prepared at the paper's 512x1024 (20 patches with fine and coarse masks)."""
    out = tmp_path_factory.mktemp("prepared-he")
    result = prepare([SAMPLE / "he"], out, PrepareSettings(stain="he"))
    assert result.kept >= 15
    return out
