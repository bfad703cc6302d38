"""Precision/recall/density/coverage against a loop-by-loop reading of Naeem et al. (2020), and mode collapse."""
from __future__ import annotations

import numpy as np
import pytest

from trainer.errors import PriorPathError
from trainer.metrics import prdc as prdc_module
from trainer.metrics.prdc import prdc


def _naive(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    def radius(points, i):
        d = sorted(np.linalg.norm(points[i] - points[j]) for j in range(len(points)) if j != i)
        return d[k - 1]

    r_real = [radius(real, i) for i in range(len(real))]
    r_fake = [radius(fake, j) for j in range(len(fake))]
    dist = lambda a, b: np.linalg.norm(a - b)  # noqa: E731
    precision = np.mean([any(dist(y, x) < r for x, r in zip(real, r_real)) for y in fake])
    recall = np.mean([any(dist(x, y) < r for y, r in zip(fake, r_fake)) for x in real])
    density = sum(dist(y, x) < r for y in fake for x, r in zip(real, r_real)) / (k * len(fake))
    coverage = np.mean([min(dist(x, y) for y in fake) < r for x, r in zip(real, r_real)])
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


@pytest.mark.parametrize("k", [1, 5])
def test_matches_the_definition_written_out(k, monkeypatch):
    monkeypatch.setattr(prdc_module, "_CHUNK", 7)  # exercise the chunked loops
    rng = np.random.default_rng(k)
    real, fake = rng.normal(size=(40, 5)), rng.normal(size=(31, 5)) * 1.3 + 0.4
    got, expected = prdc(real, fake, k=k), _naive(real, fake, k)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key


def test_flags_a_mode_collapsed_set():
    rng = np.random.default_rng(0)
    real, good = rng.normal(size=(500, 32)), rng.normal(size=(500, 32))
    modes = rng.normal(size=(3, 32))  # three plausible masks, repeated with tiny variations
    collapsed = modes[rng.integers(0, 3, 500)] + 0.05 * rng.normal(size=(500, 32))
    g, c = prdc(real, good), prdc(real, collapsed)
    assert g["recall"] > 0.7 and g["coverage"] > 0.9 and g["precision"] > 0.7
    assert c["recall"] < 0.05 and c["coverage"] < 0.1
    assert c["precision"] > 0.5  # each collapsed mask still looks real: precision alone would not notice


def test_identical_sets_score_one_except_density():
    x = np.random.default_rng(1).normal(size=(50, 8))
    result = prdc(x, x)
    assert (result["precision"], result["recall"], result["coverage"]) == (1.0, 1.0, 1.0)
    assert 0.8 < result["density"] < 1.6  # the expected density of a perfect generator is 1


def test_needs_more_than_k_masks():
    with pytest.raises(PriorPathError, match="more than k=5"):
        prdc(np.zeros((5, 3)), np.ones((10, 3)))
