"""FID and KID against closed forms and straightforward reference implementations."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg

from trainer.errors import PriorPathError
from trainer.metrics.frechet import fid, frechet_distance, gaussian_stats, kid, mmd2_unbiased


def _random_spd(rng, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def _pytorch_fid_reference(mu1, s1, mu2, s2) -> float:
    """The formula exactly as pytorch-fid writes it, with scipy's general matrix square root."""
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(s1.dot(s2))
    if np.iscomplexobj(covmean):
        assert np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3)
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_diagonal_gaussians_match_the_closed_form():
    # For diagonal covariances the square root is elementwise: Tr(S1 + S2 - 2 (S1 S2)^1/2) = sum (s1 - s2)^2
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    sd1, sd2 = rng.uniform(0.1, 3, 16), rng.uniform(0.1, 3, 16)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((sd1 - sd2) ** 2)
    assert frechet_distance(mu1, np.diag(sd1 ** 2), mu2, np.diag(sd2 ** 2)) == pytest.approx(expected, rel=1e-10)


def test_scaled_covariance_matches_the_closed_form():
    # S2 = c^2 S1  =>  Tr(S1 + c^2 S1 - 2 c S1) = (1 - c)^2 Tr S1, for any (non-diagonal) S1
    rng = np.random.default_rng(2)
    s1 = _random_spd(rng, 32)
    mu1, mu2 = rng.normal(size=32), rng.normal(size=32)
    c = 1.7
    expected = np.sum((mu1 - mu2) ** 2) + (1 - c) ** 2 * np.trace(s1)
    assert frechet_distance(mu1, s1, mu2, c * c * s1) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-9)


def test_general_covariances_match_pytorch_fid_formula():
    rng = np.random.default_rng(3)
    for d in (5, 40):
        mu1, mu2, s1, s2 = rng.normal(size=d), rng.normal(size=d), _random_spd(rng, d), _random_spd(rng, d)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_pytorch_fid_reference(mu1, s1, mu2, s2),
                                                                   rel=1e-8)


def test_samples_from_known_gaussians_approach_the_closed_form():
    rng = np.random.default_rng(4)
    n, sd1, sd2 = 200_000, np.array([1.0, 2.0, 0.5]), np.array([1.5, 1.0, 0.5])
    x = rng.normal(size=(n, 3)) * sd1
    y = rng.normal(size=(n, 3)) * sd2 + np.array([1.0, 0.0, -1.0])
    expected = 2.0 + np.sum((sd1 - sd2) ** 2)  # 2 + 0.25 + 1 + 0 = 3.25
    assert fid(x, y) == pytest.approx(expected, abs=0.05)


@pytest.mark.parametrize("n1,n2,d", [(12, 30, 64), (30, 12, 64), (200, 150, 16)])
def test_low_rank_and_full_paths_agree(n1, n2, d):
    # n < d uses the nuclear-norm form, n > d the eigenvalue form; both must equal the Gaussian formula.
    rng = np.random.default_rng(n1 + n2 + d)
    f1 = rng.normal(size=(n1, d)) @ rng.normal(size=(d, d)) / 4
    f2 = rng.normal(size=(n2, d)) + 0.3
    expected = frechet_distance(*gaussian_stats(f1), *gaussian_stats(f2))
    # rank-deficient covariances leave eigenvalues of ~1e-13 whose square roots add ~1e-6 to the reference
    assert fid(f1, f2) == pytest.approx(expected, rel=1e-7)
    if n1 > d and n2 > d:
        assert fid(f1, f2) == pytest.approx(_pytorch_fid_reference(*gaussian_stats(f1), *gaussian_stats(f2)),
                                            rel=1e-8)


@pytest.mark.parametrize("n,d", [(20, 2048), (300, 64)])
def test_fid_of_a_set_with_itself_is_zero(n, d):
    f = np.random.default_rng(5).normal(size=(n, d)).astype(np.float32)
    assert fid(f, f) == pytest.approx(0.0, abs=1e-6 * d)


def test_fid_needs_two_vectors():
    with pytest.raises(PriorPathError, match="at least 2"):
        fid(np.zeros((1, 8)), np.zeros((5, 8)))


def _naive_mmd2(x, y) -> float:
    d = x.shape[1]
    k = lambda a, b: (float(a @ b) / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    xy = sum(k(a, b) for a in x for b in y) / (m * n)
    return xx + yy - 2 * xy


def test_kid_matches_the_unbiased_estimator_written_out():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(15, 4)), rng.normal(size=(11, 4)) + 0.5
    assert mmd2_unbiased(x, y) == pytest.approx(_naive_mmd2(x, y), rel=1e-10)
    mean, std = kid(x, y)
    assert mean == pytest.approx(_naive_mmd2(x, y), rel=1e-10) and std == 0.0


def test_kid_separates_distributions_and_uses_subsets():
    rng = np.random.default_rng(7)
    x, same, shifted = rng.normal(size=(600, 16)), rng.normal(size=(600, 16)), rng.normal(size=(600, 16)) + 0.5
    same_kid, same_std = kid(x, same, subsets=8, subset_size=200)
    shifted_kid, _ = kid(x, shifted, subsets=8, subset_size=200)
    assert abs(same_kid) < 0.01 and same_std > 0
    assert shifted_kid > 0.1
    assert kid(x, shifted, subsets=8, subset_size=200, seed=3) == kid(x, shifted, subsets=8, subset_size=200, seed=3)
