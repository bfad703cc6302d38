"""The cluster browser on real prepared masks: populating in a worker, paging, the actions, errors."""
from __future__ import annotations

import re
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import QApplication, QFileDialog

from priorpath_desktop import cluster_browser as cb
from priorpath_desktop.cluster_browser import (ALL_TISSUE, NO_TISSUE, PAGE_SIZE, SKETCH_TIP, ClusterBrowser,
                                               sketch_start_problem)
from priorpath_desktop.messages import open_messages
from priorpath_desktop.preferences import config_dir

TIMEOUT = 60_000


def _stems(folder: Path) -> list[str]:
    return sorted(p.stem for p in (folder / "fine").glob("*.png"))


def _mixed_stems(folder: Path) -> list[str]:
    """Stems whose coarse mask holds both tissue and air."""
    return [s for s in _stems(folder)
            if 0 < cv2.imread(str(folder / "coarse" / f"{s}.png"), cv2.IMREAD_GRAYSCALE).mean() < 255]


@pytest.fixture
def browser(qtbot):
    widget = ClusterBrowser()
    qtbot.addWidget(widget)
    widget.resize(420, 700)
    widget.show()
    yield widget
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=TIMEOUT)


def _cluster(qtbot, browser, folder, k=None):
    browser.k_spin.setValue(k or cb.AUTO)
    with qtbot.waitSignal(browser.clustered, timeout=TIMEOUT) as blocker:
        browser.set_dataset(str(folder) if folder else None)
    return blocker.args[0]


def test_populates_from_real_masks_without_blocking(qtbot, browser, sample_patches):
    stems = _stems(sample_patches)
    with qtbot.waitSignal(browser.clustered, timeout=TIMEOUT) as blocker:
        browser.set_dataset(str(sample_patches))
        # set_dataset returned at once: the work runs in a worker and the result arrives via the event loop
        assert browser.is_busy() and browser.result() is None
        assert browser.progress_bar.isVisible() and browser.cancel_button.isVisible()
    result = blocker.args[0]
    assert browser.result() is result and not browser.is_busy() and not browser.cancel_button.isVisible()
    assert result.stems == stems and 2 <= result.k <= 10 and result.k == max(result.silhouette,
                                                                             key=result.silhouette.get)
    assert browser.tiles.count() == result.k
    counts = []
    for row in range(result.k):
        item = browser.tiles.item(row)
        m = re.fullmatch(r"Cluster (\d+) · (\d+) masks", item.text())
        assert m and int(m.group(1)) == row + 1
        counts.append(int(m.group(2)))
        assert not item.icon().isNull()
    assert counts == result.counts and sum(counts) == len(stems)
    assert f"{len(stems)} masks in {result.k} clusters" in browser.summary_label.text()

    # the same dataset again comes from the cache in the config folder
    again = _cluster(qtbot, browser, sample_patches)
    assert again.from_cache and again == result
    assert list((config_dir() / "cache" / "clusters").glob("*.json"))


def test_open_cluster_pages_through_members(qtbot, browser, sample_patches):
    result = _cluster(qtbot, browser, sample_patches, k=2)
    assert result.k == 2 and browser.k_value() == 2 and result.silhouette == {}
    big = max(range(result.k), key=lambda c: result.counts[c])
    members = result.members(big)
    pages = -(-len(members) // PAGE_SIZE)
    assert pages >= 2, "the sample should give one cluster with more than a page of masks"

    browser.tiles.setCurrentRow(big)
    browser.tiles.setFocus()
    qtbot.keyClick(browser.tiles, Qt.Key.Key_Return)  # Enter opens the cluster, like a double-click
    assert browser.current_cluster() == big and browser.stack.currentIndex() == 1
    assert browser.cluster_label.text() == f"Cluster {big + 1} · {len(members)} masks"
    qtbot.waitUntil(lambda: browser.page_stems() == members[:PAGE_SIZE], timeout=TIMEOUT)
    assert browser.page_label.text() == f"page 1 of {pages}" and not browser.prev_button.isEnabled()

    for page in range(1, pages):
        qtbot.mouseClick(browser.next_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: browser.page_stems() == members[page * PAGE_SIZE:(page + 1) * PAGE_SIZE],
                        timeout=TIMEOUT)
        assert browser.page_label.text() == f"page {page + 1} of {pages}"
    assert not browser.next_button.isEnabled() and browser.prev_button.isEnabled()
    qtbot.mouseClick(browser.prev_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: browser.current_page() == pages - 2 and browser.page_stems()
                    == members[(pages - 2) * PAGE_SIZE:(pages - 1) * PAGE_SIZE], timeout=TIMEOUT)

    qtbot.mouseClick(browser.back_button, Qt.MouseButton.LeftButton)
    assert browser.stack.currentIndex() == 0 and browser.current_cluster() == -1


def test_actions_emit_the_selected_masks(qtbot, browser, sample_patches):
    result = _cluster(qtbot, browser, sample_patches, k=3)
    browser.open_cluster(1)
    qtbot.waitUntil(lambda: browser.members_list.count() > 1 and browser.member_loaded(), timeout=TIMEOUT)
    browser.members_list.setCurrentRow(1)  # another member: the buttons wait for its images
    stem = browser.selected_stem()
    assert stem == result.members(1)[1]
    qtbot.waitUntil(browser.member_loaded, timeout=TIMEOUT)
    assert browser.use_mask_button.isEnabled() and browser.use_rgb_button.isEnabled()
    assert browser.preview_views["rgb"].image() is not None

    fine = cv2.imread(str(sample_patches / "fine" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
    coarse = cv2.imread(str(sample_patches / "coarse" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
    rgb = cv2.imread(str(sample_patches / "rgb" / f"{stem}.png"), cv2.IMREAD_COLOR)[..., ::-1]

    with qtbot.waitSignal(browser.underlayRequested, timeout=5000) as got:
        qtbot.mouseClick(browser.use_mask_button, Qt.MouseButton.LeftButton)
    mask = got.args[0]
    assert mask.shape == (256, 512) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask, fine)

    with qtbot.waitSignal(browser.underlayRequested, timeout=5000) as got:
        qtbot.mouseClick(browser.use_rgb_button, Qt.MouseButton.LeftButton)
    assert got.args[0].shape == (256, 512, 3) and got.args[0].dtype == np.uint8
    np.testing.assert_array_equal(got.args[0], rgb)

    with qtbot.waitSignal(browser.sketchRequested, timeout=5000) as got:
        qtbot.mouseClick(browser.sketch_button, Qt.MouseButton.LeftButton)
    sketch = got.args[0]
    assert sketch.shape == (256, 512) and sketch.dtype == np.uint8 and set(np.unique(sketch)) == {0, 255}
    np.testing.assert_array_equal(sketch, coarse)
    got.args[0][:] = 0  # the receiver owns its copy
    assert browser._images["coarse"].any()


def test_folder_without_rgb_or_coarse(qtbot, browser, sample_patches, tmp_path):
    """Fine masks alone are enough: thumbnails fall back to masks and the coarse mask is derived."""
    folder = tmp_path / "fine_only"
    (folder / "fine").mkdir(parents=True)
    for stem in _mixed_stems(sample_patches)[:6]:  # an all-tissue coarse mask cannot start a sketch
        (folder / "fine" / f"{stem}.png").write_bytes((sample_patches / "fine" / f"{stem}.png").read_bytes())
    _cluster(qtbot, browser, folder, k=2)
    browser.open_cluster(0)
    qtbot.waitUntil(browser.member_loaded, timeout=TIMEOUT)
    assert browser.use_mask_button.isEnabled() and not browser.use_rgb_button.isEnabled()
    with qtbot.waitSignal(browser.sketchRequested, timeout=5000) as got:
        browser.sketch_button.click()
    fine = cv2.imread(str(folder / "fine" / f"{browser.selected_stem()}.png"), cv2.IMREAD_GRAYSCALE)
    sketch = got.args[0]
    assert sketch.shape == fine.shape and set(np.unique(sketch)) <= {0, 255} and sketch.any()


def test_bad_folder_shows_an_error_and_the_browser_stays_usable(qtbot, browser, sample_patches, tmp_path):
    first = _cluster(qtbot, browser, sample_patches, k=2)
    missing = tmp_path / "nowhere"
    browser.set_dataset(str(missing))
    qtbot.waitUntil(lambda: len(open_messages()) == 1, timeout=TIMEOUT)
    (box,) = open_messages()
    assert str(missing) in box.text() and "no such folder" in box.text()
    assert not browser.is_busy() and browser.recluster_button.isEnabled()
    assert browser.result() is first and browser.dataset() == str(sample_patches)  # the working one stays
    box.close()
    qtbot.waitUntil(lambda: not open_messages(), timeout=5000)

    corrupt = tmp_path / "corrupt"
    (corrupt / "fine").mkdir(parents=True)
    for stem in _stems(sample_patches)[:4]:
        (corrupt / "fine" / f"{stem}.png").write_bytes((sample_patches / "fine" / f"{stem}.png").read_bytes())
    bad = corrupt / "fine" / "broken.png"
    bad.write_bytes(b"not a png at all")
    browser.set_dataset(str(corrupt))
    qtbot.waitUntil(lambda: len(open_messages()) == 1, timeout=TIMEOUT)
    assert "broken.png" in open_messages()[0].text()
    open_messages()[0].close()

    again = _cluster(qtbot, browser, sample_patches, k=3)  # still works
    assert again.k == 3 and browser.tiles.count() == 3


def test_cancel_stops_clustering(qtbot, browser, sample_patches, monkeypatch):
    gate = threading.Event()
    real = cb.cluster_dataset

    def held(*args, **kwargs):  # the job waits here until the test has pressed Cancel
        assert gate.wait(TIMEOUT / 1000)
        return real(*args, **kwargs)

    monkeypatch.setattr(cb, "cluster_dataset", held)
    messages = []
    browser.statusMessage.connect(messages.append)
    browser.set_dataset(str(sample_patches))
    assert browser.cancel_button.isVisible()
    qtbot.mouseClick(browser.cancel_button, Qt.MouseButton.LeftButton)
    gate.set()
    qtbot.waitUntil(lambda: not browser.is_busy(), timeout=TIMEOUT)
    assert messages[-1] == "clustering cancelled" and browser.result() is None and browser.tiles.count() == 0


def test_default_is_the_bundled_sample(qtbot, browser, sample_patches):
    assert "bundled" in browser.dataset_label.text()
    result = _cluster(qtbot, browser, None, k=2)
    assert result.folder == config_dir() / "cache" / "sample_he"
    assert result.stems == _stems(sample_patches)  # prepared with the same settings as the fixture
    assert browser.dataset() is None and browser.tiles.count() == 2


def test_choosing_a_folder_reports_it_once_it_clusters(qtbot, browser, sample_patches):
    chosen = []
    browser.datasetChanged.connect(chosen.append)
    browser.choose_dataset()
    qtbot.waitUntil(lambda: any(isinstance(w, QFileDialog) and w.isVisible() for w in QApplication.topLevelWidgets()),
                    timeout=5000)
    dialog = next(w for w in QApplication.topLevelWidgets() if isinstance(w, QFileDialog) and w.isVisible())
    with qtbot.waitSignal(browser.clustered, timeout=TIMEOUT):
        dialog.selectFile(str(sample_patches))
        dialog.accept()
    assert chosen == [str(sample_patches)] and browser.dataset() == str(sample_patches)


def _select(qtbot, browser, result, stem):
    """Open the cluster holding ``stem`` and select it; returns once its images are loaded."""
    cluster = next(c for c in range(result.k) if stem in result.members(c))
    browser.open_cluster(cluster)
    qtbot.waitUntil(lambda: stem in browser.page_stems(), timeout=TIMEOUT)
    browser.members_list.setCurrentRow(browser.page_stems().index(stem))
    qtbot.waitUntil(lambda: browser.member_loaded() and browser.selected_stem() == stem, timeout=TIMEOUT)


def test_member_previews_show_whole_images_and_never_resize_the_dock(qtbot, browser, sample_patches):
    result = _cluster(qtbot, browser, sample_patches, k=3)
    hints = (browser.sizeHint().width(), browser.minimumSizeHint().width())
    big = max(range(result.k), key=lambda c: result.counts[c])
    browser.open_cluster(big)
    qtbot.waitUntil(lambda: browser.members_list.count() > 1 and browser.member_loaded(), timeout=TIMEOUT)
    assert (browser.sizeHint().width(), browser.minimumSizeHint().width()) == hints
    for kind, view in browser.preview_views.items():
        image = view.image()
        assert image is not None, kind
        shown = view.target_rect()
        # the whole image is inside the view (nothing cropped) and its aspect is kept
        assert not shown.isEmpty() and QRectF(view.rect()).adjusted(-0.5, -0.5, 0.5, 0.5).contains(shown), kind
        assert shown.width() / shown.height() == pytest.approx(image.shape[1] / image.shape[0], rel=0.02)
    assert browser.members_list.height() > 2 * browser.preview_views["fine"].height()
    browser.show_overview()
    assert (browser.sizeHint().width(), browser.minimumSizeHint().width()) == hints


def test_an_all_tissue_coarse_mask_cannot_start_a_sketch(qtbot, browser, sample_patches, tmp_path):
    assert sketch_start_problem(np.full((8, 8), 255, np.uint8)) == ALL_TISSUE
    assert sketch_start_problem(np.zeros((8, 8), np.uint8)) == NO_TISSUE
    mixed = _mixed_stems(sample_patches)
    assert len(mixed) >= 6
    folder = tmp_path / "data"
    for kind in ("fine", "coarse", "rgb"):
        (folder / kind).mkdir(parents=True)
        for stem in mixed[:6]:
            (folder / kind / f"{stem}.png").write_bytes((sample_patches / kind / f"{stem}.png").read_bytes())
    full, fine_one = mixed[0], mixed[1]
    assert cv2.imwrite(str(folder / "coarse" / f"{full}.png"), np.full((256, 512), 255, np.uint8))
    result = _cluster(qtbot, browser, folder, k=2)

    _select(qtbot, browser, result, fine_one)
    assert browser.sketch_button.isEnabled() and browser.sketch_button.toolTip() == SKETCH_TIP

    _select(qtbot, browser, result, full)
    assert not browser.sketch_button.isEnabled() and browser.sketch_button.toolTip() == ALL_TISSUE
    assert browser.use_mask_button.isEnabled()  # the other actions still work
    sketches, messages = [], []
    browser.sketchRequested.connect(sketches.append)
    browser.statusMessage.connect(messages.append)
    browser.start_sketch()  # called from code anyway: no sketch, the reason instead
    assert sketches == [] and messages == [ALL_TISSUE]


def test_one_click_on_a_cluster_tile_opens_it(qtbot, browser, sample_patches):
    result = _cluster(qtbot, browser, sample_patches, k=2)
    small = min(range(result.k), key=lambda c: result.counts[c])
    browser.resize(420, 600)
    browser.show()
    rect = browser.tiles.visualItemRect(browser.tiles.item(small))
    qtbot.mouseClick(browser.tiles.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert browser.current_cluster() == small and browser.stack.currentIndex() == 1
