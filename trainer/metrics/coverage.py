"""The paper's coverage analysis (Fig. 1d, Fig. 3): a joint t-SNE map and a 3x3 grid with local FID.

The Inception features of the real set and of every generated set are embedded together in 2-D with
t-SNE (scikit-learn; PCA to 50 dimensions first, PCA initialisation, perplexity min(30, (n-1)/3),
fixed seed). The embedding is joint, so positions depend on which sets are evaluated together. Sets
larger than ``max_per_set`` masks (default 2000) are subsampled at random (seeded) for t-SNE and the
grid, which keeps t-SNE within minutes on a CPU; the global metrics always use every mask.

The grid splits the bounding box of the real masks' points into ``grid`` x ``grid`` equal cells
(default 3 x 3). Cells are numbered 1..9 row by row, starting at the lowest t-SNE y and lowest x;
generated points outside the box belong to no cell. Per cell the report gives the number of real and
generated masks and, where both have at least ``min_count`` (default 10), the local FID between
them. Local FID at such small N is strongly biased upwards (see `frechet`): compare methods cell by
cell, not against the global FID. A generated set *covers* a cell that holds real masks when it has
at least one mask there; ``cells_covered`` is the share of the real cells it covers (1.0 = no region
of the real masks is missed; DEPAS-like mode collapse leaves cells empty).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

import numpy as np

from .frechet import fid

GRID = 3
MIN_COUNT = 10
MAX_PER_SET = 2000
PCA_DIMS = 50
SINGLE_THREAD_BELOW = 1000


def subsample(n: int, limit: int, seed: int) -> np.ndarray:
    """Sorted indices of at most ``limit`` of ``n`` items, seeded."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def tsne_embedding(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """n x 2 t-SNE embedding of n x d features; identical rows get one position.

    A generator that repeats a mask yields identical feature vectors. t-SNE would scatter exact
    duplicates all over the map (zero distances break its perplexity calibration), drawing a collapsed
    set as if it were diverse, so only the distinct rows are embedded and duplicates share their point.
    """
    unique, inverse = np.unique(np.asarray(features, dtype=np.float64), axis=0, return_inverse=True)
    if len(unique) < 2:
        return np.zeros((len(features), 2))
    return _tsne(unique, seed)[inverse.reshape(-1)]


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    n = len(x)
    if x.shape[1] > PCA_DIMS and n > PCA_DIMS:
        x = PCA(n_components=PCA_DIMS, random_state=seed).fit_transform(x)
    perplexity = float(min(30.0, max(1.0, (n - 1) / 3.0)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
    # For small maps OpenMP's per-iteration thread overhead dominates (60 points: 9 s on two busy
    # cores, 0.3 s on one); one thread is faster below about a thousand points.
    with threadpool_limits(limits=1 if n < SINGLE_THREAD_BELOW else None, user_api="openmp"):
        return tsne.fit_transform(x).astype(np.float64)


@dataclass(frozen=True)
class Grid:
    """Equal cells over a bounding box; ``x_edges``/``y_edges`` have ``size + 1`` entries."""

    x_edges: np.ndarray
    y_edges: np.ndarray

    @property
    def size(self) -> int:
        return len(self.x_edges) - 1

    @classmethod
    def over(cls, points: np.ndarray, size: int = GRID) -> "Grid":
        lo, hi = points.min(axis=0), points.max(axis=0)
        return cls(np.linspace(lo[0], hi[0], size + 1), np.linspace(lo[1], hi[1], size + 1))

    def cells(self, points: np.ndarray) -> np.ndarray:
        """Cell index 0..size²-1 of each point (row-major from the lowest y), -1 outside the box."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        col = np.clip(np.searchsorted(self.x_edges, points[:, 0], side="right") - 1, 0, self.size - 1)
        row = np.clip(np.searchsorted(self.y_edges, points[:, 1], side="right") - 1, 0, self.size - 1)
        inside = ((points[:, 0] >= self.x_edges[0]) & (points[:, 0] <= self.x_edges[-1])
                  & (points[:, 1] >= self.y_edges[0]) & (points[:, 1] <= self.y_edges[-1]))
        return np.where(inside, row * self.size + col, -1)


@dataclass
class CellStats:
    cell: int  # 1-based
    row: int
    col: int
    n_real: int
    n_fake: int
    local_fid: Optional[float]


@dataclass
class GridResult:
    """Per generated set: its cells and the two summaries."""

    cells: list[CellStats] = field(default_factory=list)
    cells_covered: float = 0.0
    local_fid_mean: Optional[float] = None

    def as_dict(self) -> dict:
        return {"cells_covered": self.cells_covered, "local_fid_mean": self.local_fid_mean,
                "cells": [vars(c).copy() for c in self.cells]}


def grid_analysis(grid: Grid, real_points: np.ndarray, real_features: np.ndarray, fake_points: np.ndarray,
                  fake_features: np.ndarray, min_count: int = MIN_COUNT) -> GridResult:
    """Counts, local FID and coverage of one generated set in the grid over the real points."""
    real_cells, fake_cells = grid.cells(real_points), grid.cells(fake_points)
    result = GridResult()
    with_real = covered = 0
    for index in range(grid.size * grid.size):
        in_real, in_fake = real_cells == index, fake_cells == index
        n_real, n_fake = int(in_real.sum()), int(in_fake.sum())
        local = None
        if n_real >= min_count and n_fake >= min_count:
            local = fid(real_features[in_real], fake_features[in_fake])
        if n_real:
            with_real += 1
            covered += n_fake > 0
        result.cells.append(CellStats(index + 1, index // grid.size, index % grid.size, n_real, n_fake, local))
    result.cells_covered = covered / with_real if with_real else 0.0
    values = [c.local_fid for c in result.cells if c.local_fid is not None]
    result.local_fid_mean = float(np.mean(values)) if values else None
    return result


def coverage_analysis(real_features: np.ndarray, fakes: Mapping[str, np.ndarray], grid_size: int = GRID,
                      min_count: int = MIN_COUNT, max_per_set: int = MAX_PER_SET, seed: int = 0
                      ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], Grid, dict[str, GridResult]]:
    """Joint t-SNE and grid analysis.

    Returns (indices of the masks embedded per set, their 2-D points per set, the grid, the grid result
    per generated set). The real set is under the key ``""``.
    """
    sets = {"": np.asarray(real_features), **{k: np.asarray(v) for k, v in fakes.items()}}
    chosen = {name: subsample(len(f), max_per_set, seed + i) for i, (name, f) in enumerate(sets.items())}
    stacked = np.concatenate([sets[name][idx] for name, idx in chosen.items()])
    embedding = tsne_embedding(stacked, seed)
    points: dict[str, np.ndarray] = {}
    start = 0
    for name, idx in chosen.items():
        points[name] = embedding[start:start + len(idx)]
        start += len(idx)
    grid = Grid.over(points[""], grid_size)
    real_sub = sets[""][chosen[""]]
    results = {name: grid_analysis(grid, points[""], real_sub, points[name], sets[name][chosen[name]], min_count)
               for name in fakes}
    return chosen, points, grid, results
