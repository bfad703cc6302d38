"""The mask rules of paper §2.1/§2.3 against independent implementations, on real images."""
from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image
from scipy import ndimage
from skimage.filters import threshold_otsu

from trainer.data import masks

IMAGES = [
    "skimage_ihc/ihc.png",
    "birl_rat_kidney_he_ihc/Rat_Kidney_HE.jpg",
    "osteosarcoma_tcia_ut/Viable___Case-4-C21-25306-21689_120.jpg",
]


def _rgb(data_dir, name):
    return np.asarray(Image.open(data_dir / name).convert("RGB"))


def _window_max(mask, size, before):
    """max over offsets [-before, size-1-before] in both axes; outside the image is False."""
    after = size - 1 - before
    padded = np.pad(mask, ((before, after), (before, after)), constant_values=False)
    return sliding_window_view(padded, (size, size)).any(axis=(-1, -2))


def _window_min(mask, size, before):
    after = size - 1 - before
    padded = np.pad(mask, ((before, after), (before, after)), constant_values=True)
    return sliding_window_view(padded, (size, size)).all(axis=(-1, -2))


def _reference_coarse(fine: np.ndarray) -> np.ndarray:
    """Textbook opening (5x5) then closing (10x10) by brute force, outside pixels ignored."""
    tissue = fine > 0
    opened = _window_max(_window_min(tissue, 5, 2), 5, 2)
    # closing by a square B: dilation over offsets [-5, 4], erosion over the mirrored offsets [-4, 5]
    closed = _window_min(_window_max(opened, 10, 5), 10, 4)
    return closed


@pytest.mark.parametrize("name", IMAGES)
def test_luma_is_bit_exact_with_pillow(data_dir, name):
    rgb = _rgb(data_dir, name)
    expected = np.asarray(Image.open(data_dir / name).convert("RGB").convert("L"))
    np.testing.assert_array_equal(masks.luma(rgb), expected)


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("threshold", [204, 235])
def test_fine_mask_marks_pixels_brighter_than_threshold_as_air(data_dir, name, threshold):
    grey = np.asarray(Image.open(data_dir / name).convert("L")).astype(int)
    fine = masks.fine_mask(masks.luma(_rgb(data_dir, name)), threshold)
    assert fine.dtype == np.uint8 and set(np.unique(fine)) <= {0, 255}
    np.testing.assert_array_equal(fine == 0, grey > threshold)


@pytest.mark.parametrize("name", IMAGES)
def test_coarse_mask_matches_brute_force_definition(data_dir, name):
    fine = masks.fine_mask(masks.luma(_rgb(data_dir, name)[:512, :1024]), 204)
    coarse = masks.coarse_mask(fine)
    assert set(np.unique(coarse)) <= {0, 255}
    np.testing.assert_array_equal(coarse > 0, _reference_coarse(fine))


@pytest.mark.parametrize("name", IMAGES)
def test_coarse_mask_agrees_with_scipy_away_from_the_border(data_dir, name):
    fine = masks.fine_mask(masks.luma(_rgb(data_dir, name)[:512, :1024]), 204)
    tissue = fine > 0
    # scipy pads with air, so compare only where the border cannot matter (more than 15 px in).
    pad = 30
    expected = ndimage.binary_closing(
        ndimage.binary_opening(np.pad(tissue, pad), np.ones((5, 5), bool)), np.ones((10, 10), bool)
    )[pad:-pad, pad:-pad]
    inner = (slice(15, -15), slice(15, -15))
    got = masks.coarse_mask(fine) > 0
    np.testing.assert_array_equal(got[inner], expected[inner])
    assert (got != tissue).mean() > 0.001  # the morphology did change something on real tissue


def test_coarse_closing_is_a_true_closing(data_dir):
    fine = masks.fine_mask(masks.luma(_rgb(data_dir, IMAGES[1])[:512, :1024]), 204)
    opened = masks._open(fine, 5)
    closed = masks.coarse_mask(fine)
    assert np.all(closed >= opened), "a closing never removes tissue"
    np.testing.assert_array_equal(masks._close(closed, 10), closed)  # idempotent


def test_even_kernel_closing_differs_from_opencv_default_anchor():
    """OpenCV's morphologyEx with a 10x10 kernel erodes away tissue; ours never does."""
    import cv2

    mask = np.zeros((40, 40), np.uint8)
    mask[10:30, 10:12] = 255  # a two-pixel-wide strand
    ours = masks._close(mask, 10)
    opencv = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((10, 10), np.uint8))
    assert np.all(ours >= mask)
    assert np.any(opencv < mask)


@pytest.mark.parametrize("name", IMAGES)
def test_otsu_matches_skimage(data_dir, name):
    grey = masks.luma(_rgb(data_dir, name))
    hist = np.bincount(grey.ravel(), minlength=256)
    assert masks.otsu_threshold(hist) == int(threshold_otsu(grey))


def test_otsu_on_degenerate_histograms():
    hist = np.zeros(256)
    hist[200] = 10
    assert masks.otsu_threshold(hist) == 200
    with pytest.raises(ValueError):
        masks.otsu_threshold(np.zeros(256))
