"""The cluster browser on a folder of class label maps (issue 17): thumbnails and previews in the class colours,
the label map as underlay, and a member's coarse label map becoming a class sketch on the canvas."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSize
from PySide6.QtGui import QImage

from priorpath_desktop.cluster_browser import LABEL_SKETCH_TIP
from trainer.clusters import thumbnail
from trainer.data.classes import HE3, read_label_png
from trainer.data.labels import NUCLEI

from ..trainer.test_clusters_labels import tissue_band, write_label_folder
from .test_cluster_browser import TIMEOUT, _cluster, browser  # noqa: F401 (the shared fixture)
from .test_main_window import WAIT, make_window

NUCLEI_COLOUR, STROMA_COLOUR = HE3.classes[NUCLEI].colour, HE3.classes[1].colour


def block_maps() -> list[np.ndarray]:
    """Eight maps with big stroma and nuclei-dense blocks (so thumbnails keep pure class colours): four with the
    block on the left, four on the right."""
    maps = []
    for i in range(8):
        labels = tissue_band(200 + 6 * (i % 4))
        x = 20 if i < 4 else 110
        labels[20:110, x:x + 70] = NUCLEI
        maps.append(labels)
    return maps


@pytest.fixture
def label_folder(tmp_path) -> Path:
    return write_label_folder(tmp_path / "labelled", block_maps())


def icon_colours(icon, size: QSize) -> set[tuple[int, int, int]]:
    image = icon.pixmap(size).toImage().convertToFormat(QImage.Format.Format_RGB888)
    array = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    pixels = array[:, :image.width() * 3].reshape(-1, 3)
    return {tuple(int(v) for v in p) for p in pixels}


def coarse_of(folder: Path, stem: str) -> np.ndarray:
    return read_label_png(folder / "coarse_labels" / f"{stem}.png", HE3)[0]


def test_label_folder_shows_class_colours_and_starts_class_sketches(qtbot, browser, label_folder):
    result = _cluster(qtbot, browser, label_folder, k=2)
    assert result.has_labels and result.classes == HE3
    assert "by their label maps (air, stroma, nuclei)" in browser.summary_label.text()
    for row in range(browser.tiles.count()):  # cluster tiles: exemplars in the class colours
        assert {NUCLEI_COLOUR, STROMA_COLOUR} <= icon_colours(browser.tiles.item(row).icon(), browser.tiles.iconSize())

    browser.open_cluster(0)
    qtbot.waitUntil(lambda: browser.page_stems() == result.members(0) and browser.member_loaded(), timeout=TIMEOUT)
    for row in range(browser.members_list.count()):
        colours = icon_colours(browser.members_list.item(row).icon(), browser.members_list.iconSize())
        assert {NUCLEI_COLOUR, STROMA_COLOUR} <= colours
    stem = browser.selected_stem()
    labels = read_label_png(label_folder / "labels" / f"{stem}.png", HE3)[0]
    coarse = coarse_of(label_folder, stem)
    np.testing.assert_array_equal(browser.preview_views["fine"].image(),
                                  thumbnail(HE3.colourise(labels), (110, 220)))
    np.testing.assert_array_equal(browser.preview_views["coarse"].image(),
                                  thumbnail(HE3.colourise(coarse), (110, 220)))
    assert browser.preview_views["rgb"].image() is None and not browser.use_rgb_button.isEnabled()

    with qtbot.waitSignal(browser.underlayRequested, timeout=5000) as got:
        browser.use_mask_button.click()
    np.testing.assert_array_equal(got.args[0], HE3.colourise(labels))  # the label map in its colours

    assert browser.sketch_button.text() == "Start class sketch from its coarse label map"
    assert browser.sketch_button.isEnabled() and browser.sketch_button.toolTip() == LABEL_SKETCH_TIP
    binary = []
    browser.sketchRequested.connect(binary.append)
    with qtbot.waitSignal(browser.classSketchRequested, timeout=5000) as got:
        browser.sketch_button.click()
    sent, table = got.args
    assert table == HE3 and sent.dtype == np.uint8 and binary == []
    np.testing.assert_array_equal(sent, coarse)
    assert set(np.unique(sent)) == {0, 1, 2}


def test_a_member_sent_to_the_canvas_becomes_a_class_document(qtbot, label_folder):
    window = make_window(qtbot, dataset=str(label_folder))
    qtbot.waitUntil(lambda: window.clusters.result() is not None, timeout=WAIT)
    browser = window.clusters
    assert window.document.is_binary and browser.result().has_labels
    browser.open_cluster(0)
    qtbot.waitUntil(browser.member_loaded, timeout=WAIT)
    first = browser.selected_stem()
    with qtbot.waitSignal(window.generation.previewShown, timeout=WAIT):
        browser.sketch_button.click()
    doc = window.document
    assert doc.classes == HE3 and not doc.is_binary and doc.dirty and "[he3]" in window.windowTitle()
    np.testing.assert_array_equal(doc.labels, coarse_of(label_folder, first))
    assert [b.text() for b in window.tools.classes.buttons.values()] == ["1  stroma", "2  nuclei"]

    # a sketch already drawn in these classes: the next member replaces it as one undoable step
    browser.members_list.setCurrentRow(1)
    qtbot.waitUntil(lambda: browser.member_loaded() and browser.selected_stem() != first, timeout=WAIT)
    second = browser.selected_stem()
    browser.sketch_button.click()
    assert window.document is doc
    np.testing.assert_array_equal(doc.labels, coarse_of(label_folder, second))
    window.undo_action.trigger()
    np.testing.assert_array_equal(doc.labels, coarse_of(label_folder, first))
    window.close()
