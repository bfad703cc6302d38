"""`priorpath prepare` on real images, checked against independent computations of the rules."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer.cli import main
from trainer.data.prepare import MANIFEST_FIELDS, PrepareSettings, prepare, read_manifest
from trainer.errors import Cancelled, PriorPathError
from trainer.jobs import CancelToken

from .helpers import read_png, tcga_region, write_pyramid_tiff
from .test_masks import _reference_coarse


def _expected_patches(rgb: np.ndarray, patch=(512, 1024), stride=None, threshold=204, max_bg=0.85):
    """What the rules imply, computed with Pillow: {(x, y): (background_fraction, grey)} of kept patches."""
    ph, pw = patch
    sh, sw = stride or patch
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    kept = {}
    for y in range(0, rgb.shape[0] - ph + 1, sh):
        for x in range(0, rgb.shape[1] - pw + 1, sw):
            g = grey[y : y + ph, x : x + pw]
            bg = float((g > threshold).mean())
            if bg <= max_bg:
                kept[(x, y)] = (bg, g)
    return kept


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".prepare" not in p.parts}


@pytest.fixture(scope="module")
def unseen_png(data_dir, tmp_path_factory) -> tuple[Path, np.ndarray]:
    rgb = tcga_region(data_dir)
    path = tmp_path_factory.mktemp("unseen") / "tcga-region.png"
    Image.fromarray(rgb).save(path)
    return path, rgb


def test_unseen_region_yields_exactly_the_patches_the_rules_imply(unseen_png, tmp_path):
    path, rgb = unseen_png
    out = tmp_path / "out"
    result = prepare([path], out, PrepareSettings(stain="he"))
    expected = _expected_patches(rgb)
    rows = read_manifest(out)
    assert list(rows[0]) == MANIFEST_FIELDS
    got = {(int(r["x"]), int(r["y"])): r for r in rows}
    assert set(got) == set(expected)
    assert 0 < len(expected) < len(range(0, rgb.shape[0] - 511, 512)) * len(range(0, rgb.shape[1] - 1023, 1024))
    assert result.kept == len(expected)
    for (x, y), (bg, grey) in expected.items():
        row = got[(x, y)]
        assert (row["width"], row["height"], row["level"], row["stain"], row["threshold"]) == \
            ("1024", "512", "0", "he", "204")
        assert float(row["background_fraction"]) == pytest.approx(bg, abs=1e-6)
        stem = row["stem"]
        np.testing.assert_array_equal(read_png(out / "rgb" / f"{stem}.png"), rgb[y : y + 512, x : x + 1024])
        fine = read_png(out / "fine" / f"{stem}.png")
        assert fine.ndim == 2 and fine.dtype == np.uint8
        np.testing.assert_array_equal(fine, np.where(grey > 204, 0, 255))
        coarse = read_png(out / "coarse" / f"{stem}.png")
        np.testing.assert_array_equal(coarse > 0, _reference_coarse(fine))


def test_overlapping_stride_and_other_threshold(unseen_png, tmp_path):
    path, rgb = unseen_png
    settings = PrepareSettings(stain="ihc", patch=(256, 512), stride=(128, 256), max_background=0.5)
    prepare([path], tmp_path, settings)
    expected = _expected_patches(rgb, (256, 512), (128, 256), threshold=235, max_bg=0.5)
    assert {(int(r["x"]), int(r["y"])) for r in read_manifest(tmp_path)} == set(expected)


@pytest.mark.parametrize("name,vendor", [("region.tiff", "generic-tiff"), ("region.svs", "aperio")])
def test_whole_slide_pyramid_reads_like_the_plain_image(unseen_png, tmp_path, name, vendor):
    import openslide

    path, rgb = unseen_png
    slide = tmp_path / name
    write_pyramid_tiff(slide, rgb, aperio=vendor == "aperio")
    from trainer.data.slides import OpenSlideReader, open_source

    assert openslide.OpenSlide.detect_format(str(slide)) == vendor
    with open_source(slide) as reader:
        assert isinstance(reader, OpenSlideReader) and len(reader.levels) == 3
    prepare([path], tmp_path / "png", PrepareSettings(stain="he"))
    prepare([slide], tmp_path / "wsi", PrepareSettings(stain="he"))
    png_rows, wsi_rows = read_manifest(tmp_path / "png"), read_manifest(tmp_path / "wsi")
    assert [(r["x"], r["y"], r["background_fraction"]) for r in png_rows] == \
        [(r["x"], r["y"], r["background_fraction"]) for r in wsi_rows]
    for a, b in zip(png_rows, wsi_rows):
        for kind in ("rgb", "fine", "coarse"):
            np.testing.assert_array_equal(read_png(tmp_path / "png" / kind / f"{a['stem']}.png"),
                                          read_png(tmp_path / "wsi" / kind / f"{b['stem']}.png"))


def test_pyramid_level_uses_level_zero_coordinates(unseen_png, tmp_path):
    path, rgb = unseen_png
    slide = tmp_path / "region.tiff"
    write_pyramid_tiff(slide, rgb)
    prepare([slide], tmp_path / "out", PrepareSettings(stain="he", patch=(256, 256), level=1, max_background=1.0))
    rows = read_manifest(tmp_path / "out")
    h, w = rgb.shape[0] // 2, rgb.shape[1] // 2
    assert len(rows) == (h // 256) * (w // 256)
    assert {r["downsample"] for r in rows} == {"2"} and {r["level"] for r in rows} == {"1"}
    assert max(int(r["x"]) for r in rows) == 2 * 256 * (w // 256 - 1)


def test_input_formats_rgba_grey_and_16_bit(unseen_png, tmp_path):
    _, rgb = unseen_png
    crop = rgb[1024:1536, 1024:2048]
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(crop).save(src / "rgb8.png")
    rgba = np.dstack([crop, np.full(crop.shape[:2], 255, np.uint8)])
    rgba[:, :100, 3] = 0  # transparent = no tissue scanned there
    Image.fromarray(rgba, "RGBA").save(src / "rgba.png")
    grey = np.asarray(Image.fromarray(crop).convert("L"))
    Image.fromarray(grey).save(src / "grey.png")
    import tifffile

    tifffile.imwrite(src / "rgb16.tif", crop.astype(np.uint16) * 257, photometric="rgb")
    prepare([src], tmp_path / "out", PrepareSettings(stain="he", max_background=1.0))
    fine = {p.stem.split("_x")[0]: read_png(p) for p in (tmp_path / "out" / "fine").iterdir()}
    assert sorted(fine) == ["grey", "rgb16", "rgb8", "rgba"]
    np.testing.assert_array_equal(fine["grey"], fine["rgb8"])
    np.testing.assert_array_equal(fine["rgb16"], fine["rgb8"])
    assert np.all(fine["rgba"][:, :100] == 0)
    np.testing.assert_array_equal(fine["rgba"][:, 100:], fine["rgb8"][:, 100:])


def test_auto_threshold_is_otsu_of_the_source(data_dir, tmp_path):
    from skimage.filters import threshold_otsu

    src = data_dir / "openslide_os1_os2_qupath_crops" / "OS-2-vsi.png"
    prepare([src], tmp_path, PrepareSettings(stain="ihc", threshold="auto", max_background=1.0))
    grey = np.asarray(Image.open(src).convert("L"))
    rows = read_manifest(tmp_path)
    assert {r["threshold"] for r in rows} == {str(int(threshold_otsu(grey)))}
    assert int(rows[0]["threshold"]) < 235  # the paper's IHC value finds no air on this scan


@pytest.mark.parametrize("folder,stain_of", [
    ("osteosarcoma_tcia_ut", lambda name: "he"),
    ("birl_rat_kidney_he_ihc", lambda name: "he" if "_HE" in name else "ihc"),
    ("anhir_cima_lung_lesion3", lambda name: "he" if "-He-" in name else "ihc"),
])
def test_patch_counts_match_the_collection_statistics(data_dir, tmp_path, folder, stain_of):
    """Kept-patch counts per image agree with stats_per_image.csv, measured independently with Pillow."""
    with open(data_dir / "stats_per_image.csv", newline="") as fh:
        stats = {r["file"]: r for r in csv.DictReader(fh) if r["folder"] == folder}
    size, column = ((512, 1024), "keep_512x1024") if folder != "anhir_cima_lung_lesion3" else ((256, 512), "keep_256x512")
    counts = {}
    for stain in ("he", "ihc"):
        files = [data_dir / folder / f for f in stats if stain_of(f) == stain]
        if not files:
            continue
        out = tmp_path / stain
        result = prepare(files, out, PrepareSettings(stain=stain, patch=size))
        for f in files:
            counts[f.name] = result.per_source[str(f)]["kept"]
    assert counts == {f: int(r[column]) for f, r in stats.items()}


def test_rerun_is_idempotent_and_touches_nothing(unseen_png, tmp_path):
    path, _ = unseen_png
    prepare([path], tmp_path, PrepareSettings(stain="he"))
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.png")}
    snapshot = _tree(tmp_path)
    again = prepare([path], tmp_path, PrepareSettings(stain="he"))
    assert _tree(tmp_path) == snapshot
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.png")} == before
    assert again.kept == len(read_manifest(tmp_path))


def test_cancel_then_resume_equals_an_uninterrupted_run(unseen_png, tmp_path):
    path, _ = unseen_png
    prepare([path], tmp_path / "whole", PrepareSettings(stain="he"))
    token = CancelToken()

    def progress(done, total, message):
        if done >= 6:
            token.cancel()

    with pytest.raises(Cancelled):
        prepare([path], tmp_path / "cut", PrepareSettings(stain="he"), progress=progress, cancel=token, workers=1)
    partial = read_manifest(tmp_path / "cut")
    assert 0 < len(partial) < len(read_manifest(tmp_path / "whole"))
    prepare([path], tmp_path / "cut", PrepareSettings(stain="he"))
    assert _tree(tmp_path / "cut") == _tree(tmp_path / "whole")


def test_torn_journal_line_is_repaired(unseen_png, tmp_path):
    path, _ = unseen_png
    prepare([path], tmp_path / "whole", PrepareSettings(stain="he"))
    out = tmp_path / "torn"
    prepare([path], out, PrepareSettings(stain="he"))
    journal = out / ".prepare" / "journal.csv"
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[:-3]) + lines[-3][: len(lines[-3]) // 2])  # a kill mid-append
    prepare([path], out, PrepareSettings(stain="he"))
    assert _tree(out) == _tree(tmp_path / "whole")
    assert len(journal.read_text().splitlines()) == len(lines)


def test_kill_9_mid_run_then_rerun_completes(data_dir, tmp_path):
    files = sorted((data_dir / "osteosarcoma_tcia_ut").glob("*.jpg"))[:24]
    cmd = [sys.executable, "-m", "trainer.cli", "prepare", *map(str, files), "--stain", "he", "--no-progress"]
    subprocess.run(cmd + ["--out", str(tmp_path / "whole")], check=True, capture_output=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((out / "coarse").glob("*.png"))) < 8:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(list((out / "coarse").glob("*.png"))) < 48, "the run finished before it could be killed"
    done = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _tree(out) == _tree(tmp_path / "whole")
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_changed_settings_are_refused(unseen_png, tmp_path):
    path, _ = unseen_png
    prepare([path], tmp_path, PrepareSettings(stain="he"))
    with pytest.raises(PriorPathError, match="other settings.*threshold 204 -> 190"):
        prepare([path], tmp_path, PrepareSettings(stain="he", threshold=190))


def test_same_file_name_in_two_folders_gets_distinct_stems(unseen_png, tmp_path):
    path, rgb = unseen_png
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        Image.fromarray(rgb[:600, :1100]).save(tmp_path / sub / "slide.png")
    prepare([tmp_path / "a", tmp_path / "b"], tmp_path / "out", PrepareSettings(stain="he", max_background=1.0))
    rows = read_manifest(tmp_path / "out")
    assert len(rows) == 2 and len({r["stem"] for r in rows}) == 2 and len({r["source"] for r in rows}) == 2


# --- bad input: one clear line naming the problem, exit code != 0, nothing half-written ----------------------

def _run_cli(args, capsys):
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def _no_outputs(out: Path) -> bool:
    return not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


@pytest.mark.parametrize("content", [b"this is not an image", None])
def test_corrupt_or_truncated_file(unseen_png, tmp_path, capsys, content):
    path, _ = unseen_png
    bad = tmp_path / "bad.jpg"
    if content is None:  # a JPEG cut short, as by an interrupted copy
        Image.open(path).convert("RGB").save(tmp_path / "good.jpg", quality=90)
        content = (tmp_path / "good.jpg").read_bytes()[:60_000]
    bad.write_bytes(content)
    out = tmp_path / "out"
    code, err = _run_cli(["prepare", str(bad), "--out", str(out), "--stain", "he", "--no-progress"], capsys)
    assert code == 1 and len(err) == 1 and str(bad) in err[0], err
    assert _no_outputs(out)


def test_image_smaller_than_a_patch(data_dir, tmp_path, capsys):
    small = data_dir / "skimage_ihc" / "ihc.png"
    out = tmp_path / "out"
    code, err = _run_cli(["prepare", str(small), "--out", str(out), "--stain", "ihc", "--no-progress"], capsys)
    assert code == 1 and len(err) == 1 and str(small) in err[0] and "smaller than one 512x1024 patch" in err[0]
    assert _no_outputs(out)


def test_small_images_inside_a_folder_are_skipped_not_fatal(data_dir, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("skimage_ihc/ihc.png", "birl_rat_kidney_he_ihc/Rat_Kidney_PanCytokeratin.jpg"):
        (src / Path(name).name).write_bytes((data_dir / name).read_bytes())
    result = prepare([src], tmp_path / "out", PrepareSettings(stain="ihc"))
    assert result.skipped_sources == [str(src / "ihc.png")] and result.kept == 1


def test_unknown_stain(unseen_png, tmp_path, capsys):
    path, _ = unseen_png
    with pytest.raises(SystemExit) as exc:
        main(["prepare", str(path), "--out", str(tmp_path / "out"), "--stain", "pas"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "unknown stain 'pas'" in err[0]
    assert _no_outputs(tmp_path / "out")


def test_read_only_output_folder(unseen_png, tmp_path, capsys):
    path, _ = unseen_png
    out = tmp_path / "locked"
    out.mkdir()
    locked = _make_read_only(out)
    try:
        code, err = _run_cli(["prepare", str(path), "--out", str(out), "--stain", "he", "--no-progress"], capsys)
    finally:
        _undo_read_only(out, locked)
    assert code == 1 and len(err) == 1 and str(out) in err[0] and "not writable" in err[0], err
    assert _no_outputs(out)


def test_missing_source_and_empty_folder(tmp_path, capsys):
    code, err = _run_cli(["prepare", str(tmp_path / "nope.svs"), "--out", str(tmp_path / "o"), "--stain", "he"],
                         capsys)
    assert code == 1 and "nope.svs: no such file" in err[0]
    (tmp_path / "empty").mkdir()
    code, err = _run_cli(["prepare", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--stain", "he"],
                         capsys)
    assert code == 1 and "no supported image files" in err[0]


def _make_read_only(folder: Path) -> str:
    """Make ``folder`` unwritable even for root (immutable attribute), else by permissions."""
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
            return "chattr"
        pytest.skip("running as root and cannot set the immutable attribute here")
    folder.chmod(0o555)
    return "chmod"


def _undo_read_only(folder: Path, how: str) -> None:
    if how == "chattr":
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o755)


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB file system (tmpfs), to run out of space for real; skipped where we may not mount."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_full_disk_fails_cleanly_and_resumes(unseen_png, tmp_path, small_disk, capsys):
    path, _ = unseen_png
    prepare([path], tmp_path / "whole", PrepareSettings(stain="he"))
    out = small_disk / "out"
    code, err = _run_cli(["prepare", str(path), "--out", str(out), "--stain", "he", "--no-progress"], capsys)
    assert code == 1 and len(err) == 1 and "no space left on device" in err[0], err
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name], "temporaries left behind"
    for png in out.rglob("*.png"):  # whatever is there is whole
        assert read_png(png).size > 0
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    prepare([path], out, PrepareSettings(stain="he"))
    assert _tree(out) == _tree(tmp_path / "whole")
