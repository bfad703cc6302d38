"""``export --shard K/N`` and ``merge-exports``: shards joined are one export byte for byte; bad input refused."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from trainer.cli import main
from trainer.errors import PriorPathError
from trainer.export import export_dataset
from trainer.inference import Engine
from trainer.merge import merge_exports

REPO = Path(__file__).resolve().parents[2]
SKETCHES = REPO / "resources" / "sample" / "sketches"
COUNT = 7  # not a multiple of 3: the shards' shares differ (3, 2, 2)


@pytest.fixture(scope="module")
def engine(engine_models) -> Engine:
    return Engine(engine_models["analogy"], engine_models["pix2pixhd"], device="cpu")


@pytest.fixture(scope="module")
def exports(engine, tmp_path_factory) -> dict[str, Path]:
    """One unsharded export and its three shards (same seed and count)."""
    root = tmp_path_factory.mktemp("exports")
    export_dataset([SKETCHES], root / "whole", COUNT, engine, seed=9)
    for k in range(3):
        export_dataset([SKETCHES], root / f"shard{k}", COUNT, engine, seed=9, shard=(k, 3))
    return {"whole": root / "whole", **{f"shard{k}": root / f"shard{k}" for k in range(3)}}


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def shards(exports) -> list[Path]:
    return [exports[f"shard{k}"] for k in range(3)]


def test_a_shard_holds_its_share_and_records_it(exports):
    names = sorted(p.name for p in (exports["shard1"] / "fine").iterdir())
    assert names == ["syn_000001.png", "syn_000004.png"]
    settings = json.loads((exports["shard1"] / "export.json").read_text())
    assert (settings["shard"], settings["count"]) == ("1/3", COUNT)


def test_three_shards_merged_are_one_export_byte_for_byte(exports, tmp_path, capsys):
    assert main(["merge-exports", *map(str, reversed(shards(exports))), "--out", str(tmp_path / "m"),
                 "--no-progress"]) == 0
    assert f"{COUNT} samples from 3 shards" in capsys.readouterr().out
    merged, whole = tree(tmp_path / "m"), tree(exports["whole"])
    assert merged.keys() == whole.keys() and len(merged) == 3 * COUNT + 2
    assert merged == whole  # files, manifest.csv and export.json


def test_an_interrupted_merge_finishes_when_rerun(exports, tmp_path):
    out = tmp_path / "m"
    merge_exports(shards(exports), out)
    (out / "manifest.csv").unlink()  # as if killed before the last step
    (out / "rgb" / "syn_000005.png").unlink()
    merge_exports(shards(exports), out)
    assert tree(out) == tree(exports["whole"])


def _refused(dirs, out: Path, fragment: str) -> None:
    with pytest.raises(PriorPathError, match=fragment):
        merge_exports(dirs, out)


def test_merge_refuses_shards_of_other_settings(engine, exports, tmp_path):
    other = tmp_path / "other_seed"
    export_dataset([SKETCHES], other, COUNT, engine, seed=10, shard=(2, 3))
    _refused([exports["shard0"], exports["shard1"], other], tmp_path / "m", "shards of different exports "
                                                                            r"\(other seed\)")
    assert not (tmp_path / "m").exists()  # nothing written


def test_merge_refuses_missing_duplicated_and_unsharded(exports, tmp_path):
    s0, s1, s2 = shards(exports)
    _refused([s0, s2], tmp_path / "m", "shard 1/3 missing; give all 3 shard folders")
    _refused([s0, s1, s1, s2], tmp_path / "m", "shard 1/3 given twice")
    _refused([s0, s1, exports["whole"]], tmp_path / "m", "made without --shard")
    _refused([s0, s1, tmp_path / "nowhere"], tmp_path / "m", "no such folder")
    assert not (tmp_path / "m").exists()


def test_merge_refuses_an_incomplete_shard(exports, tmp_path):
    partial = tmp_path / "shard1"
    shutil.copytree(exports["shard1"], partial)
    (partial / "fine" / "syn_000004.png").unlink()  # its sample no longer counts
    _refused([exports["shard0"], partial, exports["shard2"]], tmp_path / "m",
             r"shard 1/3 is incomplete \(1 of its 2 samples\)")
    assert not (tmp_path / "m").exists()


def test_merge_refuses_an_out_that_holds_something_else(exports, tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _refused(shards(exports), out, "already holds something else")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    _refused(shards(exports), exports["shard0"] / "sub", "overlaps the shard folder")


def test_a_shard_folder_refuses_another_shard(engine, exports):
    with pytest.raises(PriorPathError, match="other shard"):
        export_dataset([SKETCHES], exports["shard0"], COUNT, engine, seed=9, shard=(1, 3))


def test_a_larger_count_extends_a_shard_and_is_recorded(engine, tmp_path):
    export_dataset([SKETCHES], tmp_path / "s", 4, engine, shard=(0, 2))
    result = export_dataset([SKETCHES], tmp_path / "s", 6, engine, shard=(0, 2))
    assert (result.count, result.generated) == (3, 1)
    assert json.loads((tmp_path / "s" / "export.json").read_text())["count"] == 6


@pytest.mark.parametrize("value", ["3/3", "--shard=-1/2", "a/b", "1/0", "1", "1/2/3"])
def test_bad_shard_values_are_one_line_usage_errors(tmp_path, capsys, value):
    flag = [value] if value.startswith("--") else ["--shard", value]
    with pytest.raises(SystemExit) as exc:
        main(["export", "--sketches", str(SKETCHES), "--count", "2", "--out", str(tmp_path / "o"), *flag])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "--shard" in err[0] and "0 <= K < N" in err[0], err
    assert not (tmp_path / "o").exists()


def test_shard_given_to_python_is_checked(engine, tmp_path):
    with pytest.raises(PriorPathError, match="--shard must be K/N"):
        export_dataset([SKETCHES], tmp_path / "o", 2, engine, shard=(-1, 2))
