"""Realism of fine->RGB generation on slide regions held out from every library and model.

    python benchmarks/rgb_realism.py --work /work/runs [--crops 500] [--results FILE] [--quilt CKPT]

WORK is the folder ``benchmarks/mask_models.py split`` wrote: WORK/train (the slides the default models and
library were built from) and WORK/heldout (osteosarcoma patients never seen). Protocol:

- **Regions.** Every held-out slide (osteosarcoma: patient and specimen block, e.g. ``Case-3-A17``) with at
  least two source images is split by image, alternately, into region A and region B. Region B's real fine
  masks are the layouts to draw; region B's real RGB tiles are the reference set.
- **Sets**, each generated from the same region-B fine masks (seed 0, or ``--seed``) unless said otherwise:
  ``floor``: the real tiles of region A (real tissue of the same slides, another place);
  ``quilt --style A``: the example-based model with its library built from region A (of the same slide);
  ``quilt --style A, before the label correction``: the same, its pasted pixels left as they are (not
  label-exact; what the correction costs in realism);
  ``quilt``: the example-based model with the shipped library (training slides only);
  ``pix2pixhd``: the shipped neural model, and the same with Macenko normalisation to region A;
  ``flat colours``: the mask painted in region A's mean tissue and air colours;
  ``blurred real``: region B's own real tiles blurred with a 1 px Gaussian (how much FID punishes blur).
- **Metrics.** Crop FID: Inception features of ``--crops`` random 128 px crops per set, taken where the
  layout holds at least half tissue (cell-scale texture; the tile layout left out), against as many crops
  of the reference; whole-tile FID and KID; label IoU (the paper's rule, luma > 204 = air, applied to the
  output against the mask it was drawn from); ms per 256x512 tile on this machine (median).
- **Tuning.** ``--half tune`` keeps every other held-out slide (sorted by name, from the first), ``--half test``
  the rest: settings are tuned on one half (with ``--only``, ``--option`` and ``--seed``) and checked on the
  other, so the held-out set that is reported was not tuned on. Runs with any of these flags record nothing.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer.data.masks import luma  # noqa: E402
from trainer.inference import Engine, default_model_path  # noqa: E402
from trainer.metrics.frechet import fid, kid  # noqa: E402
from trainer.metrics.inception import InceptionFeatures  # noqa: E402
from trainer.quilting import synthesize  # noqa: E402
from trainer.stain import StainNormaliser  # noqa: E402

SLIDE = re.compile(r"(Case-\d+-(?:P\d+-)?[A-Z]\d+)")
CROP = 128


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def regions(held: Path) -> tuple[list[str], list[str], dict[str, str]]:
    """Stems of region A and region B (split by source image within each held-out slide), and each stem's slide."""
    by_slide: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for p in sorted((held / "rgb").glob("*.png")):
        m = SLIDE.search(p.stem)
        if m:
            by_slide[m.group(1)][p.stem.rsplit("_x", 1)[0]].append(p.stem)
    a, b, slide_of = [], [], {}
    for slide, images in sorted(by_slide.items()):
        if len(images) < 2:
            continue
        for i, image in enumerate(sorted(images)):
            (a if i % 2 == 0 else b).extend(images[image])
            for stem in images[image]:
                slide_of[stem] = slide
    return a, b, slide_of


def half_of(stems: list[str], slide_of: dict[str, str], half: str) -> list[str]:
    """The stems of the tuning or test half of the slides (alternately by sorted slide name); all for "all"."""
    if half == "all":
        return stems
    slides = sorted(set(slide_of.values()))
    keep = set(slides[0::2] if half == "tune" else slides[1::2])
    return [s for s in stems if slide_of[s] in keep]


def crops(tiles: list[np.ndarray], masks: list[np.ndarray], n: int, seed: int) -> list[np.ndarray]:
    """``n`` random CROP-sided crops where the mask holds at least half tissue (same positions for the same seed)."""
    rng = np.random.default_rng(seed)
    out, tries = [], 0
    while len(out) < n and tries < 100 * n:
        tries += 1
        k = int(rng.integers(len(tiles)))
        h, w = masks[k].shape
        y, x = int(rng.integers(h - CROP + 1)), int(rng.integers(w - CROP + 1))
        if (masks[k][y:y + CROP, x:x + CROP] > 0).mean() >= 0.5:  # masks may be 0/1 or 0/255
            out.append(tiles[k][y:y + CROP, x:x + CROP])
    return out


def features(extractor: InceptionFeatures, images: list[np.ndarray], batch: int = 32) -> np.ndarray:
    return np.concatenate([extractor.rgb(images[i:i + batch]) for i in range(0, len(images), batch)])


def label_iou(rgb: np.ndarray, mask: np.ndarray) -> float:
    got, want = luma(rgb) <= 204, mask > 0
    union = (got | want).sum()
    return float((got & want).sum() / union) if union else 1.0


def timed(fn, masks: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    out, times = [], []
    for i, m in enumerate(masks):
        start = time.perf_counter()
        out.append(fn(m, i))
        times.append(time.perf_counter() - start)
    return out, float(np.median(times) * 1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--quilt", type=Path, default=default_model_path("rgb"), help="example-based checkpoint")
    ap.add_argument("--pix2pixhd", type=Path, default=REPO / "resources" / "models" / "rgb_pix2pixhd.safetensors")
    ap.add_argument("--crops", type=int, default=500)
    ap.add_argument("--only", default="", help="comma-separated set names to run (quick tuning)")
    ap.add_argument("--option", action="append", default=[], help="quilt option KEY=VALUE (tuning)")
    ap.add_argument("--half", choices=("all", "tune", "test"), default="all",
                    help="only the tuning or the test half of the held-out slides (see Tuning above)")
    ap.add_argument("--seed", type=int, default=0, help="generation seed (another seed: a tuning run)")
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "rgb_realism.md")
    ap.add_argument("--montage", type=Path, default=None, help="also write real | mask | generated rows here")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    held = args.work / "heldout"
    stems_a, stems_b, slide_of = regions(held)
    stems_a, stems_b = half_of(stems_a, slide_of, args.half), half_of(stems_b, slide_of, args.half)
    masks_b = [cv2.imread(str(held / "fine" / f"{s}.png"), 0) for s in stems_b]
    real_b = [read_rgb(held / "rgb" / f"{s}.png") for s in stems_b]
    real_a = [read_rgb(held / "rgb" / f"{s}.png") for s in stems_a]
    masks_a = [cv2.imread(str(held / "fine" / f"{s}.png"), 0) for s in stems_a]
    print(f"region A: {len(stems_a)} patches, region B: {len(stems_b)} patches, "
          f"{len({slide_of[s] for s in stems_a + stems_b})} slides ({args.half})", flush=True)

    options = dict(kv.split("=", 1) for kv in args.option)
    quilt = Engine("none", args.quilt, device="cpu", rgb_options=options)
    styled = Engine("none", args.quilt, device="cpu", rgb_options=options,
                    style=[held / "rgb" / f"{s}.png" for s in stems_a], style_groups=[slide_of[s] for s in stems_a])
    slides_b = [slide_of[s] for s in stems_b]

    tissue_colour = np.mean([r[m > 0].mean(0) for r, m in zip(real_a, masks_a) if (m > 0).any()], axis=0)
    air_colour = np.mean([r[m == 0].mean(0) for r, m in zip(real_a, masks_a) if (m == 0).any()], axis=0)
    sets: dict[str, tuple[list[np.ndarray], list[np.ndarray], float]] = {}  # name -> tiles, masks, ms

    def want(name: str) -> bool:
        return not args.only or any(w.strip() and w.strip() in name for w in args.only.split(","))

    if want("floor"):
        sets["real tiles of region A (floor)"] = (real_a, masks_a, float("nan"))
    if want("quilt --style"):
        tiles, ms = timed(lambda m, i: styled.rgb(m, args.seed, style_group=slides_b[i]), masks_b)
        sets["quilt --style region A (same slide)"] = (tiles, masks_b, ms)
    if want("before the label correction"):  # what the correction costs: same library, pixels left as pasted
        library = styled.rgb_model.module.library()
        tiles, ms = timed(lambda m, i: synthesize(library, m > 0, np.random.default_rng([args.seed, i]),
                                                  slides_b[i], label_exact=False).rgb, masks_b)
        sets["quilt --style, before the label correction (not label-exact)"] = (tiles, masks_b, ms)
    if want("quilt, shipped"):
        tiles, ms = timed(lambda m, i: quilt.rgb(m, args.seed), masks_b)
        sets["quilt, shipped library (other slides)"] = (tiles, masks_b, ms)
    if want("pix2pixhd") and args.pix2pixhd.is_file():
        hd = Engine("none", args.pix2pixhd, device="cpu")
        tiles, ms = timed(lambda m, i: hd.rgb(m, args.seed), masks_b)
        sets["pix2pixhd, shipped"] = (tiles, masks_b, ms)
        norm = StainNormaliser.fit([t for t in real_a])
        sets["pix2pixhd + Macenko to region A"] = ([norm.apply(t) for t in tiles], masks_b, ms)
    if want("flat"):
        flat = [np.where(m[..., None] > 0, tissue_colour, air_colour).round().astype(np.uint8) for m in masks_b]
        sets["flat colours of region A"] = (flat, masks_b, float("nan"))
    if want("blur"):
        sets["region B's real tiles blurred (1 px)"] = ([cv2.GaussianBlur(t, (0, 0), 1.0) for t in real_b],
                                                        masks_b, float("nan"))

    extractor = InceptionFeatures("cpu")
    ref_crops = features(extractor, crops(real_b, masks_b, args.crops, seed=1))
    ref_tiles = features(extractor, real_b)
    lines = ["| set | crop FID | ÷ floor | tile FID | tile KID ×1000 | label IoU (mean, min) | ms per tile |",
             "|---|---|---|---|---|---|---|"]
    results, floor = {}, None
    for name, (tiles, masks, ms) in sets.items():
        crop_f = features(extractor, crops(tiles, masks, args.crops, seed=2))
        tile_f = features(extractor, tiles)
        value = fid(ref_crops, crop_f)
        floor = value if floor is None and "floor" in name else floor
        ious = [label_iou(t, m) for t, m in zip(tiles, masks)]
        k = kid(ref_tiles, tile_f, subset_size=min(len(tile_f), len(ref_tiles), 100))
        kid_mean = float(k[0] if isinstance(k, tuple) else k)
        results[name] = {"crop_fid": value, "tile_fid": fid(ref_tiles, tile_f), "tile_kid": kid_mean,
                         "iou_mean": float(np.mean(ious)), "iou_min": float(np.min(ious)), "ms_per_tile": ms,
                         "n_tiles": len(tiles), "n_crops": len(crop_f)}
        r = results[name]
        ratio = f"{value / floor:.2f}" if floor else "—"
        ms_text = "—" if np.isnan(ms) else f"{ms:.0f}"
        lines.append(f"| {name} | {value:.1f} | {ratio} | {r['tile_fid']:.1f} | {kid_mean * 1000:.1f} | "
                     f"{r['iou_mean']:.4f}, {r['iou_min']:.4f} | {ms_text} |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    if args.montage:
        montage(args.montage, real_b, masks_b, sets)
    if args.only or args.option or args.half != "all" or args.seed:
        return  # tuning runs do not overwrite the recorded results
    text = "\n".join([
        "# Realism of fine->RGB generation on held-out slide regions",
        "",
        f"Generated by `python benchmarks/rgb_realism.py` on {datetime.date.today().isoformat()} "
        f"({platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}). "
        f"Held-out osteosarcoma slides (never in a library or a model): region A {len(stems_a)} patches, "
        f"region B {len(stems_b)} patches (256x512) from {len(set(slide_of.values()))} slides, split by source "
        f"image. Every set is compared with region B's real tiles: {args.crops} random 128 px crops with at "
        f"least half tissue (crop FID), and the {len(real_b)} whole tiles (tile FID, KID). Example-based "
        f"model: `{args.quilt.name}`; the protocol is in the script's docstring.",
        "",
        table,
        "",
    ])
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    args.results.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(f"written {args.results}")


def montage(path: Path, real: list[np.ndarray], masks: list[np.ndarray], sets: dict) -> None:
    """A few rows of real | mask | each generated set, at full resolution."""
    names = [n for n in sets if "floor" not in n and "blur" not in n]
    rows = []
    for k in np.linspace(0, len(real) - 1, 4).astype(int):
        row = [real[k], np.repeat(masks[k][..., None], 3, 2)] + [sets[n][0][k] for n in names]
        rows.append(np.concatenate(row, 1))
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
    print(f"montage columns: real, mask, {', '.join(names)} -> {path}")


if __name__ == "__main__":
    main()
