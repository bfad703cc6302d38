"""The example-based fine->RGB model: label-exact output made of real pixels, one slide per tile, seeds,
checkpoints, style references and their errors."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.config import make_config
from trainer.data.masks import luma
from trainer.errors import PriorPathError
from trainer.inference import Engine
from trainer.quilting import Library, QuiltSettings, _settle, synthesize
from trainer.train import train

from ..helpers import read_png


@pytest.fixture(scope="module")
def quilt_ckpt(tmp_path_factory, sample_patches) -> Path:
    config = make_config({"model": "quilt", "data": str(sample_patches), "epochs": 1, "max_steps": 16,
                          "options": {"max_tiles": 12}, "sample_every": 1000, "checkpoint_every": 1000})
    return train(config, tmp_path_factory.mktemp("quilt")).checkpoint


@pytest.fixture(scope="module")
def engine(quilt_ckpt) -> Engine:
    return Engine("none", quilt_ckpt, device="cpu")


@pytest.fixture(scope="module")
def fine_masks(sample_patches) -> list[np.ndarray]:
    """Real fine masks with both tissue and air."""
    masks = [read_png(p) for p in sorted((sample_patches / "fine").glob("*.png"))]
    mixed = [m for m in masks if 0.2 < (m > 0).mean() < 0.9]
    assert len(mixed) >= 2
    return mixed[:3]


def rule(rgb: np.ndarray) -> np.ndarray:
    return np.where(luma(rgb) <= 204, 255, 0).astype(np.uint8)


def codes(rgb: np.ndarray) -> np.ndarray:
    flat = rgb.reshape(-1, 3).astype(np.int64)
    return flat[:, 0] << 16 | flat[:, 1] << 8 | flat[:, 2]


def assert_copied_or_corrected(out, library: Library, target: np.ndarray) -> None:
    """Every pixel is a library colour, or a corrected one: shifted to just across the threshold, or, inside
    a hole the mask cuts (2 px or more from tissue), made air no brighter than the library's glass."""
    foreign = ~np.isin(codes(out.rgb), np.unique(codes(library.pixels)))
    assert foreign.mean() <= out.corrected + 1e-9
    lum = luma(out.rgb).reshape(-1).astype(int)
    near = np.abs(lum - 204) <= 3
    inside = np.rint(cv2.distanceTransform((~target).astype(np.uint8), cv2.DIST_L2, 3)).reshape(-1) >= 2
    glass = inside & (lum > 204) & (lum <= int(luma(library.pixels[None]).max()))
    assert (near | glass)[foreign].all(), "a pixel that is neither copied nor corrected"


def test_the_threshold_rule_gives_back_the_mask_exactly(engine, fine_masks):
    for k, mask in enumerate(fine_masks):
        rgb = engine.rgb(mask, seed=k)
        assert rgb.shape == (*mask.shape, 3) and rgb.dtype == np.uint8
        assert np.array_equal(rule(rgb), mask)


@pytest.mark.parametrize("shape", [(70, 135), (16, 16), (300, 200), (520, 1030)])
def test_any_size_and_uniform_masks_stay_label_exact(engine, fine_masks, shape):
    mask = np.ascontiguousarray(np.resize(fine_masks[0], shape))
    for m in (mask, np.full(shape, 255, np.uint8), np.zeros(shape, np.uint8)):
        assert np.array_equal(rule(engine.rgb(m, seed=1)), m)


def test_the_output_is_made_of_real_library_pixels(engine, fine_masks):
    """Copying, not painting: pixels are library colours except those the label correction moved."""
    library = engine.rgb_model.module.library()
    for k, mask in enumerate(fine_masks):
        out = synthesize(library, mask > 0, np.random.default_rng(k))
        assert_copied_or_corrected(out, library, mask > 0)
        assert out.corrected < 0.3


def test_seeds_repeat_and_vary(engine, fine_masks):
    mask = fine_masks[1]
    a, b, c = engine.rgb(mask, seed=3), engine.rgb(mask, seed=3), engine.rgb(mask, seed=4)
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - c).mean() > 10  # another seed copies other tissue


def test_one_tile_copies_one_slide(fine_masks):
    """A library of two groups that differ in colour: every tile takes all its tissue from one of them."""
    rng = np.random.default_rng(0)
    base = np.full((256, 512, 3), 235, np.uint8)
    yy, xx = np.mgrid[:256, :512]
    base[((yy // 16 + xx // 24) % 3 > 0)] = (180, 60, 110)  # tissue with glass gaps
    noise = rng.integers(0, 20, base.shape, dtype=np.uint8)
    pink = np.where(base < 200, base + noise, base)
    blue = pink.copy()
    blue[pink[..., 0] < 200] = pink[pink[..., 0] < 200][:, ::-1]  # swap R and B in tissue: a "blue stain"
    lib = Library([pink, pink[::-1], blue, blue[:, ::-1]], ["pink", "pink", "blue", "blue"], QuiltSettings())
    seen = set()
    for seed in range(6):
        out = synthesize(lib, fine_masks[0] > 0, np.random.default_rng(seed))
        tissue = out.rgb[fine_masks[0] > 0].astype(int)
        stained = tissue[np.abs(tissue[:, 0] - tissue[:, 2]) > 30]  # glass shifted into tissue stays grey
        reddish = (stained[:, 0] > stained[:, 2]).mean()
        assert reddish > 0.97 or reddish < 0.03, f"a patchwork of stains ({reddish:.0%} reddish)"
        seen.add(out.group)
    assert seen == {"pink", "blue"}  # the seed picks the slide


def test_library_survives_a_checkpoint_round_trip(quilt_ckpt, engine, fine_masks, tmp_path):
    ckpt = load_checkpoint(quilt_ckpt)
    model = ckpt.build_model("cpu")
    assert len(model.encoded) == 12 and len(set(model.groups)) >= 2  # grouped by source image
    copy = tmp_path / "copy.safetensors"
    save_checkpoint(copy, model, ckpt.config, ckpt.state)
    again = Engine("none", copy, device="cpu")
    assert np.array_equal(again.rgb(fine_masks[0], seed=2), engine.rgb(fine_masks[0], seed=2))


def test_a_damaged_library_is_refused(quilt_ckpt):
    ckpt = load_checkpoint(quilt_ckpt)
    model = ckpt.build_model("cpu")
    state = model.extra_state()
    state["jpeg_sizes"] = state["jpeg_sizes"] + 1
    with pytest.raises(PriorPathError, match="sizes do not match"):
        model.load_extra_state(state)
    state = model.extra_state()
    state["jpeg"] = torch.zeros_like(state["jpeg"])
    model.load_extra_state(state)
    with pytest.raises(PriorPathError, match="not a readable JPEG"):
        model.library()


def test_style_reference_replaces_the_library(quilt_ckpt, fine_masks, data_dir, tmp_path):
    """--style with tiles of another slide: the output's pixels come from that slide."""
    tcga = next((data_dir / "tcga_hnsc_frozen_TCGA-CR-7395").iterdir())
    region = cv2.imread(str(tcga))[1000:1512, 1000:2024]
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), region)
    engine = Engine("none", quilt_ckpt, device="cpu", style=[ref])
    assert engine.style and engine.style_groups() == ["style"]
    rgb = engine.rgb(fine_masks[0], seed=0)
    assert np.array_equal(rule(rgb), fine_masks[0])
    library = engine.rgb_model.module.library()
    assert len(library) == 1 and np.array_equal(library.tile_rgb(0), cv2.cvtColor(region, cv2.COLOR_BGR2RGB))
    assert_copied_or_corrected(synthesize(library, fine_masks[0] > 0, np.random.default_rng(0)), library,
                               fine_masks[0] > 0)
    engine.set_style(None)  # back to the shipped library
    assert engine.style is None and len(engine.style_groups()) >= 2


def test_bad_style_references_get_one_clear_line(quilt_ckpt, fine_masks, tmp_path):
    mask = tmp_path / "mask.png"
    cv2.imwrite(str(mask), fine_masks[0])
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.full((1, 1, 3), (120, 60, 150), np.uint8))
    white = tmp_path / "white.png"
    cv2.imwrite(str(white), np.full((200, 200, 3), (250, 246, 252), np.uint8))  # glass only
    (tmp_path / "empty").mkdir()
    cases = {mask: "a mask, not an H&E tile", tiny: "too small", white: "no tissue",
             tmp_path / "missing": "no such file", tmp_path / "empty": "no images"}
    for path, message in cases.items():
        with pytest.raises(PriorPathError, match=message) as info:
            Engine("none", quilt_ckpt, device="cpu", style=[path])
        assert "\n" not in str(info.value)


def test_a_library_without_tissue_or_glass_is_refused():
    white = np.full((128, 128, 3), 245, np.uint8)
    with pytest.raises(PriorPathError, match="no tissue"):
        Library([white], ["a"], QuiltSettings())
    with pytest.raises(PriorPathError, match="no air"):
        Library([np.full((128, 128, 3), 120, np.uint8)], ["a"], QuiltSettings())


def test_the_search_prefers_pale_porous_tissue_to_dense_tissue_of_the_same_layout():
    """Under a porous mask, windows of pale tissue near the threshold need a small luma change and windows of
    dark tissue with glass holes a large one, although both have the same tissue fraction everywhere (what a
    shortlist by averaged layout sees): every candidate comes from the pale tile."""
    rng = np.random.default_rng(0)
    holes = rng.random((2, 192, 192)) < 0.4
    pale = np.where(holes[0, ..., None], 212, 198).astype(np.uint8).repeat(3, 2)  # luma just above / below 204
    dark = np.where(holes[1, ..., None], 235, 120).astype(np.uint8).repeat(3, 2)  # glass holes in dense tissue
    library = Library([pale, dark, dark, dark], ["a"] * 4, QuiltSettings(block=96))
    target = rng.random((3, 96, 96)) >= 0.4  # porous, its holes where no window has them
    found = library.index.nearest(target, 0, 4, torch.Generator().manual_seed(0))
    assert (found[..., 0] == 0).all()


def test_a_chosen_window_slides_until_its_holes_meet_the_masks():
    """The index offers windows on a 16 px grid. The window that fits the mask pixel for pixel lies 6 px down
    and 5 px right of a grid point; from that grid point the slide finds it. A window that already fits stays,
    also in the tile's corner, where most slides would leave the tile."""
    rng = np.random.default_rng(1)
    holes = cv2.dilate((rng.random((200, 200)) < 0.004).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    tile = np.where(holes[..., None], 235, 150).astype(np.uint8).repeat(3, 2)  # dense tissue, 9 px holes
    library = Library([tile], ["a"], QuiltSettings(block=96))
    fits = ~holes[38:134, 21:117]
    blocks = np.stack([fits, fits, ~holes[:96, 104:]]).reshape(1, 3, 96, 96)
    src = np.array([[[0, 32, 16], [0, 38, 21], [0, 0, 104]]])
    settled = _settle(library, blocks, src)
    assert settled.tolist() == [[[0, 38, 21], [0, 38, 21], [0, 0, 104]]]


def test_without_the_label_correction_only_the_pixels_it_would_move_differ(fine_masks):
    """``label_exact=False`` (what the realism benchmark uses to measure the correction's cost) leaves the
    pasted pixels as they are: the same tile, but for exactly the pixels the correction moves."""
    rng = np.random.default_rng(3)
    holes = cv2.dilate((rng.random((300, 300)) < 0.01).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    tile = np.where(holes[..., None], 232, 160).astype(np.uint8).repeat(3, 2)
    library = Library([tile, tile[::-1]], ["a", "a"], QuiltSettings())
    target = fine_masks[0] > 0
    raw = synthesize(library, target, np.random.default_rng(5), label_exact=False)
    exact = synthesize(library, target, np.random.default_rng(5))
    wrong = (luma(raw.rgb) <= 204) != target
    assert 0 < raw.corrected == exact.corrected == wrong.mean()
    assert ((raw.rgb != exact.rgb).any(-1) == wrong).all()


def test_a_hole_cut_into_dense_tissue_is_white_inside_like_the_slides_glass():
    """The mask cuts a 15 px hole where every window has dense tissue. Its rim moves just across the
    threshold; inside, it takes the slide's glass, not a pale pink blot at luma 206 (the previous code)."""
    tile = np.full((200, 200, 3), (150, 60, 120), np.uint8)  # dense tissue, luma 94
    tile[20:60, 20:60] = (238, 236, 240)  # the slide's glass
    library = Library([tile], ["a"], QuiltSettings(block=96))
    target = np.ones((96, 96), bool)
    target[40:55, 40:55] = False
    lum = luma(synthesize(library, target, np.random.default_rng(0)).rgb)
    assert np.array_equal(lum <= 204, target)
    assert lum[42:53, 42:53].min() >= 230  # 2 px and more inside: glass
    assert 204 < lum[40, 40:55].max() <= 208  # the rim: just across
