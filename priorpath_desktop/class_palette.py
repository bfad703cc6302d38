"""The class palette in the tools dock: a swatch per class of the sketch's table, the painted class checked.

Like the rest of the panel it only talks to its ``CanvasView``: a click sets the canvas's class, and the
palette follows the canvas (keys 1-9, a new document with another table).
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QButtonGroup, QGroupBox, QLabel, QSizePolicy, QToolButton, QVBoxLayout, QWidget

from trainer.data.classes import ClassTable

from .canvas import CanvasView
from .canvas_colours import class_colour

SWATCH = 16


def swatch(colour: QColor) -> QIcon:
    pixmap = QPixmap(SWATCH, SWATCH)
    pixmap.fill(colour)
    painter = QPainter(pixmap)
    painter.setPen(QColor(60, 60, 60))  # an outline, so white air and pale classes stand out
    painter.drawRect(0, 0, SWATCH - 1, SWATCH - 1)
    painter.end()
    return QIcon(pixmap)


class ClassPalette(QGroupBox):
    def __init__(self, canvas: CanvasView, parent: QWidget | None = None):
        super().__init__("Classes (keys 1-9)", parent)
        self.canvas = canvas
        self._layout = QVBoxLayout(self)
        self._layout.setSpacing(2)
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        self.buttons: dict[int, QToolButton] = {}
        self.air_label = QLabel()
        canvas.classesChanged.connect(self._build)
        canvas.classChanged.connect(self._show_class)
        self._build(canvas.document().classes)

    def _build(self, table: ClassTable) -> None:
        for button in self.buttons.values():
            self.group.removeButton(button)
            button.setParent(None)  # gone from the layout now, not at the next event loop turn
            button.deleteLater()
        self.buttons = {}
        self._layout.removeWidget(self.air_label)
        for c in table.classes[1:]:
            button = QToolButton()
            button.setObjectName(f"class_{c.id}")
            button.setText(f"{c.id}  {c.name}")
            button.setIcon(swatch(class_colour(table, c.id)))
            button.setToolTip(f"Brush, fill and lasso paint {c.name}. Shortcut: {c.id}")
            button.setCheckable(True)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            button.clicked.connect(lambda _checked=False, i=c.id: self.canvas.set_current_class(i))
            self.group.addButton(button)
            self.buttons[c.id] = button
            self._layout.addWidget(button)
        self.air_label.setText(f"{table.classes[0].name}: the eraser (E) and the right button")
        self.air_label.setWordWrap(True)
        self._layout.addWidget(self.air_label)
        self._show_class(self.canvas.current_class())

    def _show_class(self, class_id: int) -> None:
        for i, button in self.buttons.items():
            font = QFont(button.font())
            font.setBold(i == class_id)  # checked and bold: the current class reads at a glance
            button.setFont(font)
            button.setChecked(i == class_id)
