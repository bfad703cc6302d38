"""Build the PriorPath Desktop bundle with PyInstaller, measure it and check it.

    python packaging/build.py [--dist DIR] [--work DIR] [--no-check] [--self-test-out DIR] [--archive]

Runs PyInstaller on ``packaging/priorpath.spec`` with the Python that runs this script (the project venv:
``.venv/bin/python packaging/build.py``), so the bundle carries exactly the packages installed there, the
CPU or the CUDA build of torch alike. The bundle lands in ``DIST/priorpath-desktop/`` (default
``dist/``). Then the bundle's ``--self-test`` runs in a scrubbed environment (neither the venv nor the
Python it was made from on PATH, no PYTHON*/VIRTUAL_ENV variables, a temporary working folder), and the build time, the bundle's size with its
largest parts, and the self-test's result are printed and written to ``DIST/priorpath-desktop-build.json``.
``--archive`` then packs the checked bundle for download (``.zip`` on Windows, ``.tar.gz`` elsewhere, links
kept) and records its size. Exit status: 0 when the build succeeded and the self-test passed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "packaging" / "priorpath.spec"
NAME = "priorpath-desktop"
#: prefixes of the operating system's own Python: hiding them would hide the whole system
SYSTEM_PREFIXES = {Path("/"), Path("/usr"), Path("/usr/local")}


def executable(bundle: Path) -> Path:
    return bundle / (f"{NAME}.exe" if sys.platform == "win32" else NAME)


def folder_size(path: Path) -> int:
    """Bytes in files under ``path`` (symbolic links not followed, so nothing counts twice)."""
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def largest_parts(bundle: Path, count: int = 12) -> list[tuple[str, int]]:
    """The biggest files and packages of the bundle: the second level under ``_internal`` for packages."""
    internal = bundle / "_internal"
    sizes: dict[str, int] = {}
    for path in internal.rglob("*"):
        if path.is_file() and not path.is_symlink():
            parts = path.relative_to(internal).parts
            key = "/".join(parts[:2]) if len(parts) > 2 else parts[0]
            sizes[key] = sizes.get(key, 0) + path.lstat().st_size
    return sorted(sizes.items(), key=lambda kv: -kv[1])[:count]


def scrubbed_environment() -> dict[str, str]:
    """This environment without the venv and the Python it was made from: as a user's desktop gives it."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "CONDA", "PRIORPATH_"))}
    hidden = [Path(sys.prefix).resolve()]
    base = Path(sys.base_prefix).resolve()
    if base not in SYSTEM_PREFIXES:  # a Python of its own (pyenv, python.org, conda), not the system's /usr
        hidden.append(base)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and not any(Path(p).resolve().is_relative_to(h) for h in hidden))
    return env


def self_test(bundle: Path, out_dir: Optional[Path] = None, timeout: int = 1800) -> subprocess.CompletedProcess:
    """Run the bundle's ``--self-test`` offscreen, outside the checkout, in the scrubbed environment."""
    env = scrubbed_environment()
    env["QT_QPA_PLATFORM"] = "offscreen"
    command = [str(executable(bundle)), "--self-test"] + (["--self-test-out", str(out_dir)] if out_dir else [])
    with tempfile.TemporaryDirectory(prefix="priorpath-bundle-cwd-", ignore_cleanup_errors=True) as cwd:
        try:
            return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:  # the child was killed; report it like any failure
            output = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            return subprocess.CompletedProcess(command, 124, output, f"self-test still running after {timeout} s")


def archive(bundle: Path) -> Path:
    """``DIST/priorpath-desktop-VERSION-SYSTEM-MACHINE.zip|.tar.gz`` holding the bundle folder."""
    sys.path.insert(0, str(ROOT))
    from trainer import __version__

    stem = bundle.parent / f"{NAME}-{__version__}-{platform.system().lower()}-{platform.machine().lower()}"
    fmt = "zip" if sys.platform == "win32" else "gztar"
    return Path(shutil.make_archive(str(stem), fmt, root_dir=bundle.parent, base_dir=bundle.name))


def build(dist: Path, work: Path) -> float:
    """Run PyInstaller; seconds taken."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "PyInstaller", str(SPEC), "--noconfirm", "--clean", "--log-level", "WARN",
                    "--distpath", str(dist), "--workpath", str(work)], cwd=ROOT, check=True)
    return time.perf_counter() - started


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="where the bundle folder goes (default dist/)")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "pyinstaller", help="PyInstaller's work folder")
    parser.add_argument("--no-check", action="store_true", help="skip the bundle's --self-test")
    parser.add_argument("--self-test-out", type=Path, default=None, help="keep the self-test's images here")
    parser.add_argument("--archive", action="store_true", help="pack the checked bundle into a .tar.gz/.zip")
    args = parser.parse_args(argv)

    dist, work = args.dist.resolve(), args.work.resolve()
    self_test_out = args.self_test_out.resolve() if args.self_test_out else None  # the test runs elsewhere
    bundle = dist / NAME
    try:
        import torch
    except ImportError:
        sys.exit(f"{sys.executable} has no torch: build with the project venv (.venv/bin/python packaging/build.py)")
    print(f"building {bundle} with {sys.executable} (torch {torch.__version__}, "
          f"{'CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU build'})", flush=True)
    try:
        seconds = build(dist, work)
    except subprocess.CalledProcessError as exc:
        print(f"build failed: PyInstaller exited {exc.returncode}", file=sys.stderr)
        return 1
    size = folder_size(bundle)
    report = {
        "bundle": str(bundle), "platform": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "build_seconds": round(seconds, 1), "bundle_bytes": size,
        "largest_parts": [{"path": p, "bytes": b} for p, b in largest_parts(bundle)],
    }
    print(f"built in {seconds:.0f} s: {bundle} holds {size / 2**20:.0f} MiB")
    for path, nbytes in largest_parts(bundle):
        print(f"  {nbytes / 2**20:7.1f} MiB  {path}")

    status = 0
    if not args.no_check:
        started = time.perf_counter()
        done = self_test(bundle, self_test_out)
        report["self_test"] = {"exit_code": done.returncode, "seconds": round(time.perf_counter() - started, 1),
                               "output": done.stdout, "errors": done.stderr[-4000:] if done.returncode else ""}
        print(done.stdout, end="")
        if done.returncode != 0:
            print(done.stderr[-4000:], file=sys.stderr, end="")
            status = 1
    if args.archive and status == 0:
        started = time.perf_counter()
        packed = archive(bundle)
        report["archive"] = {"path": str(packed), "bytes": packed.stat().st_size,
                             "seconds": round(time.perf_counter() - started, 1)}
        print(f"packed {packed} ({packed.stat().st_size / 2**20:.0f} MiB) in {report['archive']['seconds']:.0f} s")
    (dist / f"{NAME}-build.json").write_text(json.dumps(report, indent=2) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
