"""User preferences: one JSON file, Qt-free so tests and tools can read it.

Window geometry and dock layout live in QSettings (they are Qt's own state); everything a user chooses
on purpose lives here, in ``<config dir>/preferences.json``, written atomically.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from trainer.fileio import atomic_write_text

log = logging.getLogger(__name__)

APP_NAME = "PriorPath Desktop"
ORG_NAME = "PriorPath"


def config_dir() -> Path:
    """``$PRIORPATH_DESKTOP_HOME`` if set (tests, portable installs), else the platform's config folder."""
    env = os.environ.get("PRIORPATH_DESKTOP_HOME")
    if env:
        return Path(env)
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return base / "priorpath-desktop"


@dataclass
class Preferences:
    """What the user chose; every field has a working default."""

    mask_model: Optional[str] = None  # checkpoint path; None = the bundled default
    rgb_model: Optional[str] = None  # checkpoint path; None = the bundled default, "none" = no RGB stage
    device: str = "auto"  # auto, cpu, cuda, mps
    dataset: Optional[str] = None  # prepared folder for the cluster browser; None = the bundled sample
    canvas_size: tuple[int, int] = (512, 1024)  # height, width of a new sketch
    brush_radius: int = 12
    undo_depth: int = 200
    underlay_opacity: float = 0.4
    preview_delay_ms: int = 250  # debounce between the last stroke and the preview
    seed: int = 0
    variations: int = 4
    recent_files: list[str] = field(default_factory=list)
    folders: dict[str, str] = field(default_factory=dict)  # file-dialog purpose -> the folder last used for it
    last_run: Optional[str] = None  # the training run folder last started or chosen, re-attached at start-up

    @classmethod
    def load(cls, path: Optional[Path] = None) -> "Preferences":
        """Read the file; unknown keys are ignored and a bad file falls back to defaults (with a warning)."""
        path = path or preferences_path()
        prefs = cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return prefs
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable preferences %s: %s", path, exc)
            return prefs
        if not isinstance(data, dict):
            log.warning("ignoring preferences %s: not a JSON object", path)
            return prefs
        for f in dataclasses.fields(cls):
            if f.name in data:
                value = _coerce(data[f.name], getattr(prefs, f.name))
                if value is not None:
                    setattr(prefs, f.name, value)
        return prefs

    def save(self, path: Optional[Path] = None) -> Path:
        path = path or preferences_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        data = dataclasses.asdict(self)
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")
        return path

    def add_recent(self, file: str, keep: int = 10) -> None:
        self.recent_files = [file] + [f for f in self.recent_files if f != file][: keep - 1]


def preferences_path() -> Path:
    return config_dir() / "preferences.json"


def _coerce(value: Any, default: Any) -> Any:
    """The stored value if it has the default's type (a tuple may come back as a list); else None."""
    if default is None:
        return value if value is None or isinstance(value, str) else None
    if isinstance(default, dict):  # str -> str only; anything else in the file is dropped
        if not isinstance(value, dict):
            return None
        return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
    if isinstance(default, tuple):
        ok = isinstance(value, list) and len(value) == len(default) and all(isinstance(v, int) for v in value)
        return tuple(value) if ok else None
    if isinstance(default, bool):
        return value if isinstance(value, bool) else None
    if isinstance(default, float):
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if isinstance(default, int):
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    return value if isinstance(value, type(default)) else None
