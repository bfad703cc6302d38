"""Plots and pictures for the training panel: live loss curves (matplotlib in Qt) and a scaled image view."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

# the canvas is used directly with a Figure (never pyplot), so the global backend stays whatever it is
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QSizePolicy, QSpinBox, QVBoxLayout, QWidget

from trainer.runs import loss_series, moving_average


class LossPlot(QWidget):
    """Loss curves per loss name against the step, optionally smoothed by a trailing moving average.

    ``set_events`` takes a run's whole event list; redrawing is cheap (a few thousand points at most,
    ``draw_idle`` coalesces repaints), so the panel calls it whenever new events arrive.
    """

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.figure = Figure(figsize=(5, 3), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.canvas.setMinimumHeight(160)
        self.axes = self.figure.add_subplot()
        self.smooth = QCheckBox("Smooth")
        self.smooth.setToolTip("Show a moving average of the losses (GAN losses are noisy step to step)")
        self.window = QSpinBox()
        self.window.setRange(2, 1000)
        self.window.setValue(10)
        self.window.setSuffix(" points")
        self.window.setEnabled(False)
        self.smooth.toggled.connect(self.window.setEnabled)
        self.smooth.toggled.connect(self._redraw)
        self.window.valueChanged.connect(self._redraw)

        controls = QHBoxLayout()
        controls.addWidget(self.smooth)
        controls.addWidget(self.window)
        controls.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas, 1)
        layout.addLayout(controls)
        self.series: dict = {}
        self._redraw()

    def set_events(self, events: Sequence[dict]) -> None:
        self.series = loss_series(events)
        self._redraw()

    def clear(self) -> None:
        self.set_events([])

    def plotted(self) -> dict[str, int]:
        """loss name -> number of points drawn (what the axes hold now)."""
        return {line.get_label(): len(line.get_xdata()) for line in self.axes.get_lines()}

    def _redraw(self) -> None:
        ax = self.axes
        ax.clear()
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(True, alpha=0.3)
        if not self.series:
            ax.text(0.5, 0.5, "no losses yet", ha="center", va="center", transform=ax.transAxes, color="grey")
        window = self.window.value() if self.smooth.isChecked() else 1
        for name, (steps, values) in self.series.items():
            ax.plot(steps, moving_average(values, window), label=name, linewidth=1.2)
        if self.series:
            ax.legend(loc="upper right", fontsize="small")
        self.canvas.draw_idle()


class ImageView(QLabel):
    """A picture from a file, scaled to fit the label with its aspect ratio (samples, the t-SNE plot)."""

    def __init__(self, placeholder: str = "", parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.placeholder = placeholder
        self.path: Optional[Path] = None
        self._pixmap = QPixmap()
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(120, 80)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)  # scaled, never grows the layout
        self.clear()

    def set_image(self, path: Path) -> bool:
        """Show the image at ``path``; False (and the placeholder) when it cannot be read."""
        pixmap = QPixmap(str(path))
        if pixmap.isNull():
            self.clear()
            return False
        self.path, self._pixmap = Path(path), pixmap
        self.setToolTip(str(path))
        self._rescale()
        return True

    def has_image(self) -> bool:
        return not self._pixmap.isNull()

    def clear(self) -> None:
        self.path, self._pixmap = None, QPixmap()
        super().clear()
        self.setText(self.placeholder)
        self.setToolTip("")

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if not self._pixmap.isNull():
            self.setPixmap(self._pixmap.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                               Qt.TransformationMode.SmoothTransformation))
