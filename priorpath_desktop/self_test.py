"""`priorpath-desktop --self-test`: prove an installation works, without a display or a user.

Meant above all for a frozen (PyInstaller) bundle, where a missing library, Qt plugin or data file only
shows when the code that needs it runs. Each check prints one line; the exit status is 0 when all pass,
1 otherwise. The checks:

- the bundled resources are present (default models, icon, sample sketches);
- the default models (or ``--mask-model``/``--rgb-model``) load, and a bundled sketch becomes a binary
  fine mask that follows the sketch and an RGB tile whose tissue is darker than its glass, the same for
  the same seed;
- Qt starts (offscreen unless ``QT_QPA_PLATFORM`` says otherwise) and the SVG icon renders; the main
  window opens the bundled sketch and, through its workers, shows the sketch's fine mask and RGB tile and
  the clusters of the bundled sample (with a throwaway settings folder, so the user's are untouched);
- a short pix2pix run trains in a child process started as the training panel starts them
  (``--run-trainer`` in a bundle), and its checkpoint loads;
- the FID Inception network that Evaluate needs is found, has the right checksum, and computes features.

``--self-test-out DIR`` keeps the sketch, fine mask, RGB tile and a screenshot of the window there.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

import numpy as np

#: the bundled sketch the generation check uses
SKETCH = "sketch_01.png"
#: a fine mask must overlap its sketch at least this much (intersection over union); the default model
#: reaches 0.79-0.93 on the bundled sketches, a broken one (wrong weights, broken numerics) far less
MIN_IOU = 0.5
#: the RGB tissue must be at least this many grey levels darker than the glass (default model: 68-100)
MIN_CONTRAST = 30.0
#: seconds the window may take to load the models, preview the sketch and cluster the bundled sample
APP_TIMEOUT = 600
#: how long the window's cancelled jobs may take to end after it closes
JOB_GRACE_MS = 30_000
#: optimizer steps of the training check: enough to write a checkpoint, quick on any CPU
TRAIN_STEPS = 2


class CheckFailed(Exception):
    """A self-test check found something wrong; the message says what."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


class SelfTest:
    def __init__(self, mask_model: Optional[str], rgb_model: Optional[str], device: Optional[str],
                 out_dir: Path, print_fn: Callable[[str], None] = print):
        self.mask_model = mask_model
        self.rgb_model = rgb_model
        self.device = device or "cpu"  # the CPU always exists; --device cuda tests a GPU build
        self.out_dir = out_dir
        self.settings_dir = out_dir / "settings"  # the window's config folder during the self-test
        self.print = print_fn
        self.failures = 0

    def run(self) -> int:
        from trainer import __version__
        from trainer.errors import PriorPathError
        from trainer.inference import resources_dir

        where = "frozen bundle" if getattr(sys, "frozen", False) else "source install"
        self.print(f"PriorPath Desktop {__version__} self-test ({where}, {sys.executable})")
        self.print(f"resources: {resources_dir()}")
        for name, check in (("resources", self.check_resources), ("generation", self.check_generation),
                            ("app window", self.check_app), ("training", self.check_training),
                            ("fid network", self.check_fid_network)):
            started = time.perf_counter()
            try:
                detail = check()
            except (CheckFailed, PriorPathError) as exc:  # a finding or a user-facing error: its message says it
                self.failures += 1
                self.print(f"FAIL {name}: {exc}")
            except Exception as exc:  # noqa: BLE001 - a self-test reports whatever broke, then goes on
                self.failures += 1
                self.print(f"FAIL {name}: {type(exc).__name__}: {exc}")
                self.print(traceback.format_exc().rstrip())
            else:
                self.print(f"ok   {name}: {detail} ({time.perf_counter() - started:.1f} s)")
        self.print("self-test passed" if not self.failures else f"self-test FAILED: {self.failures} check(s)")
        return 0 if not self.failures else 1

    # --- the checks -------------------------------------------------------------------------------------------
    def check_resources(self) -> str:
        from trainer.inference import default_model_path, resources_dir

        wanted = [default_model_path("mask"), default_model_path("rgb"), resources_dir() / "icons" / "priorpath.svg",
                  resources_dir() / "sample" / "sketches" / SKETCH, resources_dir() / "sample" / "he",
                  resources_dir() / "sample" / "ihc"]
        missing = [str(p) for p in wanted if not p.exists()]
        _require(not missing, f"missing: {', '.join(missing)}")
        return f"{len(wanted)} present"

    def check_generation(self) -> str:
        import cv2

        from trainer.data.sketches import load_sketch
        from trainer.inference import Engine, resources_dir

        sketch_path = resources_dir() / "sample" / "sketches" / SKETCH
        coarse = load_sketch(sketch_path)
        engine = Engine(self.mask_model, self.rgb_model, device=self.device)
        _require(engine.rgb_model is not None, "no RGB model loaded")
        fine, rgb = engine.generate(coarse, seed=7)
        again, _ = engine.generate(coarse, seed=7)
        for name, image in (("sketch", coarse), ("fine", fine), ("rgb", rgb[..., ::-1])):
            cv2.imwrite(str(self.out_dir / f"{name}.png"), image)

        _require(fine.shape == coarse.shape and fine.dtype == np.uint8,
                 f"fine mask is {fine.shape} {fine.dtype}, expected {coarse.shape} uint8")
        _require(set(np.unique(fine).tolist()) <= {0, 255}, "fine mask is not binary (0/255)")
        tissue, sketched = fine > 0, coarse > 0
        iou = float((tissue & sketched).sum() / max((tissue | sketched).sum(), 1))
        _require(iou >= MIN_IOU, f"fine mask follows the sketch poorly (IoU {iou:.2f} < {MIN_IOU})")
        _require(0 < tissue.mean() < 1, "fine mask is all tissue or all air")
        _require(np.array_equal(fine, again), "the same seed gave two different fine masks")
        _require(rgb.shape == coarse.shape + (3,) and rgb.dtype == np.uint8,
                 f"RGB tile is {rgb.shape} {rgb.dtype}, expected {coarse.shape + (3,)} uint8")
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float64)
        contrast = grey[~tissue].mean() - grey[tissue].mean()
        _require(contrast >= MIN_CONTRAST,
                 f"RGB tissue is not darker than glass ({contrast:.0f} grey levels < {MIN_CONTRAST:.0f})")
        models = engine.describe()
        return (f"{SKETCH} {coarse.shape[1]}x{coarse.shape[0]} on {engine.device}: fine IoU {iou:.2f} with the "
                f"sketch, RGB tissue {contrast:.0f} grey levels darker than glass; mask {models['mask']}, "
                f"rgb {models['rgb']}")

    def check_app(self) -> str:
        saved = {name: os.environ.get(name) for name in ("QT_QPA_PLATFORM", "PRIORPATH_DESKTOP_HOME")}
        if not saved["QT_QPA_PLATFORM"]:  # headless unless the caller names a platform
            os.environ["QT_QPA_PLATFORM"] = "offscreen"
        shutil.rmtree(self.settings_dir, ignore_errors=True)  # a fresh start: no recovery question
        os.environ["PRIORPATH_DESKTOP_HOME"] = str(self.settings_dir)  # not the user's settings
        try:
            return self._check_window()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def _check_window(self) -> str:
        """The real window on the bundled sketch: models load, the preview and the clusters arrive from workers."""
        from PySide6.QtCore import QSize, QThreadPool, qVersion
        from PySide6.QtWidgets import QApplication

        from trainer.inference import resources_dir

        from .main_window import MainWindow, app_icon
        from .messages import open_messages

        app = QApplication.instance() or QApplication([sys.argv[0]])
        icon = app_icon().pixmap(QSize(64, 64))
        _require(not icon.isNull(), "the SVG icon does not render (Qt's svg image format plugin is missing?)")
        window = MainWindow(mask_model=self.mask_model, rgb_model=self.rgb_model, device=self.device)
        window.ask_before_discarding = False
        previews, clusterings = [], []
        window.generation.previewShown.connect(previews.append)
        window.clusters.clustered.connect(clusterings.append)
        try:
            window.resize(1400, 900)
            window.show()
            window.start(open_path=resources_dir() / "sample" / "sketches" / SKETCH)
            finished = _wait(app, lambda: (previews and clusterings) or open_messages(), APP_TIMEOUT)
            errors = [f"{box.windowTitle()}: {box.text()}" for box in open_messages()]
            _require(not errors, "the window reported " + "; ".join(errors))
            _require(finished, f"within {APP_TIMEOUT} s: preview {'shown' if previews else 'not shown'}, "
                               f"clusters {'shown' if clusterings else 'not shown'}")
            results = window.generation.current_results()
            _require({"coarse", "fine", "rgb"} <= set(results), f"the preview holds only {sorted(results)}")
            shape = results["coarse"].shape
            _require(results["fine"].shape == shape and results["rgb"].shape == shape + (3,),
                     f"preview sizes differ: coarse {shape}, fine {results['fine'].shape}, "
                     f"rgb {results['rgb'].shape}")
            shot = window.grab()
            _require(not shot.isNull(), "the main window could not be drawn")
            shot.save(str(self.out_dir / "window.png"))
            clusters = clusterings[-1]
        finally:
            for box in open_messages():
                box.close()
            window.close()  # cancels the window's jobs; wait for them so none outlives its folder
            QThreadPool.globalInstance().waitForDone(JOB_GRACE_MS)
            app.processEvents()
        return (f"platform {app.platformName()}, Qt {qVersion()}; the window opened {SKETCH}, showed its fine "
                f"mask and RGB tile, and {clusters.k} clusters of {len(clusters.stems)} sample masks")

    def check_training(self) -> str:
        """A two-step pix2pix run on the bundled sample, in a child started as the training panel starts it."""
        from PySide6.QtWidgets import QApplication

        from trainer.clusters import bundled_sample_dataset
        import torch

        from trainer.inference import load_model
        from trainer.runs import finished_step, latest_checkpoint

        from .trainer_process import TrainerProcess

        app = QApplication.instance() or QApplication([sys.argv[0]])
        # the sample the window's cluster browser prepared (into <config dir>/cache) in the window check
        data = bundled_sample_dataset(self.settings_dir / "cache")
        run_dir = self.out_dir / "training-run"
        shutil.rmtree(run_dir, ignore_errors=True)
        child, ended = TrainerProcess(), []
        child.finished.connect(lambda code, status: ended.append((code, status)))
        child.start(["train", "--model", "pix2pix", "--data", str(data), "--out", str(run_dir), "--size", "64x128",
                     "--max-steps", str(TRAIN_STEPS), "--device", self.device, "--option", "ngf=8",
                     "--option", "ndf=8"])
        if not _wait(app, lambda: ended, APP_TIMEOUT):
            child.kill()
            raise CheckFailed(f"the training child did not finish within {APP_TIMEOUT} s")
        code, status = ended[0]
        tail = " | ".join(list(child.tail)[-5:])
        _require(status == "done", f"the training child {status} (exit {code}): {child.start_error or tail}")
        steps = finished_step(run_dir)
        _require(steps == TRAIN_STEPS, f"the run reports {steps} finished steps, expected {TRAIN_STEPS}")
        checkpoint = latest_checkpoint(run_dir)
        model = load_model(checkpoint, "mask", torch.device("cpu"))
        return f"{TRAIN_STEPS} pix2pix steps in a child process; {checkpoint.name} loads as {model.name}"

    def check_fid_network(self) -> str:
        """Evaluate's Inception network: found, checksum right, and features for two masks."""
        from trainer.data.sketches import load_sketch
        from trainer.inference import resources_dir
        from trainer.metrics.inception import FEATURE_DIM, InceptionFeatures, locate_weights

        path = locate_weights()
        masks = [load_sketch(p) for p in sorted((resources_dir() / "sample" / "sketches").glob("*.png"))[:2]]
        features = InceptionFeatures(device="cpu")(masks)
        _require(features.shape == (2, FEATURE_DIM) and np.isfinite(features).all(),
                 f"Inception features are {features.shape}, expected (2, {FEATURE_DIM}) finite values")
        return f"{path} ({path.stat().st_size / 2**20:.0f} MB, checksum ok), features for 2 masks"


def _wait(app, condition: Callable[[], object], seconds: float) -> bool:
    """Run the event loop until ``condition()`` is true (True) or ``seconds`` pass (False)."""
    from PySide6.QtCore import QEventLoop

    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        time.sleep(0.005)  # workers report through queued signals; no need to spin
    return True


def run_self_test(mask_model: Optional[str] = None, rgb_model: Optional[str] = None, device: Optional[str] = None,
                  out_dir: Optional[Path] = None) -> int:
    """Run every check; 0 when all pass. Outputs go to ``out_dir`` (kept) or a temporary folder (deleted)."""
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        return SelfTest(mask_model, rgb_model, device, out_dir).run()
    with tempfile.TemporaryDirectory(prefix="priorpath-selftest-", ignore_cleanup_errors=True) as tmp:
        return SelfTest(mask_model, rgb_model, device, Path(tmp)).run()
