"""The ``priorpath`` command line. Each subcommand is a thin shell around a `trainer` function."""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from . import __version__
from .errors import Cancelled, PriorPathError

log = logging.getLogger("priorpath")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _Bar:
    """A tqdm progress bar behind the trainer's ``progress(done, total, message)`` callback."""

    def __init__(self, unit: str, enabled: bool = True):
        self._unit, self._enabled, self._bar = unit, enabled, None

    def __call__(self, done: int, total: int, message: str) -> None:
        if self._bar is None:  # created on first report, so an early error prints no empty bar
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=self._unit, disable=not self._enabled, dynamic_ncols=True,
                             mininterval=0.5)
        if total and self._bar.total != total:
            self._bar.total = total
        self._bar.n = done
        if message:
            self._bar.set_postfix_str(message, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _threshold(text: str):
    if text == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer 0-255 or 'auto', got '{text}'")
    if not 0 <= value <= 255:
        raise argparse.ArgumentTypeError(f"expected an integer 0-255 or 'auto', got {value}")
    return value


def _size(text: str):
    from .data.prepare import parse_size

    try:
        return parse_size(text)
    except PriorPathError as exc:
        raise argparse.ArgumentTypeError(str(exc))


def _stain(text: str) -> str:
    from .data.masks import STAIN_THRESHOLDS

    if text.lower() not in STAIN_THRESHOLDS:
        raise argparse.ArgumentTypeError(f"unknown stain '{text}' (choose one of: {', '.join(STAIN_THRESHOLDS)})")
    return text.lower()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="priorpath", description="PriorPath: coarse-to-fine synthetic tissue masks and images.")
    parser.add_argument("--version", action="version", version=f"priorpath {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    common.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("prepare", parents=[common], help="cut slides into patches with fine and coarse masks",
                       description="Cut images or whole-slide files into patches and write rgb/, fine/, coarse/ "
                                   "and manifest.csv. Rerunning on the same --out resumes and skips finished work.")
    p.add_argument("sources", nargs="+", type=Path, metavar="SRC", help="image files, slides, or folders of them")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--stain", required=True, type=_stain, help="he or ihc (sets the default threshold)")
    p.add_argument("--patch", type=_size, default=(512, 1024), metavar="HxW", help="patch size (default 512x1024)")
    p.add_argument("--stride", type=_size, default=None, metavar="HxW", help="grid step (default: the patch size)")
    p.add_argument("--threshold", type=_threshold, default=None, metavar="N|auto",
                   help="grey level above which a pixel is air (default: he 204, ihc 235; auto = Otsu per source)")
    p.add_argument("--max-background", type=float, default=0.85, metavar="F",
                   help="drop patches with a larger air fraction (default 0.85)")
    p.add_argument("--level", type=int, default=0, help="pyramid level of whole-slide files (default 0)")
    p.add_argument("--workers", type=int, default=0, help="threads for mask making and PNG encoding (default: auto)")
    p.set_defaults(func=_cmd_prepare)

    a = sub.add_parser("augment-sketches", parents=[common], help="grow a repository of coarse masks from hand-drawn sketches",
                       description="Random affine, elastic, flip and morphological augmentation of coarse sketches "
                                   "(PNG masks or Labelme JSON), binarised and resized to the working size.")
    a.add_argument("sketches", nargs="+", type=Path, metavar="SKETCHES", help="sketch files or folders")
    a.add_argument("--out", required=True, type=Path, help="output folder (writes coarse/ and manifest.csv)")
    a.add_argument("--count", required=True, type=int, help="number of masks to write")
    a.add_argument("--size", type=_size, default=(512, 1024), metavar="HxW", help="output size (default 512x1024)")
    a.add_argument("--seed", type=int, default=0, help="random seed (same seed, same masks)")
    a.set_defaults(func=_cmd_augment)

    lm = sub.add_parser("import-labelme", parents=[common], help="convert Labelme JSON polygon annotations into coarse masks")
    lm.add_argument("files", nargs="+", type=Path, metavar="JSON", help="Labelme .json files or folders")
    lm.add_argument("--out", required=True, type=Path, help="output folder for <stem>.png masks")
    lm.add_argument("--hole-labels", default="air,background,hole,lumen",
                    help="comma-separated labels painted as air (default: air,background,hole,lumen)")
    lm.set_defaults(func=_cmd_labelme)
    return parser


def _cmd_prepare(args) -> int:
    from .data.prepare import PrepareSettings, prepare

    settings = PrepareSettings(stain=args.stain, patch=args.patch, stride=args.stride, threshold=args.threshold,
                               max_background=args.max_background, level=args.level)
    bar = _Bar("patch", enabled=not args.no_progress)
    start = time.perf_counter()
    try:
        result = prepare(args.sources, args.out, settings, progress=bar, workers=args.workers)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    print(f"{result.kept} patches kept, {result.dropped} dropped (over {settings.max_background:g} air) "
          f"from {len(result.per_source)} sources in {seconds:.1f} s -> {args.out}")
    for s in result.skipped_sources:
        print(f"skipped (smaller than one patch): {s}")
    return 0


def _cmd_augment(args) -> int:
    from .data.sketches import augment_sketches

    bar = _Bar("mask", enabled=not args.no_progress)
    try:
        written = augment_sketches(args.sketches, args.out, count=args.count, size=args.size, seed=args.seed,
                                   progress=bar)
    finally:
        bar.close()
    print(f"{written} augmented coarse masks in {args.out / 'coarse'}")
    return 0


def _cmd_labelme(args) -> int:
    from .data.labelme import import_labelme_files

    holes = {s.strip() for s in args.hole_labels.split(",") if s.strip()}
    written = import_labelme_files(args.files, args.out, hole_labels=holes)
    print(f"{len(written)} coarse masks written to {args.out}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s: %(message)s", stream=sys.stderr)
    logging.getLogger("pyvips").setLevel(logging.CRITICAL)  # we report libvips errors ourselves
    try:
        return args.func(args)
    except Cancelled:
        print("priorpath: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("priorpath: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except PriorPathError as exc:
        print(f"priorpath: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
