"""The 3x3 t-SNE grid: cell assignment, per-cell counts, local FID and the share of cells covered."""
from __future__ import annotations

import numpy as np
import pytest

from trainer.metrics.coverage import Grid, coverage_analysis, grid_analysis, subsample, tsne_embedding
from trainer.metrics.frechet import fid


def test_cells_row_major_from_lowest_y():
    grid = Grid.over(np.array([[0.0, 0.0], [3.0, 3.0]]))
    points = np.array([[0.5, 0.5], [2.5, 0.5], [0.5, 2.5], [1.5, 1.5], [3.0, 3.0], [0.0, 0.0], [1.0, 0.5],
                       [3.1, 1.0], [1.0, -0.1]])
    # (1.0, 0.5) sits on the first inner edge and belongs to the cell on its right
    assert grid.cells(points).tolist() == [0, 2, 6, 4, 8, 0, 1, -1, -1]


def test_grid_counts_local_fid_and_coverage():
    grid = Grid.over(np.array([[0.0, 0.0], [3.0, 3.0]]))
    rng = np.random.default_rng(0)
    centre = lambda cell: np.array([cell % 3 + 0.5, cell // 3 + 0.5])  # noqa: E731
    # real: 12 masks in cell 0, 12 in cell 4, 3 in cell 8; generated: 15 in cell 0, 2 in cell 8, 4 outside
    real_cells = [0] * 12 + [4] * 12 + [8] * 3
    fake_cells = [0] * 15 + [8] * 2
    real_pts = np.array([centre(c) for c in real_cells] + [[0.0, 0.0], [3.0, 3.0]])
    fake_pts = np.array([centre(c) for c in fake_cells] + [[5.0, 5.0]] * 4)
    real_cells += [0, 8]
    real_f, fake_f = rng.normal(size=(len(real_pts), 6)), rng.normal(size=(len(fake_pts), 6)) + 1.0
    result = grid_analysis(grid, real_pts, real_f, fake_pts, fake_f, min_count=10)
    assert [c.n_real for c in result.cells] == [13, 0, 0, 0, 12, 0, 0, 0, 4]
    assert [c.n_fake for c in result.cells] == [15, 0, 0, 0, 0, 0, 0, 0, 2]
    # local FID only where both sides have >= 10 masks, and it is the FID of exactly those masks
    assert [c.local_fid is not None for c in result.cells] == [True] + [False] * 8
    in0 = np.array(real_cells) == 0
    assert result.cells[0].local_fid == pytest.approx(fid(real_f[in0], fake_f[:15]))
    assert result.local_fid_mean == pytest.approx(result.cells[0].local_fid)
    assert result.cells_covered == pytest.approx(2 / 3)  # cells 0 and 8 of the three real cells
    assert (result.cells[4].row, result.cells[4].col, result.cells[4].cell) == (1, 1, 5)


def test_subsample_is_seeded_and_bounded():
    assert subsample(5, 10, 0).tolist() == [0, 1, 2, 3, 4]
    a, b = subsample(100, 10, 3), subsample(100, 10, 3)
    assert len(a) == 10 and a.tolist() == b.tolist() and len(set(a.tolist())) == 10


def test_tsne_keeps_separate_clusters_apart():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(size=(30, 64)), rng.normal(size=(30, 64)) + 6.0])
    emb = tsne_embedding(x, seed=0)
    assert emb.shape == (60, 2) and np.isfinite(emb).all()
    a, b = emb[:30].mean(axis=0), emb[30:].mean(axis=0)
    assert np.linalg.norm(a - b) > 3 * max(emb[:30].std(axis=0).max(), emb[30:].std(axis=0).max())


def test_a_collapsed_set_misses_cells_a_faithful_one_covers():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(4, 64)) * 8.0  # four well separated kinds of mask
    real = np.concatenate([c + rng.normal(size=(25, 64)) for c in centres])
    faithful = real + 0.01 * rng.normal(size=real.shape)
    collapsed = centres[0] + rng.normal(size=(100, 64))
    _, points, grid, results = coverage_analysis(real, {"faithful": faithful, "collapsed": collapsed}, seed=0)
    assert set(points) == {"", "faithful", "collapsed"} and len(points[""]) == 100
    assert results["faithful"].cells_covered == 1.0
    assert results["collapsed"].cells_covered < 0.7


def test_repeated_masks_share_one_point():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(size=(20, 16)), np.repeat(rng.normal(size=(1, 16)), 15, axis=0)])
    emb = tsne_embedding(x, seed=0)
    assert emb.shape == (35, 2) and np.ptp(emb[20:], axis=0).max() == 0.0
    assert np.ptp(emb[:20], axis=0).min() > 0
    assert tsne_embedding(np.ones((5, 3))).tolist() == [[0.0, 0.0]] * 5
