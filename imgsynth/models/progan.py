"""Progressive GAN generator and discriminator.

Paper: Karras, Aila, Laine, Lehtinen, "Progressive Growing of GANs for Improved Quality, Stability,
and Variation", ICLR 2018 (arXiv:1710.10196).
Official code: https://github.com/tkarras/progressive_growing_of_gans (TensorFlow, CC BY-NC 4.0).
Weights matched here: the PyTorch re-implementation of the GAN zoo,
https://github.com/facebookresearch/pytorch_GAN_zoo (BSD-3-Clause), whose torch.hub ``PGAN``
checkpoints (``celebAHQ-256``, ``celebAHQ-512``, ...) load into :class:`ProGANGenerator` through
``imgsynth.convert.progan``. Parameter names (``formatLayer``, ``groupScale0``, ``scaleLayers``,
``toRGBLayers``, ``<layer>.module.weight``) are the GAN zoo's, so its ``netG``/``avgG`` state dicts
load unchanged.

Generator (GAN zoo ``GNet``): pixel-norm(z) -> equalized linear to (d0, 4, 4) -> lrelu -> pixel-norm
-> 3x3 conv -> lrelu -> pixel-norm; per further scale: nearest x2 upsampling -> 2 x [3x3 conv ->
lrelu -> pixel-norm]; 1x1 toRGB of the last scale. During growth the new scale fades in (Sec. 2,
Fig. 2): ``alpha * up(toRGB[-2](x before the last scale)) + (1 - alpha) * toRGB[-1](x)``.

Deviations from the original:
- The nearest-neighbour upsampling and the 3x3 conv after it run as one stride-2 transposed conv
  with summed 4x4 taps (2.25x fewer multiply-adds, same values up to float rounding), and the He
  constant is folded into the weights; on CPU the feature maps are kept channels-last.
- The discriminator's minibatch-stddev layer follows Karras' TF semantics (biased variance, strided
  groups); the GAN zoo uses the unbiased variance. The discriminator fades in from the first added
  scale; the GAN zoo only blends once two scales have been added.
- ``alpha`` is a forward argument instead of state set with ``setNewAlpha``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imgsynth.layers.equalized import EqualizedConv2d, EqualizedLinear, MinibatchStdDev, pixel_norm
from imgsynth.models.registry import register_model

__all__ = ["ProGANDiscriminator", "ProGANGenerator"]

_ACTIVATIONS = ("none", "tanh")

# Released CelebA-HQ 256 config (GAN zoo standard_configurations/pgan_config.py, 7 scales).
_CELEBAHQ256 = (512, 512, 512, 512, 256, 128, 64)


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return alpha


@register_model("progan", task="sample", tiny={"z_dim": 8, "channels": [8, 8, 4]})
class ProGANGenerator(nn.Module):
    """Progressive GAN generator (GAN-zoo ``PGAN`` layout), one scale per entry of ``channels``.

    Args:
        z_dim: latent size (512 for the released models).
        channels: feature depth per scale, from 4x4 upwards; ``len(channels)`` scales give
            ``4 * 2**(len(channels) - 1)`` pixels. Default: CelebA-HQ 256.
        img_channels: 3 for RGB, 1 for greyscale.
        negative_slope: leaky-ReLU slope.
        use_pixel_norm: pixel-wise feature normalisation on z and after every conv (Eq. 2).
        output_activation: ``"none"`` (WGAN-GP models such as the released ones; raw output,
            clamp to [-1, 1] to view) or ``"tanh"`` (GAN-zoo models trained with the DCGAN/MSE loss).
    """

    def __init__(
        self,
        z_dim: int = 512,
        channels: Sequence[int] = _CELEBAHQ256,
        img_channels: int = 3,
        negative_slope: float = 0.2,
        use_pixel_norm: bool = True,
        output_activation: str = "none",
    ) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1:
            raise ValueError("channels needs at least one positive depth")
        if output_activation not in _ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {_ACTIVATIONS}, got {output_activation!r}")
        self.z_dim = z_dim
        self.c_dim = 0
        self.channels: list[int] = [channels[0]]
        self.img_channels = img_channels
        self.negative_slope = negative_slope
        self.use_pixel_norm = use_pixel_norm
        self.output_activation = output_activation

        # Registration order gives the GAN zoo's state_dict key order.
        self.scaleLayers = nn.ModuleList()
        self.toRGBLayers = nn.ModuleList([EqualizedConv2d(channels[0], img_channels, 1)])
        self.formatLayer = EqualizedLinear(z_dim, 16 * channels[0])
        self.groupScale0 = nn.ModuleList([EqualizedConv2d(channels[0], channels[0], 3, padding=1)])
        for depth in channels[1:]:
            self.grow(depth)

    @property
    def img_resolution(self) -> int:
        """Output side in pixels at the current number of scales."""
        return 4 * 2 ** len(self.scaleLayers)

    def grow(self, depth: int) -> None:
        """Add a scale of ``depth`` channels, doubling the output resolution.

        The new layers start with N(0, 1) weights and zero biases (GAN-zoo init) on the device and
        dtype of the existing ones; ``self.channels`` records the new depth so that the constructor
        config ``channels=self.channels`` rebuilds the grown network.
        """
        ref = self.formatLayer.module.weight
        block = nn.ModuleList(
            [
                EqualizedConv2d(self.channels[-1], depth, 3, padding=1, up=2),
                EqualizedConv2d(depth, depth, 3, padding=1),
            ]
        )
        to_rgb = EqualizedConv2d(depth, self.img_channels, 1)
        self.scaleLayers.append(block.to(ref.device, ref.dtype))
        self.toRGBLayers.append(to_rgb.to(ref.device, ref.dtype))
        self.channels.append(int(depth))

    def _act(self, x: Tensor) -> Tensor:
        # x is always a fresh layer output here, so in-place ops only touch our own buffer.
        x = F.leaky_relu(x, self.negative_slope, inplace=True)
        if self.use_pixel_norm:
            x = pixel_norm(x, inplace=not torch.is_grad_enabled())
        return x

    def forward(self, z: Tensor, alpha: float = 0.0) -> Tensor:
        """Generate images.

        Args:
            z: (N, z_dim) latents ~ N(0, 1) (a trailing (1, 1) is accepted too).
            alpha: fade-in weight of the previous scale's output in [0, 1]; 0 = fully grown (the
                released state), ignored when there is a single scale.

        Returns:
            (N, img_channels, R, R) float, R = ``img_resolution``; unbounded for
            ``output_activation="none"`` (roughly [-1, 1]), in [-1, 1] for ``"tanh"``.
        """
        alpha = _check_alpha(alpha)
        n_scales = len(self.scaleLayers)
        blend = alpha > 0.0 and n_scales > 0
        x = z.reshape(z.shape[0], -1)
        if self.use_pixel_norm:
            x = pixel_norm(x)
        x = self._act(self.formatLayer(x).view(x.shape[0], self.channels[0], 4, 4))
        if x.device.type == "cpu":
            # oneDNN's (transposed) convs are markedly faster on channels-last inputs.
            x = x.contiguous(memory_format=torch.channels_last)
        x = self._act(self.groupScale0[0](x))
        y = self.toRGBLayers[-2](x) if blend and n_scales == 1 else None
        for scale, (conv_up, conv) in enumerate(self.scaleLayers):
            x = self._act(conv(self._act(conv_up(x))))
            if blend and scale == n_scales - 2:
                y = self.toRGBLayers[-2](x)
        x = self.toRGBLayers[-1](x)
        if y is not None:
            x = torch.lerp(x, F.interpolate(y, scale_factor=2, mode="nearest"), alpha)
        if self.output_activation == "tanh":
            x = torch.tanh(x)
        return x.contiguous()

    def dummy_inputs(self, batch_size: int, generator: torch.Generator) -> tuple:
        """``(z,)`` with z of shape (batch_size, z_dim) ~ N(0, 1) on the parameters' device."""
        ref = self.formatLayer.module.weight
        z = torch.randn(batch_size, self.z_dim, generator=generator)
        return (z.to(ref.device, ref.dtype),)


class ProGANDiscriminator(nn.Module):
    """Progressive GAN discriminator (GAN-zoo ``DNet`` layout), mirror of :class:`ProGANGenerator`.

    Args:
        channels: feature depth per scale from 4x4 upwards, as the generator's.
        img_channels: input channels.
        negative_slope: leaky-ReLU slope.
        minibatch_std: append the minibatch standard deviation before the 4x4 block (Sec. 3).
        group_size: minibatch-stddev group size.
        out_features: size of the decision layer (1 for WGAN-GP / non-saturating losses).
    """

    def __init__(
        self,
        channels: Sequence[int] = _CELEBAHQ256,
        img_channels: int = 3,
        negative_slope: float = 0.2,
        minibatch_std: bool = True,
        group_size: int = 4,
        out_features: int = 1,
    ) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1:
            raise ValueError("channels needs at least one positive depth")
        d0 = channels[0]
        self.channels: list[int] = [d0]
        self.img_channels = img_channels
        self.negative_slope = negative_slope
        self.scaleLayers = nn.ModuleList()
        self.fromRGBLayers = nn.ModuleList([EqualizedConv2d(img_channels, d0, 1)])
        self.mbstd = MinibatchStdDev(group_size) if minibatch_std else None
        self.decisionLayer = EqualizedLinear(d0, out_features)
        self.groupScaleZero = nn.ModuleList(
            [
                EqualizedConv2d(d0 + (1 if minibatch_std else 0), d0, 3, padding=1),
                EqualizedLinear(16 * d0, d0),
            ]
        )
        for depth in channels[1:]:
            self.grow(depth)

    @property
    def img_resolution(self) -> int:
        """Input side in pixels at the current number of scales."""
        return 4 * 2 ** len(self.scaleLayers)

    def grow(self, depth: int) -> None:
        """Add an input scale of ``depth`` channels (doubles the expected input resolution)."""
        ref = self.decisionLayer.module.weight
        block = nn.ModuleList(
            [
                EqualizedConv2d(depth, depth, 3, padding=1),
                EqualizedConv2d(depth, self.channels[-1], 3, padding=1),
            ]
        )
        from_rgb = EqualizedConv2d(self.img_channels, depth, 1)
        self.scaleLayers.append(block.to(ref.device, ref.dtype))
        self.fromRGBLayers.append(from_rgb.to(ref.device, ref.dtype))
        self.channels.append(int(depth))

    def _lrelu(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)

    def forward(self, img: Tensor, alpha: float = 0.0) -> Tensor:
        """Score images.

        Args:
            img: (N, img_channels, R, R), R = ``img_resolution``, values in [-1, 1].
            alpha: fade-in weight of the downsampled path through the previous scale's fromRGB.

        Returns:
            (N, out_features) raw scores (logits / critic values).
        """
        alpha = _check_alpha(alpha)
        expected = self.img_resolution
        if img.shape[-2:] != (expected, expected):
            raise ValueError(f"expected {expected}x{expected} images, got {tuple(img.shape[-2:])}")
        y = None
        if alpha > 0.0 and self.scaleLayers:
            y = self._lrelu(self.fromRGBLayers[-2](F.avg_pool2d(img, 2)))
        x = self._lrelu(self.fromRGBLayers[-1](img))
        for i, (conv_a, conv_b) in enumerate(reversed(self.scaleLayers)):
            x = F.avg_pool2d(self._lrelu(conv_b(self._lrelu(conv_a(x)))), 2)
            if i == 0 and y is not None:
                x = torch.lerp(x, y, alpha)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self._lrelu(self.groupScaleZero[0](x))
        x = self._lrelu(self.groupScaleZero[1](x.flatten(1)))
        return self.decisionLayer(x)

    def dummy_inputs(self, batch_size: int, generator: torch.Generator) -> tuple:
        """``(img,)`` with a random (batch_size, img_channels, R, R) image in [-1, 1]."""
        ref = self.decisionLayer.module.weight
        r = self.img_resolution
        img = torch.rand(batch_size, self.img_channels, r, r, generator=generator) * 2 - 1
        return (img.to(ref.device, ref.dtype),)

