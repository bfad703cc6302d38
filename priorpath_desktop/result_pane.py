"""One pane of the generation view: a caption, an image, a Save… button and, for an H&E tile of a class
sketch, a toggle that outlines the nuclei the class rule finds in it.

A pane keeps what Save writes (``data``) apart from what it shows: a label map is shown in its classes'
colours but saved as class ids (``table`` says which), and a tile is saved without its outlines.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from trainer.data.classes import ClassTable

from .image_view import ImageView


class ResultPane(QWidget):
    def __init__(self, title: str, placeholder: str, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.title = title
        self.note = ""  # what the caption says about the image shown (e.g. "seed 3")
        self.pending = False  # a new image is on its way
        self.data: Optional[np.ndarray] = None  # what Save writes
        self.table: Optional[ClassTable] = None  # set when ``data`` is a label map
        self._plain: Optional[np.ndarray] = None
        self._outlined: Optional[np.ndarray] = None
        self.caption = QLabel(title)
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.view = ImageView(placeholder)
        self.save_button = QPushButton("Save…")
        self.save_button.setEnabled(False)
        self.outlines_check = QCheckBox("Nuclei outlines")
        self.outlines_check.setToolTip("Outline the nuclei the class rule finds in the tile (they should match "
                                       "the fine label map's nuclei)")
        self.outlines_check.setVisible(False)
        self.outlines_check.toggled.connect(self._show_chosen)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.outlines_check)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.caption)
        layout.addWidget(self.view, 1)
        layout.addLayout(buttons)

    def show_image(self, image: Optional[np.ndarray], note: str = "", outlined: Optional[np.ndarray] = None,
                   data: Optional[np.ndarray] = None, table: Optional[ClassTable] = None) -> None:
        """Show ``image`` (or ``outlined`` while the toggle is on); Save writes ``data`` (default: ``image``)."""
        self._plain, self._outlined = image, outlined
        self.data = data if data is not None else image
        self.table = table if self.data is not None else None
        self.outlines_check.setVisible(outlined is not None)
        self._show_chosen()
        self.note, self.pending = note, False
        self._caption(note)
        self.save_button.setEnabled(self.data is not None)

    def show_labels(self, labels: Optional[np.ndarray], table: ClassTable, note: str = "") -> None:
        """A label map in its classes' colours, saved as class ids."""
        picture = table.colourise(labels) if labels is not None else None
        self.show_image(picture, note, data=labels, table=table)

    def set_title(self, title: str) -> None:
        if title != self.title:
            self.title = title
            self._caption(self.note)

    def show_pending(self, what: str) -> None:
        """Say that a new image is on its way; the shown one (and its note) stays until it comes."""
        self.pending = True
        self._caption(what)

    def show_stopped(self, why: str) -> None:
        """The awaited image will not come (``why``: "cancelled", "failed"): the caption goes back to the
        image still shown, saying its update stopped, or to just ``why`` when there is none."""
        if not self.pending:
            return
        self.pending = False
        if self.view.image() is None:
            self._caption(why)
        else:
            self._caption(f"{self.note} · update {why}" if self.note else f"update {why}")

    def _show_chosen(self, *_args) -> None:
        outlined = self.outlines_check.isChecked() and self._outlined is not None
        self.view.set_image(self._outlined if outlined else self._plain)

    def _caption(self, note: str) -> None:
        self.caption.setText(f"{self.title} — {note}" if note else self.title)
