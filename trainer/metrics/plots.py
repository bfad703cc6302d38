"""The report's figures as PNG bytes: t-SNE map, per-cell local FID (Fig. 3b), statistic histograms.

matplotlib is driven through ``Figure`` and the Agg canvas directly, never ``pyplot``: no global state,
no GUI backend (so no Qt in ``trainer``), safe from worker threads.
"""
from __future__ import annotations

import io
from typing import Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .coverage import Grid, GridResult
from .distributions import BIN_EDGES, BOUNDARY, COMPONENTS, TISSUE, histogram

REAL_COLOUR = "black"
GRID_COLOUR = "#e6b800"  # the paper draws its grid in yellow
_LABELS = {TISSUE: "tissue fraction", BOUNDARY: "boundary density", COMPONENTS: "connected components"}


def _colours(names: list[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return buf.getvalue()


def tsne_png(points: Mapping[str, np.ndarray], grid: Grid, real_label: str = "real") -> bytes:
    """Real masks in black, each generated set in colour, the grid over the real extent (Fig. 3a)."""
    fakes = [n for n in points if n]
    colours = _colours(fakes)
    fig = Figure(figsize=(7.5, 6.5))
    ax = fig.add_subplot()
    for name in fakes:
        ax.scatter(*points[name].T, s=8, color=colours[name], alpha=0.6, label=f"{name} (n={len(points[name])})")
    # Real masks as rings on top, so generated masks at the same place stay visible.
    ax.scatter(*points[""].T, s=14, facecolors="none", edgecolors=REAL_COLOUR, linewidths=0.8,
               label=f"{real_label} (n={len(points[''])})", zorder=3)
    for x in grid.x_edges:
        ax.plot([x, x], [grid.y_edges[0], grid.y_edges[-1]], color=GRID_COLOUR, lw=1.2, zorder=4)
    for y in grid.y_edges:
        ax.plot([grid.x_edges[0], grid.x_edges[-1]], [y, y], color=GRID_COLOUR, lw=1.2, zorder=4)
    for i in range(grid.size * grid.size):
        r, c = divmod(i, grid.size)
        ax.text((grid.x_edges[c] + grid.x_edges[c + 1]) / 2, (grid.y_edges[r] + grid.y_edges[r + 1]) / 2,
                str(i + 1), ha="center", va="center", fontsize=11, color=GRID_COLOUR, weight="bold", zorder=5)
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.set_title("t-SNE of Inception features")
    ax.legend(loc="best", fontsize=8, markerscale=2)
    return _png(fig)


def grid_png(results: Mapping[str, GridResult], global_fid: Mapping[str, float], min_count: int) -> bytes:
    """Local FID per cell with each method's global FID as a line (Fig. 3b), and the counts per cell."""
    names = list(results)
    colours = _colours(names)
    n_cells = len(next(iter(results.values())).cells) if results else 0
    cells = np.arange(1, n_cells + 1)
    fig = Figure(figsize=(8, 7))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    for name in names:
        local = [c.local_fid if c.local_fid is not None else np.nan for c in results[name].cells]
        top.plot(cells, local, "o-", color=colours[name], label=f"{name} (local)")
        top.axhline(global_fid[name], color=colours[name], ls="--", lw=1, label=f"{name} (all masks)")
    if not any(c.local_fid is not None for r in results.values() for c in r.cells):
        top.text(0.5, 0.75, f"no cell holds >= {min_count} real and generated masks", transform=top.transAxes,
                 ha="center", va="center", color="grey")
    top.set_ylabel("FID to the real masks")
    top.set_title(f"Local FID per grid cell (where both sets have >= {min_count} masks)")
    top.legend(fontsize=8)
    width = 0.8 / (len(names) + 1)
    real_counts = [c.n_real for c in next(iter(results.values())).cells] if results else []
    bottom.bar(cells - 0.4 + width / 2, real_counts, width, color=REAL_COLOUR, label="real")
    for i, name in enumerate(names, start=1):
        bottom.bar(cells - 0.4 + width / 2 + i * width, [c.n_fake for c in results[name].cells], width,
                   color=colours[name], label=name)
    bottom.set_xticks(cells)
    bottom.set_xlabel("grid cell (see tsne.png)")
    bottom.set_ylabel("masks in cell")
    bottom.legend(fontsize=8)
    return _png(fig)


def histograms_png(stats: Mapping[str, Mapping[str, np.ndarray]], real_label: str = "real") -> bytes:
    """Normalised histograms of each per-mask statistic on the bins KL uses; real in black."""
    fakes = [n for n in stats if n]
    colours = _colours(fakes)
    fig = Figure(figsize=(14, 4))
    axes = fig.subplots(1, 3)
    for ax, stat in zip(axes, (TISSUE, BOUNDARY, COMPONENTS)):
        edges = BIN_EDGES[stat]
        positions = np.arange(len(edges))  # equal-width drawing; tick labels give the real edges
        for name in ["", *fakes]:
            counts = histogram(stats[name][stat], edges)
            share = counts / max(counts.sum(), 1)
            label = real_label if not name else name
            ax.stairs(share, positions, color=REAL_COLOUR if not name else colours[name], lw=3 if not name else 1.5,
                      label=label)
        step = max(1, len(edges) // 5)
        ax.set_xticks(positions[::step])
        ax.set_xticklabels([f"{e:g}" for e in edges[::step]], fontsize=8)
        ax.set_xlabel(_LABELS[stat] + (" (log2 bins)" if stat == COMPONENTS else ""))
        ax.set_ylabel("share of masks")
    axes[0].legend(fontsize=8)
    fig.suptitle("Per-mask statistics (bins as used for KL)")
    return _png(fig)


def class_histograms_png(names: list[str], fractions: Mapping[str, np.ndarray], real_label: str = "real") -> bytes:
    """Per class, normalised histograms of the per-map class fraction on the bins KL uses; real in black.

    ``fractions``: set name ("" for the real set) -> N x classes array."""
    edges = BIN_EDGES[TISSUE]  # class fractions share the tissue fraction's bins (labelsets)
    fakes = [n for n in fractions if n]
    colours = _colours(fakes)
    fig = Figure(figsize=(4.7 * len(names), 4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    for c, (ax, name) in enumerate(zip(axes, names)):
        for set_name in ["", *fakes]:
            counts = histogram(fractions[set_name][:, c], edges)
            ax.stairs(counts / max(counts.sum(), 1), edges, lw=3 if not set_name else 1.5,
                      color=REAL_COLOUR if not set_name else colours[set_name], label=set_name or real_label)
        ax.set_xlabel(f"{name} fraction")
        ax.set_ylabel("share of label maps")
    axes[0].legend(fontsize=8)
    fig.suptitle("Per-map class fractions (bins as used for KL)")
    return _png(fig)
