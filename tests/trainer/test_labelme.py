"""Labelme import against independent rasterisations (skimage.draw, closed-form areas) and on a real mask."""
from __future__ import annotations

import base64
import json
import logging

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage.draw import polygon as sk_polygon

from trainer.data import masks
from trainer.data.labelme import import_labelme_files, labelme_to_mask, read_labelme
from trainer.errors import PriorPathError

REAL = "osteosarcoma_tcia_ut/Viable___Case-4-C21-25306-21689_120.jpg"


def doc(shapes, height=100, width=200, **extra) -> dict:
    return {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": "x.png", "imageData": None,
            "imageHeight": height, "imageWidth": width, **extra}


def shape(kind, points, label="tissue", **extra) -> dict:
    return {"label": label, "points": [list(map(float, p)) for p in points], "group_id": None,
            "shape_type": kind, "flags": {}, **extra}


def reference_polygon(points, shape_hw) -> np.ndarray:
    """Pixels whose centres lie inside the polygon, by skimage (row = y, col = x)."""
    pts = np.asarray(points, float)
    rr, cc = sk_polygon(pts[:, 1], pts[:, 0], shape_hw)
    ref = np.zeros(shape_hw, bool)
    ref[rr, cc] = True
    return ref


def distance_to_outline(points, rows, cols) -> np.ndarray:
    """Distance from pixel centres (cols, rows) to the nearest edge of the closed polygon."""
    a = np.asarray(points, float)
    b = np.roll(a, -1, axis=0)
    p = np.stack([cols, rows], axis=1).astype(float)[:, None, :]
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1).min(axis=1)


def assert_same_up_to_boundary(mask: np.ndarray, ref: np.ndarray, points) -> None:
    """Equal except for pixels whose centres lie within one pixel of the outline."""
    got = mask > 0
    assert not (ndimage.binary_erosion(ref) & ~got).any(), "interior pixels of the reference are missing"
    assert not (ndimage.binary_erosion(got) & ~ndimage.binary_dilation(ref)).any(), "tissue painted well outside"
    rows, cols = np.nonzero(got ^ ref)
    if rows.size:
        assert float(distance_to_outline(points, rows, cols).max()) <= 1.0, "a difference away from the outline"


@pytest.fixture(scope="module")
def real_coarse(data_dir) -> np.ndarray:
    rgb = np.asarray(Image.open(data_dir / REAL).convert("RGB"))
    return masks.coarse_mask(masks.fine_mask(masks.luma(rgb), 204))[:512, :1024]


def test_star_polygon_with_fractional_points_matches_skimage():
    angles = np.linspace(0, 2 * np.pi, 15, endpoint=False)
    radii = np.where(np.arange(15) % 2 == 0, 45.3, 18.7)
    pts = np.stack([100.25 + 1.6 * radii * np.cos(angles), 50.6 + radii * np.sin(angles)], axis=1)
    mask = labelme_to_mask(doc([shape("polygon", pts)]))
    assert mask.shape == (100, 200) and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 255}
    ref = reference_polygon(pts, (100, 200))
    assert_same_up_to_boundary(mask, ref, pts)
    assert abs(np.count_nonzero(mask) - ref.sum()) < 0.1 * ref.sum()


def test_real_tissue_outline_round_trips(real_coarse):
    """Outline the largest tissue piece of a real coarse mask, import it, and get the piece back."""
    labels, _ = ndimage.label(real_coarse > 0)
    largest = labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    filled = ndimage.binary_fill_holes(largest)
    contours, _ = cv2.findContours(filled.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = max(contours, key=cv2.contourArea)[:, 0, :]
    assert len(outline) > 100
    h, w = real_coarse.shape
    data = json.loads(json.dumps(doc([shape("polygon", outline)], height=h, width=w)))  # as if from disk
    mask = labelme_to_mask(data)
    assert (mask > 0).sum() == filled.sum()
    assert np.array_equal(mask > 0, filled)
    # A simplified outline with sub-pixel vertices, as a person clicking in Labelme would draw it.
    simple = cv2.approxPolyDP(outline.reshape(-1, 1, 2).astype(np.float32), 2.0, True)[:, 0, :] + 0.3
    assert 50 < len(simple) < 800
    mask = labelme_to_mask(doc([shape("polygon", simple)], height=h, width=w))
    assert_same_up_to_boundary(mask, reference_polygon(simple, (h, w)), simple)


def test_polygon_past_the_edges_is_clipped():
    pts = [(-50.5, -30), (250, -10.2), (260, 140), (-40, 120)]
    mask = labelme_to_mask(doc([shape("polygon", pts)]))
    assert mask.shape == (100, 200)
    assert_same_up_to_boundary(mask, reference_polygon(pts, (100, 200)), pts)
    assert mask[1:-1, 1:-1].all()  # the quadrilateral covers the whole canvas


def test_rectangle_includes_both_corners_in_any_order():
    mask = labelme_to_mask(doc([shape("rectangle", [(30, 60), (10, 20)])], height=100, width=100))
    assert np.count_nonzero(mask) == 21 * 41
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (20, 60, 10, 30)


def test_rectangle_rounds_fractional_corners_and_clips():
    mask = labelme_to_mask(doc([shape("rectangle", [(9.6, 4.4), (20.4, 15.5)])], height=50, width=50))
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (4, 16, 10, 20)
    edge = labelme_to_mask(doc([shape("rectangle", [(-10, -10), (60, 5)])], height=50, width=50))
    assert np.count_nonzero(edge) == 50 * 6


def test_circle_area_and_position():
    cx, cy, r = 80.3, 45.7, 20.0
    mask = labelme_to_mask(doc([shape("circle", [(cx, cy), (cx + 12.0, cy + 16.0)])]))  # rim at distance 20
    yy, xx = np.mgrid[0:100, 0:200]
    exact = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    assert np.array_equal(mask > 0, exact)
    assert abs(np.count_nonzero(mask) - np.pi * r * r) < 2 * np.pi * r * 0.5
    rows, cols = np.nonzero(mask)
    assert abs(cols.mean() - cx) < 0.5 and abs(rows.mean() - cy) < 0.5


def test_hole_labels_paint_air_and_order_matters():
    tissue = shape("rectangle", [(10, 10), (90, 90)])
    hole = shape("polygon", [(30, 30), (70, 30), (70, 70), (30, 70)], label="Hole ")
    cut = labelme_to_mask(doc([tissue, hole], height=100, width=100))
    assert cut[50, 50] == 0 and cut[15, 15] == 255
    assert np.count_nonzero(cut) == 81 * 81 - 41 * 41
    covered = labelme_to_mask(doc([hole, tissue], height=100, width=100))  # later shapes win
    assert np.count_nonzero(covered) == 81 * 81
    custom = labelme_to_mask(doc([tissue, hole], height=100, width=100), hole_labels={"necrosis"})
    assert np.count_nonzero(custom) == 81 * 81  # 'hole' is tissue when not in the given labels
    necrosis = dict(hole, label="necrosis")
    assert labelme_to_mask(doc([tissue, necrosis], height=100, width=100), hole_labels={"Necrosis"})[50, 50] == 0


def test_mask_shape_is_placed_at_its_box():
    bitmap = np.zeros((5, 8), np.uint8)
    bitmap[1:4, 2:7] = 1
    ok, png = cv2.imencode(".png", bitmap)
    encoded = base64.b64encode(png.tobytes()).decode()
    mask = labelme_to_mask(doc([shape("mask", [(40, 20), (47, 24)], mask=encoded)], height=50, width=60))
    expected = np.zeros((50, 60), np.uint8)
    expected[21:24, 42:47] = 255
    assert np.array_equal(mask, expected)
    # Half off the right edge: clipped, not an error.
    mask = labelme_to_mask(doc([shape("mask", [(56, 0), (63, 4)], mask=encoded)], height=50, width=60))
    assert np.count_nonzero(mask) == 3 * 2


def test_lines_and_points_are_ignored_with_a_warning(caplog):
    shapes = [shape("line", [(0, 0), (50, 50)]), shape("point", [(5, 5)]), shape("linestrip", [(0, 0), (9, 9), (0, 9)])]
    with caplog.at_level(logging.WARNING):
        mask = labelme_to_mask(doc(shapes), source="a.json")
    assert not mask.any()
    assert sum("ignoring shape" in r.getMessage() for r in caplog.records) == 3


def test_shape_type_defaults_to_polygon():
    s = shape("polygon", [(10, 10), (40, 10), (40, 30)])
    del s["shape_type"]
    assert labelme_to_mask(doc([s])).any()


@pytest.mark.parametrize("data, fragment", [
    ({"shapes": []}, "imageHeight"),
    (doc([], height=0), "imageHeight"),
    (doc([], width=-3), "imageWidth"),
    (doc([], width="wide"), "imageWidth"),
    ([1, 2], "not a Labelme file"),
    ({"imageHeight": 5, "imageWidth": 5}, "not a Labelme file"),
    (doc([shape("polygon", [(1, 1), (2, 2)])]), "at least 3 points"),
    (doc([{"label": "t", "points": "nope", "shape_type": "polygon"}]), "points"),
    (doc([shape("rectangle", [(1, 1), (2, 2)]) | {"points": [[1, 1], [2, float("nan")]]}]), "not a number"),
])
def test_invalid_documents_say_what_is_wrong(data, fragment, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PriorPathError) as err:
        read_labelme(path)
    assert str(err.value).startswith(str(path)) and fragment in str(err.value)


def test_unreadable_and_invalid_json_name_the_file(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"shapes": [')
    with pytest.raises(PriorPathError, match=r"broken\.json: invalid JSON"):
        read_labelme(broken)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(PriorPathError, match=r"binary\.json"):
        read_labelme(binary)
    with pytest.raises(PriorPathError, match=r"missing\.json: cannot read"):
        read_labelme(tmp_path / "missing.json")


def test_import_writes_one_png_per_file(tmp_path):
    src = tmp_path / "ann"
    (src / "sub").mkdir(parents=True)
    a = doc([shape("rectangle", [(0, 0), (9, 4)])], height=20, width=30)
    b = doc([shape("circle", [(10, 10), (10, 15)])], height=25, width=25)
    (src / "a.json").write_text(json.dumps(a))
    (src / "sub" / "b.json").write_text(json.dumps(b))
    (src / "notes.txt").write_text("not an annotation")
    written = import_labelme_files([src], tmp_path / "out")
    assert [p.name for p in written] == ["a.png", "b.png"]
    for path, data in zip(written, (a, b)):
        image = np.asarray(Image.open(path))
        assert image.dtype == np.uint8 and image.ndim == 2
        assert np.array_equal(image, labelme_to_mask(data))
    assert np.count_nonzero(np.asarray(Image.open(written[0]))) == 10 * 5


def test_import_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PriorPathError, match="no Labelme .json files"):
        import_labelme_files([empty], tmp_path / "out")
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "same.json").write_text(json.dumps(doc([])))
    with pytest.raises(PriorPathError, match="same.png"):
        import_labelme_files([tmp_path / "x", tmp_path / "y"], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before writing anything
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(PriorPathError, match=r"bad\.json: not a Labelme file"):
        import_labelme_files([tmp_path / "bad.json"], tmp_path / "out")
