"""PConv U-Net: Liu, Reda, Shih, Wang, Tao, Catanzaro, "Image Inpainting for Irregular Holes
Using Partial Convolutions", ECCV 2018 (§3.2 and supplementary Table 1).

Official code: NVIDIA/partialconv (BSD-style NVIDIA licence) releases only ``PartialConv2d``, not
the inpainting U-Net. The released checkpoints come from two re-implementations, both loadable via
``imgsynth.convert.pconv``:

- naoto0804/pytorch-inpainting-with-partial-conv (MIT), Places2 256x256, ``renorm="naoto"``:
  ``out = W^T(X*M) / sum(M) + b`` (no ``sum(1)`` numerator).
- open-mmlab/mmagic (Apache-2.0) ``PConvEncoderDecoder``, ``renorm="nvidia"`` (NVIDIA's
  multi-channel ``PartialConv2d``: ``sum(1) / sum(M)``) and ``enc1_bias=True``.

Architecture (paper): encoder PConv 7x7, 5x5, 5x5, then 3x3, all stride 2, BatchNorm except on
the first layer, ReLU; decoder: nearest x2 upsampling of features and masks, concatenation with
the encoder skip (features and masks), 3x3 PConv, BatchNorm, LeakyReLU(0.2); the last layer has a
bias and no BatchNorm or activation. ``layer_size`` 7 is the 256x256 net of the released
checkpoints, 8 the paper's 512x512 net. The mask is per channel (``sum(1)`` = Cin*k*k taps):
after the first layer every channel of a layer's mask is the same.

Deviations from the original:
- No all-ones ``mask_conv`` weights in the state dict. Because every mask after the input is the
  same for all channels, each layer's mask sum is a one-channel box sum of a "valid channels per
  pixel" map (input: the mask's channel sum; decoder: ``C_up * up(m) + C_skip * m_skip``), which
  gives identical numbers for 0/1 masks at a fraction of the cost of the official Cout x Cin
  all-ones convolution (half of the official FLOPs).
- Features are multiplied by their mask once per level, before the nearest upsampling
  (``up(h) * up(m) == up(h * m)``), and reused for the encoder's next layer and the skip.
- The returned mask is a broadcast view (N, input_channels, H, W) of a one-channel mask.
- On CPU float32 the features run channels-last with cached channels-last weights, layers whose
  input has 8x8 pixels or fewer as GEMM + im2col (:mod:`imgsynth.layers.fast_conv`), and each
  decoder level's upsampling and concatenation are written in one pass; float32 rounding only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from imgsynth.errors import ConfigError, InputError
from imgsynth.layers.fast_conv import cpu_fp32
from imgsynth.layers.partial_conv import VARIANTS, PartialConv2d
from imgsynth.models.registry import register_model

_KERNELS = (7, 5, 5)  # enc_1..enc_3; every later layer is 3x3


def _upsample_cat(low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """``cat([nearest_x2(low), skip], 1)`` written once into a channels-last tensor.

    ``F.interpolate`` then ``torch.cat`` write the upsampled half twice (2-3 % of the PConv U-Net's
    CPU time); here each output pixel's channels are copied straight from the source pixel.
    """
    n, c1, h, w = low.shape
    c2 = skip.shape[1]
    out = torch.empty(n, c1 + c2, 2 * h, 2 * w, dtype=low.dtype, device=low.device, memory_format=torch.channels_last)
    nhwc = out.permute(0, 2, 3, 1)  # (N, 2H, 2W, C), contiguous
    nhwc[..., :c1].view(n, h, 2, w, 2, c1).copy_(low.permute(0, 2, 3, 1)[:, :, None, :, None, :].expand(n, h, 2, w, 2, c1))
    nhwc[..., c1:].copy_(skip.permute(0, 2, 3, 1))
    return out


class PConvBlock(nn.Module):
    """PConv -> optional BatchNorm -> optional ReLU / LeakyReLU(0.2), on a per-channel mask.

    State dict: ``conv.weight`` (+ ``conv.bias``), ``bn.*`` when ``bn``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        *,
        bn: bool,
        activation: str | None,
        bias: bool,
        renorm: str,
    ) -> None:
        super().__init__()
        self.conv = PartialConv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
            bias=bias, multi_channel=True, variant=renorm,
        )
        self.bn = nn.BatchNorm2d(out_channels) if bn else None
        if activation not in (None, "relu", "leaky"):
            raise ValueError(f"activation must be None, 'relu' or 'leaky', got {activation!r}")
        self.activation = activation

    def forward(
        self, x_masked: torch.Tensor, count: torch.Tensor, channels_last: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, Cin, H, W) masked input + (N, 1, H, W) valid channels per pixel ->
        ((N, Cout, H', W') features, (N, 1, H', W') updated 0/1 mask); ``channels_last``: see
        :meth:`PartialConv2d.partial_forward`."""
        h, m = self.conv.partial_forward(x_masked, self.conv.mask_sum(count), channels_last)
        if self.bn is not None:
            h = self.bn(h)
        if self.activation == "relu":
            h = F.relu_(h)
        elif self.activation == "leaky":
            h = F.leaky_relu_(h, 0.2)
        return h, m


@register_model(
    "pconv_unet",
    task="inpaint",
    tiny={"layer_size": 4, "widths": [4, 8, 8, 8]},
    description="PConv U-Net (Liu et al. 2018): irregular-hole inpainting with partial convolutions",
)
class PConvUNet(nn.Module):
    """The PConv U-Net of Liu et al. 2018.

    Args:
        layer_size: encoder depth (>= 4); inputs must be multiples of ``2**layer_size``.
            7 for the released 256x256 checkpoints, 8 for the paper's 512x512 net.
        input_channels: image channels (the output has as many).
        widths: output channels of enc_1..enc_4 (later layers keep the last); the paper's
            (64, 128, 256, 512).
        renorm: ``"nvidia"`` (paper, sum(1)/sum(M); mmagic checkpoints) or ``"naoto"``
            (1/sum(M); naoto0804 checkpoints), see :mod:`imgsynth.layers.partial_conv`.
        enc1_bias: give the first encoder conv a bias (mmagic: True; naoto0804: False).
    """

    def __init__(
        self,
        layer_size: int = 7,
        input_channels: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
        renorm: str = "nvidia",
        enc1_bias: bool = False,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if layer_size < 4:
            raise ConfigError(
                f"layer_size must be >= 4 (the paper's 7x7, 5x5, 5x5, 3x3 encoder), got {layer_size}"
            )
        if len(widths) != 4 or min(widths) < 1:
            raise ConfigError(f"widths must be 4 positive channel counts (enc_1..enc_4), got {widths}")
        if renorm not in VARIANTS:
            raise ConfigError(f"renorm must be one of {VARIANTS}, got {renorm!r}")
        self.layer_size = layer_size
        self.input_channels = input_channels
        self.widths = widths
        self.renorm = renorm
        # channels of level i: 0 = the input image, 1..layer_size = enc_i outputs
        self.level_channels = [input_channels] + [widths[min(i, 4) - 1] for i in range(1, layer_size + 1)]
        ch = self.level_channels
        for i in range(1, layer_size + 1):
            k = _KERNELS[i - 1] if i <= 3 else 3
            self.add_module(f"enc_{i}", PConvBlock(
                ch[i - 1], ch[i], k, 2, bn=i > 1, activation="relu",
                bias=enc1_bias and i == 1, renorm=renorm,
            ))
        for i in range(layer_size, 0, -1):
            last = i == 1
            self.add_module(f"dec_{i}", PConvBlock(
                ch[i] + ch[i - 1], ch[i - 1], 3, 1, bn=not last,
                activation=None if last else "leaky", bias=last, renorm=renorm,
            ))
        self._freeze_enc_bn = False
        self._freeze_dec_bn = False

    def freeze_encoder_bn(self, freeze: bool = True) -> "PConvUNet":
        """Keep the encoder's BatchNorm layers in eval mode (running statistics), also under
        ``train()``: the paper's second training stage (fine-tuning at lr 5e-5). The affine
        parameters stay trainable, as in naoto0804's code; set ``requires_grad`` to fix them too."""
        return self.freeze_bn(encoder=freeze, decoder=self._freeze_dec_bn)

    def freeze_bn(self, *, encoder: bool, decoder: bool) -> "PConvUNet":
        """Choose which BatchNorm layers stay in eval mode under ``train()``. With both frozen the
        network trains exactly the function it computes at inference (no batch statistics), the
        affine parameters still trainable."""
        self._freeze_enc_bn, self._freeze_dec_bn = bool(encoder), bool(decoder)
        return self.train(self.training)

    def train(self, mode: bool = True) -> "PConvUNet":
        super().train(mode)
        for part, frozen in (("enc", self._freeze_enc_bn), ("dec", self._freeze_dec_bn)):
            if not frozen:
                continue
            for i in range(1, self.layer_size + 1):
                bn = getattr(self, f"{part}_{i}").bn
                if bn is not None:
                    bn.eval()
        return self

    def dummy_inputs(self, batch_size: int, generator: torch.Generator) -> tuple:
        """``(x, mask)`` at (2, 1) * 2**layer_size pixels: x = gt * mask, random pixel holes."""
        h, w = 2 ** self.layer_size * 2, 2 ** self.layer_size
        gt = torch.randn(batch_size, self.input_channels, h, w, generator=generator)
        mask = (torch.rand(batch_size, 1, h, w, generator=generator) > 0.3).float()
        mask = mask.expand(-1, self.input_channels, -1, -1).contiguous()
        return gt * mask, mask

    def _check(self, x: torch.Tensor, mask: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.input_channels:
            raise InputError(f"image must be (N, {self.input_channels}, H, W), got {tuple(x.shape)}")
        n, _, h, w = x.shape
        step = 2 ** self.layer_size
        if h % step or w % step:
            raise InputError(
                f"image size {h}x{w} must be a multiple of {step} (2**layer_size); pad or resize it"
            )
        if mask.dim() != 4 or mask.shape[0] != n or mask.shape[2:] != x.shape[2:] or (
            mask.shape[1] not in (1, self.input_channels)
        ):
            raise InputError(
                f"mask must be (N, {self.input_channels} or 1, H, W) matching the image "
                f"{tuple(x.shape)}, got {tuple(mask.shape)}"
            )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inpaint the holes of ``x``.

        Args:
            x: (N, input_channels, H, W) masked image ``gt * mask``; H, W multiples of
                ``2**layer_size``. Normalised as the weights expect (naoto0804: ImageNet
                mean/std; mmagic: [-1, 1]). Values in holes are ignored.
            mask: (N, input_channels, H, W) or (N, 1, H, W) (same as repeating it over the
                channels), 1 = valid, 0 = hole.

        Returns:
            ``(out, out_mask)``: out (N, input_channels, H, W) unbounded, in ``x``'s normalisation,
            meant to be composited as ``mask * x + (1 - mask) * out``; out_mask (N,
            input_channels, H, W) 0/1, 1 where the net could fill the pixel.
        """
        self._check(x, mask)
        ch = self.level_channels
        if mask.shape[1] == 1:
            count = mask.float() * self.input_channels
        else:
            count = mask.float().sum(1, keepdim=True)
        # CPU float32: channels-last features end to end (oneDNN's faster layout here, weights
        # cached in it, see imgsynth.layers.fast_conv); masks stay one-channel maps
        cl = cpu_fp32(x)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        hm = x * mask.to(x.dtype)
        # per level: masked features (for the next encoder layer and the skip), valid-channel count
        skips = [(hm, count)]
        m = mask
        # without autograd the block outputs are ours: mask them in place (no fresh tensor)
        inplace = not torch.is_grad_enabled()
        for i in range(1, self.layer_size + 1):
            h, m = getattr(self, f"enc_{i}")(hm, count, cl)
            hm = h.mul_(m) if inplace else h * m
            count = m.float() * ch[i]
            skips.append((hm, count))
        for i in range(self.layer_size, 0, -1):
            skip_hm, skip_count = skips[i - 1]
            h_in = _upsample_cat(hm, skip_hm) if cl else torch.cat(
                [F.interpolate(hm, scale_factor=2.0, mode="nearest"), skip_hm], 1
            )
            count = F.interpolate(count, scale_factor=2.0, mode="nearest") + skip_count
            h, m = getattr(self, f"dec_{i}")(h_in, count, cl)
            if i > 1:
                hm = h.mul_(m) if inplace else h * m
                count = m.float() * ch[i - 1]
        return h.contiguous(), m.expand(-1, self.input_channels, -1, -1)


# The layer itself, for configs, contract tests and the NVIDIA conformance cases.
register_model(
    "partial_conv2d",
    task="layer",
    tiny={"in_channels": 4, "out_channels": 8, "kernel_size": 3, "padding": 1},
    description="NVIDIA PartialConv2d (Liu et al. 2018, Eq. 1-2)",
)(PartialConv2d)
