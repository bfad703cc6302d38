"""Editing the lists of files and folders in the export and prepare dialogs."""
from __future__ import annotations

from PySide6.QtWidgets import QListWidget


def remove_chosen_rows(rows: QListWidget) -> int:
    """Remove the selected rows or, when none is selected, the current one (the row that looks chosen after a
    click that only moved the focus, or after the arrow keys); returns how many were removed."""
    chosen = sorted({rows.row(item) for item in rows.selectedItems()})
    if not chosen and rows.currentRow() >= 0:
        chosen = [rows.currentRow()]
    for row in reversed(chosen):  # from the bottom, so the rows above keep their numbers
        rows.takeItem(row)
    return len(chosen)
