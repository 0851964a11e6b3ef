"""pix2pix U-Net generator: conditional image-to-image translation.

Paper: Isola, Zhu, Zhou, Efros, "Image-to-Image Translation with Conditional Adversarial
Networks", CVPR 2017 (U-Net of Ronneberger, Fischer, Brox, MICCAI 2015).
Official code: https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix (BSD licence).
Checkpoints (``latest_net_G.pth``) convert with :mod:`imgsynth.convert.pix2pix`.

Architecture (``unet_256`` = ``num_downs=8``, ``unet_128`` = 7): an encoder of ``num_downs``
4x4 stride-2 convolutions down to a 1x1 bottleneck and a mirrored decoder of 4x4 stride-2
transposed convolutions; every decoder stage but the last sees the matching encoder features
concatenated before its own output (skip connections)::

    encoder stage j:  [LeakyReLU(0.2)] · Conv4x4 s2 · [norm]     (no activation at j=0,
                                                                  no norm at j=0 and innermost)
    decoder stage j:  ReLU · ConvTranspose4x4 s2 · norm · [Dropout(0.5)]   (j=0: ... · tanh)
    channels:         ngf * min(2**j, 8)

Decoder stage j receives ``cat([encoder_{j-1} output, decoder_{j+1} output])`` (skip first, as
in the official ``torch.cat([x, model(x)], 1)``). Dropout sits in the stages ``4 .. num_downs-2``
(the ``num_downs - 5`` blocks just outside the innermost one).

Module layout: the official code nests one ``UnetSkipConnectionBlock`` inside the next
(``model.model.1.model.3.model.3...``, 8 levels deep for unet_256). Here the same layers are two
flat lists, ``down[j]`` and ``up[j]`` (j = 0 outermost), which reads like the paper's figure;
:func:`imgsynth.convert.pix2pix.from_junyanz_unet` maps the nested keys.

Test-time behaviour: the official ``test.py`` calls ``model.eval()`` only with ``--eval``. Its
default runs the generator in train mode: BatchNorm uses the
statistics of the current batch and Dropout(0.5) is active, so outputs are stochastic
(the paper's "noise in the form of dropout ... at both training and test time", Sec. 2.1). ``.eval()`` gives the ``--eval`` behaviour; ``.train()``
the default one. The dropout masks are drawn from the global RNG in the official order (the
stage nearest the bottleneck first), so ``torch.manual_seed(s)`` before the forward reproduces the
official output for seed ``s`` on CPU.

Deviations from the original:
- Flat ``down``/``up`` module lists instead of recursive blocks (same layers, same order of
  operations; the official in-place LeakyReLU also rewrites the skip tensor, which the following
  ReLU makes irrelevant: relu(leaky_relu(s)) == relu(s)).
- On CPU float32 the network runs channels-last end to end. At inference an eval-mode BatchNorm
  is folded into the conv before it, the convs run on oneDNN's pre-packed weights with the next
  stage's activation fused into them (where the build has oneDNN; else cached channels-last
  weights, and GEMM + im2col/col2im for inputs of 8x8 pixels or fewer), see
  :mod:`imgsynth.layers.fast_conv`. Without autograd the activations run in place. Same sums,
  float32 rounding; dropout masks are drawn in NCHW order as officially.
- ``norm="none"`` is not offered (no released model uses it).
"""

from __future__ import annotations

import torch
from torch import nn

from imgsynth.errors import ConfigError
from imgsynth.layers.fast_conv import activate, cpu_fp32, fold_batch_norm
from imgsynth.models.cyclegan import fast_conv2d, fast_conv_transpose2d, make_norm
from imgsynth.models.registry import register_model


class UnetDown(nn.Module):
    """Encoder stage: [LeakyReLU(0.2)] · Conv4x4 stride 2 · [norm]; halves H and W."""

    def __init__(self, in_channels: int, out_channels: int, *, norm: str | None, activation: bool, bias: bool) -> None:
        super().__init__()
        self.activation = activation
        self.conv = nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1, bias=bias)
        self.norm = make_norm(norm, out_channels) if norm is not None else None

    def forward(
        self, x: torch.Tensor, channels_last: bool = False, *, activated: bool = False, post: str | None = None
    ) -> torch.Tensor:
        """(N, Cin, H, W) -> (N, Cout, H/2, W/2); ``channels_last``: see :func:`fast_conv2d`.

        Without autograd the activation runs in place on ``x`` (the previous stage's output).
        ``activated``: ``x`` already had this stage's activation applied (the previous stage's
        ``post``); ``post``: ``"relu"`` / ``"leaky_relu"`` (slope 0.2) applied to the output,
        fused into the convolution where BatchNorm is folded into it."""
        if self.activation and not activated:
            # in place without autograd, as the official nn.LeakyReLU(0.2, True): this rewrites the
            # skip tensor too, which the decoder's ReLU makes irrelevant (relu(lrelu(s)) == relu(s));
            # it saves allocating (and page-faulting) a fresh tensor per stage
            x = activate(x, "leaky_relu", 0.2)
        folded = fold_batch_norm(self.conv, self.norm) if channels_last else None
        if folded is not None or self.norm is None:  # CPU inference: eval BatchNorm folded into the conv
            return fast_conv2d(x, self.conv if folded is None else folded, channels_last, post=post, slope=0.2)
        return activate(self.norm(fast_conv2d(x, self.conv, channels_last)), post, 0.2)


class UnetUp(nn.Module):
    """Decoder stage: ReLU · ConvTranspose4x4 stride 2 · (norm · [Dropout(0.5)] | tanh); doubles H and W."""

    def __init__(
        self, in_channels: int, out_channels: int, *, norm: str | None, bias: bool, use_dropout: bool = False
    ) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=bias)
        self.norm = make_norm(norm, out_channels) if norm is not None else None
        self.dropout = nn.Dropout(0.5) if use_dropout else None

    def forward(
        self, x: torch.Tensor, channels_last: bool = False, *, activated: bool = False, post: str | None = None
    ) -> torch.Tensor:
        """(N, Cin, H, W) -> (N, Cout, 2H, 2W); the outermost stage (no norm) ends in tanh, [-1, 1].

        ``channels_last``: see :func:`~imgsynth.layers.fast_conv.fast_conv_transpose2d`. Without
        autograd the ReLU runs in place on ``x`` (the previous stage's output). ``activated``:
        ``x`` is already ReLU'd; ``post``: ``"relu"`` applied to the output (before dropout, with
        which it commutes), fused into the transposed conv where BatchNorm is folded into it."""
        if not activated:
            # the input is the previous stage's output or its concatenation with a skip: ours to overwrite
            x = activate(x, "relu")
        folded = fold_batch_norm(self.conv, self.norm) if channels_last else None
        if self.norm is None:
            h = fast_conv_transpose2d(x, self.conv, channels_last)
            h = torch.tanh(h) if torch.is_grad_enabled() else h.tanh_()
            return activate(h, post)
        if folded is not None:  # CPU inference: eval BatchNorm folded into the transposed conv
            h = fast_conv_transpose2d(x, folded, channels_last, post=post)
        else:
            h = activate(self.norm(fast_conv_transpose2d(x, self.conv, channels_last)), post)
        if self.dropout is not None and self.dropout.training and channels_last:
            # dropout draws its mask in memory order: draw it in NCHW order, as the official code
            # does, so that torch.manual_seed(s) still reproduces the official train-mode output
            h = self.dropout(h.contiguous()).contiguous(memory_format=torch.channels_last)
        elif self.dropout is not None:
            h = self.dropout(h)
        return h


@register_model("pix2pix_unet", task="translate", tiny={"num_downs": 5, "ngf": 4})
class UnetGenerator(nn.Module):
    """pix2pix U-Net generator (``unet_256``: ``num_downs=8``; ``unet_128``: ``num_downs=7``).

    Args:
        input_nc: input image channels.
        output_nc: output image channels.
        num_downs: stride-2 stages; inputs must be multiples of ``2**num_downs`` (256 for
            unet_256). At least 5, as in the official constructor.
        ngf: channels of the outermost stage (64 in the released models).
        norm: ``"batch"`` (pix2pix default; convs before it have no bias) or ``"instance"``.
        use_dropout: Dropout(0.5) in the decoder stages next to the bottleneck (pix2pix: on).
    """

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        norm: str = "batch",
        use_dropout: bool = True,
    ) -> None:
        super().__init__()
        if num_downs < 5:
            raise ConfigError(f"num_downs must be >= 5 (the official U-Net has at least 5 levels), got {num_downs}")
        make_norm(norm, 1)  # validate early with the shared message
        self.input_nc = input_nc
        self.output_nc = output_nc
        self.num_downs = num_downs
        bias = norm == "instance"  # a bias before BatchNorm is cancelled by it
        width = [ngf * min(2**j, 8) for j in range(num_downs)]
        innermost = num_downs - 1

        self.down = nn.ModuleList([UnetDown(input_nc, ngf, norm=None, activation=False, bias=bias)])
        for j in range(1, num_downs):
            self.down.append(
                UnetDown(width[j - 1], width[j], norm=None if j == innermost else norm, activation=True, bias=bias)
            )

        self.up = nn.ModuleList([UnetUp(2 * ngf, output_nc, norm=None, bias=True)])
        for j in range(1, num_downs):
            in_ch = width[j] if j == innermost else 2 * width[j]
            dropout = use_dropout and 4 <= j < innermost
            self.up.append(UnetUp(in_ch, width[j - 1], norm=norm, bias=bias, use_dropout=dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, input_nc, H, W) image in [-1, 1], H and W multiples of ``2**num_downs`` -> (N, output_nc, H, W) in [-1, 1]."""
        skips = []
        # CPU float32: channels-last end to end, so oneDNN never re-lays out activations (the
        # fast_conv* helpers keep the layout and cache channels-last weights); NCHW comes back out.
        cl = cpu_fp32(x)
        h = x.contiguous(memory_format=torch.channels_last) if cl else x
        # CPU inference: each stage's activation is fused into the convolution before it (oneDNN
        # post-ops): an encoder output leaves its conv LeakyReLU'd (the next stage's activation,
        # which the official in-place LeakyReLU also applies to the skip) and the bottleneck and
        # decoder outputs ReLU'd; a concatenation gets one in-place ReLU (relu(lrelu(s)) == relu(s))
        fuse = cl and not torch.is_grad_enabled()
        last = self.num_downs - 1
        for j, stage in enumerate(self.down):
            post = None if not fuse else ("relu" if j == last else "leaky_relu")
            h = stage(h, cl, activated=fuse, post=post)
            skips.append(h)
        h = skips.pop()  # the bottleneck feeds the innermost decoder stage directly
        for j in range(last, -1, -1):
            h = self.up[j](h, cl, activated=fuse, post="relu" if fuse and j > 0 else None)
            if j > 0:
                h = torch.cat([skips[j - 1], h], dim=1)
                if fuse:
                    h.relu_()
        return h.contiguous() if cl else h

    def dummy_inputs(self, batch_size: int, generator: torch.Generator) -> tuple:
        """A batch of random images in [-1, 1] at the smallest valid size, ``2**num_downs``."""
        size = 2**self.num_downs
        x = torch.rand(batch_size, self.input_nc, size, size, generator=generator) * 2 - 1
        p = next(self.parameters())
        return (x.to(p.device, p.dtype),)
