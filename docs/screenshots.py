"""Screenshots of the desktop app in use, for the README and docs/.

    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots.py [--out docs] [--skip-training]
                                                                             [--classes-only]

Runs the real application on a real (virtual) X screen as a fresh user: the bundled sample and default models,
a bundled sketch opened and extended with pen strokes, a cluster member's H&E patch as underlay, variations,
a short training run with its evaluation, a batch export and a whole slide, and a three-class (he3) sketch.
Writes screenshot_*.png into --out; --classes-only writes screenshot_classes.png alone.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def wait(app, condition, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.02)


def settle(app, seconds: float = 0.5) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--classes-only", action="store_true", help="only the three-class sketch")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="priorpath-shots-"))
    os.environ["PRIORPATH_DESKTOP_HOME"] = str(home)  # a fresh user: nothing remembered
    os.environ.setdefault("OMP_NUM_THREADS", "2")

    import numpy as np
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from priorpath_desktop.main_window import MainWindow, app_icon
    from tests.desktop.test_canvas import pen_stroke

    app = QApplication([sys.argv[0]])
    app.setWindowIcon(app_icon())
    window = MainWindow()
    window.ask_before_discarding = False
    window.resize(1560, 1000)
    window.move(20, 20)
    window.show()
    window.start(open_path=REPO / "resources" / "sample" / "sketches" / "sketch_04.png")
    wait(app, lambda: getattr(window, "models_in_use", None) and window.clusters.result() is not None, 180,
         "models and clusters")
    wait(app, lambda: window.generation.shown_seed() is not None, 120, "the first preview")
    if args.classes_only:
        class_sketch(app, window, args.out)
        window.close()
        return 0

    # a cluster member as underlay, then pen strokes over it
    clusters = window.clusters
    clusters.open_cluster(0)
    wait(app, lambda: clusters.members_list.count() > 0, 60, "cluster members")
    clusters.members_list.setCurrentRow(2)
    wait(app, clusters.member_loaded, 60, "a member's images")
    clusters.use_rgb_as_underlay()
    window.canvas.set_underlay_opacity(0.45)
    h, w = window.document.shape
    # pen strokes in the air above the tissue: light pressure draws thin, firm pressure thick
    for y, pressure in ((0.10, 0.3), (0.2, 1.0)):
        points = [window.canvas.widget_pos(x, h * y + 12 * np.sin(x / 40)) for x in np.linspace(w * 0.08, w * 0.45, 40)]
        pen_stroke(window.canvas, points, pressure)
    shown = window.generation.shown_seed
    wait(app, lambda: window.generation.is_idle() and shown() is not None, 120, "the preview of the strokes")
    window.generation.start_variations(4)
    wait(app, lambda: len(window.generation.variations()) == 4 and window.generation.is_idle(), 180, "variations")
    settle(app)
    window.grab().save(str(args.out / "screenshot_main.png"))
    print("wrote screenshot_main.png")

    if not args.skip_training:
        panel = window.training
        window.docks["training"].raise_()
        panel.set_dataset(str(home / "cache" / "sample_he"))
        panel.model_combo.setCurrentText("analogy")
        panel.size_edit.setText("256x512")
        panel.epochs_spin.setValue(1)
        panel.start()
        wait(app, lambda: panel.state in ("done", "failed"), 300, "the training run")
        panel.evaluate()
        wait(app, lambda: not panel.is_evaluating(), 600, "the evaluation")
        window.resizeDocks([window.docks["training"]], [640], Qt.Orientation.Vertical)
        settle(app)
        window.grab().save(str(args.out / "screenshot_training.png"))
        print("wrote screenshot_training.png")

    dialog = window.export_dialog()
    dialog.apply_settings({"sources": [str(REPO / "resources" / "sample" / "sketches")], "include_current": True,
                           "count": 8, "augment": True, "seed": 0, "out": str(home / "export")})
    dialog.start()
    wait(app, lambda: not dialog.is_running(), 300, "the export")
    settle(app)
    dialog.grab().save(str(args.out / "screenshot_export.png"))
    print("wrote screenshot_export.png")
    dialog.close()

    slide = window.slide_dialog()  # the sketch on the canvas, 8x its size
    slide.scale_spin.setValue(8)
    wait(app, lambda: "on this machine" in slide.estimate_label.text(), 180, "the slide's estimate")
    slide.mpp_spin.setValue(0.5)
    slide.out_edit.setText(str(home / "slides" / "sketch_04.tif"))
    slide.start()
    wait(app, lambda: not slide.is_running(), 900, "the slide")
    settle(app)
    slide.grab().save(str(args.out / "screenshot_slide.png"))
    print("wrote screenshot_slide.png")
    slide.close()
    class_sketch(app, window, args.out)
    window.close()
    return 0


def class_sketch(app, window, out: Path) -> None:
    """File -> New class sketch with the he3 table: stroma drawn with the lasso, nuclei with the pen."""
    import numpy as np
    from PySide6.QtCore import Qt

    from tests.desktop.test_canvas import pen_stroke

    window.canvas.set_underlay(None)
    dialog = window.new_class_sketch()
    dialog.accept()  # he3, at the window's sketch size
    doc, canvas = window.document, window.canvas
    h, w = doc.shape
    rng = np.random.default_rng(4)
    for cx, cy, rx, ry in ((0.3, 0.5, 0.22, 0.34), (0.72, 0.45, 0.2, 0.3)):  # two stroma lobes
        angles = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        wobble = 1 + 0.12 * np.sin(3 * angles + cx * 10) + 0.05 * np.sin(7 * angles + cy * 5)
        outline = np.stack([w * (cx + rx * wobble * np.cos(angles)), h * (cy + ry * wobble * np.sin(angles))], 1)
        doc.fill_polygon(outline, 1)
    canvas.set_current_class(2)
    canvas.set_brush_radius(20)
    for x0, y0, x1, y1 in ((0.18, 0.4, 0.4, 0.62), (0.62, 0.35, 0.82, 0.55)):  # a band of crowded nuclei per lobe
        points = [canvas.widget_pos(w * x, h * y + 6 * np.sin(x * 60))
                  for x, y in zip(np.linspace(x0, x1, 24), np.linspace(y0, y1, 24))]
        pen_stroke(canvas, points, 0.8)
    canvas.set_brush_radius(4)
    for _ in range(14):  # scattered single nuclei in the stroma
        x, y = w * rng.uniform(0.15, 0.85), h * rng.uniform(0.25, 0.75)
        if doc.labels[int(y), int(x)] == 1:
            pen_stroke(canvas, [canvas.widget_pos(x, y)], 1.0)
    # the he3 models draw it: fine label map and H&E tile, the tile with the nuclei the rule finds outlined
    generation = window.generation
    wait(app, lambda: generation.is_idle() and generation.current_results().get("fine") is not None
         and generation.current_results()["fine"].max() == 2, 180, "the he3 preview of the class sketch")
    generation.panes["rgb"].outlines_check.setChecked(True)
    window.resizeDocks([window.docks["generation"]], [440], Qt.Orientation.Vertical)
    settle(app)
    window.grab().save(str(out / "screenshot_classes.png"))
    print("wrote screenshot_classes.png")


if __name__ == "__main__":
    sys.exit(main())
