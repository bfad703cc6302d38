"""The one rule for reading mask files: black and white as it is, grey thresholded at 127 and said so, colour
refused; the app's Open and the sketch reader of export follow it."""
from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from trainer.data.mask_files import THRESHOLD, read_mask_file
from trainer.data.sketches import load_sketch
from trainer.errors import PriorPathError


def soft_mask() -> np.ndarray:
    """A left half of tissue with a soft (grey) edge, as anti-aliased drawing tools save it."""
    mask = np.zeros((32, 64), np.uint8)
    mask[:, :30] = 255
    mask[:, 30:34] = (200, 150, 100, 50)
    return mask


def test_black_and_white_is_kept_as_it_is_without_a_notice(tmp_path):
    path = tmp_path / "bw.png"
    mask = np.where(soft_mask() > THRESHOLD, 255, 0).astype(np.uint8)
    cv2.imwrite(str(path), mask)
    read = read_mask_file(path)
    assert np.array_equal(read.mask, mask) and not read.thresholded and read.notice(path.name) is None


def test_grey_is_thresholded_at_127_and_the_notice_says_so(tmp_path):
    path = tmp_path / "soft.png"
    cv2.imwrite(str(path), soft_mask())
    read = read_mask_file(path)
    assert read.mask[:, :32].all() and not read.mask[:, 32:].any()  # 200 and 150 tissue, 100 and 50 air
    assert read.grey_pixels == 4 * 32
    notice = read.notice(path.name)
    assert notice.startswith("soft.png: not black and white") and "6.2% of the pixels grey" in notice
    assert "thresholded at 127" in notice


def test_a_jpeg_mask_opens_thresholded(tmp_path):
    path = tmp_path / "saved.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(soft_mask(), cv2.COLOR_GRAY2BGR), [cv2.IMWRITE_JPEG_QUALITY, 60])
    read = read_mask_file(path)
    assert read.mask[:, :28].all() and not read.mask[:, 36:].any() and read.thresholded


def test_label_images_alpha_and_colour(tmp_path):
    labels = tmp_path / "labels.png"
    cv2.imwrite(str(labels), (soft_mask() > THRESHOLD).astype(np.uint8))  # 0/1
    assert read_mask_file(labels).mask[:, :32].all() and not read_mask_file(labels).thresholded
    rgba = np.zeros((32, 64, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[:, 10:, 3] = 255  # the left columns are transparent: air
    cv2.imwrite(str(tmp_path / "alpha.png"), rgba)
    assert not read_mask_file(tmp_path / "alpha.png").mask[:, :10].any()
    colour = np.zeros((32, 64, 3), np.uint8)
    colour[..., 2] = 200
    cv2.imwrite(str(tmp_path / "tile.png"), colour)
    with pytest.raises(PriorPathError, match="tile.png: is a colour image, not a mask"):
        read_mask_file(tmp_path / "tile.png")


def test_the_app_and_the_sketch_reader_read_the_same_mask(tmp_path, caplog):
    from priorpath_desktop.document import MaskDocument

    path = tmp_path / "soft.png"
    cv2.imwrite(str(path), soft_mask())
    document = MaskDocument.open(path)
    with caplog.at_level(logging.WARNING):
        sketch = load_sketch(path)
    assert np.array_equal(document.mask, read_mask_file(path).mask) and np.array_equal(sketch, document.mask)
    assert document.open_notice == read_mask_file(path).notice("soft.png")
    assert "thresholded at 127" in caplog.text
