"""`priorpath-desktop --self-test` on the source install: it passes here, and a broken model makes it fail."""
from __future__ import annotations

import json

import cv2
import numpy as np

from priorpath_desktop.app import main
from priorpath_desktop.self_test import run_self_test


def test_self_test_passes_and_keeps_real_outputs(qapp, tmp_path, capsys, private_config):
    out = tmp_path / "self-test"
    assert main(["--self-test", "--self-test-out", str(out)]) == 0
    printed = capsys.readouterr().out
    for check in ("resources", "generation", "app window", "training", "fid network"):
        assert f"ok   {check}:" in printed
    assert printed.rstrip().endswith("self-test passed")

    sketch = cv2.imread(str(out / "sketch.png"), cv2.IMREAD_GRAYSCALE)
    fine = cv2.imread(str(out / "fine.png"), cv2.IMREAD_GRAYSCALE)
    rgb = cv2.imread(str(out / "rgb.png"), cv2.IMREAD_COLOR)
    assert fine.shape == sketch.shape and rgb.shape == sketch.shape + (3,)
    assert set(np.unique(fine)) == {0, 255}
    window = cv2.imread(str(out / "window.png"), cv2.IMREAD_COLOR)
    assert window.shape[0] >= 600 and window.std() > 10  # a drawn window, not a blank image
    assert (out / "training-run" / "checkpoints" / "latest.safetensors").is_file()
    # the window's settings went to the self-test's folder, not the user's
    assert (out / "settings" / "preferences.json").is_file()
    assert not private_config.exists() or not any(private_config.iterdir())


def test_a_corrupt_model_fails_the_self_test_with_a_message(qapp, tmp_path, capsys):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(json.dumps({"not": "a checkpoint"}).encode())
    assert run_self_test(mask_model=str(bad), out_dir=tmp_path / "out") == 1
    printed = capsys.readouterr().out
    assert "FAIL generation:" in printed and "broken.safetensors" in printed
    assert "Traceback" not in printed  # a bad checkpoint is the user's error, reported as its message
    assert "FAIL app window:" in printed  # the window showed its error box instead of a preview
    assert "ok   training:" in printed  # the other checks still ran
    assert printed.rstrip().endswith("self-test FAILED: 2 check(s)")
