"""`priorpath-desktop`: start the application.

    priorpath-desktop [MASK] [--dataset DIR] [--mask-model CKPT] [--rgb-model CKPT|none] [--device D]
    priorpath-desktop --self-test [--self-test-out DIR] [--mask-model CKPT] [--rgb-model CKPT] [--device D]
    priorpath-desktop --run-trainer ARGS...

Opens MASK (a PNG mask or a Labelme JSON) or a new sketch, the bundled sample in the cluster browser and
the default models. ``--self-test`` checks the installation headlessly and exits (see ``self_test``).
``--run-trainer ARGS`` runs the `priorpath` command line instead: the training panel uses it to start
child processes from a frozen (PyInstaller) build, where there is no Python to run, and it is that
build's command line.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from trainer import __version__


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="priorpath-desktop", description="PriorPath Desktop: sketch coarse tissue masks "
                                "and turn them into fine masks and H&E tiles")
    p.add_argument("mask", nargs="?", type=Path, help="a mask (PNG/TIFF/JPEG) or Labelme JSON to open")
    p.add_argument("--dataset", type=Path, default=None,
                   help="prepared folder for the cluster browser (default: the bundled sample)")
    p.add_argument("--mask-model", default=None, metavar="CKPT", help="coarse->fine checkpoint (default: bundled)")
    p.add_argument("--rgb-model", default=None, metavar="CKPT|none", help="fine->RGB checkpoint (default: bundled)")
    p.add_argument("--device", default=None, choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--self-test", action="store_true",
                   help="check this installation without a display (models, generation, Qt, training child) "
                        "and exit: 0 when all checks pass")
    p.add_argument("--self-test-out", type=Path, default=None, metavar="DIR",
                   help="keep the self-test's images (sketch, fine mask, RGB tile, window) in DIR")
    p.add_argument("--version", action="version", version=f"priorpath-desktop {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = p.parse_args(list(argv))
    if args.self_test and (args.mask is not None or args.dataset is not None):
        p.error("--self-test uses the bundled sketch and sample: drop MASK and --dataset")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _replace_missing_std_streams()
    if argv[:1] == ["--run-trainer"]:
        from trainer.cli import main as trainer_main
        return trainer_main(argv[1:])
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("pyvips").setLevel(logging.WARNING)  # one INFO line per libvips thread otherwise
    if args.self_test:
        from .self_test import run_self_test
        return run_self_test(args.mask_model, args.rgb_model, args.device, args.self_test_out)

    from .platform_check import missing_system_library

    missing = missing_system_library()
    if missing:  # Qt would abort with a message that names neither the library nor its package
        print(f"priorpath-desktop: {missing}", file=sys.stderr)
        return 1

    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow, app_icon
    from .preferences import APP_NAME, ORG_NAME

    QApplication.setOrganizationName(ORG_NAME)
    QApplication.setApplicationName(APP_NAME)
    QApplication.setApplicationVersion(__version__)
    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setWindowIcon(app_icon())
    window = MainWindow(mask_model=args.mask_model, rgb_model=args.rgb_model, device=args.device,
                        dataset=str(args.dataset) if args.dataset else None)
    window.show()
    window.start(open_path=args.mask)
    return app.exec()


def _replace_missing_std_streams() -> None:
    """A windowed Windows build started without redirection has no stdout/stderr (None); progress bars and
    tracebacks would then fail on write. Send them to the null device instead."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))


if __name__ == "__main__":
    sys.exit(main())
