"""`priorpath eval`: the report on real prepared masks, and one clear line for every kind of bad input."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from trainer.cli import main
from trainer.metrics.report import REPORT_FILES, EvalSettings, evaluate


def _err(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("priorpath")]


def _write_masks(folder: Path, n: int, size=(32, 64), seed=0, values=(0, 255)) -> list[np.ndarray]:
    """Blobby random masks (a smoothed noise field, thresholded), written as PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    masks = []
    for i in range(n):
        field = cv2.GaussianBlur(rng.random(size).astype(np.float32), (0, 0), 3)
        m = np.where(field > np.median(field), values[1], values[0]).astype(np.uint8)
        cv2.imwrite(str(folder / f"m{i:03d}.png"), m)
        masks.append(m)
    return masks


def _eval(capsys, real, fakes, out, *extra) -> tuple[int, list[str]]:
    args = ["eval", "--real", str(real), "--out", str(out), "--device", "cpu", "--no-progress", *extra]
    for name, folder in fakes:
        args += ["--fake", f"{name}={folder}"]
    code = main(args)
    return code, _err(capsys)


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "--real" in out and "NAME=DIR" in out and "--device" in out


def test_report_on_real_prepared_masks(prepared_he, tmp_path, capsys):
    """Real H&E fine masks against (a) themselves, (b) their coarse masks: the whole report."""
    self_copy, coarse_dir = tmp_path / "self", tmp_path / "coarse"
    shutil.copytree(prepared_he / "fine", self_copy)
    coarse_dir.mkdir()
    for p in sorted((prepared_he / "coarse").glob("*.png"))[::2]:  # half of them keeps the test fast
        shutil.copy(p, coarse_dir)
    out = tmp_path / "report"
    code, err = _eval(capsys, prepared_he, [("same", self_copy), ("coarse", coarse_dir)], out,
                      "--dataset", "OS-sample")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)

    metrics = json.loads((out / "metrics.json").read_text())
    n = len(list((prepared_he / "fine").glob("*.png")))
    assert list(metrics) == ["same", "coarse"]
    for name in metrics:
        m = metrics[name]
        assert {"fid", "kid", "ks", "kl", "precision", "recall", "density", "coverage", "n", "n_real",
                "ks_boundary", "kl_boundary", "ks_components", "kl_components", "cells_covered", "grid"} <= set(m)
        assert m["n_real"] == n and len(m["grid"]["cells"]) == 9
    assert metrics["same"]["n"] == n and metrics["coarse"]["n"] == len(list(coarse_dir.iterdir()))
    same, coarse = metrics["same"], metrics["coarse"]
    assert same["fid"] == pytest.approx(0.0, abs=1e-3)
    assert same["ks"] == same["kl"] == same["ks_boundary"] == same["ks_components"] == 0.0
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0 and same["cells_covered"] == 1.0
    # coarse masks lose the fine detail: far in FID, boundary density and component counts
    assert coarse["fid"] > 50 and coarse["ks_boundary"] > 0.4 and coarse["ks_components"] > 0.4
    assert coarse["fid"] > 10 * same["fid"]

    with open(out / "metrics.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:5] == ["Method", "Dataset", "KS", "KL", "FID"]  # the paper's Table 2 columns first
    assert [r[:2] for r in rows[1:]] == [["same", "OS-sample"], ["coarse", "OS-sample"]]
    assert float(rows[2][4]) == pytest.approx(coarse["fid"], rel=1e-5)

    meta = json.loads((out / "meta.json").read_text())
    assert meta["real"]["n"] == n and meta["real"]["size_hw"] == [512, 1024]
    assert meta["network"]["tag"].startswith("inception-7ff4a85c3a63")
    with open(out / "per_mask.csv", newline="") as fh:
        per_mask = list(csv.DictReader(fh))
    assert len(per_mask) == 2 * n + metrics["coarse"]["n"] and all(r["cell"] for r in per_mask if r["set"] == "real")
    for png in ("tsne.png", "grid.png", "histograms.png"):
        with Image.open(out / png) as im:
            assert im.format == "PNG" and min(im.size) > 300

    # the same masks again: every feature comes from the cache
    result = evaluate(prepared_he, [("same", self_copy)], tmp_path / "again", EvalSettings(device="cpu"))
    assert result.computed == 0 and result.metrics["same"]["fid"] == pytest.approx(0.0, abs=1e-3)


def test_non_binary_masks_are_counted_then_binarised_at_127(tmp_path, capsys):
    real = _write_masks(tmp_path / "real", 8, seed=1)
    soft = tmp_path / "soft"
    shutil.copytree(tmp_path / "real", soft)
    for i in (0, 3, 5):  # soft edges: 200 reads as tissue, 60 as air
        m = real[i].copy()
        m[m == 255] = 200
        m[m == 0] = 60
        cv2.imwrite(str(soft / f"m{i:03d}.png"), m)
    code, err = _eval(capsys, tmp_path / "real", [("soft", soft)], tmp_path / "out")
    assert code == 0, err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["soft"]["nonbinary"] == 3
    assert metrics["soft"]["fid"] == pytest.approx(0.0, abs=1e-3) and metrics["soft"]["ks"] == 0.0


def test_non_binary_masks_are_reported_in_the_log(tmp_path, caplog):
    _write_masks(tmp_path / "real", 8, seed=1)
    _write_masks(tmp_path / "soft", 8, seed=1, values=(10, 250))
    with caplog.at_level("WARNING"):
        evaluate(tmp_path / "real", [("soft", tmp_path / "soft")], tmp_path / "out", EvalSettings(device="cpu"))
    assert "fake 'soft': 8 of 8 masks are not binary" in caplog.text and "binarised at 127" in caplog.text


def test_empty_and_missing_folders(tmp_path, capsys):
    _write_masks(tmp_path / "real", 8)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no masks here")
    code, err = _eval(capsys, tmp_path / "real", [("gen", tmp_path / "empty")], tmp_path / "out")
    assert code == 1 and len(err) == 1 and "fake 'gen': no mask images" in err[0] and "empty" in err[0]
    code, err = _eval(capsys, tmp_path / "nothere", [("gen", tmp_path / "real")], tmp_path / "out")
    assert code == 1 and len(err) == 1 and "real" in err[0] and "no such folder" in err[0]
    assert not (tmp_path / "out").exists()


def test_unreadable_file_is_named(tmp_path, capsys):
    _write_masks(tmp_path / "real", 8)
    _write_masks(tmp_path / "gen", 8, seed=2)
    (tmp_path / "gen" / "m003.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    code, err = _eval(capsys, tmp_path / "real", [("gen", tmp_path / "gen")], tmp_path / "out")
    assert code == 1 and len(err) == 1 and "m003.png" in err[0] and "unreadable or corrupt" in err[0]


def test_mismatched_sizes(tmp_path, capsys):
    _write_masks(tmp_path / "real", 8)
    _write_masks(tmp_path / "small", 8, size=(16, 32))
    code, err = _eval(capsys, tmp_path / "real", [("small", tmp_path / "small")], tmp_path / "out")
    assert code == 1 and len(err) == 1 and "16x32" in err[0] and "32x64" in err[0] and "resize" in err[0]
    mixed = tmp_path / "mixed"
    _write_masks(mixed, 8)
    cv2.imwrite(str(mixed / "z.png"), np.zeros((16, 64), np.uint8))
    code, err = _eval(capsys, tmp_path / "real", [("mixed", mixed)], tmp_path / "out")
    assert code == 1 and len(err) == 1 and "different sizes" in err[0] and "z.png is 16x64" in err[0]


def test_images_that_are_not_masks(tmp_path, capsys):
    _write_masks(tmp_path / "real", 8)
    colour = tmp_path / "colour"
    _write_masks(colour, 8)
    cv2.imwrite(str(colour / "rgb.png"), np.dstack([np.zeros((32, 64), np.uint8), np.full((32, 64), 90, np.uint8),
                                                    np.full((32, 64), 200, np.uint8)]))
    code, err = _eval(capsys, tmp_path / "real", [("c", colour)], tmp_path / "out")
    assert code == 1 and "rgb.png: colour image, not a mask" in err[0]
    labels = tmp_path / "labels"
    _write_masks(labels, 8, values=(0, 1))
    code, err = _eval(capsys, tmp_path / "real", [("l", labels)], tmp_path / "out")
    assert code == 1 and "values are 0 and 1" in err[0]


def test_too_few_masks_and_bad_names(tmp_path, capsys):
    _write_masks(tmp_path / "real", 8)
    _write_masks(tmp_path / "few", 3)
    code, err = _eval(capsys, tmp_path / "real", [("few", tmp_path / "few")], tmp_path / "out")
    assert code == 1 and "only 3 masks" in err[0] and "at least 6" in err[0]
    code, err = _eval(capsys, tmp_path / "real", [("a", tmp_path / "real"), ("a", tmp_path / "real")], tmp_path / "o")
    assert code == 1 and "two generated sets are named 'a'" in err[0]
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--real", str(tmp_path / "real"), "--fake", str(tmp_path / "few"), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and "expected NAME=DIR" in capsys.readouterr().err


def test_out_must_be_writable(tmp_path, capsys):
    _write_masks(tmp_path / "real", 8)
    (tmp_path / "blocker").write_text("a file, not a folder")
    code, err = _eval(capsys, tmp_path / "real", [("g", tmp_path / "real")], tmp_path / "blocker" / "report")
    assert code == 1 and len(err) == 1 and "not writable" in err[0]


def test_cancel_stops_the_job(tmp_path):
    from trainer.errors import Cancelled
    from trainer.jobs import CancelToken

    _write_masks(tmp_path / "real", 8)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        evaluate(tmp_path / "real", [("g", tmp_path / "real")], tmp_path / "out", EvalSettings(device="cpu"),
                 cancel=token)
