"""The figure in the README: hand-drawn sketches -> fine masks -> H&E tiles, beside real tiles, full resolution.

    python docs/rgb_figure.py [--out docs/rgb_from_sketches.jpg] [--style IMAGE_OR_DIR ...]

Rows: the bundled hand-drawn sketches (resources/sample/sketches). Columns: sketch | fine mask (default mask
model, seed 0) | RGB with the default RGB model, seeds 0 and 1 | RGB with ``--style`` (default: two tiles of
a held-out osteosarcoma slide in ../shared/data, which the default library does not hold) | a real H&E patch of
the bundled sample for comparison. 256x512 each, no scaling.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer.data.prepare import PrepareSettings, prepare  # noqa: E402
from trainer.generate import read_coarse  # noqa: E402
from trainer.inference import Engine  # noqa: E402

#: default --style: two tiles of an osteosarcoma slide (Case-48, specimen C20) that no shipped model has seen
STYLE = [REPO.parent / "shared" / "data" / "osteosarcoma_tcia_ut" / name for name in
         ("Viable___Case-48-P5-C20-15162-19423_103.jpg", "Viable___Case-48-P5-C20-33672-6381_119.jpg")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "rgb_from_sketches.jpg")
    ap.add_argument("--style", nargs="+", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        style = args.style or STYLE
        plain = Engine(device="cpu")
        styled = Engine(device="cpu", style=style)
        real_dir = Path(tmp) / "real"
        prepare([REPO / "resources" / "sample" / "he"], real_dir, PrepareSettings(stain="he", patch=(256, 512)))
        reals = sorted((real_dir / "rgb").glob("*.png"))
        rows = []
        sketches = sorted((REPO / "resources" / "sample" / "sketches").glob("*.png"))
        for k, path in enumerate(sketches):
            coarse = read_coarse(path)
            fine = plain.fine(coarse, 0)
            cells = [coarse, fine, plain.rgb(fine, 0), plain.rgb(fine, 1), styled.rgb(fine, 0),
                     cv2.cvtColor(cv2.imread(str(reals[k * len(reals) // len(sketches)])), cv2.COLOR_BGR2RGB)]
            cells = [np.repeat(c[..., None], 3, 2) if c.ndim == 2 else c for c in cells]
            gutter = np.full((cells[0].shape[0], 4, 3), 255, np.uint8)
            rows.append(np.concatenate([x for c in cells for x in (c, gutter)][:-1], 1))
    sheet = np.concatenate([x for r in rows for x in (r, np.full((4, r.shape[1], 3), 255, np.uint8))][:-1], 0)
    cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    print(f"{args.out}: {len(rows)} rows; columns: sketch, fine, RGB seed 0, seed 1, --style, a real patch")


if __name__ == "__main__":
    main()
