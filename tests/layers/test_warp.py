"""The vid2vid warp: backward flow in pixels on a linspace grid, border padding, either align_corners."""

from __future__ import annotations

import torch

from imgsynth.layers.warp import base_grid, downsample_avg, flow_warp


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
