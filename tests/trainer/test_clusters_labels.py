"""Clusters of class label maps (``trainer.clusters`` on ``labels/`` + ``classes.json``), issue 17: features that
see the classes, a binary folder clustered exactly as before, thumbnails in the class colours, clear errors."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from trainer import clusters
from trainer.clusters import ClusterResult, cluster_dataset, label_features, mask_features, member_thumbnail
from trainer.data.classes import HE3, ClassTable, LabelClass, tissue_of, write_class_table, write_label_png
from trainer.data.labels import NUCLEI, STROMA, coarse_labels, label_prepared
from trainer.data.prepare import link_subset, read_manifest
from trainer.errors import PriorPathError

SIZE = (128, 256)
#: cluster_dataset(sample, k=3).labels on the prepared bundled sample, recorded before label maps were clustered
BINARY_K3 = [0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 2, 2, 2, 0, 0, 0, 2, 0, 0, 1, 2, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0,
             0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0,
             0, 1, 2, 2, 2, 2]
BINARY_JSON_KEYS = {"folder", "stems", "labels", "distances", "k", "seed", "silhouette"}


def tissue_band(boundary: int) -> np.ndarray:
    """Stroma left of ``boundary``, air right of it."""
    labels = np.zeros(SIZE, np.uint8)
    labels[:, :boundary] = STROMA
    return labels


def with_nuclei(labels: np.ndarray, rng: np.random.Generator, count: int = 250) -> np.ndarray:
    """Nucleus-sized discs (radius 2-4) scattered over the tissue."""
    out = labels.copy()
    ys, xs = np.nonzero(labels)
    for i in rng.choice(len(ys), count, replace=False):
        cv2.circle(out, (int(xs[i]), int(ys[i])), int(rng.integers(2, 5)), int(NUCLEI), -1)
    out[labels == 0] = 0
    return out


def write_label_folder(folder: Path, maps: list[np.ndarray], table: ClassTable = HE3, fine: bool = True,
                       coarse: bool = True, classes_json: bool = True) -> Path:
    """A folder laid out as ``prepare --labels he3`` writes one (no RGB): labels/, coarse_labels/, fine/."""
    for sub in ("labels", "coarse_labels", "fine"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i, labels in enumerate(maps):
        write_label_png(folder / "labels" / f"m{i:02d}.png", labels, table)
        if coarse:
            write_label_png(folder / "coarse_labels" / f"m{i:02d}.png", coarse_labels(labels), table)
        if fine:
            assert cv2.imwrite(str(folder / "fine" / f"m{i:02d}.png"), tissue_of(labels))
    if classes_json:
        write_class_table(folder / "classes.json", table)
    return folder


def two_populations(folder: Path) -> Path:
    """Six nuclei-rich maps and six stroma-only maps whose tissue outlines are the same pairwise (m00 and m06,
    m01 and m07, ...): only the classes tell the populations apart."""
    rng = np.random.default_rng(3)
    bands = [tissue_band(150 + 12 * i) for i in range(6)]
    return write_label_folder(folder, [with_nuclei(b, rng) for b in bands] + bands)


@pytest.fixture(scope="module")
def labelled_sample(sample_patches, tmp_path_factory) -> Path:
    """The prepared bundled sample (real H&E), labelled by the he3 rule."""
    stems = [r["stem"] for r in read_manifest(sample_patches)]
    out = link_subset(sample_patches, tmp_path_factory.mktemp("labelled") / "sample", stems)
    label_prepared(out)
    return out


def test_label_features_see_the_classes_the_tissue_layout_cannot():
    rng = np.random.default_rng(0)
    stroma = tissue_band(180)
    rich = with_nuclei(stroma, rng)
    f_stroma, f_rich = label_features(stroma, 3), label_features(rich, 3)
    layout = mask_features(tissue_of(stroma)).size
    assert f_rich.dtype == np.float32 and f_rich.shape == f_stroma.shape == (layout + 2 * (8 * 16 + 4),)
    np.testing.assert_array_equal(f_rich[:layout], f_stroma[:layout])  # same tissue: same layout part
    np.testing.assert_array_equal(f_rich[:layout], mask_features(tissue_of(rich)))
    nuclei = f_rich[layout + 132:]  # the nuclei block: grid, share of patch and tissue, edges, pieces
    assert nuclei[:128].max() > 0.1 and not f_stroma[layout + 132:].any()
    share, in_tissue, edges, pieces = nuclei[128:]
    assert share == pytest.approx(np.mean(rich == NUCLEI)) and in_tissue > share
    assert edges > 0.02 and pieces > np.log1p(20 * 1e6 / rich.size)  # many small blobs, counted whole
    # two classes: nothing beyond the tissue layout
    np.testing.assert_array_equal(label_features((rich > 0).astype(np.uint8), 2), f_rich[:layout])
    with pytest.raises(PriorPathError, match="HxW label map"):
        label_features(np.zeros((4, 4, 3), np.uint8), 3)


def test_nuclei_rich_and_stroma_only_maps_fall_into_different_clusters(tmp_path):
    folder = two_populations(tmp_path / "two")
    population = ["rich"] * 6 + ["stroma"] * 6
    two = cluster_dataset(folder, k=2)
    assert two.has_labels and two.classes == HE3 and two.stems == [f"m{i:02d}" for i in range(12)]
    assert len(set(two.labels[:6])) == 1 and len(set(two.labels[6:])) == 1 and two.labels[0] != two.labels[6]
    auto = cluster_dataset(folder)
    for c in range(auto.k):  # whatever k won, no cluster mixes the populations
        assert len({population[i] for i, label in enumerate(auto.labels) if label == c}) == 1
    # the fine masks alone cannot tell them apart: each map shares its cluster with its same-outline partner
    binary = cluster_dataset(folder, features="binary")
    assert not binary.has_labels and binary.classes is None
    assert all(binary.labels[i] == binary.labels[i + 6] for i in range(6))
    assert cluster_dataset(folder, k=2, features="labels") == two


def test_a_binary_folder_is_clustered_exactly_as_before(sample_patches, labelled_sample, tmp_path):
    before = cluster_dataset(sample_patches, k=3)
    assert before.labels == BINARY_K3 and not before.has_labels and before.classes is None
    assert set(before.to_json()) == BINARY_JSON_KEYS  # the cache file holds what it held before
    for features in ("auto", "binary"):
        assert cluster_dataset(sample_patches, k=3, features=features) == before
    # forcing binary on a labelled copy clusters its fine masks as the unlabelled folder's
    forced = cluster_dataset(labelled_sample, k=3, features="binary")
    assert (forced.stems, forced.labels, forced.distances) == (before.stems, before.labels, before.distances)

    # the binary cache key is the one written before label maps existed, so old caches stay valid
    cache = tmp_path / "cache"
    cluster_dataset(sample_patches, k=3, cache_dir=cache)
    files = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in sorted((sample_patches / "fine").glob("*.png"))]
    key = {"folder": str(sample_patches.resolve()), "files": files, "k": 3, "k_range": [2, 10], "seed": 0,
           "version": 1}
    old_name = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:32] + ".json"
    assert [p.name for p in cache.glob("*.json")] == [old_name]


def test_real_labelled_folder_clusters_its_label_maps_and_caches_them_apart(labelled_sample, tmp_path):
    n = len(list((labelled_sample / "labels").glob("*.png")))
    cache = tmp_path / "cache"
    labels = cluster_dataset(labelled_sample, k=3, cache_dir=cache)
    assert labels.has_labels and labels.classes == HE3 and len(labels.stems) == n and not labels.from_cache
    binary = cluster_dataset(labelled_sample, k=3, cache_dir=cache, features="binary")
    assert not binary.has_labels and len(list(cache.glob("*.json"))) == 2  # two keys: two files
    assert labels.labels != binary.labels  # the classes change the grouping of real patches
    again = cluster_dataset(labelled_sample, k=3, cache_dir=cache)
    assert again.from_cache and again == labels and again.classes == HE3
    again_binary = cluster_dataset(labelled_sample, k=3, cache_dir=cache, features="binary")
    assert again_binary.from_cache and again_binary == binary
    back = ClusterResult.from_json(json.loads(json.dumps(labels.to_json())), labelled_sample)
    assert back == labels and back.has_labels

    # another class table (same ids, other colours) is another key
    recoloured = ClassTable("he3", tuple(LabelClass(c.id, c.name, (0, 0, c.id)) for c in HE3.classes))
    write_class_table(labelled_sample / "classes.json", recoloured)
    try:
        other = cluster_dataset(labelled_sample, k=3, cache_dir=cache)
        assert not other.from_cache and other.classes == recoloured
    finally:
        write_class_table(labelled_sample / "classes.json", HE3)


def test_thumbnails_show_label_maps_in_the_class_colours(tmp_path):
    maps = []
    for i in range(4):  # big blocks, so thumbnails keep pure class colours inside them
        labels = tissue_band(200)
        labels[20 + 4 * i:100, 40:140] = NUCLEI
        maps.append(labels)
    folder = write_label_folder(tmp_path / "blocks", maps)
    r = cluster_dataset(folder, k=2)
    thumb = member_thumbnail(r, "m00", (64, 128))  # labelled: the label map by default
    expected = clusters.thumbnail(HE3.colourise(maps[0]), (64, 128))
    assert thumb.shape == (64, 128, 3)
    np.testing.assert_array_equal(thumb, expected)
    assert tuple(thumb[30, 45]) == HE3.classes[NUCLEI].colour and tuple(thumb[5, 10]) == HE3.classes[STROMA].colour
    assert tuple(thumb[30, 120]) == HE3.classes[0].colour
    coarse = member_thumbnail(r, "m00", (64, 128), kind="coarse_labels")
    np.testing.assert_array_equal(coarse, clusters.thumbnail(HE3.colourise(coarse_labels(maps[0])), (64, 128)))
    fine = member_thumbnail(r, "m00", (64, 128), kind="fine")  # the binary pictures are still there
    assert set(np.unique(fine)) <= {0, 255}
    mosaic = clusters.mosaic([member_thumbnail(r, s, (32, 64)) for s in r.members(0)[:3]], columns=1)
    assert {tuple(c) for c in mosaic.reshape(-1, 3)} >= {c.colour for c in HE3.classes}

    # a missing coarse label map: made by prepare's rule for he3, the fine map stands in for other tables
    (folder / "coarse_labels" / "m01.png").unlink()
    np.testing.assert_array_equal(clusters.member_labels(r, "m01", "coarse_labels"), coarse_labels(maps[1]))
    two = ClassTable("mine", (LabelClass(0, "air", (255, 255, 255)), LabelClass(1, "tumour", (200, 0, 0)),
                              LabelClass(2, "nuclei", (0, 0, 200))))
    custom = write_label_folder(tmp_path / "custom", maps, table=two, coarse=False)
    rc = cluster_dataset(custom, k=2)
    assert rc.classes == two
    np.testing.assert_array_equal(clusters.member_labels(rc, "m02", "coarse_labels"), maps[2])
    assert tuple(member_thumbnail(rc, "m00", (64, 128))[30, 45]) == (0, 0, 200)


def test_bad_label_folders_get_one_clear_message(tmp_path):
    maps = [tissue_band(100 + 20 * i) for i in range(4)]
    no_table = write_label_folder(tmp_path / "no_table", maps, classes_json=False)
    with pytest.raises(PriorPathError, match="classes.json is missing") as info:
        cluster_dataset(no_table)
    assert str(no_table) in str(info.value) and "binary" in str(info.value)
    assert not cluster_dataset(no_table, k=2, features="binary").has_labels  # its fine masks still cluster

    outside = write_label_folder(tmp_path / "outside", maps)
    bad = maps[2].copy()
    bad[:10, :10] = 5
    Path(outside / "labels" / "m02.png").unlink()
    four = ClassTable("six", tuple(LabelClass(i, "air" if i == 0 else f"c{i}", (i, i, i)) for i in range(6)))
    write_label_png(outside / "labels" / "m02.png", bad, four)
    with pytest.raises(PriorPathError) as info:
        cluster_dataset(outside)
    message = str(info.value)
    assert "m02.png" in message and "class id 5" in message and "0-2" in message and message.count("\n") == 0

    binary_only = tmp_path / "binary_only"
    (binary_only / "fine").mkdir(parents=True)
    for i, m in enumerate(maps):
        assert cv2.imwrite(str(binary_only / "fine" / f"m{i}.png"), tissue_of(m))
    with pytest.raises(PriorPathError, match="no label maps"):
        cluster_dataset(binary_only, features="labels")
    with pytest.raises(PriorPathError, match="features must be one of"):
        cluster_dataset(binary_only, features="classes")
    few = write_label_folder(tmp_path / "few", maps[:2])
    with pytest.raises(PriorPathError, match="only 2 label map"):
        cluster_dataset(few)
    corrupt = write_label_folder(tmp_path / "corrupt", maps)
    (corrupt / "labels" / "m01.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(PriorPathError, match="m01.png"):
        cluster_dataset(corrupt)
