"""The drawing tools dock: tool buttons, the class palette, brush size, underlay opacity, whole-mask actions.

The panel only talks to its ``CanvasView``: it calls the canvas's methods and follows its signals, so
keyboard shortcuts on the canvas and the controls here always agree.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QButtonGroup, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy,
                               QSlider, QSpinBox, QToolButton, QVBoxLayout, QWidget)

from .canvas import MAX_RADIUS, MIN_RADIUS, TOOLS, CanvasView
from .class_palette import ClassPalette

TOOL_LABELS = {
    "brush": ("Brush", "B", "Paint the current class; pen pressure sets the size, the pen's eraser end and the right "
                            "button erase"),
    "eraser": ("Eraser", "E", "Paint air"),
    "fill": ("Fill", "F", "Fill the connected area of one class under the pointer with the current class (right "
                          "button fills with air)"),
    "lasso": ("Lasso", "L", "Drag to fill a freehand outline; or click corners and double-click or press Enter "
                            "to fill the polygon (Esc cancels; right button cuts air)"),
}


class ToolPanel(QWidget):
    def __init__(self, canvas: CanvasView, parent: QWidget | None = None):
        super().__init__(parent)
        self.canvas = canvas
        layout = QVBoxLayout(self)

        tools_box = QGroupBox("Tool")
        tools_layout = QGridLayout(tools_box)
        self.tool_group = QButtonGroup(self)
        self.tool_group.setExclusive(True)
        self.tool_buttons: dict[str, QToolButton] = {}
        for i, name in enumerate(TOOLS):
            label, key, tip = TOOL_LABELS[name]
            button = QToolButton()
            button.setText(f"{label} ({key})")
            button.setToolTip(f"{tip}. Shortcut: {key}")
            button.setCheckable(True)
            button.setObjectName(f"tool_{name}")
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            self.tool_group.addButton(button)
            self.tool_buttons[name] = button
            tools_layout.addWidget(button, i // 2, i % 2)
            button.clicked.connect(lambda _checked=False, name=name: self.canvas.set_tool(name))
        layout.addWidget(tools_box)
        self.classes = ClassPalette(canvas)
        layout.addWidget(self.classes)

        size_box = QGroupBox("Brush radius ([ and ])")
        size_layout = QHBoxLayout(size_box)
        self.radius_slider = QSlider(Qt.Orientation.Horizontal)
        self.radius_slider.setRange(MIN_RADIUS, MAX_RADIUS)
        self.radius_slider.setToolTip("Brush radius in mask pixels; [ shrinks, ] grows")
        self.radius_spin = QSpinBox()
        self.radius_spin.setRange(MIN_RADIUS, MAX_RADIUS)
        self.radius_spin.setSuffix(" px")
        size_layout.addWidget(self.radius_slider, 1)
        size_layout.addWidget(self.radius_spin)
        self.radius_slider.valueChanged.connect(self.canvas.set_brush_radius)
        self.radius_spin.valueChanged.connect(self.canvas.set_brush_radius)
        layout.addWidget(size_box)

        underlay_box = QGroupBox("Underlay")
        underlay_layout = QVBoxLayout(underlay_box)
        opacity_row = QHBoxLayout()
        opacity_row.addWidget(QLabel("Opacity"))
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setToolTip("How strongly the underlay image shows under the mask")
        self.opacity_label = QLabel()
        self.opacity_label.setMinimumWidth(36)
        opacity_row.addWidget(self.opacity_slider, 1)
        opacity_row.addWidget(self.opacity_label)
        underlay_layout.addLayout(opacity_row)
        self.remove_underlay_button = QPushButton("Remove underlay")
        self.remove_underlay_button.setToolTip("Stop showing the image under the mask")
        underlay_layout.addWidget(self.remove_underlay_button)
        self.opacity_slider.valueChanged.connect(lambda v: self.canvas.set_underlay_opacity(v / 100))
        self.remove_underlay_button.clicked.connect(lambda: self.canvas.set_underlay(None))
        layout.addWidget(underlay_box)

        mask_box = QGroupBox("Whole mask")
        mask_layout = QHBoxLayout(mask_box)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Make everything air (undoable)")
        self.invert_button = QPushButton("Invert")
        self.invert_button.setToolTip("Swap tissue and air: every class becomes air, air the current class "
                                      "(undoable)")
        mask_layout.addWidget(self.clear_button)
        mask_layout.addWidget(self.invert_button)
        self.clear_button.clicked.connect(self.canvas.clear)
        self.invert_button.clicked.connect(self.canvas.invert)
        layout.addWidget(mask_box)
        layout.addStretch(1)

        canvas.toolChanged.connect(self._show_tool)
        canvas.brushRadiusChanged.connect(self._show_radius)
        canvas.underlayOpacityChanged.connect(self._show_opacity)
        canvas.underlayChanged.connect(self._show_underlay)
        self._show_tool(canvas.tool())
        self._show_radius(canvas.brush_radius())
        self._show_opacity(canvas.underlay_opacity())
        self._show_underlay(canvas.has_underlay())

    def _show_tool(self, name: str) -> None:
        self.tool_buttons[name].setChecked(True)

    def _show_radius(self, radius: int) -> None:
        for control in (self.radius_slider, self.radius_spin):
            if control.value() != radius:
                control.blockSignals(True)  # the canvas already has this radius
                control.setValue(radius)
                control.blockSignals(False)

    def _show_opacity(self, opacity: float) -> None:
        value = round(opacity * 100)
        if self.opacity_slider.value() != value:
            self.opacity_slider.blockSignals(True)
            self.opacity_slider.setValue(value)
            self.opacity_slider.blockSignals(False)
        self.opacity_label.setText(f"{value}%")

    def _show_underlay(self, present: bool) -> None:
        self.remove_underlay_button.setEnabled(present)
        self.opacity_slider.setEnabled(present)
