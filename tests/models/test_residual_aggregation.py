"""Contextual residual aggregation (``models.residual_aggregation``): detail from the photo itself."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from imgsynth.models.residual_aggregation import _window, aggregate_residuals, cell_for_scale


def _lap_var(img: np.ndarray, where: np.ndarray) -> float:
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(cv2.Laplacian(g, cv2.CV_32F)[where].var())


def _textured(h: int, w: int, seed: int = 0, amp: float = 40.0, base=(120, 100, 80)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.8)
    noise *= amp / noise.std()
    img = np.asarray(base, np.float32)[None, None] + noise[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _disc(h: int, w: int, cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _smooth_fill(img: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """What a low-resolution fill looks like: the known mean colour, no detail."""
    out = img.astype(np.float32).copy()
    out[hole] = img[~hole].reshape(-1, 3).mean(0)
    return out


def test_window_copies_sum_to_one():
    for c in (4, 6, 8):
        w = _window(c)
        acc = np.zeros((6 * c, 6 * c))
        for y in range(-c, 6 * c, c):
            for x in range(-c, 6 * c, c):
                ys, xs, ye, xe = max(y, 0), max(x, 0), min(y + 2 * c, 6 * c), min(x + 2 * c, 6 * c)
                acc[ys:ye, xs:xe] += w[ys - y:ye - y, xs - x:xe - x]
        np.testing.assert_allclose(acc, 1.0, rtol=1e-6)


def test_known_pixels_exact_and_detail_restored():
    img = _textured(192, 256)
    hole = _disc(192, 256, 96, 128, 40)
    coarse = _smooth_fill(img, hole)
    out = aggregate_residuals(img, hole, coarse, cell=8)
    assert out.dtype == np.uint8 and out.shape == img.shape
    np.testing.assert_array_equal(out[~hole], img[~hole])
    inner = cv2.erode(hole.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    truth = _lap_var(img, inner)
    smooth = _lap_var(np.clip(coarse, 0, 255).astype(np.uint8), inner)
    assert smooth < 0.05 * truth  # the smooth fill alone carries no detail
    assert _lap_var(out, inner) > 0.5 * truth  # the aggregated residual does
    # the low frequencies stay the coarse fill's: the mean colour of the hole is unchanged
    np.testing.assert_allclose(out[inner].mean(0), coarse[inner].mean(0), atol=3.0)


def test_gain_scales_the_copied_detail():
    img = _textured(160, 160, seed=1)
    hole = _disc(160, 160, 80, 80, 30)
    coarse = _smooth_fill(img, hole)
    inner = cv2.erode(hole.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    full = _lap_var(aggregate_residuals(img, hole, coarse, cell=8, gain=1.0), inner)
    half = _lap_var(aggregate_residuals(img, hole, coarse, cell=8, gain=0.5), inner)
    assert half == pytest.approx(full / 4, rel=0.25)


def test_detail_comes_from_the_matching_region():
    # left half: flat and dark, right half: strongly textured and bright; a hole in each half
    h, w = 160, 320
    img = _textured(h, w, seed=2, amp=45.0, base=(200, 190, 170))
    img[:, : w // 2] = 40
    left, right = _disc(h, w, 80, 80, 24), _disc(h, w, 80, 240, 24)
    hole = left | right
    coarse = img.astype(np.float32).copy()
    coarse[left] = 40.0
    coarse[right] = img[:, w // 2 + 40:][~hole[:, w // 2 + 40:]].reshape(-1, 3).mean(0)
    out = aggregate_residuals(img, hole, coarse, cell=8)
    li = cv2.erode(left.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    ri = cv2.erode(right.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert _lap_var(out, li) < 0.05 * _lap_var(out, ri)  # no bright texture pasted into the flat half
    assert _lap_var(out, ri) > 0.5 * _lap_var(img, ri)


def test_no_source_keeps_the_coarse_fill():
    img = _textured(40, 40)
    hole = np.ones((40, 40), bool)
    hole[0, 0] = False
    coarse = np.full((40, 40, 3), 77.0, np.float32)
    out = aggregate_residuals(img, hole, coarse, cell=8)
    assert (out[hole] == 77).all() and (out[0, 0] == img[0, 0]).all()


def test_cell_for_scale_and_bad_arguments():
    assert cell_for_scale(1.0) == 4 and cell_for_scale(0.125) == 8 and cell_for_scale(0.01) == 16
    with pytest.raises(ValueError):
        cell_for_scale(0)
    img = _textured(32, 32)
    with pytest.raises(ValueError):
        aggregate_residuals(img, np.zeros((31, 32), bool), img.astype(np.float32))
