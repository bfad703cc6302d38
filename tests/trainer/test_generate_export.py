"""``priorpath generate`` and ``priorpath export`` on small real checkpoints: layout, resume, bad input."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from trainer.errors import Cancelled, PriorPathError
from trainer.export import export_dataset
from trainer.generate import generate_files, read_coarse
from trainer.inference import Engine
from trainer.jobs import CancelToken

from .helpers import read_png

REPO = Path(__file__).resolve().parents[2]
SKETCHES = REPO / "resources" / "sample" / "sketches"


@pytest.fixture(scope="module")
def engine(engine_models) -> Engine:
    return Engine(engine_models["analogy"], engine_models["pix2pixhd"], device="cpu")


def manifest(out: Path) -> list[dict]:
    with open(out / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_generate_writes_fine_and_rgb_at_the_input_size(engine, tmp_path):
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), read_png(SKETCHES / "sketch_01.png"))
    cv2.imwrite(str(tmp_path / "in" / "b.png"), read_png(SKETCHES / "sketch_02.png")[:200, :330])
    result = generate_files([tmp_path / "in"], tmp_path / "out", engine, seed=4, variations=2)
    assert result.written == 4
    for stem, shape in (("a", (256, 512)), ("b", (200, 330))):
        for k in range(2):
            fine = read_png(tmp_path / "out" / "fine" / f"{stem}_v{k}.png")
            rgb = read_png(tmp_path / "out" / "rgb" / f"{stem}_v{k}.png")
            assert fine.shape == shape and set(np.unique(fine).tolist()) <= {0, 255}
            assert rgb.shape == (*shape, 3)
    assert not np.array_equal(read_png(tmp_path / "out" / "fine" / "a_v0.png"),
                              read_png(tmp_path / "out" / "fine" / "a_v1.png"))


def test_generate_checks_every_input_before_writing(engine, tmp_path):
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), read_png(SKETCHES / "sketch_01.png"))
    colour = cv2.cvtColor(read_png(SKETCHES / "sketch_02.png"), cv2.COLOR_GRAY2BGR)
    colour[..., 0] //= 2
    cv2.imwrite(str(tmp_path / "in" / "z_colour.png"), colour)
    with pytest.raises(PriorPathError, match="z_colour.png: is a colour image"):
        generate_files([tmp_path / "in"], tmp_path / "out", engine)
    assert not (tmp_path / "out" / "fine").exists() or not list((tmp_path / "out" / "fine").iterdir())


def test_generate_thresholds_a_grey_mask_as_the_app_does_and_says_so(engine, tmp_path, caplog):
    (tmp_path / "in").mkdir()
    grey = cv2.GaussianBlur(read_png(SKETCHES / "sketch_02.png"), (9, 9), 3)
    cv2.imwrite(str(tmp_path / "in" / "blurred.png"), grey)
    cv2.imwrite(str(tmp_path / "in" / "binary.png"), np.where(grey > 127, 255, 0).astype(np.uint8))
    with caplog.at_level("WARNING"):
        generate_files([tmp_path / "in"], tmp_path / "out", engine, seed=4)
    assert sum("blurred.png" in r.getMessage() for r in caplog.records) == 1  # said once, not per read
    assert "thresholded at 127" in caplog.text and "binary.png" not in caplog.text
    fine = tmp_path / "out" / "fine"
    assert np.array_equal(read_png(fine / "blurred.png"), read_png(fine / "binary.png"))


def test_generate_reads_qupath_geojson_annotations(engine, tmp_path):
    from trainer.geojson import write_annotations

    sketch = read_png(SKETCHES / "sketch_01.png")
    write_annotations(tmp_path / "slide.geojson", sketch)
    assert np.array_equal(read_coarse(tmp_path / "slide.geojson"), np.where(sketch > 127, 255, 0))
    write_annotations(tmp_path / "big.json", sketch, scale=4)  # a slide's level-0 pixels, in a .json file
    small = read_coarse(tmp_path / "big.json", geojson_scale=4)
    assert small.shape == sketch.shape and (small == np.where(sketch > 127, 255, 0)).mean() > 0.995


@pytest.mark.parametrize("content, fragment", [
    (None, "the mask is empty"),
    (b"not an image at all", "not a readable image"),
])
def test_read_coarse_names_the_problem(tmp_path, content, fragment):
    path = tmp_path / "x.png"
    if content is None:
        cv2.imwrite(str(path), np.zeros((64, 64), np.uint8))
    else:
        path.write_bytes(content)
    with pytest.raises(PriorPathError, match=fragment):
        read_coarse(path)


def test_generate_cancel_leaves_only_whole_files(engine, tmp_path):
    token = CancelToken()

    def progress(done, total, message):
        if done >= 2:
            token.cancel()

    with pytest.raises(Cancelled, match="stopped after 2 of 6"):
        generate_files([SKETCHES], tmp_path / "out", engine, progress=progress, cancel=token)
    written = sorted((tmp_path / "out" / "fine").iterdir())
    assert len(written) == 2 and all(read_png(p).shape == (256, 512) for p in written)


def test_export_writes_the_prepare_layout_and_a_manifest(engine, tmp_path):
    result = export_dataset([SKETCHES], tmp_path / "ds", 5, engine, seed=7)
    assert (result.count, result.generated) == (5, 5)
    rows = manifest(tmp_path / "ds")
    assert [r["stem"] for r in rows] == [f"syn_{i:06d}" for i in range(5)]
    for r in rows:
        coarse = read_png(tmp_path / "ds" / "coarse" / f"{r['stem']}.png")
        fine = read_png(tmp_path / "ds" / "fine" / f"{r['stem']}.png")
        rgb = read_png(tmp_path / "ds" / "rgb" / f"{r['stem']}.png")
        assert coarse.shape == fine.shape == (64, 128) and rgb.shape == (64, 128, 3)  # the model's size
        assert Path(r["source"]).parent == SKETCHES
        assert "rotation" in json.dumps(json.loads(r["params"])) or json.loads(r["params"]).get("fallback")
        assert r["mask_model"] == engine.mask.sha and r["rgb_model"] == engine.rgb_model.sha
    again = export_dataset([SKETCHES], tmp_path / "ds", 7, engine, seed=7)
    assert (again.count, again.generated) == (7, 2)  # extends, keeps the first five


def test_export_refuses_to_mix_settings(engine, tmp_path):
    export_dataset([SKETCHES], tmp_path / "ds", 2, engine, seed=1)
    with pytest.raises(PriorPathError, match="other seed"):
        export_dataset([SKETCHES], tmp_path / "ds", 2, engine, seed=2)


def test_export_without_augmentation_uses_the_sketches_as_they_are(engine, tmp_path):
    export_dataset([SKETCHES], tmp_path / "ds", 3, engine, augment=False, size=(256, 512))
    first = read_png(tmp_path / "ds" / "coarse" / "syn_000000.png")
    assert np.array_equal(first, read_png(SKETCHES / "sketch_01.png"))


def _export_cli(engine_models, out: Path, count: int, workers: str = "1") -> list[str]:
    return [sys.executable, "-m", "trainer.cli", "export", "--sketches", str(SKETCHES), "--count", str(count),
            "--out", str(out), "--mask-model", str(engine_models["pix2pix"]), "--rgb-model",
            str(engine_models["pix2pixhd"]), "--size", "128x256", "--seed", "3", "--device", "cpu",
            "--no-progress", "--workers", workers]


def _live_children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` and that still run (Linux /proc; zombies count as gone)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _still_running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("workers", ["1", "2"])
def test_export_after_kill_9_completes_the_same_dataset(engine_models, tmp_path, workers):
    count = 30
    subprocess.run(_export_cli(engine_models, tmp_path / "straight", count), check=True, cwd=REPO,
                   capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_export_cli(engine_models, killed, count, workers), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        m = killed / "manifest.csv"
        if m.is_file() and m.read_text().count("\n") >= 4:  # header + 3 samples
            break
        time.sleep(0.01)
    children = _live_children(proc.pid) if sys.platform.startswith("linux") else []
    assert workers == "1" or not sys.platform.startswith("linux") or len(children) >= 2, children
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL  # it was stopped mid-way, not after finishing
    assert len(manifest(killed)) < count
    deadline = time.monotonic() + 30
    while any(map(_still_running, children)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_still_running, children)), "worker processes outlived their killed parent"
    r = subprocess.run(_export_cli(engine_models, killed, count, workers), cwd=REPO, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert manifest(killed) == manifest(tmp_path / "straight")
    for kind in ("coarse", "fine", "rgb"):
        names = sorted(p.name for p in (killed / kind).iterdir())
        assert names == [f"syn_{i:06d}.png" for i in range(count)], kind  # no temporaries, no extras
        for name in names:
            assert np.array_equal(read_png(killed / kind / name), read_png(tmp_path / "straight" / kind / name))


def test_export_cli_reports_a_missing_model(tmp_path):
    r = subprocess.run([sys.executable, "-m", "trainer.cli", "export", "--sketches", str(SKETCHES), "--count", "2",
                        "--out", str(tmp_path / "ds"), "--mask-model", str(tmp_path / "missing.safetensors")],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 1
    assert "missing.safetensors: checkpoint not found" in r.stderr


def test_generate_cli_runs_on_the_shipped_default_models(tmp_path):
    """What a fresh clone can do with no training: sketches -> fine masks -> RGB tiles."""
    r = subprocess.run([sys.executable, "-m", "trainer.cli", "generate", "--coarse", str(SKETCHES / "sketch_01.png"),
                        "--out", str(tmp_path), "--device", "cpu", "--no-progress"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    fine = read_png(tmp_path / "fine" / "sketch_01.png")
    rgb = read_png(tmp_path / "rgb" / "sketch_01.png")
    assert fine.shape == (256, 512) and set(np.unique(fine).tolist()) == {0, 255}
    assert rgb.shape == (256, 512, 3)
    tissue, air = fine > 0, fine == 0
    # H&E: tissue is stained (darker, pinker) where the fine mask says tissue, near-white where it says air
    assert rgb[tissue].mean() < rgb[air].mean() - 20


def test_export_skips_every_unreadable_sketch_and_says_which_or_stops_at_the_first(engine, tmp_path):
    sketches = tmp_path / "sketches"
    sketches.mkdir()
    cv2.imwrite(str(sketches / "a.png"), read_png(SKETCHES / "sketch_01.png"))
    (sketches / "broken.png").write_bytes(b"not a png")
    cv2.imwrite(str(sketches / "empty.png"), np.zeros((64, 128), np.uint8))
    result = export_dataset([sketches], tmp_path / "out", 2, engine, size=(64, 128))
    assert result.count == 2 and len(result.skipped) == 2
    assert any("broken.png" in s for s in result.skipped) and any("empty.png" in s for s in result.skipped)
    sources = {row["source"] for row in csv.DictReader(open(tmp_path / "out" / "manifest.csv"))}
    assert sources == {str((sketches / "a.png").resolve())}
    with pytest.raises(PriorPathError, match="broken.png"):
        export_dataset([sketches], tmp_path / "out2", 2, engine, size=(64, 128), stop_at_bad_sketch=True)
    assert not (tmp_path / "out2" / "manifest.csv").exists()
    (sketches / "a.png").unlink()
    with pytest.raises(PriorPathError, match="none of the 2 sketch files") as err:
        export_dataset([sketches], tmp_path / "out3", 2, engine, size=(64, 128))
    assert "broken.png" in str(err.value) and "empty.png" in str(err.value)


def test_a_labelme_annotation_and_the_image_it_was_drawn_on_count_once(tmp_path):
    from trainer.data.sketches import read_sketch_set

    folder = tmp_path / "s"
    folder.mkdir()
    cv2.imwrite(str(folder / "slide.png"), read_png(SKETCHES / "sketch_01.png"))
    (folder / "slide.json").write_text(json.dumps({
        "imagePath": "slide.png", "imageHeight": 256, "imageWidth": 512,
        "shapes": [{"label": "tissue", "shape_type": "polygon", "points": [[10, 10], [400, 20], [300, 200]]}]}))
    found = read_sketch_set(sorted(folder.iterdir()))
    assert [p.name for p in found.paths] == ["slide.json"]
    assert len(found.skipped) == 1 and "slide.png" in found.skipped[0] and "annotation" in found.skipped[0]


def test_cli_export_lists_the_skipped_sketches(tmp_path):
    sketches = tmp_path / "sketches"
    sketches.mkdir()
    cv2.imwrite(str(sketches / "a.png"), read_png(SKETCHES / "sketch_01.png"))
    (sketches / "broken.png").write_bytes(b"not a png")
    cmd = [sys.executable, "-m", "trainer.cli", "export", "--sketches", str(sketches), "--count", "1", "--size",
           "64x128", "--device", "cpu", "--workers", "1", "--no-progress"]
    ok = subprocess.run([*cmd, "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                        cwd=Path(__file__).resolve().parents[2])
    assert ok.returncode == 0, ok.stderr
    assert "skipped: " in ok.stdout and "broken.png" in ok.stdout
    stop = subprocess.run([*cmd, "--out", str(tmp_path / "out2"), "--stop-at-bad-sketch"], capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert stop.returncode == 1 and "broken.png" in stop.stderr and "Traceback" not in stop.stderr
