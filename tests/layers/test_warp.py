"""The vid2vid warp: backward flow in pixels on a linspace grid, border padding, either align_corners."""

from __future__ import annotations

import torch

import pytest

from imgsynth.layers.warp import base_grid, block_match, downsample_avg, flow_warp


def _image(h=6, w=8):
    return torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w).repeat(2, 3, 1, 1)


def test_grid_is_linspace_x_first():
    g = base_grid(2, 3, 5)
    assert g.shape == (2, 2, 3, 5)
    assert torch.equal(g[0, 0, 1], torch.linspace(-1, 1, 5))
    assert torch.equal(g[0, 1, :, 2], torch.linspace(-1, 1, 3))


def test_zero_flow_is_identity_with_align_corners():
    img = _image()
    out = flow_warp(img, torch.zeros(2, 2, 6, 8), align_corners=True)
    assert torch.allclose(out, img, atol=1e-5)


def test_zero_flow_resamples_without_align_corners():
    """The official grid is not pixel-exact under align_corners=False (kept on purpose)."""
    img = _image()
    out = flow_warp(img, torch.zeros(2, 2, 6, 8), align_corners=False)
    assert (out - img).abs().max() > 0.05


def test_integer_flow_reads_the_shifted_pixel_and_clamps_at_the_border():
    img = _image()
    flow = torch.zeros(2, 2, 6, 8)
    flow[:, 0] = 1.0  # read one pixel to the right
    out = flow_warp(img, flow, align_corners=True)
    assert torch.allclose(out[..., :-1], img[..., 1:], atol=1e-4)
    assert torch.allclose(out[..., -1], img[..., -1], atol=1e-4)  # border padding
    flow = torch.zeros(2, 2, 6, 8)
    flow[:, 1] = -2.0  # two rows up
    out = flow_warp(img, flow, align_corners=True)
    assert torch.allclose(out[..., 2:, :], img[..., :-2, :], atol=1e-4)


def test_downsample_avg_excludes_padding():
    x = torch.ones(1, 1, 4, 4)
    assert torch.equal(downsample_avg(x), torch.ones(1, 1, 2, 2))


def test_block_match_finds_a_whole_pixel_shift_in_the_backward_convention():
    g = torch.Generator().manual_seed(0)
    prev = torch.rand(1, 3, 24, 24, generator=g) * 2 - 1
    flow = torch.zeros(1, 2, 24, 24)
    flow[:, 0], flow[:, 1] = 2.0, -1.0
    cur = flow_warp(prev, flow, align_corners=True)  # cur(y, x) = prev(y - 1, x + 2)
    probs, est, min_cost = block_match(cur, prev, 3, window=5, temperature=0.01)
    assert probs.shape == (1, 49, 24, 24) and torch.allclose(probs.sum(1), torch.ones(1, 24, 24), atol=1e-5)
    inner = (slice(None), slice(None), slice(5, -5), slice(5, -5))  # away from the replicated border
    assert torch.allclose(est[inner], flow[inner], atol=1e-3)
    assert probs[0, 2 * 7 + 5, 12, 12] > 0.99  # dy = -1 (row 2 of 7), dx = +2 (column 5)
    assert min_cost[inner].abs().max() < 1e-5
    _, _, none = block_match(cur, -prev, 3, window=5)  # nothing matches: a high cost everywhere
    assert none[inner].min() > 0.3


def test_block_match_rejects_bad_arguments():
    x = torch.zeros(1, 1, 8, 8)
    for kwargs in ({"radius": 0}, {"radius": 1, "window": 4}, {"radius": 1, "temperature": 0.0}):
        with pytest.raises(ValueError, match="radius"):
            block_match(x, x, **kwargs)
