"""Spatially-adaptive (de)normalisation: the SPADE layer and the SPADE residual block.

Park et al. 2019, "Semantic Image Synthesis with Spatially-Adaptive Normalization" (CVPR),
https://github.com/NVlabs/SPADE (CC BY-NC-SA 4.0). Eq. 1 of the paper:

    out[n,c,y,x] = gamma[c,y,x](m) * (h[n,c,y,x] - mu_c) / sigma_c + beta[c,y,x](m)

where ``m`` is the segmentation map resized to ``h``'s grid (legacy ``'nearest'``) and gamma,
beta come from a two-layer conv net on ``m``. The official code applies ``(1 + gamma)`` so that a
zero-initialised modulation is the identity; so does this module.

Used by SPADE (``imgsynth.models.spade``) and meant to be reused by panoptic-aware variants:
every convolution that sees the segmentation map (``mlp_shared``, ``mlp_gamma_beta``) is built by
an injectable ``conv_factory``, and subclasses may override :meth:`SPADE.hidden` /
:meth:`SPADE.gamma_beta`. The residual block never upsamples; the generator does that outside.

Deviations from the original:
- ``mlp_gamma`` and ``mlp_beta`` are one conv ``mlp_gamma_beta`` with ``2 * norm_nc`` outputs
  (gamma first, then beta): the same numbers, one larger convolution.
  ``imgsynth.convert.spade`` concatenates the official pair.
- Inside a residual block the ``mlp_shared`` convs of ``norm_0``, ``norm_s`` and ``norm_1``
  all see the same resized segmentation map, so they run as one convolution with the three
  weights concatenated (parameters stay per norm, so the state dict keeps the official layout).
- Synchronized BatchNorm is plain ``BatchNorm2d`` (identical on one device; use
  ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` for multi-GPU training).
- Spectral norm is not part of the stored weights: converted checkpoints hold the folded
  weight ``weight_orig / sigma``. ``spectral_norm=True`` re-applies it for training.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

ConvFactory = Callable[[int, int, int], nn.Module]
"""``(in_channels, out_channels, kernel_size) -> module`` mapping (N, in, H, W) to (N, out, H, W)."""

NORM_TYPES = ("batch", "syncbatch", "instance")


def same_conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Module:
    """The default :data:`ConvFactory`: a biased ``nn.Conv2d`` with 'same' zero padding."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


def resize_nearest(segmap: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize (N, C, h, w) to (N, C, *size) with legacy 'nearest' (src = floor(dst * in / out)).

    Returns ``segmap`` itself when it already has that size (nearest is then the identity).
    """
    size = (int(size[0]), int(size[1]))
    if tuple(segmap.shape[-2:]) == size:
        return segmap
    return F.interpolate(segmap, size=size, mode="nearest")


def param_free_norm(norm: str, channels: int) -> nn.Module:
    """The parameter-free normalisation of a SPADE layer (``affine=False``).

    ``"batch"`` and ``"syncbatch"`` give ``BatchNorm2d`` (batch statistics in train mode,
    running statistics in eval mode); ``"instance"`` gives ``InstanceNorm2d`` (no running stats).
    """
    if norm in ("batch", "syncbatch"):
        return nn.BatchNorm2d(channels, affine=False)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    raise ValueError(f"norm must be one of {NORM_TYPES}, got {norm!r}")


def modulate(normalized: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Eq. 1 with the official ``(1 + gamma)``: ``normalized * (1 + gamma) + beta``."""
    return torch.addcmul(beta, normalized, gamma).add_(normalized)


class SPADE(nn.Module):
    """Spatially-adaptive normalisation of ``norm_nc`` channels conditioned on ``label_nc`` maps.

    Keys: ``param_free_norm.*`` (running stats for batch norm), ``mlp_shared.0.{weight,bias}``,
    ``mlp_gamma_beta.{weight,bias}`` (rows ``[:norm_nc]`` are gamma, ``[norm_nc:]`` beta).
    """

    def __init__(
        self,
        norm_nc: int,
        label_nc: int,
        *,
        nhidden: int = 128,
        kernel_size: int = 3,
        norm: str = "batch",
        conv_factory: ConvFactory | None = None,
    ) -> None:
        super().__init__()
        conv = conv_factory or same_conv
        self.norm_nc = norm_nc
        self.param_free_norm = param_free_norm(norm, norm_nc)
        # Sequential keeps the official key ``mlp_shared.0.*``.
        self.mlp_shared = nn.Sequential(conv(label_nc, nhidden, kernel_size), nn.ReLU(inplace=True))
        self.mlp_gamma_beta = conv(nhidden, 2 * norm_nc, kernel_size)

    def hidden(self, segmap: torch.Tensor) -> torch.Tensor:
        """(N, label_nc, H, W) segmap already on x's grid -> (N, nhidden, H, W) ReLU features."""
        return self.mlp_shared(segmap)

    def gamma_beta(self, actv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, nhidden, H, W) features -> gamma, beta, each (N, norm_nc, H, W)."""
        gamma, beta = self.mlp_gamma_beta(actv).chunk(2, dim=1)
        return gamma, beta

    def modulate_hidden(self, x: torch.Tensor, actv: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` and modulate it with the features ``actv`` from :meth:`hidden`."""
        gamma, beta = self.gamma_beta(actv)
        return modulate(self.param_free_norm(x), gamma, beta)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        """x (N, norm_nc, H, W) float, segmap (N, label_nc, h, w) float -> (N, norm_nc, H, W).

        ``segmap`` is resized to (H, W) with legacy 'nearest' as in the official layer.
        """
        return self.modulate_hidden(x, self.hidden(resize_nearest(segmap, x.shape[-2:])))


def shared_hidden(norms: Sequence[SPADE], segmap: torch.Tensor) -> list[torch.Tensor]:
    """:meth:`SPADE.hidden` of several layers that see the same ``segmap``, run as one conv.

    Exact when every ``mlp_shared`` is a default ``nn.Conv2d`` with the same geometry (the
    output channels are independent); otherwise (e.g. a panoptic-aware conv from a custom
    factory, or a subclass overriding ``hidden``) each layer runs its own ``hidden``.
    """
    convs = [n.mlp_shared[0] for n in norms]
    first = convs[0]
    fusable = len(norms) > 1 and all(
        type(n).hidden is SPADE.hidden
        and type(c) is nn.Conv2d
        and not torch.nn.utils.parametrize.is_parametrized(c)
        and c.bias is not None
        and (c.in_channels, c.kernel_size, c.stride, c.padding, c.dilation, c.groups, c.padding_mode)
        == (first.in_channels, first.kernel_size, first.stride, first.padding, first.dilation, 1, "zeros")
        for n, c in zip(norms, convs)
    )
    if not fusable:
        return [n.hidden(segmap) for n in norms]
    weight = torch.cat([c.weight for c in convs])
    bias = torch.cat([c.bias for c in convs])
    actv = F.relu_(F.conv2d(segmap, weight, bias, padding=first.padding))
    return list(actv.split([c.out_channels for c in convs], dim=1))


class SPADEResnetBlock(nn.Module):
    """SPADE residual block (Fig. 4 of the paper), without any resampling.

    ``dx = conv_1(lrelu(norm_1(conv_0(lrelu(norm_0(x, seg)))), seg)))``; the shortcut is
    ``conv_s(norm_s(x, seg))`` (1x1, no bias, no activation) when ``fin != fout``, else ``x``;
    out = shortcut + dx. LeakyReLU slope 0.2; ``fmiddle = min(fin, fout)``.
    """

    def __init__(
        self,
        fin: int,
        fout: int,
        label_nc: int,
        *,
        nhidden: int = 128,
        kernel_size: int = 3,
        norm: str = "batch",
        spectral_norm: bool = False,
        conv_factory: ConvFactory | None = None,
    ) -> None:
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        self.conv_0 = nn.Conv2d(fin, fmiddle, 3, padding=1)
        self.conv_1 = nn.Conv2d(fmiddle, fout, 3, padding=1)
        if self.learned_shortcut:
            self.conv_s = nn.Conv2d(fin, fout, 1, bias=False)
        if spectral_norm:
            sn = torch.nn.utils.parametrizations.spectral_norm
            self.conv_0 = sn(self.conv_0)
            self.conv_1 = sn(self.conv_1)
            if self.learned_shortcut:
                self.conv_s = sn(self.conv_s)
        opts = dict(nhidden=nhidden, kernel_size=kernel_size, norm=norm, conv_factory=conv_factory)
        self.norm_0 = SPADE(fin, label_nc, **opts)
        self.norm_1 = SPADE(fmiddle, label_nc, **opts)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, label_nc, **opts)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """x (N, fin, H, W), seg (N, label_nc, h, w) -> (N, fout, H, W); seg resized to (H, W)."""
        seg = resize_nearest(seg, x.shape[-2:])
        if self.learned_shortcut:
            a0, a_s, a1 = shared_hidden([self.norm_0, self.norm_s, self.norm_1], seg)
            x_s = self.conv_s(self.norm_s.modulate_hidden(x, a_s))
        else:
            a0, a1 = shared_hidden([self.norm_0, self.norm_1], seg)
            x_s = x
        dx = self.conv_0(F.leaky_relu_(self.norm_0.modulate_hidden(x, a0), 0.2))
        dx = self.conv_1(F.leaky_relu_(self.norm_1.modulate_hidden(dx, a1), 0.2))
        return dx.add_(x_s)
