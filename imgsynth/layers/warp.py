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


def block_match(
    current: torch.Tensor, previous: torch.Tensor, radius: int, *, window: int = 7, temperature: float = 0.02
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft block matching of ``current`` against ``previous`` over whole-pixel displacements.

    A correlation layer in the sense of FlowNetC (Dosovitskiy et al., ICCV 2015, Sec. 3), without
    learned features: for every displacement d = (dx, dy) with |dx|, |dy| <= ``radius`` the cost at
    pixel (y, x) is the mean absolute difference over channels between ``current`` at (y, x) and
    ``previous`` at (y + dy, x + dx) (replicate padding), box-averaged over ``window`` x ``window``
    pixels. Costs become probabilities by ``softmax(-cost / temperature)`` over the displacements.

    Args:
        current, previous: (N, C, H, W) float, the same range (e.g. [-1, 1]).
        radius: the largest displacement searched along each axis (>= 1).
        window: side of the box the costs are averaged over (odd; 1 = per pixel).
        temperature: softmax temperature in cost units.

    Returns:
        probs (N, (2r+1)**2, H, W), displacements in row-major (dy outer, dx inner) order;
        flow (N, 2, H, W), the expected displacement in pixels, channel 0 horizontal, in the
        backward convention of :func:`flow_warp` (pixel (y, x) of ``current`` shows what
        ``previous`` shows at (y + flow_y, x + flow_x));
        min_cost (N, 1, H, W), the smallest cost (high where nothing in ``previous`` matches:
        occlusions).
    """
    if radius < 1 or window < 1 or window % 2 == 0 or temperature <= 0:
        raise ValueError(f"need radius >= 1, an odd window >= 1 and temperature > 0; got {radius}, {window}, {temperature}")
    r = radius
    _, _, h, w = current.shape
    padded = F.pad(previous, (r, r, r, r), mode="replicate")
    costs = []
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            shifted = padded[:, :, r + dy : r + dy + h, r + dx : r + dx + w]
            costs.append((current - shifted).abs().mean(1, keepdim=True))
    cost = torch.cat(costs, 1)
    if window > 1:
        p = window // 2
        cost = F.avg_pool2d(F.pad(cost, (p, p, p, p), mode="replicate"), window, stride=1)
    probs = torch.softmax(-cost / temperature, 1)
    steps = torch.arange(-r, r + 1, device=current.device, dtype=current.dtype)
    disp_x = steps.repeat(2 * r + 1)
    disp_y = steps.repeat_interleave(2 * r + 1)
    flow = torch.stack([torch.einsum("nkhw,k->nhw", probs, disp_x), torch.einsum("nkhw,k->nhw", probs, disp_y)], 1)
    return probs, flow, cost.min(1, keepdim=True).values
