"""CPU float32 convolution dispatch: the fastest form of a conv layer for its shape, same sums.

Used by the ResNet generators (CycleGAN, pix2pixHD, vid2vid), the pix2pix U-Net and the PConv
U-Net. Every path computes the sums of ``conv(x)`` in another order (float32 rounding only);
other devices and dtypes run the modules unchanged. Weights re-laid out for a path (a contiguous
GEMM matrix, a channels-last copy) are cached on the module while no gradient is taken, keyed on
the weight's version so optimiser steps and ``load_state_dict`` rebuild them.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

# oneDNN (PyTorch's CPU convolution) re-lays out the weight on every call and has weak kernels for
# some shapes. Measured on a 2-core x86 CPU at batch 1:
# - few pixels (<= 16x16) with many channels, as in the inner U-Net levels: a GEMM on the weight
#   as stored plus im2col/col2im (``unfold``/``fold``) is faster; oneDNN is busy re-laying out
#   4-33 MB weights for a few hundred output pixels;
# - transposed convs on larger grids, convs with few output channels (the RGB heads) or an input
#   width that is not a multiple of 16 (pix2pixHD's 36 label channels, 40 % faster): channels-last;
# - everything else, above all the 3x3 residual convs that dominate the ResNet generators: plain
#   NCHW oneDNN, which already runs near the CPU's peak there.
# - networks that keep their activations channels-last (the pix2pix and PConv U-Nets): oneDNN
#   channels-last with a cached channels-last weight, except for convs with 8x8 output pixels or
#   fewer and transposed convs with 8x8 input pixels or fewer (GEMM; measured on a quiet machine:
#   a 512 -> 512 4x4 stride-2 conv on 16x16, 10.1 ms GEMM against 12.8 ms oneDNN; a 1024 -> 512
#   3x3 conv on 16x16, 39.7 ms against 36.9 ms). Without the cached weight, oneDNN converted 4-33 MB weights on every call; with
#   it, the U-Nets' 4x4 stride-2 and 3x3 convs ran 10-50 % faster than in NCHW and the 8x8 to
#   16x16 layers up to 2x (interleaved A/B on a 2-core AVX2 EPYC).

# - with oneDNN's own pre-packed weights (below), channels-last convs and transposed convs of
#   every grid size, the 1x1 to 8x8 U-Net levels included, beat both forms above: the pix2pix
#   U-Net 256's forward went from 204 to 180 ms (median of 10, 4 interleaved rounds, idle 2-core
#   AVX2 EPYC), and post-op activations fused into the convolution save a pass over each output.

_SMALL_GRID = 16 * 16
_GEMM_GRID_CL = 8 * 8

ONEDNN_PACKED = True
"""Run channels-last inference convs through oneDNN with weights pre-packed in its own blocked
layout (cached), where this torch build has the ops; else the paths above."""

_POSTS = {"relu", "leaky_relu", None}


def cpu_fp32(x: torch.Tensor) -> bool:
    """Whether ``x`` is a CPU float32 tensor: the case the paths here are for."""
    return x.device.type == "cpu" and x.dtype == torch.float32


def _square(*pairs: tuple[int, int] | str) -> bool:
    return all(isinstance(p, tuple) and p[0] == p[1] for p in pairs)


def _conv_out_hw(x: torch.Tensor, conv: nn.Conv2d) -> tuple[int, int]:
    """The output grid of ``conv`` on ``x`` (numeric padding; "same" / "valid": at most the input's)."""
    if isinstance(conv.padding, str):
        return x.shape[-2], x.shape[-1]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    return (x.shape[-2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (x.shape[-1] + 2 * pw - dw * (kw - 1) - 1) // sw + 1


def conv2d_gemm(x: torch.Tensor, conv: nn.Conv2d, bias: bool = True) -> torch.Tensor:
    """``conv(x)`` (zero padding, no groups) as ``unfold`` (im2col) and one matrix product per sample.

    ``bias=False`` leaves the layer's bias out (a partial convolution adds it after renormalising).
    """
    n = x.shape[0]
    (k, _), (s, _), (p, _), (d, _) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    hout, wout = _conv_out_hw(x, conv)
    cols = F.unfold(x, k, dilation=d, padding=p, stride=s)  # (N, Cin*k*k, L)
    weight = conv.weight.reshape(conv.out_channels, -1).expand(n, -1, -1)
    if conv.bias is None or not bias:
        out = torch.bmm(weight, cols)
    else:
        out = torch.baddbmm(conv.bias.view(1, -1, 1), weight, cols)
    return out.reshape(n, conv.out_channels, hout, wout)


CACHE_WEIGHTS = True
"""Cache the re-laid-out weights (GEMM matrix, channels-last copy) between inference calls."""


def _cached_weight(
    conv: nn.Module, tag: str, make: Callable[[torch.Tensor], torch.Tensor], extra: tuple = ()
) -> torch.Tensor:
    """``make(conv.weight)``, cached on the module while no gradient is taken.

    The cache is keyed on the weight's version counter, storage, dtype, device and inference mode
    (plus ``extra``, such as the input shape a weight was laid out for; one entry per ``tag``), so
    optimiser steps and ``load_state_dict`` (both bump the version) rebuild it; with gradients
    enabled (training) or while exporting, ``make`` runs on every call so autograd sees it.
    """
    w = conv.weight
    if not CACHE_WEIGHTS or torch.is_grad_enabled() or torch.compiler.is_exporting() or w.is_inference():
        return make(w)  # (an inference tensor has no version counter to key a cache on)
    key = (w._version, w.data_ptr(), w.dtype, w.device, torch.is_inference_mode_enabled(), *extra)
    slot = f"_weight_cache_{tag}"
    hit = conv.__dict__.get(slot)
    if hit is None or hit[0] != key:
        hit = _CacheSlot(key, make(w))
        conv.__dict__[slot] = hit
    return hit[1]


class _CacheSlot(tuple):
    """``(key, weight)`` cached on a module. A copy of the module (``copy.deepcopy``, as for an EMA
    generator, or pickling) gets an empty slot, rebuilt on first use: a cache is derived data, and
    oneDNN's packed (opaque) tensors cannot be copied at all."""

    def __new__(cls, key: object, value: object) -> "_CacheSlot":
        return super().__new__(cls, (key, value))

    def __deepcopy__(self, memo: dict) -> "_CacheSlot":
        return _CacheSlot(None, None)

    def __reduce__(self) -> tuple:
        return (_CacheSlot, (None, None))


def _transposed_weight(conv: nn.ConvTranspose2d) -> torch.Tensor:
    """The ConvT weight as a (Cout*k*k, Cin) matrix, contiguous and cached when no gradient is taken.

    MKL's GEMM on the transposed view is about 5x slower than on a contiguous copy for the few
    pixels of the inner U-Net levels (measured, 8192x1024 by 1024x4 on a 2-core AVX2 EPYC), and
    re-copying 33 MB per call costs as much again.
    """
    def make(w: torch.Tensor) -> torch.Tensor:
        mat = w.reshape(w.shape[0], -1).t()
        return mat if torch.is_grad_enabled() or torch.compiler.is_exporting() else mat.contiguous()

    return _cached_weight(conv, "gemm_t", make)


def _channels_last_weight(conv: nn.Module) -> torch.Tensor:
    """The weight in channels-last memory format, cached when no gradient is taken.

    oneDNN converts an NCHW weight for a channels-last input on every call; for the U-Net's
    4-33 MB weights that conversion cost as much as 20-40 % of the convolution (measured in an
    interleaved A/B on a 2-core AVX2 EPYC).
    """
    return _cached_weight(conv, "cl", lambda w: w.contiguous(memory_format=torch.channels_last))


def _conv_cl(x: torch.Tensor, conv: nn.Module, bias: bool = True) -> torch.Tensor:
    """``conv(x)`` on a channels-last copy of ``x`` with the cached channels-last weight (channels-last out)."""
    x = x.contiguous(memory_format=torch.channels_last)
    w = _channels_last_weight(conv)
    if isinstance(conv, nn.ConvTranspose2d):
        return F.conv_transpose2d(
            x, w, conv.bias, conv.stride, conv.padding, conv.output_padding, conv.groups, conv.dilation
        )
    return conv._conv_forward(x, w, conv.bias if bias else None)


def _onednn_ops() -> bool:
    """Whether this torch build has oneDNN's fused convolution ops (x86/ARM builds with oneDNN)."""
    global _ONEDNN
    if _ONEDNN is None:
        try:
            ok = torch.backends.mkldnn.is_available()
            ok = ok and callable(torch.ops.mkldnn._convolution_pointwise)
            ok = ok and callable(torch.ops.mkldnn._convolution_transpose_pointwise)
            ok = ok and callable(torch.ops.mkldnn._reorder_convolution_transpose_weight)
            ok = ok and callable(torch._C._nn.mkldnn_reorder_conv2d_weight)
        except (AttributeError, RuntimeError):
            ok = False
        _ONEDNN = bool(ok)
    return _ONEDNN


_ONEDNN: bool | None = None


def _packable(x: torch.Tensor, conv: nn.Module) -> bool:
    """Whether ``conv(x)`` can run on a cached pre-packed oneDNN weight: CPU float32 inference
    (no autograd, not exporting), zero padding given as numbers, no groups, a weight that is not
    an inference tensor (it has a version counter to key the cache on)."""
    return (
        ONEDNN_PACKED
        and CACHE_WEIGHTS
        and not torch.is_grad_enabled()
        and not torch.compiler.is_exporting()
        and not isinstance(conv.padding, str)
        and conv.padding_mode == "zeros"
        and conv.groups == 1
        and not conv.weight.is_inference()
        and x.dim() == 4
        and _onednn_ops()
    )


def _packed_weight(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``conv``'s weight re-laid out by oneDNN for inputs shaped like ``x``, cached (one input
    shape per layer: another shape re-packs, which costs what oneDNN does on every plain call)."""
    shape = list(x.shape)
    padding, stride, dilation = list(conv.padding), list(conv.stride), list(conv.dilation)

    def make(w: torch.Tensor) -> torch.Tensor:
        if isinstance(conv, nn.ConvTranspose2d):
            return torch.ops.mkldnn._reorder_convolution_transpose_weight(
                w.detach(), padding, list(conv.output_padding), stride, dilation, conv.groups, shape)
        return torch._C._nn.mkldnn_reorder_conv2d_weight(
            w.detach().to_mkldnn(), padding, stride, dilation, conv.groups, shape)

    return _cached_weight(conv, "onednn", make, tuple(shape))


def _conv_packed(
    x: torch.Tensor, conv: nn.Module, bias: bool, post: str | None, slope: float
) -> torch.Tensor:
    """``post(conv(x))`` through oneDNN with the cached packed weight and the activation fused
    into the convolution (channels-last out)."""
    x = x.contiguous(memory_format=torch.channels_last)
    w = _packed_weight(conv, x)
    b = conv.bias if bias else None
    attr, scalars = post or "none", [slope] if post == "leaky_relu" else []
    if isinstance(conv, nn.ConvTranspose2d):
        y = torch.ops.mkldnn._convolution_transpose_pointwise(
            x, w, b, list(conv.padding), list(conv.output_padding), list(conv.stride),
            list(conv.dilation), conv.groups, attr, scalars, "")
    else:
        y = torch.ops.mkldnn._convolution_pointwise(
            x, w, b, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups, attr, scalars, "")
    return y.contiguous(memory_format=torch.channels_last)


_FLOPS_REGISTERED = False


def register_flop_formulas() -> None:
    """Teach ``torch.utils.flop_counter`` the oneDNN ops of the packed path (2 FLOPs per
    multiply-add, as it counts ``aten.convolution``), so counted FLOPs are the executed ones
    whichever path runs. Idempotent; a no-op on builds without the ops."""
    global _FLOPS_REGISTERED
    if _FLOPS_REGISTERED or not _onednn_ops():
        return
    from torch.utils.flop_counter import conv_flop_count, register_flop_formula

    @register_flop_formula(torch.ops.mkldnn._convolution_pointwise)
    def _conv(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001
        return conv_flop_count(x_shape, w_shape, out_shape, transposed=False)

    @register_flop_formula(torch.ops.mkldnn._convolution_transpose_pointwise)
    def _convt(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001
        return conv_flop_count(x_shape, w_shape, out_shape, transposed=True)

    _FLOPS_REGISTERED = True


def activate(y: torch.Tensor, post: str | None, slope: float = 0.01) -> torch.Tensor:
    """``post`` (``"relu"``, ``"leaky_relu"`` with negative ``slope``, or None) applied to ``y``,
    a tensor the caller owns (a conv's fresh output, a stage's input): in place without autograd."""
    if post is None:
        return y
    inplace = not torch.is_grad_enabled()
    if post == "relu":
        return F.relu_(y) if inplace else F.relu(y)
    return F.leaky_relu_(y, slope) if inplace else F.leaky_relu(y, slope)


def conv_transpose2d_gemm(x: torch.Tensor, conv: nn.ConvTranspose2d) -> torch.Tensor:
    """``conv(x)`` (no groups) as one matrix product per sample and ``fold`` (col2im).

    A transposed convolution scatters ``W^T x`` (a Cout*k*k column per input pixel) onto the
    output grid with stride s; ``F.fold`` is exactly that scatter-add.
    """
    n, cin, h, w = x.shape
    (k, _), (s, _), (p, _), (op, _), (d, _) = (
        conv.kernel_size, conv.stride, conv.padding, conv.output_padding, conv.dilation
    )
    hout = (h - 1) * s - 2 * p + d * (k - 1) + op + 1
    wout = (w - 1) * s - 2 * p + d * (k - 1) + op + 1
    # bmm on the broadcast weight writes (N, Cout*k*k, HW) in place; matmul would compute the
    # transposed product and copy it
    weight = _transposed_weight(conv).expand(n, -1, -1)
    cols = torch.bmm(weight, x.reshape(n, cin, h * w))
    out = F.fold(cols, (hout, wout), k, dilation=d, padding=p, stride=s)
    if conv.bias is not None:
        out = out + conv.bias.view(1, -1, 1, 1)
    return out


def _plain_conv(x: torch.Tensor, conv: nn.Conv2d, bias: bool) -> torch.Tensor:
    """The module's own convolution, with or without its bias (a partial conv's forward differs)."""
    return conv(x) if bias else conv._conv_forward(x, conv.weight, None)


def fast_conv2d(
    x: torch.Tensor,
    conv: nn.Conv2d,
    channels_last: bool = False,
    *,
    bias: bool = True,
    post: str | None = None,
    slope: float = 0.01,
) -> torch.Tensor:
    """``conv(x)``, on CPU float32 in the form fastest for the layer's shape (see above).

    ``channels_last=True`` (the U-Nets, which keep their activations channels-last): the output
    is channels-last. Otherwise the output is NCHW, except where oneDNN itself keeps a
    channels-last input's layout (the plain NCHW path, as ``conv(x)``).
    ``bias=False``: the layer's plain convolution without its bias (``conv._conv_forward(x,
    weight, None)``, also for subclasses with their own ``forward``, such as a partial conv).
    ``post``: ``"relu"`` or ``"leaky_relu"`` (negative ``slope``) applied to the output, fused
    into oneDNN's convolution where it runs one, else in place without autograd.
    """
    if post not in _POSTS:
        raise ValueError(f"post must be one of relu, leaky_relu or None, got {post!r}")
    if not cpu_fp32(x) or conv.groups != 1:
        return activate(_plain_conv(x, conv, bias), post, slope)
    if channels_last and _packable(x, conv):
        return _conv_packed(x, conv, bias, post, slope)
    return activate(_fast_conv2d(x, conv, channels_last, bias), post, slope)


def _fast_conv2d(x: torch.Tensor, conv: nn.Conv2d, channels_last: bool, bias: bool) -> torch.Tensor:
    small = x.shape[-2] * x.shape[-1] <= _SMALL_GRID
    gemm_ok = conv.padding_mode == "zeros" and _square(conv.kernel_size, conv.stride, conv.padding, conv.dilation)
    if channels_last:
        if gemm_ok and math.prod(_conv_out_hw(x, conv)) <= _GEMM_GRID_CL:
            return conv2d_gemm(x, conv, bias).contiguous(memory_format=torch.channels_last)
        return _conv_cl(x, conv, bias)
    if small and gemm_ok:
        return conv2d_gemm(x, conv, bias)
    if conv.out_channels < 8 or (conv.in_channels > 4 and conv.in_channels % 16):
        return _conv_cl(x, conv, bias).contiguous()
    return _plain_conv(x, conv, bias)


def fast_conv_transpose2d(
    x: torch.Tensor,
    conv: nn.ConvTranspose2d,
    channels_last: bool = False,
    *,
    post: str | None = None,
    slope: float = 0.01,
) -> torch.Tensor:
    """``conv(x)``, on CPU float32 in the form fastest for the layer's shape (see above).

    ``channels_last=True``: channels-last output (see :func:`fast_conv2d`); otherwise NCHW.
    ``post``: as for :func:`fast_conv2d`.
    """
    if post not in _POSTS:
        raise ValueError(f"post must be one of relu, leaky_relu or None, got {post!r}")
    if not cpu_fp32(x) or conv.groups != 1:
        return activate(conv(x), post, slope)
    if channels_last and conv.out_channels >= 8 and _packable(x, conv):
        return _conv_packed(x, conv, True, post, slope)
    return activate(_fast_conv_transpose2d(x, conv, channels_last), post, slope)


def _fast_conv_transpose2d(x: torch.Tensor, conv: nn.ConvTranspose2d, channels_last: bool) -> torch.Tensor:
    square = _square(conv.kernel_size, conv.stride, conv.padding, conv.output_padding, conv.dilation)
    hw = x.shape[-2] * x.shape[-1]
    if channels_last:
        if square and (hw <= _GEMM_GRID_CL or conv.out_channels < 8):
            return conv_transpose2d_gemm(x, conv).contiguous(memory_format=torch.channels_last)
        return _conv_cl(x, conv)
    if square and (hw <= _SMALL_GRID or conv.out_channels < 8):
        return conv_transpose2d_gemm(x, conv)
    return _conv_cl(x, conv).contiguous()


def fold_batch_norm(conv: nn.Module, norm: nn.Module | None) -> nn.Module | None:
    """``conv`` followed by an eval-mode ``BatchNorm2d`` as one convolution, cached; else None.

    At inference BatchNorm is a per-channel affine map ``y * s + t`` (``s = gamma / sqrt(var +
    eps)``, ``t = beta - mean * s``), so scaling the weight's output channels by ``s`` and using
    ``t`` (plus ``b * s``) as the bias gives the same numbers up to float32 rounding, without a pass
    over the activations. Returns a detached copy of ``conv`` (not a submodule, not in the state
    dict) with the folded weight and bias, rebuilt whenever a source tensor changes (version
    counter or storage); None in training mode, with autograd, while exporting, or for anything
    but a ``BatchNorm2d`` with running statistics.
    """
    if (
        not isinstance(norm, nn.BatchNorm2d)
        or norm.training
        or norm.running_mean is None
        or norm.running_var is None
        or not isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d))
        or conv.groups != 1
        or torch.is_grad_enabled()
        or torch.compiler.is_exporting()
    ):
        return None
    sources = (conv.weight, conv.bias, norm.weight, norm.bias, norm.running_mean, norm.running_var)
    if any(t is not None and t.is_inference() for t in sources):
        return None  # built under inference mode: no version counters to key the cache on
    key = tuple(None if t is None else (t._version, t.data_ptr()) for t in sources) + (
        conv.weight.dtype, conv.weight.device, norm.eps,
    )
    hit = conv.__dict__.get("_bn_folded")
    if hit is not None and hit[0] == key:
        return hit[1]
    with torch.inference_mode(False), torch.no_grad():  # ordinary tensors: they carry versions
        s = (norm.running_var + norm.eps).rsqrt()
        if norm.weight is not None:
            s = s * norm.weight
        t = -norm.running_mean * s
        if norm.bias is not None:
            t = t + norm.bias
        if conv.bias is not None:
            t = t + conv.bias * s
        transposed = isinstance(conv, nn.ConvTranspose2d)
        weight = conv.weight * (s.view(1, -1, 1, 1) if transposed else s.view(-1, 1, 1, 1))
        if transposed:
            folded: nn.Module = nn.ConvTranspose2d(
                conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                conv.output_padding, 1, True, conv.dilation, device="meta",
            )
        else:
            folded = nn.Conv2d(
                conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                conv.dilation, 1, True, conv.padding_mode, device="meta",
            )
        folded.weight = nn.Parameter(weight.contiguous(), requires_grad=False)
        folded.bias = nn.Parameter(t.contiguous(), requires_grad=False)
    conv.__dict__["_bn_folded"] = (key, folded)
    return folded
