"""StyleGAN2-ADA: style-based generator with weight demodulation, and its residual discriminator.

Papers: Karras, Aittala, Hellsten, Laine, Lehtinen, Aila, "Training Generative Adversarial Networks
with Limited Data", NeurIPS 2020 (StyleGAN2-ADA), on the architecture of Karras, Laine, Aittala,
Hellsten, Lehtinen, Aila, "Analyzing and Improving the Image Quality of StyleGAN", CVPR 2020
(StyleGAN2). Official code: https://github.com/NVlabs/stylegan2-ada-pytorch (``training/networks.py``),
NVIDIA Source Code License-NC: non-commercial use only; the released networks carry the same licence.

The state dict is the official ``G_ema.state_dict()`` key for key (``mapping.fc<i>.*``,
``mapping.w_avg``, ``mapping.embed.*``, ``synthesis.b<res>.{const,conv0,conv1,torgb}.*`` with
``affine.*``, ``noise_const``, ``noise_strength`` and the ``resample_filter`` buffers), so a released
pickle converts by extraction (:mod:`imgsynth.convert.stylegan2_pkl`). The discriminator has the
official ``D.state_dict()`` keys too.

Deviations from the original:
- Pure PyTorch: no custom CUDA ops (``upfirdn2d``, ``bias_act``), so CPU, CUDA and Apple MPS all run
  the same code. Up/down-sampling follows the official reference semantics (zero insertion, FIR
  filter, decimation) written as transposed / strided depthwise convolutions.
- The sqrt(2) activation gain is folded into the modulated weights, bias and noise
  (``lrelu(g*x) = g*lrelu(x)`` for ``g > 0``) and the bias is added inside the convolution: the same
  numbers up to float rounding, with fewer passes over the activations. Likewise the equalized-lr
  gain of the linear layers scales their (N, out) output instead of the (out, in) weight.
- Modulated convolutions pick, per layer, the fused form (modulated and demodulated per-sample
  weights) or the non-fused form (styles scale the input, demodulation coefficients the output,
  computed as ``s^2 @ sum_k w^2``) by which touches fewer numbers: batch 1 at high resolution runs
  fused, low resolutions and batches run non-fused with one shared weight (the official code uses
  fused in eval and non-fused in training; the math is the same, Eq. 1-3 of StyleGAN2).
- On CPU and CUDA, blocks from 16x16 up run channels-last (oneDNN transposed convolutions are several
  times faster that way); the returned image is contiguous NCHW.
- ``num_fp16_res`` is recorded as configuration only: the network runs in the dtype of its parameters
  (``model.half()`` / ``model.to(torch.bfloat16)`` for reduced precision), which on CPU is what the
  official ``force_fp32=True`` does. ``conv_clamp`` is applied in every precision, as officially.
- ``noise_mode='random'`` draws from the global torch generator of the output device.
- The discriminator's minibatch-stddev layer uses the whole batch as one group when the batch is not
  a multiple of the group size (the official layer fails there).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imgsynth.layers.equalized import MinibatchStdDev
from imgsynth.models.registry import register_model

__all__ = [
    "FullyConnectedLayer",
    "MappingNetwork",
    "StyleGAN2Discriminator",
    "StyleGAN2Generator",
    "SynthesisNetwork",
    "normalize_2nd_moment",
    "setup_filter",
    "upfirdn2d",
]

SQRT2 = math.sqrt(2.0)
LRELU_SLOPE = 0.2
RESAMPLE_TAPS = (1.0, 3.0, 3.0, 1.0)
ARCHITECTURES = ("orig", "skip", "resnet")
NOISE_MODES = ("const", "random", "none")


# ----------------------------------------------------------------------------------------------
# Resampling (upfirdn2d semantics in plain PyTorch).


def setup_filter(taps: Sequence[float] = RESAMPLE_TAPS) -> Tensor:
    """The 2-D FIR filter of 1-D ``taps``: their outer product normalised to sum 1, float32 (K, K)."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def _depthwise(f: Tensor, channels: int, x: Tensor, gain: float, flip: bool) -> Tensor:
    k = f.to(device=x.device, dtype=x.dtype) * gain
    if flip:
        k = k.flip([0, 1])
    return k[None, None].expand(channels, 1, *k.shape)


def upfirdn2d(
    x: Tensor,
    f: Tensor,
    up: int = 1,
    down: int = 1,
    padding: Sequence[int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> Tensor:
    """Upsample, pad, FIR-filter and downsample each channel of (N, C, H, W) ``x``.

    The official ``upfirdn2d`` semantics: insert ``up - 1`` zeros after every pixel, pad by
    ``padding = (x0, x1, y0, y1)`` (negative values crop), convolve (true convolution, not
    correlation) with the 2-D filter ``f * gain``, keep every ``down``-th pixel.
    """
    n, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    px0, px1, py0, py1 = padding
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    # A strided convolution computes exactly the decimated full-rate output.
    return F.conv2d(x, _depthwise(f, c, x, gain, flip=True), stride=down, groups=c)


def upsample2d(x: Tensor, f: Tensor) -> Tensor:
    """2x upsampling with FIR filter ``f`` (official ``upsample2d``): (N, C, H, W) -> (N, C, 2H, 2W).

    Zero insertion + padding ``(K+1)//2, (K-2)//2`` + convolution with ``4 f`` is one transposed
    convolution with stride 2 (for the 4-tap filter: padding 1).
    """
    kh = f.shape[0]
    if kh % 2:  # odd filters: the padding is asymmetric, use the generic path
        p0, p1 = (kh + 1) // 2, (kh - 2) // 2
        return upfirdn2d(x, f, up=2, padding=(p0, p1, p0, p1), gain=4.0)
    c = x.shape[1]
    return F.conv_transpose2d(x, _depthwise(f, c, x, 4.0, flip=False), stride=2, padding=kh // 2 - 1, groups=c)


def downsample2d(x: Tensor, f: Tensor) -> Tensor:
    """2x downsampling with FIR filter ``f`` (official ``downsample2d``): (N, C, H, W) -> (N, C, H/2, W/2)."""
    kh = f.shape[0]
    p0, p1 = (kh - 1) // 2, (kh - 2) // 2
    if p0 != p1:
        return upfirdn2d(x, f, down=2, padding=(p0, p1, p0, p1))
    return F.conv2d(x, _depthwise(f, x.shape[1], x, 1.0, flip=True), stride=2, padding=p0, groups=x.shape[1])


def _blur(x: Tensor, f: Tensor, pad: int, gain: float, bias: Tensor | None = None) -> Tensor:
    """Symmetrically padded FIR filtering (``upfirdn2d`` with ``up = down = 1``), optional bias."""
    c = x.shape[1]
    return F.conv2d(x, _depthwise(f, c, x, gain, flip=True), bias, padding=pad, groups=c)


# ----------------------------------------------------------------------------------------------
# Shared pieces.


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """``x / sqrt(mean(x**2) + eps)`` along ``dim`` (the StyleGAN input normalisation of z)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def _memory_format(t: Tensor, resolution: int) -> torch.memory_format:
    # oneDNN (CPU) and cuDNN convolutions, transposed ones above all, are much faster channels-last
    # from 16x16 up (at 4x4 and 8x8 plain NCHW wins). MPS has had channels-last bugs: NCHW there.
    if resolution >= 16 and t.device.type in ("cpu", "cuda"):
        return torch.channels_last
    return torch.contiguous_format


def _act(x: Tensor, lrelu: bool, clamp: float | None) -> Tensor:
    """Leaky ReLU (slope 0.2) and symmetric clamp; in place when no gradient is recorded."""
    if x.requires_grad:
        if lrelu:
            x = F.leaky_relu(x, LRELU_SLOPE)
        return x.clamp(-clamp, clamp) if clamp is not None else x
    if lrelu:
        x = F.leaky_relu_(x, LRELU_SLOPE)
    return x.clamp_(-clamp, clamp) if clamp is not None else x


class FullyConnectedLayer(nn.Module):
    """Equalized-lr linear layer: ``y = act(x (w * lr/sqrt(in))^T + b * lr)``, lrelu gain sqrt(2).

    Weights are stored as N(0, 1/lr_multiplier^2) and scaled at runtime (official keys
    ``weight`` (out, in), ``bias`` (out,)).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        if activation not in ("linear", "lrelu"):
            raise ValueError(f"activation must be 'linear' or 'lrelu', got {activation!r}")
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        """(N, in_features) -> (N, out_features)."""
        # The runtime gain scales the (N, out) product instead of the (out, in) weight: fewer numbers.
        w = self.weight.to(x.dtype).t()
        if self.bias is None:
            x = torch.mm(x, w) * self.weight_gain
        else:
            b = self.bias.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
            x = torch.addmm(b.unsqueeze(0), x, w, alpha=self.weight_gain)
        if self.activation == "linear":
            return x
        return F.leaky_relu(x, LRELU_SLOPE) * SQRT2

    def extra_repr(self) -> str:
        o, i = self.weight.shape
        return f"in_features={i}, out_features={o}, activation={self.activation}"


class MappingNetwork(nn.Module):
    """z (and label c) -> w: normalise, MLP of ``num_layers`` lrelu layers, broadcast, truncate.

    Official keys: ``embed.*`` (when ``c_dim > 0``), ``fc<i>.*``, buffer ``w_avg`` (the running
    mean of w used by the truncation trick; updated with decay ``w_avg_beta`` in training mode).
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation="lrelu", lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: Tensor | None,
        c: Tensor | None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> Tensor:
        """z (N, z_dim) ~ N(0, 1), c (N, c_dim) -> ws (N, num_ws, w_dim) (or (N, w_dim) if ``num_ws`` is None).

        Truncation (Karras et al. 2019, Sec. 3.1 / App. B): ``w = w_avg + psi (w - w_avg)``, applied
        to the first ``truncation_cutoff`` ws only when a cutoff is given.
        """
        dtype = self.fc0.weight.dtype
        x = None
        if self.z_dim > 0:
            x = normalize_2nd_moment(z.to(dtype))
        if self.c_dim > 0:
            y = normalize_2nd_moment(self.embed(c.to(dtype)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if self.training and self.num_ws is not None and self.w_avg_beta is not None:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is None:
            return x
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if self.w_avg_beta is None:
                raise ValueError("truncation needs w_avg, which this mapping network does not track")
            w_avg = self.w_avg.to(x.dtype)
            if truncation_cutoff is None:
                x = w_avg.lerp(x, truncation_psi)
            else:
                x[:, :truncation_cutoff] = w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


# ----------------------------------------------------------------------------------------------
# Synthesis network.


def _demod_coefs(weight: Tensor, styles: Tensor) -> Tensor:
    """Demodulation coefficients (N, O) of StyleGAN2 Eq. 3 without building per-sample weights.

    ``sum_{i,k} (w_oik s_ni)^2 = sum_i s_ni^2 sum_k w_oik^2``: a matrix product with the squared
    weight norms instead of a pass over N x O x I x k x k modulated weights.
    """
    o, i, kh, kw = weight.shape
    # (O*I, k*k) squares times a ones vector: the fastest single-pass reduction of the 9 taps on CPU.
    w2 = (weight.reshape(o * i, kh * kw).square() @ weight.new_ones(kh * kw)).reshape(o, i)
    return (styles.square() @ w2.t() + 1e-8).rsqrt()


def _prefer_fused(n: int, weight: Tensor, hw_in: int, hw_out: int) -> bool:
    """Modulate the weights (fused) or the activations (non-fused), whichever touches fewer numbers.

    Fused builds one modulated, demodulated weight (a few passes over O x I x k x k); non-fused scales
    the input by the styles and the output by the demodulation coefficients, and shares one weight
    across the batch (so batches run as one convolution). Low resolutions with 512 channels have far
    more weights than activations, high resolutions the reverse.
    """
    o, i, kh, kw = weight.shape
    return n == 1 and 3 * o * i * kh * kw < i * hw_in + 2 * o * hw_out


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x upsampling), noise, bias, lrelu with gain sqrt(2), clamp.

    Official keys: ``affine.*`` (w -> styles, bias init 1), ``weight`` (O, I, k, k) stored N(0, 1)
    (demodulation makes its scale irrelevant), ``noise_const`` (R, R), ``noise_strength`` (),
    ``bias`` (O,), buffer ``resample_filter`` (4, 4).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        if up not in (1, 2):
            raise ValueError(f"up must be 1 or 2, got {up}")
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", setup_filter())
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def _conv(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """Plain or 2x-upsampling convolution with an (O, I, k, k) weight (official conv2d_resample)."""
        if self.up == 1:
            return F.conv2d(x, weight, bias, padding=self.padding)
        # Up path: a stride-2 transposed conv (zero insertion + correlation with the unflipped
        # weight), then the FIR filter with gain 4 over the leftover padding.
        kw = weight.shape[-1]
        f = self.resample_filter
        fk = f.shape[0]
        p0 = self.padding + (fk + 1) // 2 - (kw - 1)
        p1 = self.padding + (fk - 2) // 2 - (kw - 2)
        x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        if p0 == p1 and p0 >= 0:
            return _blur(x, f, p0, 4.0, bias)
        x = upfirdn2d(x, f, padding=(p0, p1, p0, p1), gain=4.0)
        return x + bias.reshape(-1, 1, 1) if bias is not None else x

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "const", gain: float = 1.0) -> Tensor:
        """x (N, I, R/up, R/up), w (N, w_dim) -> (N, O, R, R)."""
        n = x.shape[0]
        act_gain = SQRT2 * gain
        weight = self.weight.to(x.dtype)
        styles = self.affine(w)
        bias = self.bias.to(x.dtype) * act_gain
        noise = None
        if self.use_noise and noise_mode == "const":
            noise = self.noise_const.to(x.dtype) * (self.noise_strength.to(x.dtype) * act_gain)
        elif self.use_noise and noise_mode == "random":
            noise = torch.randn([n, 1, self.resolution, self.resolution], device=x.device, dtype=x.dtype)
            noise = noise * (self.noise_strength.to(x.dtype) * act_gain)
        hw_in = x.shape[2] * x.shape[3]
        if _prefer_fused(n, weight, hw_in, hw_in * self.up**2):
            w = weight * styles.reshape(1, -1, 1, 1)
            d = (w.square().sum(dim=[1, 2, 3]) + 1e-8).rsqrt()
            x = self._conv(x, w * (d * act_gain).reshape(-1, 1, 1, 1), bias)
            if noise is not None:
                x = x + noise if x.requires_grad else x.add_(noise)
        else:
            dg = (_demod_coefs(weight, styles) * act_gain).reshape(n, -1, 1, 1)
            x = self._conv(x * styles.reshape(n, -1, 1, 1), weight, None)
            if x.requires_grad:
                x = x * dg + bias.reshape(-1, 1, 1)
                x = x + noise if noise is not None else x
            else:
                x = x.mul_(dg).add_(bias.reshape(-1, 1, 1))
                x = x.add_(noise) if noise is not None else x
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return _act(x, True, clamp)

    def extra_repr(self) -> str:
        o, i = self.weight.shape[:2]
        return f"{i} -> {o}, resolution={self.resolution}, up={self.up}"


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv without demodulation, bias, clamp (official keys ``affine.*``, ``weight``, ``bias``)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        """x (N, I, R, R), w (N, w_dim) -> (N, img_channels, R, R)."""
        n, c, h, wd = x.shape
        styles = self.affine(w) * self.weight_gain
        weight = self.weight.to(x.dtype)[:, :, 0, 0].unsqueeze(0) * styles.unsqueeze(1)  # (N, O, I)
        bias = self.bias.to(x.dtype)
        # Per-sample 1x1 conv as a batched matmul over pixels, in whichever layout x is stored.
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            y = torch.baddbmm(bias, x.permute(0, 2, 3, 1).reshape(n, h * wd, c), weight.transpose(1, 2))
            y = y.reshape(n, h, wd, -1).permute(0, 3, 1, 2)
        else:
            y = torch.baddbmm(bias.reshape(-1, 1), weight, x.reshape(n, c, h * wd)).reshape(n, -1, h, wd)
        return _act(y, False, self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (const | conv0 up) -> conv1 -> toRGB (+ upsampled skip image)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",
        conv_clamp: float | None = None,
        use_noise: bool = True,
    ) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.register_buffer("resample_filter", setup_filter())
        self.num_conv = 0
        self.num_torgb = 0
        layer_kwargs = dict(w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp, use_noise=use_noise)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = _Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2)

    def forward(
        self, x: Tensor | None, img: Tensor | None, ws: Tensor, noise_mode: str = "const"
    ) -> tuple[Tensor, Tensor | None]:
        """x (N, I, R/2, R/2) or None, img (N, C, R/2, R/2) or None, ws (N, num_conv + num_torgb, w_dim)."""
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        x = x.contiguous(memory_format=_memory_format(x, self.resolution))
        if self.in_channels == 0:
            x = self.conv1(x, ws[:, 0], noise_mode)
        elif self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, ws[:, 0], noise_mode)
            x = self.conv1(x, ws[:, 1], noise_mode, gain=math.sqrt(0.5))
            x = y.add_(x) if not y.requires_grad else y + x
        else:
            x = self.conv0(x, ws[:, 0], noise_mode)
            x = self.conv1(x, ws[:, 1], noise_mode)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.num_torgb:
            y = self.torgb(x, ws[:, self.num_conv])
            img = y if img is None else (img + y if y.requires_grad or img.requires_grad else img.add_(y))
        return x, img


class SynthesisNetwork(nn.Module):
    """ws (N, num_ws, w_dim) -> image: blocks ``b4 ... b<img_resolution>``.

    Channels at resolution ``r`` are ``min(channel_base // r, channel_max)``. Block ``r`` consumes
    ws ``[i, i + num_conv + num_torgb)`` and the next block starts at ``i + num_conv``, so a toRGB
    layer shares its w with the next block's first conv.
    """

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = None,
        architecture: str = "skip",
        use_noise: bool = True,
    ) -> None:
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        log2 = int(math.log2(img_resolution))
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        channels = {r: min(channel_base // r, channel_max) for r in self.block_resolutions}
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(
                channels[res // 2] if res > 4 else 0,
                channels[res],
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                is_last=res == img_resolution,
                architecture=architecture,
                conv_clamp=conv_clamp,
                use_noise=use_noise,
            )
            self.num_ws += block.num_conv + (block.num_torgb if res == img_resolution else 0)
            setattr(self, f"b{res}", block)

    def forward(self, ws: Tensor, noise_mode: str = "const") -> Tensor:
        """ws (N, num_ws, w_dim) -> image (N, img_channels, R, R), roughly [-1, 1], not clamped."""
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be (N, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        ws = ws.to(self.b4.const.dtype)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + block.num_torgb), noise_mode)
            w_idx += block.num_conv
        return img.contiguous()


@register_model(
    "stylegan2",
    task="sample",
    tiny={"z_dim": 16, "w_dim": 16, "img_resolution": 16, "mapping_layers": 2, "channel_base": 128,
          "channel_max": 16, "conv_clamp": 256},
)
class StyleGAN2Generator(nn.Module):
    """StyleGAN2-ADA generator: ``mapping`` (z, c -> ws) then ``synthesis`` (ws -> image).

    Constructor defaults are the official FFHQ 1024 config-f (``ffhq.pkl``); the paper256 FFHQ
    network is ``img_resolution=256, channel_base=16384, num_fp16_res=4, conv_clamp=256``.

    Args:
        z_dim, w_dim: latent sizes. c_dim: label size (0 = unconditional).
        img_resolution: output size (power of two), img_channels: output channels.
        mapping_layers: depth of the mapping MLP; mapping_lr_multiplier: its learning-rate multiplier.
        embed_features, layer_features: label embedding / hidden mapping width (None = w_dim).
        w_avg_beta: decay of the tracked mean w (truncation centre).
        channel_base, channel_max: channels per resolution r are ``min(channel_base // r, channel_max)``.
        num_fp16_res: official mixed-precision setting, kept as configuration (see module docstring).
        conv_clamp: clamp every conv / toRGB output to +-conv_clamp (None = off).
        architecture: 'skip' (released), 'orig' or 'resnet'. use_noise: per-layer noise inputs.
    """

    def __init__(
        self,
        z_dim: int = 512,
        c_dim: int = 0,
        w_dim: int = 512,
        img_resolution: int = 1024,
        img_channels: int = 3,
        mapping_layers: int = 8,
        mapping_lr_multiplier: float = 0.01,
        embed_features: int | None = None,
        layer_features: int | None = None,
        w_avg_beta: float = 0.995,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = None,
        architecture: str = "skip",
        use_noise: bool = True,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        # Official construction order (synthesis first) so state_dict() lists keys in the same order.
        self.synthesis = SynthesisNetwork(
            w_dim, img_resolution, img_channels, channel_base=channel_base, channel_max=channel_max,
            num_fp16_res=num_fp16_res, conv_clamp=conv_clamp, architecture=architecture, use_noise=use_noise,
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim, c_dim, w_dim, self.num_ws, num_layers=mapping_layers, embed_features=embed_features,
            layer_features=layer_features, lr_multiplier=mapping_lr_multiplier, w_avg_beta=w_avg_beta,
        )

    def forward(
        self,
        z: Tensor,
        c: Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
    ) -> Tensor:
        """z (N, z_dim) ~ N(0, 1), c (N, c_dim) one-hot or None -> image (N, img_channels, R, R).

        The image is roughly in [-1, 1] and not clamped (map with ``(img * 127.5 + 128).clamp(0, 255)``).
        ``noise_mode``: 'const' (stored noise maps), 'random' (fresh N(0, 1) noise), 'none'.
        """
        if c is None:
            if self.c_dim:
                raise ValueError(f"this generator is conditional: pass c of shape (N, {self.c_dim})")
            c = z.new_zeros([z.shape[0], 0])
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)

    def dummy_inputs(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(z, c): standard-normal latents and one-hot labels (or an (N, 0) tensor when unconditional)."""
        z = torch.randn(batch_size, self.z_dim, generator=generator)
        c = torch.zeros(batch_size, self.c_dim)
        if self.c_dim:
            labels = torch.randint(self.c_dim, (batch_size,), generator=generator)
            c[torch.arange(batch_size), labels] = 1
        return z, c


# ----------------------------------------------------------------------------------------------
# Discriminator.


class _Conv2dLayer(nn.Module):
    """Equalized-lr conv with optional 2x FIR up/downsampling, bias, lrelu (gain sqrt 2) and clamp.

    Official ``Conv2dLayer`` keys: ``weight`` (O, I, k, k), ``bias``, buffer ``resample_filter``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        if activation not in ("linear", "lrelu"):
            raise ValueError(f"activation must be 'linear' or 'lrelu', got {activation!r}")
        if up not in (1, 2) or down not in (1, 2) or (up == 2 and kernel_size != 1):
            raise ValueError("supported: up=2 with 1x1 kernels, down=2, or no resampling")
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter())
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = SQRT2 if activation == "lrelu" else 1.0
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        """(N, I, H, W) -> (N, O, H*up/down, W*up/down)."""
        act_gain = self.act_gain * gain
        w = self.weight.to(x.dtype) * (self.weight_gain * act_gain)
        b = self.bias.to(x.dtype) * act_gain if self.bias is not None else None
        f = self.resample_filter
        if self.up == 2:  # 1x1 conv then upsample (official fast path)
            x = upsample2d(F.conv2d(x, w), f)
            x = x + b.reshape(-1, 1, 1) if b is not None else x
        elif self.down == 2 and w.shape[-1] == 1:  # downsample then 1x1 conv
            x = F.conv2d(downsample2d(x, f), w, b)
        elif self.down == 2:  # FIR filter (padding k//2 + 1 per side) then strided conv
            x = _blur(x, f, self.padding + (f.shape[0] - 1) // 2, 1.0)
            x = F.conv2d(x, w, b, stride=2)
        else:
            x = F.conv2d(x, w, b, padding=self.padding)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return _act(x, self.activation == "lrelu", clamp)


class _DiscriminatorBlock(nn.Module):
    """One resolution of the discriminator: [fromRGB] conv0 -> conv1 (down 2) [+ 1x1 skip (down 2)]."""

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        img_channels: int,
        architecture: str = "resnet",
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.architecture = architecture
        self.register_buffer("resample_filter", setup_filter())
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = _Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
        self.conv0 = _Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = _Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp)
        if architecture == "resnet":
            self.skip = _Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: Tensor | None, img: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """x (N, C, R, R) or None, img (N, img_channels, R, R) or None -> half-resolution (x, img)."""
        if self.in_channels == 0 or self.architecture == "skip":
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
            x = y + x
        else:
            x = self.conv1(self.conv0(x))
        return x, img


class _DiscriminatorEpilogue(nn.Module):
    """4x4 head: [fromRGB] minibatch stddev -> 3x3 conv -> fc -> out (1 logit or a cmap_dim projection)."""

    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        mbstd_group_size: int = 4,
        mbstd_num_channels: int = 1,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.cmap_dim = cmap_dim
        self.architecture = architecture
        if architecture == "skip":
            self.fromrgb = _Conv2dLayer(img_channels, in_channels, 1, activation="lrelu")
        self.mbstd = MinibatchStdDev(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = _Conv2dLayer(in_channels + mbstd_num_channels, in_channels, 3, activation="lrelu",
                                 conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: Tensor, img: Tensor | None, cmap: Tensor | None) -> Tensor:
        """x (N, C, 4, 4) -> (N, 1) logits."""
        if self.architecture == "skip":
            x = x + self.fromrgb(img)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.out(self.fc(self.conv(x).flatten(1)))
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2-ADA discriminator (default 'resnet' architecture) with minibatch stddev and projection conditioning.

    Keys as the official ``D.state_dict()``: ``b<res>.{fromrgb,conv0,conv1,skip}.*``, ``mapping.*``
    (labels, when ``c_dim > 0``), ``b4.{conv,fc,out}.*``. ``mapping_layers`` is the depth of the label
    mapping network (official default 8, as ``train.py`` leaves it).
    """

    def __init__(
        self,
        c_dim: int = 0,
        img_resolution: int = 1024,
        img_channels: int = 3,
        architecture: str = "resnet",
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = None,
        cmap_dim: int | None = None,
        mbstd_group_size: int = 4,
        mbstd_num_channels: int = 1,
        mapping_layers: int = 8,
    ) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        if img_resolution < 8 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 8, got {img_resolution}")
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        log2 = int(math.log2(img_resolution))
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]
        channels = {r: min(channel_base // r, channel_max) for r in self.block_resolutions + [4]}
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0
        for res in self.block_resolutions:
            block = _DiscriminatorBlock(
                channels[res] if res < img_resolution else 0, channels[res], channels[res // 2],
                img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp,
            )
            setattr(self, f"b{res}", block)
        if c_dim > 0:
            self.mapping = MappingNetwork(0, c_dim, cmap_dim, None, num_layers=mapping_layers, w_avg_beta=None)
        self.b4 = _DiscriminatorEpilogue(
            channels[4], cmap_dim=cmap_dim, resolution=4, img_channels=img_channels, architecture=architecture,
            mbstd_group_size=mbstd_group_size, mbstd_num_channels=mbstd_num_channels, conv_clamp=conv_clamp,
        )

    def forward(self, img: Tensor, c: Tensor | None = None) -> Tensor:
        """img (N, img_channels, R, R) in [-1, 1], c (N, c_dim) -> (N, 1) real/fake logits."""
        img = img.to(self.b4.fc.weight.dtype)
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)
