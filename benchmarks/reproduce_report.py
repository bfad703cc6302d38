"""The study's tables beside the paper's, verdicts per claim, and its figures (used by ``reproduce.py``).

Verdicts are decided by rule, not by hand, so a rerun after a model change says the same thing the same
way: "A beats B" on a figure **holds** when A's mean over seeds is better than B's by more than the two
standard deviations added (the seeds vary generation, not training, so this is a lower bound on the
spread), **does not hold** when B is better by that much, and otherwise **cannot be told** at this budget.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

#: PriorPath Table 2 (KS, KL, FID) by dataset, copied from the paper.
PAPER_TABLE2 = {
    "DCGAN": {"PRAD": (0.112, 6.163, 554.699), "SKCM": (0.251, 82.569, 495.516),
              "LUSC": (0.214, 51.578, 448.568), "NSCLC IHC": (0.086, 0.904, 424.950)},
    "DEPAS": {"PRAD": (0.309, 261.584, 198.704), "SKCM": (0.314, 234.171, 138.604),
              "LUSC": (0.282, 260.163, 437.812), "NSCLC IHC": (0.264, 185.724, 138.629)},
    "PriorPath": {"PRAD": (0.056, 0.309, 71.246), "SKCM": (0.074, 0.355, 61.892),
                  "LUSC": (0.137, 1.772, 60.782), "NSCLC IHC": (0.112, 1.279, 103.348)},
}
PAPER_PIX2PIX_OVER_CYCLEGAN = {"H&E": 1.316, "IHC": 1.378}  # §3.1: FID of CycleGAN / FID of pix2pix
OURS = {"DCGAN": "dcgan", "DEPAS": "depas", "PriorPath": "pix2pix"}

Summary = dict[str, dict[str, tuple]]  # name -> figure -> (mean, sd[, seeds])


def _range(method: str, column: int) -> str:
    values = [v[column] for v in PAPER_TABLE2[method].values()]
    digits = 3 if column < 2 else 1
    return f"{min(values):.{digits}f}–{max(values):.{digits}f}"


def beside_paper(summary: Summary) -> str:
    """Paper Table 2 (range over its four datasets) beside our mean ± sd, per method and figure."""
    lines = ["| method | paper KS | ours KS | paper KL | ours KL | paper FID | ours FID |", "|---|---|---|---|---|---|---|"]
    for method, ours in OURS.items():
        cells = [method]
        for column, key, digits in ((0, "ks", 3), (1, "kl", 3), (2, "fid", 1)):
            cells.append(_range(method, column))
            figure = summary.get(ours, {}).get(key)
            cells.append(_cell(figure, digits))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare(summary: Summary, a: str, b: str, key: str, higher_is_better: bool = False) -> Optional[str]:
    """'holds' / 'does not hold' / 'cannot be told' for "a beats b on key"; None when either is missing."""
    if key not in summary.get(a, {}) or key not in summary.get(b, {}):
        return None
    (ma, sa), (mb, sb) = summary[a][key][:2], summary[b][key][:2]
    gain = (ma - mb) if higher_is_better else (mb - ma)
    if gain > sa + sb:
        return "holds"
    if -gain > sa + sb:
        return "does not hold"
    return "cannot be told"


def _cell(figure: Optional[tuple], digits: int) -> str:
    if not figure:
        return "—"
    if len(figure) > 2 and figure[2] == 1:
        return f"{figure[0]:.{digits}f} (1 seed)"
    return f"{figure[0]:.{digits}f} ± {figure[1]:.{digits}f}"


def _figure(summary: Summary, name: str, key: str) -> str:
    figure = summary[name][key]
    if len(figure) > 2 and figure[2] == 1:
        return f"{name} {figure[0]:.3g} (1 seed: its spread unknown, taken as 0)"
    return f"{name} {figure[0]:.3g} ± {figure[1]:.2g}"


CLAIMS = (
    ("PriorPath (pix2pix) beats DCGAN on FID", "pix2pix", "dcgan", "fid", False),
    ("PriorPath (pix2pix) beats DEPAS on FID", "pix2pix", "depas", "fid", False),
    ("PriorPath beats DCGAN on KS (tissue fraction)", "pix2pix", "dcgan", "ks", False),
    ("PriorPath beats DEPAS on KS (tissue fraction)", "pix2pix", "depas", "ks", False),
    ("PriorPath beats DCGAN on KL (tissue fraction)", "pix2pix", "dcgan", "kl", False),
    ("PriorPath beats DEPAS on KL (tissue fraction)", "pix2pix", "depas", "kl", False),
    ("pix2pix beats CycleGAN on FID (paper: 1.32x)", "pix2pix", "cyclegan", "fid", False),
    ("PriorPath covers more t-SNE grid cells than DEPAS (Fig. 3)", "pix2pix", "depas", "cells_covered", True),
    ("PriorPath has higher coverage (PRDC) than DEPAS", "pix2pix", "depas", "coverage", True),
    ("our analogy beats pix2pix on FID", "analogy", "pix2pix", "fid", False),
    ("pix2pix beats the coarse masks as they are on FID", "pix2pix", "coarse masks as they are", "fid", False),
)


def verdicts(summary: Summary) -> list[tuple[str, str, str]]:
    """(claim, verdict, evidence) for every claim whose sets were run."""
    out = []
    for claim, a, b, key, higher in CLAIMS:
        verdict = compare(summary, a, b, key, higher)
        if verdict is not None:
            out.append((claim, verdict, f"{_figure(summary, a, key)} vs {_figure(summary, b, key)}"))
    if "fid" in summary.get("pix2pix", {}) and "fid" in summary.get("cyclegan", {}):
        ratio = summary["cyclegan"]["fid"][0] / summary["pix2pix"]["fid"][0]
        out.append(("CycleGAN FID / pix2pix FID (paper 1.316 H&E, 1.378 IHC)", f"{ratio:.2f}x", ""))
    return out


def verdict_table(rows: list[tuple[str, str, str]]) -> str:
    lines = ["| claim | verdict | evidence (mean ± sd over seeds) |", "|---|---|---|"]
    lines += [f"| {c} | **{v}** | {e} |" for c, v, e in rows]
    return "\n".join(lines)


def montage(held: Path, sets: dict[str, Path], out: Path, n: int = 4, seed: int = 0, scale: float = 0.5) -> None:
    """Rows of held-out examples: coarse | real fine | each conditional model's fine; noise models' random
    samples fill their columns (they see no coarse mask). Written as a JPEG with a label strip on top."""
    coarse = sorted((held / "coarse").glob("*.png"))
    pick = [coarse[i] for i in np.random.default_rng(seed).choice(len(coarse), min(n, len(coarse)), replace=False)]
    columns = [("coarse (input)", held / "coarse"), ("real fine", held / "fine")] + list(sets.items())
    h, w = cv2.imread(str(pick[0]), cv2.IMREAD_GRAYSCALE).shape
    th, tw = int(h * scale), int(w * scale)
    gap = 6
    rows = []
    for r, path in enumerate(pick):
        cells = []
        for _, folder in columns:
            file = folder / path.name
            if not file.is_file():  # a noise model: its r-th sample
                files = sorted(folder.glob("*.png"))
                file = files[r % len(files)]
            img = cv2.resize(cv2.imread(str(file), cv2.IMREAD_GRAYSCALE), (tw, th), interpolation=cv2.INTER_AREA)
            cells += [img, np.full((th, gap), 128, np.uint8)]
        rows += [np.hstack(cells[:-1]), np.full((gap, len(columns) * (tw + gap) - gap), 128, np.uint8)]
    grid = np.vstack(rows[:-1])
    strip = np.full((28, grid.shape[1]), 255, np.uint8)
    for c, (name, _) in enumerate(columns):
        cv2.putText(strip, name, (c * (tw + gap) + 4, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 0, 1, cv2.LINE_AA)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.vstack([strip, grid]), [cv2.IMWRITE_JPEG_QUALITY, 90])


def copy_tsne(eval_dir: Path, out: Path) -> bool:
    """The first seed's t-SNE plot, for the docs beside the paper's Fig. 3."""
    src = eval_dir / "tsne.png"
    if not src.is_file():
        return False
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, out)
    return True
