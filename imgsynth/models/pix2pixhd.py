"""pix2pixHD generators: coarse-to-fine semantic label -> photo translation.

Paper: Wang, Liu, Zhu, Tao, Kautz, Catanzaro, "High-Resolution Image Synthesis and Semantic
Manipulation with Conditional GANs", CVPR 2018. Official code: https://github.com/NVIDIA/pix2pixHD
(licence CC BY-NC-SA 4.0; the released Cityscapes weights are non-commercial).
Checkpoints (``latest_net_G.pth``) convert with :mod:`imgsynth.convert.pix2pixhd`.

Input: one-hot(label, ``label_nc``) with the instance edge map appended as one more channel
(``use_instance``); see :func:`imgsynth.layers.label_maps.one_hot` and
:func:`~imgsynth.layers.label_maps.instance_edges`. The networks take the encoded tensor.

- :class:`GlobalGenerator` (G1, paper Sec. 3.2): the ResNet generator of Johnson et al. with
  ``n_downsample_global`` stride-2 stages (4 in the released models) and ``n_blocks_global``
  residual blocks; every conv has a bias; released ``label2city_512p`` (ngf 64, 1024x512).
- :class:`LocalEnhancer` (G2): G1 at ``ngf * 2**n_local_enhancers`` without its output layer runs
  on the input downsampled ``n_local_enhancers`` times by AvgPool2d(3, 2, 1,
  count_include_pad=False); each enhancer encodes its own resolution (Conv7x7, Conv3x3 stride 2),
  adds the coarser result element-wise, refines it with ``n_blocks_local`` residual blocks and
  upsamples (ConvTranspose 3x3 stride 2); the finest one ends in Conv7x7·tanh. Released
  ``label2city_1024p`` (ngf 32, 2048x1024).

Both normalise with parameter-free InstanceNorm, which works per sample in train and eval mode
alike (the official ``test.py`` never calls ``.eval()``; it does not matter here).

Deviations from the original:
- Readable module names (``stem``, ``down.i``, ``blocks.i``, ``up.i``, ``head``; the local
  enhancer's trunk is ``global_net``, its stages ``enhancers.k``) instead of the flat
  ``model.<index>`` / ``model{n}_1`` / ``model{n}_2`` Sequentials; the converter maps them.
- The feature encoder (``--instance_feat`` / ``--label_feat``) and its extra input channels are not
  implemented (no released model uses them).
- On CPU some layers run as GEMM + im2col/col2im or in channels-last memory format, whichever
  is fastest for their shape (see :mod:`imgsynth.models.cyclegan`); same sums, float32 rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from imgsynth.errors import ConfigError
from imgsynth.layers.label_maps import instance_edges, one_hot
from imgsynth.models.cyclegan import ConvBlock, ResnetBlock, ResnetEncoderDecoder, fast_conv2d
from imgsynth.models.registry import register_model


def _input_nc(label_nc: int, use_instance: bool, image_nc: int) -> int:
    if label_nc < 0:
        raise ConfigError(f"label_nc must be >= 0, got {label_nc}")
    return (label_nc if label_nc > 0 else image_nc) + int(use_instance)


def _dummy_label_input(model: nn.Module, batch_size: int, size: tuple[int, int], generator: torch.Generator) -> tuple:
    h, w = size
    if model.label_nc > 0:
        label = torch.randint(0, model.label_nc, (batch_size, 1, h, w), generator=generator)
        x = one_hot(label, model.label_nc)
    else:
        x = torch.rand(batch_size, model.input_nc - int(model.use_instance), h, w, generator=generator) * 2 - 1
    if model.use_instance:
        inst = torch.randint(0, 3, (batch_size, 1, h, w), generator=generator)
        x = torch.cat([x, instance_edges(inst)], dim=1)
    p = next(model.parameters())
    return (x.to(p.device, p.dtype),)


@register_model(
    "pix2pixhd_global",
    task="translate",
    tiny={"label_nc": 4, "ngf": 4, "n_downsample_global": 2, "n_blocks_global": 1},
)
class GlobalGenerator(ResnetEncoderDecoder):
    """pix2pixHD global generator G1 (``--netG global``).

    Args:
        label_nc: label classes one-hot encoded in the input (35 for Cityscapes); 0 means the
            input is an image of ``image_nc`` channels instead.
        use_instance: an instance-edge channel follows the labels (official ``not --no_instance``).
        image_nc: input image channels when ``label_nc == 0``.
        output_nc: output image channels.
        ngf: channels of the first conv (64 released).
        n_downsample_global: stride-2 stages (4 released); inputs must be multiples of
            ``2**n_downsample_global``.
        n_blocks_global: residual blocks at the bottleneck (9 released).
        norm: ``"instance"`` (released) or ``"batch"``; every conv keeps its bias either way.
        padding_type: residual-block padding: ``reflect``, ``replicate`` or ``zero``.
    """

    def __init__(
        self,
        label_nc: int = 35,
        use_instance: bool = True,
        image_nc: int = 3,
        output_nc: int = 3,
        ngf: int = 64,
        n_downsample_global: int = 4,
        n_blocks_global: int = 9,
        norm: str = "instance",
        padding_type: str = "reflect",
    ) -> None:
        input_nc = _input_nc(label_nc, use_instance, image_nc)
        super().__init__(input_nc, ngf, n_downsample_global, n_blocks_global, norm=norm, padding_type=padding_type)
        self.label_nc = label_nc
        self.use_instance = use_instance
        self.output_nc = output_nc
        self.n_downsample_global = n_downsample_global
        self.head = nn.Conv2d(ngf, output_nc, 7, padding=3, padding_mode="reflect")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, input_nc, H, W) one-hot labels ++ instance edges (0/1 float), H and W multiples of
        ``2**n_downsample_global`` -> (N, output_nc, H, W) image in [-1, 1]."""
        return torch.tanh(fast_conv2d(super().forward(x), self.head))

    def dummy_inputs(self, batch_size: int, generator: torch.Generator) -> tuple:
        """Encoded random label and instance maps at twice the smallest valid size."""
        side = 2 ** (self.n_downsample_global + 1)
        return _dummy_label_input(self, batch_size, (side, side), generator)


class EnhancerStage(nn.Module):
    """One local enhancer G2 at one resolution: front-end, sum with the coarser result, back-end.

    front: ReflectPad3·Conv7x7·norm·ReLU · Conv3x3 s2·norm·ReLU (to ``2 * ngf`` at half size);
    back: ``n_blocks`` residual blocks · ConvT3x3 s2·norm·ReLU (to ``ngf``) [· ReflectPad3·Conv7x7·tanh].
    """

    def __init__(
        self,
        input_nc: int,
        ngf: int,
        n_blocks: int,
        *,
        output_nc: int | None,
        norm: str,
        padding_type: str,
    ) -> None:
        super().__init__()
        self.stem = ConvBlock(input_nc, ngf, 7, padding=3, padding_mode="reflect", norm=norm)
        self.down = ConvBlock(ngf, 2 * ngf, 3, stride=2, padding=1, norm=norm)
        self.blocks = nn.ModuleList(
            ResnetBlock(2 * ngf, norm=norm, padding_type=padding_type) for _ in range(n_blocks)
        )
        self.up = ConvBlock(2 * ngf, ngf, 3, stride=2, padding=1, norm=norm, transposed=True)
        self.head = nn.Conv2d(ngf, output_nc, 7, padding=3, padding_mode="reflect") if output_nc else None

    def forward(self, x: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """x (N, input_nc, H, W), coarse (N, 2*ngf, H/2, W/2) -> (N, ngf, H, W) features, or the
        (N, output_nc, H, W) image in [-1, 1] for the finest stage."""
        h = self.down(self.stem(x)) + coarse
        for block in self.blocks:
            h = block(h)
        h = self.up(h)
        return torch.tanh(fast_conv2d(h, self.head)) if self.head is not None else h


@register_model(
    "pix2pixhd_local",
    task="translate",
    tiny={"label_nc": 4, "ngf": 2, "n_downsample_global": 2, "n_blocks_global": 1, "n_blocks_local": 1},
)
class LocalEnhancer(nn.Module):
    """pix2pixHD generator with local enhancers, G = {G1, G2} (``--netG local``).

    Args:
        label_nc, use_instance, image_nc, output_nc, norm, padding_type: as :class:`GlobalGenerator`.
        ngf: channels of the finest enhancer (32 released); G1 runs at ``ngf * 2**n_local_enhancers``.
        n_downsample_global, n_blocks_global: G1's stride-2 stages and residual blocks (4, 9).
        n_local_enhancers: enhancers, each doubling the resolution (1 released). Inputs must be
            multiples of ``2**(n_downsample_global + n_local_enhancers)``.
        n_blocks_local: residual blocks per enhancer (3 released).
    """

    def __init__(
        self,
        label_nc: int = 35,
        use_instance: bool = True,
        image_nc: int = 3,
        output_nc: int = 3,
        ngf: int = 32,
        n_downsample_global: int = 4,
        n_blocks_global: int = 9,
        n_local_enhancers: int = 1,
        n_blocks_local: int = 3,
        norm: str = "instance",
        padding_type: str = "reflect",
    ) -> None:
        super().__init__()
        if n_local_enhancers < 1:
            raise ConfigError(f"n_local_enhancers must be >= 1 (use pix2pixhd_global for none), got {n_local_enhancers}")
        self.label_nc = label_nc
        self.use_instance = use_instance
        self.input_nc = _input_nc(label_nc, use_instance, image_nc)
        self.output_nc = output_nc
        self.n_downsample_global = n_downsample_global
        self.n_local_enhancers = n_local_enhancers
        self.global_net = ResnetEncoderDecoder(
            self.input_nc, ngf * 2**n_local_enhancers, n_downsample_global, n_blocks_global,
            norm=norm, padding_type=padding_type,
        )
        # enhancers[k] works at 1/2**(n_local_enhancers - 1 - k) of the input size (coarsest first)
        self.enhancers = nn.ModuleList(
            EnhancerStage(
                self.input_nc, ngf * 2 ** (n_local_enhancers - 1 - k), n_blocks_local,
                output_nc=output_nc if k == n_local_enhancers - 1 else None,
                norm=norm, padding_type=padding_type,
            )
            for k in range(n_local_enhancers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, input_nc, H, W) one-hot labels ++ instance edges (0/1 float), H and W multiples of
        ``2**(n_downsample_global + n_local_enhancers)`` -> (N, output_nc, H, W) image in [-1, 1]."""
        pyramid = [x]
        for _ in range(self.n_local_enhancers):
            pyramid.append(F.avg_pool2d(pyramid[-1], 3, stride=2, padding=1, count_include_pad=False))
        h = self.global_net(pyramid[-1])
        for k, stage in enumerate(self.enhancers):
            h = stage(pyramid[self.n_local_enhancers - 1 - k], h)
        return h

    def dummy_inputs(self, batch_size: int, generator: torch.Generator) -> tuple:
        """Encoded random label and instance maps at twice the smallest valid size."""
        side = 2 ** (self.n_downsample_global + self.n_local_enhancers + 1)
        return _dummy_label_input(self, batch_size, (side, side), generator)
