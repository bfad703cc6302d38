"""Throughput of `priorpath prepare` on every folder of the real image collection.

For each folder of ../shared/data (or --data): patches kept/total at 512x1024, seconds, and the same
work done by a plain baseline in the same run -- Pillow decodes each image whole, then one thread cuts,
thresholds, runs OpenCV morphology and saves PNGs with Pillow -- so the speed is reported as a ratio
measured on this machine, not as an absolute claim.

    python benchmarks/prepare_collection.py [--data ../shared/data] [--patch 512x1024]
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer.data import masks  # noqa: E402
from trainer.data.prepare import PrepareSettings, parse_size, prepare  # noqa: E402
from trainer.errors import PriorPathError  # noqa: E402


def stains(data: Path) -> dict[str, str]:
    with open(data / "stats_per_image.csv", newline="") as fh:
        return {f"{r['folder']}/{r['file']}": ("ihc" if r["stain"] == "IHC" else "he") for r in csv.DictReader(fh)}


def baseline(files: list[Path], out: Path, stain: str, patch: tuple[int, int]) -> int:
    """The straightforward single-threaded version of the same rules."""
    ph, pw = patch
    thr = masks.STAIN_THRESHOLDS[stain]
    kept = 0
    for f in files:
        rgb = np.asarray(Image.open(f).convert("RGB"))
        for y in range(0, rgb.shape[0] - ph + 1, ph):
            for x in range(0, rgb.shape[1] - pw + 1, pw):
                tile = rgb[y : y + ph, x : x + pw]
                grey = np.asarray(Image.fromarray(tile).convert("L"))
                fine = np.where(grey > thr, 0, 255).astype(np.uint8)
                if (fine == 0).mean() > 0.85:
                    continue
                coarse = masks.coarse_mask(fine)
                stem = f"{f.stem}_x{x}_y{y}"
                Image.fromarray(tile).save(out / f"{stem}_rgb.png")
                Image.fromarray(fine).save(out / f"{stem}_fine.png")
                Image.fromarray(coarse).save(out / f"{stem}_coarse.png")
                kept += 1
    return kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--patch", default="512x1024")
    args = ap.parse_args()
    patch = parse_size(args.patch)
    stain_of = stains(args.data)
    print("| folder | stain | images | kept/total | ours s | baseline s | speed-up |")
    print("|---|---|---|---|---|---|---|")
    totals = [0, 0, 0.0, 0.0]
    for folder in sorted(p for p in args.data.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        for stain in ("he", "ihc"):
            group = [f for f in files if stain_of.get(f"{folder.name}/{f.name}") == stain]
            if not group:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                tmp = Path(tmp)
                t0 = time.perf_counter()
                try:
                    result = prepare(group, tmp / "ours", PrepareSettings(stain=stain, patch=patch))
                    kept, total = result.kept, result.kept + result.dropped
                except PriorPathError:  # every image is smaller than a patch
                    kept, total = 0, 0
                ours = time.perf_counter() - t0
                (tmp / "base").mkdir()
                t0 = time.perf_counter()
                base_kept = baseline(group, tmp / "base", stain, patch)
                base = time.perf_counter() - t0
            assert base_kept == kept, f"{folder.name}: baseline kept {base_kept}, prepare kept {kept}"
            totals = [totals[0] + kept, totals[1] + total, totals[2] + ours, totals[3] + base]
            ratio = f"{base / ours:.2f}x" if total else "— (no image holds a patch)"
            print(f"| {folder.name} | {stain} | {len(group)} | {kept}/{total} | {ours:.2f} | {base:.2f} | {ratio} |")
    print(f"| **total** | | | {totals[0]}/{totals[1]} | {totals[2]:.2f} | {totals[3]:.2f} | "
          f"{totals[3] / totals[2]:.2f}x |")


if __name__ == "__main__":
    main()
