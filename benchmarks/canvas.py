"""Cost of painting on the canvas: one pen segment, from the document edit to the pixels on screen.

    QT_QPA_PLATFORM=offscreen python benchmarks/canvas.py [--sizes 512x1024,4096x8192] [--segments 300]
                                                          [--results FILE]

For each mask size a ``CanvasView`` of 1024x512 widget pixels shows the mask at 1:1 (zoom 1, the usual
drawing zoom) and a pen stroke of ``--segments`` segments (6 px long, radius 12) zig-zags across it.
Per segment we time:

- ``canvas``: ``MaskDocument.stamp_segment`` plus the synchronous repaint the canvas asks for (only the
  changed rectangle, converting only that part of the mask to pixels);
- ``baseline``: the same ``stamp_segment``, then what a naive view does: convert the whole mask to an ARGB
  ``QImage`` and repaint the whole widget from it.

Also per size: the median cost of ``end_stroke`` (building the undo step), the bytes the stroke's undo step
keeps, a full-window repaint of the canvas (what a pan or zoom costs) and the PNG encoding an autosave does.
Medians over the segments; ratios are baseline / canvas from the same run.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from PySide6.QtCore import QPointF  # noqa: E402
from PySide6.QtGui import QImage, QPainter  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402

from priorpath_desktop.canvas import TISSUE_COLOUR, CanvasView, _premultiplied  # noqa: E402
from priorpath_desktop.document import MaskDocument  # noqa: E402
from trainer.fileio import encode_png  # noqa: E402

VIEW = (1024, 512)  # widget width, height
RADIUS = 12
STEP = 6  # pixels the pen moves between two events


class WholeMaskView(QWidget):
    """The baseline: after every change, the whole mask becomes a new QImage and the whole widget repaints."""

    def __init__(self, doc: MaskDocument):
        super().__init__()
        self.doc = doc
        self.lut = np.zeros(256, np.uint32)
        self.lut[255] = _premultiplied(TISSUE_COLOUR)
        self.image = None
        self.pixels = None

    def refresh(self) -> None:
        self.pixels = self.lut[self.doc.mask]
        h, w = self.pixels.shape
        self.image = QImage(self.pixels.data, w, h, w * 4, QImage.Format.Format_ARGB32_Premultiplied)
        self.repaint()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), "white")
        if self.image is not None:
            painter.drawImage(QPointF(-self.doc.width / 2 + VIEW[0] / 2, -self.doc.height / 2 + VIEW[1] / 2),
                              self.image)
        painter.end()


def zigzag(h: int, w: int, n: int) -> list[tuple[float, float]]:
    """Pen positions in the middle 1024x512 of the mask (the part the view shows)."""
    cx, cy = w / 2, h / 2
    points, x, y, dx, dy = [], cx - 400.0, cy - 200.0, STEP * 0.8, STEP * 0.6
    for _ in range(n + 1):
        points.append((x, y))
        x, y = x + dx, y + dy
        if not (cx - 450 < x < cx + 450):
            dx = -dx
        if not (cy - 220 < y < cy + 220):
            dy = -dy
    return points


def per_segment(doc: MaskDocument, points, after) -> list[float]:
    times = []
    doc.begin_stroke()
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        start = time.perf_counter()
        doc.stamp_segment(x0, y0, x1, y1, RADIUS, RADIUS, 255)
        after()
        times.append(time.perf_counter() - start)
    return times


def run_size(app: QApplication, h: int, w: int, segments: int) -> dict:
    points = zigzag(h, w, segments)
    out: dict = {"size": f"{h}x{w}"}

    doc = MaskDocument(h, w)
    view = CanvasView(document=doc)
    view.resize(*VIEW)
    view.show()
    app.processEvents()
    view.set_zoom(1.0)
    view.pan(VIEW[0] / 2 - view.widget_pos(w / 2, h / 2).x(), VIEW[1] / 2 - view.widget_pos(w / 2, h / 2).y())
    app.processEvents()

    def repaint_changed() -> None:
        view.repaint(view.last_update_rect)

    out["canvas"] = per_segment(doc, points, repaint_changed)
    start = time.perf_counter()
    doc.end_stroke()
    out["end_stroke"] = time.perf_counter() - start
    (_, step), = doc._undo
    out["undo_bytes"] = step.before.nbytes + step.after.nbytes
    out["undo_rect"] = step.rect

    full = []
    for _ in range(9):
        start = time.perf_counter()
        view.repaint()
        full.append(time.perf_counter() - start)
    out["full_repaint"] = statistics.median(full)
    start = time.perf_counter()
    encode_png(doc.mask, compression=1)
    out["autosave_png"] = time.perf_counter() - start
    view.close()

    doc2 = MaskDocument(h, w)
    base = WholeMaskView(doc2)
    base.resize(*VIEW)
    base.show()
    app.processEvents()
    # the naive view is slow on big masks: time fewer segments there, the median is what counts
    n_base = segments if h * w <= 1_000_000 else max(20, segments // 10)
    out["baseline"] = per_segment(doc2, points[: n_base + 1], base.refresh)
    doc2.end_stroke()
    base.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512x1024,4096x8192")
    parser.add_argument("--segments", type=int, default=300)
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "canvas.md")
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    rows = []
    for size in args.sizes.split(","):
        h, w = (int(v) for v in size.lower().split("x"))
        r = run_size(app, h, w, args.segments)
        canvas_ms = statistics.median(r["canvas"]) * 1000
        base_ms = statistics.median(r["baseline"]) * 1000
        x0, y0, x1, y1 = r["undo_rect"]
        p95 = float(np.percentile(r["canvas"], 95)) * 1000
        rows.append((r["size"], canvas_ms, base_ms, base_ms / canvas_ms, p95, max(r["canvas"]) * 1000, len(r["canvas"]),
                     len(r["baseline"]), r["end_stroke"] * 1000, r["undo_bytes"], f"{x1 - x0}x{y1 - y0}",
                     r["full_repaint"] * 1000, r["autosave_png"] * 1000))
        print(rows[-1], flush=True)

    lines = [
        "# Canvas painting cost",
        "",
        f"Generated by `python benchmarks/canvas.py` on {datetime.date.today()} ({platform.machine()}, "
        f"{os.cpu_count()} CPU cores, Qt platform `{app.platformName()}`; load average at the end "
        f"{os.getloadavg()[0]:.1f}). View {VIEW[0]}x{VIEW[1]} widget pixels at zoom 1; pen segments of {STEP} px, "
        f"radius {RADIUS}.",
        "",
        "Per segment: `canvas` = `stamp_segment` + repaint of the changed rectangle only; `baseline` = the same "
        "stamp + whole-mask QImage conversion + whole-widget repaint. Medians; ratio = baseline / canvas "
        "(> 1x: the canvas is faster).",
        "",
        "| mask | canvas (ms/segment) | baseline (ms/segment) | ratio | canvas p95 / worst (ms) | segments canvas / "
        "baseline | end_stroke (ms) | undo step (bytes, rect) | full repaint (ms) | autosave PNG encode (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (size, c, b, ratio, p95, worst, nc, nb, end, ub, urect, full, png) in rows:
        lines.append(f"| {size} | {c:.3f} | {b:.1f} | {ratio:.0f}x | {p95:.2f} / {worst:.2f} | {nc} / {nb} | "
                     f"{end:.2f} | "
                     f"{ub} ({urect}) | {full:.1f} | {png:.1f} |")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    existing = args.results.read_text(encoding="utf-8") if args.results.exists() else ""
    notes = existing[existing.index("## What"):] if "## What" in existing else ""
    args.results.write_text("\n".join(lines) + "\n\n" + notes, encoding="utf-8")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
