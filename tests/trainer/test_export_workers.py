"""``export``/``generate`` with worker processes: the same bytes as one process, cancel, errors, spec."""
from __future__ import annotations

import multiprocessing
import shutil
import time
from pathlib import Path

import pytest

from trainer.errors import Cancelled, PriorPathError
from trainer.export import export_dataset
from trainer.generate import generate_files
from trainer.inference import Engine
from trainer.jobs import CancelToken

REPO = Path(__file__).resolve().parents[2]
SKETCHES = REPO / "resources" / "sample" / "sketches"


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("mask_model", ["analogy", "pix2pix"])  # example-based and neural (torch threads)
def test_export_is_byte_identical_whatever_the_worker_count(engine_models, tmp_path, mask_model):
    engine = Engine(engine_models[mask_model], engine_models["pix2pixhd"], device="cpu")
    one = export_dataset([SKETCHES], tmp_path / "one", 7, engine, seed=5, workers=1)
    two = export_dataset([SKETCHES], tmp_path / "two", 7, engine, seed=5, workers=2)
    assert (one.count, one.generated) == (two.count, two.generated) == (7, 7)
    files = tree(tmp_path / "one")
    assert len(files) == 3 * 7 + 2  # coarse, fine, rgb, manifest.csv, export.json
    assert files == tree(tmp_path / "two")
    assert not multiprocessing.active_children()


def test_export_with_workers_resumes_an_export_of_one_process(engine_models, tmp_path):
    engine = Engine(engine_models["analogy"], engine_models["pix2pixhd"], device="cpu")
    export_dataset([SKETCHES], tmp_path / "straight", 6, engine, seed=2)
    export_dataset([SKETCHES], tmp_path / "mixed", 2, engine, seed=2)
    (tmp_path / "mixed" / "rgb" / "syn_000001.png").unlink()  # a sample with a file missing is redone
    again = export_dataset([SKETCHES], tmp_path / "mixed", 6, engine, seed=2, workers=2)
    assert (again.count, again.generated) == (6, 5)
    assert tree(tmp_path / "mixed") == tree(tmp_path / "straight")


def test_generate_is_byte_identical_whatever_the_worker_count(engine_models, tmp_path):
    engine = Engine(engine_models["analogy"], engine_models["pix2pixhd"], device="cpu")
    one = generate_files([SKETCHES], tmp_path / "one", engine, seed=3, variations=2, workers=1)
    two = generate_files([SKETCHES], tmp_path / "two", engine, seed=3, variations=2, workers=2)
    assert one.written == two.written == 12
    assert tree(tmp_path / "one") == tree(tmp_path / "two") and len(tree(tmp_path / "one")) == 24


def test_cancel_with_workers_stops_promptly_and_keeps_whole_samples(engine_models, tmp_path):
    engine = Engine(engine_models["analogy"], engine_models["pix2pixhd"], device="cpu")
    token = CancelToken()
    when = {}

    def progress(done, total, message):
        if done >= 3 and not token.cancelled:
            token.cancel()
            when["cancelled"] = time.monotonic()

    with pytest.raises(Cancelled, match="export stopped with 3 of 500 samples done; rerun"):
        export_dataset([SKETCHES], tmp_path / "ds", 500, engine, progress=progress, cancel=token, workers=2)
    assert time.monotonic() - when["cancelled"] < 5
    assert not multiprocessing.active_children()  # the workers are gone
    rows = (tmp_path / "ds" / "manifest.csv").read_text().splitlines()
    assert len(rows) == 1 + 3
    for kind in ("coarse", "fine", "rgb"):  # only whole samples, no temporaries
        assert sorted(p.name for p in (tmp_path / "ds" / kind).iterdir()) == [f"syn_{i:06d}.png" for i in range(3)]


def test_a_worker_error_reads_as_in_one_process(engine_models, tmp_path):
    """A model replaced on disk after the parent loaded it: the workers refuse, with one clear line."""
    model = tmp_path / "mask.safetensors"
    shutil.copy(engine_models["analogy"], model)
    engine = Engine(model, engine_models["pix2pixhd"], device="cpu")
    shutil.copy(engine_models["pix2pix"], model)
    with pytest.raises(PriorPathError, match=r"the mask model .*mask.safetensors changed on disk"):
        export_dataset([SKETCHES], tmp_path / "ds", 4, engine, workers=2)
    assert not multiprocessing.active_children()
    assert not (tmp_path / "ds" / "fine").exists() or not list((tmp_path / "ds" / "fine").iterdir())


def test_engine_spec_rebuilds_the_same_engine(engine_models, sample_patches):
    styled = Engine(engine_models["analogy"], engine_models["pix2pixhd"], device="cpu",
                    style=[sorted((sample_patches / "rgb").glob("*.png"))[0]])
    again = Engine.from_spec(styled.spec())
    assert again.spec() == styled.spec()
    assert (again.mask.sha, again.rgb_model.sha, again.style_sha) == (styled.mask.sha, styled.rgb_model.sha,
                                                                      styled.style_sha)
    styled.set_style(None)
    assert styled.spec().style is None and Engine.from_spec(styled.spec()).style_sha is None
