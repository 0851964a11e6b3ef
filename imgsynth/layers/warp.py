"""Backward warping of an image by a dense optical flow, with the vid2vid grid convention.

Used by the video generators (NVIDIA/vid2vid, imaginaire vid2vid and few-shot vid2vid, see
``../shared/conformance/README.md``, "Video synthesis"). All three build the sampling grid the
same way:

- a base grid ``x = linspace(-1, 1, W)`` along the width and ``y = linspace(-1, 1, H)`` along
  the height (channel 0 = x);
- the flow is in pixels, channel 0 horizontal, *backward*: output pixel (y, x) samples the
  source at (y + flow_y, x + flow_x). It is scaled by ``((W - 1) / 2, (H - 1) / 2)`` and added;
- bilinear ``grid_sample`` with ``padding_mode="border"``.

``align_corners`` is where the three differ: NVIDIA/vid2vid does not pass it, so PyTorch >= 1.3
samples with ``align_corners=False`` (the released checkpoints were trained under PyTorch 0.4,
whose behaviour was ``align_corners=True``); imaginaire passes ``align_corners=True``. With
``False`` the linspace grid is not pixel-exact (a zero flow resamples slightly), which is the
official behaviour and is kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def base_grid(batch: int, height: int, width: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """(batch, 2, H, W) grid: channel 0 = linspace(-1, 1, W) along x, channel 1 = linspace(-1, 1, H) along y."""
    hor = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype).view(1, 1, 1, width).expand(batch, 1, height, width)
    ver = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype).view(1, 1, height, 1).expand(batch, 1, height, width)
    return torch.cat([hor, ver], 1)


def flow_warp(image: torch.Tensor, flow: torch.Tensor, *, align_corners: bool = False) -> torch.Tensor:
    """Warp ``image`` backward by ``flow`` (vid2vid ``resample``).

    Args:
        image: (N, C, H, W) float, any range.
        flow: (N, 2, H, W) float, pixels; channel 0 horizontal, channel 1 vertical; output pixel
            (y, x) reads ``image`` at (y + flow[1], x + flow[0]), clamped to the border.
        align_corners: ``grid_sample``'s flag (see the module docstring for which model uses which).

    Returns:
        (N, C, H, W) float, the warped image.
    """
    n, _, h, w = image.shape
    grid = base_grid(n, h, w, device=flow.device, dtype=flow.dtype)
    scaled = torch.cat([flow[:, 0:1] / ((w - 1.0) / 2.0), flow[:, 1:2] / ((h - 1.0) / 2.0)], dim=1)
    final = (grid + scaled).permute(0, 2, 3, 1)
    return F.grid_sample(image, final, mode="bilinear", padding_mode="border", align_corners=align_corners)


def downsample_avg(x: torch.Tensor) -> torch.Tensor:
    """One level of the vid2vid / pix2pixHD input pyramid: AvgPool2d(3, 2, 1, count_include_pad=False)."""
    return F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
