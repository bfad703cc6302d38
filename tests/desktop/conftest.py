"""Desktop tests: offscreen Qt, a private config folder per test, every test marked ``gui``."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/desktop" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.gui)


@pytest.fixture(autouse=True)
def private_config(tmp_path, monkeypatch):
    """Preferences, autosave and caches go to a fresh folder, never the user's."""
    home = tmp_path / "config"
    monkeypatch.setenv("PRIORPATH_DESKTOP_HOME", str(home))
    return home
