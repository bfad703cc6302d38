"""The paper's ordering at a test-sized budget: coarse-to-fine beats noise-to-mask at equal N.

The fast version of ``benchmarks/reproduce.py`` (same functions: budgeted ``priorpath train`` runs, sets
generated per seed, ``priorpath eval`` with the floor and coarse rows), on the bundled sample at 64x128. A
change that breaks a model or the protocol shows here; the full study is in ``docs/reproduction.md``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import reproduce  # noqa: E402

from trainer.data.dataset import split_by_source  # noqa: E402
from trainer.data.prepare import link_subset, read_manifest  # noqa: E402

SIZE = (64, 128)


def shrink(prepared: Path, out: Path) -> Path:
    """The prepared sample at 64x128 (the test budget's size), masks kept binary."""
    for kind in ("coarse", "fine", "rgb"):
        (out / kind).mkdir(parents=True)
        for path in (prepared / kind).glob("*.png"):
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            how = cv2.INTER_AREA if kind == "rgb" else cv2.INTER_NEAREST
            cv2.imwrite(str(out / kind / path.name), cv2.resize(image, SIZE[::-1], interpolation=how))
    (out / "manifest.csv").write_text((prepared / "manifest.csv").read_text())
    return out


@pytest.fixture(scope="module")
def study(sample_patches, tmp_path_factory):
    work = tmp_path_factory.mktemp("reproduce")
    small = shrink(sample_patches, work / "prepared")
    train_stems, held_stems = split_by_source(read_manifest(small), test_fraction=0.35, seed=0,
                                              group_pattern=r"(Case-\d+|P\d+)-")
    train, held = link_subset(small, work / "train", train_stems), link_subset(small, work / "heldout", held_stems)
    options = {"dcgan": {"ngf": 16, "ndf": 16}}
    checkpoints = reproduce.train_all(["analogy", "dcgan"], train, work, SIZE, minutes=0.2, options=options)
    metrics = reproduce.evaluate_seed(checkpoints, train, held, work, seed=0)
    return work, checkpoints, metrics


def test_coarse_to_fine_beats_noise_to_mask_on_fid_and_coverage_at_equal_n(study):
    _, _, m = study
    assert m["analogy"]["n"] == m["dcgan"]["n"] == m["analogy"]["n_real"]
    assert m["analogy"]["fid"] < m["dcgan"]["fid"]
    assert m["analogy"]["coverage"] > m["dcgan"]["coverage"]
    assert m["analogy"]["cells_covered"] >= m["dcgan"]["cells_covered"]
    # the floor (other patients' real masks) is the best any model can hope for
    assert m[reproduce.REFERENCES[0]]["fid"] < m["dcgan"]["fid"]


def test_a_second_run_trains_nothing_and_results_are_written(study, tmp_path):
    work, checkpoints, metrics = study
    before = {m: p.stat().st_mtime_ns for m, p in checkpoints.items()}
    again = reproduce.train_all(["analogy", "dcgan"], work / "train", work, SIZE, minutes=5.0)  # plans are kept
    assert {m: p.stat().st_mtime_ns for m, p in again.items()} == before
    plans = {m: json.loads((work / "runs" / f"{m}.plan.json").read_text()) for m in again}
    reproduce.write_results(work, [metrics, metrics], plans, results=tmp_path, figures=tmp_path)
    text = (tmp_path / "reproduce.md").read_text()
    assert "| analogy |" in text and "| dcgan |" in text and "± 0.0" in text
    assert "| DCGAN | 0.086–0.251 |" in text  # the paper's range beside ours
    assert cv2.imread(str(tmp_path / "reproduction_masks.jpg")) is not None
    assert (tmp_path / "reproduction_tsne.png").stat().st_size > 1000
    # a second evaluation of the same seed reads the first one's report instead of recomputing it
    assert reproduce.evaluate_seed(checkpoints, work / "train", work / "heldout", work, seed=0) == metrics


def test_verdicts_follow_the_stated_rule():
    from reproduce_report import compare, verdicts

    summary = {"pix2pix": {"fid": (100.0, 5.0), "cells_covered": (8.0, 0.0)},
               "depas": {"fid": (120.0, 10.0), "cells_covered": (8.0, 1.0)},
               "dcgan": {"fid": (104.0, 1.0)}}
    assert compare(summary, "pix2pix", "depas", "fid") == "holds"  # 20 apart > 5 + 10
    assert compare(summary, "depas", "pix2pix", "fid") == "does not hold"
    assert compare(summary, "pix2pix", "dcgan", "fid") == "cannot be told"  # 4 apart < 5 + 1
    assert compare(summary, "pix2pix", "depas", "cells_covered", higher_is_better=True) == "cannot be told"
    assert compare(summary, "pix2pix", "cyclegan", "fid") is None
    claims = {c: v for c, v, _ in verdicts(summary)}
    assert claims["PriorPath (pix2pix) beats DEPAS on FID"] == "holds"
    assert not any("CycleGAN" in c for c in claims)
