"""The he3 label rule (trainer/data/labels.py): hand-countable synthetic slides, an independent colour
deconvolution on real tiles, ``prepare --labels he3`` end to end, and Labelme shapes as class regions."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from trainer.cli import main
from trainer.data import labels as rule
from trainer.data import masks
from trainer.data.classes import HE3, read_class_table, read_label_png, table_from_names, tissue_of
from trainer.data.labelme import import_labelme_files, labelme_to_labels
from trainer.data.prepare import MANIFEST_FIELDS, PrepareSettings, prepare, read_manifest
from trainer.errors import Cancelled, PriorPathError
from trainer.jobs import CancelToken

from .helpers import read_png

# Stain vectors (OD per unit concentration, R G B) of Ruifrok & Johnston 2001, typed from the paper.
H_VEC = np.array([0.650, 0.704, 0.286])
E_VEC = np.array([0.072, 0.990, 0.105])
DAB_VEC = np.array([0.268, 0.570, 0.776])
SEVEN = [(20, 30), (24, 80), (60, 50), (90, 20), (100, 100), (40, 140), (95, 160)]  # (row, col) centres


def stained(h_conc: np.ndarray, e_conc: np.ndarray, seed: int = 0) -> np.ndarray:
    """Beer-Lambert RGB of per-pixel H and E concentrations (natural-log OD), with +-2 grey noise."""
    od = h_conc[..., None] * H_VEC + e_conc[..., None] * E_VEC
    rgb = 255.0 * np.exp(-od) + np.random.default_rng(seed).normal(0, 1.0, od.shape)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def disc(shape, centre, radius) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


def slide(centres=SEVEN, radius=5, shape=(128, 256), glass_from=200, specks=()):
    """Eosin stroma with haematoxylin discs, glass (no stain) from column ``glass_from``; returns rgb,
    the disc masks and the glass mask."""
    e = np.full(shape, 0.6)
    h = np.zeros(shape)
    discs = [disc(shape, c, radius) for c in centres]
    for d in discs:
        h[d] = 1.0
    for r, c, size in specks:
        h[r : r + size, c : c + size] = 1.0
    glass = np.zeros(shape, bool)
    glass[:, glass_from:] = True
    e[glass], h[glass] = 0.0, 0.0
    rgb = stained(h, e)
    rgb[glass] = 245  # clean glass, well above the 204 air threshold
    return rgb, discs, glass


def components(mask: np.ndarray) -> int:
    return cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1


def test_seven_haematoxylin_discs_are_seven_nuclei_on_stroma_beside_glass():
    rgb, discs, glass = slide()
    t = rule.nuclei_threshold([rgb])
    labels = rule.he3_labels(rgb, t)
    nuclei = labels == rule.NUCLEI
    assert components(nuclei) == 7
    for d in discs:  # each disc found where it is
        assert (nuclei & d).sum() >= 0.9 * d.sum()
    union = np.logical_or.reduce(discs)
    assert (nuclei & union).sum() / (nuclei | union).sum() >= 0.9
    assert np.array_equal(labels == 0, glass)
    assert np.array_equal(tissue_of(labels), masks.fine_mask(masks.luma(rgb), 204))
    assert np.array_equal(labels == rule.STROMA, ~glass & ~nuclei)


def test_specks_below_the_minimum_area_are_dropped():
    specks = [(60, 110, 1), (10, 120, 2), (110, 60, 2)]  # 1 and 4 px of haematoxylin
    rgb, _, _ = slide(specks=specks)
    labels = rule.he3_labels(rgb, rule.nuclei_threshold([rgb]))
    assert components(labels == rule.NUCLEI) == 7
    for r, c, size in specks:
        assert not (labels[r - 2 : r + size + 2, c - 2 : c + size + 2] == rule.NUCLEI).any()
    big = [(60, 110, 4)]  # 16 px: a small nucleus, kept
    rgb, _, _ = slide(specks=big)
    assert components(rule.he3_labels(rgb, rule.nuclei_threshold([rgb])) == rule.NUCLEI) == 8


def test_a_slide_without_nuclei_gets_no_nuclei_class():
    rgb, _, glass = slide(centres=[])
    t = rule.nuclei_threshold([rgb])
    assert t == rule.MIN_THRESHOLD
    labels = rule.he3_labels(rgb, t)
    assert set(np.unique(labels)) == {0, 1} and np.array_equal(labels == 0, glass)
    assert rule.NUCLEI not in rule.coarse_labels(labels)


def test_nuclei_dense_region_is_where_the_nuclei_crowd():
    shape = (128, 256)
    crowd = [(r, c) for r in range(8, 124, 12) for c in range(8, 100, 12)]  # 10 x 8 nuclei, left
    sparse = [(30, 170), (90, 220)]  # two lone nuclei, right
    rgb, _, _ = slide(crowd + sparse, radius=4, shape=shape, glass_from=256)
    labels = rule.he3_labels(rgb, rule.nuclei_threshold([rgb]))
    coarse = rule.coarse_labels(labels)
    dense = coarse == rule.NUCLEI
    assert dense[20:110, 15:90].mean() > 0.95  # inside the crowd
    assert not dense[:, 130:].any()  # lone nuclei are not a region
    fine = masks.fine_mask(masks.luma(rgb), 204)
    assert np.array_equal(tissue_of(coarse), masks.coarse_mask(fine))


# -- independent implementation ---------------------------------------------------------------------

REAL_SLIDES = ["osteosarcoma_tcia_ut/Viable___Case-4-C29-29639-16570_104.jpg",
               "openslide_os1_os2_qupath_crops/OS-1-detail.png",
               "histolab_fixture_tiles/high-nuclei-score-level0.png",
               "histolab_fixture_tiles/tcga-lung-rgb.png"]
_INVERSE = np.linalg.inv(np.stack([v / np.linalg.norm(v) for v in (H_VEC, E_VEC, DAB_VEC)]))


def own_haematoxylin(rgb: np.ndarray) -> np.ndarray:
    """Beer-Lambert OD (base 10, I0 = 256 with +1 so black is finite) times the inverse stain matrix."""
    od = -np.log10((rgb.astype(np.float64) + 1.0) / 256.0)
    return (od.reshape(-1, 3) @ _INVERSE)[:, 0].reshape(rgb.shape[:2])


def tiles_of(path, patch=(256, 512)):
    from trainer.data.slides import open_source

    with open_source(path) as reader:
        lv = reader.levels[0]
        tiles = [reader.read_region(x, y, patch[1], patch[0], 0)
                 for y in range(0, lv.height - patch[0] + 1, patch[0])
                 for x in range(0, lv.width - patch[1] + 1, patch[1])]
    return [t for t in tiles if (masks.luma(t) > 204).mean() <= 0.85]


@pytest.mark.parametrize("name", REAL_SLIDES)
def test_rgb2hed_agrees_with_an_own_deconvolution_on_real_tiles(data_dir, name):
    from skimage.filters import threshold_otsu

    tiles = tiles_of(data_dir / name)
    assert tiles
    t_rule = rule.nuclei_threshold(tiles)
    own = [own_haematoxylin(t) for t in tiles]
    values = np.concatenate([rule.smoothed(h)[masks.luma(t) <= 204] for h, t in zip(own, tiles)])
    t_own = float(threshold_otsu(values))  # its own per-slide Otsu, in its own units
    inter = total = 0
    for tile, h in zip(tiles, own):
        tissue = rule.tissue_mask(tile, 204)
        r = np.corrcoef(rule.haematoxylin(tile)[tissue > 0], h[tissue > 0])[0, 1]
        assert r > 0.99, r  # measured >= 0.993 per tile on these slides
        a = rule.nuclei_mask(tile, tissue, t_rule)
        b = rule.nuclei_mask(tile, tissue, t_own, h=h)
        inter, total = inter + (a & b).sum(), total + a.sum() + b.sum()
    assert 2 * inter / total >= 0.97  # measured 0.988-0.994 on these slides


# -- prepare --labels he3 ---------------------------------------------------------------------------

SOURCE = "osteosarcoma_tcia_ut/Viable___Case-4-C29-29639-16570_104.jpg"
SMALL = dict(stain="he", patch=(256, 512))


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".prepare" not in p.parts}


def test_prepare_writes_label_maps_consistent_with_the_masks(data_dir, tmp_path):
    src = data_dir / SOURCE
    assert main(["prepare", str(src), "--out", str(tmp_path), "--stain", "he", "--patch", "256x512",
                 "--labels", "he3", "--no-progress"]) == 0
    rows = read_manifest(tmp_path)
    assert list(rows[0]) == MANIFEST_FIELDS + ["nuclei_threshold"] and len(rows) == 8
    assert read_class_table(tmp_path / "classes.json") == HE3
    assert len({r["nuclei_threshold"] for r in rows}) == 1  # one per source
    t = float(rows[0]["nuclei_threshold"])
    assert t == rule.nuclei_threshold(tiles_of(src))  # all 8 patches are the sample
    for row in rows:
        stem = row["stem"]
        fine, coarse, rgb = (read_png(tmp_path / f / f"{stem}.png") for f in ("fine", "coarse", "rgb"))
        labels, table = read_label_png(tmp_path / "labels" / f"{stem}.png")
        coarse_labels, _ = read_label_png(tmp_path / "coarse_labels" / f"{stem}.png", HE3)
        assert np.array_equal(tissue_of(labels), fine) and np.array_equal(tissue_of(coarse_labels), coarse)
        assert np.array_equal(labels, rule.he3_labels(rgb, t))
        assert table.palette().tolist() == HE3.palette().tolist()
    settings = json.loads((tmp_path / ".prepare" / "settings.json").read_text())
    assert settings["labels"] == "he3"


def test_prepare_labels_resume_and_refusal(data_dir, tmp_path):
    src = data_dir / SOURCE
    prepare([src], tmp_path / "whole", PrepareSettings(**SMALL, labels="he3"))
    token = CancelToken()

    def progress(done, total, message):
        if done >= 3:
            token.cancel()

    cut = tmp_path / "cut"
    with pytest.raises(Cancelled):
        prepare([src], cut, PrepareSettings(**SMALL, labels="he3"), progress=progress, cancel=token, workers=1)
    (cut / "labels" / f"{read_manifest(cut)[0]['stem']}.png").unlink()  # a patch missing one file is redone
    prepare([src], cut, PrepareSettings(**SMALL, labels="he3"))
    assert _tree(cut) == _tree(tmp_path / "whole")
    with pytest.raises(PriorPathError, match="other settings.*labels he3 -> None"):
        prepare([src], cut, PrepareSettings(**SMALL))
    plain = tmp_path / "plain"
    prepare([src], plain, PrepareSettings(**SMALL))
    with pytest.raises(PriorPathError, match="other settings.*labels None -> he3"):
        prepare([src], plain, PrepareSettings(**SMALL, labels="he3"))
    assert "labels" not in json.loads((plain / ".prepare" / "settings.json").read_text())
    assert list(read_manifest(plain)[0]) == MANIFEST_FIELDS
    assert not (plain / "labels").exists() and not (plain / "classes.json").exists()
    with pytest.raises(PriorPathError, match="needs --stain he"):
        prepare([src], tmp_path / "ihc", PrepareSettings(stain="ihc", patch=(256, 512), labels="he3"))

    rule.label_prepared(plain)  # labelling later gives the same files when every patch was kept
    for sub in ("labels", "coarse_labels"):
        assert _tree(plain / sub) == _tree(tmp_path / "whole" / sub)


# -- Labelme shapes as class regions ----------------------------------------------------------------

def _doc(*shapes, h=40, w=60):
    return {"shapes": [{"label": lab, "points": pts, "shape_type": "rectangle"} for lab, pts in shapes],
            "imageHeight": h, "imageWidth": w}


def test_labelme_shapes_paint_their_classes_in_file_order(tmp_path):
    table = table_from_names(["tumour", "stroma"])
    data = _doc(("Stroma", [[0, 0], [59, 39]]), ("tumour", [[10, 10], [29, 29]]), ("background", [[20, 20], [24, 24]]))
    labels, same = labelme_to_labels(data, table)
    assert same is table
    assert labels[0, 0] == 2 and labels[15, 15] == 1 and labels[22, 22] == 0  # later shapes over earlier
    assert np.bincount(labels.ravel(), minlength=3).tolist() == [25, 400 - 25, 2400 - 400]
    auto, made = labelme_to_labels(data)
    assert made.names == ["air", "Stroma", "tumour"] and np.array_equal(auto, np.choose(labels, [0, 2, 1]))
    with pytest.raises(PriorPathError, match="not in class table.*'necrosis', 'fat'"):
        labelme_to_labels(_doc(("necrosis", [[0, 0], [5, 5]]), ("tumour", [[0, 0], [5, 5]]),
                               ("fat", [[0, 0], [5, 5]])), table)

    for i, d in enumerate((data, _doc(("lumen", [[0, 0], [9, 9]]), ("fat", [[5, 5], [9, 9]])))):
        (tmp_path / f"a{i}.json").write_text(json.dumps(d))
    written = import_labelme_files([tmp_path], tmp_path / "out", classes="auto")
    made = read_class_table(tmp_path / "out" / "classes.json")
    assert made.names == ["air", "Stroma", "tumour", "fat"]  # lumen is a hole label: air
    second, _ = read_label_png(written[1], made)
    assert second[0, 0] == 0 and second[7, 7] == 3
    with pytest.raises(PriorPathError, match="'fat'"):
        import_labelme_files([tmp_path], tmp_path / "out2", classes=table)
    assert not (tmp_path / "out2" / "a0.png").exists()  # checked before anything is written
