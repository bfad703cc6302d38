"""Export throughput with worker processes, memory against N, and what one tile costs against a U-Net forward.

    python benchmarks/export_throughput.py [--counts 96,48] [--rss-counts 32,96] [--repeats 3]
                                           [--out benchmarks/results/export_throughput.md]

In one run, on the CPU, with the shipped default models (``analogy`` coarse->fine, ``quilt`` fine->RGB):

1. Samples per second of ``export_dataset`` at 256x512 and 512x1024, one process (``workers=1``, the
   baseline) against ``workers="auto"``; the two exports are checked to be byte for byte the same. The rate
   is given for the whole call (starting the workers included) and after the first sample is written.
2. Peak resident memory of ``priorpath export`` (the process and its workers, summed; sampled every
   20 ms) at two counts N, for one process and for auto: the ratio to the smaller N shows memory is flat
   in N.
3. One plain forward of the paper-size pix2pix U-Net generator at 512x1024 (default options, random
   weights, float32, eval, ``no_grad``, batch 1; the baseline), and the full coarse -> fine -> RGB tile
   (``Engine.generate``) at that size, as a ratio of it.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

SKETCHES = REPO / "resources" / "sample" / "sketches"
SIZES = [(256, 512), (512, 1024)]


def machine() -> str:
    import torch

    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from trainer.pool import usable_cores

    return (f"{platform.machine()} {model}".strip() + f", {usable_cores()} usable CPU cores, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads in this process)")


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def timed_export(engine, out: Path, count: int, size, workers) -> tuple[float, float]:
    """(samples/s over the whole call, samples/s after the first sample)."""
    from trainer.export import export_dataset

    stamps = []
    start = time.perf_counter()
    export_dataset([SKETCHES], out, count, engine, seed=0, size=size, workers=workers,
                   progress=lambda done, total, msg: stamps.append(time.perf_counter()) if done else None)
    whole = time.perf_counter() - start
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
    return count / whole, steady


def throughput(engine, counts: list[int], tmp: Path) -> list[dict]:
    from trainer.pool import resolve_workers

    rows = []
    for size, count in zip(SIZES, counts):
        one = timed_export(engine, tmp / f"one_{size[0]}", count, size, 1)
        auto = timed_export(engine, tmp / f"auto_{size[0]}", count, size, "auto")
        same = tree(tmp / f"one_{size[0]}") == tree(tmp / f"auto_{size[0]}")
        rows.append({"size": size, "count": count, "workers": resolve_workers("auto", "cpu", count),
                     "one": one, "auto": auto, "same": same})
        print(f"{size[0]}x{size[1]}: 1 process {one[0]:.2f}/s, auto {auto[0]:.2f}/s (steady {one[1]:.2f} vs "
              f"{auto[1]:.2f}); identical: {same}", flush=True)
    return rows


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def peak_rss(count: int, workers: str, out: Path) -> tuple[int, float]:
    """(peak resident bytes of the export's process tree, seconds) for ``priorpath export``."""
    cmd = [sys.executable, "-m", "trainer.cli", "export", "--sketches", str(SKETCHES), "--count", str(count),
           "--out", str(out), "--size", "256x512", "--device", "cpu", "--no-progress", "--workers", workers]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.02)
    if proc.returncode:
        raise SystemExit(f"export failed: {proc.stderr.read().decode()}")
    return peak, time.perf_counter() - start


def unet_vs_tile(engine, repeats: int) -> dict:
    import numpy as np
    import torch

    from trainer.data.sketches import augment_sketch, fit_to_size, load_sketch
    from trainer.models.pix2pix import Model, Options

    size = SIZES[1]
    net = Model(Options(), size).G.eval()
    x = torch.randn(1, 1, *size)

    def forward():
        with torch.no_grad():
            net(x)

    from inference import timed  # benchmarks/inference.py: warm-up, then the median of the repeats

    unet = timed(forward, repeats)
    params = sum(p.numel() for p in net.parameters()) / 1e6
    del net
    sketch = fit_to_size(load_sketch(sorted(SKETCHES.iterdir())[0]), size)
    coarse, _ = augment_sketch(sketch, size, np.random.default_rng(0))
    seeds = iter(range(10_000))
    tile = timed(lambda: engine.generate(coarse, next(seeds)), repeats)
    return {"unet": unet, "tile": tile, "params": params}


def write(path: Path, rows, rss, costs, args, load_start, seconds) -> None:
    lines = [
        "# Export throughput (default models, CPU)",
        "",
        f"Generated by `python benchmarks/export_throughput.py --counts {args.counts} --rss-counts {args.rss_counts} "
        f"--repeats {args.repeats}` on {datetime.date.today()} in {seconds:.0f} s ({machine()}; load average "
        f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end). Models: mask "
        f"`mask_default.safetensors` (analogy), RGB `rgb_default.safetensors` (quilt). Every ratio is against the "
        f"baseline measured in the same run.",
        "",
        "## Samples per second: one process (baseline) against `--workers auto`",
        "",
        "Whole call: from the call to the last manifest row, starting the workers included. Steady: after the "
        "first sample was written.",
        "",
        "| size | samples | auto = workers | 1 process (samples/s) | auto (samples/s) | auto ÷ 1 | "
        "1 process, steady | auto, steady | auto ÷ 1, steady | same bytes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        (o, os_), (a, as_) = r["one"], r["auto"]
        lines.append(f"| {r['size'][0]}x{r['size'][1]} | {r['count']} | {r['workers']} | {o:.2f} | {a:.2f} | "
                     f"{a / o:.2f}x | {os_:.2f} | {as_:.2f} | {as_ / os_:.2f}x | {'yes' if r['same'] else 'NO'} |")
    lines += [
        "",
        "## Peak memory against N (`priorpath export --size 256x512`, process and workers summed)",
        "",
        "| workers | N | peak RSS (MiB) | ÷ peak at the smaller N | seconds |",
        "|---|---|---|---|---|",
    ]
    for workers, entries in rss.items():
        base = entries[0][1]
        for n, peak, secs in entries:
            lines.append(f"| {workers} | {n} | {peak / 2 ** 20:.0f} | {peak / base:.2f}x | {secs:.1f} |")
    lines += [
        "",
        "## One tile against one plain U-Net forward (512x1024, this process)",
        "",
        "| what | ms (median) | ÷ U-Net forward |",
        "|---|---|---|",
        f"| pix2pix U-Net generator forward (paper size, {costs['params']:.1f} M parameters, float32, eval, "
        f"no_grad, batch 1; baseline) | {costs['unet'] * 1e3:.0f} | 1.00x |",
        f"| coarse → fine → RGB tile, `Engine.generate` (analogy + quilt) | {costs['tile'] * 1e3:.0f} | "
        f"{costs['tile'] / costs['unet']:.2f}x |",
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", default="96,48", help="samples exported at 256x512,512x1024")
    parser.add_argument("--rss-counts", default="32,96", help="the two N for peak memory")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls for the U-Net and the tile")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "export_throughput.md")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    began = time.perf_counter()

    from trainer.inference import Engine

    engine = Engine(None, None, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = throughput(engine, [int(c) for c in args.counts.split(",")], tmp)
        rss = {}
        for workers in ("1", "auto"):
            rss[workers] = []
            for n in (int(c) for c in args.rss_counts.split(",")):
                peak, secs = peak_rss(n, workers, tmp / f"rss_{workers}_{n}")
                rss[workers].append((n, peak, secs))
                print(f"workers {workers}, N {n}: peak {peak / 2 ** 20:.0f} MiB in {secs:.1f} s", flush=True)
    costs = unet_vs_tile(engine, args.repeats)
    print(f"U-Net forward {costs['unet'] * 1e3:.0f} ms, tile {costs['tile'] * 1e3:.0f} ms", flush=True)
    write(args.out, rows, rss, costs, args, load_start, time.perf_counter() - began)
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":  # the guard matters: spawned workers import this module
    sys.exit(main())
