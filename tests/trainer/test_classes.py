"""Class tables and indexed label PNGs: round trips, colour maps and clear refusals."""
import numpy as np
import pytest
from PIL import Image

from trainer.data.classes import (BINARY, HE3, ClassTable, LabelClass, binary_labels, class_fractions,
                                  read_class_table, read_label_png, table_from_names, tissue_of,
                                  write_class_table, write_label_png)
from trainer.errors import PriorPathError


def _labels(seed=0, shape=(37, 53), n=3):
    return np.random.default_rng(seed).integers(0, n, shape).astype(np.uint8)


def test_indexed_png_round_trip_keeps_ids_and_palette(tmp_path):
    labels = _labels()
    write_label_png(tmp_path / "a.png", labels, HE3)
    with Image.open(tmp_path / "a.png") as image:
        assert image.mode == "P"
        assert image.getpalette()[:9] == [255, 255, 255, 236, 150, 190, 70, 40, 150]
    read, table = read_label_png(tmp_path / "a.png", HE3)
    assert np.array_equal(read, labels) and table == HE3
    read, table = read_label_png(tmp_path / "a.png")
    assert np.array_equal(read, labels) and len(table) == 3


def test_colour_label_map_is_read_through_the_table(tmp_path):
    labels = _labels(1)
    Image.fromarray(HE3.colourise(labels)).save(tmp_path / "c.png")
    assert np.array_equal(read_label_png(tmp_path / "c.png", HE3)[0], labels)
    rgb = HE3.colourise(labels)
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(tmp_path / "bad.png")
    with pytest.raises(PriorPathError, match="1 pixels have colours"):
        read_label_png(tmp_path / "bad.png", HE3)


def test_binary_mask_reads_as_two_classes(tmp_path):
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 5:20] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    labels, table = read_label_png(tmp_path / "m.png")
    assert table == BINARY and labels.sum() == 75
    assert np.array_equal(tissue_of(labels), mask)
    assert np.array_equal(binary_labels(mask), labels)


def test_ids_beyond_the_table_are_refused(tmp_path):
    write_label_png(tmp_path / "a.png", _labels(n=3), HE3)
    with pytest.raises(PriorPathError, match="class id 2"):
        read_label_png(tmp_path / "a.png", BINARY)


def test_class_table_json_round_trip_and_validation(tmp_path):
    write_class_table(tmp_path / "classes.json", HE3)
    assert read_class_table(tmp_path / "classes.json") == HE3
    (tmp_path / "x.json").write_text('{"format": "other"}')
    with pytest.raises(PriorPathError, match="not a PriorPath class table"):
        read_class_table(tmp_path / "x.json")
    with pytest.raises(PriorPathError, match="start with id 0 = air"):
        ClassTable("t", (LabelClass(0, "tumour", (1, 2, 3)),))
    with pytest.raises(PriorPathError, match="0, 1, 2"):
        ClassTable("t", (LabelClass(0, "air", (1, 2, 3)), LabelClass(2, "b", (1, 2, 3))))
    table = table_from_names(["background", "tumour", "stroma"])
    assert table.names == ["air", "tumour", "stroma"] and table.id_of("stroma") == 2


def test_class_fractions_sum_to_one():
    f = class_fractions(_labels(2, (64, 64)), 3)
    assert f.shape == (3,) and abs(f.sum() - 1) < 1e-9 and (f > 0.25).all()
