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

    Returns ``segmap`` itself when it already has that size, and a strided view when each side
    shrinks by an integer factor ``f`` (then src = dst * f exactly): no copy of a large map.
    """
    size = (int(size[0]), int(size[1]))
    h, w = segmap.shape[-2:]
    if (h, w) == size:
        return segmap
    if h % size[0] == 0 and w % size[1] == 0:
        return segmap[..., :: h // size[0], :: w // size[1]]
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


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def onehot_index(seg: torch.Tensor) -> torch.Tensor | None:
    """(N, L, H, W) -> (N, H, W) int64 label index if ``seg`` is exactly one-hot, else None.

    Exactly one-hot: every entry >= 0, the per-pixel maximum is 1 and the per-pixel sum is 1
    (so all other entries are 0).
    """
    if torch.compiler.is_exporting():  # a graph (ONNX) takes the dense path: no data-dependent branch
        return None
    lo, hi = torch.aminmax(seg, dim=1)
    if not (bool((lo >= 0).all()) and bool((hi == 1).all()) and bool((seg.sum(1) == 1).all())):
        return None
    return seg.argmax(1)


def onehot_conv2d(
    index: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    padding: int,
    extra: torch.Tensor | None = None,
) -> torch.Tensor:
    """``conv2d(cat([one_hot(index), extra]), weight, bias, padding=padding)`` (stride 1) as lookups.

    A convolution of a one-hot map adds, for each of the k*k taps, the weight column of the
    label under that tap. That is one ``embedding_bag`` sum over a (C*k*k + 1, O) table of
    weight columns whose last row (zero) stands for the zero padding; ``extra`` channels (e.g.
    an instance-edge map, any values) join each bag as rows scaled by their values
    (``per_sample_weights``). About ``L`` times fewer operations than the dense conv; only the
    summation order differs.

    index (N, H, W) int64 in [0, L); weight (O, L + E, k, k); extra (N, E, H, W) or None
    -> (N, O, H', W') in channels-last memory.
    """
    out_ch, in_ch, kh, kw = weight.shape
    n, h, w = index.shape
    n_extra = 0 if extra is None else extra.shape[1]
    ho, wo = h + 2 * padding - kh + 1, w + 2 * padding - kw + 1
    taps = kh * kw
    zero_row = in_ch * taps
    table = torch.cat([weight.permute(1, 2, 3, 0).reshape(zero_row, out_ch), weight.new_zeros(1, out_ch)])
    pad = (padding, padding, padding, padding)
    padded = F.pad(index, pad, value=-1)
    cols = []
    for dy in range(kh):
        for dx in range(kw):
            v = padded[:, dy : dy + ho, dx : dx + wo]
            cols.append(torch.where(v < 0, zero_row, v * taps + (dy * kw + dx)))
    ind = torch.stack(cols, dim=-1)
    scale = None
    if extra is not None and n_extra:
        labels = in_ch - n_extra
        values = F.pad(extra.to(weight.dtype), pad)  # zero padding = weight 0
        rows = torch.arange(labels * taps, in_ch * taps, device=index.device)
        ind = torch.cat([ind, rows.expand(n, ho, wo, -1)], dim=-1)
        scale = torch.stack(
            [torch.ones_like(values[:, 0, :ho, :wo])] * taps
            + [values[:, c, dy : dy + ho, dx : dx + wo] for c in range(n_extra) for dy in range(kh) for dx in range(kw)],
            dim=-1,
        )
        scale = scale.reshape(-1, scale.shape[-1])
    bag = ind.shape[-1]
    out = F.embedding_bag(ind.reshape(-1, bag), table, mode="sum", per_sample_weights=scale)
    if bias is not None:
        out = out.add_(bias)
    return out.view(n, ho, wo, out_ch).permute(0, 3, 1, 2)


def shared_hidden(
    norms: Sequence[SPADE],
    segmap: torch.Tensor,
    onehot_nc: int | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> list[torch.Tensor]:
    """:meth:`SPADE.hidden` of several layers that see the same ``segmap``, run as one conv.

    Exact when every ``mlp_shared`` is a default ``nn.Conv2d`` with the same geometry (the
    output channels are independent); otherwise (e.g. a panoptic-aware conv from a custom
    factory, or a subclass overriding ``hidden``) each layer runs its own ``hidden``.

    ``onehot_nc``: the first ``onehot_nc`` channels of ``segmap`` are normally a one-hot label
    encoding (the rest, e.g. an instance-edge map, are arbitrary). On CPU, when they are
    exactly one-hot, that part of the conv runs as :func:`onehot_conv2d`. The fused features
    come out in ``memory_format`` (that of the activations they will modulate).
    """
    convs = [n.mlp_shared[0] for n in norms]
    first = convs[0]
    fusable = all(
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
    weight = torch.cat([c.weight for c in convs]) if len(convs) > 1 else first.weight
    bias = torch.cat([c.bias for c in convs]) if len(convs) > 1 else first.bias
    index = None
    lookup_ok = (
        first.stride == (1, 1) and first.dilation == (1, 1)
        and isinstance(first.padding, tuple) and first.padding[0] == first.padding[1]
    )
    # CPU only: there the lookup beats the dense conv by far; GPUs run the dense conv fast.
    if onehot_nc and lookup_ok and segmap.device.type == "cpu":
        index = onehot_index(segmap[:, :onehot_nc])
    if index is None:
        actv = F.conv2d(segmap.contiguous(memory_format=memory_format), weight, bias,
                        first.stride, first.padding, first.dilation)
    else:
        extra = segmap[:, onehot_nc:] if segmap.shape[1] > onehot_nc else None
        actv = onehot_conv2d(index, weight, bias, first.padding[0], extra)
    actv = F.relu_(actv.contiguous(memory_format=memory_format))
    if len(convs) == 1:
        return [actv]
    return list(actv.split([c.out_channels for c in convs], dim=1))


class SPADEResnetBlock(nn.Module):
    """SPADE residual block (Fig. 4 of the paper), without any resampling.

    ``dx = conv_1(lrelu(norm_1(conv_0(lrelu(norm_0(x, seg)))), seg)))``; the shortcut is
    ``conv_s(norm_s(x, seg))`` (1x1, no bias, no activation) when ``fin != fout``, else ``x``;
    out = shortcut + dx. LeakyReLU slope 0.2; ``fmiddle = min(fin, fout)``.

    ``label_nc`` is the channel count of the conditioning map; ``onehot_nc`` optionally says
    that its first ``onehot_nc`` channels are a one-hot encoding (a speed hint for
    :func:`shared_hidden`, with a dense fallback when they are not). ``conv_factory`` builds
    the convs of the SPADE layers; ``spectral_norm`` wraps conv_0/conv_1/conv_s for training.
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
        onehot_nc: int | None = None,
    ) -> None:
        super().__init__()
        self.onehot_nc = onehot_nc
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
        fmt = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
        if self.learned_shortcut:
            a0, a_s, a1 = shared_hidden([self.norm_0, self.norm_s, self.norm_1], seg, self.onehot_nc, fmt)
            x_s = self.conv_s(self.norm_s.modulate_hidden(x, a_s))
        else:
            a0, a1 = shared_hidden([self.norm_0, self.norm_1], seg, self.onehot_nc, fmt)
            x_s = x
        dx = self.conv_0(F.leaky_relu_(self.norm_0.modulate_hidden(x, a0), 0.2))
        dx = self.conv_1(F.leaky_relu_(self.norm_1.modulate_hidden(dx, a1), 0.2))
        return dx.add_(x_s)
