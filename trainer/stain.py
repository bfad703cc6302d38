"""Macenko stain normalisation of H&E RGB tiles, in plain numpy.

Method: M. Macenko et al., "A method for normalizing histology slides for quantitative analysis",
IEEE ISBI 2009, pp. 1107-1110. Optical density (Beer-Lambert) makes the stains add linearly; the two
stain vectors are the robust extreme directions of the tissue ODs in the plane of the two largest
principal components; per-pixel concentrations are rescaled to the reference's and re-coloured with
the reference's stain vectors.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from trainer.data.masks import luma
from trainer.errors import PriorPathError

#: Background intensity. Fixed (as in the paper's usual setting) rather than estimated from the air pixels,
#: so that source and reference share one Io and a tile without air is treated like one with air.
IO = 240.0
BETA = 0.15  # OD below this in any channel: (nearly) transparent, carries no stain information
ALPHA = 1.0  # percentile of the angles taken as the extremes; robust to outliers, unlike min/max
MAX_PERCENTILE = 99.0  # robust "maximum" concentration
MIN_TISSUE = 500  # fewer tissue pixels than this give no stable estimate
FIT_PIXELS = 200_000  # subsample for fit: fast and deterministic
APPLY_PIXELS = 20_000  # subsample for a source tile's own estimate; apply itself uses every pixel
_OD_LUT = (-np.log((np.arange(256, dtype=np.float64) + 1.0) / IO)).astype(np.float32)
#: OD >= BETA in a channel <=> its value <= this (OD falls with intensity), so the test runs on uint8
_MAX_STAINED = int(np.flatnonzero(_OD_LUT >= BETA)[-1])


def _check_tile(tile: np.ndarray) -> None:
    if not isinstance(tile, np.ndarray) or tile.ndim != 3 or tile.shape[2] != 3 or tile.dtype != np.uint8:
        shape, dtype = getattr(tile, "shape", None), getattr(tile, "dtype", type(tile).__name__)
        raise PriorPathError(f"stain normalisation needs HxWx3 uint8 RGB tiles, got shape {shape} dtype {dtype}")


def _tissue(rgb: np.ndarray, grey: np.ndarray, threshold: int) -> np.ndarray:
    """Nx3 uint8 pixels that are tissue both by the paper's OD rule and by our luma mask rule."""
    brightest = np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
    return rgb[(brightest <= _MAX_STAINED) & (grey <= threshold)]


def _od(pixels: np.ndarray, limit: int) -> np.ndarray:
    """Nx3 OD of at most ``limit`` of the pixels; the fixed seed keeps fit and apply deterministic."""
    if len(pixels) > limit:
        pixels = pixels[np.random.default_rng(0).choice(len(pixels), limit, replace=False)]
    return _OD_LUT[pixels]


def _times(a: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``a @ m`` for Nx3 ``a``, without BLAS: threaded BLAS on tall thin products crawls on a busy CPU."""
    m = m.astype(np.float32)
    return np.stack([a[:, 0] * m[0, k] + a[:, 1] * m[1, k] + a[:, 2] * m[2, k] for k in range(m.shape[1])], 1)


def _estimate(od: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(3x2 unit stain vectors, H first; 2 max concentrations) from Nx3 tissue OD, None if degenerate."""
    # the paper's SVD of the OD tuples, i.e. uncentred: stains mix through the origin, and centring would
    # tilt the plane away from the mean colour, which the projection below would then lose
    _, vecs = np.linalg.eigh(np.einsum("ni,nj->ij", od, od, dtype=np.float64) / len(od))
    plane = vecs[:, 1:][:, ::-1]  # the two largest eigenvectors, largest first
    plane[:, 0] *= np.sign(plane[:, 0].sum()) or 1.0  # eigen sign is arbitrary: point into positive OD
    proj = _times(od, plane)
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, [ALPHA, 100.0 - ALPHA])
    v1 = plane @ np.array([np.cos(lo), np.sin(lo)])
    v2 = plane @ np.array([np.cos(hi), np.sin(hi)])
    # conventional order: haematoxylin absorbs more red than eosin, so it has the larger first component
    stains = np.stack([v1, v2] if v1[0] >= v2[0] else [v2, v1], axis=1)
    stains /= np.linalg.norm(stains, axis=0, keepdims=True)
    if abs(float(stains[:, 0] @ stains[:, 1])) > 0.9995:  # one stain only: cannot separate two
        return None
    conc = _times(od, np.linalg.pinv(stains).T)
    max_conc = np.percentile(conc, MAX_PERCENTILE, axis=0)
    if (max_conc <= 1e-6).any():
        return None
    return stains, max_conc


class StainNormaliser:
    """Macenko normalisation to a reference stain matrix; keeps every pixel's air/tissue class."""

    def __init__(self, stains: np.ndarray, max_conc: np.ndarray, threshold: int = 204) -> None:
        self.stains = np.asarray(stains, dtype=np.float64)  # 3x2, columns haematoxylin, eosin (OD units)
        self.max_conc = np.asarray(max_conc, dtype=np.float64)  # 2
        self.threshold = int(threshold)

    @classmethod
    def fit(cls, tiles: Sequence[np.ndarray], threshold: int = 204) -> "StainNormaliser":
        """Fit the reference stain matrix and max concentrations from HxWx3 uint8 RGB reference tiles.

        The tissue pixels of all tiles are pooled (subsampled to FIT_PIXELS with a fixed seed).
        ``threshold`` is the luma air rule; it also becomes the default of :meth:`apply`.
        """
        tiles = list(tiles) if tiles is not None else []
        if not tiles:
            raise PriorPathError("stain normalisation needs at least one reference tile, got none")
        for tile in tiles:
            _check_tile(tile)
        pixels = np.concatenate([_tissue(tile, luma(tile), threshold) for tile in tiles])
        if len(pixels) < MIN_TISSUE:
            raise PriorPathError(f"reference has no tissue to estimate stains from ({len(pixels)} tissue pixels, "
                                 f"need {MIN_TISSUE})")
        estimate = _estimate(_od(pixels, FIT_PIXELS))
        if estimate is None:
            raise PriorPathError("reference stains could not be separated (needs both haematoxylin and eosin)")
        return cls(*estimate, threshold=threshold)

    def apply(self, rgb: np.ndarray, threshold: int | None = None) -> np.ndarray:
        """HxWx3 uint8 RGB -> HxWx3 uint8 with the reference's stain; pixels that are air stay air.

        The tile's own stains are estimated as in :meth:`fit`; its concentrations, scaled by
        reference max / source max, are re-coloured with the reference stain vectors (same Io).
        A tile with too little tissue (or only one stain) to estimate is returned unchanged (a copy).

        Label preservation: with the mask rule "luma (ITU-R 601) > threshold is air" (threshold defaults
        to the one given to fit), every output pixel is on the same side of the rule as its input pixel.
        Pixels whose class flipped are fixed minimally: tissue that became air is scaled towards black
        until its luma is <= threshold; air that became tissue is blended towards white until its luma is
        > threshold; should rounding still leave one on the wrong side, it keeps its input value.
        """
        _check_tile(rgb)
        threshold = self.threshold if threshold is None else int(threshold)
        grey = luma(rgb)
        pixels = _tissue(rgb, grey, threshold)
        estimate = _estimate(_od(pixels, APPLY_PIXELS)) if len(pixels) >= MIN_TISSUE else None
        if estimate is None:
            return rgb.copy()
        stains, max_conc = estimate
        # one 3x3 linear map in OD space: source OD -> source conc -> scaled -> reference OD
        mapping = self.stains @ np.diag(self.max_conc / max_conc) @ np.linalg.pinv(stains)
        flat = rgb.reshape(-1, 3)
        od = _times(_OD_LUT[flat], mapping.T)
        np.negative(od, out=od)  # in place from here: IO * exp(-od) - 1 inverts the OD, rounded and clipped
        np.exp(od, out=od)
        od *= IO
        od -= 1.0
        out = np.clip(np.rint(od, out=od), 0, 255, out=od).astype(np.uint8)
        _keep_classes(flat, out, grey.reshape(-1) > threshold, threshold)
        return out.reshape(rgb.shape)


def _luma_exact(rgb: np.ndarray) -> np.ndarray:
    """Unrounded luma with the same 16-bit weights as trainer.data.masks.luma (they sum to 65536)."""
    rgb = rgb.astype(np.float64)
    return (rgb[:, 0] * 19595.0 + rgb[:, 1] * 38470.0 + rgb[:, 2] * 7471.0) / 65536.0


def _keep_classes(src: np.ndarray, out: np.ndarray, air_in: np.ndarray, threshold: int) -> None:
    """Fix, in place, the Nx3 ``out`` pixels whose air/tissue class differs from ``src`` (air where ``air_in``)."""
    air_out = luma(out[:, None, :])[:, 0] > threshold
    darken = np.flatnonzero(~air_in & air_out)
    if darken.size:
        # luma is linear: scaling by (t + 0.49) / L and flooring keeps the rounded luma at <= t
        px = out[darken].astype(np.float64)
        scale = (threshold + 0.49) / _luma_exact(px)
        out[darken] = np.floor(px * scale[:, None]).astype(np.uint8)
    lighten = np.flatnonzero(air_in & ~air_out)
    if lighten.size:
        # blend towards white: 255 - (255 - x) * k has luma 255 - (255 - L) * k; ceil keeps it >= t + 0.51
        px = out[lighten].astype(np.float64)
        k = (254.49 - threshold) / np.maximum(255.0 - _luma_exact(px), 1e-9)
        out[lighten] = np.clip(np.ceil(255.0 - (255.0 - px) * k[:, None]), 0, 255).astype(np.uint8)
    fixed = np.concatenate([darken, lighten])
    if fixed.size:
        still = (luma(out[fixed][:, None, :])[:, 0] > threshold) != air_in[fixed]
        out[fixed[still]] = src[fixed[still]]
