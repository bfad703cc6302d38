"""The image-size guard: a file's claimed size is read from its header and refused before any decoder runs,
on every path that reads user images (generate, eval, prepare, Labelme bitmaps), as one line naming the file."""
from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from trainer.cli import main
from trainer.data import labelme
from trainer.errors import PriorPathError
from trainer.fileio import decode_image_file
from trainer.image_size import check_image_size, header_size
from trainer.metrics.masksets import read_mask

CLAIM = "100000x100000"


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header (IHDR) claiming ``width`` x ``height`` grey pixels, with a few bytes of data: 70-odd
    bytes that a decoder would try to inflate into 10 GB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
            + chunk(b"IEND", b""))


@pytest.fixture
def bomb(tmp_path) -> Path:
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png())
    return path


def _one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("priorpath")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".bmp"])
def test_header_size_of_real_images_without_decoding(tmp_path, suffix):
    path = tmp_path / f"x{suffix}"
    cv2.imwrite(str(path), np.zeros((37, 91, 3), np.uint8))
    assert header_size(path) == (37, 91)
    assert header_size(path.read_bytes()) == (37, 91)
    assert check_image_size(path) == (37, 91)


def test_unknown_or_missing_files_are_left_to_the_decoder(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    assert header_size(junk) is None and header_size(tmp_path / "missing.png") is None
    with pytest.raises(PriorPathError, match="junk.png: not a readable image"):
        decode_image_file(junk)


def test_a_decompression_bomb_is_refused_before_decoding(bomb, monkeypatch):
    assert bomb.stat().st_size < 100 and header_size(bomb) == (100_000, 100_000)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the decoder ran")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    for read in (lambda: decode_image_file(bomb), lambda: read_mask(bomb)):
        with pytest.raises(PriorPathError) as info:
            read()
        message = str(info.value)
        assert str(bomb) in message and CLAIM in message and "\n" not in message


def test_side_limits_come_from_the_header_too(tmp_path, monkeypatch):
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.full((1, 1), 255, np.uint8))
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("the decoder ran"))
    with pytest.raises(PriorPathError, match=r"tiny.png: its header claims 1x1 pixels \(HxW\); a mask's sides must "
                                             r"be 16 to 20000"):
        decode_image_file(tiny, min_side=16, max_side=20000, what="a mask")


def test_a_bomb_inside_a_labelme_file(tmp_path):
    doc = {"imageHeight": 32, "imageWidth": 32, "shapes": [
        {"label": "tissue", "shape_type": "mask", "points": [[0, 0], [9, 9]],
         "mask": base64.b64encode(bomb_png()).decode()}]}
    path = tmp_path / "bitmap.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(PriorPathError, match=CLAIM):
        labelme.read_labelme(path)


def test_generate_says_one_line(bomb, tmp_path, capsys):
    code = main(["generate", "--coarse", str(bomb), "--out", str(tmp_path / "out"), "--rgb-model", "none",
                 "--device", "cpu", "--no-progress"])
    line = _one_error_line(capsys)
    assert code == 1 and str(bomb) in line and CLAIM in line


def test_eval_says_one_line(tmp_path, capsys):
    real, fake = tmp_path / "real", tmp_path / "fake"
    rng = np.random.default_rng(0)
    for folder in (real, fake):
        folder.mkdir()
        for i in range(7):
            cv2.imwrite(str(folder / f"m{i}.png"), np.where(rng.random((32, 32)) > 0.5, 255, 0).astype(np.uint8))
    bomb = fake / "m3.png"
    bomb.write_bytes(bomb_png())
    code = main(["eval", "--real", str(real), "--fake", f"x={fake}", "--out", str(tmp_path / "report"),
                 "--device", "cpu", "--no-cache", "--no-progress"])
    line = _one_error_line(capsys)
    assert code == 1 and str(bomb) in line and CLAIM in line


def test_prepare_says_one_line(bomb, tmp_path, capsys):
    code = main(["prepare", str(bomb), "--out", str(tmp_path / "out"), "--stain", "he", "--no-progress"])
    line = _one_error_line(capsys)
    assert code == 1 and str(bomb) in line and CLAIM in line
