"""Training-step speed and peak memory of every model, against a plain eager float32 step of the same network.

    python benchmarks/train_step.py [--models pix2pix,cyclegan] [--sizes 256x512,512x1024] [--steps 3]

"ours" is the step as ``priorpath train`` runs it on this device (``place_model``: channels-last and bf16
autocast on CUDA, foreach Adam); "plain" is the same network, float32, contiguous, Adam(foreach=False),
on the same device. Each measurement runs in its own process so peak memory (CUDA: max allocated; CPU: peak
resident set size above the idle process) is not polluted by the previous one. Batch 1, default options,
random masks (speed does not depend on content); one warm-up step, then the mean of --steps steps.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure(model_name: str, size: tuple[int, int], variant: str, steps: int, device_name: str) -> dict:
    import torch

    from trainer.config import make_config
    from trainer.devices import pick_device
    from trainer.models import model_class
    from trainer.train import make_optimizers, place_model, place_tensor

    device = pick_device(device_name)
    config = make_config({"model": model_name})
    torch.manual_seed(0)
    cls = model_class(model_name)
    model = cls(cls.options_type(), size)
    batch = {k: torch.rand(1, 3 if k == "rgb" else 1, *size) * 2 - 1 for k in cls.kinds}
    if variant == "ours":
        place_model(model, device, config)
        batch = {k: place_tensor(v, device, config) for k, v in batch.items()}
        optimizers = make_optimizers(model, config)
    else:
        model.to(device)
        batch = {k: v.to(device) for k, v in batch.items()}
        optimizers = {n: torch.optim.Adam(p, lr=config.lr, betas=(config.beta1, config.beta2), foreach=False)
                      for n, p in model.optimizer_groups().items()}
    model.train()
    idle_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model.train_step(batch, optimizers)  # warm-up: allocator, kernels, Adam state
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_step(batch, optimizers)
    sync()
    seconds = (time.perf_counter() - start) / steps
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - idle_rss
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return {"seconds": seconds, "peak_mb": peak, "params_m": params, "device": str(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="pix2pix,cyclegan,pix2pixhd,dcgan,depas")
    parser.add_argument("--sizes", default="256x512,512x1024")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--results", type=Path, default=None, help="also write the table to this markdown file")
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "HxW", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        name, size, variant = args.one
        h, w = map(int, size.split("x"))
        print(json.dumps(measure(name, (h, w), variant, args.steps, args.device)))
        return
    import torch

    lines = []

    def say(line: str = "") -> None:
        lines.append(line)
        print(line, flush=True)

    say(f"# train_step benchmark — {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {args.steps} timed steps after 1 warm-up, batch 1\n")
    say("| model | size | params (M) | plain s/step | ours s/step | ours steps/s | speed-up | plain peak MB | "
        "ours peak MB |")
    say("|---|---|---|---|---|---|---|---|---|")
    device = "?"
    for name in args.models.split(","):
        for size in args.sizes.split(","):
            results = {}
            for variant in ("plain", "ours"):
                out = subprocess.run([sys.executable, __file__, "--one", name, size, variant, "--steps",
                                      str(args.steps), "--device", args.device], capture_output=True, text=True)
                if out.returncode:
                    last = (out.stderr.strip().splitlines() or ["no output"])[-1]
                    say(f"| {name} | {size} | failed ({variant}): {last} |||||||")
                    break
                results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
            else:
                p, o = results["plain"], results["ours"]
                device = o["device"]
                say(f"| {name} | {size} | {o['params_m']:.1f} | {p['seconds']:.3f} | {o['seconds']:.3f} | "
                    f"{1 / o['seconds']:.2f} | {p['seconds'] / o['seconds']:.2f}x | {p['peak_mb']:.0f} | "
                    f"{o['peak_mb']:.0f} |")
    say(f"\ndevice: {device}")
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
