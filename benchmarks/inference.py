"""Inference latency and throughput of each stage, against a plain eager float32 run of the same network.

    python benchmarks/inference.py [--mask-model CKPT] [--rgb-model CKPT] [--sizes 256x512,512x1024]
                                   [--repeats 7] [--device cpu|cuda] [--results FILE]

Stages: the coarse->fine model and the fine->RGB model (default: the shipped defaults). For a network
(pix2pix, pix2pixHD) each variant runs the same weights on the same input in this process:

- ``plain``: float32, contiguous, ``torch.no_grad()``, eval mode: the baseline every ratio refers to;
- ``engine``: ``Engine.fine`` / ``Engine.rgb`` as the app and CLI call them (numpy in, numpy out,
  seeding, padding, thresholding included);
- ``inference_mode``, ``channels_last``: the plain forward under ``torch.inference_mode()``, then also with
  channels-last tensors;
- ``jit_freeze``: ``torch.jit.trace`` + ``torch.jit.freeze`` + ``optimize_for_inference`` (oneDNN conv fusion);
- ``compile``: ``torch.compile`` (the first call's compile time is reported separately);
- ``onnxruntime``: the network exported to ONNX and run by ONNX Runtime's CPU provider, when it is installed.

On CUDA (``--device cuda``) the variants are ``plain`` (float32 eager, as above), ``engine`` (the engine's
float16 autocast), ``fp16`` (the plain forward under float16 autocast) and ``fp16_channels_last``;
throughput is measured at batch 1, 2, 4, 8 and 16 and the best is reported with its batch, and each
variant's peak GPU memory (``max_memory_allocated``) is given.

For the example-based ``analogy`` model the baseline is the exhaustive search (every block against every
stored window) and ``engine`` its pooled search. Latency: median of ``--repeats`` single-image calls after a
warm-up; throughput: images per second over ``--repeats`` calls of a batch of 4. Real coarse masks from the
bundled sample (tiled to each size) are the input.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from trainer.inference import Engine, default_model_path  # noqa: E402

SKETCH = REPO / "resources" / "sample" / "sketches" / "sketch_01.png"
BATCH = 4


def timed(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def network_variants(engine: Engine, role: str, image: np.ndarray, repeats: int,
                     quick: bool = False) -> list[tuple[str, float, float, str]]:
    """(variant, latency s, throughput img/s, note) for a network model; ``quick``: the first three only."""
    model = engine.mask if role == "mask" else engine.rgb_model
    net = model.module
    x1 = torch.from_numpy(image).float().div(127.5).sub(1)[None, None]
    x4 = x1.repeat(BATCH, 1, 1, 1)
    rows = []

    def both(name: str, fn: Callable[[torch.Tensor], object], note: str = "") -> None:
        latency = timed(lambda: fn(x1), repeats)
        per_batch = timed(lambda: fn(x4), max(2, repeats // 2))
        rows.append((name, latency, BATCH / per_batch, note))

    def plain(x):
        with torch.no_grad():
            return net.translate(x)

    both("plain", plain)
    call = engine.fine if role == "mask" else engine.rgb
    latency = timed(lambda: call(image, 0), repeats)
    rows.append(("engine", latency, 1 / latency, "one image per call (per-image seeds)"))

    def inference(x):
        with torch.inference_mode():
            return net.translate(x)

    both("inference_mode", inference)
    if quick:
        return rows
    net.to(memory_format=torch.channels_last)
    both("channels_last", lambda x: inference(x.contiguous(memory_format=torch.channels_last)))
    net.to(memory_format=torch.contiguous_format)

    class Translate(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner.translate(x)

    wrapper = Translate(net).eval()
    try:
        with torch.no_grad():
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(wrapper, x1, check_trace=False)))
        both("jit_freeze", lambda x: frozen(x), "traced at batch 1; batch 4 re-specialises")
    except Exception as exc:  # a measurement, not a feature: report why it could not run
        rows.append(("jit_freeze", float("nan"), float("nan"), f"failed: {type(exc).__name__}: {str(exc)[:80]}"))
    try:
        compiled = torch.compile(wrapper)
        start = time.perf_counter()
        with torch.inference_mode():
            compiled(x1)
        first = time.perf_counter() - start
        both("compile", lambda x: inference_compiled(compiled, x), f"first call (compile) {first:.0f} s")
    except Exception as exc:
        rows.append(("compile", float("nan"), float("nan"), f"failed: {type(exc).__name__}: {str(exc)[:80]}"))
    rows.append(onnx_variant(wrapper, x1, x4, repeats))
    return rows


def inference_compiled(compiled, x):
    with torch.inference_mode():
        return compiled(x)


def onnx_variant(wrapper: torch.nn.Module, x1: torch.Tensor, x4: torch.Tensor, repeats: int):
    try:
        import onnxruntime as ort
    except ImportError:
        return ("onnxruntime", float("nan"), float("nan"), "not installed (pip install onnxruntime onnx)")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.onnx")
            torch.onnx.export(wrapper, (x1,), path, input_names=["x"], output_names=["y"], dynamo=False,
                              dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, opset_version=17)
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        a1, a4 = x1.numpy(), x4.numpy()
        latency = timed(lambda: session.run(None, {"x": a1}), repeats)
        per_batch = timed(lambda: session.run(None, {"x": a4}), max(2, repeats // 2))
        return ("onnxruntime", latency, BATCH / per_batch, f"ORT {ort.__version__}, CPU provider")
    except Exception as exc:
        return ("onnxruntime", float("nan"), float("nan"), f"failed: {type(exc).__name__}: {str(exc)[:80]}")


BATCHES = (1, 2, 4, 8, 16)


def cuda_variants(engine: Engine, role: str, image: np.ndarray, repeats: int) -> list[tuple[str, float, float, str]]:
    """(variant, latency s, best throughput img/s, note with the batch and peak memory) for a network on CUDA."""
    model = engine.mask if role == "mask" else engine.rgb_model
    net, device = model.module, engine.device
    x1 = torch.from_numpy(image).float().div(127.5).sub(1)[None, None].to(device)
    rows = []

    def synced(fn):
        def call(x):
            out = fn(x)
            torch.cuda.synchronize(device)
            return out
        return call

    def measure(name: str, fn: Callable[[torch.Tensor], object], prepare=lambda x: x) -> None:
        torch.cuda.reset_peak_memory_stats(device)
        latency = timed(lambda: synced(fn)(prepare(x1)), repeats)
        best, best_batch = 0.0, 1
        for b in BATCHES:
            xb = prepare(x1.repeat(b, 1, 1, 1))
            try:
                per_batch = timed(lambda: synced(fn)(xb), max(2, repeats // 2))
            except torch.cuda.OutOfMemoryError:
                break
            if b / per_batch > best:
                best, best_batch = b / per_batch, b
        peak = torch.cuda.max_memory_allocated(device) / 2 ** 20
        rows.append((name, latency, best, f"best batch {best_batch}; peak {peak:.0f} MiB"))

    def plain(x):
        with torch.no_grad():
            return net.translate(x)

    def fp16(x):
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
            return net.translate(x)

    measure("plain", plain)
    call = engine.fine if role == "mask" else engine.rgb
    torch.cuda.reset_peak_memory_stats(device)
    latency = timed(lambda: call(image, 0), repeats)
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 20
    rows.append(("engine", latency, 1 / latency, f"one image per call, numpy in and out; peak {peak:.0f} MiB"))
    measure("fp16", fp16)
    net.to(memory_format=torch.channels_last)
    measure("fp16_channels_last", fp16, lambda x: x.contiguous(memory_format=torch.channels_last))
    net.to(memory_format=torch.contiguous_format)
    return rows


def analogy_variants(engine: Engine, image: np.ndarray, repeats: int) -> list[tuple[str, float, float, str]]:
    net = engine.mask.module
    x1 = torch.from_numpy(image).float().div(127.5).sub(1)[None, None]
    features, _ = net.features()

    def exhaustive(x):
        o = net.options
        margin = (o.context - o.block) // 2
        padded = torch.nn.functional.pad((x > 0).float(), (margin,) * 4, mode="replicate")
        windows = torch.nn.functional.unfold(padded, o.context, stride=o.block).transpose(1, 2)
        query = net._describe(windows.reshape(-1, o.context, o.context))
        d = torch.cdist(query, features)
        d += torch.rand(d.shape) * 1e-3
        return d.topk(o.choices, largest=False).indices

    rows = []
    latency = timed(lambda: exhaustive(x1), repeats)
    rows.append(("plain", latency, 1 / latency, "exhaustive search: every block against every window"))
    latency = timed(lambda: engine.fine(image, 0), repeats)
    rows.append(("engine", latency, 1 / latency, "uniform blocks drawn from pools; edge blocks searched"))
    return rows


def test_image(size: tuple[int, int]) -> np.ndarray:
    import cv2

    sketch = cv2.imread(str(SKETCH), cv2.IMREAD_GRAYSCALE)
    reps = (-(-size[0] // sketch.shape[0]), -(-size[1] // sketch.shape[1]))
    return np.ascontiguousarray(np.tile(sketch, reps)[: size[0], : size[1]])


def benchmark_table(mask_model: Path, rgb_model: Path, sizes: list[tuple[int, int]], repeats: int,
                    device: str = "cpu", quick: bool = False) -> tuple[str, Engine]:
    """The markdown table of every stage, size and variant (printed row by row as it is measured).

    ``quick``: on the CPU, leave out the slow-to-build variants (TorchScript, torch.compile, ONNX Runtime)."""
    engine = Engine(mask_model, rgb_model, device=device)
    cuda = engine.device.type == "cuda"
    lines = ["| stage | model | size | variant | latency (ms) | vs plain | throughput (img/s" +
             (", best batch" if cuda else ", batch 4") + ") | vs plain | note |", "|" + "---|" * 9]
    for size in sizes:
        image = test_image(size)
        fine = engine.fine(image, 0)
        for role, model in (("mask", engine.mask), ("rgb", engine.rgb_model)):
            source = image if role == "mask" else fine
            if model.name == "analogy":
                rows = analogy_variants(engine, image, repeats)
            elif model.name == "quilt":
                latency = timed(lambda: engine.rgb(fine, 0), repeats)
                rows = [("engine", latency, 1 / latency, "example-based (numpy on the CPU whatever the device)")]
            elif cuda:
                rows = cuda_variants(engine, role, source, repeats)
            else:
                rows = network_variants(engine, role, source, repeats, quick)
            base_latency, base_throughput = rows[0][1], rows[0][2]
            for name, latency, throughput, note in rows:
                lines.append(f"| {'coarse→fine' if role == 'mask' else 'fine→RGB'} | {model.name} | "
                             f"{size[0]}x{size[1]} | {name} | {1000 * latency:.1f} | {base_latency / latency:.2f}x | "
                             f"{throughput:.2f} | {throughput / base_throughput:.2f}x | {note} |")
                print(lines[-1], flush=True)
    return "\n".join(lines), engine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mask-model", type=Path, default=default_model_path("mask"))
    ap.add_argument("--rgb-model", type=Path, default=default_model_path("rgb"))
    ap.add_argument("--sizes", default="256x512,512x1024")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--results", type=Path, default=None,
                    help="default: benchmarks/results/inference_<device>.md")
    args = ap.parse_args()
    args.results = args.results or REPO / "benchmarks" / "results" / f"inference_{args.device}.md"
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    table, engine = benchmark_table(args.mask_model, args.rgb_model, sizes, args.repeats, args.device)
    machine = (f"{platform.machine()}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, "
               f"torch {torch.__version__}")
    if engine.device.type == "cuda":
        machine += f", {torch.cuda.get_device_name(engine.device)}, CUDA {torch.version.cuda}"
    text = "\n".join([
        f"# Inference speed on the {'GPU' if engine.device.type == 'cuda' else 'CPU'}",
        "",
        f"Generated by `python benchmarks/inference.py` on {datetime.date.today().isoformat()} ({machine}; load "
        f"average at the end {os.getloadavg()[0]:.1f}). Models: mask `{args.mask_model.name}` "
        f"({engine.mask.label}), RGB `{args.rgb_model.name}` ({engine.rgb_model.label}).",
        "",
        "Ratios are against `plain` in the same run (> 1x is faster). NaN: the variant could not run (see note).",
        "",
        table,
        "",
    ])
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    print(f"written {args.results}")


if __name__ == "__main__":
    main()
