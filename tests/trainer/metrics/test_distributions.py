"""Per-mask statistics, KS and KL against independent computations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage
import scipy.stats

from trainer.metrics.distributions import (BIN_EDGES, BOUNDARY, COMPONENTS, TISSUE, boundary_density, compare,
                                           component_count, histogram, kl_divergence, ks_statistic, tissue_fraction)


def _boundary_by_loops(t: np.ndarray) -> float:
    h, w = t.shape
    count = 0
    for y in range(h):
        for x in range(w):
            if t[y, x] and any(0 <= y + dy < h and 0 <= x + dx < w and not t[y + dy, x + dx]
                               for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))):
                count += 1
    return count / t.size


def test_boundary_density_hand_example():
    t = np.zeros((5, 5), bool)
    t[1:4, 1:4] = True  # a 3x3 square: its 8 outer pixels touch air, the centre does not
    assert boundary_density(t) == pytest.approx(8 / 25)
    assert boundary_density(np.ones((4, 6), bool)) == 0.0  # the image border is not a boundary
    assert boundary_density(np.zeros((4, 6), bool)) == 0.0


def test_boundary_density_matches_a_pixel_loop():
    rng = np.random.default_rng(0)
    for p in (0.2, 0.5, 0.9):
        t = rng.random((13, 21)) < p
        assert boundary_density(t) == pytest.approx(_boundary_by_loops(t))


def test_component_count_uses_8_connectivity():
    t = np.zeros((6, 6), bool)
    t[1, 1] = t[2, 2] = True  # diagonal neighbours: one component
    t[4, 4] = True
    assert component_count(t) == 2
    rng = np.random.default_rng(1)
    for p in (0.1, 0.4, 0.6):
        t = rng.random((40, 70)) < p
        _, expected = scipy.ndimage.label(t, structure=np.ones((3, 3)))
        assert component_count(t) == expected
    assert component_count(np.zeros((3, 3), bool)) == 0


def test_tissue_fraction():
    t = np.zeros((4, 5), bool)
    t[:2, :3] = True
    assert tissue_fraction(t) == pytest.approx(6 / 20)


@pytest.mark.parametrize("seed", range(4))
def test_ks_equals_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.random(rng.integers(5, 200))
    b = rng.beta(2, 3, rng.integers(5, 200))
    assert ks_statistic(a, b) == pytest.approx(scipy.stats.ks_2samp(a, b).statistic, abs=1e-12)
    ties_a, ties_b = rng.integers(0, 5, 50), rng.integers(0, 7, 33)  # component counts are integers
    assert ks_statistic(ties_a, ties_b) == pytest.approx(scipy.stats.ks_2samp(ties_a, ties_b).statistic, abs=1e-12)


def test_ks_extremes():
    assert ks_statistic([0.1, 0.2], [0.1, 0.2]) == 0.0
    assert ks_statistic([0.1, 0.2], [0.8, 0.9]) == 1.0


def test_kl_on_known_histograms():
    # counts (1, 0, 3) and (2, 2, 0), one pseudo-count per bin: p = (2, 1, 4) / 7, q = (3, 3, 1) / 7
    expected = (2 / 7) * math.log(2 / 3) + (1 / 7) * math.log(1 / 3) + (4 / 7) * math.log(4 / 1)
    assert kl_divergence([1, 0, 3], [2, 2, 0]) == pytest.approx(expected, rel=1e-12)
    assert kl_divergence([5, 5], [5, 5]) == 0.0
    p, q = np.array([10, 0, 4, 7]), np.array([1, 9, 9, 2])
    assert kl_divergence(p, q, alpha=0.5) == pytest.approx(scipy.stats.entropy(p + 0.5, q + 0.5), rel=1e-12)
    assert kl_divergence(p, q) != pytest.approx(kl_divergence(q, p))  # KL is not symmetric


def test_histogram_bins():
    tf = BIN_EDGES[TISSUE]
    assert histogram([0.0, 0.049, 0.05, 0.999, 1.0], tf).tolist() == [2, 1] + [0] * 17 + [2]
    assert histogram([0.6, 0.7], BIN_EDGES[BOUNDARY])[-1] == 2  # above 0.5: counted in the last bin
    counts = histogram([0, 1, 2, 3, 4, 7, 8, 40000, 10 ** 6], BIN_EDGES[COMPONENTS])
    assert counts[:5].tolist() == [1, 1, 2, 2, 1]  # {0}, [1,2), [2,4), [4,8), [8,16)
    assert counts[-1] == 1 and counts[-2] == 1  # [2^15, 2^16) holds 40000; >= 2^16 goes to the last bin
    assert len(counts) == 18


def test_compare_reports_every_statistic():
    rng = np.random.default_rng(2)
    real = {TISSUE: rng.random(50), BOUNDARY: rng.random(50) * 0.2, COMPONENTS: rng.integers(1, 100, 50)}
    result = compare(real, real)
    assert set(result) == {"ks", "kl", "ks_boundary", "kl_boundary", "ks_components", "kl_components"}
    assert all(v == 0 for v in result.values())
    shifted = {**real, TISSUE: np.clip(real[TISSUE] + 0.3, 0, 1)}
    changed = compare(real, shifted)
    assert changed["ks"] > 0.25 and changed["kl"] > 0.1 and changed["ks_boundary"] == 0
