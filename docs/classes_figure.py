"""docs/classes_generated.jpg: coarse he3 label maps -> labelled H&E tiles by both sketch paths, with the he3 models.

Rows: three held-out coarse label maps (osteosarcoma patients Case-3 and Case-48, never in either model) and
one drawn here in code. Columns: coarse label map | the tile of the default (joint) path | its fine label map
(the he3 rule read from that tile) | the staged path's fine label map (mask model) | the staged path's tile
(made to obey it) | the real tile the coarse map came from (for the drawn map: a real held-out tile of a
cellular region). Each row's caption gives the sketch agreement (per-class IoU of the coarse rule on the
fine map against the sketch).

    python docs/classes_figure.py --heldout WORK/heldout [--out docs/classes_generated.jpg]

WORK/heldout comes from ``benchmarks/class_generation.py data``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer.data.classes import HE3, read_label_png  # noqa: E402
from trainer.data.labels import coarse_labels  # noqa: E402
from trainer.data.prepare import read_manifest  # noqa: E402
from trainer.inference import Engine, default_model_path  # noqa: E402

ROWS = (
    "Viable___Case-48-P5-C14-54171-23668_115_x0_y256",
    "Non-Viable-Tumor___Case-3-A12-16067-9053",
    "Non-Tumor___Case-3-A18-9485-39729_118",
)
SEED = 3


def drawn_map(size=(256, 512)) -> np.ndarray:
    """A sketch as a user would draw it: a band of stroma with a nuclei-dense nest, an air gap and an island."""
    labels = np.zeros(size, np.uint8)
    h, w = size
    band = np.array([[0, 40], [w, 10], [w, 200], [300, 230], [0, 190]], np.int32)
    cv2.fillPoly(labels, [band], 1)
    cv2.ellipse(labels, (170, 120), (90, 55), 15, 0, 360, 2, -1)
    cv2.ellipse(labels, (400, 110), (40, 25), -20, 0, 360, 0, -1)
    cv2.ellipse(labels, (420, 235), (60, 18), 0, 0, 360, 1, -1)
    cv2.ellipse(labels, (300, 150), (30, 20), 0, 0, 360, 2, -1)
    return labels


def caption(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    cv2.rectangle(out, (0, 0), (8 + 8 * len(text), 20), (255, 255, 255), -1)
    cv2.putText(out, text, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--heldout", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "classes_generated.jpg")
    args = parser.parse_args()
    engine = Engine(default_model_path("mask", "he3"), default_model_path("rgb", "he3"), device="cpu")
    stems = [r["stem"] for r in read_manifest(args.heldout)]
    chosen = [next(s for s in stems if s.startswith(prefix)) for prefix in ROWS]
    rows = []
    for k, stem in enumerate(chosen + ["drawn"]):
        if stem == "drawn":
            coarse = drawn_map()
            stem = chosen[0]  # a real tile of a cellular region beside it
            title = "drawn in code"
        else:
            coarse, _ = read_label_png(args.heldout / "coarse_labels" / f"{stem}.png")
            title = stem[:38]
        fine, joint = engine.sketch_labels(coarse, SEED + k)
        staged_fine = engine.fine_labels(coarse, SEED + k)
        staged = engine.rgb_labels(staged_fine, SEED + k, details=True)
        real = cv2.cvtColor(cv2.imread(str(args.heldout / "rgb" / f"{stem}.png")), cv2.COLOR_BGR2RGB)

        def agree(labels):
            back = coarse_labels(labels)
            return tuple(np.count_nonzero((back == c) & (coarse == c)) /
                         max(1, np.count_nonzero((back == c) | (coarse == c))) for c in range(3))

        panels = [caption(HE3.colourise(coarse), f"sketch: {title}"),
                  caption(joint.rgb, f"joint tile (default), {joint.group[:24]}"),
                  caption(HE3.colourise(fine), "its labels: sketch IoU %.2f/%.2f/%.2f" % agree(fine)),
                  caption(HE3.colourise(staged_fine), "staged fine map: IoU %.2f/%.2f/%.2f" % agree(staged_fine)),
                  caption(staged.rgb, "staged tile (nuclei painted)"),
                  caption(real, "real tile")]
        gutter = np.full((256, 4, 3), 255, np.uint8)
        rows.append(np.concatenate(sum(([p, gutter] for p in panels), [])[:-1], 1))
        print(title, "sketch IoU joint", np.round(agree(fine), 3), "staged", np.round(agree(staged_fine), 3))
    figure = np.concatenate(sum(([r, np.full((4, r.shape[1], 3), 255, np.uint8)] for r in rows), [])[:-1], 0)
    cv2.imwrite(str(args.out), cv2.cvtColor(figure, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"{args.out}: {figure.shape[1]}x{figure.shape[0]}")


if __name__ == "__main__":
    main()
