"""The Qt-free mask document: stamps, fills, undo/redo, files."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from priorpath_desktop.document import MaskDocument
from trainer.errors import PriorPathError

SKETCH = Path(__file__).resolve().parents[2] / "resources" / "sample" / "sketches" / "sketch_01.png"


def stroke(doc: MaskDocument, points, radius=3.0, value=255):
    doc.begin_stroke()
    (x0, y0) = points[0]
    doc.stamp(x0, y0, radius, value)
    for x1, y1 in points[1:]:
        doc.stamp_segment(x0, y0, x1, y1, radius, radius, value)
        x0, y0 = x1, y1
    return doc.end_stroke()


def test_stamp_is_a_disc_centred_on_the_pixel():
    doc = MaskDocument(32, 48)
    rect = doc.stamp(10.5, 20.5, 3, 255)  # centre of pixel (10, 20)
    on = doc.mask > 0
    assert on[20, 10] and on[20, 13] and on[17, 10] and on[23, 10] and on[20, 7]
    assert not on[20, 14] and not on[23, 13]  # corner of the bounding square is outside the disc
    ys, xs = np.nonzero(on)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (7, 13, 17, 23)
    x0, y0, x1, y1 = rect
    assert x0 <= 7 and y0 <= 17 and x1 >= 14 and y1 >= 24
    assert set(np.unique(doc.mask)) == {0, 255}


def test_larger_radius_stamps_more_pixels_and_segments_have_no_gaps():
    small, large = MaskDocument(64, 64), MaskDocument(64, 64)
    small.stamp(32, 32, 2, 255)
    large.stamp(32, 32, 8, 255)
    assert np.count_nonzero(large.mask) > 4 * np.count_nonzero(small.mask)
    doc = MaskDocument(64, 128)
    doc.stamp_segment(5.5, 30.5, 120.5, 30.5, 1, 1, 255)  # one long fast move
    assert np.all(doc.mask[30, 5:121] == 255)


def test_undo_redo_across_strokes_restores_exact_masks():
    doc = MaskDocument(64, 96)
    states = [doc.mask.copy()]
    stroke(doc, [(10, 10), (40, 20), (60, 50)], radius=4)
    states.append(doc.mask.copy())
    stroke(doc, [(80, 5), (20, 60)], radius=2)
    states.append(doc.mask.copy())
    stroke(doc, [(25, 12), (30, 22)], radius=6, value=0)  # erases across the first stroke
    states.append(doc.mask.copy())
    assert doc.version == 3 and doc.can_undo and not doc.can_redo
    for expected in reversed(states[:-1]):
        doc.undo()
        assert np.array_equal(doc.mask, expected)
    assert not doc.can_undo and doc.undo() is None
    for expected in states[1:]:
        doc.redo()
        assert np.array_equal(doc.mask, expected)
    doc.undo()
    stroke(doc, [(5, 5)], radius=2)  # a new edit clears redo
    assert not doc.can_redo


def test_a_step_stores_only_the_changed_region():
    doc = MaskDocument(512, 1024)
    stroke(doc, [(100, 100), (110, 104)], radius=3)
    (_, step), = doc._undo
    x0, y0, x1, y1 = step.rect
    assert (x1 - x0) <= 20 and (y1 - y0) <= 14
    assert step.before.nbytes + step.after.nbytes < 100


def test_undo_depth_drops_the_oldest_step():
    doc = MaskDocument(32, 32, undo_depth=3)
    for i in range(5):
        doc.stamp(4 + 5 * i, 16, 1, 255)
    first_two = doc.mask.copy()
    for _ in range(3):
        assert doc.undo() is not None
    assert doc.undo() is None  # the first two stamps can no longer be undone
    assert np.count_nonzero(doc.mask[:, :12]) > 0 and np.count_nonzero(doc.mask[:, 12:]) == 0
    assert not np.array_equal(doc.mask, first_two)


def test_fill_fills_the_connected_region_only():
    doc = MaskDocument(40, 40)
    ring = np.zeros((40, 40), np.uint8)
    cv2.rectangle(ring, (5, 5), (25, 25), 255, 1)
    doc.replace(ring)
    before = doc.mask.copy()
    doc.fill(15, 15, 255)
    assert np.all(doc.mask[5:26, 5:26] == 255)
    assert np.count_nonzero(doc.mask) == 21 * 21  # the outside stayed air
    assert doc.fill(15, 15, 255) is None  # already tissue: no step
    doc.undo()
    assert np.array_equal(doc.mask, before)


def test_fill_polygon_clear_invert_are_undoable():
    doc = MaskDocument(50, 60)
    doc.fill_polygon([(10, 10), (50, 10), (50, 40), (10, 40)], 255)
    assert doc.mask[25, 30] == 255 and doc.mask[5, 5] == 0 and doc.mask[45, 55] == 0
    # every pixel whose centre is inside, plus at most the one-pixel outline the polygon crosses
    assert np.all(doc.mask[10:40, 10:50] == 255)
    outside = doc.mask.copy()
    outside[9:41, 9:51] = 0
    assert not outside.any()
    square = doc.mask.copy()
    doc.invert()
    assert np.array_equal(doc.mask, 255 - square)
    doc.clear()
    assert not doc.mask.any()
    doc.undo()
    assert np.array_equal(doc.mask, 255 - square)
    doc.undo()
    assert np.array_equal(doc.mask, square)


def test_replace_may_change_size_and_undoes():
    doc = MaskDocument(32, 32)
    doc.stamp(10, 10, 3, 255)
    old = doc.mask.copy()
    doc.replace(np.full((20, 40), 200, np.uint8))
    assert doc.shape == (20, 40) and np.all(doc.mask == 255)
    doc.undo()
    assert doc.shape == (32, 32) and np.array_equal(doc.mask, old)
    with pytest.raises(PriorPathError, match="16 to 20000"):
        doc.replace(np.zeros((8, 40), np.uint8))


def test_listeners_hear_rectangles_and_steps():
    doc = MaskDocument(64, 64)
    rects, steps = [], []
    doc.add_listener(rects.append)
    doc.add_step_listener(lambda: steps.append(doc.version))
    doc.begin_stroke()
    doc.stamp(20, 20, 2, 255)
    doc.stamp_segment(20, 20, 30, 20, 2, 2, 255)
    assert len(rects) == 2 and steps == []  # pixels announced while drawing, the step only at the end
    doc.end_stroke()
    assert steps == [1]
    x0, y0, x1, y1 = rects[-1]
    assert x0 <= 18 and x1 >= 32 and y0 <= 18 and y1 >= 22


def test_dirty_follows_save_and_undo(tmp_path):
    doc = MaskDocument(32, 32)
    assert not doc.dirty
    doc.stamp(5, 5, 2, 255)
    assert doc.dirty
    path = doc.save_png(tmp_path / "m.png")
    assert not doc.dirty and doc.path == path
    doc.stamp(20, 20, 2, 255)
    assert doc.dirty
    doc.undo()
    assert not doc.dirty  # back at the saved state


def test_open_save_round_trip(tmp_path):
    doc = MaskDocument.open(SKETCH)
    assert set(np.unique(doc.mask)) <= {0, 255} and doc.mask.any() and not doc.dirty
    doc.stamp(30, 30, 10, 0)
    out = doc.save_png(tmp_path / "copy.png")
    again = MaskDocument.open(out)
    assert np.array_equal(again.mask, doc.mask)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temporary


def test_open_labelme(tmp_path):
    data = {"imageHeight": 40, "imageWidth": 60, "shapes": [
        {"label": "tissue", "shape_type": "rectangle", "points": [[10, 5], [29, 24]]},
        {"label": "hole", "shape_type": "rectangle", "points": [[15, 10], [19, 14]]}]}
    path = tmp_path / "drawing.json"
    path.write_text(json.dumps(data))
    doc = MaskDocument.open(path)
    assert doc.shape == (40, 60)
    assert doc.mask[5, 10] == 255 and doc.mask[24, 29] == 255 and doc.mask[12, 17] == 0
    assert np.count_nonzero(doc.mask) == 20 * 20 - 5 * 5


def test_bad_files_give_clear_errors(tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(SKETCH.read_bytes()[:200])
    with pytest.raises(PriorPathError, match="corrupt.png"):
        MaskDocument.open(corrupt)
    colour = tmp_path / "tile.png"
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 200
    cv2.imwrite(str(colour), rgb)
    with pytest.raises(PriorPathError, match="colour image"):
        MaskDocument.open(colour)
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.full((8, 8), 255, np.uint8))
    with pytest.raises(PriorPathError, match="tiny.png.*16 to 20000"):
        MaskDocument.open(tiny)
    with pytest.raises(PriorPathError, match="missing.png"):
        MaskDocument.open(tmp_path / "missing.png")
    with pytest.raises(PriorPathError, match="bmp"):
        MaskDocument.open(tmp_path / "x.bmp")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    with pytest.raises(PriorPathError, match="bad.json"):
        MaskDocument.open(bad_json)


def test_a_stamp_is_a_true_disc_without_one_pixel_nubs():
    doc = MaskDocument(64, 64)
    doc.stamp(32, 32, 10, 255)  # centre between pixels 31 and 32
    rows = np.flatnonzero(doc.mask.any(axis=1))
    assert rows[0] == 22 and rows[-1] == 41  # 10 px each way
    assert np.count_nonzero(doc.mask[rows[-1]]) >= 5  # a flat cap, not a lone pixel (OpenCV's circles)
    assert abs(np.count_nonzero(doc.mask) - np.pi * 100) < 12


def test_an_empty_mask_saved_earlier_reopens(tmp_path):
    doc = MaskDocument(32, 48)
    doc.save_png(tmp_path / "blank.png")
    again = MaskDocument.open(tmp_path / "blank.png")
    assert again.shape == (32, 48) and not again.mask.any()


def test_undo_history_is_capped_in_bytes_as_well_as_steps():
    doc = MaskDocument(256, 256, undo_depth=200, undo_budget=3 * 2 * 256 * 256 // 8)  # room for 3 inverts
    states = [doc.mask.copy()]
    for _ in range(5):
        doc.invert()  # each step: the whole mask before and after, one bit per pixel
        states.append(doc.mask.copy())
    assert doc.undo_bytes() <= doc.undo_budget
    undone = 0
    while doc.undo() is not None:
        undone += 1
    assert undone == 3 and np.array_equal(doc.mask, states[2])
    big = MaskDocument(256, 256, undo_budget=10)  # smaller than any step: the newest is still kept
    big.invert()
    assert big.can_undo


def test_qupath_geojson_of_a_whole_slide_opens_scaled_to_the_canvas(tmp_path):
    from trainer.geojson import write_annotations

    sketch = np.zeros((300, 500), np.uint8)
    sketch[50:250, 100:400] = 255
    sketch[100:150, 200:260] = 0
    write_annotations(tmp_path / "slide.geojson", sketch, scale=40)  # a 20000 px wide slide's annotations
    doc = MaskDocument.open(tmp_path / "slide.geojson")
    # the polygons reach 9980x15980 slide pixels: 1/4 is the first whole factor that fits 4096 px
    assert doc.mask.shape == (2495, 3995)
    assert "1/4" in doc.open_notice and "scale 4" in doc.open_notice
    at_10x = cv2.resize(sketch, (5000, 3000), interpolation=cv2.INTER_NEAREST)[:2495, :3995]
    assert (doc.mask == at_10x).mean() > 0.99
    write_annotations(tmp_path / "small.json", sketch)  # at its own size, in a .json file
    assert np.array_equal(MaskDocument.open(tmp_path / "small.json").mask, sketch[:250, :400])  # to the extent
