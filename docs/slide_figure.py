"""A synthetic whole slide as a viewer shows it: read back with OpenSlide at three levels.

    python docs/slide_figure.py [--sketch FILE] [--scale 16] [--out docs/slide_in_openslide.jpg]

Generates a slide from a bundled sketch with the default models (``priorpath generate --slide``), then reads
it with OpenSlide as a slide viewer does: the overview at the lowest level, a region at level 1 and a
smaller one at level 0 (full resolution), each 1024 px wide, outlined where the next view comes from.
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

from trainer.generate import read_coarse  # noqa: E402
from trainer.inference import Engine  # noqa: E402
from trainer.slide import generate_slide  # noqa: E402


def view(slide, level: int, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """Level-``level`` pixels of the level-0 rectangle (x0, y0, w, h), as OpenSlide reads them (RGB)."""
    d = slide.level_downsamples[level]
    size = (int(round(w / d)), int(round(h / d)))
    return np.asarray(slide.read_region((x0, y0), level, size).convert("RGB"))


def main() -> None:
    import openslide

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sketch", type=Path, default=REPO / "resources" / "sample" / "sketches" / "sketch_04.png")
    ap.add_argument("--scale", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "slide_in_openslide.jpg")
    args = ap.parse_args()
    sketch = read_coarse(args.sketch)
    with tempfile.TemporaryDirectory() as tmp:
        result = generate_slide(sketch, args.scale, Path(tmp) / "slide.tif", Engine(device="cpu"), seed=args.seed,
                                mpp=0.5)
        slide = openslide.OpenSlide(str(result.rgb))
        W, H = slide.dimensions
        print(f"{result.plan.describe()} in {result.seconds:.0f} s; levels {slide.level_dimensions}")
        top = slide.level_count - 1
        overview = view(slide, top, 0, 0, W, H)
        # level 1: a quarter of the slide's width around the centre; level 0: 1024 px inside that
        w1, h1 = W // 4, W // 8
        x1, y1 = W // 2 - w1 // 2, H // 2 - h1 // 2
        x0, y0 = x1 + w1 // 2 - 512, y1 + h1 // 2 - 256
        level1 = view(slide, 1, x1, y1, w1, h1)
        level0 = view(slide, 0, x0, y0, 1024, 512)
        panels = []
        for image, label, box, d in (
                (overview, f"level {top} (overview, 1/{slide.level_downsamples[top]:.0f})", (x1, y1, w1, h1),
                 slide.level_downsamples[top]),
                (level1, "level 1 (1/2)", (x0 - x1, y0 - y1, 1024, 512), slide.level_downsamples[1]),
                (level0, "level 0 (full resolution)", None, 1.0)):
            image = np.ascontiguousarray(image[..., ::-1])
            if box is not None:
                bx, by, bw, bh = (int(round(v / d)) for v in box)
                cv2.rectangle(image, (bx, by), (bx + bw, by + bh), (40, 180, 40), 3)
            scale = 1024 / image.shape[1]
            image = cv2.resize(image, (1024, int(round(image.shape[0] * scale))), interpolation=cv2.INTER_AREA)
            cv2.putText(image, label, (12, 34), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (20, 20, 20), 4, cv2.LINE_AA)
            cv2.putText(image, label, (12, 34), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2, cv2.LINE_AA)
            panels.append(image)
            panels.append(np.full((8, 1024, 3), 255, np.uint8))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.out), np.vstack(panels[:-1]), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
