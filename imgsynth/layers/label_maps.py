"""Label-map encodings shared by the label-conditioned generators (pix2pixHD, SPADE, panoptic).

Official semantics (``../shared/conformance/README.md``): one-hot over the label channels, then
the instance *edge* map appended as one more channel, 1 where a pixel's instance id differs from
any of its 4 neighbours (both sides of a boundary are marked).
"""

from __future__ import annotations

import torch


def one_hot(label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, 1, H, W) or (N, H, W) integer labels in [0, num_classes) -> (N, C, H, W) float 0/1."""
    if label.dim() == 4:
        if label.shape[1] != 1:
            raise ValueError(f"label map must have 1 channel, got {label.shape[1]}")
        label = label[:, 0]
    label = label.long()
    out = torch.zeros(label.shape[0], num_classes, *label.shape[1:], dtype=torch.float32, device=label.device)
    return out.scatter_(1, label.unsqueeze(1), 1.0)


def instance_edges(instance: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) instance ids -> (N, 1, H, W) float, 1 on both sides of every id change."""
    inst = instance
    edge = torch.zeros(inst.shape, dtype=torch.bool, device=inst.device)
    dh = inst[..., :, 1:] != inst[..., :, :-1]
    dv = inst[..., 1:, :] != inst[..., :-1, :]
    edge[..., :, 1:] |= dh
    edge[..., :, :-1] |= dh
    edge[..., 1:, :] |= dv
    edge[..., :-1, :] |= dv
    return edge.float()
