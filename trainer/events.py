"""``events.jsonl``: one JSON object per line for everything a training run does.

The CLI's progress bar, the app's loss plots and anyone's own scripts read the same file. Every event has
``type`` and ``step`` (optimizer steps done when it happened) and ``seconds`` (training time so far).
Types: ``start``, ``resume``, ``step`` (with ``losses`` and ``lr``), ``sample`` (``path``),
``checkpoint`` (``path``), ``cancelled``, ``error`` (``message``), ``end``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from .fileio import atomic_write_text


class EventLog:
    """Appends events; a no-op on non-main DDP ranks (``path`` None)."""

    def __init__(self, path: Optional[Path]):
        self.path = Path(path) if path else None
        self._fh = None

    def emit(self, type: str, step: int, seconds: float, **fields: Any) -> dict:
        event = {"type": type, "step": step, "seconds": round(seconds, 3), **fields}
        if self.path is not None:
            if self._fh is None:
                self._fh = open(self.path, "a", encoding="utf-8")
            self._fh.write(json.dumps(event) + "\n")
            self._fh.flush()  # readers (the app) follow the file while training runs
        return event

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_events(path: Path) -> list[dict]:
    """All complete events of a run; a half-written last line (the writer was killed) is ignored."""
    events = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def truncate_after(path: Path, step: int) -> None:
    """Drop events past ``step`` (work after the checkpoint a resume restarts from, which will be redone)."""
    path = Path(path)
    if path.exists():
        kept = [e for e in read_events(path) if e.get("step", 0) <= step]
        atomic_write_text(path, "".join(json.dumps(e) + "\n" for e in kept))
