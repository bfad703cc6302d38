"""How much the he3 nuclei class depends on the colour deconvolution behind it.

For H&E slides of ../shared/data (256x512 grid tiles with at most 85% air, up to 40 per slide), the rule's
nuclei (``skimage.color.rgb2hed``) are compared, as Dice over the slide's tiles, with the same rule run on
the haematoxylin of three other deconvolutions, each thresholded by its own per-slide Otsu:

* ``own``: our Beer-Lambert OD (base 10, I0 = 256, +1) times the inverse of the Ruifrok-Johnston H/E/DAB
  matrix typed from the paper -- the same method written independently (an implementation check);
* ``residual``: Ruifrok-Johnston H and E with the cross product as third vector (the 2-stain form);
* ``macenko``: the slide's own Macenko stain matrix (trainer/stain.py's estimate).

    python benchmarks/labels_agreement.py [--data ../shared/data]   -> benchmarks/results/labels_agreement.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from skimage.filters import threshold_otsu

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer import stain  # noqa: E402
from trainer.data import labels as rule  # noqa: E402
from trainer.data.masks import luma  # noqa: E402
from trainer.data.prepare import grid_positions  # noqa: E402
from trainer.data.slides import open_source  # noqa: E402

SLIDES = ["osteosarcoma_tcia_ut/Viable___Case-4-C29-29639-16570_104.jpg",
          "osteosarcoma_tcia_ut/Non-Tumor___Case-3-A15-2939-11262_112.jpg",
          "openslide_os1_os2_qupath_crops/OS-1-detail.png",
          "histolab_fixture_tiles/high-nuclei-score-level0.png",
          "histolab_fixture_tiles/tcga-lung-rgb.png",
          "cptac_C3L-00601-26_dzi/C3L-00601-26_level13.jpg",
          "tcga_hnsc_frozen_TCGA-CR-7395/TCGA-CR-7395-01A-01-TS1.png",
          "anhir_cima_lung_lesion3/29-041-Izd2-w35-He-les3.jpg",
          "birl_rat_kidney_he_ihc/Rat_Kidney_HE.jpg"]
PATCH = (256, 512)
H, E, DAB = (np.array(v) / np.linalg.norm(v) for v in ([0.650, 0.704, 0.286], [0.072, 0.990, 0.105],
                                                        [0.268, 0.570, 0.776]))


def _inverse(third: np.ndarray) -> np.ndarray:
    return np.linalg.inv(np.stack([H, E, third / np.linalg.norm(third)]))


OWN, RESIDUAL = _inverse(DAB), _inverse(np.cross(H, E))


def beer_lambert(inverse: np.ndarray):
    def h(rgb: np.ndarray) -> np.ndarray:
        od = -np.log10((rgb.astype(np.float64) + 1.0) / 256.0)
        return (od.reshape(-1, 3) @ inverse)[:, 0].reshape(rgb.shape[:2])
    return h


def macenko(tiles: list[np.ndarray]):
    pixels = np.concatenate([stain._tissue(t, luma(t), 204) for t in tiles])
    stains, _ = stain._estimate(stain._od(pixels, 200_000))
    unmix = np.linalg.pinv(stains).T

    def h(rgb: np.ndarray) -> np.ndarray:
        return (stain._OD_LUT[rgb.reshape(-1, 3)].astype(np.float64) @ unmix)[:, 0].reshape(rgb.shape[:2])
    return h


def tiles_of(path: Path) -> list[np.ndarray]:
    with open_source(path) as reader:
        lv = reader.levels[0]
        positions = rule.sample_positions(grid_positions(lv.width, lv.height, PATCH, PATCH), PATCH,
                                          budget=40 * PATCH[0] * PATCH[1])
        tiles = [reader.read_region(x, y, PATCH[1], PATCH[0], 0) for x, y in positions]
    return [t for t in tiles if (luma(t) > 204).mean() <= 0.85]


def dice_against_rule(tiles, h_of) -> float:
    t_rule = rule.nuclei_threshold(tiles)
    hs = [h_of(t) for t in tiles]
    t_other = float(threshold_otsu(np.concatenate([rule.smoothed(h)[luma(t) <= 204] for h, t in zip(hs, tiles)])))
    inter = total = 0
    for tile, h in zip(tiles, hs):
        tissue = rule.tissue_mask(tile, 204)
        a, b = rule.nuclei_mask(tile, tissue, t_rule), rule.nuclei_mask(tile, tissue, t_other, h=h)
        inter, total = inter + int((a & b).sum()), total + int(a.sum() + b.sum())
    return 2 * inter / max(1, total)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "labels_agreement.md")
    args = ap.parse_args(argv)
    lines = ["| slide | tiles | rule threshold | Dice own | Dice residual | Dice macenko |",
             "|---|---|---|---|---|---|"]
    for name in SLIDES:
        if not (args.data / name).is_file():
            print(f"skipping {name}: not found")
            continue
        tiles = tiles_of(args.data / name)
        row = [dice_against_rule(tiles, f) for f in (beer_lambert(OWN), beer_lambert(RESIDUAL), macenko(tiles))]
        lines.append(f"| {name} | {len(tiles)} | {rule.nuclei_threshold(tiles):.4f} | "
                     + " | ".join(f"{d:.3f}" for d in row) + " |")
        print(lines[-1])
    args.out.write_text("# he3 nuclei: agreement with other colour deconvolutions\n\n"
                        "Written by `benchmarks/labels_agreement.py` (see its docstring).\n\n"
                        + "\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
