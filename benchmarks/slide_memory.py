"""Peak memory and time of a whole synthetic slide against its size, and against generating it in one piece.

    python benchmarks/slide_memory.py [--sides 1024,2048,4096,8192] [--whole 1024,2048,4096] [--results FILE]

Each measurement runs in its own process: the default models are loaded, then the highest resident set size
while generating (sampled every 10 ms) above what the process held just before is what the generation added.

- ``slide``: ``generate_slide`` (what ``priorpath generate --slide`` runs) from a sketch 8x smaller than the
  slide (the bundled sketch, resized), streamed tile by tile into the pyramidal TIFFs; then both pyramids
  are opened with OpenSlide and a region is read at every level;
- ``whole``: the baseline, the engine's ``generate`` on the whole coarse mask at once (fine mask and RGB
  held in memory), as ``priorpath generate`` does for one large input.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SKETCH = REPO / "resources" / "sample" / "sketches" / "sketch_01.png"
SCALE = 8


class RssPeak:
    """The highest resident set size seen while it runs (sampled every 10 ms from /proc/self/statm)."""

    def __init__(self):
        import threading

        self.peak, self._stop = rss_mib(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_mib())

    def __enter__(self) -> "RssPeak":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def measure(mode: str, side: int) -> dict:
    import cv2
    import numpy as np

    from trainer.inference import Engine
    from trainer.slide import generate_slide

    engine = Engine(device="cpu")
    sketch = cv2.resize(cv2.imread(str(SKETCH), cv2.IMREAD_GRAYSCALE), (side // SCALE, side // SCALE),
                        interpolation=cv2.INTER_NEAREST)
    engine.generate(np.where(sketch[:64, :64] > 127, 255, 0).astype(np.uint8), 0)  # warm-up: lazy indexes
    base = rss_mib()
    opened: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        with RssPeak() as peak:
            if mode == "slide":
                result = generate_slide(sketch, SCALE, Path(tmp) / "s.tif", engine, seed=0)
                size = result.rgb.stat().st_size + result.mask.stat().st_size
            else:
                coarse = np.where(cv2.resize(sketch, (side, side), interpolation=cv2.INTER_LINEAR) > 127, 255, 0)
                fine, rgb = engine.generate(coarse.astype(np.uint8), 0)
                size = rgb.nbytes + fine.nbytes
        seconds = time.perf_counter() - started
        if mode == "slide":
            opened = read_back(result)  # after the measurement: OpenSlide's cache is not the writer's memory
    return {"mode": mode, "side": side, "seconds": seconds, "peak_mib": peak.peak - base, "output_mb": size / 1e6,
            **opened}


def read_back(result) -> dict:
    """Open both pyramids with OpenSlide and read a 256 px region at the centre of every level."""
    import numpy as np
    import openslide

    found = {}
    for name, path in (("rgb", result.rgb), ("mask", result.mask)):
        slide = openslide.OpenSlide(str(path))
        w, h = slide.dimensions
        for level in range(slide.level_count):
            region = np.asarray(slide.read_region((w // 2, h // 2), level, (256, 256)).convert("RGB"))
            if region.shape != (256, 256, 3) or np.ptp(region) == 0 and name == "rgb":
                raise RuntimeError(f"{path.name} level {level}: unreadable or blank")
        found[f"{name}_levels"] = slide.level_count
        found[f"{name}_tile"] = slide.properties.get("openslide.level[0].tile-width")
        slide.close()
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sides", default="1024,2048,4096,8192")
    ap.add_argument("--whole", default="1024,2048,4096")
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "slide_memory.md")
    ap.add_argument("--one", nargs=2, metavar=("MODE", "SIDE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]))))
        return
    runs = [("whole", int(s)) for s in args.whole.split(",") if s] + [("slide", int(s)) for s in args.sides.split(",")]
    rows = {}
    for mode, side in runs:
        r = subprocess.run([sys.executable, __file__, "--one", mode, str(side)], capture_output=True, text=True)
        if r.returncode:
            print(f"{mode} {side}: failed: {r.stderr.strip()[-300:]}", flush=True)
            continue
        rows[(mode, side)] = json.loads(r.stdout.strip().splitlines()[-1])
        print(rows[(mode, side)], flush=True)
    lines = ["| side (px) | megapixels | mode | seconds | s per Mpx | peak RSS added (MiB) | vs whole at this side | "
             "OpenSlide: levels (RGB, mask), tile |", "|---|---|---|---|---|---|---|---|"]
    for (mode, side), m in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        whole = rows.get(("whole", side))
        ratio = f"{m['peak_mib'] / whole['peak_mib']:.2f}x" if whole and mode == "slide" else ""
        mpx = side * side / 1e6
        opened = f"{m['rgb_levels']}, {m['mask_levels']}, {m['rgb_tile']} px" if "rgb_levels" in m else ""
        lines.append(f"| {side} | {mpx:.1f} | {mode} | {m['seconds']:.0f} | {m['seconds'] / mpx:.2f} | "
                     f"{m['peak_mib']:.0f} | {ratio} | {opened} |")
    text = "\n".join([
        "# Whole-slide memory and time",
        "",
        f"Generated by `python benchmarks/slide_memory.py --sides {args.sides} --whole {args.whole}` on "
        f"{datetime.date.today().isoformat()} ({platform.machine()}, {os.cpu_count()} CPU cores; load average at the "
        f"end {os.getloadavg()[0]:.1f}). Default models, seed 0, the bundled sketch resized to 1/{SCALE} of the slide. "
        "Peak RSS added: the highest resident set size during the generation (sampled every 10 ms) above what "
        "the process held before it, with the models loaded.",
        "",
        *lines,
        "",
    ])
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
