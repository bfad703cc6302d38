"""Generation per class (issue 17 part 3): what the he3 models' card and docs/classes_generated.jpg report.

1. ``data``: labelled osteosarcoma-only train and held-out folders, split by patient as
   ``benchmarks/mask_models.py split`` splits them (FROM/train, FROM/heldout, e.g. /work/runs): the
   osteosarcoma patches of each are hard-linked into WORK/train and WORK/heldout and labelled by the he3 rule
   (``label_prepared``, per-slide thresholds from each folder's own patches). FROM is not modified.
2. ``eval``: with the class-aware models (default: the shipped mask_he3 and rgb_he3),
   - coarse -> fine label maps for every held-out coarse label map (seeds 0 and 1): class fractions, where
     the nuclei fall (share of tissue that is nuclei inside each coarse class), against the real fine maps;
   - fine label map -> RGB for ``--rgb-n`` real held-out fine maps and as many generated ones: per-class IoU
     of the he3 rule applied to the tile (with its slide's threshold) against the map, the nuclei IoU of the
     copied tissue before the nuclei are painted, and what the painted nuclei look like (texture: the luma
     spread inside each nucleus blob; a flat dot has none) against the held-out real tiles' nuclei;
   - milliseconds per 256x512 tile (one thread: ``OMP_NUM_THREADS=1`` is set, the machine may be shared).

    python benchmarks/class_generation.py data --from /work/runs --work WORK
    python benchmarks/class_generation.py eval --work WORK [--mask-model CKPT] [--rgb-model CKPT] [--results FILE]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # timings on a shared 2-core machine: no OpenMP spin contention

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer import quilting_classes  # noqa: E402
from trainer.data.classes import read_label_png  # noqa: E402
from trainer.data.labels import NUCLEI, STROMA, he3_labels, label_prepared  # noqa: E402
from trainer.data.masks import luma  # noqa: E402
from trainer.data.prepare import link_subset, read_manifest  # noqa: E402
from trainer.inference import Engine, default_model_path  # noqa: E402


def make_data(source: Path, work: Path) -> None:
    for part in ("train", "heldout"):
        stems = [r["stem"] for r in read_manifest(source / part) if "osteosarcoma" in r["source"]]
        out = link_subset(source / part, work / part, stems)
        label_prepared(out)
        print(f"{part}: {len(stems)} osteosarcoma patches, labelled -> {out}")


def iou(a: np.ndarray, b: np.ndarray, c: int) -> float:
    union = np.count_nonzero((a == c) | (b == c))
    return np.count_nonzero((a == c) & (b == c)) / union if union else 1.0


def nucleus_spread(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Luma standard deviation inside each nucleus blob of at least 20 px (chromatin texture)."""
    n, comp, stats, _ = cv2.connectedComponentsWithStats((labels == NUCLEI).astype(np.uint8), connectivity=8)
    y = luma(rgb).astype(np.float32).ravel()
    flat = comp.ravel()
    big = np.nonzero(stats[:, cv2.CC_STAT_AREA] >= 20)[0]
    big = big[big > 0]
    if not len(big):
        return np.zeros(0)
    counts = np.bincount(flat, minlength=n)
    mean = np.bincount(flat, y, minlength=n) / np.maximum(counts, 1)
    var = np.bincount(flat, y * y, minlength=n) / np.maximum(counts, 1) - mean ** 2
    return np.sqrt(np.maximum(var[big], 0))


def mask_stage(engine: Engine, held: Path) -> tuple[dict, list[np.ndarray]]:
    stems = [r["stem"] for r in read_manifest(held)]
    stats = {k: [] for k in ("real_frac", "gen_frac", "real_in", "gen_in", "real_out", "gen_out", "differ", "ms")}
    generated = []
    for stem in stems:
        coarse, _ = read_label_png(held / "coarse_labels" / f"{stem}.png")
        real, _ = read_label_png(held / "labels" / f"{stem}.png")
        start = time.perf_counter()
        fine = engine.fine_labels(coarse, 0)
        stats["ms"].append(1000 * (time.perf_counter() - start))
        other = engine.fine_labels(coarse, 1)
        generated.append(fine)
        stats["differ"].append(float((fine != other).mean()))
        for name, labels in (("real", real), ("gen", fine)):
            nuclei = np.count_nonzero(labels == NUCLEI)
            stats[f"{name}_out"].append(np.count_nonzero((labels == NUCLEI) & (coarse == 0)) / max(1, nuclei))
            stats[f"{name}_frac"].append(np.bincount(labels.ravel(), minlength=3)[:3] / labels.size)
            # nuclei per tissue pixel inside the coarse stroma and coarse nuclei-dense regions
            stats[f"{name}_in"].append([np.count_nonzero((labels == NUCLEI) & (coarse == c)) /
                                        max(1, np.count_nonzero((labels != 0) & (coarse == c)))
                                        for c in (STROMA, NUCLEI)])
    return stats, generated


def rgb_stage(engine: Engine, maps: list[np.ndarray], seed0: int) -> dict:
    stats = {k: [] for k in ("iou", "before", "painted", "ms", "spread")}
    copied = {}
    paint = quilting_classes.paint_nuclei

    def spy(out, target, t, *rest):  # the nuclei of the copied tissue, before any painting
        copied["iou"] = iou(he3_labels(out, t), target, NUCLEI)
        paint(out, target, t, *rest)

    quilting_classes.paint_nuclei = spy
    try:
        for k, labels in enumerate(maps):
            start = time.perf_counter()
            result = engine.rgb_labels(labels, seed0 + k, details=True)
            stats["ms"].append(1000 * (time.perf_counter() - start))
            got = he3_labels(result.rgb, result.nuclei_threshold)
            stats["iou"].append([iou(got, labels, c) for c in range(3)])
            stats["before"].append(copied["iou"])
            stats["painted"].append(result.painted)
            stats["spread"].extend(nucleus_spread(result.rgb, got))
    finally:
        quilting_classes.paint_nuclei = paint
    return stats


def sketch_stage(mask_model: Path, rgb_model: Path, held: Path, train: Path, n: int) -> list[str]:
    """Sketch -> tile by both paths on ``n`` held-out coarse label maps: crop FID against the held-out real tiles
    (500 random 128 px crops with at least half tissue, Inception features as ``rgb_realism.py``), how well the
    tile follows the sketch (per-class IoU of the coarse rule applied to the fine map against the sketch), the
    rule's nuclei IoU between tile and fine map, ms per tile. Real tiles of the training patients are the floor."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from rgb_realism import crops, features

    from trainer.data.labels import coarse_labels
    from trainer.metrics.frechet import fid
    from trainer.metrics.inception import InceptionFeatures

    def tissue(labels):
        return (labels > 0).astype(np.uint8)

    def rgb_of(folder, stem):
        return cv2.cvtColor(cv2.imread(str(folder / "rgb" / f"{stem}.png")), cv2.COLOR_BGR2RGB)

    stems = [r["stem"] for r in read_manifest(held)]
    pick = np.linspace(0, len(stems) - 1, n).round().astype(int)
    real = [rgb_of(held, stems[i]) for i in pick]
    real_maps = [read_label_png(held / "labels" / f"{stems[i]}.png")[0] for i in pick]
    extractor = InceptionFeatures("cpu")
    ref = features(extractor, crops(real, [tissue(m) for m in real_maps], 500, seed=1))
    train_stems = [r["stem"] for r in read_manifest(train)]
    floor_pick = np.linspace(0, len(train_stems) - 1, n).round().astype(int)
    floor_tiles = [rgb_of(train, train_stems[i]) for i in floor_pick]
    floor_maps = [read_label_png(train / "labels" / f"{train_stems[i]}.png")[0] for i in floor_pick]
    lines = ["", f"## Sketch -> tile: the two paths ({n} held-out coarse label maps, seed k for the k-th)", "",
             "Crop FID against the held-out real tiles (500 random 128 px crops with at least half tissue); sketch "
             "agreement: per-class IoU of the coarse rule (`coarse_labels`) applied to the fine map against the "
             "sketch (the held-out coarse maps were made by that rule from real fine maps, so real tissue would score "
             "1); rule: nuclei IoU of the he3 rule on the tile against the fine map.", "",
             "| path | crop FID | sketch IoU air | stroma | nuclei-dense | rule nuclei IoU | ms per tile (median) |",
             "|---|---|---|---|---|---|---|",
             f"| real tiles of the training patients (floor) | "
             f"{fid(ref, features(extractor, crops(floor_tiles, [tissue(m) for m in floor_maps], 500, seed=2))):.1f}"
             f" | — | — | — | — | — |"]
    for path in ("joint", "staged"):
        engine = Engine(mask_model, rgb_model, device="cpu", sketch_path=path)
        tiles, fines, agree, rule, ms = [], [], [], [], []
        for k, i in enumerate(pick):
            coarse, _ = read_label_png(held / "coarse_labels" / f"{stems[i]}.png")
            start = time.perf_counter()
            if path == "joint":
                fine, result = engine.sketch_labels(coarse, k)
            else:
                fine = engine.fine_labels(coarse, k)
                result = engine.rgb_labels(fine, k, details=True)
            ms.append(1000 * (time.perf_counter() - start))
            back = coarse_labels(fine)
            agree.append([iou(back, coarse, c) for c in range(3)])
            rule.append(iou(he3_labels(result.rgb, result.nuclei_threshold), fine, NUCLEI))
            tiles.append(result.rgb)
            fines.append(fine)
        value = fid(ref, features(extractor, crops(tiles, [tissue(m) for m in fines], 500, seed=2)))
        a = np.mean(agree, 0)
        lines.append(f"| {path} | {value:.1f} | {a[0]:.3f} | {a[1]:.3f} | {a[2]:.3f} | {np.mean(rule):.4f} | "
                     f"{np.median(ms):.0f} |")
        print(lines[-1], flush=True)
    return lines


def evaluate(work: Path, mask_model: Path, rgb_model: Path, rgb_n: int) -> str:
    held = work / "heldout"
    engine = Engine(mask_model, rgb_model, device="cpu")
    masks, generated = mask_stage(engine, held)
    stems = [r["stem"] for r in read_manifest(held)]
    pick = np.linspace(0, len(stems) - 1, rgb_n).round().astype(int)
    real_maps = [read_label_png(held / "labels" / f"{stems[i]}.png")[0] for i in pick]
    from_real = rgb_stage(engine, real_maps, 0)
    from_gen = rgb_stage(engine, [generated[i] for i in pick], 1000)
    real_spread = []
    for i in pick:
        rgb = cv2.cvtColor(cv2.imread(str(held / "rgb" / f"{stems[i]}.png")), cv2.COLOR_BGR2RGB)
        real_spread.extend(nucleus_spread(rgb, read_label_png(held / "labels" / f"{stems[i]}.png")[0]))

    def f(v, d=3):
        return f"{v:.{d}f}"

    lines = [f"# Generation per class (he3): held-out osteosarcoma patients", "",
             f"`python benchmarks/class_generation.py eval --work {work} --rgb-n {rgb_n}`, {datetime.date.today()}, "
             f"{platform.machine()}, one thread. Mask model `{mask_model.name}`, RGB model `{rgb_model.name}`. "
             f"Held out: {len(stems)} patches of patients Case-3 and Case-48 (never in either model).", "",
             "## Coarse label map -> fine label map (every held-out coarse label map, seed 0)", "",
             "| | air | stroma | nuclei | nuclei per tissue px in coarse stroma | in coarse nuclei-dense "
             "| share of nuclei px on coarse air |",
             "|---|---|---|---|---|---|---|"]
    for name in ("real", "gen"):
        fr, inside = np.mean(masks[f"{name}_frac"], 0), np.mean(masks[f"{name}_in"], 0)
        lines.append(f"| {'real fine maps' if name == 'real' else 'generated'} | {f(fr[0])} | {f(fr[1])} | "
                     f"{f(fr[2])} | {f(inside[0])} | {f(inside[1])} | {f(np.mean(masks[f'{name}_out']))} |")
    lines += ["", f"- Seeds 0 and 1 differ in {100 * np.mean(masks['differ']):.1f} % of pixels; "
              f"{np.median(masks['ms']):.0f} ms per 256x512 map (median).", "",
              "## Fine label map -> RGB: the he3 rule on the tile against the map", "",
              "| maps | N | IoU air (mean, min) | IoU stroma | IoU nuclei | nuclei IoU of the copy before painting "
              "| pixels painted | ms per tile (median) |", "|---|---|---|---|---|---|---|---|"]
    for name, s in (("real held-out fine maps", from_real), ("generated fine maps", from_gen)):
        m, lo = np.mean(s["iou"], 0), np.min(s["iou"], 0)
        lines.append(f"| {name} | {len(s['iou'])} | {f(m[0], 4)}, {f(lo[0], 4)} | {f(m[1], 4)}, {f(lo[1], 4)} | "
                     f"{f(m[2], 4)}, {f(lo[2], 4)} | {f(np.mean(s['before']))} | "
                     f"{100 * np.mean(s['painted']):.1f} % | {np.median(s['ms']):.0f} |")
    spreads = [("real held-out tiles", np.asarray(real_spread)), ("from real maps", np.asarray(from_real["spread"])),
               ("from generated maps", np.asarray(from_gen["spread"]))]
    lines += ["", "## What the nuclei look like", "",
              "Luma standard deviation inside each nucleus blob of at least 20 px (the chromatin texture; a flat "
              "painted dot would have about 0):", "",
              "| nuclei of | blobs | median | 10th percentile | share under 3 grey levels |", "|---|---|---|---|---|"]
    for name, v in spreads:
        lines.append(f"| {name} | {len(v)} | {f(np.median(v), 1)} | {f(np.percentile(v, 10), 1)} | "
                     f"{100 * np.mean(v < 3):.1f} % |")
    lines += sketch_stage(mask_model, rgb_model, held, work / "train", rgb_n)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data")
    d.add_argument("--from", dest="source", type=Path, required=True)
    d.add_argument("--work", type=Path, required=True)
    e = sub.add_parser("eval")
    e.add_argument("--work", type=Path, required=True)
    e.add_argument("--mask-model", type=Path, default=default_model_path("mask", "he3"))
    e.add_argument("--rgb-model", type=Path, default=default_model_path("rgb", "he3"))
    e.add_argument("--rgb-n", type=int, default=40)
    e.add_argument("--results", type=Path, default=None)
    args = parser.parse_args()
    if args.cmd == "data":
        make_data(args.source, args.work)
        return
    text = evaluate(args.work, args.mask_model, args.rgb_model, args.rgb_n)
    print(text)
    if args.results:
        args.results.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
