"""The paper's experiment (PriorPath, Table 2 and Fig. 3) on public slides held out by patient.

    python benchmarks/reproduce.py run    [--work out/reproduce] [--minutes 20] [--seeds 3] [--models ...]
    python benchmarks/reproduce.py report [--work out/reproduce]
    python benchmarks/reproduce.py run --work out/repro512 --size 512x1024 --epochs 100 --device cuda \
        --results out/repro512/results --figures out/repro512/figures     # the paper's scale, on a GPU

The protocol, written out in ``docs/reproduction.md``:

1. **Data**: ``benchmarks/mask_models.py split``. The public H&E of ``../shared/data`` (TCIA osteosarcoma,
   the CPTAC and TCGA sections) is prepared at 256x512 (a quarter of the paper's 512x1024 pixels, for
   the CPU budget) and split by patient; 35 % of the patches are held out. Every model uses the same split.
2. **Training**: every model by ``priorpath train`` with its default (paper) options, for the same budget of
   CPU minutes (``--minutes``) of the reference 2-core CPU: the run's steps are the budget divided by the
   step time ``benchmarks/train_step.py`` measured there (``benchmarks/results/train_step_cpu.md``; a
   4-step probe where a model or size is not listed), so a busy machine plans the same runs. Its epochs
   cover those steps, so the learning rate still decays to zero. The analogy model has no gradient steps:
   it takes one pass over the data. Runs checkpoint every 25 steps and resume: a later ``run`` picks up finished runs and
   trains only what is missing, so the study can go on over several sittings.
3. **Generation**: the conditional models (pix2pix as the paper ran it, CycleGAN, our ``analogy``) turn
   every held-out coarse mask into a fine mask with each seed 0..S-1 (the inference engine, as
   ``priorpath generate`` does). The noise models (DCGAN, DEPAS) sample the same number N with each seed.
4. **Evaluation**: ``priorpath eval`` per seed against the N held-out real fine masks, at equal N: FID, KID,
   KS, KL, boundary and component KS, precision/recall/density/coverage and t-SNE grid cells covered.
   Two reference rows share the table: the **floor** (N real fine masks of the training patients, drawn with
   the seed) and the **coarse masks as they are**.
5. **Results**: ``benchmarks/results/reproduce.json`` (every seed's figures) and ``reproduce.md`` (mean ±
   standard deviation over the seeds), and the first seed's eval report (t-SNE plot, grid) under
   ``WORK/eval/seed0``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONDITIONAL = ("pix2pix", "cyclegan", "analogy")
NOISE = ("dcgan", "depas")
MODELS = CONDITIONAL + NOISE
SIZE = (256, 512)
REFERENCES = ("floor (real, training patients)", "coarse masks as they are")
RESULTS = REPO / "benchmarks" / "results"
DOCS = REPO / "docs"
SHOWN = (("FID", "fid", 1), ("KID", "kid", 4), ("KS", "ks", 3), ("KL", "kl", 3), ("KS boundary", "ks_boundary", 3),
         ("KS components", "ks_components", 3), ("precision", "precision", 3), ("recall", "recall", 3),
         ("density", "density", 3), ("coverage", "coverage", 3), ("t-SNE cells", "cells_covered", 1))


# --- training ------------------------------------------------------------------------------------------------
def train_command(model: str, data: Path, out: Path, size: tuple[int, int], steps: int, epochs: int,
                  options: dict, resume: bool, device: str = "cpu") -> list[str]:
    cmd = [sys.executable, "-m", "trainer.cli", "train", "--model", model, "--data", str(data), "--size",
           f"{size[0]}x{size[1]}", "--max-steps", str(steps), "--epochs", str(epochs), "--checkpoint-every", "25",
           "--sample-every", "100000", "--device", device, "--no-progress", "--out", str(out)]
    for key, value in options.items():
        cmd += ["--option", f"{key}={value}"]
    return cmd + (["--resume"] if resume else [])


def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd[3:6])}: exited {r.returncode}: {r.stderr.strip()[-800:]}")


def checkpoint_step(run: Path) -> int:
    from trainer.checkpoint import load_checkpoint

    latest = run / "checkpoints" / "latest.safetensors"
    return int(load_checkpoint(latest, with_tensors=False).state.get("step", 0)) if latest.is_file() else 0


STEP_TIMES = RESULTS / "train_step_cpu.md"


def reference_seconds_per_step(model: str, size: tuple[int, int]) -> Optional[float]:
    """The step time ``train_step.py`` measured for ``model`` at ``size`` on the idle reference CPU, if listed.

    Budgets come from this table rather than from a probe on the machine as it is now, so a busy machine
    plans the same steps: the budget is minutes of the reference 2-core CPU."""
    if not STEP_TIMES.is_file():
        return None
    for line in STEP_TIMES.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[0] == model and cells[1] == f"{size[0]}x{size[1]}":
            try:
                return float(cells[4])
            except ValueError:
                return None
    return None


def seconds_per_step(model: str, data: Path, work: Path, size: tuple[int, int], options: dict) -> float:
    """The reference step time when listed (and no options change the network), else a 4-step probe run."""
    listed = None if options else reference_seconds_per_step(model, size)
    if listed:
        return listed
    probe = work / "probe" / model
    record = probe / "seconds_per_step.json"
    if record.is_file():
        return float(json.loads(record.read_text())["seconds_per_step"])
    if (probe / "checkpoints").exists():
        import shutil

        shutil.rmtree(probe)
    _run(train_command(model, data, probe, size, 4, 1, options, resume=False))
    steps = [json.loads(line) for line in (probe / "events.jsonl").read_text().splitlines()]
    times = [e["seconds"] for e in steps if e.get("type") == "step"]
    per_step = (times[-1] - times[0]) / max(1, len(times) - 1) if len(times) > 1 else times[-1]
    record.write_text(json.dumps({"seconds_per_step": per_step}))
    return per_step


def plan(model: str, data: Path, work: Path, size: tuple[int, int], minutes: float, options: dict,
         epochs: Optional[int] = None) -> tuple[int, int]:
    """(steps, epochs) for ``minutes`` of training, or for ``epochs`` (the paper's budget: 100) when given;
    the plan is kept so a resumed run keeps its maths."""
    record = work / "runs" / f"{model}.plan.json"
    if record.is_file():
        saved = json.loads(record.read_text())
        return int(saved["steps"]), int(saved["epochs"])
    n = len(list((data / "fine").glob("*.png")))
    if model == "analogy":  # example-based: one pass over the data fills its reservoir
        steps, epochs = n, 1
    elif epochs:
        steps = epochs * n
    else:
        per_step = seconds_per_step(model, data, work, size, options)
        steps = max(4, int(minutes * 60 / per_step))
        epochs = max(1, -(-steps // n))
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"steps": steps, "epochs": epochs, "minutes": minutes, "size": list(size)}))
    return steps, epochs


def train_all(models: list[str], data: Path, work: Path, size: tuple[int, int], minutes: float,
              options: Optional[dict] = None, epochs: Optional[int] = None, device: str = "cpu") -> dict[str, Path]:
    """Train what is missing; returns each model's checkpoint."""
    done = {}
    for model in models:
        opts = (options or {}).get(model, {})
        steps, run_epochs = plan(model, data, work, size, minutes, opts, epochs)
        run = work / "runs" / model
        at = checkpoint_step(run)
        if at < steps:
            print(f"{model}: training {steps} steps ({run_epochs} epochs){' from step ' + str(at) if at else ''}",
                  flush=True)
            started = time.perf_counter()
            _run(train_command(model, data, run, size, steps, run_epochs, opts, resume=at > 0, device=device))
            print(f"{model}: done in {time.perf_counter() - started:.0f} s", flush=True)
        done[model] = run / "checkpoints" / "latest.safetensors"
    return done


# --- generation and evaluation --------------------------------------------------------------------------------
def generate_set(model: str, ckpt: Path, held: Path, out: Path, seed: int, device: str = "cpu") -> Path:
    """Held-out-sized set of fine masks from ``ckpt`` with ``seed`` (skipped when already complete)."""
    from trainer.fileio import write_png

    coarse = sorted((held / "coarse").glob("*.png"))
    if out.is_dir() and len(list(out.glob("*.png"))) == len(coarse):
        return out
    out.mkdir(parents=True, exist_ok=True)
    if model in NOISE:
        import torch

        from trainer.checkpoint import load_checkpoint

        net = load_checkpoint(ckpt).build_model(torch.device(device))
        masks = net.generate(len(coarse), seed)[:, 0].float().cpu().numpy()
        for path, mask in zip(coarse, masks):
            write_png(out / path.name, np.where(mask >= 0, 255, 0).astype(np.uint8))
    else:
        from trainer.inference import Engine

        engine = Engine(ckpt, "none", device=device)
        for path in coarse:
            write_png(out / path.name, engine.fine(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), seed))
    return out


def floor_set(train: Path, held: Path, out: Path, seed: int) -> Path:
    """N real fine masks of the training patients (N = the held-out count), drawn with ``seed``."""
    import shutil

    n = len(list((held / "fine").glob("*.png")))
    pool = sorted((train / "fine").glob("*.png"))
    if out.is_dir() and len(list(out.glob("*.png"))) == min(n, len(pool)):
        return out
    out.mkdir(parents=True, exist_ok=True)
    for i in np.random.default_rng(seed).choice(len(pool), min(n, len(pool)), replace=False):
        shutil.copyfile(pool[i], out / pool[i].name)
    return out


def evaluate_seed(models: dict[str, Path], train: Path, held: Path, work: Path, seed: int,
                  device: str = "cpu") -> dict[str, dict]:
    from trainer.metrics.report import EvalSettings, evaluate

    done = work / "eval" / f"seed{seed}" / "metrics.json"
    if done.is_file():  # evaluated in an earlier sitting: its sets are complete and unchanged since
        metrics = json.loads(done.read_text())
        if set(metrics) == set(REFERENCES) | set(models):
            return metrics
    sets = [(REFERENCES[0], floor_set(train, held, work / "sets" / f"floor-s{seed}", seed)),
            (REFERENCES[1], held / "coarse")]
    for model, ckpt in models.items():
        sets.append((model, generate_set(model, ckpt, held, work / "sets" / f"{model}-s{seed}", seed, device)))
    report = evaluate(held / "fine", sets, work / "eval" / f"seed{seed}",
                      EvalSettings(device=device, dataset="H&E held-out patients", seed=seed))
    return report.metrics


# --- the tables -------------------------------------------------------------------------------------------------
def summarise(per_seed: list[dict[str, dict]]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """(mean, standard deviation, number of seeds) of every shown figure of every set, over the seeds
    that evaluated the set (a set may miss seeds when its generation did not finish)."""
    out: dict[str, dict[str, tuple[float, float, int]]] = {}
    for name in dict.fromkeys(n for s in per_seed for n in s):
        out[name] = {}
        for _, key, _ in SHOWN:
            values = [float(s[name][key]) for s in per_seed if s.get(name, {}).get(key) is not None]
            if values:
                out[name][key] = (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0,
                                  len(values))
    return out


def table(summary: dict[str, dict[str, tuple[float, float, int]]]) -> str:
    lines = ["| set | " + " | ".join(label for label, _, _ in SHOWN) + " |", "|---|" + "---|" * len(SHOWN)]
    for name, figures in summary.items():
        cells = []
        for _, key, digits in SHOWN:
            if key in figures:
                mean, sd, n = figures[key]
                cells.append(f"{mean:.{digits}f} ± {sd:.{digits}f}" if n > 1 else f"{mean:.{digits}f} (1 seed)")
            else:
                cells.append("—")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(work: Path, per_seed: list[dict], plans: dict, results: Path = RESULTS,
                  figures: Optional[Path] = DOCS, size: tuple[int, int] = SIZE) -> None:
    import torch

    from reproduce_report import beside_paper, copy_tsne, montage, verdict_table, verdicts

    summary = summarise(per_seed)
    results.mkdir(parents=True, exist_ok=True)
    record = {"date": datetime.date.today().isoformat(), "size": list(size), "plans": plans,
              "seeds": per_seed, "summary": {k: {m: list(v) for m, v in f.items()} for k, f in summary.items()}}
    (results / "reproduce.json").write_text(json.dumps(record, indent=1, default=float))
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    budget = "; ".join(f"{m}: {p['steps']} steps ({p['epochs']} epochs)" for m, p in plans.items())
    text = "\n".join([
        "# The paper's experiment on public slides (reproduce.py)",
        "",
        f"Generated by `python benchmarks/reproduce.py` on {record['date']} ({machine}). Held-out patients' "
        f"fine masks at {size[0]}x{size[1]}, N = {next(iter(per_seed[0].values()))['n_real']}; mean ± standard "
        f"deviation over {len(per_seed)} generation seeds. Training budget: {budget}.",
        "",
        table(summary),
        "",
        "## Beside the paper's Table 2 (their range over PRAD, SKCM, LUSC H&E and NSCLC IHC)",
        "",
        beside_paper(summary),
        "",
        "## Verdicts (rule in `benchmarks/reproduce_report.py`)",
        "",
        verdict_table(verdicts(summary)),
        "",
        "Protocol and discussion: `docs/reproduction.md`.",
        "",
    ])
    if figures is not None:
        sets = {m: work / "sets" / f"{m}-s0" for m in plans if (work / "sets" / f"{m}-s0").is_dir()}
        montage(work / "heldout", sets, figures / "reproduction_masks.jpg")
        copy_tsne(work / "eval" / "seed0", figures / "reproduction_tsne.png")
    (results / "reproduce.md").write_text(text)
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=("run", "report"))
    ap.add_argument("--work", type=Path, default=REPO / "out" / "reproduce")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("PRIORPATH_SHARED", REPO.parent / "shared"))
                    / "data")
    ap.add_argument("--minutes", type=float, default=20.0,
                    help="training budget per model in minutes of the reference 2-core CPU")
    ap.add_argument("--epochs", type=int, default=None, help="train this many epochs instead (the paper: 100)")
    ap.add_argument("--size", default=f"{SIZE[0]}x{SIZE[1]}", help="patch size HxW (the paper: 512x1024)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (training, generation and evaluation)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--one-seed", default="", help="comma-separated models generated with seed 0 only (for a "
                    "model whose generation is too slow on this machine; the tables mark its figures '1 seed')")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder for reproduce.json/.md")
    ap.add_argument("--figures", type=Path, default=DOCS, help="folder for the montage and t-SNE figure")
    args = ap.parse_args()
    models = [m for m in args.models.split(",") if m]
    size = tuple(int(v) for v in args.size.lower().split("x"))
    if not (args.work / "heldout" / "manifest.csv").is_file():
        from mask_models import split

        split(args.data, args.work, f"{size[0]}x{size[1]}")
    train, held = args.work / "train", args.work / "heldout"
    if args.step == "run":
        checkpoints = train_all(models, train, args.work, size, args.minutes, epochs=args.epochs, device=args.device)
    else:
        checkpoints = {m: args.work / "runs" / m / "checkpoints" / "latest.safetensors" for m in models}
        checkpoints = {m: p for m, p in checkpoints.items() if p.is_file()}
    plans = {m: json.loads((args.work / "runs" / f"{m}.plan.json").read_text()) for m in checkpoints}
    one_seed = set(filter(None, args.one_seed.split(",")))
    per_seed = [evaluate_seed({m: p for m, p in checkpoints.items() if seed == 0 or m not in one_seed},
                              train, held, args.work, seed, args.device) for seed in range(args.seeds)]
    write_results(args.work, per_seed, plans, args.results, args.figures, size)

if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "benchmarks"))
    main()
