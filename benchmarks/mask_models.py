"""Held-out quality of coarse->fine models: what the default models' cards report.

1. ``split``: prepare the H&E collection (../shared/data) at 256x512 and split it by source slide
   (osteosarcoma tiles grouped by patient; 35 % of the patches held out, seed 0) into WORK/train and
   WORK/heldout, each a prepared folder (the files are hard links into WORK/prepared). Models are trained
   on WORK/train with ``priorpath train``.
2. ``eval``: every given checkpoint turns each held-out coarse mask into a fine mask (seed 0, through the
   inference engine, as ``priorpath generate`` does); ``priorpath eval`` then compares these, and the coarse
   masks as they are, with the held-out real fine masks at the same N. The table gives each model's FID and
   KS also as a ratio to the coarse masks' (the issue's bar: FID <= 0.6x, KS <= 0.1), and the fraction of
   pixels each changes from its coarse mask and that two seeds change from each other.

    python benchmarks/mask_models.py split --work /work/runs
    python benchmarks/mask_models.py eval --work /work/runs NAME=CKPT [NAME=CKPT ...] [--results FILE]
    python benchmarks/mask_models.py figure --work /work/runs [--out docs/default_models.png]

3. ``figure``: rows of held-out patches, columns coarse | default fine (seed 0) | seed 1 | real fine |
   default RGB | real RGB, with the shipped default models.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer.data.dataset import split_by_source  # noqa: E402
from trainer.data.prepare import PrepareSettings, link_subset, parse_size, prepare, read_manifest  # noqa: E402
from trainer.fileio import write_png  # noqa: E402
from trainer.inference import Engine  # noqa: E402
from trainer.metrics.report import EvalSettings, evaluate  # noqa: E402

SOURCES = ("osteosarcoma_tcia_ut", "cptac_C3L-00601-26_dzi", "tcga_hnsc_frozen_TCGA-CR-7395")
GROUP = r"(Case-\d+|P\d+)-"
HELD_OUT = 0.35


def split(data: Path, work: Path, patch: str) -> None:
    prepared = work / "prepared"
    prepare([data / s for s in SOURCES], prepared, PrepareSettings(stain="he", patch=parse_size(patch)))
    rows = read_manifest(prepared)
    train, held = split_by_source(rows, test_fraction=HELD_OUT, seed=0, group_pattern=GROUP)
    for name, stems in (("train", train), ("heldout", held)):
        out = link_subset(prepared, work / name, stems)
        images = {r["source"] for r in rows if r["stem"] in set(stems)}
        print(f"{name}: {len(stems)} patches from {len(images)} images -> {out}")


def generate_set(ckpt: Path, coarse_dir: Path, out: Path, seed: int) -> tuple[float, float]:
    """Fine masks for every held-out coarse mask; returns (fraction changed vs coarse, s/mask)."""
    engine = Engine(ckpt, "none", device="cpu")
    out.mkdir(parents=True, exist_ok=True)
    changed, start = [], time.perf_counter()
    paths = sorted(coarse_dir.glob("*.png"))
    for p in paths:
        coarse = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        fine = engine.fine(coarse, seed)
        changed.append(float((fine != coarse).mean()))
        write_png(out / p.name, fine)
    return float(np.mean(changed)), (time.perf_counter() - start) / len(paths)


def seed_difference(a: Path, b: Path) -> float:
    diffs = [float((cv2.imread(str(p), 0) != cv2.imread(str(b / p.name), 0)).mean()) for p in sorted(a.glob("*.png"))]
    return float(np.mean(diffs))


def run_eval(work: Path, models: list[tuple[str, Path]], results: Path) -> None:
    held = work / "heldout"
    sets = work / "mask-model-sets"
    rows = {"coarse masks as they are": {"changed": 0.0, "seeds": 0.0, "speed": None}}
    fakes = [("coarse masks as they are", held / "coarse")]
    real_changed = np.mean([float((cv2.imread(str(p), 0) != cv2.imread(str(held / "coarse" / p.name), 0)).mean())
                            for p in sorted((held / "fine").glob("*.png"))])
    for name, ckpt in models:
        first, second = sets / f"{name}-seed0", sets / f"{name}-seed1"
        changed, speed = generate_set(ckpt, held / "coarse", first, 0)
        generate_set(ckpt, held / "coarse", second, 1)
        rows[name] = {"changed": changed, "seeds": seed_difference(first, second), "speed": speed}
        fakes.append((name, first))
        print(f"{name}: generated {len(list(first.glob('*.png')))} masks, {speed:.3f} s/mask", flush=True)
    report = evaluate(held / "fine", fakes, sets / "report", EvalSettings(device="cpu", dataset="H&E held-out"))
    base = report.metrics["coarse masks as they are"]
    lines = ["| set | N | FID | FID ÷ coarse | KS | KL | precision | recall | coverage | changed vs coarse "
             "| seed 0 vs 1 | s/mask |", "|" + "---|" * 12]
    for name, extra in rows.items():
        m = report.metrics[name]
        speed = "—" if extra["speed"] is None else f"{extra['speed']:.3f}"
        lines.append(f"| {name} | {m['n']} | {m['fid']:.1f} | {m['fid'] / base['fid']:.2f} | {m['ks']:.3f} | "
                     f"{m['kl']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} | {m['coverage']:.3f} | "
                     f"{100 * extra['changed']:.1f} % | {100 * extra['seeds']:.1f} % | {speed} |")
    table = "\n".join(lines)
    print(table)
    import torch

    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    text = "\n".join([
        "# Coarse->fine models on held-out slides",
        "",
        f"Generated by `python benchmarks/mask_models.py eval` on {datetime.date.today().isoformat()} ({machine}; "
        f"load average at the end {os.getloadavg()[0]:.1f}). Real set: the {base['n']} held-out fine masks "
        f"(256x512, H&E, slides never seen in training). Real fine masks differ from their coarse masks in "
        f"{100 * real_changed:.1f} % of pixels.",
        "",
        table,
        "",
        "Models: " + "; ".join(f"`{n}` = `{p}`" for n, p in models),
        "",
    ])
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(text)
    print(f"written {results}")


def figure(work: Path, out: Path, rows: int = 4) -> None:
    held = work / "heldout"
    engine = Engine(None, None, device="cpu")
    stems = sorted(p.stem for p in (held / "coarse").glob("*.png"))
    # patches with both tissue and air, spread over the held-out set
    mixed = [s for s in stems if 0.3 < (cv2.imread(str(held / "coarse" / f"{s}.png"), 0) > 0).mean() < 0.8]
    chosen = mixed[:: max(1, len(mixed) // rows)][:rows]
    grey = lambda m: cv2.cvtColor(m, cv2.COLOR_GRAY2RGB)  # noqa: E731
    lines = []
    for stem in chosen:
        coarse = cv2.imread(str(held / "coarse" / f"{stem}.png"), 0)
        fine0, rgb0 = engine.generate(coarse, 0)
        fine1 = engine.fine(coarse, 1)
        real = cv2.imread(str(held / "fine" / f"{stem}.png"), 0)
        real_rgb = cv2.cvtColor(cv2.imread(str(held / "rgb" / f"{stem}.png")), cv2.COLOR_BGR2RGB)
        tiles = [grey(coarse), grey(fine0), grey(fine1), grey(real), rgb0, real_rgb]
        lines.append(np.hstack([np.pad(t, ((4, 4), (4, 4), (0, 0)), constant_values=128) for t in tiles]))
    image = np.vstack(lines)
    image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_png(out, image)
    print(f"written {out}: coarse | fine seed 0 | fine seed 1 | real fine | RGB | real RGB for {', '.join(chosen)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=("split", "eval", "figure"))
    ap.add_argument("models", nargs="*", help="NAME=CHECKPOINT (eval)")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--patch", default="256x512")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "default_models.png", help="figure file")
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "mask_models.md")
    args = ap.parse_intermixed_args()
    if args.step == "split":
        split(args.data, args.work, args.patch)
        return
    if args.step == "figure":
        figure(args.work, args.out)
        return
    models = []
    for item in args.models:
        name, _, path = item.partition("=")
        if not path:
            ap.error(f"expected NAME=CHECKPOINT, got {item!r}")
        models.append((name, Path(path)))
    run_eval(args.work, models, args.results)


if __name__ == "__main__":
    main()
