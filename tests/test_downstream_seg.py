"""benchmarks/downstream_seg.py: Dice, batches, the three arms and the curve, on tiny settings.

Labelled tiles come from the bundled sample's real H&E patches, labelled by the he3 rule and cut to 64x128.
The "synthetic" folder below is made of REAL held-in tiles written in an export's layout (rgb/syn_*.png,
labels/syn_*.png, classes.json): it stands in for the layout of a class-aware export only, to test the
mechanics of arms (b) and (c); it says nothing about synthetic data.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from trainer.data.classes import HE3, read_label_png, write_class_table, write_label_png
from trainer.data.labels import label_prepared

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("downstream_seg", REPO / "benchmarks" / "downstream_seg.py")
ds = importlib.util.module_from_spec(_spec)
sys.modules["downstream_seg"] = ds  # dataclasses look their module up there
_spec.loader.exec_module(ds)

TINY = ["--steps", "3", "--batch", "4", "--crop", "32", "--width", "4", "--threads", "1"]
HELD_OUT = ("Case-3-", "Case-48-")  # patients whose slides only the test set holds


def _write(folder: Path, rows: list[tuple[str, str, np.ndarray, np.ndarray]], export: bool) -> Path:
    """rgb/, labels/, classes.json and manifest.csv; ``export``: an export's stems and layout."""
    for sub in ("rgb", "labels"):
        (folder / sub).mkdir(parents=True)
    manifest = []
    for i, (stem, source, rgb, labels) in enumerate(rows):
        stem = f"syn_{i:06d}" if export else stem
        cv2.imwrite(str(folder / "rgb" / f"{stem}.png"), rgb[..., ::-1])
        write_label_png(folder / "labels" / f"{stem}.png", labels, HE3)
        manifest.append({"stem": stem, "source": "sketch.png" if export else source})
    with open(folder / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["stem", "source"])
        writer.writeheader()
        writer.writerows(manifest)
    write_class_table(folder / "classes.json", HE3)
    return folder


@pytest.fixture(scope="module")
def folders(sample_patches, tmp_path_factory) -> dict[str, Path]:
    """real (held-in slides), test (held-out patients) and an export-layout stand-in, 64x128 tiles."""
    root = tmp_path_factory.mktemp("downstream")
    labelled = root / "labelled"
    shutil.copytree(sample_patches, labelled)
    label_prepared(labelled)
    held_in, held_out = [], []
    with open(labelled / "manifest.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            stem = row["stem"]
            rgb = cv2.imread(str(labelled / "rgb" / f"{stem}.png"))[96:160, 192:320, ::-1]
            labels = read_label_png(labelled / "labels" / f"{stem}.png", HE3)[0][96:160, 192:320]
            item = (stem, row["source"], np.ascontiguousarray(rgb), np.ascontiguousarray(labels))
            (held_out if any(p in row["source"] for p in HELD_OUT) else held_in).append(item)
    assert len(held_in) >= 16 and len(held_out) >= 8
    return {"real": _write(root / "real", held_in[::2], False), "test": _write(root / "test", held_out[::3], False),
            "synthetic": _write(root / "export", held_in[1::2], True)}


def test_dice_from_known_counts():
    true = np.array([[0, 0, 1, 1], [2, 2, 1, 1]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 0, 1, 1]], np.uint8)
    conf = ds.confusion_counts(pred, true, 3)
    assert conf.tolist() == [[1, 1, 0], [0, 4, 0], [1, 0, 1]]
    dice = ds.dice_from_confusion(conf)
    # air: 2*1 / (2*1 + 1 FP + 1 FN); stroma: 8 / (8 + 1); nuclei: 2 / (2 + 1)
    assert dice == pytest.approx([0.5, 8 / 9, 2 / 3])
    assert np.isnan(ds.dice_from_confusion(ds.confusion_counts(pred, true, 4))[3])  # class 3 absent: no Dice


def test_batches_are_split_evenly_between_pools():
    def pool(value: int) -> "ds.Tiles":
        return ds.Tiles(Path(str(value)), HE3, ["t"], [np.full((40, 40, 3), value, np.uint8)],
                        [np.full((40, 40), value, np.uint8)], set())

    x, y = ds.sample_batch([pool(1), pool(2)], 6, 16, np.random.default_rng(0))
    assert x.shape == (6, 16, 16, 3) and y.shape == (6, 16, 16)
    assert [int(v) for v in y[:, 0, 0]] == [1, 1, 1, 2, 2, 2]
    with pytest.raises(Exception, match="smaller than the crop 64"):
        ds.sample_batch([pool(1)], 2, 64, np.random.default_rng(0))


def test_three_arms_and_the_curve(folders, tmp_path):
    out = tmp_path / "res"
    code = ds.main(["--real", str(folders["real"]), "--test", str(folders["test"]), "--synthetic",
                    str(folders["synthetic"]), "--curve", "4", "--multiples", "1,2", "--out", str(out), *TINY])
    assert code == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert [a["arm"] for a in result["arms"]] == ["a real", "b synthetic", "c both"]
    n_real, n_syn = result["meta"]["n_real"], result["meta"]["n_synthetic"]
    assert [a["tiles"] for a in result["arms"]] == [[n_real], [n_syn], [n_real, n_syn]]
    for arm in result["arms"]:
        assert set(arm["dice"]) == {"air", "stroma", "nuclei"}
        assert all(d is None or 0.0 <= d <= 1.0 for d in arm["dice"].values())
        assert arm["mean_ratio_to_a"] == pytest.approx(arm["mean_dice"] / result["arms"][0]["mean_dice"])
    assert result["arms"][0]["mean_ratio_to_a"] == pytest.approx(1.0)
    point = result["curve"][0]
    assert point["real"]["tiles"] == [4] and [b["tiles"] for b in point["synthetic"]] == [[4], [8]]
    assert point["smallest_matching_multiple"] in (None, 1, 2)
    md = out.with_suffix(".md").read_text()
    assert "| c both |" in md and "ratio to (a)" in md and "ratio to real N" in md and "N = 4 real" in md


def test_arm_a_alone_is_repeatable(folders, tmp_path):
    args = ["--real", str(folders["real"]), "--test", str(folders["test"]), *TINY]
    assert ds.main([*args, "--out", str(tmp_path / "one")]) == 0
    assert ds.main([*args, "--out", str(tmp_path / "two")]) == 0
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert [a["arm"] for a in one["arms"]] == ["a real"] and one["arms"][0]["dice"] == two["arms"][0]["dice"]
    assert "Synthetic arms (b) and (c): not run" in (tmp_path / "one.md").read_text()


def test_bad_inputs_are_one_line_errors(folders, tmp_path, capsys):
    no_labels = tmp_path / "export"
    shutil.copytree(folders["synthetic"], no_labels)
    shutil.rmtree(no_labels / "labels")
    base = ["--real", str(folders["real"]), "--test", str(folders["test"]), "--out", str(tmp_path / "r"), *TINY]
    assert ds.main([*base, "--synthetic", str(no_labels)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--synthetic" in err[0] and "needs rgb/ and labels/" in err[0]
    assert ds.main(["--real", str(folders["real"]), "--test", str(folders["real"]), "--out", str(tmp_path / "r"),
                    *TINY]) == 1
    assert "share" in capsys.readouterr().err and not (tmp_path / "r.json").exists()
