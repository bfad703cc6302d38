"""Per-mask statistics and the KS and KL distances between their distributions (paper Table 2).

The paper reports KS and KL between real and generated masks without saying on which quantity. Ours,
computed per mask and then compared as two samples:

- **tissue fraction**: the share of tissue (255) pixels. This is the quantity behind the paper's ``KS``
  and ``KL`` columns in our ``metrics.csv``.
- **boundary density**: the share of the mask's pixels that are tissue pixels with at least one
  4-neighbour inside the image that is air (the inner 4-connected boundary). The image border is not a
  boundary. It measures how ragged the tissue is (dense in fine masks, sparse in coarse ones), and it
  depends on resolution, which is one reason sets of different sizes are refused.
- **component count**: the number of 8-connected tissue components.

KS is the two-sample Kolmogorov–Smirnov statistic D = sup_x |F_real(x) - F_fake(x)| over the empirical
distribution functions (the statistic of ``scipy.stats.ks_2samp``; no bins).

KL is KL(real ‖ fake) = sum_i p_i ln(p_i / q_i), in nats, between histograms with fixed bins:

- tissue fraction: 20 equal bins on [0, 1];
- boundary density: 20 equal bins on [0, 0.5] (real masks stay well below 0.5; larger values are
  counted in the last bin);
- component count: bins {0}, [1, 2), [2, 4), [4, 8), ..., [2^15, 2^16) and >= 2^16 (base-2 logarithmic,
  because counts range from 1 to thousands).

Each bin gets ``alpha`` = 1 pseudo-count in both histograms before normalising (Laplace smoothing):
p_i = (c_i + 1) / (N + B). Without it a single empty bin in the generated histogram makes KL infinite,
and the value would be decided by an arbitrary epsilon. Smoothing shrinks KL for small sets, so compare
methods at equal N.
"""
from __future__ import annotations

from typing import Mapping

import cv2
import numpy as np

TISSUE = "tissue_fraction"
BOUNDARY = "boundary_density"
COMPONENTS = "components"
STATISTICS = (TISSUE, BOUNDARY, COMPONENTS)

#: Histogram edges for KL; bin i is [edges[i], edges[i+1]), the last bin is closed and takes everything above.
BIN_EDGES: dict[str, np.ndarray] = {
    TISSUE: np.linspace(0.0, 1.0, 21),
    BOUNDARY: np.linspace(0.0, 0.5, 21),
    COMPONENTS: np.concatenate([[0.0], 2.0 ** np.arange(18)]),  # last bin [2^16, 2^17] takes all above
}
KL_ALPHA = 1.0

_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def tissue_fraction(tissue: np.ndarray) -> float:
    return float(np.count_nonzero(tissue)) / tissue.size


def boundary_density(tissue: np.ndarray) -> float:
    """Share of pixels that are tissue with an air 4-neighbour (outside the image counts as tissue)."""
    t = tissue.astype(np.uint8)
    inner = cv2.erode(t, _CROSS, borderType=cv2.BORDER_CONSTANT, borderValue=1)
    return float(np.count_nonzero(t > inner)) / tissue.size


def component_count(tissue: np.ndarray) -> int:
    """Number of 8-connected tissue components."""
    n, _ = cv2.connectedComponents(tissue.astype(np.uint8), connectivity=8)
    return int(n) - 1


def mask_statistics(tissue: np.ndarray) -> dict[str, float]:
    return {TISSUE: tissue_fraction(tissue), BOUNDARY: boundary_density(tissue),
            COMPONENTS: float(component_count(tissue))}


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin [edges[i], edges[i+1]); values beyond either end go to the first or last bin."""
    idx = np.searchsorted(edges, np.asarray(values, dtype=np.float64), side="right") - 1
    return np.bincount(np.clip(idx, 0, len(edges) - 2), minlength=len(edges) - 1)


def ks_statistic(sample1: np.ndarray, sample2: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic sup |F1 - F2| of the empirical CDFs."""
    a = np.sort(np.asarray(sample1, dtype=np.float64))
    b = np.sort(np.asarray(sample2, dtype=np.float64))
    if a.size == 0 or b.size == 0:
        raise ValueError("KS needs two non-empty samples")
    points = np.concatenate([a, b])  # the sup is reached at a sample point, with CDFs taken from the right
    cdf_a = np.searchsorted(a, points, side="right") / a.size
    cdf_b = np.searchsorted(b, points, side="right") / b.size
    return float(np.abs(cdf_a - cdf_b).max())


def kl_divergence(counts_p: np.ndarray, counts_q: np.ndarray, alpha: float = KL_ALPHA) -> float:
    """KL(P ‖ Q) in nats between two histograms of counts, each bin smoothed by ``alpha`` pseudo-counts."""
    p = np.asarray(counts_p, dtype=np.float64) + alpha
    q = np.asarray(counts_q, dtype=np.float64) + alpha
    if p.shape != q.shape:
        raise ValueError(f"histograms have different bins: {p.shape} and {q.shape}")
    p, q = p / p.sum(), q / q.sum()
    nonzero = p > 0
    return float(np.sum(p[nonzero] * np.log(p[nonzero] / q[nonzero])))


def compare(real: Mapping[str, np.ndarray], fake: Mapping[str, np.ndarray],
            alpha: float = KL_ALPHA) -> dict[str, float]:
    """KS and KL for every statistic: ``ks``/``kl`` for tissue fraction, ``ks_<stat>``/``kl_<stat>`` else."""
    out: dict[str, float] = {}
    for stat in STATISTICS:
        suffix = "" if stat == TISSUE else f"_{_SHORT[stat]}"
        edges = BIN_EDGES[stat]
        out[f"ks{suffix}"] = ks_statistic(real[stat], fake[stat])
        out[f"kl{suffix}"] = kl_divergence(histogram(real[stat], edges), histogram(fake[stat], edges), alpha)
    return out


_SHORT = {BOUNDARY: "boundary", COMPONENTS: "components"}
