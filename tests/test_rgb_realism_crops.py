"""The realism benchmark's crops hold at least half tissue, whatever the masks' tissue value (1 or 255).

``benchmarks/rgb_realism.py`` (issue 14) and ``benchmarks/class_generation.py`` compare "tissue crops"; with
0/255 masks the check once read ``mean >= 0.5`` on grey levels, which let through crops of bare glass.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from rgb_realism import CROP, crops  # noqa: E402


@pytest.mark.parametrize("tissue_value", [1, 255])
def test_crops_hold_at_least_half_tissue(tissue_value):
    mask = np.zeros((256, 512), np.uint8)
    mask[:, :96] = tissue_value  # tissue in the left 96 columns only: most crop positions are mostly glass
    tile = np.dstack([mask] * 3)
    got = crops([tile], [mask], 40, seed=0)
    assert len(got) == 40
    for crop in got:
        assert (crop[..., 0] > 0).mean() >= 0.5
        assert crop.shape == (CROP, CROP, 3)
