"""Temporal consistency scores: they rank real < per-frame colour jitter < shuffled frames."""

from __future__ import annotations

import numpy as np
import pytest

from imgsynth.pipelines.temporal import flow_and_mask, psnr, ssim, temporal_scores, warp


def panning_clip(n=8, size=64, step=(2, 1), seed=0):
    """Crops of a smooth random texture, the camera moving ``step`` pixels a frame."""
    import cv2

    rs = np.random.RandomState(seed)
    tex = cv2.GaussianBlur(rs.rand(size * 2, size * 2, 3).astype(np.float32), (0, 0), 2.0)
    tex = (255 * (tex - tex.min()) / (tex.max() - tex.min())).astype(np.uint8)
    return [tex[10 + t * step[1]: 10 + t * step[1] + size, 10 + t * step[0]: 10 + t * step[0] + size].copy()
            for t in range(n)]


def test_dis_recovers_a_pan_and_warp_aligns():
    clip = panning_clip()
    flow, valid = flow_and_mask(clip[0], clip[1])
    inner = valid[8:-8, 8:-8]
    assert inner.mean() > 0.9
    # pixel x of frame 1 shows frame 0 at x + (2, 1)
    med = np.median(flow[8:-8, 8:-8].reshape(-1, 2)[inner.ravel()], axis=0)
    assert np.allclose(med, [2, 1], atol=0.25)
    warped = warp(clip[0].astype(np.float32), flow)
    assert np.abs(warped - clip[1])[valid].mean() < 3.0


def test_metric_orders_real_jitter_shuffled():
    real = panning_clip()
    rs = np.random.RandomState(1)
    jitter = [np.clip(f.astype(int) + rs.randint(-20, 21, 3), 0, 255).astype(np.uint8) for f in real]
    shuffled = [real[i] for i in rs.permutation(len(real))]
    s_real = temporal_scores(real, flow_frames=real, reference=real)
    s_jit = temporal_scores(jitter, flow_frames=real, reference=real)
    s_shuf = temporal_scores(shuffled, flow_frames=real, reference=real)
    assert s_real.warping_error < s_jit.warping_error < s_shuf.warping_error
    assert s_real.warping_error < 0.2 * s_jit.warping_error
    assert s_real.flicker < s_jit.flicker
    assert s_real.tof == pytest.approx(0.0, abs=1e-6) and s_real.tof < s_shuf.tof


def test_exact_flows_and_errors():
    real = panning_clip(n=3)
    h, w = real[0].shape[:2]
    exact = [(np.broadcast_to(np.array([2, 1], np.float32), (h, w, 2)).copy(), np.ones((h, w), bool))] * 2
    exact[0][1][:, -2:] = False  # outside frame 0
    s = temporal_scores(real, flows=exact)
    assert s.warping_error < 1e-3 and s.tof is None
    with pytest.raises(ValueError):
        temporal_scores(real)  # no motion source
    with pytest.raises(ValueError):
        temporal_scores(real[:1], flow_frames=real[:1])


def test_psnr_ssim():
    a = panning_clip(n=1)[0]
    assert psnr(a, a) == float("inf") and ssim(a, a) == pytest.approx(1.0)
    b = np.clip(a.astype(int) + 10, 0, 255).astype(np.uint8)
    assert 25 < psnr(a, b) < 30 and ssim(a, b) < 1.0
