"""Error and information messages that never block the event loop.

Boxes are window-modal but opened with ``open()``, not ``exec()``, so workers keep reporting and tests
can find and close them. Each message is also logged.
"""
from __future__ import annotations

import logging
from typing import Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

log = logging.getLogger(__name__)


def show_error(parent: Optional[QWidget], title: str, message: str) -> QMessageBox:
    """A critical message box naming what went wrong; returns it (already open)."""
    log.error("%s: %s", title, message)
    return _open(parent, QMessageBox.Icon.Critical, title, message)


def show_info(parent: Optional[QWidget], title: str, message: str) -> QMessageBox:
    log.info("shown: %s", title)  # the text may be a page of HTML help
    return _open(parent, QMessageBox.Icon.Information, title, message)


def _open(parent, icon, title: str, message: str) -> QMessageBox:
    box = QMessageBox(icon, title, message, QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("priorpathMessage")
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
    box.open()
    return box


def open_messages() -> list[QMessageBox]:
    """The message boxes open now (tests use this to assert that an error was shown)."""
    return [w for w in QApplication.allWidgets()
            if isinstance(w, QMessageBox) and w.objectName() == "priorpathMessage" and w.isVisible()]
