"""Autosave: a stroke is on disk at pen-up, and a new session recovers it after a crash."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from priorpath_desktop import canvas as canvas_module
from priorpath_desktop.autosave import Autosaver, default_folder
from priorpath_desktop.canvas import CanvasView
from priorpath_desktop.document import MaskDocument
from trainer.errors import PriorPathError


def drag(view: CanvasView, points):
    """One left-button mouse stroke through image points."""
    kinds = [QEvent.Type.MouseButtonPress] + [QEvent.Type.MouseMove] * (len(points) - 1)
    for kind, (x, y) in zip(kinds + [QEvent.Type.MouseButtonRelease], points + points[-1:]):
        pos = view.widget_pos(x + 0.5, y + 0.5)
        button = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseMove else Qt.MouseButton.LeftButton
        buttons = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseButtonRelease else Qt.MouseButton.LeftButton
        QApplication.sendEvent(view, QMouseEvent(kind, pos, view.mapToGlobal(pos), button, buttons,
                                                 Qt.KeyboardModifier.NoModifier))


@pytest.fixture
def view(qtbot):
    v = CanvasView(document=MaskDocument(96, 160))
    qtbot.addWidget(v)
    v.resize(336, 208)
    v.show()
    qtbot.waitExposed(v)
    return v


def test_default_folder_is_in_the_private_config(private_config):
    assert Autosaver().folder == default_folder() == private_config / "autosave"


def test_a_stroke_survives_a_crash(view, tmp_path):
    folder = tmp_path / "autosave"
    saver = Autosaver(folder)
    view.set_autosaver(saver)
    view.set_brush_radius(4)
    drag(view, [(10, 10), (80, 40), (150, 90)])
    assert saver.saves == 1  # written at pen-up, before the next event is processed
    drag(view, [(20, 80), (60, 80)])
    expected = view.document().mask.copy()
    # simulated crash: no discard(); the next session looks at the same folder
    after_crash = Autosaver(folder)
    info = after_crash.recoverable()
    assert info is not None and (info.height, info.width) == (96, 160) and info.version == 2
    assert "unsaved sketch" in info.describe()
    doc = after_crash.recover()
    assert np.array_equal(doc.mask, expected)
    assert doc.dirty and not doc.can_undo


def test_undo_is_autosaved_too(view, tmp_path):
    saver = Autosaver(tmp_path)
    view.set_autosaver(saver)
    drag(view, [(30, 30), (50, 50)])
    view.undo()
    assert not Autosaver(tmp_path).recover().mask.any()


def test_clean_exit_leaves_nothing_to_recover(tmp_path):
    saver = Autosaver(tmp_path)
    doc = MaskDocument(32, 32)
    doc.stamp(10, 10, 3, 255)
    saver.save(doc)
    saver.discard()
    assert Autosaver(tmp_path).recoverable() is None
    with pytest.raises(PriorPathError, match="no autosaved mask"):
        Autosaver(tmp_path).recover()


def test_recovered_document_remembers_its_file(tmp_path):
    source = tmp_path / "mine.png"
    doc = MaskDocument(40, 50)
    doc.stamp(20, 20, 5, 255)
    doc.save_png(source)
    doc.stamp(5, 5, 2, 255)
    Autosaver(tmp_path / "a").save(doc)
    recovered = Autosaver(tmp_path / "a").recover()
    assert recovered.path == source and recovered.dirty
    assert np.array_equal(recovered.mask, doc.mask)
    assert "mine.png" in Autosaver(tmp_path / "a").recoverable().describe()


def test_damaged_autosave_is_a_clear_error(tmp_path):
    saver = Autosaver(tmp_path)
    doc = MaskDocument(32, 32)
    saver.save(doc)
    saver.mask_path.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    saver.info_path.write_text("{broken")
    info = Autosaver(tmp_path).recoverable()
    assert info is not None and info.source is None
    with pytest.raises(PriorPathError, match="autosaved mask is damaged"):
        Autosaver(tmp_path).recover()


def test_large_masks_autosave_in_the_background(view, tmp_path, qtbot, monkeypatch):
    monkeypatch.setattr(canvas_module, "SYNC_AUTOSAVE_PIXELS", 0)  # this small mask takes the large-mask path
    saver = Autosaver(tmp_path)
    view.set_autosaver(saver)
    for y in (10, 30, 50, 70):
        drag(view, [(10, y), (150, y)])
    expected = view.document().mask.copy()
    qtbot.waitUntil(view.autosave_idle, timeout=10000)
    assert 1 <= saver.saves <= 4
    assert np.array_equal(Autosaver(tmp_path).recover().mask, expected)


def test_a_failing_autosave_is_reported_once(view, tmp_path, qtbot):
    from priorpath_desktop.messages import open_messages

    blocker = tmp_path / "not a folder"
    blocker.write_text("a file where the autosave folder should be")
    view.set_autosaver(Autosaver(blocker / "autosave"))
    drag(view, [(10, 10), (20, 20)])
    drag(view, [(30, 30), (40, 40)])
    boxes = open_messages()
    assert len(boxes) == 1 and "Autosave failed" in boxes[0].windowTitle()
    assert view.document().version == 2  # drawing went on
    boxes[0].close()


def test_a_snapshot_taken_before_a_discard_is_never_written(tmp_path):
    """A large mask's autosave runs in a worker; a save or clean close that discards meanwhile wins."""
    saver = Autosaver(tmp_path)
    doc = MaskDocument(32, 32)
    doc.stamp(16, 16, 5, 255)
    generation = saver.snapshot_generation()
    saver.discard()  # e.g. the user saved while the worker was still encoding
    assert not saver.save_mask(np.array(doc.mask), None, doc.version, generation)
    assert saver.recoverable() is None
    assert saver.save_mask(np.array(doc.mask), None, doc.version, saver.snapshot_generation())
    assert saver.recoverable() is not None
