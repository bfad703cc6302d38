"""``--style`` and ``generate --fine`` on the command line: what is written, and one clear line for bad input."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from trainer.cli import main
from trainer.data.masks import luma
from trainer.export import export_dataset
from trainer.errors import PriorPathError
from trainer.inference import Engine

from .helpers import read_png

REPO = Path(__file__).resolve().parents[2]
SKETCHES = REPO / "resources" / "sample" / "sketches"


@pytest.fixture(scope="module")
def fine_dir(sample_patches, tmp_path_factory) -> Path:
    """Three real fine masks (256x512) and one all-air mask, as a user would give them."""
    out = tmp_path_factory.mktemp("fine_in")
    for p in sorted((sample_patches / "fine").glob("*.png"))[:3]:
        cv2.imwrite(str(out / p.name), read_png(p))
    cv2.imwrite(str(out / "glass.png"), np.zeros((64, 96), np.uint8))
    return out


@pytest.fixture(scope="module")
def reference(sample_patches, tmp_path_factory) -> Path:
    """Two real H&E patches as a style reference folder."""
    out = tmp_path_factory.mktemp("style")
    for p in sorted((sample_patches / "rgb").glob("*.png"))[:2]:
        cv2.imwrite(str(out / p.name), cv2.imread(str(p)))
    return out


def test_generate_fine_draws_rgb_only_and_the_shipped_model_is_label_exact(fine_dir, tmp_path):
    out = tmp_path / "out"
    assert main(["generate", "--fine", str(fine_dir), "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    assert not (out / "fine").exists()
    written = sorted(p.name for p in (out / "rgb").glob("*.png"))
    assert written == sorted(p.name for p in fine_dir.glob("*.png"))
    for name in written:
        mask, rgb = read_png(fine_dir / name), cv2.cvtColor(cv2.imread(str(out / "rgb" / name)), cv2.COLOR_BGR2RGB)
        assert rgb.shape[:2] == mask.shape
        assert np.array_equal(np.where(luma(rgb) <= 204, 255, 0), mask)  # the paper's rule gives the mask back


def test_generate_fine_with_no_rgb_model_is_refused(fine_dir, tmp_path, capsys):
    code = main(["generate", "--fine", str(fine_dir), "--out", str(tmp_path / "o"), "--rgb-model", "none"])
    assert code == 1 and "needs an RGB model" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_style_with_a_neural_model_normalises_the_stain(engine_models, reference, fine_dir, tmp_path):
    plain = Engine("none", engine_models["pix2pixhd"], device="cpu")
    styled = Engine("none", engine_models["pix2pixhd"], device="cpu", style=[reference])
    mask = read_png(next(fine_dir.glob("*.png")))
    a, b = plain.rgb(mask, 0), styled.rgb(mask, 0)
    assert a.shape == b.shape and np.abs(a.astype(int) - b).mean() > 1  # the stain changed
    assert np.array_equal(luma(a) <= 204, luma(b) <= 204)  # and the tissue did not move


@pytest.mark.parametrize("case", ["masks", "nothing", "one_pixel"])
def test_bad_style_gets_one_line_and_writes_nothing(case, fine_dir, tmp_path, capsys):
    if case == "masks":
        style = fine_dir
    elif case == "nothing":
        style = tmp_path / "no_such_folder"
    else:
        style = tmp_path / "dot.png"
        cv2.imwrite(str(style), np.full((1, 1, 3), (150, 80, 160), np.uint8))
    out = tmp_path / "out"
    code = main(["generate", "--coarse", str(SKETCHES), "--out", str(out), "--style", str(style),
                 "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("priorpath: error: --style")
    assert not out.exists()


def test_export_remembers_its_style(engine_models, reference, tmp_path):
    styled = Engine(engine_models["analogy"], engine_models["pix2pixhd"], device="cpu", style=[reference])
    export_dataset([SKETCHES], tmp_path / "ds", 2, styled, size=(64, 128))
    plain = Engine(engine_models["analogy"], engine_models["pix2pixhd"], device="cpu")
    with pytest.raises(PriorPathError, match="other style"):
        export_dataset([SKETCHES], tmp_path / "ds", 3, plain, size=(64, 128))
    export_dataset([SKETCHES], tmp_path / "ds", 3, styled, size=(64, 128))  # the same style continues it


def test_patches_named_from_a_prepared_folder_keep_their_slides(sample_patches, reference):
    """A cluster's members (prepared patches named one by one) are grouped by slide; loose images form one group."""
    from trainer.style import read_style

    files = sorted((sample_patches / "rgb").glob("*.png"))[:12]
    _, groups = read_style(files)
    assert groups == [f.stem.rsplit("_x", 1)[0] for f in files] and len(set(groups)) > 1
    _, loose = read_style([reference])
    assert set(loose) == {"style"}
