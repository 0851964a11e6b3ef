"""Partial convolution (Liu et al., "Image Inpainting for Irregular Holes Using Partial
Convolutions", ECCV 2018, Eq. 1-2) and its mask-renormalisation maths.

Official code: NVIDIA/partialconv ``models/partialconv2d.py`` (BSD-style NVIDIA licence, see the
repo). :class:`PartialConv2d` reproduces its semantics exactly: mask 1 = valid, 0 = hole,

    S      = sum of the mask over the sliding window       (Cin*k*k taps if multi_channel, else k*k)
    update = clamp(S, 0, 1)
    ratio  = window_size / (S + 1e-8) * update             (Eq. 1: sum(1) / sum(M))
    out    = ((W^T (X*M)) * ratio + b) * update            with bias
    out    = (W^T (X*M)) * ratio                           without bias

and, with ``mask=None``, an all-ones mask whose ratio/update are cached per input shape (the
"partial padding" mode of NVIDIA's ``pd_resnet``).

The renormalisation is exposed on its own (:func:`mask_ratio`, :func:`apply_ratio`,
:func:`renormalize`) for layers whose windows each carry their own mask, such as the
panoptic-aware convolution of Dundar et al. (CVPR 2020), where M(i, j) = 1 where the panoptic id
equals the id at the window centre: compute the raw convolution of the per-window-masked input and
the per-window mask sum S yourself, then call :func:`renormalize`.

A second variant, ``"naoto"``, follows naoto0804/pytorch-inpainting-with-partial-conv (MIT), whose
released PConv U-Net checkpoint was trained with it: ``out = (W^T (X*M)) / S + b``, 0 where S == 0,
new mask = 1 where S > 0. It has no ``window_size`` numerator.

Deviations from the original: the mask sums are computed from a one-channel "valid channels per
pixel" map and a one-channel box convolution in float32, instead of NVIDIA's Cout x Cin all-ones
convolution in the input dtype. For 0/1 masks the sums are small integers, so the numbers are
identical; returned multi-channel update masks are broadcast views over the output channels.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from imgsynth.errors import InputError
from imgsynth.layers.fast_conv import fast_conv2d

Variant = Literal["nvidia", "naoto"]
VARIANTS: tuple[str, ...] = ("nvidia", "naoto")
EPS = 1e-8  # NVIDIA's constant; keeps window_size / S finite where S == 0 (ratio is zeroed there)

_Pair = tuple[int, int]


def _pair(v: int | tuple[int, int]) -> _Pair:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def window_sum(
    count: torch.Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
) -> torch.Tensor:
    """Sum a per-pixel count map over every convolution window, in float32.

    Args:
        count: (N, 1, H, W) number of valid taps at each pixel, e.g. the mask itself for a
            single-channel mask, or ``mask.sum(1, keepdim=True)`` for a per-channel mask.
        kernel_size, stride, padding, dilation: the geometry of the convolution the sums are for.

    Returns:
        (N, 1, H', W') float32: S, the number of valid taps under each output position's window
        (what NVIDIA's all-ones ``weight_maskUpdater`` convolution computes, once per pixel).
    """
    kh, kw = _pair(kernel_size)
    ones = torch.ones(1, 1, kh, kw, device=count.device, dtype=torch.float32)
    return F.conv2d(count.float(), ones, None, _pair(stride), _pair(padding), _pair(dilation))


def mask_ratio(
    mask_sum: torch.Tensor, window_size: float, variant: Variant = "nvidia"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaling factor and update mask from the per-window mask sum S.

    Args:
        mask_sum: S, any shape (typically (N, 1, H', W')), number of valid taps per window.
        window_size: taps in a full window, ``sum(1)`` of Eq. 1: ``Cin*k*k`` for a per-channel
            mask, ``k*k`` for a single-channel one. Ignored by ``"naoto"``.
        variant: ``"nvidia"``: ratio = window_size / (S + 1e-8) * clamp(S, 0, 1),
            update = clamp(S, 0, 1). ``"naoto"``: ratio = 1 / S, update = [S > 0], both 0 where
            S == 0.

    Returns:
        ``(ratio, update)``, both shaped like ``mask_sum``; ratio already includes the update
        factor, as in NVIDIA's code.
    """
    if variant == "nvidia" and torch.compiler.is_exporting():
        # the ONNX export drops the + 1e-8 (window_size * reciprocal(S)), so S == 0 gives inf * 0 = NaN;
        # divide by 1 there instead: ratio is zeroed by the update anyway
        update = mask_sum.clamp(0, 1)
        ratio = (window_size / torch.where(mask_sum > 0, mask_sum, torch.ones_like(mask_sum))) * update
    elif variant == "nvidia":
        update = mask_sum.clamp(0, 1)
        ratio = (window_size / (mask_sum + EPS)) * update
    elif variant == "naoto":
        valid = mask_sum != 0
        update = valid.to(mask_sum.dtype)
        ratio = update / torch.where(valid, mask_sum, torch.ones_like(mask_sum))
    else:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return ratio, update


def apply_ratio(
    raw: torch.Tensor,
    ratio: torch.Tensor,
    update: torch.Tensor,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """Renormalise a raw partial-convolution output (Eq. 1 and the bias rule of both variants).

    Args:
        raw: (N, Cout, H', W') convolution of the masked input *without* bias, W^T (X*M).
        ratio, update: from :func:`mask_ratio`, broadcastable to ``raw`` ((N, 1, H', W') or
            (N, Cout, H', W')).
        bias: (Cout,) or None.

    Returns:
        (N, Cout, H', W'): ``(raw * ratio + b) * update`` with a bias, ``raw * ratio`` without.
        Holes (S == 0) come out as exactly 0 in both cases.
    """
    ratio = ratio.to(raw.dtype)
    if bias is None:
        return raw * ratio
    b = bias.to(raw.dtype).view(1, -1, 1, 1)
    return torch.addcmul(b, raw, ratio).mul_(update.to(raw.dtype))


def renormalize(
    raw: torch.Tensor,
    mask_sum: torch.Tensor,
    window_size: float,
    bias: torch.Tensor | None,
    variant: Variant = "nvidia",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Partial-convolution output from a raw masked convolution and its per-window mask sum.

    The building block for any layer with the partial-convolution rule, including ones where
    every sliding window has its own mask (panoptic-aware convolution: M(i, j) = 1 where the
    panoptic id equals the window centre's id): the caller computes

    - ``raw``: (N, Cout, H', W') the convolution of the masked input without bias, i.e.
      ``W^T (X * M_window)`` at each output position;
    - ``mask_sum``: S, (N, 1, H', W') or (N, Cout, H', W'), the number of valid taps of that
      window's mask (summed over channels too when the mask is per channel);

    and passes ``window_size`` = taps of a full window (``Cin*k*k`` per-channel, ``k*k``
    single-channel) and the layer's ``bias`` ((Cout,) or None).

    Returns:
        ``(out, update_mask)``: out (N, Cout, H', W') per :func:`apply_ratio`, and the update mask
        shaped like ``mask_sum`` (1 where the window saw at least one valid tap for 0/1 masks).
    """
    ratio, update = mask_ratio(mask_sum, window_size, variant)
    return apply_ratio(raw, ratio, update, bias), update.to(raw.dtype)


class PartialConv2d(nn.Conv2d):
    """NVIDIA's ``PartialConv2d``: a convolution that sees only the valid (mask = 1) pixels.

    State dict: ``weight`` (Cout, Cin, kh, kw) and ``bias`` (Cout,) if ``bias``; the all-ones mask
    kernel is not stored. ``multi_channel``: the mask is per input channel, (N, Cin, H, W), and a
    full window is ``Cin*k*k`` taps; otherwise the mask is (N, 1, H, W) and a window is ``k*k``.
    ``variant`` selects the renormalisation (``"nvidia"`` or ``"naoto"``, see the module docs).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        multi_channel: bool = False,
        return_mask: bool = True,
        variant: Variant = "nvidia",
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding,
            dilation=dilation, bias=bias,
        )
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.multi_channel = multi_channel
        self.return_mask = return_mask
        self.variant = variant
        kh, kw = self.kernel_size
        self.window_size = (in_channels if multi_channel else 1) * kh * kw
        # NVIDIA keeps the last ratio/update and reuses them for mask=None calls of the same
        # input shape, whatever mask they were computed from; plain attributes, not state.
        self._cache_shape: tuple[int, ...] | None = None
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def extra_repr(self) -> str:
        return (
            super().extra_repr()
            + f", multi_channel={self.multi_channel}, variant={self.variant!r}"
        )

    def dummy_inputs(self, batch_size: int, generator: torch.Generator) -> tuple:
        """``(x, mask)`` at 16x16 with random holes, valid for this layer's configuration."""
        x = torch.randn(batch_size, self.in_channels, 16, 16, generator=generator)
        c = self.in_channels if self.multi_channel else 1
        mask = (torch.rand(batch_size, c, 16, 16, generator=generator) > 0.3).float()
        return x, mask

    def mask_sum(self, count: torch.Tensor) -> torch.Tensor:
        """S for this layer's windows from an (N, 1, H, W) valid-taps-per-pixel map (float32)."""
        return window_sum(count, self.kernel_size, self.stride, self.padding, self.dilation)

    def partial_forward(
        self, x_masked: torch.Tensor, mask_sum: torch.Tensor, channels_last: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Renormalised convolution of an already-masked input given S (see :func:`renormalize`).

        ``x_masked``: (N, Cin, H, W), holes already zeroed; ``mask_sum``: (N, 1, H', W').
        Returns ``(out (N, Cout, H', W'), update (N, 1, H', W'))`` in ``x_masked``'s dtype. On CPU
        float32 the convolution takes the fastest form for its shape
        (:func:`~imgsynth.layers.fast_conv.fast_conv2d`): a channels-last input gives a
        channels-last output, ``channels_last`` says which for inputs stored both ways.
        """
        raw = fast_conv2d(x_masked, self, channels_last, bias=False)
        return renormalize(raw, mask_sum, self.window_size, self.bias, self.variant)

    def _count(self, mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if mask.dim() != 4 or mask.shape[0] != x.shape[0] or mask.shape[2:] != x.shape[2:]:
            raise InputError(
                f"mask must be (N, C, H, W) matching the input {tuple(x.shape)}, got {tuple(mask.shape)}"
            )
        if mask.shape[1] == 1:
            # a one-channel mask counts once per input channel when the mask is per channel
            return mask.float() * self.in_channels if self.multi_channel else mask
        if self.multi_channel and mask.shape[1] == self.in_channels:
            return mask.float().sum(1, keepdim=True)
        want = f"{self.in_channels} or 1" if self.multi_channel else "1"
        raise InputError(f"mask must have {want} channel(s), got {mask.shape[1]}")

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Partial convolution.

        Args:
            x: (N, Cin, H, W) float, any range.
            mask: (N, 1, H, W), or (N, Cin, H, W) when ``multi_channel``; 1 = valid, 0 = hole.
                None: all ones and ``x`` is not multiplied (partial padding), with ratio/update
                cached per input shape (also reused after an explicit-mask call of that shape).

        Returns:
            ``out`` (N, Cout, H', W'), plus the update mask if ``return_mask``: (N, Cout, H', W')
            when ``multi_channel``, else (N, 1, H', W') ((1, 1, H', W') for ``mask=None``).
        """
        shape = tuple(x.shape)
        if mask is not None or self._cache is None or self._cache_shape != shape:
            with torch.no_grad():
                if mask is None:
                    n = shape[0] if self.multi_channel else 1
                    count = torch.full(
                        (n, 1, *shape[2:]), float(self.in_channels if self.multi_channel else 1),
                        device=x.device,
                    )
                else:
                    count = self._count(mask, x)
                ratio, update = mask_ratio(self.mask_sum(count), self.window_size, self.variant)
            self._cache_shape, self._cache = shape, (ratio, update)
        ratio, update = self._cache
        if ratio.device != x.device:
            ratio, update = ratio.to(x.device), update.to(x.device)

        raw = self._conv_forward(x * mask if mask is not None else x, self.weight, None)
        out = apply_ratio(raw, ratio, update, self.bias)
        if not self.return_mask:
            return out
        update = update.to(out.dtype)
        if self.multi_channel:
            update = update.expand(update.shape[0], self.out_channels, *update.shape[2:])
        return out, update
