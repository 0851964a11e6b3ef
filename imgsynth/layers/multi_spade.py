"""Multi-condition SPADE, hyper (per-sample) convolutions and the label embedder of imaginaire's
video generators (vid2vid and few-shot vid2vid, https://github.com/NVlabs/imaginaire, NVIDIA
Source Code License-NC).

Semantics (``../shared/conformance/README.md``, "Video synthesis"):

- :class:`MultiSPADE`: ``InstanceNorm2d(affine=False)``, then for every condition that is given,
  in order, ``out = out * (1 + gamma_i) + beta_i`` where ``gamma_i || beta_i`` is one conv
  (1x1 in the released configs, no hidden layer) of condition i resized with legacy 'nearest'
  to x (Park et al. 2019, Eq. 1, applied once per condition: "multi-SPADE", Wang et al. 2019).
  A *hyper* slot (few-shot vid2vid) has no weights of its own: its conv weights are generated per
  sample by a hyper-network and passed in.
- :class:`SPADEResBlock`: imaginaire ``Res2dBlock`` with order N-A-C-N-A-C (SPADE, LeakyReLU 0.2,
  3x3 conv with zero padding), hidden width ``min(in, out)``, a learned shortcut (SPADE, 1x1 conv,
  no activation) when in != out; output = shortcut + residual.
- :class:`LabelEmbedder`: conv_first + stride-2 convs (+ nearest x2 up convs for the
  ``encoderdecoder`` / ``unet`` archs), LeakyReLU 0.2 after every conv, no norm; returns one map per
  resolution, level j at 1/2**j. Its decoder convs may be hyper convs (few-shot vid2vid).
- :func:`hyper_conv2d`: a convolution with per-sample weight and bias (imaginaire ``HyperConv2d``).

Deviations from the original:
- Spectral norm is folded into plain weights at conversion (eval semantics with the stored u, v;
  the released ``averaged_model`` already stores the folded weights), so these blocks hold plain
  convs. The imaginaire ``Conv2dBlock``'s ``.layers`` wrapper is dropped from the key names
  (``up_0.conv_block_0.norm.mlps.1.weight`` for ``up_0.conv_block_0.layers.norm.mlps.1.0.layers.conv.weight``).
- :func:`hyper_conv2d` runs the per-sample convs as one grouped conv (same sums).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LRELU = 0.2
"""imaginaire ``leakyrelu`` = LeakyReLU(0.2)."""

HyperWeight = tuple[torch.Tensor, torch.Tensor | None]
"""Per-sample conv parameters: weight (N, out, in, k, k) and bias (N, out) or None."""


def hyper_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int) -> torch.Tensor:
    """Convolve sample n of ``x`` (N, in, H, W) with ``weight[n]`` (out, in, k, k) and ``bias[n]`` (out)."""
    n, c, h, w = x.shape
    out_c = weight.shape[1]
    y = F.conv2d(x.reshape(1, n * c, h, w), weight.reshape(n * out_c, *weight.shape[2:]),
                 None if bias is None else bias.reshape(-1), padding=padding, groups=n)
    return y.reshape(n, out_c, y.shape[-2], y.shape[-1])


def resize_nearest(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Legacy 'nearest' resize (src = floor(dst * in / out)); no-op at the same size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="nearest")


class MultiSPADE(nn.Module):
    """SPADE with several conditions applied in sequence.

    Args:
        num_features: channels of x.
        cond_dims: channels of each condition; ``None`` marks a hyper slot (weights given at call time).
        kernel_size: of the per-condition projection conv (1 released).
    """

    def __init__(self, num_features: int, cond_dims: Sequence[int | None], kernel_size: int = 1) -> None:
        super().__init__()
        self.padding = kernel_size // 2
        self.norm = nn.InstanceNorm2d(num_features, affine=False)
        self.mlps = nn.ModuleList(
            nn.Identity() if c is None else nn.Conv2d(c, 2 * num_features, kernel_size, padding=self.padding)
            for c in cond_dims
        )
        self.hyper = [c is None for c in cond_dims]

    def forward(
        self, x: torch.Tensor, conds: Sequence[torch.Tensor | None], hyper: HyperWeight | None = None
    ) -> torch.Tensor:
        """x (N, C, H, W); conds[i] (N, cond_dims[i], h, w) or None (skipped); hyper = (weight, bias)
        for the hyper slot. Returns (N, C, H, W)."""
        out = self.norm(x)
        size = x.shape[-2:]
        for i, cond in enumerate(conds):
            if cond is None:
                continue
            cond = resize_nearest(cond, size)
            if self.hyper[i]:
                if hyper is None:
                    raise ValueError("a hyper SPADE slot needs generated weights")
                params = hyper_conv2d(cond, hyper[0], hyper[1], self.padding)
            else:
                params = self.mlps[i](cond)
            gamma, beta = params.chunk(2, dim=1)
            out = out * (1 + gamma) + beta
        return out


class SPADEConv(nn.Module):
    """N-A-C unit: MultiSPADE, LeakyReLU 0.2 (skipped in the shortcut), conv with zero padding."""

    def __init__(self, cin: int, cout: int, kernel_size: int, cond_dims: Sequence[int | None], *,
                 act: bool = True, spade_kernel: int = 1) -> None:
        super().__init__()
        self.act = act
        self.norm = MultiSPADE(cin, cond_dims, spade_kernel)
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor, conds: Sequence[torch.Tensor | None], hyper: HyperWeight | None = None) -> torch.Tensor:
        h = self.norm(x, conds, hyper)
        if self.act:
            h = F.leaky_relu(h, LRELU)
        return self.conv(h)


class SPADEResBlock(nn.Module):
    """imaginaire ``Res2dBlock`` / ``HyperRes2dBlock`` with order NACNAC and (hyper) SPADE norms."""

    def __init__(self, cin: int, cout: int, cond_dims: Sequence[int | None], *, kernel_size: int = 3,
                 spade_kernel: int = 1) -> None:
        super().__init__()
        hidden = min(cin, cout)
        self.conv_block_0 = SPADEConv(cin, hidden, kernel_size, cond_dims, spade_kernel=spade_kernel)
        self.conv_block_1 = SPADEConv(hidden, cout, kernel_size, cond_dims, spade_kernel=spade_kernel)
        self.conv_block_s = (
            SPADEConv(cin, cout, 1, cond_dims, act=False, spade_kernel=spade_kernel) if cin != cout else None
        )

    def forward(
        self,
        x: torch.Tensor,
        conds: Sequence[torch.Tensor | None],
        hyper: Sequence[HyperWeight | None] | None = None,
    ) -> torch.Tensor:
        """x (N, cin, H, W), conds as :class:`MultiSPADE`; hyper = generated SPADE weights for
        (conv_block_0, conv_block_1, conv_block_s) or None. Returns (N, cout, H, W)."""
        h0, h1, hs = hyper if hyper is not None else (None, None, None)
        dx = self.conv_block_1(self.conv_block_0(x, conds, h0), conds, h1)
        short = self.conv_block_s(x, conds, hs) if self.conv_block_s is not None else x
        return short + dx


class EmbedConv(nn.Module):
    """Conv (or hyper conv: no weights of its own) · LeakyReLU 0.2, imaginaire ``HyperConv2dBlock``."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1, *, hyper: bool = False) -> None:
        super().__init__()
        self.padding = kernel_size // 2
        self.conv = None if hyper else nn.Conv2d(cin, cout, kernel_size, stride, self.padding)

    def forward(self, x: torch.Tensor, weights: HyperWeight | None = None) -> torch.Tensor:
        if self.conv is not None:
            h = self.conv(x)
        elif weights is None:
            h = x  # imaginaire HyperConv2d without weights is the identity
        else:
            h = hyper_conv2d(x, weights[0], weights[1], self.padding)
        return F.leaky_relu(h, LRELU)


class LabelEmbedder(nn.Module):
    """imaginaire ``LabelEmbedder``: multi-resolution embedding of a label map (or warped image + mask).

    Args:
        in_channels: input channels.
        num_filters: width at full resolution; level j has ``min(max_num_filters, num_filters * 2**j)``.
        num_downsamples: stride-2 stages (levels 0..num_downsamples).
        arch: ``"encoder"``, ``"encoderdecoder"`` (decoder from the deepest map) or ``"unet"``
            (decoder with skip concatenations).
        kernel_size: of every conv.
        num_hyper_layers: decoder convs ``up_i`` with i < this are hyper convs.
    """

    def __init__(self, in_channels: int, num_filters: int, num_downsamples: int, *, arch: str = "encoderdecoder",
                 kernel_size: int = 3, max_num_filters: int = 1024, num_hyper_layers: int = 0) -> None:
        super().__init__()
        if arch not in ("encoder", "encoderdecoder", "unet"):
            raise ValueError(f"arch must be encoder, encoderdecoder or unet, got {arch!r}")
        self.arch = arch
        self.unet = arch == "unet"
        self.has_decoder = arch != "encoder"
        self.num_downsamples = num_downsamples
        self.num_hyper_layers = num_hyper_layers
        ch = [min(max_num_filters, num_filters * 2**i) for i in range(num_downsamples + 1)]
        self.conv_first = EmbedConv(in_channels, num_filters, kernel_size)
        for i in range(num_downsamples):
            hyper = i < num_hyper_layers and not self.has_decoder
            setattr(self, f"down_{i}", EmbedConv(ch[i], ch[i + 1], kernel_size, 2, hyper=hyper))
        if self.has_decoder:
            for i in reversed(range(num_downsamples)):
                cin = ch[i + 1] * (2 if self.unet and i != num_downsamples - 1 else 1)
                setattr(self, f"up_{i}", EmbedConv(cin, ch[i], kernel_size, hyper=i < num_hyper_layers))

    def forward(self, x: torch.Tensor, weights: Sequence[HyperWeight] | None = None) -> list[torch.Tensor]:
        """(N, in_channels, H, W) -> [level 0 (N, ch0, H, W), ..., level n (N, ch_n, H/2**n, W/2**n)]."""
        out = [self.conv_first(x)]
        for i in range(self.num_downsamples):
            layer = getattr(self, f"down_{i}")
            if i >= self.num_hyper_layers or self.has_decoder:
                out.append(layer(out[-1]))
            else:
                out.append(layer(out[-1], weights[i]))
        if not self.has_decoder:
            return out
        if not self.unet:
            out = [out[-1]]
        for i in reversed(range(self.num_downsamples)):
            h = out[-1]
            if self.unet and i != self.num_downsamples - 1:
                h = torch.cat([h, out[i + 1]], dim=1)
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            layer = getattr(self, f"up_{i}")
            out.append(layer(h) if i >= self.num_hyper_layers else layer(h, weights[i]))
        if self.unet:
            out = out[self.num_downsamples:]
        return out[::-1]


class ConvNormAct(nn.Module):
    """Conv (zero padding) · InstanceNorm2d(affine) · LeakyReLU 0.2 (imaginaire ``Conv2dBlock``, order CNA)."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, *, norm: bool = True,
                 act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, kernel_size // 2)
        self.norm = nn.InstanceNorm2d(cout, affine=True) if norm else None
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        if self.norm is not None:
            h = self.norm(h)
        return F.leaky_relu(h, LRELU) if self.act else h


class NormResBlock(nn.Module):
    """Residual block of the flow networks: ``x + f(x)`` with f = C-N-A-C-N (vid2vid) or N-A-C-N-A-C
    (few-shot vid2vid); InstanceNorm2d(affine), LeakyReLU 0.2, 3x3 convs."""

    def __init__(self, channels: int, order: str, kernel_size: int = 3) -> None:
        super().__init__()
        if order not in ("CNACN", "NACNAC"):
            raise ValueError(f"order must be CNACN or NACNAC, got {order!r}")
        self.order = order
        self.conv_block_0 = _NormConv(channels, kernel_size, order[0:3])
        self.conv_block_1 = _NormConv(channels, kernel_size, order[3:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block_1(self.conv_block_0(x))


class _NormConv(nn.Module):
    def __init__(self, channels: int, kernel_size: int, order: str) -> None:
        super().__init__()
        self.order = order
        self.conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.norm = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.order:
            if op == "C":
                x = self.conv(x)
            elif op == "N":
                x = self.norm(x)
            else:
                x = F.leaky_relu(x, LRELU)
        return x


class FlowNetwork(nn.Module):
    """imaginaire flow generator: encoders of the input groups (summed), residual blocks, nearest
    x2 up + conv blocks, then ``flow = conv * multiplier`` (pixels) and ``mask = sigmoid(conv)``.

    Args:
        encoders: (attribute name, input channels) per input group: ``[("down_lbl", L), ("down_img", I)]``
            (vid2vid) or ``[("down_flow", L + I)]`` (few-shot vid2vid).
        num_filters, max_num_filters, num_downsamples: widths ``min(max, num_filters * 2**i)``.
        num_res_blocks, res_order: residual blocks and their order (``CNACN`` vid2vid, ``NACNAC`` few-shot).
        multiplier: ``flow_output_multiplier``.
    """

    def __init__(self, encoders: Sequence[tuple[str, int]], *, num_filters: int, max_num_filters: int,
                 num_downsamples: int, num_res_blocks: int, res_order: str, multiplier: float,
                 kernel_size: int = 3) -> None:
        super().__init__()
        ch = [min(max_num_filters, num_filters * 2**i) for i in range(num_downsamples + 1)]
        self.encoder_names = [name for name, _ in encoders]
        self.multiplier = multiplier
        for name, cin in encoders:
            layers = [ConvNormAct(cin, num_filters, kernel_size)]
            layers += [ConvNormAct(ch[i], ch[i + 1], kernel_size, 2) for i in range(num_downsamples)]
            setattr(self, name, nn.Sequential(*layers))
        self.res_flow = nn.Sequential(*(NormResBlock(ch[-1], res_order, kernel_size) for _ in range(num_res_blocks)))
        up: list[nn.Module] = []
        for i in reversed(range(num_downsamples)):
            up += [nn.Upsample(scale_factor=2), ConvNormAct(ch[i + 1], ch[i], kernel_size)]
        self.up_flow = nn.Sequential(*up)
        self.conv_flow = nn.Conv2d(num_filters, 2, kernel_size, padding=kernel_size // 2)
        self.conv_mask = nn.Conv2d(num_filters, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One (N, C_g, H, W) tensor per encoder -> flow (N, 2, H, W) pixels, mask (N, 1, H, W) in [0, 1]."""
        h = None
        for name, x in zip(self.encoder_names, inputs):
            e = getattr(self, name)(x)
            h = e if h is None else h + e
        feat = self.up_flow(self.res_flow(h))
        return self.conv_flow(feat) * self.multiplier, torch.sigmoid(self.conv_mask(feat))
