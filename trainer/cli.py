"""The ``priorpath`` command line. Each subcommand is a thin shell around a `trainer` function."""
from __future__ import annotations

import argparse
import logging
import os
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


def _workers(text: str):
    from .pool import parse_workers

    try:
        return parse_workers(text)
    except PriorPathError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got '{text}'")


def _shard(text: str) -> tuple[int, int]:
    from .export import parse_shard

    try:
        return parse_shard(text)
    except PriorPathError:
        raise argparse.ArgumentTypeError(f"expected K/N, shard K of N counted from 0 (0 <= K < N), got '{text}'")


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
    p.add_argument("--labels", choices=["he3"], default=None,
                   help="also write class label maps by rule: he3 = air, stroma, nuclei (labels/, coarse_labels/, "
                        "classes.json; H&E only)")
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
    lm.add_argument("--classes", default=None, metavar="FILE|auto",
                    help="write indexed label maps instead of masks: shapes paint the class their label names in "
                         "this classes.json, or in a table made from all labels (auto); writes OUT/classes.json")
    lm.set_defaults(func=_cmd_labelme)
    t = sub.add_parser("train", parents=[common], help="train a model (pix2pix, cyclegan, pix2pixhd, dcgan, depas, analogy, quilt)",
                       description="Train on a folder written by 'priorpath prepare'. Settings come from the paper's "
                                   "defaults, then --config, then these flags. Writes RUNDIR/checkpoints/*.safetensors, "
                                   "RUNDIR/events.jsonl and RUNDIR/samples/. Ctrl-C stops cleanly with a checkpoint; "
                                   "--resume continues exactly where a run stopped. Several processes: "
                                   "torchrun --nproc_per_node N -m trainer.cli train ...")
    t.add_argument("--model", default=None, help="pix2pix (default), cyclegan, pix2pixhd, dcgan, depas, analogy (example-based coarse->fine) or quilt (example-based fine->RGB)")
    t.add_argument("--data", type=Path, default=None, help="prepared folder (coarse/, fine/, rgb/, manifest.csv)")
    t.add_argument("--out", required=True, type=Path, metavar="RUNDIR", help="run folder")
    t.add_argument("--config", type=Path, default=None, metavar="F", help="TOML/JSON file with [train] and [model] tables")
    t.add_argument("--size", type=_size, default=None, metavar="HxW", help="working size (default: the patches' size)")
    t.add_argument("--epochs", type=int, default=None, metavar="N", help="total epochs (default 100)")
    t.add_argument("--decay-epochs", type=int, default=None, metavar="M",
                   help="last M epochs decay the learning rate linearly to 0 (default: half of the epochs)")
    t.add_argument("--batch-size", type=int, default=None, metavar="B", help="batch per process (default 1)")
    t.add_argument("--max-steps", type=int, default=None, metavar="N", help="stop after N optimizer steps in total")
    t.add_argument("--device", default=None, choices=("auto", "cpu", "cuda", "mps"), help="default auto")
    t.add_argument("--seed", type=int, default=None, metavar="S", help="random seed (default 0)")
    t.add_argument("--checkpoint-every", type=int, default=None, metavar="N", help="steps between checkpoints (default 1000)")
    t.add_argument("--sample-every", type=int, default=None, metavar="N", help="steps between sample images (default 500)")
    t.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a model option, e.g. --option ngf=32 (repeatable; see docs/models.md)")
    t.add_argument("--resume", action="store_true", help="continue the run in RUNDIR")
    t.set_defaults(func=_cmd_train)
    ev = sub.add_parser("eval", parents=[common], help="compare generated masks with real ones (FID, KID, KS, KL, PRDC, t-SNE grid)",
                        description="Compare folders of generated masks with a folder of real masks (a folder written by "
                                    "'priorpath prepare' means its fine/ masks). Writes REPORT/metrics.json, metrics.csv "
                                    "(the paper's Table 2 layout), meta.json, per_mask.csv, tsne.png, grid.png and "
                                    "histograms.png. Inception features are cached per mask, so a rerun is cheap. When both sets "
                                    "hold label maps (a prepared/export folder with labels/ and classes.json, or a folder "
                                    "of indexed PNGs with classes.json in it or its parent), it also reports per-class KS "
                                    "and KL on class fractions and FID on coloured label maps.")
    ev.add_argument("--real", required=True, type=Path, metavar="DIR", help="folder of real masks (0/255 PNGs)")
    ev.add_argument("--fake", required=True, action="append", type=_named_folder, metavar="NAME=DIR",
                    help="a generated set and its folder (repeatable)")
    ev.add_argument("--out", required=True, type=Path, metavar="REPORT", help="report folder")
    ev.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: a GPU if there is one)")
    ev.add_argument("--dataset", default=None, help="dataset name in metrics.csv (default: the real folder's name)")
    ev.add_argument("--cache", type=Path, default=None, metavar="DIR",
                    help="feature cache folder (default: $PRIORPATH_FEATURE_CACHE or ~/.cache/priorpath/features)")
    ev.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    ev.add_argument("--batch-size", type=int, default=32, metavar="B", help="masks per Inception batch (default 32)")
    ev.add_argument("--seed", type=int, default=0, help="seed for t-SNE and KID subsets (default 0)")
    ev.set_defaults(func=_cmd_eval)

    cm = sub.add_parser("compact-model", parents=[common], help="shrink a checkpoint for inference (fp16, no optimizer)",
                        description="Write a copy of a training checkpoint with only what inference needs: weights as "
                                    "float16 (unless --fp32) and extra model state; optimizer moments and RNG states "
                                    "are dropped, so the copy cannot be resumed.")
    cm.add_argument("checkpoint", type=Path, metavar="CKPT", help="a checkpoint written by 'priorpath train'")
    cm.add_argument("--out", required=True, type=Path, metavar="FILE", help="the compact .safetensors file")
    cm.add_argument("--fp32", action="store_true", help="keep float32 weights")
    cm.set_defaults(func=_cmd_compact)

    models = argparse.ArgumentParser(add_help=False)
    models.add_argument("--mask-model", default=None, metavar="CKPT",
                        help="coarse->fine checkpoint (default: the shipped default model)")
    models.add_argument("--rgb-model", default=None, metavar="CKPT",
                        help="fine->RGB checkpoint (default: the shipped default model; 'none' stops at fine masks)")
    models.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="default auto")
    models.add_argument("--seed", type=int, default=0, help="random seed (same seed, same outputs; default 0)")
    models.add_argument("--style", nargs="+", type=Path, default=None, metavar="DIR|FILE",
                        help="stain reference: real H&E tiles, folders of them, or a prepared folder. The quilt RGB "
                             "model copies tissue from them; neural RGB models are stain-normalised to them")
    models.add_argument("--sketch-path", choices=("auto", "joint", "staged"), default="auto",
                        help="class sketches (--coarse-labels, export --classes): joint = real tissue copied to the "
                             "sketch in one pass, the fine label map read from it by the he3 rule (realistic; "
                             "follows the sketch as closely as the library allows); staged = the mask model draws "
                             "the fine map, then the tile is made to obey it (follows the sketch more closely, "
                             "nuclei partly painted). auto (default): joint where the RGB model can")
    models.add_argument("--workers", type=_workers, default="auto", metavar="N|auto",
                        help="processes drawing samples (default auto: one per CPU core; on CUDA one per GPU, "
                             "and with one GPU this process; 1 = this process). Same output for any N")
    g = sub.add_parser("generate", parents=[common, models], help="coarse masks -> fine masks -> RGB tiles",
                       description="Write OUT/fine/<stem>.png (binary, the input's size) and OUT/rgb/<stem>.png for "
                                   "every coarse mask (binary PNG/TIFF or Labelme JSON) given; with --fine, fine masks "
                                   "the user already has go straight to OUT/rgb.")
    given = g.add_mutually_exclusive_group(required=True)
    given.add_argument("--coarse", nargs="+", type=Path, metavar="DIR|FILE", help="coarse masks or folders")
    given.add_argument("--fine", nargs="+", type=Path, metavar="DIR|FILE",
                       help="fine masks or folders: skip the mask stage and draw RGB tiles for them")
    given.add_argument("--coarse-labels", nargs="+", type=Path, metavar="DIR|FILE",
                       help="coarse label maps (indexed PNGs; classes.json beside them) -> OUT/labels/<stem>.png "
                            "(indexed fine label maps), OUT/rgb and OUT/classes.json; the models default to the "
                            "class-aware mask_he3 and rgb_he3")
    given.add_argument("--fine-labels", nargs="+", type=Path, metavar="DIR|FILE",
                       help="fine label maps: skip the mask stage and draw RGB tiles whose he3 labels are the maps")
    g.add_argument("--out", type=Path, help="output folder (not with --slide)")
    g.add_argument("--variations", type=int, default=1, metavar="K",
                   help="K samples per input, <stem>_v0 ... with seeds S ... S+K-1 (default 1)")
    slide = g.add_argument_group("whole slide", "one coarse sketch, drawn at reduced resolution, generated tile by "
                                 "tile into a pyramidal TIFF that OpenSlide and QuPath open")
    slide.add_argument("--slide", type=Path, metavar="OUT.tif",
                       help="write OUT.tif (RGB), OUT.mask.tif (fine mask), OUT.fine.geojson (its outline) and "
                            "OUT.geojson (the sketch)")
    slide.add_argument("--scale", type=int, default=1, metavar="N",
                       help="the slide is N times the sketch's size (default 1)")
    slide.add_argument("--mpp", type=float, default=None, help="microns per pixel to record at level 0")
    slide.add_argument("--lossless", action="store_true",
                       help="deflate instead of JPEG tiles: exact pixels, so the RGB is an exact label")
    g.set_defaults(func=_cmd_generate)

    x = sub.add_parser("export", parents=[common, models], help="a synthetic dataset: coarse, fine, RGB and manifest",
                       description="Grow a synthetic dataset from sketches: OUT/coarse, OUT/fine, OUT/rgb and "
                                   "OUT/manifest.csv, the layout 'prepare' writes. Rerunning the same command after an "
                                   "interruption continues it; a larger --count extends it.")
    x.add_argument("--sketches", required=True, nargs="+", type=Path, metavar="DIR|FILE",
                   help="sketches: mask images or Labelme JSON, or folders of them")
    x.add_argument("--count", required=True, type=int, metavar="N", help="number of samples")
    x.add_argument("--stop-at-bad-sketch", action="store_true",
                   help="stop at the first unreadable sketch file (default: skip them all and list them)")
    x.add_argument("--out", required=True, type=Path, help="output folder")
    x.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                   help="augment the sketches (default) or use them as they are")
    x.add_argument("--size", type=_size, default=None, metavar="HxW",
                   help="sample size (default: the size the mask model was trained at)")
    x.add_argument("--classes", choices=["he3"], default=None,
                   help="the sketches are label maps (indexed PNGs; classes.json beside them): models default to "
                        "mask_he3/rgb_he3, and OUT gets labels/, coarse_labels/ and classes.json (a class-aware "
                        "--mask-model does this too)")
    x.add_argument("--shard", type=_shard, default=None, metavar="K/N",
                   help="make shard K (0 to N-1) of an N-way split: the samples i with i mod N = K; "
                        "join the N shard folders with merge-exports")
    x.set_defaults(func=_cmd_export)

    mg = sub.add_parser("merge-exports", parents=[common],
                        help="join the shards of 'export --shard K/N' into one export",
                        description="Join the N shard folders of one export (made with --shard 0/N ... N-1/N) into "
                                    "OUT: the files of all shards, one sorted manifest.csv and the export.json of "
                                    "an unsharded export. Shards of other settings, missing, duplicated or "
                                    "unfinished shards, and an OUT holding something else are refused.")
    mg.add_argument("shards", nargs="+", type=Path, metavar="SHARD_DIR", help="the shard folders, all of them")
    mg.add_argument("--out", required=True, type=Path, help="output folder (new or empty)")
    mg.set_defaults(func=_cmd_merge)
    return parser


def _cmd_prepare(args) -> int:
    from .data.prepare import PrepareSettings, prepare

    settings = PrepareSettings(stain=args.stain, patch=args.patch, stride=args.stride, threshold=args.threshold,
                               max_background=args.max_background, level=args.level, labels=args.labels)
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
    classes = args.classes
    if classes is not None and classes != "auto":
        from .data.classes import read_class_table

        classes = read_class_table(classes)
    written = import_labelme_files(args.files, args.out, hole_labels=holes, classes=classes)
    kind = "coarse label maps" if classes is not None else "coarse masks"
    print(f"{len(written)} {kind} written to {args.out}")
    return 0


def _train_settings(args) -> tuple[dict, dict]:
    """(training settings, model options) from --config and the flags given explicitly, flags winning."""
    from .config import read_config_file

    train, options = read_config_file(args.config) if args.config else ({}, {})
    flags = {"model": args.model, "data": str(args.data.resolve()) if args.data else None, "size": args.size,
             "epochs": args.epochs, "decay_epochs": args.decay_epochs, "batch_size": args.batch_size,
             "max_steps": args.max_steps, "device": args.device, "seed": args.seed,
             "checkpoint_every": args.checkpoint_every, "sample_every": args.sample_every}
    train.update({k: v for k, v in flags.items() if v is not None})
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise PriorPathError(f"--option expects KEY=VALUE, got '{item}'")
        options[key.strip()] = value.strip()
    return train, options


def _cmd_train(args) -> int:
    import signal

    from .config import make_config
    from .jobs import CancelToken
    from .train import resume_config, train

    settings, options = _train_settings(args)
    if options:
        settings["options"] = options
    config = resume_config(args.out, settings) if args.resume else make_config(settings)
    cancel = CancelToken()

    def stop(signum, frame):  # first Ctrl-C/SIGTERM: stop cleanly with a checkpoint; second: abort
        if cancel.cancelled:
            raise KeyboardInterrupt
        print("\npriorpath: stopping after this step (Ctrl-C again to abort without a checkpoint)", file=sys.stderr)
        cancel.cancel()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    bar = _Bar("step", enabled=not args.no_progress and int(os.environ.get("RANK", "0")) == 0)
    try:
        result = train(config, args.out, resume=args.resume, progress=bar, cancel=cancel)
    finally:
        bar.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{config.model}: {result.step}/{result.total_steps} steps in {result.seconds:.0f} s; "
              f"checkpoint {result.checkpoint}")
    return 0


def _named_folder(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name.strip() or not folder.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got '{text}'")
    return name.strip(), Path(folder.strip())


def _cmd_eval(args) -> int:
    from .metrics.report import EvalSettings, evaluate

    settings = EvalSettings(device=args.device, dataset=args.dataset, cache_dir=args.cache,
                            use_cache=not args.no_cache, batch_size=args.batch_size, seed=args.seed)
    bar = _Bar("mask", enabled=not args.no_progress)
    start = time.perf_counter()
    try:
        result = evaluate(args.real, args.fake, args.out, settings, progress=bar)
    finally:
        bar.close()
    print(f"real: {len(result.real)} masks from {result.real.folder}")
    header = f"{'set':<20} {'N':>6} {'FID':>9} {'KID':>8} {'KS':>6} {'KL':>7} {'prec':>6} {'recall':>6} " \
             f"{'dens':>6} {'cover':>6} {'cells':>6}"
    print(header)
    for name, m in result.metrics.items():
        print(f"{name:<20} {m['n']:>6} {m['fid']:>9.2f} {m['kid']:>8.4f} {m['ks']:>6.3f} {m['kl']:>7.3f} "
              f"{m['precision']:>6.3f} {m['recall']:>6.3f} {m['density']:>6.3f} {m['coverage']:>6.3f} "
              f"{m['cells_covered']:>6.2f}")
    for name, m in result.metrics.items():  # label maps: only sets compared class by class have these
        if "fid_labels" in m:
            per_class = ", ".join(f"{c} {m[f'ks_class_{c}']:.3f}/{m[f'kl_class_{c}']:.3f}"
                                  for c in m["class_fraction_mean"])
            print(f"{name}: label maps N {m['n_labels']}, FID {m['fid_labels']:.2f}; class fraction KS/KL: {per_class}")
    print(f"{result.computed} masks through Inception in {time.perf_counter() - start:.1f} s; report in {args.out}")
    return 0


def _cmd_compact(args) -> int:
    from .checkpoint import compact_checkpoint

    sizes = compact_checkpoint(args.checkpoint, args.out, half=not args.fp32)
    print(f"{args.out}: {sizes['after'] / 1e6:.1f} MB (from {sizes['before'] / 1e6:.1f} MB)")
    return 0


def _engine(args):
    from .inference import Engine

    from .inference import default_model_path

    fine_given = bool(getattr(args, "fine", None) or getattr(args, "fine_labels", None))  # no mask stage
    if fine_given and args.rgb_model is not None and str(args.rgb_model).lower() == "none":
        raise PriorPathError("generate --fine draws RGB tiles: it needs an RGB model, not --rgb-model none")
    mask_model, rgb_model = args.mask_model, args.rgb_model
    classes = "he3" if getattr(args, "coarse_labels", None) or getattr(args, "fine_labels", None) else \
        getattr(args, "classes", None)
    if classes:  # label maps: the class-aware defaults
        mask_model = default_model_path("mask", classes) if mask_model is None else mask_model
        rgb_model = default_model_path("rgb", classes) if rgb_model is None else rgb_model
    engine = Engine("none" if fine_given else mask_model, rgb_model, device=args.device, style=args.style,
                    sketch_path=getattr(args, "sketch_path", "auto"))
    if engine.style:
        log.info("style: %s", engine.style)
    for role, label in engine.describe().items():
        log.info("%s model: %s", role, label)
    return engine


def _with_cancel(run):
    """Run ``run(cancel)`` with the first Ctrl-C/SIGTERM turned into a clean stop after the current item."""
    import signal

    from .jobs import CancelToken

    cancel = CancelToken()

    def stop(signum, frame):
        if cancel.cancelled:
            raise KeyboardInterrupt
        print("\npriorpath: stopping after this sample (Ctrl-C again to abort)", file=sys.stderr)
        cancel.cancel()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return run(cancel)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _cmd_generate(args) -> int:
    from .generate import generate_files

    if args.slide is not None:
        return _cmd_slide(args)
    if args.out is None:
        raise PriorPathError("generate needs --out DIR (or --slide OUT.tif for a whole slide)")
    engine = _engine(args)
    bar = _Bar("sample", enabled=not args.no_progress)
    inputs = args.coarse or args.fine or args.coarse_labels or args.fine_labels
    labels = bool(args.coarse_labels or args.fine_labels)
    try:
        result = _with_cancel(lambda cancel: generate_files(inputs, args.out, engine, seed=args.seed,
                                                            variations=args.variations, progress=bar, cancel=cancel,
                                                            stage="rgb" if args.fine or args.fine_labels else "fine",
                                                            workers=args.workers, labels=labels))
    finally:
        bar.close()
    where = " and ".join(str(d) for d in (result.fine_dir, result.rgb_dir) if d is not None)
    print(f"{result.written} samples written to {where}")
    return 0


def _cmd_slide(args) -> int:
    from .generate import read_coarse
    from .slide import estimate_seconds, generate_slide, plan_slide

    if not args.coarse or len(args.coarse) != 1 or args.coarse[0].is_dir():
        raise PriorPathError("--slide makes one slide: give one sketch file with --coarse (label maps cannot make "
                             "slides yet)")
    if args.out is not None or args.variations != 1:
        raise PriorPathError("--slide writes OUT.tif and its companions: leave out --out and --variations")
    sketch = read_coarse(args.coarse[0], geojson_scale=args.scale)  # a slide's GeoJSON is in level-0 pixels
    plan = plan_slide(sketch, args.scale)
    engine = _engine(args)
    seconds = estimate_seconds(engine, sketch, args.scale)
    print(f"slide: {plan.describe()}; about {_duration(seconds)} on this machine", flush=True)
    bar = _Bar("tile", enabled=not args.no_progress)
    try:
        result = _with_cancel(lambda cancel: generate_slide(sketch, args.scale, args.slide, engine, seed=args.seed,
                                                            mpp=args.mpp, lossless=args.lossless, progress=bar,
                                                            cancel=cancel))
    finally:
        bar.close()
    print(f"{result.rgb}, {result.mask.name}, {result.fine_annotations.name} and {result.annotations.name} written "
          f"in {result.seconds:.0f} s")
    return 0


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _cmd_export(args) -> int:
    from .export import export_dataset

    engine = _engine(args)
    if args.classes and (engine.mask is None or getattr(engine.mask.module, "table", None) is None):
        raise PriorPathError(f"--classes {args.classes}: the mask model is binary; give a class-aware --mask-model")
    bar = _Bar("sample", enabled=not args.no_progress)
    start = time.perf_counter()
    try:
        result = _with_cancel(lambda cancel: export_dataset(args.sketches, args.out, args.count, engine,
                                                            augment=args.augment, seed=args.seed, size=args.size,
                                                            progress=bar, cancel=cancel, workers=args.workers,
                                                            shard=args.shard,
                                                            stop_at_bad_sketch=args.stop_at_bad_sketch))
    finally:
        bar.close()
    for line in result.skipped:
        print(f"skipped: {line}")
    print(f"{result.count} samples in {result.out} ({result.generated} made now, in "
          f"{time.perf_counter() - start:.0f} s)")
    return 0


def _cmd_merge(args) -> int:
    from .merge import merge_exports

    bar = _Bar("sample", enabled=not args.no_progress)
    try:
        result = _with_cancel(lambda cancel: merge_exports(args.shards, args.out, progress=bar, cancel=cancel))
    finally:
        bar.close()
    print(f"{result.count} samples from {len(args.shards)} shards in {result.out}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s: %(message)s", stream=sys.stderr)
    logging.getLogger("pyvips").setLevel(logging.CRITICAL)  # we report libvips errors ourselves
    try:
        return args.func(args)
    except Cancelled as exc:
        print(f"priorpath: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("priorpath: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except PriorPathError as exc:
        print(f"priorpath: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
