"""The checks and benchmarks of ``device_check.py`` (see there): each adds PASS/FAIL lines or a table to the report.

On CUDA they run what has never run elsewhere: bf16 autocast and channels-last in training, fp16
inference, nccl. With ``--smoke`` the same code runs on the CPU at 64x128 with tiny networks, where the
CUDA-only settings are reported as n/a.
"""
from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch

from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.config import TrainConfig, make_config
from trainer.inference import Engine, default_model_path
from trainer.models import EXAMPLE_BASED, model_class
from trainer.models.layers import AlwaysDropout
from trainer.train import Trainer, resume_config, train

REPO = Path(__file__).resolve().parents[1]
MODELS = ("pix2pix", "cyclegan", "pix2pixhd", "dcgan", "depas", "analogy", "quilt")
#: networks small enough for a CPU smoke run (the GPU run uses every model's defaults)
TINY = {
    "pix2pix": {"ngf": 8, "ndf": 8},
    "cyclegan": {"ngf": 8, "ndf": 8, "n_blocks": 2, "pool_size": 3},
    "pix2pixhd": {"ngf": 8, "ndf": 8, "n_blocks": 2, "n_downsampling": 2},
    "dcgan": {"ngf": 8, "ndf": 8},
    "depas": {"ngf": 8, "ndf": 8},
    "analogy": {"windows_per_patch": 8, "max_windows": 40},
    "quilt": {"max_tiles": 8},
}
#: fp16 on the GPU against float32 on the CPU, same checkpoint and seed
MASK_IOU_MIN = 0.99  # thresholded fine masks of a trained model
RAW_MAD_MAX = 0.02  # the network's raw output in [-1, 1] (an untrained net sits near 0, where masks flip)
RGB_MAD_MAX = 2.0  # RGB tiles, mean absolute difference in 0-255 levels


@dataclasses.dataclass
class Settings:
    smoke: bool
    patch: tuple[int, int]  # what the data is prepared at
    check_size: tuple[int, int]  # the quick checks' training size
    real_size: tuple[int, int]  # the real training run's size (the paper's 512x1024 on a GPU)
    steps: int  # optimizer steps of a quick check
    bench_sizes: list[tuple[int, int]]
    repeats: int
    step_models: list[tuple[str, str]]  # train_step.py runs: (models, sizes)
    min_training: float  # seconds below which the real run is skipped
    real_steps: int = 0  # the real run's steps (0: as many as the time left allows)
    heldout_max: int = 10 ** 6  # held-out patches scored

    @classmethod
    def for_run(cls, smoke: bool, device: torch.device) -> "Settings":
        if smoke:
            return cls(True, (256, 512), (64, 128), (64, 128), 3, [(64, 128)], 1, [("pix2pix", "64x128")], 5.0,
                       real_steps=4, heldout_max=6)
        return cls(False, (512, 1024), (128, 256), (512, 1024), 3, [(256, 512), (512, 1024)], 5,
                   [("pix2pix,cyclegan,pix2pixhd,dcgan,depas", "512x1024"), ("pix2pix,pix2pixhd", "256x512")],
                   90.0)

    def options(self, model: str) -> dict:
        return dict(TINY[model]) if self.smoke else {}

    def config(self, model: str, data: Path, size: tuple[int, int], device: torch.device, **values: Any
               ) -> TrainConfig:
        base = {"model": model, "data": str(data), "size": size, "options": self.options(model),
                "device": device.type, "log_every": 1, "sample_every": 10 ** 6, "checkpoint_every": 10 ** 6}
        base.update(values)
        return make_config(base)


def all_checks(report, s: Settings, device: torch.device, train_dir: Path, held_dir: Path, work: Path, out: Path
               ) -> list[tuple[str, float, Callable[[], None]]]:
    """(name, seconds it needs at least, run) for every section before the real training."""
    gpu = not s.smoke
    return [
        ("training steps", 60 if gpu else 5, lambda: training_steps(report, s, device, train_dir, work)),
        ("exact resume", 20 if gpu else 5, lambda: exact_resume(report, s, device, train_dir, work)),
        ("fp16 inference parity", 30 if gpu else 5, lambda: inference_parity(report, s, device, held_dir, work)),
        ("engine device", 10 if gpu else 2, lambda: engine_device(report, device)),
        ("ddp", 40 if gpu else 10, lambda: ddp_run(report, s, device, train_dir, work)),
        ("inference benchmark", 60 if gpu else 10, lambda: inference_benchmark(report, s, device, work)),
        ("train_step benchmark", 120 if gpu else 10, lambda: train_step_benchmark(report, s, device, work)),
        ("export throughput", 90 if gpu else 30, lambda: export_throughput(report, s, work)),
    ]


# --- training ------------------------------------------------------------------------------------------------
def float_state(model) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.detach().float().cpu().clone() for n, net in model.networks().items()
            for k, v in net.state_dict().items() if v.is_floating_point()}


def training_steps(report, s: Settings, device: torch.device, data: Path, work: Path) -> None:
    """Every model's step as ``priorpath train`` runs it here: bf16 autocast and channels-last on CUDA."""
    cuda = device.type == "cuda"
    for name in MODELS:
        trainer = Trainer(s.config(name, data, s.check_size, device, max_steps=s.steps), work / f"steps-{name}")
        before = float_state(trainer.model)
        result = trainer.run()
        after = float_state(trainer.model)
        losses = {k: v for k, v in result.losses.items() if isinstance(v, (int, float))}
        finite = all(math.isfinite(v) for v in losses.values()) and all(torch.isfinite(v).all() for v in after.values())
        if name in EXAMPLE_BASED:  # no gradients: it collects real windows into its reservoir
            ckpt = load_checkpoint(result.checkpoint)
            extra = sum(v.numel() for k, v in ckpt.tensors.items() if k.startswith("extra."))
            report.check(f"train step {name}", extra > 0, f"{result.step} steps, reservoir of {extra} values stored")
            continue
        changed = sum(not torch.equal(before[k], after[k]) for k in before)
        convs = [p for p in trainer.model.parameters() if p.dim() == 4]
        channels_last = all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
        bf16 = trainer.model.amp_dtype == torch.bfloat16
        report.check(f"train step {name}", finite and changed > 0,
                     f"{result.step} steps, losses {', '.join(f'{k} {v:.3g}' for k, v in sorted(losses.items()))}; "
                     f"{changed} of {len(before)} tensors changed", losses=losses, seconds=result.seconds)
        report.check(f"bf16 + channels-last {name}", (bf16 and channels_last) if cuda else None,
                     f"amp dtype {trainer.model.amp_dtype}, {sum(p.is_contiguous(memory_format=torch.channels_last) for p in convs)}"
                     f" of {len(convs)} conv weights channels-last")


def exact_resume(report, s: Settings, device: torch.device, data: Path, work: Path) -> None:
    """Stop at step n, resume to 2n: the same weights and optimizer moments as 2n in one go."""
    n = s.steps
    for name in ("pix2pix", "pix2pixhd"):
        straight, split = work / f"resume-{name}-straight", work / f"resume-{name}-split"
        train(s.config(name, data, s.check_size, device, max_steps=2 * n), straight)
        train(s.config(name, data, s.check_size, device, max_steps=n), split)
        train(resume_config(split, {"max_steps": 2 * n}), split, resume=True)
        a = load_checkpoint(straight / "checkpoints" / "latest.safetensors").tensors
        b = load_checkpoint(split / "checkpoints" / "latest.safetensors").tensors
        keys = [k for k in a if k.startswith(("net.", "optim.")) and a[k].is_floating_point()]
        differ = [k for k in keys if not torch.equal(a[k], b[k])]
        worst = max((float((a[k].float() - b[k].float()).abs().max()) for k in differ), default=0.0)
        report.check(f"exact resume {name}", not differ,
                     f"{n}+{n} steps vs {2 * n} in one go: {len(differ)} of {len(keys)} tensors differ "
                     f"(max abs difference {worst:.3g})", differing=len(differ), max_difference=worst)


# --- inference -----------------------------------------------------------------------------------------------
def held_out_masks(held_dir: Path, kind: str, size: tuple[int, int], n: int = 4) -> list[np.ndarray]:
    paths = sorted((held_dir / kind).glob("*.png"))[:n]
    return [cv2.resize(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), size[::-1], interpolation=cv2.INTER_NEAREST)
            for p in paths]


def without_dropout(engine: Engine) -> Engine:
    """pix2pix's dropout is its noise; CPU and CUDA draw it from different generators, so parity turns it off."""
    for model in (engine.mask, engine.rgb_model):
        for module in (model.module.modules() if model is not None else ()):
            if isinstance(module, AlwaysDropout):
                module.p = 0.0
    return engine


def inference_parity(report, s: Settings, device: torch.device, held_dir: Path, work: Path) -> None:
    """The same checkpoint and seed: fp16 on the device against float32 on the CPU."""
    trained = work / "steps-pix2pix" / "checkpoints" / "latest.safetensors"
    cases = [("pix2pix (a few steps)", trained, "mask"), ("default mask model", default_model_path("mask"), "mask"),
             ("pix2pixHD (shipped)", REPO / "resources" / "models" / "rgb_pix2pixhd.safetensors", "rgb"),
             ("default RGB model", default_model_path("rgb"), "rgb")]
    for label, path, role in cases:
        if not path.is_file():
            report.check(f"parity {label}", False, f"{path} is missing")
            continue
        parity(report, label, path, role, device, held_dir, s.check_size, untrained=(path == trained))


def parity(report, label: str, path: Path, role: str, device: torch.device, held_dir: Path,
           size: tuple[int, int], untrained: bool = False) -> dict:
    pair = {"mask": (path, "none"), "rgb": ("none", path)}[role]
    cpu = without_dropout(Engine(*pair, device="cpu", half=False))
    dev = without_dropout(Engine(*pair, device=str(device)))
    inputs = held_out_masks(held_dir, "coarse" if role == "mask" else "fine", size)
    figures: dict[str, float] = {}
    if role == "mask":
        ious, raw = [], []
        for i, coarse in enumerate(inputs):
            a, b = cpu.fine(coarse, i), dev.fine(coarse, i)
            union = np.logical_or(a > 0, b > 0).sum()
            ious.append(float(np.logical_and(a > 0, b > 0).sum() / union) if union else 1.0)
            if cpu.mask.name not in EXAMPLE_BASED:
                x = torch.from_numpy(coarse).float().div(127.5).sub(1)[None]
                raw.append(float(np.abs(_raw(cpu, cpu.mask, x, i) - _raw(dev, dev.mask, x, i)).mean()))
        figures = {"iou_mean": float(np.mean(ious)), "iou_min": float(np.min(ious)),
                   "raw_mad": float(np.mean(raw)) if raw else 0.0}
        ok = figures["raw_mad"] <= RAW_MAD_MAX if untrained else figures["iou_min"] >= MASK_IOU_MIN
        detail = (f"fine-mask IoU mean {figures['iou_mean']:.4f}, min {figures['iou_min']:.4f}; raw output mean abs "
                  f"difference {figures['raw_mad']:.4f} (bar: " +
                  (f"raw <= {RAW_MAD_MAX}, untrained)" if untrained else f"IoU >= {MASK_IOU_MIN})"))
    else:
        mads = [float(np.abs(cpu.rgb(f, i).astype(np.int16) - dev.rgb(f, i).astype(np.int16)).mean())
                for i, f in enumerate(inputs)]
        figures = {"rgb_mad": float(np.mean(mads)), "rgb_mad_max": float(np.max(mads))}
        ok = figures["rgb_mad_max"] <= RGB_MAD_MAX
        detail = f"RGB mean abs difference {figures['rgb_mad']:.3f} levels (worst tile {figures['rgb_mad_max']:.3f}; bar {RGB_MAD_MAX})"
    report.check(f"parity {label}", ok, f"{dev.device} half={dev.half} vs cpu float32, {len(inputs)} held-out "
                 f"{size[0]}x{size[1]} inputs: {detail}", **figures)
    return figures


def _raw(engine: Engine, model, x: torch.Tensor, seed: int) -> np.ndarray:
    from trainer.jobs import no_progress

    return engine._run(model, x, seed, no_progress, None)


def engine_device(report, device: torch.device) -> None:
    engine = Engine(None, "none", device="auto")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    report.check("engine device", engine.device.type == want and engine.half == (want == "cuda"),
                 f"Engine(device='auto') chose {engine.device}, half={engine.half} (expected {want})")


def ddp_run(report, s: Settings, device: torch.device, data: Path, work: Path) -> None:
    """torchrun with one process: the process group (nccl on CUDA) wraps the networks in DDP."""
    run = work / "ddp"
    options = [a for k, v in s.options("pix2pix").items() for a in ("--option", f"{k}={v}")]
    size = f"{s.check_size[0]}x{s.check_size[1]}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m",
           "trainer.cli", "train", "--model", "pix2pix", "--data", str(data), "--size", size, "--max-steps",
           str(s.steps), "--device", device.type, "--no-progress", "--out", str(run), *options]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    if r.returncode:
        report.check("ddp one process", False, f"torchrun exited {r.returncode}: {r.stderr.strip()[-400:]}")
        return
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    start = next(e for e in events if e["type"] == "start")
    state = load_checkpoint(run / "checkpoints" / "latest.safetensors", with_tensors=False).state
    want = "nccl" if device.type == "cuda" else "gloo"
    report.check("ddp one process", start.get("backend") == want and state.get("step") == s.steps,
                 f"backend {start.get('backend')} (expected {want}), world {start.get('world')}, "
                 f"{state.get('step')} steps, device {start.get('device')}")


# --- benchmarks ----------------------------------------------------------------------------------------------
def untrained_checkpoint(name: str, s: Settings, size: tuple[int, int], path: Path) -> Path:
    """A checkpoint of the model's configuration with initial weights: speed does not depend on the weights."""
    cls = model_class(name)
    torch.manual_seed(0)
    options = cls.options_type(**s.options(name))
    model = cls(options, size)
    save_checkpoint(path, model, make_config({"model": name, "options": s.options(name)}).to_dict(), {"step": 0})
    return path


def inference_benchmark(report, s: Settings, device: torch.device, work: Path) -> None:
    from inference import benchmark_table

    size = s.bench_sizes[-1]
    mask = untrained_checkpoint("pix2pix", s, size, work / "bench-pix2pix.safetensors")
    rgb = untrained_checkpoint("pix2pixhd", s, size, work / "bench-pix2pixhd.safetensors")
    what = "tiny networks (smoke)" if s.smoke else "the paper's configurations (default options)"
    table, _ = benchmark_table(mask, rgb, s.bench_sizes, s.repeats, device.type, quick=True)
    report.section(f"Inference on {device.type}: pix2pix and pix2pixHD, {what}",
                   "Ratios against `plain` (float32 eager) in the same run.\n\n" + table)
    table, _ = benchmark_table(default_model_path("mask"), default_model_path("rgb"), s.bench_sizes, s.repeats,
                               device.type, quick=True)
    report.section("Inference: the shipped default models (example-based; they run on the CPU cores)", table)
    report.check("inference benchmark", True, f"{len(s.bench_sizes)} sizes measured (tables below)")


def train_step_benchmark(report, s: Settings, device: torch.device, work: Path) -> None:
    rows: dict[str, float] = {}
    for models, sizes in s.step_models:
        results = work / f"train_step-{sizes}.md"
        cmd = [sys.executable, str(REPO / "benchmarks" / "train_step.py"), "--models", models, "--sizes", sizes,
               "--steps", str(2 if s.smoke else 5), "--device", device.type, "--results", str(results)]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)
        if r.returncode or not results.is_file():
            report.check(f"train_step benchmark {sizes}", False, f"exited {r.returncode}: {r.stderr.strip()[-300:]}")
            continue
        text = results.read_text()
        report.section(f"Training steps on {device.type} at {sizes} (train_step.py)", text)
        for line in text.splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) == 9 and cells[4].replace(".", "", 1).isdigit():
                rows[f"{cells[0]} {cells[1]}"] = float(cells[4])
        failed = [line for line in text.splitlines() if "failed" in line]
        report.check(f"train_step benchmark {sizes}", not failed, f"{models}: " + ("; ".join(failed) or "measured"))
    report.data["seconds_per_step"] = rows


def export_throughput(report, s: Settings, work: Path) -> None:
    """``benchmarks/export_throughput.py``: one process against ``--workers auto`` with the shipped defaults
    (example-based: their workers go by CPU cores on a GPU machine too)."""
    results = work / "export_throughput.md"
    counts, rss = ("8,4", "4,8") if s.smoke else ("256,128", "64,192")
    cmd = [sys.executable, str(REPO / "benchmarks" / "export_throughput.py"), "--counts", counts, "--rss-counts",
           rss, "--repeats", "1" if s.smoke else "3", "--out", str(results)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)
    if r.returncode or not results.is_file():
        report.check("export throughput", False, f"exited {r.returncode}: {r.stderr.strip()[-300:]}")
        return
    report.section("Export throughput (export_throughput.py)", results.read_text())
    report.check("export throughput", "| NO |" not in results.read_text(), "measured; the files are the same bytes "
                 "for any worker count" if "| NO |" not in results.read_text() else "workers changed the output")
