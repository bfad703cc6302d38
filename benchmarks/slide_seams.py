"""Do tile borders show in a generated slide? Lines and texture direction at borders against tile interiors.

    python benchmarks/slide_seams.py [--sketch FILE] [--scale 4] [--seeds 0,1,2] [--results FILE]

The same slide (the default models, a bundled sketch) is generated two ways, in one run:

- ``straight``: tiles pasted as they come (no cut): the baseline;
- ``cut``: tiles meet along minimum-error cuts (what ``priorpath generate --slide`` does).

Two figures, each at the borders and, for comparison, at lines through the tile centres (where there is no
border), so 1.0x means "a border looks like any other line":

- **line step**: the mean absolute luma step between neighbouring pixel lines, averaged over the lines of
  the overlap strip (where a seam can be) -- the worst such line, in standard deviations of interior lines;
- **direction jump**: the angle between the dominant texture direction (structure tensor) of the 128 px
  patches on either side of the line, over tissue patches, in degrees.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TILE, OVERLAP, PATCH = 512, 64, 128


def direction(patch: np.ndarray) -> float:
    gx = cv2.Sobel(patch, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(patch, cv2.CV_32F, 0, 1, ksize=3)
    jxx, jyy, jxy = (gx * gx).mean(), (gy * gy).mean(), (gx * gy).mean()
    return 0.5 * np.arctan2(2 * jxy, jxx - jyy)


def direction_jumps(grey: np.ndarray, tissue: np.ndarray, lines: list[int]) -> list[float]:
    """Angle (degrees) between the patches left and right of each vertical line, down the image."""
    jumps = []
    for x in lines:
        for y in range(0, grey.shape[0] - PATCH + 1, PATCH):
            a = (slice(y, y + PATCH), slice(x - PATCH - 16, x - 16))
            b = (slice(y, y + PATCH), slice(x + 16, x + PATCH + 16))
            if a[1].start < 0 or b[1].stop > grey.shape[1] or tissue[a].mean() < 0.8 or tissue[b].mean() < 0.8:
                continue
            d = abs(direction(grey[a]) - direction(grey[b])) % np.pi
            jumps.append(np.degrees(min(d, np.pi - d)))
    return jumps


def line_excess(grey: np.ndarray, borders: list[int], centres: list[int]) -> float:
    """Worst line step within the overlap strips before each border, in SDs above lines around tile centres."""
    step = np.abs(np.diff(grey, axis=1)).mean(0)  # step[i]: between columns i and i+1
    zone = np.concatenate([step[max(0, b - OVERLAP - 1): b] for b in borders])
    inner = np.concatenate([step[c - OVERLAP: c + OVERLAP] for c in centres])
    return float((zone.max() - inner.mean()) / inner.std())


def measure(rgb: np.ndarray) -> dict:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    tissue = grey < 200
    out = {"direction_border": [], "direction_inner": [], "line_excess": []}
    for g, t in ((grey, tissue), (grey.T.copy(), tissue.T.copy())):  # vertical, then horizontal borders
        borders = list(range(TILE, g.shape[1], TILE))
        centres = [c for c in range(TILE // 2, g.shape[1] - OVERLAP, TILE) if c - OVERLAP >= 0]
        if not borders:
            continue
        out["direction_border"] += direction_jumps(g, t, [b - OVERLAP // 2 for b in borders])
        out["direction_inner"] += direction_jumps(g, t, centres)
        out["line_excess"].append(line_excess(g, borders, centres))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sketch", type=Path, default=REPO / "resources" / "sample" / "sketches" / "sketch_04.png")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "slide_seams.md")
    args = ap.parse_args()
    import openslide

    from trainer.generate import read_coarse
    from trainer.inference import Engine
    from trainer.slide import generate_slide

    engine = Engine(device="cpu")
    sketch = read_coarse(args.sketch)
    rows = {}
    for name, seams in (("straight", False), ("cut", True)):
        figures = {"direction_border": [], "direction_inner": [], "line_excess": []}
        for seed in (int(s) for s in args.seeds.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                result = generate_slide(sketch, args.scale, Path(tmp) / "s.tif", engine, seed=seed, overlap=OVERLAP,
                                        seams=seams, lossless=True)
                s = openslide.OpenSlide(str(result.rgb))
                rgb = np.asarray(s.read_region((0, 0), 0, s.dimensions).convert("RGB"))
                s.close()
            for key, values in measure(rgb).items():
                figures[key] += values
        rows[name] = figures
        print(name, {k: round(float(np.mean(v)), 2) for k, v in figures.items()}, flush=True)
    lines = ["| tiles | direction jump at borders (°) | at tile centres (°) | border ÷ centre | worst overlap line "
             "(SDs above interior lines) |", "|---|---|---|---|---|"]
    for name, f in rows.items():
        b, i = np.mean(f["direction_border"]), np.mean(f["direction_inner"])
        lines.append(f"| {name} | {b:.1f} (n={len(f['direction_border'])}) | {i:.1f} (n={len(f['direction_inner'])}) "
                     f"| {b / i:.2f}x | {np.max(f['line_excess']):.1f} |")
    h, w = sketch.shape[0] * args.scale, sketch.shape[1] * args.scale
    text = "\n".join([
        "# Tile borders in generated slides",
        "",
        f"Generated by `python benchmarks/slide_seams.py` on {datetime.date.today().isoformat()} "
        f"({platform.machine()}, {os.cpu_count()} CPU cores): `{args.sketch.name}` at {args.scale}x ({w}x{h} px), "
        f"{TILE} px tiles with {OVERLAP} px overlap, default models, seeds {args.seeds}, lossless. Direction jump: "
        f"the angle between the dominant texture directions of the {PATCH} px tissue patches either side of a line "
        "(0° = the texture runs straight on; random directions average 45°).",
        "",
        *lines,
        "",
    ])
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
