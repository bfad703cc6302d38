"""The GPU check's smoke mode: the whole script runs on the CPU, so it cannot rot between GPU runs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "device_check.py"


def test_device_check_smoke_runs_every_section_and_writes_what_comes_back(sample_patches, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(SCRIPT), str(out), "--smoke", "--data", str(sample_patches)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    report = json.loads((out / "report.json").read_text())
    status = {c["check"]: c["status"] for c in report["checks"]}
    assert [name for name, s in status.items() if s == "FAIL"] == []
    for model in ("pix2pix", "cyclegan", "pix2pixhd", "dcgan", "depas", "analogy", "quilt"):
        assert status[f"train step {model}"] == "PASS"
    assert status["bf16 + channels-last pix2pix"] == "n/a"  # CUDA-only settings are not claimed on a CPU
    for name in ("exact resume pix2pix", "exact resume pix2pixhd", "parity default RGB model", "engine device",
                 "ddp one process", "inference benchmark", "train_step benchmark 64x128", "export throughput",
                 "real training pix2pix", "real training pix2pixhd"):
        assert status[name] == "PASS", name
    # a few steps of tiny networks: the held-out figures are computed, but they judge nothing
    assert status["held-out pix2pix"] == status["held-out pix2pixHD"] == "n/a"
    assert set(report["heldout_masks"]["pix2pix"]) >= {"ks", "kl", "ks_boundary"}
    assert report["environment"]["device"] == "cpu" and report["environment"]["PySide6"]
    text = (out / "report.md").read_text()
    assert "| fine→RGB | pix2pixhd | 64x128 | plain |" in text and "Training steps on cpu at 64x128" in text
    # what comes back from a GPU machine: at most 8 files, no folders, each under 16 MiB
    files = sorted(p.name for p in out.iterdir())
    assert not any((out / f).is_dir() for f in files) and len(files) <= 8
    assert {"report.md", "report.json", "log.txt", "heldout.jpg", "heldout_masks.npz"} <= set(files)
    assert all((out / f).stat().st_size < 16 * 2 ** 20 for f in files)
    masks = np.load(out / "heldout_masks.npz", allow_pickle=False)
    shape = tuple(masks["pix2pix_seed0_shape"])
    assert shape == (6, 64, 128)
    unpacked = np.unpackbits(masks["pix2pix_seed0"], axis=-1, count=shape[-1]).reshape(shape)
    assert unpacked.any() and set(np.unique(unpacked)) <= {0, 1}
    # the checkpoint parts join back into a checkpoint the engine loads
    parts = sorted(out.glob("pix2pix_64x128.safetensors.part*"))
    joined = tmp_path / "pix2pix.safetensors"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    from trainer.inference import Engine

    assert Engine(joined, "none", device="cpu").fine(np.full((64, 128), 255, np.uint8), 0).shape == (64, 128)


def test_device_check_refuses_to_run_without_an_output_folder():
    r = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "OUT is required" in r.stderr
