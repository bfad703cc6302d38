"""The document as a label map: class ids through strokes, fills, undo, the memory cap, and indexed PNG files."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from priorpath_desktop.document import MaskDocument
from priorpath_desktop.label_files import CLASSES_NAME, is_indexed_png
from trainer.data.classes import BINARY, HE3, encode_label_png, read_class_table, table_from_names, write_class_table
from trainer.errors import PriorPathError
from trainer.fileio import encode_png

from .test_document import SKETCH, stroke

STROMA, NUCLEI = 1, 2


def he3_doc(h=64, w=96, **kw) -> MaskDocument:
    return MaskDocument(h, w, classes=HE3, **kw)


def test_a_new_document_is_binary_and_a_class_document_carries_its_table():
    doc = MaskDocument(32, 32)
    assert doc.classes == BINARY and doc.is_binary and doc.labels.dtype == np.uint8
    doc.stamp(10, 10, 3, 255)  # the binary-era value still means tissue: class 1
    assert set(np.unique(doc.labels)) == {0, 1} and set(np.unique(doc.mask)) == {0, 255}
    he3 = he3_doc()
    assert he3.classes == HE3 and not he3.is_binary
    with pytest.raises(PriorPathError, match="class id 3 is not in table 'he3'"):
        he3.stamp(10, 10, 3, 3)
    with pytest.raises(PriorPathError, match="class id 2"):
        doc.fill(1, 1, 2)


def test_painting_class_2_then_undo_and_redo_restores_exact_ids():
    doc = he3_doc()
    states = [doc.labels.copy()]
    stroke(doc, [(10, 10), (60, 30)], radius=8, value=STROMA)
    states.append(doc.labels.copy())
    stroke(doc, [(20, 12), (50, 28)], radius=3, value=NUCLEI)  # nuclei inside the stroma
    states.append(doc.labels.copy())
    stroke(doc, [(30, 5), (30, 40)], radius=2, value=0)  # the eraser cuts through both
    states.append(doc.labels.copy())
    assert set(np.unique(states[2])) == {0, STROMA, NUCLEI} and doc.labels[20, 30] == 0
    for expected in reversed(states[:-1]):
        doc.undo()
        assert np.array_equal(doc.labels, expected)
    for expected in states[1:]:
        doc.redo()
        assert np.array_equal(doc.labels, expected)
    assert np.array_equal(doc.mask, np.where(doc.labels > 0, 255, 0))  # the tissue mask follows every step


def test_undo_steps_cost_one_bit_a_pixel_per_bit_of_the_largest_id():
    binary = MaskDocument(512, 1024)
    stroke(binary, [(100, 100), (110, 104)], radius=3)
    (_, step), = binary._undo
    assert step.before.bits == step.after.bits == 1
    assert step.before.nbytes + step.after.nbytes == 40  # as the binary-only document stored it
    doc = MaskDocument(512, 1024, classes=HE3)
    stroke(doc, [(100, 100), (110, 104)], radius=3, value=STROMA)
    assert doc._undo[-1][1].after.bits == 1  # air and class 1 only: still one bit
    doc.fill(1, 1, STROMA)
    stroke(doc, [(100, 100), (110, 104)], radius=3, value=NUCLEI)
    step = doc._undo[-1][1]
    assert (step.before.bits, step.after.bits) == (1, 2)
    w, h = step.rect[2] - step.rect[0], step.rect[3] - step.rect[1]
    assert step.after.nbytes == 2 * ((w * h + 7) // 8)


def test_fill_with_a_class_fills_one_connected_class_only():
    doc = he3_doc(40, 40)
    doc.fill_polygon([(5, 5), (26, 5), (26, 26), (5, 26)], NUCLEI)
    doc.fill_polygon([(8, 8), (23, 8), (23, 23), (8, 23)], 0)  # a ring of nuclei around air
    before = doc.labels.copy()
    assert doc.fill(15, 15, STROMA) is not None
    assert np.all(doc.labels[10:21, 10:21] == STROMA)
    assert np.array_equal(doc.labels[before == NUCLEI], before[before == NUCLEI])  # the ring kept its class
    assert np.all(doc.labels[:4] == 0)  # the outside air too
    assert doc.fill(15, 15, STROMA) is None  # already that class: no step
    doc.fill(6, 6, STROMA)  # the ring itself, one class, becomes stroma
    assert set(np.unique(doc.labels[5:27, 5:27])) == {STROMA}
    doc.undo()
    doc.undo()
    assert np.array_equal(doc.labels, before)


def test_lasso_with_a_class_and_clear_invert():
    doc = he3_doc(50, 60)
    doc.fill_polygon([(10, 10), (50, 10), (50, 40), (10, 40)], NUCLEI)
    assert np.all(doc.labels[10:40, 10:50] == NUCLEI) and doc.labels[5, 5] == 0
    doc.fill_polygon([(20, 20), (40, 20), (40, 30), (20, 30)], STROMA)
    square = doc.labels.copy()
    doc.invert(STROMA)  # every class becomes air, air the class given
    assert np.array_equal(doc.labels, np.where(square == 0, STROMA, 0))
    doc.clear()
    assert not doc.labels.any() and not doc.mask.any()
    doc.undo()
    doc.undo()
    assert np.array_equal(doc.labels, square)


def test_the_eraser_value_paints_air():
    doc = he3_doc()
    doc.fill(1, 1, NUCLEI)
    doc.stamp(30.5, 30.5, 4, 0)
    assert doc.labels[30, 30] == 0 and doc.labels[30, 36] == NUCLEI and doc.mask[30, 30] == 0


def test_replace_keeps_the_table_and_paints_tissue_as_class_1():
    doc = he3_doc(32, 32)
    doc.stamp(10, 10, 3, NUCLEI)
    old = doc.labels.copy()
    coarse = np.zeros((20, 40), np.uint8)
    coarse[5:15, 5:30] = 255
    doc.replace(coarse)
    assert doc.classes == HE3 and set(np.unique(doc.labels)) == {0, STROMA}
    assert np.array_equal(doc.mask, coarse)
    doc.undo()
    assert np.array_equal(doc.labels, old) and np.array_equal(doc.mask, np.where(old > 0, 255, 0))


def test_undo_memory_cap_holds_with_classes():
    full = 256 * 256 // 8  # one bit plane of the whole map
    doc = MaskDocument(256, 256, classes=HE3, undo_budget=2 * (full + 2 * full))  # room for two 1+2-bit steps
    doc.fill(1, 1, STROMA)
    states = [doc.labels.copy()]
    for _ in range(4):
        doc.invert(NUCLEI)  # all nuclei <-> all air: 2 bits one side, 1 bit the other
        states.append(doc.labels.copy())
    assert doc.undo_bytes() <= doc.undo_budget
    undone = 0
    while doc.undo() is not None:
        undone += 1
    assert undone == 2 and np.array_equal(doc.labels, states[2])


def test_save_and_open_an_indexed_png_with_its_classes(tmp_path):
    doc = he3_doc()
    doc.fill_polygon([(10, 10), (80, 10), (80, 50), (10, 50)], STROMA)
    doc.stamp(40, 30, 6, NUCLEI)
    path = doc.save_png(tmp_path / "three.png")
    assert not doc.dirty and is_indexed_png(path)
    assert read_class_table(tmp_path / CLASSES_NAME) == HE3
    with Image.open(path) as image:  # any viewer shows it in the class colours; training code reads ids
        assert image.mode == "P" and np.array_equal(np.asarray(image), doc.labels)
    again = MaskDocument.open(path)
    assert again.classes == HE3 and np.array_equal(again.labels, doc.labels) and again.open_notice is None
    assert np.array_equal(again.mask, doc.mask) and not again.dirty


def test_a_binary_document_saves_the_same_bytes_as_before(tmp_path):
    doc = MaskDocument.open(SKETCH)
    assert doc.is_binary
    doc.stamp(30, 30, 10, 0)
    path = doc.save_png(tmp_path / "binary.png")
    assert path.read_bytes() == encode_png(np.where(doc.labels > 0, 255, 0).astype(np.uint8), compression=3)
    assert not is_indexed_png(path) and not (tmp_path / CLASSES_NAME).exists()


def test_a_folder_whose_classes_json_holds_another_table_gets_a_per_file_table(tmp_path):
    write_class_table(tmp_path / CLASSES_NAME, HE3)  # other label maps here use he3
    custom = table_from_names(["tumour", "stroma", "necrosis"], name="lab")
    doc = MaskDocument(32, 32, classes=custom)
    doc.stamp(16, 16, 5, 3)
    doc.save_png(tmp_path / "mine.png")
    assert read_class_table(tmp_path / CLASSES_NAME) == HE3  # left alone
    assert read_class_table(tmp_path / f"mine.{CLASSES_NAME}") == custom
    assert MaskDocument.open(tmp_path / "mine.png").classes == custom
    he3 = he3_doc(32, 32)
    he3.save_png(tmp_path / "other.png")  # matches the shared table: nothing more written
    assert not (tmp_path / f"other.{CLASSES_NAME}").exists()


def test_a_label_map_without_a_table_takes_its_palette(tmp_path):
    labels = np.zeros((40, 40), np.uint8)
    labels[5:20, 5:20], labels[25:35, 25:35] = 1, 2
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "x.png").write_bytes(encode_label_png(labels, HE3))
    doc = MaskDocument.open(tmp_path / "labels" / "x.png")
    assert doc.classes.names == ["air", "class_1", "class_2"]
    assert np.array_equal(doc.classes.palette(), HE3.palette()) and np.array_equal(doc.labels, labels)
    assert "class_1, class_2" in doc.open_notice
    write_class_table(tmp_path / CLASSES_NAME, HE3)  # a prepared dataset: the table beside labels/
    assert MaskDocument.open(tmp_path / "labels" / "x.png").classes == HE3


def test_a_black_and_white_palette_png_is_still_a_mask(tmp_path):
    mask = np.zeros((32, 48), np.uint8)
    mask[8:24, 10:30] = 255
    Image.fromarray(mask).convert("1").save(tmp_path / "bw.png")  # a 1-bit image some editors write
    Image.fromarray(mask).convert("P").save(tmp_path / "grey_palette.png")
    for name in ("bw.png", "grey_palette.png"):
        doc = MaskDocument.open(tmp_path / name)
        assert doc.is_binary and np.array_equal(doc.mask, mask), name


def test_bad_label_maps_give_clear_errors(tmp_path):
    picture = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)  # a colour picture
    Image.fromarray(picture).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "picture.png")
    with pytest.raises(PriorPathError, match="picture.png.*at most 10 classes"):
        MaskDocument.open(tmp_path / "picture.png")
    labels = np.zeros((8, 8), np.uint8)
    (tmp_path / "tiny.png").write_bytes(encode_label_png(labels, HE3))
    with pytest.raises(PriorPathError, match="tiny.png"):
        MaskDocument.open(tmp_path / "tiny.png")
    broken = encode_label_png(np.zeros((32, 32), np.uint8), HE3)[:60]
    (tmp_path / "broken.png").write_bytes(broken)
    with pytest.raises(PriorPathError, match="broken.png"):
        MaskDocument.open(tmp_path / "broken.png")
    (tmp_path / "bad.png").write_bytes(encode_label_png(np.full((32, 32), 2, np.uint8), HE3))
    (tmp_path / CLASSES_NAME).write_text(json.dumps(BINARY.to_json()))  # too few classes for the map
    doc = MaskDocument.open(tmp_path / "bad.png")
    assert doc.classes.names == ["air", "class_1", "class_2"] and "2 classes, the map uses 3" in doc.open_notice


def test_the_tissue_mask_stays_in_step_with_the_labels():
    doc = he3_doc(64, 64)
    mask = doc.mask  # asked for once, then kept live
    doc.stamp(20, 20, 5, NUCLEI)
    assert mask is doc.mask and mask[20, 20] == 255
    doc.undo()
    assert not mask.any()
    doc.replace(cv2.resize(np.full((8, 8), 255, np.uint8), (40, 30)))  # another size
    assert doc.mask.shape == (30, 40) and doc.mask.all()
