"""Precision, recall, density and coverage (Naeem et al., ICML 2020) in Inception feature space.

FID mixes fidelity and diversity into one number; these four separate them, and recall and coverage
show mode collapse directly (a generator that repeats a few good masks keeps high precision but loses
recall and coverage). With real features X (N), generated features Y (M), Euclidean distances and
r_k(z) the distance from z to its k-th nearest neighbour in its own set (itself excluded), k = 5:

- precision = share of Y within r_k(x) of some real x;
- recall    = share of X within r_k(y) of some generated y;
- density   = (1 / kM) * sum over Y of the number of real x with y inside r_k(x);
- coverage  = share of X whose nearest generated y is within r_k(x).

"Within" is a strict ``<``, as in the authors' reference code. Distances are computed in float64 and in
row chunks, so memory stays bounded for large sets.
"""
from __future__ import annotations

import numpy as np

from ..errors import PriorPathError

K = 5
_CHUNK = 1024


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of a and b (float64)."""
    sq = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.clip(sq, 0.0, None))


def knn_radii(features: np.ndarray, k: int = K) -> np.ndarray:
    """Distance from each row to its k-th nearest other row."""
    f = np.asarray(features, dtype=np.float64)
    out = np.empty(len(f))
    for start in range(0, len(f), _CHUNK):
        d = pairwise_distances(f[start:start + _CHUNK], f)
        # position 0 of each sorted row is the point itself (distance 0), so index k is the k-th neighbour
        out[start:start + _CHUNK] = np.partition(d, k, axis=1)[:, k]
    return out


def prdc(real: np.ndarray, fake: np.ndarray, k: int = K) -> dict[str, float]:
    """The four metrics; both sets need more than ``k`` feature vectors."""
    x = np.asarray(real, dtype=np.float64)
    y = np.asarray(fake, dtype=np.float64)
    if len(x) <= k or len(y) <= k:
        raise PriorPathError(f"precision/recall need more than k={k} masks per set (got {len(x)} real, {len(y)} "
                             "generated)")
    r_real, r_fake = knn_radii(x, k), knn_radii(y, k)
    inside_count = np.zeros(len(y))  # real balls containing each y
    recalled = np.zeros(len(x), dtype=bool)
    nearest_fake = np.full(len(x), np.inf)
    for start in range(0, len(y), _CHUNK):
        d = pairwise_distances(x, y[start:start + _CHUNK])  # N x chunk
        inside_count[start:start + _CHUNK] = (d < r_real[:, None]).sum(axis=0)
        recalled |= (d < r_fake[None, start:start + _CHUNK]).any(axis=1)
        nearest_fake = np.minimum(nearest_fake, d.min(axis=1))
    return {
        "precision": float((inside_count > 0).mean()),
        "recall": float(recalled.mean()),
        "density": float(inside_count.sum() / (k * len(y))),
        "coverage": float((nearest_fake < r_real).mean()),
    }
