"""Live-preview latency in the desktop app, and how responsive the window stays meanwhile.

    QT_QPA_PLATFORM=offscreen python benchmarks/preview_latency.py [--repeats 5] [--out benchmarks/results/preview_latency.md]

For each size, with the shipped default models on the CPU, in one run:
- baseline: ``engine.fine`` then ``engine.rgb`` called directly (no GUI);
- the app: ``GenerationView.request_preview`` (debounce 0) until ``previewShown``: the cost of the worker,
  signals and drawing on top of the models;
- responsiveness: the longest gap between ticks of a 5 ms timer on the GUI thread while the preview runs,
  against the same measure on an idle event loop.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZES = [(256, 512), (512, 1024)]


def sketch(h: int, w: int, shift: int = 0):
    import numpy as np

    yy, xx = np.mgrid[:h, :w]
    blob = ((yy - h * 0.55) / (h * 0.35)) ** 2 + ((xx - w * 0.45 - shift) / (w * 0.3)) ** 2 < 1
    return np.where(blob, 255, 0).astype(np.uint8)


class Ticker:
    """Records the largest gap between ticks of a fast timer on the GUI thread."""

    def __init__(self):
        from PySide6.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(self.tick)
        self.last = None
        self.max_gap = 0.0

    def tick(self):
        now = time.perf_counter()
        if self.last is not None:
            self.max_gap = max(self.max_gap, now - self.last)
        self.last = now

    def start(self):
        self.last, self.max_gap = None, 0.0
        self.timer.start()

    def stop(self) -> float:
        self.timer.stop()
        return self.max_gap


def pump_until(app, condition, timeout: float = 300.0) -> None:
    end = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > end:
            raise TimeoutError("timed out")
        app.processEvents()
        time.sleep(0.001)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "preview_latency.md")
    args = parser.parse_args()

    import torch
    from PySide6.QtWidgets import QApplication

    from priorpath_desktop.generation_view import GenerationView
    from priorpath_desktop.preferences import Preferences

    app = QApplication([])
    prefs = Preferences()
    prefs.preview_delay_ms = 0
    view = GenerationView(preferences=prefs)
    view.set_preview_delay(0)
    view.show()
    loaded = []
    view.engineReady.connect(lambda: loaded.append(1))
    view.set_models(None, None, "cpu")
    pump_until(app, lambda: bool(loaded))
    engine = view.engine()
    shown = []
    view.previewShown.connect(shown.append)
    ticker = Ticker()

    rows = []
    for h, w in SIZES:
        direct, through_app, gaps, idle_gaps = [], [], [], []
        for k in range(args.repeats + 1):  # the first of each is a warm-up
            mask = sketch(h, w, shift=3 * k)
            t0 = time.perf_counter()
            fine = engine.fine(mask, 0)
            engine.rgb(fine, 0)
            t_direct = time.perf_counter() - t0

            ticker.start()
            end = time.perf_counter() + 0.3
            while time.perf_counter() < end:  # the idle baseline: the same loop with nothing running
                app.processEvents()
                time.sleep(0.001)
            idle_gap = ticker.stop()

            shown.clear()
            ticker.start()
            t0 = time.perf_counter()
            view.request_preview(mask)
            pump_until(app, lambda: bool(shown))
            t_app = time.perf_counter() - t0
            gap = ticker.stop()
            pump_until(app, view.is_idle)
            if k:
                direct.append(t_direct)
                through_app.append(t_app)
                gaps.append(gap)
                idle_gaps.append(idle_gap)
        med = statistics.median
        rows.append((f"{h}x{w}", med(direct) * 1e3, med(through_app) * 1e3, med(through_app) / med(direct),
                     max(gaps) * 1e3, max(idle_gaps) * 1e3))
        print(rows[-1], flush=True)

    lines = [
        "# Live preview latency (default models, CPU)",
        "",
        f"`python benchmarks/preview_latency.py --repeats {args.repeats}`; torch threads: {torch.get_num_threads()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}. Medians of {args.repeats} runs after a warm-up; "
        "gaps are the worst of the runs.",
        "",
        "| sketch | models called directly (ms) | request → preview shown in the app (ms) | app ÷ direct | "
        "longest GUI stall during the preview (ms) | longest stall, idle loop (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for size, d, a, ratio, gap, idle in rows:
        lines.append(f"| {size} | {d:.0f} | {a:.0f} | {ratio:.2f} | {gap:.0f} | {idle:.0f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    view.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
