"""K-means clusters of real fine masks (``trainer.clusters``), on the prepared bundled sample."""
from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from trainer import clusters
from trainer.clusters import ClusterResult, bundled_sample_dataset, cluster_dataset, mask_features
from trainer.errors import Cancelled, PriorPathError
from trainer.jobs import CancelToken


def _n_masks(folder: Path) -> int:
    return len(list((folder / "fine").glob("*.png")))


@pytest.fixture
def counted_features(monkeypatch):
    """Counts calls of the feature function (each one means a mask was read and described)."""
    calls = []
    real = clusters.mask_features

    def counting(mask):
        calls.append(mask.shape)
        return real(mask)

    monkeypatch.setattr(clusters, "mask_features", counting)
    return calls


@pytest.fixture
def dataset_copy(sample_patches, tmp_path) -> Path:
    """A private copy of the prepared sample, to change files in."""
    return Path(shutil.copytree(sample_patches / "fine", tmp_path / "ds" / "fine")).parent


def _write_masks(folder: Path, masks: list[np.ndarray]) -> None:
    (folder / "fine").mkdir(parents=True, exist_ok=True)
    for i, m in enumerate(masks):
        assert cv2.imwrite(str(folder / "fine" / f"m{i:02d}.png"), m)


def test_features_describe_layout_at_any_size():
    left = np.zeros((256, 512), np.uint8)
    left[:, :256] = 255
    top = np.zeros((256, 512), np.uint8)
    top[:128] = 255
    f_left, f_top = mask_features(left), mask_features(top)
    big_left = cv2.resize(left, (1024, 512), interpolation=cv2.INTER_NEAREST)
    assert f_left.dtype == np.float32 and f_left.ndim == 1 and f_left.shape == f_top.shape
    assert mask_features(big_left).shape == f_left.shape
    np.testing.assert_allclose(mask_features(big_left), f_left, atol=1e-3)  # same layout, other size
    assert np.abs(f_left - f_top).max() > 0.9  # half the grid cells flip between tissue and air


def test_clusters_real_masks_deterministically(sample_patches):
    n = _n_masks(sample_patches)
    a = cluster_dataset(sample_patches, seed=0)
    b = cluster_dataset(sample_patches, seed=0)
    assert a.labels == b.labels and a.k == b.k and a.distances == b.distances
    assert a.stems == sorted(p.stem for p in (sample_patches / "fine").glob("*.png"))
    assert len(a.labels) == n and a.folder == sample_patches
    # k by silhouette: every k in range was tried and the chosen one scores best
    assert sorted(a.silhouette) == list(range(2, min(10, n - 1) + 1))
    assert a.k == max(a.silhouette, key=a.silhouette.get)
    assert all(-1.0 <= s <= 1.0 for s in a.silhouette.values())
    assert set(a.labels) == set(range(a.k))


def test_explicit_k_counts_and_members(sample_patches):
    n = _n_masks(sample_patches)
    r = cluster_dataset(sample_patches, k=4)
    assert r.k == 4 and r.silhouette == {}
    assert sum(r.counts) == n and r.counts == [Counter(r.labels)[c] for c in range(4)]
    assert r.counts == sorted(r.counts, reverse=True)  # clusters are numbered largest first
    seen = []
    for c in range(r.k):
        members = r.members(c)
        assert len(members) == r.counts[c]
        assert all(r.labels[r.stems.index(s)] == c for s in members)
        dist = [r.distances[r.stems.index(s)] for s in members]
        assert dist == sorted(dist)  # exemplars (nearest the centroid) first
        seen += members
    assert sorted(seen) == sorted(r.stems)
    assert r.path(r.stems[0], "coarse") == sample_patches / "coarse" / f"{r.stems[0]}.png"
    assert r.has_rgb
    with pytest.raises(IndexError):
        r.members(4)


def test_progress_per_mask_and_per_k(sample_patches):
    n = _n_masks(sample_patches)
    calls = []
    cluster_dataset(sample_patches, k_range=(2, 4), progress=lambda d, t, m: calls.append((d, t, m)))
    assert {t for _, t, _ in calls} == {n + 3}
    assert sum(m.startswith("reading ") for _, _, m in calls) == n
    assert [m for _, _, m in calls if m.startswith("K-means")] == ["K-means with k=2", "K-means with k=3",
                                                                    "K-means with k=4"]
    assert calls[-1][:2] == (n + 3, n + 3)


def test_cache_hit_skips_the_work(sample_patches, tmp_path, counted_features):
    n = _n_masks(sample_patches)
    cache = tmp_path / "cache"
    first = cluster_dataset(sample_patches, cache_dir=cache)
    assert len(counted_features) == n and not first.from_cache
    files = list(cache.glob("*.json"))
    assert len(files) == 1
    assert json.loads(files[0].read_text())["labels"] == first.labels  # plain JSON, never a pickle

    second = cluster_dataset(sample_patches, cache_dir=cache)
    assert len(counted_features) == n  # nothing read again
    assert second.from_cache and second == first and second.members(0) == first.members(0)

    other_k = cluster_dataset(sample_patches, k=3, cache_dir=cache)  # another key: computed
    assert len(counted_features) == 2 * n and other_k.k == 3 and not other_k.from_cache


def test_cache_invalidated_when_a_mask_changes(dataset_copy, tmp_path, counted_features):
    n = _n_masks(dataset_copy)
    cache = tmp_path / "cache"
    cluster_dataset(dataset_copy, cache_dir=cache)
    victim = sorted((dataset_copy / "fine").glob("*.png"))[0]
    mask = cv2.imread(str(victim), cv2.IMREAD_GRAYSCALE)
    assert cv2.imwrite(str(victim), 255 - mask)
    st = victim.stat()
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a surely different mtime
    again = cluster_dataset(dataset_copy, cache_dir=cache)
    assert not again.from_cache and len(counted_features) == 2 * n


def test_corrupt_cache_file_is_recomputed(sample_patches, tmp_path, counted_features):
    cache = tmp_path / "cache"
    first = cluster_dataset(sample_patches, cache_dir=cache)
    (cache_file,) = cache.glob("*.json")
    cache_file.write_text("{not json")
    again = cluster_dataset(sample_patches, cache_dir=cache)
    assert not again.from_cache and again == first
    assert json.loads(cache_file.read_text())["k"] == first.k  # rewritten


def test_two_families_of_masks_separate(tmp_path):
    rng = np.random.default_rng(1)
    left, top = [], []
    for i in range(6):
        m = np.zeros((256, 512), np.uint8)
        m[:, : 230 + 10 * i] = 255  # tissue on the left, boundary moving a little
        m[rng.integers(0, 256, 40), rng.integers(0, 512, 40)] ^= 255  # specks
        left.append(m)
        m = np.zeros((256, 512), np.uint8)
        m[: 110 + 6 * i] = 255  # tissue on top
        m[rng.integers(0, 256, 40), rng.integers(0, 512, 40)] ^= 255
        top.append(m)
    _write_masks(tmp_path, left + top)
    family = ["left"] * 6 + ["top"] * 6

    auto = cluster_dataset(tmp_path)
    for c in range(auto.k):  # whatever k won, no cluster mixes the families
        assert len({family[i] for i, label in enumerate(auto.labels) if label == c}) == 1
    two = cluster_dataset(tmp_path, k=2)
    assert len(set(two.labels[:6])) == 1 and len(set(two.labels[6:])) == 1 and two.labels[0] != two.labels[6]


@pytest.mark.filterwarnings("error")  # no K-means warning about duplicate points either
def test_identical_masks_do_not_break_clustering(tmp_path):
    a = np.zeros((64, 128), np.uint8)
    a[10:50, 20:100] = 255
    _write_masks(tmp_path / "same", [a] * 5)
    r = cluster_dataset(tmp_path / "same")
    assert r.k == 1 and r.counts == [5] and r.members(0) == sorted(r.stems)

    b = np.zeros((64, 128), np.uint8)
    b[:, :30] = 255
    _write_masks(tmp_path / "two", [a, a, b, b])
    for k in (None, 3):  # only two distinct masks: two clusters, whatever was asked
        r = cluster_dataset(tmp_path / "two", k=k)
        assert r.k == 2 and r.labels[0] == r.labels[1] != r.labels[2] == r.labels[3]


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(PriorPathError, match="no such folder"):
        cluster_dataset(tmp_path / "missing")
    with pytest.raises(PriorPathError, match="no fine masks"):
        cluster_dataset(tmp_path)  # no fine/
    (tmp_path / "fine").mkdir()
    with pytest.raises(PriorPathError, match="no fine masks"):
        cluster_dataset(tmp_path)  # empty fine/
    _write_masks(tmp_path, [np.full((32, 64), 255, np.uint8)] * 2)
    with pytest.raises(PriorPathError, match="only 2 fine mask"):
        cluster_dataset(tmp_path)
    _write_masks(tmp_path, [np.full((32, 64), 255, np.uint8)] * 4)
    with pytest.raises(PriorPathError, match="k must be between 2"):
        cluster_dataset(tmp_path, k=9)
    with pytest.raises(PriorPathError, match="k range"):
        cluster_dataset(tmp_path, k_range=(1, 3))


def test_corrupt_mask_is_named(dataset_copy):
    victim = sorted((dataset_copy / "fine").glob("*.png"))[3]
    victim.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(PriorPathError) as info:
        cluster_dataset(dataset_copy)
    assert victim.name in str(info.value) and "not a readable image" in str(info.value)


def test_cancel_between_masks(sample_patches, tmp_path):
    token = CancelToken()
    seen = []

    def progress(done, total, message):
        seen.append(done)
        if done == 5:
            token.cancel()

    with pytest.raises(Cancelled):
        cluster_dataset(sample_patches, progress=progress, cancel=token, cache_dir=tmp_path / "cache")
    assert max(seen) == 5  # stopped before the next mask
    assert not list((tmp_path / "cache").glob("*.json"))  # nothing cached


def test_cancel_between_k_values(sample_patches):
    token = CancelToken()
    tried = []

    def progress(done, total, message):
        if message.startswith("K-means"):
            tried.append(message)
            token.cancel()

    with pytest.raises(Cancelled):
        cluster_dataset(sample_patches, progress=progress, cancel=token)
    assert tried == ["K-means with k=2"]


def test_thumbnails_and_mosaic(sample_patches):
    r = cluster_dataset(sample_patches, k=2)
    stem = r.stems[0]
    thumb = clusters.member_thumbnail(r, stem, (48, 96))
    assert thumb.shape == (48, 96, 3) and thumb.dtype == np.uint8
    rgb = cv2.imread(str(sample_patches / "rgb" / f"{stem}.png"))[..., ::-1]
    expected = cv2.resize(rgb, (96, 48), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(thumb, expected)  # the RGB patch stands for the mask when there is one
    grey = clusters.thumbnail(np.full((100, 100), 255, np.uint8), (48, 96))
    assert grey.shape == (48, 48, 3) and (grey == 255).all()  # fits within the box, aspect kept
    grid = clusters.mosaic([thumb, grey, thumb], columns=2, gap=2, fill=0)
    assert grid.shape == (48 * 2 + 2, 96 * 2 + 2, 3)
    np.testing.assert_array_equal(grid[:48, :96], thumb)
    np.testing.assert_array_equal(grid[:48, 98:146], grey)
    np.testing.assert_array_equal(grid[50:, :96], thumb)
    assert not grid[50:, 98:].any()  # the empty cell keeps the fill


def test_result_json_round_trip(sample_patches):
    r = cluster_dataset(sample_patches, k=3)
    back = ClusterResult.from_json(json.loads(json.dumps(r.to_json())), sample_patches)
    assert back == r and back.from_cache


def test_bundled_sample_is_prepared_once(tmp_path, sample_patches):
    folder = bundled_sample_dataset(tmp_path)
    assert folder == tmp_path / "sample_he"
    names = sorted(p.name for p in (folder / "fine").glob("*.png"))
    assert names == sorted(p.name for p in (sample_patches / "fine").glob("*.png"))  # same settings as the fixture
    mtimes = {p: p.stat().st_mtime_ns for p in folder.rglob("*.png")}
    assert bundled_sample_dataset(tmp_path) == folder
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*.png")} == mtimes  # a rerun changes nothing
