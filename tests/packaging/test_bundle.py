"""The PyInstaller bundle, built from a clean checkout of HEAD, passes its own --self-test (slow: minutes).

    ./run.sh test -m slow tests/packaging

The build uses this venv's packages (PyInstaller is a dev dependency). Uncommitted changes are not in
a clean checkout, so commit before running this.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]  # the build runs in the fixture: minutes


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(bundle folder, build.py's report, folder of the self-test's images)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout to clone")
    pytest.importorskip("PyInstaller")
    tmp = tmp_path_factory.mktemp("bundle")
    if shutil.disk_usage(tmp).free < 4 * 2**30:
        pytest.skip("needs 4 GiB free for the bundle (1.1 GiB) and PyInstaller's work files")
    checkout = tmp / "checkout"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{ROOT}", str(checkout)], check=True)
    out = tmp / "self-test"
    done = subprocess.run([sys.executable, str(checkout / "packaging" / "build.py"), "--dist", str(tmp / "dist"),
                           "--work", str(tmp / "work"), "--self-test-out", str(out)],
                          capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    print(done.stdout)  # the build time, size and self-test lines, for the record (pytest -s shows them)
    report = json.loads((tmp / "dist" / "priorpath-desktop-build.json").read_text())
    return tmp / "dist" / "priorpath-desktop", report, out


def test_the_bundle_passes_its_self_test_outside_the_venv(built):
    bundle, report, out = built
    assert report["self_test"]["exit_code"] == 0
    output = report["self_test"]["output"]
    assert "(frozen bundle," in output  # the bundle's own interpreter ran, not this venv's
    assert str(Path(sys.prefix)) not in output
    for check in ("resources", "generation", "app window", "training", "fid network"):
        assert f"ok   {check}:" in output
    assert (out / "window.png").stat().st_size > 10_000 and (out / "rgb.png").is_file()


def test_the_bundle_carries_its_resources_and_leaves_out_what_it_never_uses(built):
    bundle, report, _ = built
    internal = bundle / "_internal"
    for path in ("resources/models/mask_default.safetensors", "resources/models/rgb_default.safetensors",
                 "resources/icons/priorpath.svg", "resources/sample/sketches/sketch_01.png",
                 "resources/fid/default_1.pt"):
        assert (internal / path).is_file(), path
    present = {p.name for p in internal.iterdir()}
    assert not present & {"pytest", "_pytest", "PyInstaller", "tkinter", "IPython", "onnx", "onnxruntime"}
    qt = internal / "PySide6"
    assert list(qt.rglob("QtWidgets*")) and list(qt.rglob("*qoffscreen*"))  # the layout these globs assume
    assert not list(qt.rglob("*.qm")) and not list(qt.rglob("*Qt6Quick*")) and not list(qt.rglob("*Qt6Qml*"))
    assert not list(qt.rglob("*qvnc*")) and not list((internal / "torch").rglob("*test_jit*"))
    dangling = [str(p) for p in bundle.rglob("*") if p.is_symlink() and not p.exists()]
    assert not dangling, dangling  # copying the folder (shutil.copytree, installers) would fail on them
    assert report["bundle_bytes"] > 100 * 2**20  # torch and Qt: a smaller bundle is missing something


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("unshare") is None,
                    reason="hides folders with a Linux mount namespace")
def test_the_bundle_runs_with_the_venv_and_python_hidden(built, tmp_path):
    """Mount empty folders over this venv and the Python it was made from (unless that is the system's own,
    which the whole system needs): the bundle must not need them."""
    bundle, _, _ = built
    system = {Path("/"), Path("/usr"), Path("/usr/local")}
    hidden = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()} - system
    if any(bundle.resolve().is_relative_to(h) for h in hidden):
        pytest.skip("the bundle lies inside a folder to hide")
    mounts = " && ".join(f"mount -t tmpfs none '{h}'" for h in sorted(hidden))
    if subprocess.run(["unshare", "-m", "--map-root-user", "sh", "-c", mounts], capture_output=True).returncode:
        pytest.skip("no permission for a private mount namespace here")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "QT_QPA_PLATFORM": "offscreen",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    script = f"{mounts} && ! test -e '{sys.executable}' && exec '{bundle / 'priorpath-desktop'}' --self-test"
    done = subprocess.run(["unshare", "-m", "--map-root-user", "sh", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    assert "self-test passed" in done.stdout
