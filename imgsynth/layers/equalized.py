"""Equalized learning rate layers, pixel-wise feature normalisation and minibatch standard deviation.

Karras et al. 2018, "Progressive Growing of GANs for Improved Quality, Stability, and Variation",
Sec. 4.1 (equalized learning rate: weights stored as N(0, 1), scaled at runtime by the He constant
``gain / sqrt(fan_in)``), Eq. 2 / Sec. 4.2 (pixel-wise feature vector normalisation) and Sec. 3
(minibatch standard deviation). Used by Progressive GAN and StyleGAN v1.

Key layout: the parameters live in a plain ``nn.Conv2d`` / ``nn.Linear`` held as ``.module``, so a
layer registered as ``<name>`` owns ``<name>.module.weight`` and ``<name>.module.bias``, the layout of
the GAN zoo (facebookresearch/pytorch_GAN_zoo, BSD-3-Clause) checkpoints. The runtime scale is a
Python float, never stored.

Bias semantics are an option because the two official code bases differ:

* GAN zoo (``scale_bias=True``, default): ``y = (conv(x, w) + b) * c`` with ``c = gain / sqrt(fan_in)``,
  i.e. the He constant multiplies the bias too.
* Karras' TF code / StyleGAN (``scale_bias=False``): ``y = conv(x, w * c) + b * lr_multiplier``.

We always fold ``c`` into the weight (``conv(x, w * c) + b * c``), which equals the GAN-zoo form up to
float rounding and saves one pass over the activations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "EqualizedConv2d",
    "EqualizedLinear",
    "MinibatchStdDev",
    "PixelNorm",
    "nearest_up_kernel",
    "pixel_norm",
]


def pixel_norm(x: Tensor, eps: float = 1e-8, inplace: bool = False) -> Tensor:
    """Pixel-wise feature normalisation ``x * rsqrt(mean(x**2, dim=1) + eps)`` (Karras et al. 2018, Eq. 2).

    Works on (N, C, ...) tensors: (N, C) latents as well as (N, C, H, W) feature maps.
    ``inplace=True`` scales ``x`` itself (only valid without autograd): it saves allocating a
    feature-map-sized tensor per call at inference.
    """
    # One reduction (the 2-norm) instead of square + mean; the small norm tensor is handled out
    # of place because autograd needs it for the backward.
    norm = torch.linalg.vector_norm(x, 2, dim=1, keepdim=True)
    scale = torch.rsqrt(norm.square() / x.shape[1] + eps)
    return x.mul_(scale) if inplace else x * scale


class PixelNorm(nn.Module):
    """Module form of :func:`pixel_norm`; normalises over dim 1, no parameters."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, ...) -> same shape, each feature vector scaled to unit mean square."""
        return pixel_norm(x, self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


def nearest_up_kernel(weight: Tensor) -> Tensor:
    """Turn a (Cout, Cin, k, k) conv weight into a (Cin, Cout, k+1, k+1) transposed-conv weight.

    ``conv2d(upsample_nearest_x2(x), w, padding=k//2)`` equals
    ``conv_transpose2d(x, nearest_up_kernel(w), stride=2, padding=k//2)``: each output phase of the
    upsampled convolution sees a (k+1)/2-wide window of the low-resolution input, whose taps are sums
    of neighbouring taps of ``w`` (the "fused" upscale-conv of Karras' TF code). For k=3 it costs
    16 instead of 36 multiply-adds per input pixel and channel pair.
    """
    # The four-shift sum of Karras' TF code; of the summation orders we tried it lands closest to
    # a float64 reference on the GAN-zoo conformance case (the separable two-pass sum is further).
    w = F.pad(weight, (1, 1, 1, 1))
    w = w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]
    # conv_transpose correlates with the flipped kernel and wants (Cin, Cout, kh, kw).
    return w.flip(2, 3).transpose(0, 1).contiguous()


class _EqualizedBase(nn.Module):
    """Shared runtime scaling of :class:`EqualizedConv2d` and :class:`EqualizedLinear`."""

    module: nn.Module
    weight_scale: float
    bias_scale: float

    def _init_scales(
        self, fan_in: int, gain: float, lr_multiplier: float, scale_bias: bool, bias_init: float
    ) -> None:
        if lr_multiplier <= 0:
            raise ValueError(f"lr_multiplier must be positive, got {lr_multiplier}")
        self.weight_scale = gain / math.sqrt(fan_in) * lr_multiplier
        self.bias_scale = self.weight_scale if scale_bias else lr_multiplier
        # Stored weights are N(0, 1/lr_mul^2); the runtime scale brings them to the He-init range.
        nn.init.normal_(self.module.weight, 0.0, 1.0 / lr_multiplier)
        if self.module.bias is not None:
            nn.init.constant_(self.module.bias, bias_init / self.bias_scale)

    def effective_weight(self) -> Tensor:
        """The weight actually applied: stored weight times the runtime He constant."""
        return self.module.weight * self.weight_scale

    def effective_bias(self) -> Tensor | None:
        """The bias actually added (``None`` when the layer has no bias)."""
        bias = self.module.bias
        return None if bias is None else bias * self.bias_scale

    def _prepare(self) -> tuple[Tensor, Tensor | None]:
        return self.effective_weight(), self.effective_bias()

    def _prepared(self, channels_last: bool = False) -> tuple[Tensor, Tensor | None]:
        """Weight and bias in the form the forward uses, cached for inference.

        Scaling (and, for ``up=2``, building the transposed-conv kernel) touches every weight on
        each call, which costs as much as the convolutions of a ProGAN at batch 1. In eval mode
        without autograd the result is kept until a parameter changes: the cache is keyed on the
        parameters' version counters, storage, dtype and device, and dropped by ``.train()``.
        In-place edits through ``param.data`` bypass version counters; call :meth:`clear_cache`
        after such edits (``with torch.no_grad(): param.copy_(...)`` needs nothing).
        ``channels_last`` caches a conv weight in that memory format, so that channels-last
        inputs do not convert it on every call.
        """
        if self.training or torch.is_grad_enabled() or torch.compiler.is_exporting():  # export: no storage
            return self._prepare()
        w, b = self.module.weight, self.module.bias
        key = (
            w._version,
            w.data_ptr(),
            w.dtype,
            w.device,
            None if b is None else (b._version, b.data_ptr()),
            torch.is_inference_mode_enabled(),
            channels_last,
        )
        cache = self.__dict__.get("_cache")
        if cache is None or cache[0] != key:
            weight, bias = self._prepare()
            if channels_last:
                weight = weight.contiguous(memory_format=torch.channels_last)
            cache = (key, weight, bias)
            self.__dict__["_cache"] = cache
        return cache[1], cache[2]

    def clear_cache(self) -> None:
        """Forget the cached inference weights (see :meth:`_prepared`)."""
        self.__dict__.pop("_cache", None)

    def train(self, mode: bool = True) -> _EqualizedBase:
        self.clear_cache()
        return super().train(mode)


class EqualizedConv2d(_EqualizedBase):
    """Conv2d with equalized learning rate; parameters at ``module.weight`` / ``module.bias``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, bias: as ``nn.Conv2d``
            (square kernels).
        gain: numerator of the He constant, ``sqrt(2)`` for (leaky) ReLU nets, 1 for linear outputs.
        lr_multiplier: learning-rate multiplier (StyleGAN mapping net uses 0.01): weights are stored
            divided by it and scaled back at runtime.
        scale_bias: GAN-zoo semantics when ``True`` (the He constant multiplies the bias),
            Karras/StyleGAN semantics when ``False`` (the bias is only scaled by ``lr_multiplier``).
        bias_init: initial value of the *effective* bias.
        up: 1, or 2 to upsample the input by nearest-neighbour x2 before the convolution (needs an odd
            kernel and ``padding=kernel_size//2``); computed as one transposed convolution, see
            :func:`nearest_up_kernel`. The stored weight is the same as without ``up``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        gain: float = math.sqrt(2.0),
        lr_multiplier: float = 1.0,
        scale_bias: bool = True,
        bias_init: float = 0.0,
        up: int = 1,
    ) -> None:
        super().__init__()
        if up not in (1, 2):
            raise ValueError(f"up must be 1 or 2, got {up}")
        if up == 2 and (kernel_size % 2 == 0 or padding != kernel_size // 2 or stride != 1):
            raise ValueError("up=2 needs an odd kernel, stride 1 and padding kernel_size // 2")
        self.module = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
        self.up = up
        self._init_scales(in_channels * kernel_size * kernel_size, gain, lr_multiplier, scale_bias, bias_init)

    def forward(self, x: Tensor) -> Tensor:
        """(N, Cin, H, W) -> (N, Cout, H', W'); H' = 2H (``up=2``) or the usual conv size."""
        conv = self.module
        channels_last = x.device.type == "cpu" and x.is_contiguous(memory_format=torch.channels_last)
        weight, bias = self._prepared(channels_last)
        if self.up == 2:
            return F.conv_transpose2d(x, weight, bias, stride=2, padding=conv.padding)
        return F.conv2d(x, weight, bias, conv.stride, conv.padding)

    def _prepare(self) -> tuple[Tensor, Tensor | None]:
        weight = self.effective_weight()
        return (nearest_up_kernel(weight) if self.up == 2 else weight), self.effective_bias()

    def extra_repr(self) -> str:
        return f"weight_scale={self.weight_scale:.6g}, bias_scale={self.bias_scale:.6g}, up={self.up}"


class EqualizedLinear(_EqualizedBase):
    """Linear layer with equalized learning rate; parameters at ``module.weight`` / ``module.bias``.

    Arguments as :class:`EqualizedConv2d` (``fan_in = in_features``).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        gain: float = math.sqrt(2.0),
        lr_multiplier: float = 1.0,
        scale_bias: bool = True,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.module = nn.Linear(in_features, out_features, bias=bias)
        self._init_scales(in_features, gain, lr_multiplier, scale_bias, bias_init)

    def forward(self, x: Tensor) -> Tensor:
        """(N, ..., in_features) -> (N, ..., out_features)."""
        weight, bias = self._prepared()
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"weight_scale={self.weight_scale:.6g}, bias_scale={self.bias_scale:.6g}"


class MinibatchStdDev(nn.Module):
    """Append the minibatch standard deviation as extra feature maps (Karras et al. 2018, Sec. 3).

    The batch is split into groups of ``group_size`` samples taken with stride ``N // group_size``
    (sample ``n`` belongs to group ``n % (N // group_size)``, as in Karras' TF code and StyleGAN2);
    per group, the biased standard deviation of every feature at every pixel (``sqrt(var + eps)``) is
    averaged over the features of each of ``num_channels`` channel slices and over pixels, and
    broadcast as ``num_channels`` constant maps to the group's samples. When the batch is not a
    multiple of the group size the whole batch forms one group.
    """

    def __init__(self, group_size: int = 4, num_channels: int = 1, eps: float = 1e-8) -> None:
        super().__init__()
        if group_size < 1 or num_channels < 1:
            raise ValueError("group_size and num_channels must be positive")
        self.group_size = group_size
        self.num_channels = num_channels
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C + num_channels, H, W); C must be divisible by ``num_channels``."""
        n, c, h, w = x.shape
        f = self.num_channels
        g = min(self.group_size, n)
        if n % g:
            g = n
        y = x.reshape(g, -1, f, c // f, h, w)  # (G, M, F, c, H, W)
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + self.eps).sqrt()  # (M, F, c, H, W)
        y = y.mean(dim=(2, 3, 4)).reshape(-1, f, 1, 1)  # (M, F, 1, 1)
        y = y.repeat(g, 1, h, w)  # (N, F, H, W)
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"
