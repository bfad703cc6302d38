"""Whole synthetic slides: pyramidal TIFFs read back with OpenSlide, seams, labels, GeoJSON in and out."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import openslide
import pytest

from trainer.data.masks import luma
from trainer.errors import Cancelled, PriorPathError
from trainer.geojson import mask_polygons, read_geojson, write_annotations
from trainer.inference import Engine
from trainer.jobs import CancelToken
from trainer.slide import generate_slide, plan_slide
from trainer.slide_writer import write_pyramid

REPO = Path(__file__).resolve().parents[2]
SKETCH = REPO / "resources" / "sample" / "sketches" / "sketch_01.png"


def level(slide: openslide.OpenSlide, k: int, channels: str = "RGB") -> np.ndarray:
    return np.asarray(slide.read_region((0, 0), k, slide.level_dimensions[k]).convert(channels))


def test_pyramid_opens_in_openslide_with_every_level_tiled_and_the_right_pixels(tmp_path):
    h, w = 1300, 2100
    image = np.full((h, w, 3), 235, np.uint8)
    image[200:1100, 300:1800] = (180, 80, 150)
    image[600:700, 900:1000] = (40, 30, 90)
    bands = (image[y:y + 170] for y in range(0, h, 170))  # bands that do not line up with the tiles
    path = write_pyramid(tmp_path / "s.tif", h, w, bands, tile=256, mpp=0.25, description="test slide")
    slide = openslide.OpenSlide(str(path))
    assert slide.properties["openslide.vendor"] == "generic-tiff"
    assert slide.level_dimensions == ((2100, 1300), (1050, 650), (525, 325), (263, 163), (132, 82))
    assert [slide.properties[f"openslide.level[{k}].tile-width"] for k in range(5)] == ["256"] * 5
    assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.25)
    for k in range(slide.level_count):
        got = level(slide, k).astype(int)
        want = cv2.resize(image, slide.level_dimensions[k], interpolation=cv2.INTER_AREA).astype(int)
        inner = (slice(8, -8), slice(8, -8))  # JPEG and the 2x2 averages smear the edges of the shapes
        assert np.abs(got - want)[inner].mean() < 3, k
    assert not list(tmp_path.glob(".*partial"))


def test_a_mask_pyramid_is_lossless_at_level_0(tmp_path):
    mask = (np.random.default_rng(0).random((700, 900)) > 0.5).astype(np.uint8) * 255
    slide = openslide.OpenSlide(str(write_pyramid(tmp_path / "m.tif", 700, 900, [mask], channels=1, tile=256)))
    assert np.array_equal(level(slide, 0, "L"), mask)


def test_a_failing_or_cancelled_band_source_leaves_no_file(tmp_path):
    def bands():
        yield np.zeros((100, 300, 3), np.uint8)
        raise Cancelled("stopped")

    with pytest.raises(Cancelled):
        write_pyramid(tmp_path / "s.tif", 300, 300, bands(), tile=256)
    with pytest.raises(ValueError, match="rows given"):
        write_pyramid(tmp_path / "s.tif", 300, 300, [np.zeros((100, 300, 3), np.uint8)], tile=256)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def engine():
    return Engine(device="cpu")


@pytest.fixture(scope="module")
def small_sketch():
    sketch = cv2.imread(str(SKETCH), cv2.IMREAD_GRAYSCALE)
    return cv2.resize(sketch, (sketch.shape[1] // 4, sketch.shape[0] // 4), interpolation=cv2.INTER_NEAREST)


def seam_excess(rgb: np.ndarray, tile: int, overlap: int) -> float:
    """How far the worst line in the tile overlaps stands out from interior lines (in interior SDs).

    A line's energy is the mean absolute luma step to the next line. A straight seam is one line far above
    the rest; a cut seam spreads over the overlap's lines like any interior line."""
    grey = rgb.astype(np.float32).mean(-1)
    worst = 0.0
    for a in (grey, grey.T):
        energy = np.abs(np.diff(a, axis=0)).mean(1)
        zone = np.zeros(len(energy), bool)
        for b in range(tile, a.shape[0], tile):
            zone[max(0, b - overlap - 1): b] = True
        worst = max(worst, (energy[zone].max() - energy[~zone].mean()) / energy[~zone].std())
    return worst


def test_a_slide_from_a_sketch_has_no_seams_and_its_mask_is_its_exact_label(engine, small_sketch, tmp_path):
    result = generate_slide(small_sketch, 8, tmp_path / "slide.tif", engine, seed=3, tile=256, overlap=48,
                            lossless=True)
    rgb = level(openslide.OpenSlide(str(result.rgb)), 0)
    fine = level(openslide.OpenSlide(str(result.mask)), 0, "L")
    assert rgb.shape[:2] == fine.shape == (512, 1024) and result.plan.tiles == 8
    traced = read_geojson(result.fine_annotations, shape=fine.shape)
    assert (traced != fine).mean() < 1e-3  # polygons of pixel-thin tissue lose a few pixels, no more
    assert np.array_equal(luma(rgb) <= 204, fine > 0)  # the paper's rule gives back the mask exactly
    coarse = cv2.resize(small_sketch, (1024, 512), interpolation=cv2.INTER_LINEAR) > 127
    assert ((fine > 0) == coarse).mean() > 0.8  # the fine mask follows the sketch
    assert seam_excess(rgb, 256, 48) < 4
    naive = generate_slide(small_sketch, 8, tmp_path / "naive.tif", engine, seed=3, tile=256, overlap=48,
                           seams=False, lossless=True)
    assert seam_excess(level(openslide.OpenSlide(str(naive.rgb)), 0), 256, 48) > 6  # the check can fail


def test_a_slide_writes_the_sketch_as_qupath_annotations_that_read_back(engine, small_sketch, tmp_path):
    result = generate_slide(small_sketch, 4, tmp_path / "s.tif", engine, seed=0, tile=256, overlap=32)
    data = json.loads(result.annotations.read_text())
    assert data["type"] == "FeatureCollection" and data["features"]
    feature = data["features"][0]
    assert feature["properties"]["objectType"] == "annotation" and feature["geometry"]["type"] == "Polygon"
    xs = [x for f in data["features"] for ring in f["geometry"]["coordinates"] for x, _ in ring]
    assert max(xs) <= small_sketch.shape[1] * 4  # level-0 pixels of the slide, not of the sketch
    back = read_geojson(result.annotations, shape=small_sketch.shape, scale=4)
    assert np.array_equal(back > 0, small_sketch > 0)


def test_geojson_keeps_holes_and_reads_what_qupath_exports(tmp_path):
    mask = np.zeros((60, 80), np.uint8)
    mask[10:50, 10:70] = 255
    mask[20:30, 20:40] = 0  # a hole
    mask[5, 75] = 255  # a single pixel
    mask[55, 2:9] = 255  # one-pixel lines, straight and diagonal
    mask[np.arange(52, 58), np.arange(70, 76)] = 255
    polygons = mask_polygons(mask)
    assert sorted(len(p) for p in polygons) == [1, 1, 1, 2]  # pixel, lines, and the rectangle with its hole
    path = write_annotations(tmp_path / "a.geojson", mask)
    assert np.array_equal(read_geojson(path, shape=mask.shape), mask)
    # QuPath also exports a bare list of features, MultiPolygons included
    features = json.loads(path.read_text())["features"]
    multi = [{"type": "Feature", "geometry": {"type": "MultiPolygon",
                                              "coordinates": [f["geometry"]["coordinates"] for f in features]},
              "properties": {"objectType": "annotation"}}]
    (tmp_path / "list.geojson").write_text(json.dumps(multi))
    assert np.array_equal(read_geojson(tmp_path / "list.geojson", shape=mask.shape), mask)
    (tmp_path / "bad.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(PriorPathError, match="no Polygon"):
        read_geojson(tmp_path / "bad.geojson")
    (tmp_path / "other.json").write_text('{"shapes": []}')
    with pytest.raises(PriorPathError, match="not GeoJSON"):
        read_geojson(tmp_path / "other.json")


def test_slide_plan_and_bad_requests(engine, small_sketch, tmp_path):
    plan = plan_slide(np.zeros((2000, 2000), np.uint8), 10)
    assert (plan.height, plan.width, plan.tissue_tiles) == (20000, 20000, 0)
    assert plan.tiles == 40 * 40 and plan.levels == 7
    with pytest.raises(PriorPathError, match="larger than"):
        plan_slide(np.zeros((2000, 2000), np.uint8), 101)
    with pytest.raises(PriorPathError, match="--scale"):
        plan_slide(small_sketch, 0)
    with pytest.raises(PriorPathError, match=".tif"):
        generate_slide(small_sketch, 2, tmp_path / "s.png", engine)
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        generate_slide(small_sketch, 2, tmp_path / "c.tif", engine, tile=256, cancel=cancel)
    assert not list(tmp_path.glob("*.tif")) and not list(tmp_path.glob(".*"))


def test_cli_generate_slide_estimates_then_writes_the_three_files(small_sketch, tmp_path):
    import subprocess
    import sys

    sketch = tmp_path / "sketch.png"
    cv2.imwrite(str(sketch), small_sketch)
    run = [sys.executable, "-m", "trainer.cli", "generate", "--device", "cpu", "--no-progress", "--coarse", str(sketch)]
    r = subprocess.run([*run, "--slide", str(tmp_path / "s.tif"), "--scale", "4", "--mpp", "0.5"],
                       capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "512x256 px, 1 tile (1 with tissue), 1 pyramid level;" in r.stdout and "on this machine" in r.stdout
    slide = openslide.OpenSlide(str(tmp_path / "s.tif"))
    assert slide.dimensions == (512, 256) and float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.5)
    assert "seed 0" in slide.properties["tiff.ImageDescription"]
    assert all((tmp_path / f"s.{ext}").is_file() for ext in ("mask.tif", "fine.geojson", "geojson"))
    bad = subprocess.run([*run, "--slide", str(tmp_path / "t.tif"), "--out", str(tmp_path)], capture_output=True,
                         text=True, cwd=REPO, timeout=300)
    assert bad.returncode == 1 and "leave out --out" in bad.stderr and "Traceback" not in bad.stderr
