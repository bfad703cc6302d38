"""FID and KID from Inception features.

FID (Heusel et al. 2017) is the Fréchet distance between Gaussians fitted to two feature sets::

    FID = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))

with the unbiased sample covariances S (``np.cov``), as pytorch-fid computes it. pytorch-fid takes
``scipy.linalg.sqrtm(S1 S2)``, which is slow (15 s at 2048-d on two cores) and can return complex or
non-finite values for the rank-deficient covariances of small sets. Only the trace is needed, and
Tr (S1 S2)^(1/2) = sum of sqrt(eigenvalues of S1 S2) = Tr (S1^(1/2) S2 S1^(1/2))^(1/2), whose argument
is symmetric positive semi-definite, so we take its eigenvalues with ``eigvalsh`` (round-off negatives
clipped to 0): same value, 5x faster, always real. When a set has fewer masks than feature dimensions
we use the exact low-rank form: with centred features A (n1 x d) and B (n2 x d), the non-zero
eigenvalues of S1 S2 are the squared singular values of A B^T / sqrt((n1-1)(n2-1)), so the trace is
the nuclear norm of that small matrix (used for the local FID of grid cells).

FID is biased upwards at small N (two sets of 200 masks from one distribution score around 28), so
always compare methods at equal N against the same real set; the report gives N for every set.

KID (Bińkowski et al. 2018) is the unbiased estimate of the squared MMD with the cubic polynomial kernel
k(x, y) = (x.y / d + 1)^3. When a set has more than ``subset_size`` masks (default 1000, as in
torch-fidelity), KID is the mean over ``subsets`` (default 100) random subsets of ``subset_size`` masks
from each set, drawn with a fixed seed, and its standard deviation is reported; otherwise it is one
estimate over all masks (standard deviation 0).
"""
from __future__ import annotations

import numpy as np

from ..errors import PriorPathError


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (float64) of an N x d feature matrix, N >= 2."""
    f = _as_features(features)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr (sigma1 sigma2)^(1/2) for symmetric positive semi-definite matrices."""
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    middle = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    return float(np.sqrt(np.clip(eig, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched shapes: {mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return max(float(value), 0.0)


def fid(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID between two feature sets (N x d each, N >= 2)."""
    f1, f2 = _as_features(features1), _as_features(features2)
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature sizes differ: {f1.shape[1]} and {f2.shape[1]}")
    n1, n2, d = len(f1), len(f2), f1.shape[1]
    if min(n1, n2) > d:
        return frechet_distance(*gaussian_stats(f1), *gaussian_stats(f2))
    mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
    a, b = f1 - mu1, f2 - mu2
    tr1 = float((a * a).sum()) / (n1 - 1)
    tr2 = float((b * b).sum()) / (n2 - 1)
    cross = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt((n1 - 1) * (n2 - 1))
    diff = mu1 - mu2
    return max(float(diff @ diff + tr1 + tr2 - 2.0 * cross), 0.0)


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased squared MMD between x (m x d) and y (n x d) with the cubic polynomial kernel."""
    x, y = _as_features(x), _as_features(y)
    d = x.shape[1]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    m, n = len(x), len(y)
    term_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    term_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(term_x + term_y - 2.0 * kxy.mean())


def kid(features1: np.ndarray, features2: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """(mean, standard deviation) of KID; see the module docstring for when subsets are used."""
    f1, f2 = _as_features(features1), _as_features(features2)
    if len(f1) <= subset_size and len(f2) <= subset_size:
        return mmd2_unbiased(f1, f2), 0.0
    m = min(subset_size, len(f1), len(f2))
    rng = np.random.default_rng(seed)
    values = [mmd2_unbiased(f1[rng.choice(len(f1), m, replace=False)], f2[rng.choice(len(f2), m, replace=False)])
              for _ in range(subsets)]
    return float(np.mean(values)), float(np.std(values))


def _as_features(features: np.ndarray) -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise PriorPathError(f"need at least 2 feature vectors (an N x d matrix), got shape {f.shape}")
    return f
