"""The paired training dataset and the split by source slide."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from trainer.data.dataset import PairedMaskDataset, apply_transform, resize_mask, split_by_source, transforms_for
from trainer.data.prepare import PrepareSettings, prepare, read_manifest
from trainer.errors import PriorPathError


@pytest.fixture(scope="module")
def prepared(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    files = sorted((data_dir / "osteosarcoma_tcia_ut").glob("*.jpg"))[:16]
    prepare(files, out, PrepareSettings(stain="he"))
    return out


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    a = ((t + 1) * 127.5).round().to(torch.uint8).numpy()
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def test_items_are_the_prepared_files_in_tanh_range(prepared):
    ds = PairedMaskDataset(prepared)
    assert len(ds) == len(read_manifest(prepared))
    item = ds[0]
    assert item["coarse"].shape == (1, 512, 1024) and item["fine"].shape == (1, 512, 1024)
    assert item["rgb"].shape == (3, 512, 1024) and item["rgb"].dtype == torch.float32
    assert set(item["fine"].unique().tolist()) <= {-1.0, 1.0}
    stem = item["stem"]
    fine = cv2.imread(str(prepared / "fine" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
    rgb = cv2.cvtColor(cv2.imread(str(prepared / "rgb" / f"{stem}.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(_to_uint8(item["fine"]), fine)
    np.testing.assert_array_equal(_to_uint8(item["rgb"]), rgb)


def test_resize_to_working_size_keeps_masks_binary_by_majority(prepared):
    ds = PairedMaskDataset(prepared, size=(256, 512))
    item = ds[1]
    assert item["fine"].shape == (1, 256, 512) and item["rgb"].shape == (3, 256, 512)
    assert set(item["coarse"].unique().tolist()) <= {-1.0, 1.0}
    fine = cv2.imread(str(prepared / "fine" / f"{item['stem']}.png"), cv2.IMREAD_GRAYSCALE)
    block_mean = fine.reshape(256, 2, 512, 2).mean(axis=(1, 3))  # independent 2x2 majority
    np.testing.assert_array_equal(_to_uint8(item["fine"]), np.where(block_mean >= 127.5, 255, 0))


def test_resize_mask_upscales_by_nearest():
    m = np.array([[0, 255], [255, 0]], np.uint8)
    np.testing.assert_array_equal(resize_mask(m, (4, 4)), np.kron(m, np.ones((2, 2), np.uint8)))


def test_symmetries_depend_on_aspect():
    assert len(transforms_for((256, 512))) == 4
    assert len(transforms_for((256, 256))) == 8
    a = np.arange(12).reshape(3, 4)
    shapes = {apply_transform(a, k, m).shape for k, m in transforms_for(a.shape)}
    assert shapes == {(3, 4)}
    assert len({apply_transform(a, k, m).tobytes() for k, m in transforms_for(a.shape)}) == 4
    sq = np.arange(16).reshape(4, 4)
    assert len({apply_transform(sq, k, m).tobytes() for k, m in transforms_for(sq.shape)}) == 8


def test_augmentation_is_seeded_shared_across_kinds_and_varies_by_epoch(prepared):
    plain = PairedMaskDataset(prepared)
    aug = PairedMaskDataset(prepared, augment=True, seed=7)
    again = PairedMaskDataset(prepared, augment=True, seed=7)
    for i in range(4):
        a, b = aug[i], again[i]
        assert all(torch.equal(a[k], b[k]) for k in ("coarse", "fine", "rgb"))
    # one transform for all three kinds: find it from the fine mask and check coarse and rgb follow it
    chosen = []
    for i in range(len(plain)):
        base, item = plain.load_arrays(i), aug[i]
        fine = _to_uint8(item["fine"])
        matches = [t for t in transforms_for(fine.shape) if np.array_equal(apply_transform(base["fine"], *t), fine)]
        assert matches
        t = matches[0]
        np.testing.assert_array_equal(_to_uint8(item["coarse"]), apply_transform(base["coarse"], *t))
        np.testing.assert_array_equal(_to_uint8(item["rgb"]), apply_transform(base["rgb"], *t))
        chosen.append(t)
    assert len(set(chosen)) > 1
    epoch0 = [aug[i]["fine"] for i in range(8)]
    aug.set_epoch(1)
    assert any(not torch.equal(x, aug[i]["fine"]) for i, x in enumerate(epoch0))


def test_split_by_source_never_leaks_a_slide(prepared):
    rows = read_manifest(prepared)
    train, test = split_by_source(rows, test_fraction=0.25, seed=3)
    source = {r["stem"]: r["source"] for r in rows}
    assert set(train) | set(test) == set(source) and not set(train) & set(test)
    assert not {source[s] for s in train} & {source[s] for s in test}
    assert 0.15 <= len(test) / len(rows) <= 0.45
    assert split_by_source(rows, 0.25, seed=3) == (train, test)
    assert split_by_source(rows, 0.25, seed=4) != (train, test)


def test_split_groups_files_of_one_case(prepared):
    rows = read_manifest(prepared)
    pattern = r"(Case-\d+|P\d+)-"
    train, test = split_by_source(rows, 0.3, seed=0, group_pattern=pattern)
    import re

    case = {r["stem"]: re.search(pattern, Path(r["source"]).name).group(1) for r in rows}
    assert not {case[s] for s in train} & {case[s] for s in test}


def test_split_needs_two_sources(prepared):
    rows = [r for r in read_manifest(prepared) if r["source"] == read_manifest(prepared)[0]["source"]]
    with pytest.raises(PriorPathError, match="one source"):
        split_by_source(rows, 0.2)


def test_bad_files_give_clear_errors(prepared, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(prepared, bad)
    stems = [r["stem"] for r in read_manifest(bad)]
    grey = np.full((512, 1024), 128, np.uint8)
    cv2.imwrite(str(bad / "fine" / f"{stems[0]}.png"), grey)
    cv2.imwrite(str(bad / "coarse" / f"{stems[1]}.png"), grey[:256] // 128 * 255)
    (bad / "rgb" / f"{stems[2]}.png").unlink()
    ds = PairedMaskDataset(bad)
    with pytest.raises(PriorPathError, match="not binary"):
        ds[0]
    with pytest.raises(PriorPathError, match="mismatched sizes"):
        ds[1]
    with pytest.raises(PriorPathError, match="missing or unreadable"):
        ds[2]
    with pytest.raises(PriorPathError, match="no manifest.csv"):
        PairedMaskDataset(tmp_path)
