"""packaging/build.py's helpers (the build itself is in test_bundle.py, marked slow)."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_build_script():
    spec = importlib.util.spec_from_file_location("priorpath_build", ROOT / "packaging" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_self_test_environment_has_no_venv_or_python_variables(monkeypatch, tmp_path):
    build = load_build_script()
    plain = tmp_path / "tools"
    plain.mkdir()
    venv_bin = Path(sys.prefix) / ("Scripts" if os.name == "nt" else "bin")
    monkeypatch.setenv("PATH", os.pathsep.join([str(venv_bin), str(plain), "/usr/bin"]))
    for name in ("PYTHONPATH", "VIRTUAL_ENV", "PRIORPATH_DESKTOP_HOME"):
        monkeypatch.setenv(name, "x")
    env = build.scrubbed_environment()
    assert env["PATH"].split(os.pathsep) == [str(plain), "/usr/bin"]  # the system's folders stay
    assert not {"PYTHONPATH", "VIRTUAL_ENV", "PRIORPATH_DESKTOP_HOME"} & set(env)


def test_sizes_count_each_file_once_and_group_packages(tmp_path):
    build = load_build_script()
    internal = tmp_path / "bundle" / "_internal"
    (internal / "torch" / "lib").mkdir(parents=True)
    (internal / "torch" / "lib" / "libtorch.so").write_bytes(b"x" * 3000)
    (internal / "torch" / "lib" / "libc10.so").write_bytes(b"x" * 1000)
    (internal / "libpython.so").write_bytes(b"x" * 2000)
    try:
        os.symlink(internal / "libpython.so", internal / "libpython.so.1")  # not counted twice
    except OSError:  # Windows without the privilege to make links
        pass
    assert build.folder_size(tmp_path / "bundle") == 6000
    assert build.largest_parts(tmp_path / "bundle") == [("torch/lib", 4000), ("libpython.so", 2000)]


def test_the_archive_holds_the_bundle_folder_with_its_links(tmp_path):
    import tarfile
    import zipfile

    build = load_build_script()
    bundle = tmp_path / "dist" / build.NAME
    (bundle / "_internal").mkdir(parents=True)
    (bundle / "_internal" / "libQt6Core.so.6").write_bytes(b"qt")
    (bundle / build.NAME).write_bytes(b"exe")
    try:
        os.symlink("_internal/libQt6Core.so.6", bundle / "libQt6Core.so.6")
        linked = True
    except OSError:
        linked = False
    packed = build.archive(bundle)
    assert packed.parent == bundle.parent and packed.name.startswith(f"{build.NAME}-0.")
    if packed.suffix == ".zip":
        names = zipfile.ZipFile(packed).namelist()
        assert f"{build.NAME}/{build.NAME}" in names
    else:
        with tarfile.open(packed) as tar:
            assert tar.getmember(f"{build.NAME}/_internal/libQt6Core.so.6").isfile()
            if linked:
                link = tar.getmember(f"{build.NAME}/libQt6Core.so.6")
                assert link.issym() and link.linkname == "_internal/libQt6Core.so.6"
