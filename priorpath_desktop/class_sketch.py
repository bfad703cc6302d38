"""File -> New class sketch: a size and a class table (a built-in one, or a classes.json the user picks)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from PySide6.QtWidgets import QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QSpinBox, QWidget

from trainer.data.classes import BUILTIN, HE3, ClassTable, read_class_table
from trainer.errors import PriorPathError

from .document import MAX_SIDE, MIN_SIDE
from .folders import MASKS, FolderMemory
from .messages import show_error

FROM_FILE = "From a classes.json…"


def describe(table: ClassTable) -> str:
    return f"{table.name}: {', '.join(table.names)}"


class ClassSketchDialog(QDialog):
    def __init__(self, size: tuple[int, int], folders: Optional[FolderMemory] = None,
                 parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setWindowTitle("New class sketch")
        self.folders = folders
        form = QFormLayout(self)
        self.height_spin, self.width_spin = QSpinBox(), QSpinBox()
        for box, value in ((self.height_spin, size[0]), (self.width_spin, size[1])):
            box.setRange(MIN_SIDE, MAX_SIDE)
            box.setValue(value)
            box.setSuffix(" px")
        form.addRow("Height", self.height_spin)
        form.addRow("Width", self.width_spin)
        self.table_combo = QComboBox()
        self.table_combo.setToolTip("The classes the sketch is drawn in; keys 1-9 pick them on the canvas")
        self._tables: list[ClassTable] = []
        for table in (HE3, *(t for t in BUILTIN.values() if t is not HE3)):
            self.add_table(table)
        self.table_combo.addItem(FROM_FILE)
        self.table_combo.setCurrentIndex(0)
        self.table_combo.activated.connect(self._activated)
        form.addRow("Classes", self.table_combo)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.setMinimumWidth(420)

    def add_table(self, table: ClassTable, source: Union[str, Path, None] = None) -> None:
        """Offer ``table`` (before the "from a file" entry) and select it."""
        label = describe(table) + (f" ({Path(source).name})" if source else "")
        at = len(self._tables)
        self._tables.append(table)
        self.table_combo.insertItem(at, label)
        self.table_combo.setCurrentIndex(at)

    def table(self) -> ClassTable:
        return self._tables[min(self.table_combo.currentIndex(), len(self._tables) - 1)]

    def sketch_size(self) -> tuple[int, int]:
        return self.height_spin.value(), self.width_spin.value()

    def load_table(self, path: Union[str, Path]) -> bool:
        try:
            self.add_table(read_class_table(path), path)
        except PriorPathError as exc:
            show_error(self, "Cannot use this class table", str(exc))
            return False
        return True

    def _activated(self, index: int) -> None:
        if self.table_combo.itemText(index) != FROM_FILE:
            return
        start = self.folders.open_folder(MASKS) if self.folders else ""
        path, _ = QFileDialog.getOpenFileName(self, "Class table", start, "Class tables (*.json);;All files (*)")
        if path and self.folders:
            self.folders.remember(MASKS, path)
        if not (path and self.load_table(path)):
            self.table_combo.setCurrentIndex(0)
