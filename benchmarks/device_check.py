"""The GPU check: one prepared command that proves the CUDA path and measures it, for a machine lent for minutes.

    python benchmarks/device_check.py --pack .device_pack     # here, once: the public images it trains on
    python benchmarks/device_check.py OUT [--data .device_pack] [--budget 530]   # there, on the GPU machine
    python benchmarks/device_check.py OUT --smoke              # anywhere: tiny sizes, CPU in place of CUDA
    python benchmarks/device_check.py --fid OUT                # here, after: FID of the held-out masks it made

It needs no install step and no network: it runs the trainer from this source tree with torch, numpy,
OpenCV, scikit-image, scikit-learn, scipy, safetensors and tqdm (PySide6, pyvips and openslide are not
needed). Everything goes to OUT, rewritten after every section, so a run stopped at any point leaves what
it measured:

- ``report.md`` / ``report.json``: the environment (GPU, driver, torch, CUDA), every check with its
  figures and PASS/FAIL, the benchmark tables and the trained models' held-out figures;
- ``log.txt``: the whole output; ``heldout.jpg``: held-out rows (coarse | generated fine | real fine |
  generated RGB | real RGB); ``heldout_masks.npz``: the generated held-out masks (bit-packed), so FID can be
  computed later where the Inception weights are (they do not fit the 64 MiB the machine receives).

Sections, in order (``benchmarks/device_checks.py`` holds the checks, ``device_training.py`` the real run):
1. environment;
2. every model's training step on the device under bf16 autocast and channels-last (loss finite, weights
   change, the settings really on), exact resume, fp16 inference on the device against the CPU float32
   result of the same checkpoint and seed, the engine's device choice, a one-process DDP run (nccl);
3. ``benchmarks/inference.py`` and ``benchmarks/train_step.py`` on the device, each against plain float32
   eager in the same run;
4. with the time left, real training of the paper-size pix2pix (512x1024) and pix2pixHD on the carried
   public images, split by patient, then compacted checkpoints and their held-out figures.

``--smoke`` (the default test suite runs it) does all of it at 64x128 with tiny networks and a few steps on
the CPU, so the script cannot rot between GPU runs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

#: the public images the full check trains on (osteosarcoma tiles, CC BY 3.0; see ../shared/data/SOURCES.md)
PACK_SOURCE = "osteosarcoma_tcia_ut"
TRAVEL_LIMIT = 62 * 2 ** 20  # the GPU machine receives at most 64 MiB: the tree, its models and the pack
GROUP = r"(Case-\d+|P\d+)-"  # one patient's tiles stay on one side of the split


class Clock:
    """The wall-clock budget: sections ask what is left before they start."""

    def __init__(self, budget: float):
        self.start, self.budget = time.perf_counter(), budget

    def used(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget - self.used()


class Report:
    """Checks, tables and figures, written to OUT/report.md and report.json after every change."""

    def __init__(self, out: Path, title: str):
        self.out, self.title = out, title
        self.checks: list[dict] = []
        self.sections: list[tuple[str, str]] = []
        self.data: dict[str, Any] = {}

    def check(self, name: str, ok: Optional[bool], detail: str, **figures: Any) -> bool:
        """ok None: not applicable here (e.g. bf16 on a CPU)."""
        status = "PASS" if ok else "n/a" if ok is None else "FAIL"
        self.checks.append({"check": name, "status": status, "detail": detail, **figures})
        print(f"[{status}] {name}: {detail}", flush=True)
        self.save()
        return bool(ok) or ok is None

    def section(self, title: str, markdown: str) -> None:
        self.sections.append((title, markdown))
        self.save()

    def save(self) -> None:
        failed = sum(c["status"] == "FAIL" for c in self.checks)
        lines = [f"# {self.title}", "", f"{len(self.checks)} checks, {failed} failed.", "",
                 "| check | result | detail |", "|---|---|---|"]
        lines += [f"| {c['check']} | {c['status']} | {c['detail']} |" for c in self.checks]
        for title, markdown in self.sections:
            lines += ["", f"## {title}", "", markdown]
        _write(self.out / "report.md", "\n".join(lines) + "\n")
        _write(self.out / "report.json", json.dumps({"checks": self.checks, **self.data}, indent=1, default=str))

    @property
    def failed(self) -> int:
        return sum(c["status"] == "FAIL" for c in self.checks)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class Tee:
    """Everything printed also goes to OUT/log.txt (the machine is given back; the log must come home)."""

    def __init__(self, path: Path, stream):
        self.file, self.stream = open(path, "a", encoding="utf-8"), stream

    def write(self, text: str) -> int:
        self.file.write(text)
        self.file.flush()
        return self.stream.write(text)

    def flush(self) -> None:
        self.file.flush()
        self.stream.flush()


# --- the data ------------------------------------------------------------------------------------------------
def make_pack(dest: Path, shared: Path) -> None:
    """Copy public images (byte-identical) for the full check into ``dest``, patients whole, under PACK_LIMIT."""
    import re

    source = shared / "data" / PACK_SOURCE
    files = sorted(source.glob("*.jpg"))
    if not files:
        sys.exit(f"--pack: no images in {source} (set PRIORPATH_SHARED to the shared folder)")
    by_patient: dict[str, list[Path]] = {}
    for f in files:
        match = re.search(GROUP, f.name)
        by_patient.setdefault(match.group(1) if match else f.stem, []).append(f)
    dest.mkdir(parents=True, exist_ok=True)
    limit = TRAVEL_LIMIT - tree_size()
    total = 0
    for patient in sorted(by_patient):
        size = sum(f.stat().st_size for f in by_patient[patient])
        if total + size > limit:
            continue
        for f in by_patient[patient]:
            shutil.copyfile(f, dest / f.name)
        total += size
    (dest / "SOURCES.md").write_text(
        f"Copied byte-identical from {PACK_SOURCE} (TCIA osteosarcoma, Leavey P. et al. 2019, "
        "doi:10.7937/tcia.2019.bvhjhdas, CC BY 3.0; see ../shared/data/SOURCES.md).\n")
    print(f"{dest}: {len(list(dest.glob('*.jpg')))} images, {total / 2 ** 20:.1f} MiB")


def tree_size() -> int:
    """Bytes of what travels besides the pack: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.split(b"\0")
    return sum((REPO / os.fsdecode(name)).stat().st_size for name in listed if name and (REPO / os.fsdecode(name)).is_file())


def prepare_split(data: Path, work: Path, patch: tuple[int, int]) -> tuple[Path, Path]:
    """``data`` (images, or a folder ``prepare`` wrote) -> (train, held-out) prepared folders split by patient."""
    from trainer.data.dataset import split_by_source
    from trainer.data.prepare import PrepareSettings, link_subset, prepare, read_manifest

    prepared = data
    if not (data / "manifest.csv").is_file():
        prepared = work / "prepared"
        prepare([data], prepared, PrepareSettings(stain="he", patch=patch))
    rows = read_manifest(prepared)
    train, held = split_by_source(rows, test_fraction=0.3, seed=0, group_pattern=GROUP)
    if not train or not held:
        raise SystemExit(f"{data}: too few source images to hold some out ({len(rows)} patches)")
    return link_subset(prepared, work / "train", train), link_subset(prepared, work / "heldout", held)


# --- the run -------------------------------------------------------------------------------------------------
def held_out_fid(out: Path) -> None:
    """Unpack OUT/heldout_masks.npz and run ``priorpath eval`` on it (needs the FID Inception weights)."""
    import tempfile

    import numpy as np

    from trainer.fileio import write_png
    from trainer.metrics.report import EvalSettings, evaluate

    data = np.load(out / "heldout_masks.npz", allow_pickle=False)
    names = [str(n) for n in data["names"]]
    with tempfile.TemporaryDirectory() as tmp:
        folders = {}
        for key in ("real", "coarse", "pix2pix_seed0", "pix2pix_seed1"):
            shape = tuple(int(v) for v in data[f"{key}_shape"])
            masks = np.unpackbits(data[key], axis=-1, count=shape[-1]).reshape(shape)
            folders[key] = Path(tmp) / key
            folders[key].mkdir()
            for name, mask in zip(names, masks):
                write_png(folders[key] / f"{name}.png", (mask * 255).astype(np.uint8))
        report = evaluate(folders["real"], [(k, folders[k]) for k in ("coarse", "pix2pix_seed0", "pix2pix_seed1")],
                          out / "fid", EvalSettings(device="cpu", dataset="device check held-out"))
    for name, m in report.metrics.items():
        print(f"{name}: N {m['n']}, FID {m['fid']:.1f}, KS {m['ks']:.3f}, KL {m['kl']:.3f}")
    print(f"report in {out / 'fid'}")


def environment(device) -> dict:
    import importlib

    import torch

    env = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
           "torch": torch.__version__, "cuda_build": torch.version.cuda, "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                   gpu_memory_gib=round(props.total_memory / 2 ** 30, 1), cudnn=torch.backends.cudnn.version(),
                   bf16=torch.cuda.is_bf16_supported())
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            env["driver"] = f"nvidia-smi failed: {exc}"
    for name in ("numpy", "cv2", "skimage", "sklearn", "scipy", "safetensors", "tqdm", "tifffile", "PySide6",
                 "pyvips", "openslide"):
        try:
            env[name] = getattr(importlib.import_module(name), "__version__", "present")
        except Exception:  # absent (or broken): the check must not need it
            env[name] = "absent"
    return env


def run_section(report: Report, clock: Clock, name: str, needs: float, fn: Callable[[], None]) -> None:
    """Run one section if ``needs`` seconds are left; an exception fails it without stopping the others."""
    if clock.left() < needs:
        report.check(name, False, f"skipped: {clock.left():.0f} s left, it needs about {needs:.0f} s")
        return
    started = time.perf_counter()
    try:
        fn()
    except Exception as exc:
        traceback.print_exc()
        report.check(name, False, f"crashed: {type(exc).__name__}: {str(exc)[:300]}")
    print(f"-- {name}: {time.perf_counter() - started:.1f} s (used {clock.used():.0f} of {clock.budget:.0f} s)",
          flush=True)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("out", type=Path, nargs="?", help="folder for the report, log and figures")
    ap.add_argument("--data", type=Path, default=None,
                    help="images or a prepared folder to train on (default: .device_pack, else the bundled sample)")
    ap.add_argument("--budget", type=float, default=None, help="wall-clock seconds (default 530; smoke 600)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, a few steps, CPU in place of CUDA")
    ap.add_argument("--device", default="auto", help="auto (CUDA, else CPU), cuda or cpu")
    ap.add_argument("--pack", type=Path, metavar="DIR", help="only gather the public images into DIR, then stop")
    ap.add_argument("--fid", type=Path, metavar="OUT", help="FID of a finished check's held-out masks, then stop")
    args = ap.parse_args(argv)
    if args.pack:
        make_pack(args.pack, Path(os.environ.get("PRIORPATH_SHARED", REPO.parent / "shared")))
        return 0
    if args.fid:
        held_out_fid(args.fid)
        return 0
    if args.out is None:
        ap.error("OUT is required (the folder for the report)")
    import torch

    from device_checks import Settings, all_checks
    from device_training import train_and_score
    from trainer.devices import pick_device

    device = pick_device("cpu" if args.smoke and args.device == "auto" else args.device)
    if device.type != "cuda" and not args.smoke:
        print("no CUDA device: running the smoke version on the CPU instead", flush=True)
        args.smoke = True
    settings = Settings.for_run(args.smoke, device)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    sys.stdout = Tee(out / "log.txt", sys.stdout)
    clock = Clock(args.budget or (600 if args.smoke else 530))
    report = Report(out, f"Device check ({'smoke, ' if args.smoke else ''}{device})")
    report.data["environment"] = env = environment(device)
    report.section("Environment", "\n".join(f"- {k}: {v}" for k, v in env.items()))
    data = args.data or (REPO / ".device_pack" if (REPO / ".device_pack").is_dir() else REPO / "resources" / "sample" / "he")
    work = out / "work"
    try:
        train_dir, held_dir = prepare_split(data, work, settings.patch)
        report.data["data"] = {"source": str(data), "train": len(list((train_dir / "fine").glob("*.png"))),
                               "heldout": len(list((held_dir / "fine").glob("*.png")))}
        print(f"data: {report.data['data']}", flush=True)
        for name, needs, fn in all_checks(report, settings, device, train_dir, held_dir, work, out):
            run_section(report, clock, name, needs, fn)
        run_section(report, clock, "real training", settings.min_training,
                    lambda: train_and_score(report, settings, device, train_dir, held_dir, work, out, clock))
    finally:
        if not os.environ.get("PRIORPATH_KEEP_WORK"):
            shutil.rmtree(work, ignore_errors=True)  # checkpoints of GBs: only what comes home stays in OUT
        torch.cuda.empty_cache() if device.type == "cuda" else None
    print(f"device check: {len(report.checks)} checks, {report.failed} failed, {clock.used():.0f} s; "
          f"report in {out / 'report.md'}", flush=True)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
