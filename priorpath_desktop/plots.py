"""Plots, pictures and small widgets for the training panel: live loss curves (matplotlib in Qt), a scaled
image view, a label that elides long paths, and the guard that keeps the mouse wheel from changing settings."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

# the canvas is used directly with a Figure (never pyplot), so the global backend stays whatever it is
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PySide6.QtCore import QEvent, QObject, QSize, Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QAbstractScrollArea, QAbstractSpinBox, QApplication, QCheckBox, QComboBox, QHBoxLayout, QLabel, QSizePolicy,
    QSpinBox, QVBoxLayout, QWidget,
)

from trainer.runs import counter_label, loss_series, moving_average, split_losses_and_counters

NO_LOSSES = "no losses yet"


class LossPlot(QWidget):
    """Loss curves per loss name against the step, optionally smoothed by a trailing moving average.

    Counters a model reports among its step values (``trainer.runs.COUNTERS``, e.g. the analogy model's
    ``windows``) are no losses: they get an axis of their own, labelled with what they count.
    ``set_events`` takes a run's whole event list; redrawing is cheap (a few thousand points at most,
    ``draw_idle`` coalesces repaints), so the panel calls it whenever new events arrive.
    """

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.figure = Figure(figsize=(5, 3), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.canvas.setMinimumHeight(160)
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
        self.placeholder = NO_LOSSES
        self._stale = False
        self._redraw()

    def set_events(self, events: Sequence[dict]) -> None:
        self.series = loss_series(events)
        if self.isVisible():
            self._redraw()
        else:  # a hidden tab is drawn when shown: a long run's curves cost a redraw every poll otherwise
            self._stale = True

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        if self._stale:
            self._redraw()

    def clear(self) -> None:
        self.set_events([])

    def set_placeholder(self, text: str) -> None:
        """What the empty plot says instead of showing empty axes (e.g. "waiting for the first step…")."""
        self.placeholder = text
        if not self.series:
            self._redraw()

    def placeholder_shown(self) -> Optional[str]:
        """The text shown instead of curves, or None when curves are drawn."""
        if self._stale:
            self._redraw()
        texts = [t.get_text() for ax in self.figure.axes for t in ax.texts]
        return texts[0] if texts and not self.series else None

    def plotted(self) -> dict[str, int]:
        """curve name -> number of points drawn (what the axes hold now, losses and counters)."""
        if self._stale:
            self._redraw()
        return {line.get_label(): len(line.get_xdata()) for ax in self.figure.axes for line in ax.get_lines()}

    def axis_labels(self) -> list[str]:
        """The y-axis label of each plot, top to bottom (``loss`` and/or what the counters count)."""
        if self._stale:
            self._redraw()
        return [ax.get_ylabel() for ax in self.figure.axes]

    def _redraw(self) -> None:
        self._stale = False
        self.figure.clear()
        losses, counters = split_losses_and_counters(self.series)
        panels = [(losses, "loss", True)] if losses or not counters else []
        if counters:
            panels.append((counters, counter_label(list(counters)), False))  # a count is never smoothed
        window = self.window.value() if self.smooth.isChecked() else 1
        first = None
        for i, (series, label, smoothable) in enumerate(panels):
            ax = self.figure.add_subplot(len(panels), 1, i + 1, sharex=first)
            first = first or ax
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
            if i == len(panels) - 1:
                ax.set_xlabel("step")
            for name, (steps, values) in series.items():
                ax.plot(steps, moving_average(values, window if smoothable else 1), label=name, linewidth=1.2)
            if series:
                ax.legend(loc="best", fontsize="small")
        if not self.series:  # empty axes with ticks would look like a run that logs nothing: words instead
            ax = self.figure.axes[0]
            ax.set_axis_off()
            ax.text(0.5, 0.5, self.placeholder, ha="center", va="center", transform=ax.transAxes, color="grey")
        self.canvas.draw_idle()


class PictureLabel(QLabel):
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

    def set_placeholder(self, text: str) -> None:
        """What the label says while it has no picture."""
        self.placeholder = text
        if self._pixmap.isNull():
            super().setText(text)

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


class ElidedLabel(QLabel):
    """One line of text that shortens itself with "…" to the room it gets (never widening its column, so no
    horizontal scroll bar); the whole text is in the tooltip. For statuses that hold long paths."""

    def __init__(self, text: str = "", mode: Qt.TextElideMode = Qt.TextElideMode.ElideMiddle,
                 parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.mode = mode
        self._full = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 (Qt's name)
        self._full = text or ""
        self.setToolTip(self._full)
        self._elide()

    def text(self) -> str:
        """The whole text, not the shortened one on screen."""
        return self._full

    def shown_text(self) -> str:
        return super().text()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(0, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(min(super().sizeHint().width(), 200), super().sizeHint().height())

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = max(0, self.contentsRect().width())
        super().setText(self.fontMetrics().elidedText(self._full, self.mode, width) if width else self._full)


class WheelGuard(QObject):
    """Keeps the mouse wheel from changing spin boxes and combo boxes that do not have the focus.

    Scrolling a form would otherwise change whatever setting passes under the cursor (Epochs 100 -> 98). The
    wheel over an unfocused box scrolls the nearest scroll area around it instead (or, outside one, is left to
    the box's parents).
    """

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if event.type() != QEvent.Type.Wheel or not isinstance(watched, QWidget) or watched.hasFocus():
            return False
        area = watched.parentWidget()
        while area is not None and not isinstance(area, QAbstractScrollArea):
            area = area.parentWidget()
        if area is not None:
            QApplication.sendEvent(area.viewport(), event)  # the area scrolls by the wheel's delta
        else:
            event.ignore()  # an ignored (real) wheel event goes on to the parents
        return True  # never delivered to the box itself


def guard_wheel(root: QWidget) -> WheelGuard:
    """Install a ``WheelGuard`` (owned by ``root``) on every spin box and combo box under ``root``; they take
    the focus by click or Tab only (StrongFocus), never by the wheel."""
    guard = WheelGuard(root)
    for box in root.findChildren(QAbstractSpinBox) + root.findChildren(QComboBox):
        box.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        box.installEventFilter(guard)
    return guard
