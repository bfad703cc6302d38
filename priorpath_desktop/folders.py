"""Where file dialogs start: the folder last used for the same purpose, remembered in the preferences.

An open dialog starts where the user last opened that kind of file, if the folder still exists. A save dialog
also needs the folder to be writable; otherwise (an input's read-only folder, a folder since removed) it starts
in the documents folder, or the home folder. Qt-free, so the choice is testable without dialogs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional, Union

from .preferences import Preferences

# purposes: one remembered folder each
MASKS = "masks"  # open/save sketches, Labelme imports, fine masks
UNDERLAYS = "underlays"
STYLE = "style"  # real H&E tiles for the stain style
RESULTS = "results"  # generated images saved from the generation view
MODELS = "models"
EXPORT_SKETCHES = "export sketches"
EXPORT_OUT = "export output"
DATASETS = "datasets"
RUNS = "runs"
SLIDES = "slides"
PREPARED_OUT = "prepare output"


def default_folder() -> Path:
    """The documents folder when there is a writable one, else home."""
    documents = Path.home() / "Documents"
    return documents if is_writable_folder(documents) else Path.home()


def is_writable_folder(folder: Union[str, Path]) -> bool:
    folder = Path(folder)
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


class FolderMemory:
    """The start folder of each kind of file dialog; ``changed`` is called after every ``remember`` (the main
    window saves the preferences then)."""

    def __init__(self, prefs: Preferences, changed: Optional[Callable[[], None]] = None):
        self.prefs = prefs
        self._changed = changed

    def open_folder(self, purpose: str) -> str:
        """Where an open dialog for ``purpose`` starts: the remembered folder if it still exists."""
        remembered = self.prefs.folders.get(purpose)
        if remembered and Path(remembered).is_dir():
            return remembered
        return str(default_folder())

    def save_folder(self, purpose: str, preferred: Union[str, Path, None] = None) -> str:
        """Where a save dialog starts: ``preferred`` (e.g. the open file's folder), else the remembered folder,
        the first of them that is writable; else the documents or home folder."""
        for folder in (preferred, self.prefs.folders.get(purpose)):
            if folder and is_writable_folder(folder):
                return str(folder)
        return str(default_folder())

    def save_path(self, purpose: str, name: str, preferred: Union[str, Path, None] = None) -> str:
        """A save dialog's start: ``name`` in ``save_folder``."""
        return str(Path(self.save_folder(purpose, preferred)) / name)

    def remember(self, purpose: str, path: Union[str, Path]) -> None:
        """The folder of a chosen file (or a chosen folder itself) becomes ``purpose``'s start folder."""
        path = Path(path)
        folder = path if path.is_dir() else path.parent
        if self.prefs.folders.get(purpose) != str(folder):
            self.prefs.folders[purpose] = str(folder)
            if self._changed is not None:
                self._changed()
