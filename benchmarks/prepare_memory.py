"""Peak memory of `priorpath prepare` on a large image, against decoding the same image whole.

Builds a large JPEG and a tiled pyramid TIFF (OpenSlide reads it as a whole-slide file) by repeating a
real section, then runs in separate processes, measuring each one's peak resident memory:
  * baseline: Pillow decodes the JPEG whole into a numpy array (what a naive pipeline does);
  * prepare on the JPEG (libvips: decoded lazily, spilled to a temporary file past its threshold);
  * prepare on the pyramid TIFF (OpenSlide: one region at a time).

    python benchmarks/prepare_memory.py [--side 20000] [--data ../shared/data]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BASELINE = """
import sys, numpy as np
from PIL import Image
Image.MAX_IMAGE_PIXELS = None
a = np.asarray(Image.open(sys.argv[1]).convert("RGB"))
print(a.shape)
"""


def peak_mib(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd`` in a fresh process; return (peak RSS MiB, seconds)."""
    wrapper = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
               "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], check=True, capture_output=True, text=True)
    mib, sec = out.stdout.split()
    return float(mib), float(sec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", type=int, default=20000, help="width and height of the large image in pixels")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = ap.parse_args()
    import pyvips

    section = next((args.data / "tcga_hnsc_frozen_TCGA-CR-7395").iterdir())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tile = pyvips.Image.new_from_file(str(section))
        big = tile.replicate(args.side // tile.width + 1, args.side // tile.height + 1).crop(0, 0, args.side, args.side)
        jpeg, tiff = tmp / "large.jpg", tmp / "large.tiff"
        big.jpegsave(str(jpeg), Q=90)
        big.tiffsave(str(tiff), tile=True, pyramid=True, compression="jpeg", Q=90, tile_width=256, tile_height=256)
        decoded = args.side * args.side * 3 / 2**20
        print(f"image: {args.side}x{args.side} RGB = {decoded:.0f} MiB decoded; "
              f"JPEG {jpeg.stat().st_size / 2**20:.0f} MiB, pyramid TIFF {tiff.stat().st_size / 2**20:.0f} MiB")
        base, base_s = peak_mib([sys.executable, "-c", BASELINE, str(jpeg)])
        print("| run | peak RSS MiB | ÷ baseline | seconds |\n|---|---|---|---|")
        print(f"| baseline: Pillow decodes the JPEG whole | {base:.0f} | 1.00 | {base_s:.1f} |")
        cli = [sys.executable, "-m", "trainer.cli", "prepare", "--stain", "he", "--no-progress"]
        for name, src in (("prepare, JPEG (libvips)", jpeg), ("prepare, pyramid TIFF (OpenSlide)", tiff)):
            mib, sec = peak_mib(cli + [str(src), "--out", str(tmp / name.split()[1])])
            print(f"| {name} | {mib:.0f} | {mib / base:.2f} | {sec:.1f} |")


if __name__ == "__main__":
    main()
