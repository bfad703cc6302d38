"""The `priorpath` command line: every subcommand answers --help, and bad input is one clear line."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from trainer.cli import main

from ..conftest import SAMPLE


@pytest.mark.parametrize("command", ["prepare", "augment-sketches", "import-labelme", "export", "merge-exports"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0 and "--out" in capsys.readouterr().out


def test_module_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "trainer.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("priorpath ")


def _err(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def test_bad_size_and_threshold_are_usage_errors(tmp_path, capsys):
    for args in (["--patch", "512by1024"], ["--threshold", "300"], ["--threshold", "bright"]):
        with pytest.raises(SystemExit) as exc:
            main(["prepare", str(SAMPLE / "he"), "--out", str(tmp_path), "--stain", "he", *args])
        err = _err(capsys)
        assert exc.value.code == 2 and len(err) == 1, err


def test_level_a_plain_image_does_not_have(tmp_path, capsys):
    src = SAMPLE / "he" / "OS-1-detail.png"
    code = main(["prepare", str(src), "--out", str(tmp_path / "o"), "--stain", "he", "--level", "1", "--no-progress"])
    err = _err(capsys)
    assert code == 1 and len(err) == 1 and str(src) in err[0] and "not level 1" in err[0]
    assert not (tmp_path / "o").exists()


def test_import_labelme_then_augment(tmp_path, capsys):
    doc = {"imageHeight": 64, "imageWidth": 128, "shapes": [
        {"label": "tissue", "shape_type": "rectangle", "points": [[10, 10], [100, 50]]},
        {"label": "hole", "shape_type": "polygon", "points": [[40, 20], [60, 20], [50, 40]]}]}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    assert main(["import-labelme", str(tmp_path / "a.json"), "--out", str(tmp_path / "sk")]) == 0
    mask = np.asarray(Image.open(tmp_path / "sk" / "a.png"))
    assert mask.shape == (64, 128) and mask[15, 15] == 255 and mask[25, 50] == 0 and mask[5, 5] == 0
    assert main(["augment-sketches", str(tmp_path / "sk"), "--out", str(tmp_path / "aug"), "--count", "3",
                 "--size", "64x128", "--no-progress"]) == 0
    assert len(list((tmp_path / "aug" / "coarse").glob("*.png"))) == 3


def test_bad_labelme_and_empty_sketch_name_the_file(tmp_path, capsys):
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    assert main(["import-labelme", str(bad), "--out", str(tmp_path / "o")]) == 1
    err = _err(capsys)
    assert len(err) == 1 and str(bad) in err[0]
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((32, 64), np.uint8)).save(empty)
    assert main(["augment-sketches", str(empty), "--out", str(tmp_path / "aug"), "--count", "2"]) == 1
    err = _err(capsys)
    assert len(err) == 1 and str(empty) in err[0]


def test_mrxs_data_folder_is_not_searched(tmp_path):
    from trainer.data.slides import find_sources

    (tmp_path / "slide.mrxs").write_bytes(b"")
    (tmp_path / "slide").mkdir()
    (tmp_path / "slide" / "Data0000.dat").write_bytes(b"")
    (tmp_path / "slide" / "preview.png").write_bytes(b"")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "tile.png").write_bytes(b"")
    (tmp_path / ".hidden.png").write_bytes(b"")
    assert find_sources([tmp_path]) == [tmp_path / "other" / "tile.png", tmp_path / "slide.mrxs"]
