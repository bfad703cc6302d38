"""Sketch augmentation (paper §2.4) on sketches made from real coarse masks."""
from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from trainer.data import masks, sketches
from trainer.data.sketches import augment_sketch, augment_sketches, load_sketch
from trainer.errors import Cancelled, PriorPathError
from trainer.jobs import CancelToken

REAL = "osteosarcoma_tcia_ut/Viable___Case-4-C21-25306-21689_120.jpg"
SIZE = (128, 256)  # small outputs keep the suite fast; one test uses the default 512x1024


def binarise_down(mask: np.ndarray, hw) -> np.ndarray:
    small = cv2.resize(mask, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
    return np.where(small > 127, 255, 0).astype(np.uint8)


@pytest.fixture(scope="module")
def real_coarse(data_dir) -> np.ndarray:
    """Two 512x1024 coarse masks from a real H&E tile (paper §2.1/§2.3 rules)."""
    rgb = np.asarray(Image.open(data_dir / REAL).convert("RGB"))
    coarse = masks.coarse_mask(masks.fine_mask(masks.luma(rgb), 204))
    return coarse[:512, :1024], coarse[512:, :1024]


@pytest.fixture()
def sketch_dir(tmp_path, real_coarse):
    """A folder of sketches in several formats, as hand-drawn sketches would arrive."""
    top, bottom = real_coarse
    folder = tmp_path / "sketches"
    (folder / "more").mkdir(parents=True)
    Image.fromarray(binarise_down(top, (256, 512))).save(folder / "a_top.png")
    Image.fromarray(binarise_down(bottom, (128, 256))).save(folder / "more" / "b_bottom.png")
    return folder


def read(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def tissue(mask) -> float:
    return float(np.count_nonzero(mask)) / mask.size


# -- loading ------------------------------------------------------------------------------------------

def test_load_grey_rgb_rgba_16bit_and_labels(tmp_path, real_coarse):
    sketch = binarise_down(real_coarse[0], (128, 256))
    Image.fromarray(sketch).save(tmp_path / "grey.png")
    assert np.array_equal(load_sketch(tmp_path / "grey.png"), sketch)

    rgb = np.stack([sketch] * 3, axis=-1)
    rgb[..., 0] = np.where(sketch > 0, 200, 30)  # coloured strokes still read by their brightness
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert np.array_equal(load_sketch(tmp_path / "rgb.png"), sketch)

    rgba = np.dstack([np.full_like(sketch, 255)] * 3 + [sketch])  # white everywhere, alpha draws the tissue
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(load_sketch(tmp_path / "rgba.png"), sketch)

    tifffile.imwrite(tmp_path / "deep.tif", sketch.astype(np.uint16) * 257)
    assert np.array_equal(load_sketch(tmp_path / "deep.tif"), sketch)

    Image.fromarray((sketch > 0).astype(np.uint8)).save(tmp_path / "labels.png")  # a 0/1 label image
    assert np.array_equal(load_sketch(tmp_path / "labels.png"), sketch)

    Image.fromarray(sketch).save(tmp_path / "lossy.jpg", quality=90)
    assert np.mean(load_sketch(tmp_path / "lossy.jpg") != sketch) < 0.01


def test_load_labelme_sketch(tmp_path):
    doc = {"shapes": [{"label": "tissue", "shape_type": "rectangle", "points": [[2, 3], [11, 7]]}],
           "imageHeight": 16, "imageWidth": 32}
    (tmp_path / "s.json").write_text(json.dumps(doc))
    mask = load_sketch(tmp_path / "s.json")
    assert mask.shape == (16, 32) and np.count_nonzero(mask) == 10 * 5


def test_empty_unreadable_and_full_sketches(tmp_path):
    Image.fromarray(np.full((20, 40), 90, np.uint8)).save(tmp_path / "dark.png")
    with pytest.raises(PriorPathError, match=r"dark\.png: sketch has no tissue"):
        load_sketch(tmp_path / "dark.png")
    (tmp_path / "junk.png").write_bytes(b"not a png at all")
    with pytest.raises(PriorPathError, match=r"junk\.png: not a readable image"):
        load_sketch(tmp_path / "junk.png")
    with pytest.raises(PriorPathError, match=r"gone\.png: cannot read"):
        load_sketch(tmp_path / "gone.png")
    Image.fromarray(np.full((20, 40), 255, np.uint8)).save(tmp_path / "full.png")
    assert load_sketch(tmp_path / "full.png").all()


# -- one augmentation ---------------------------------------------------------------------------------

def test_augmentation_is_binary_sized_and_really_changes_the_mask(real_coarse):
    sketch = binarise_down(real_coarse[0], (256, 512))
    plain = binarise_down(sketch, SIZE)
    fractions, changed = [], []
    for i in range(24):
        out, params = augment_sketch(sketch, SIZE, np.random.default_rng([7, i]))
        assert out.shape == SIZE and out.dtype == np.uint8
        assert set(np.unique(out)) <= {0, 255} and out.any()
        json.dumps(params)  # JSON-serialisable for the manifest
        fractions.append(tissue(out))
        changed.append(np.mean(out != plain))
    assert min(changed) > 0.01 and np.mean(changed) > 0.05  # never the identity
    base = tissue(plain)
    # Shape is kept on average: the air border of turned/shrunk canvases costs some tissue, not most of it.
    assert 0.7 * base < np.mean(fractions) < 1.1 * base
    assert np.std(fractions) > 0.01  # and the draws really vary


def test_same_rng_same_mask_and_params(real_coarse):
    sketch = binarise_down(real_coarse[1], (128, 256))
    a, pa = augment_sketch(sketch, SIZE, np.random.default_rng([3, 5]))
    b, pb = augment_sketch(sketch, SIZE, np.random.default_rng([3, 5]))
    c, _ = augment_sketch(sketch, SIZE, np.random.default_rng([3, 6]))
    assert np.array_equal(a, b) and pa == pb
    assert not np.array_equal(a, c)


def test_parameters_stay_within_their_ranges(real_coarse):
    sketch = binarise_down(real_coarse[0], (128, 256))
    for i in range(20):
        _, p = augment_sketch(sketch, SIZE, np.random.default_rng(i))
        assert abs(p["rotation_deg"]) <= 25 and 0.8 <= p["scale"] <= 1.25 and abs(p["shear_deg"]) <= 10
        assert all(abs(t) <= 0.1 for t in p["translate"]) and p["morph"] in ("dilate", "erode")
        assert 0 <= p["morph_radius"] <= round(0.012 * SIZE[0]) + 1


def test_a_speck_never_comes_back_empty():
    speck = np.zeros((64, 128), np.uint8)
    speck[30:33, 60:63] = 255  # erosion, shrinking or a shift off the canvas often removes it
    for i in range(30):
        out, params = augment_sketch(speck, (64, 128), np.random.default_rng(i))
        assert out.any()
    tiny = np.zeros((400, 400), np.uint8)
    tiny[0, 0] = 255
    out, params = augment_sketch(tiny, (20, 20), np.random.default_rng(0))
    assert out.any() and params.get("fallback") is True


# -- the repository -----------------------------------------------------------------------------------

def manifest(folder):
    with open(folder / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def pngs(folder):
    return {p.name: p.read_bytes() for p in sorted((folder / "coarse").glob("*.png"))}


def test_writes_count_masks_and_a_manifest(sketch_dir, tmp_path):
    calls = []
    out = tmp_path / "aug"
    n = augment_sketches([sketch_dir], out, count=6, size=SIZE, seed=11, progress=lambda *a: calls.append(a))
    assert n == 6
    files = sorted((out / "coarse").iterdir())
    assert [f.name for f in files] == [f"aug_{i:06d}.png" for i in range(6)]
    for f in files:
        m = read(f)
        assert m.shape == SIZE and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 255} and m.any()
    rows = manifest(out)
    assert [r["stem"] for r in rows] == [f.stem for f in files]
    sources = {str((sketch_dir / "a_top.png").resolve()), str((sketch_dir / "more" / "b_bottom.png").resolve())}
    assert {r["source"] for r in rows} <= sources and all(r["seed"] == "11" for r in rows)
    assert all(isinstance(json.loads(r["params"])["scale"], float) for r in rows)
    assert calls[-1][:2] == (6, 6)


def test_same_seed_byte_identical_other_seed_differs_and_count_does_not_matter(sketch_dir, tmp_path):
    augment_sketches([sketch_dir], tmp_path / "a", count=5, size=SIZE, seed=3)
    augment_sketches([sketch_dir], tmp_path / "b", count=5, size=SIZE, seed=3)
    augment_sketches([sketch_dir], tmp_path / "c", count=5, size=SIZE, seed=4)
    augment_sketches([sketch_dir], tmp_path / "d", count=2, size=SIZE, seed=3)
    a, b, c, d = (pngs(tmp_path / x) for x in "abcd")
    assert a == b
    assert (tmp_path / "a" / "manifest.csv").read_bytes() == (tmp_path / "b" / "manifest.csv").read_bytes()
    assert all(a[k] != c[k] for k in a)
    assert d == {k: a[k] for k in d}  # output i does not depend on count
    assert manifest(tmp_path / "d") == manifest(tmp_path / "a")[:2]


def test_output_i_comes_from_its_own_rng(sketch_dir, tmp_path):
    """The documented contract: mask i = augment_sketch(sketch chosen by rng, size, rng), rng = default_rng([seed, i])."""
    out = tmp_path / "aug"
    augment_sketches([sketch_dir], out, count=5, size=SIZE, seed=9)
    loaded = [load_sketch(p) for p in sketches.find_sketches([sketch_dir])]
    for i in (0, 4):
        rng = np.random.default_rng([9, i])
        expected, params = augment_sketch(loaded[int(rng.integers(len(loaded)))], SIZE, rng)
        assert np.array_equal(read(out / "coarse" / f"aug_{i:06d}.png"), expected)
        assert json.loads(manifest(out)[i]["params"]) == params


def test_resume_skips_existing_and_repairs_missing_or_stale(sketch_dir, tmp_path):
    out = tmp_path / "aug"
    augment_sketches([sketch_dir], out, count=6, size=SIZE, seed=1)
    before, rows = pngs(out), manifest(out)
    coarse = out / "coarse"
    (coarse / "aug_000002.png").unlink()
    Image.fromarray(np.full(SIZE, 255, np.uint8)).save(coarse / "aug_000004.png")  # not what seed 1 draws
    (out / "manifest.csv").unlink()
    kept = {f: (coarse / f).stat().st_mtime_ns for f in ("aug_000000.png", "aug_000005.png")}
    (coarse / ".aug_000003.png.tmp-x1y2").write_bytes(b"half")  # what a killed write leaves behind

    assert augment_sketches([sketch_dir], out, count=6, size=SIZE, seed=1) == 6
    assert pngs(out) == before
    assert manifest(out) == rows
    assert {f: (coarse / f).stat().st_mtime_ns for f in kept} == kept  # finished masks were not rewritten
    assert not list(coarse.glob(".*"))

    assert augment_sketches([sketch_dir], out, count=8, size=SIZE, seed=1) == 8  # growing extends
    assert manifest(out)[:6] == rows and len(manifest(out)) == 8


def test_default_size_is_512x1024(sketch_dir, tmp_path):
    augment_sketches([sketch_dir / "a_top.png"], tmp_path / "aug", count=2)
    for f in (tmp_path / "aug" / "coarse").iterdir():
        assert read(f).shape == (512, 1024)


def test_bad_sketch_fails_before_anything_is_written(sketch_dir, tmp_path):
    Image.fromarray(np.zeros((32, 64), np.uint8)).save(sketch_dir / "z_empty.png")
    out = tmp_path / "aug"
    with pytest.raises(PriorPathError, match=r"z_empty\.png: sketch has no tissue"):
        augment_sketches([sketch_dir], out, count=3, size=SIZE)
    assert not out.exists()


def test_no_sketches_and_missing_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no sketches here")
    with pytest.raises(PriorPathError, match="no sketch files"):
        augment_sketches([tmp_path / "empty"], tmp_path / "out", count=1)
    with pytest.raises(PriorPathError, match=r"nowhere: no such file or folder"):
        augment_sketches([tmp_path / "nowhere"], tmp_path / "out", count=1)


def test_outputs_inside_the_sketch_folder_are_not_taken_as_sketches(sketch_dir):
    out = sketch_dir / "generated"
    augment_sketches([sketch_dir], out, count=3, size=SIZE, seed=2)
    first = manifest(out)
    augment_sketches([sketch_dir], out, count=3, size=SIZE, seed=2)
    assert manifest(out) == first
    assert len(sketches.find_sketches([sketch_dir], exclude=out)) == 2


def test_cancel_keeps_a_manifest_of_what_is_done(sketch_dir, tmp_path):
    token = CancelToken()

    def progress(done, total, message):
        if done == 2:
            token.cancel()

    out = tmp_path / "aug"
    with pytest.raises(Cancelled):
        augment_sketches([sketch_dir], out, count=10, size=SIZE, progress=progress, cancel=token)
    assert [r["stem"] for r in manifest(out)] == ["aug_000000", "aug_000001"]
    assert sorted(p.name for p in (out / "coarse").iterdir()) == ["aug_000000.png", "aug_000001.png"]
