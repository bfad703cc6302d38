"""Per-class evaluation: KS/KL on class fractions and FID on coloured label maps, from small label maps
whose class fractions (and so the expected KS) are known exactly."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from trainer.cli import main
from trainer.data.classes import HE3, table_from_names, tissue_of, write_class_table, write_label_png
from trainer.metrics import labelsets
from trainer.metrics.report import CSV_COLUMNS, LABEL_REPORT_FILES, REPORT_FILES, EvalSettings, evaluate

H, W = 32, 64
AIR_ROWS = 8  # every map: 8 rows of air (a quarter), then nuclei rows, then stroma


def _map(nuclei_rows: int, seed: int) -> np.ndarray:
    labels = np.full((H, W), HE3.id_of("stroma"), np.uint8)
    labels[:AIR_ROWS] = 0
    # the nuclei band starts on a random row, so maps differ in layout while their fractions stay exact
    top = int(np.random.default_rng(seed).integers(AIR_ROWS, H - nuclei_rows + 1))
    labels[top:top + nuclei_rows] = HE3.id_of("nuclei")
    return labels


def _label_folder(folder: Path, nuclei_rows, table=HE3) -> list[np.ndarray]:
    """Indexed label PNGs with classes.json in the folder."""
    folder.mkdir(parents=True)
    maps = [_map(n, i) for i, n in enumerate(nuclei_rows)]
    for i, m in enumerate(maps):
        write_label_png(folder / f"l{i:02d}.png", m, table)
    write_class_table(folder / "classes.json", table)
    return maps


def _prepared_like(folder: Path, nuclei_rows) -> None:
    """The layout of a prepared or export folder: manifest.csv, fine/ masks, labels/ and classes.json."""
    (folder / "fine").mkdir(parents=True)
    (folder / "labels").mkdir()
    stems = []
    for i, n in enumerate(nuclei_rows):
        m = _map(n, 100 + i)
        stems.append(f"p{i:02d}")
        cv2.imwrite(str(folder / "fine" / f"p{i:02d}.png"), tissue_of(m))
        write_label_png(folder / "labels" / f"p{i:02d}.png", m, HE3)
    (folder / "manifest.csv").write_text("stem\n" + "\n".join(stems) + "\n")
    write_class_table(folder / "classes.json", HE3)


def _eval_cli(capsys, real, fakes, out):
    args = ["eval", "--real", str(real), "--out", str(out), "--device", "cpu", "--no-progress"]
    for name, folder in fakes:
        args += ["--fake", f"{name}={folder}"]
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, [l for l in captured.err.splitlines() if l.startswith("priorpath")]


REAL_ROWS = list(range(4, 12))  # nuclei fractions 4/32 ... 11/32, one per map


def test_known_ks_and_kl_per_class(tmp_path, capsys):
    _label_folder(tmp_path / "real", REAL_ROWS)
    _label_folder(tmp_path / "same", REAL_ROWS)
    # two more nuclei rows in every map: the nuclei and stroma fraction samples move by 2 of 8 steps, so
    # their empirical CDFs differ by at most 2/8 = 0.25; air is untouched
    _prepared_like(tmp_path / "shift", [n + 2 for n in REAL_ROWS])
    out = tmp_path / "report"
    code, stdout, err = _eval_cli(capsys, tmp_path / "real", [("same", tmp_path / "same"),
                                                              ("shift", tmp_path / "shift")], out)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES + LABEL_REPORT_FILES)
    metrics = json.loads((out / "metrics.json").read_text())
    same, shift = metrics["same"], metrics["shift"]
    for c in HE3.names:
        assert same[f"ks_class_{c}"] == 0.0 and same[f"kl_class_{c}"] == 0.0
    assert same["fid_labels"] == pytest.approx(0.0, abs=1e-3) and same["n_labels"] == 8
    assert shift["ks_class_air"] == 0.0 and shift["kl_class_air"] == 0.0
    assert shift["ks_class_nuclei"] == pytest.approx(0.25) and shift["ks_class_stroma"] == pytest.approx(0.25)
    assert shift["kl_class_nuclei"] > 0 and shift["fid_labels"] > 1.0
    assert shift["class_fraction_mean"]["air"] == pytest.approx(0.25)
    assert shift["class_fraction_mean"]["nuclei"] == pytest.approx(np.mean(REAL_ROWS) / H + 2 / H)
    # the binary metrics still run: the tissue of the label maps (real, same) and fine/ (shift) agree
    assert same["ks"] == shift["ks"] == 0.0 and same["fid"] == pytest.approx(0.0, abs=1e-3)

    with open(out / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:len(CSV_COLUMNS)] == [c for c, _ in CSV_COLUMNS]
    assert float(rows[1]["KS nuclei"]) == pytest.approx(0.25) and rows[1]["Method"] == "shift"
    assert float(rows[0]["FID labels"]) == pytest.approx(same["fid_labels"], abs=1e-5)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["classes"]["table"]["name"] == "he3" and meta["classes"]["n_real"] == 8
    with open(out / "class_fractions.csv", newline="") as fh:
        fractions = list(csv.DictReader(fh))
    assert len(fractions) == 24 and float(fractions[0]["nuclei"]) == pytest.approx(4 / H)
    assert "shift: label maps N 8" in stdout and "nuclei 0.250/" in stdout


def test_compare_matches_the_binary_ks_definition():
    """The per-class KS is the two-sample KS of the fraction samples (as scipy.stats.ks_2samp computes it)."""
    real = labelsets.LabelSet("real", Path("."), HE3, [], fractions=np.array([[0.5, 0.3, 0.2]] * 4))
    fake = labelsets.LabelSet("fake", Path("."), HE3, [],
                              fractions=np.array([[0.5, 0.3, 0.2]] * 3 + [[0.5, 0.1, 0.4]]))
    out = labelsets.compare(real, fake, alpha=1.0)
    assert out["ks_class_air"] == 0.0 and out["ks_class_stroma"] == 0.25 and out["ks_class_nuclei"] == 0.25
    # KL on 20 bins with one pseudo-count: real (4 in one bin) against fake (3 there, 1 elsewhere)
    p, q = np.ones(20), np.ones(20)
    p[6] += 4  # 0.3 falls in [0.3, 0.35)
    q[6] += 3
    q[2] += 1  # 0.1 in [0.1, 0.15)
    p, q = p / p.sum(), q / q.sum()
    assert out["kl_class_stroma"] == pytest.approx(float(np.sum(p * np.log(p / q))))


def test_class_tables_must_match(tmp_path, capsys):
    _label_folder(tmp_path / "real", REAL_ROWS)
    _label_folder(tmp_path / "other", REAL_ROWS, table=table_from_names(["tumour", "necrosis"]))
    code, _, err = _eval_cli(capsys, tmp_path / "real", [("o", tmp_path / "other")], tmp_path / "out")
    assert code == 1 and len(err) == 1
    assert "fake 'o': class table ['air', 'tumour', 'necrosis'] does not match" in err[0] and "stroma" in err[0]
    assert not (tmp_path / "out").exists()


def test_binary_sets_give_the_binary_report(tmp_path, caplog):
    _label_folder(tmp_path / "labelled", REAL_ROWS)
    binary = tmp_path / "binary"
    binary.mkdir()
    for p in sorted((tmp_path / "labelled").glob("*.png")):
        labels = labelsets.LabelSet("x", tmp_path, HE3, []).read(p)
        cv2.imwrite(str(binary / p.name), tissue_of(labels))
    result = evaluate(binary, [("b", binary)], tmp_path / "bin", EvalSettings(device="cpu"))
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == sorted(REPORT_FILES)
    assert not any("class" in k or "labels" in k for k in result.metrics["b"])
    header = (tmp_path / "bin" / "metrics.csv").read_text().splitlines()[0]
    assert header == ",".join(c for c, _ in CSV_COLUMNS)
    assert "classes" not in json.loads((tmp_path / "bin" / "meta.json").read_text())

    # labelled real, binary fake: binary metrics, the per-class ones left out with a warning
    with caplog.at_level("WARNING"):
        result = evaluate(tmp_path / "labelled", [("b", binary)], tmp_path / "mixed", EvalSettings(device="cpu"))
    assert "fake 'b' has no label maps" in caplog.text
    assert "fid_labels" not in result.metrics["b"] and result.metrics["b"]["ks"] == 0.0


def test_where_label_maps_are_found(tmp_path):
    _prepared_like(tmp_path / "prep", REAL_ROWS[:2])
    assert labelsets.label_folder(tmp_path / "prep") == (tmp_path / "prep" / "labels", tmp_path / "prep" / "classes.json")
    # DIR/labels: classes.json above, indexed PNGs inside
    assert labelsets.label_folder(tmp_path / "prep" / "labels") == (tmp_path / "prep" / "labels",
                                                                    tmp_path / "prep" / "classes.json")
    # DIR/fine: classes.json above but greyscale masks, so binary
    assert labelsets.label_folder(tmp_path / "prep" / "fine") is None
    shutil.rmtree(tmp_path / "prep" / "labels")
    assert labelsets.label_folder(tmp_path / "prep") is None
