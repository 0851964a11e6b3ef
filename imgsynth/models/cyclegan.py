"""CycleGAN ResNet generator: image-to-image translation with residual blocks.

Paper: Zhu, Park, Isola, Efros, "Unpaired Image-to-Image Translation using Cycle-Consistent
Adversarial Networks", ICCV 2017 (generator architecture from Johnson, Alahi, Fei-Fei,
"Perceptual Losses for Real-Time Style Transfer and Super-Resolution", ECCV 2016).
Official code: https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix (BSD licence).
Checkpoints (``latest_net_G.pth``) convert with :mod:`imgsynth.convert.pix2pix`.

Architecture (``resnet_9blocks`` / ``resnet_6blocks`` = ``n_blocks`` 9 / 6)::

    ReflectPad3 · Conv7x7 · norm · ReLU                        (stem)
    2x [Conv3x3 stride 2 · norm · ReLU]                        (down)
    n_blocks x ResnetBlock                                     (blocks)
    2x [ConvTranspose3x3 stride 2 · norm · ReLU]               (up)
    ReflectPad3 · Conv7x7 · tanh                               (head)

``ResnetBlock`` and ``ConvBlock`` are reused by :mod:`imgsynth.models.pix2pixhd`, whose global
generator is the same network with more down/up-sampling stages.

Deviations from the original:
- Readable module names (``stem``, ``down.i``, ``blocks.i.conv1``, ``up.i``, ``head``) instead
  of the official flat ``model.<index>`` Sequential; the converter maps the keys.
- Reflection padding is the convolution's own ``padding_mode="reflect"`` (same numbers as a
  separate ``ReflectionPad2d``).
- On CPU some layers run as GEMM + im2col/col2im or in channels-last memory format, whichever
  is fastest for their shape (:mod:`imgsynth.layers.fast_conv`); numerics agree
  to float32 rounding. Other devices run the modules as they are. The parameter-free instance
  norm runs as ``group_norm`` with one group per channel on CPU (same statistics, 2-3x faster),
  and without autograd ReLU and the residual sum run in place.
- ``norm="none"`` is not offered (no released model uses it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from imgsynth.errors import ConfigError
from imgsynth.layers.fast_conv import (  # noqa: F401  (re-exported: the U-Net and pix2pixHD use them from here)
    conv2d_gemm,
    conv_transpose2d_gemm,
    fast_conv2d,
    fast_conv_transpose2d,
)
from imgsynth.models.registry import register_model

NORMS = ("batch", "instance", "instance_tracked")
PADDING_TYPES = {"reflect": "reflect", "replicate": "replicate", "zero": "zeros"}
"""Official ``padding_type`` -> ``nn.Conv2d`` ``padding_mode``."""


def make_norm(norm: str, channels: int) -> nn.Module:
    """The official normalisation layers: BatchNorm (affine, running stats) or parameter-free InstanceNorm.

    ``"instance_tracked"`` is NVIDIA/vid2vid's ``--norm instance``: InstanceNorm2d(affine=False,
    track_running_stats=True), per-sample statistics in train mode, running statistics in eval mode.
    """
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if norm == "instance_tracked":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=True)
    raise ConfigError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")


def apply_norm(norm: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """``norm(h)``; the parameter-free instance norm as ``group_norm`` with one group per channel.

    Same statistics (per sample and channel, biased variance, same ``eps``) and float32 accuracy
    (against a float64 reference, 7e-7 for both at 1024x2048), but torch's CPU group norm runs
    2-3x faster than its instance norm, which reshapes to (1, N*C, H, W) and goes through batch
    norm (measured on a 2-core AVX2 EPYC, NCHW float32, 64x64 to 1024x2048). Channels-last inputs
    (whose group-norm kernel sums less accurately), other devices and ONNX export use the module.
    """
    if (
        type(norm) is nn.InstanceNorm2d
        and not norm.affine
        and not norm.track_running_stats
        and h.dim() == 4
        and h.device.type == "cpu"
        and h.is_contiguous()
        and not torch.compiler.is_exporting()
    ):
        return F.group_norm(h, h.shape[1], eps=norm.eps)
    return norm(h)


class ConvBlock(nn.Module):
    """Conv (or ConvTranspose 3x3 stride 2) · norm · ReLU, the unit of the ResNet generators.

    ``padding_mode="reflect"`` with ``padding=3`` is the official ReflectionPad2d(3) + Conv7x7.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        padding_mode: str = "zeros",
        norm: str = "instance",
        bias: bool = True,
        transposed: bool = False,
    ) -> None:
        super().__init__()
        if transposed:
            # ConvTranspose(3, 2, 1, output_padding=1) doubles H and W exactly.
            self.conv: nn.Module = nn.ConvTranspose2d(
                in_channels, out_channels, kernel_size, stride, padding, output_padding=stride - 1, bias=bias
            )
        else:
            self.conv = nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, padding, padding_mode=padding_mode, bias=bias
            )
        self.norm = make_norm(norm, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, Cin, H, W) -> (N, Cout, H', W'), non-negative (after ReLU)."""
        if isinstance(self.conv, nn.ConvTranspose2d):
            h = fast_conv_transpose2d(x, self.conv)
        else:
            h = fast_conv2d(x, self.conv)
        h = apply_norm(self.norm, h)
        return F.relu(h) if torch.is_grad_enabled() else F.relu_(h)  # in place: a fresh tensor


class ResnetBlock(nn.Module):
    """Residual block ``x + F(x)``, F = pad·Conv3x3·norm·ReLU·[Dropout(0.5)]·pad·Conv3x3·norm.

    The residual design of He et al. 2016 as used by Johnson et al. 2016 (no ReLU after the sum).
    """

    def __init__(
        self,
        channels: int,
        *,
        norm: str = "instance",
        padding_type: str = "reflect",
        use_dropout: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if padding_type not in PADDING_TYPES:
            raise ConfigError(f"padding_type must be one of {', '.join(PADDING_TYPES)}, got {padding_type!r}")
        mode = PADDING_TYPES[padding_type]
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, padding_mode=mode, bias=bias)
        self.norm1 = make_norm(norm, channels)
        self.dropout = nn.Dropout(0.5) if use_dropout else None
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, padding_mode=mode, bias=bias)
        self.norm2 = make_norm(norm, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H, W)."""
        if torch.is_grad_enabled():
            h = F.relu(apply_norm(self.norm1, fast_conv2d(x, self.conv1)))
            h = self.dropout(h) if self.dropout is not None else h
            return x + apply_norm(self.norm2, fast_conv2d(h, self.conv2))
        # inference: activation and residual sum in place on fresh tensors (no allocation)
        h = F.relu_(apply_norm(self.norm1, fast_conv2d(x, self.conv1)))
        h = self.dropout(h) if self.dropout is not None else h
        return apply_norm(self.norm2, fast_conv2d(h, self.conv2)).add_(x)


class ResnetEncoderDecoder(nn.Module):
    """The trunk shared by the ResNet generators: stem, stride-2 downs, residual blocks, stride-2 ups.

    ``ReflectPad3·Conv7x7·norm·ReLU``, ``n_downsampling`` x ``Conv3x3 s2·norm·ReLU`` (channels
    doubling), ``n_blocks`` x :class:`ResnetBlock`, ``n_downsampling`` x ``ConvT3x3 s2·norm·ReLU``.
    Output: (N, ngf, H, W) features, H and W multiples of ``2**n_downsampling``. CycleGAN and
    the pix2pixHD global generator add a Conv7x7·tanh head; the pix2pixHD local enhancer uses the
    trunk alone.
    """

    def __init__(
        self,
        input_nc: int,
        ngf: int,
        n_downsampling: int,
        n_blocks: int,
        *,
        norm: str = "instance",
        use_dropout: bool = False,
        padding_type: str = "reflect",
        bias: bool = True,
    ) -> None:
        super().__init__()
        if n_blocks < 0 or n_downsampling < 0:
            raise ConfigError(f"n_blocks and n_downsampling must be >= 0, got {n_blocks}, {n_downsampling}")
        self.input_nc = input_nc
        self.stem = ConvBlock(input_nc, ngf, 7, padding=3, padding_mode="reflect", norm=norm, bias=bias)
        self.down = nn.ModuleList(
            ConvBlock(ngf * 2**i, ngf * 2 ** (i + 1), 3, stride=2, padding=1, norm=norm, bias=bias)
            for i in range(n_downsampling)
        )
        width = ngf * 2**n_downsampling
        self.blocks = nn.ModuleList(
            ResnetBlock(width, norm=norm, padding_type=padding_type, use_dropout=use_dropout, bias=bias)
            for _ in range(n_blocks)
        )
        self.up = nn.ModuleList(
            ConvBlock(width // 2**i, width // 2 ** (i + 1), 3, stride=2, padding=1, norm=norm, bias=bias, transposed=True)
            for i in range(n_downsampling)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, input_nc, H, W) -> (N, ngf, H, W) non-negative features."""
        h = self.stem(x)
        for layer in self.down:
            h = layer(h)
        for block in self.blocks:
            h = block(h)
        for layer in self.up:
            h = layer(h)
        return h


@register_model("cyclegan_resnet", task="translate", tiny={"ngf": 4, "n_blocks": 2})
class ResnetGenerator(ResnetEncoderDecoder):
    """CycleGAN / pix2pix ResNet generator (``resnet_9blocks``, ``resnet_6blocks``).

    Args:
        input_nc: input image channels.
        output_nc: output image channels.
        ngf: channels of the first conv; the residual blocks run at ``4 * ngf``.
        n_blocks: residual blocks (9 for 256x256 training, 6 for 128x128).
        norm: ``"instance"`` (CycleGAN default; every conv has a bias) or ``"batch"`` (convs
            before a BatchNorm have no bias, as in the official code).
        use_dropout: Dropout(0.5) inside each residual block (CycleGAN: off).
        padding_type: padding of the residual-block convs: ``reflect``, ``replicate`` or ``zero``.
    """

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        norm: str = "instance",
        use_dropout: bool = False,
        padding_type: str = "reflect",
    ) -> None:
        # The official code adds a bias only before InstanceNorm (BatchNorm would cancel it).
        super().__init__(
            input_nc, ngf, 2, n_blocks,
            norm=norm, use_dropout=use_dropout, padding_type=padding_type, bias=norm == "instance",
        )
        self.output_nc = output_nc
        self.head = nn.Conv2d(ngf, output_nc, 7, padding=3, padding_mode="reflect")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, input_nc, H, W) image in [-1, 1], H and W multiples of 4 -> (N, output_nc, H, W) in [-1, 1]."""
        return torch.tanh(fast_conv2d(super().forward(x), self.head))

    def dummy_inputs(self, batch_size: int, generator: torch.Generator) -> tuple:
        """A batch of random 32x32 images in [-1, 1]."""
        x = torch.rand(batch_size, self.input_nc, 32, 32, generator=generator) * 2 - 1
        p = next(self.parameters())
        return (x.to(p.device, p.dtype),)
