"""The original fully-connected GAN generator and discriminator.

Paper: Goodfellow, Pouget-Abadie, Mirza, Xu, Warde-Farley, Ozair, Courville, Bengio, "Generative
Adversarial Nets", NeurIPS 2014 (arXiv:1406.2661).
Official code: https://github.com/goodfeli/adversarial (pylearn2 / Theano, BSD-3-Clause).
No official checkpoint exists (the paper's models were never released in a loadable form), so
there is no converter; imgsynth weights for this architecture come from ``imgsynth train``.

Generator: z -> [Linear -> ReLU] per hidden size -> Linear -> tanh -> (C, H, W) image.
Discriminator: image -> flatten -> [Linear -> LeakyReLU(0.2) -> Dropout] per hidden size ->
Linear -> one logit.

Deviations from the original:
- tanh output in [-1, 1] (the imgsynth image convention) instead of the paper's sigmoid in [0, 1].
- The discriminator uses LeakyReLU instead of maxout units and returns a logit; losses apply
  ``binary_cross_entropy_with_logits`` rather than a sigmoid inside the network. Dropout is kept
  (the paper uses it; its rate is not given there, 0.3 is our default).
- Hidden sizes are configurable; the defaults (256-512-1024) are the common MNIST-sized setting,
  not the paper's exact pylearn2 configuration.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from imgsynth.models.registry import register_model

__all__ = ["GANDiscriminator", "GANGenerator"]


@register_model(
    "gan",
    task="sample",
    tiny={"z_dim": 8, "hidden_sizes": [16, 32], "img_channels": 1, "img_resolution": 8},
)
class GANGenerator(nn.Module):
    """Fully-connected GAN generator (Goodfellow et al. 2014).

    Args:
        z_dim: latent size.
        hidden_sizes: widths of the hidden ReLU layers, in order.
        img_channels: output channels.
        img_resolution: output side (square images).
    """

    def __init__(
        self,
        z_dim: int = 100,
        hidden_sizes: Sequence[int] = (256, 512, 1024),
        img_channels: int = 1,
        img_resolution: int = 28,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = 0
        self.hidden_sizes = [int(h) for h in hidden_sizes]
        self.img_channels = img_channels
        self.img_resolution = img_resolution
        layers: list[nn.Module] = []
        width = z_dim
        for hidden in self.hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        layers += [nn.Linear(width, img_channels * img_resolution * img_resolution), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        """(N, z_dim) latents ~ N(0, 1) -> (N, img_channels, R, R) images in [-1, 1]."""
        img = self.net(z.reshape(z.shape[0], self.z_dim))
        return img.view(z.shape[0], self.img_channels, self.img_resolution, self.img_resolution)

    def dummy_inputs(self, batch_size: int, generator: torch.Generator) -> tuple:
        """``(z,)`` with z of shape (batch_size, z_dim) ~ N(0, 1) on the parameters' device."""
        ref = self.net[0].weight
        z = torch.randn(batch_size, self.z_dim, generator=generator)
        return (z.to(ref.device, ref.dtype),)


class GANDiscriminator(nn.Module):
    """Fully-connected GAN discriminator returning one logit per image.

    Args:
        hidden_sizes: widths of the hidden LeakyReLU layers, in order.
        img_channels, img_resolution: input image shape (C, R, R).
        dropout: dropout rate after every hidden layer (active in train mode only).
    """

    def __init__(
        self,
        hidden_sizes: Sequence[int] = (1024, 512, 256),
        img_channels: int = 1,
        img_resolution: int = 28,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.img_channels = img_channels
        self.img_resolution = img_resolution
        layers: list[nn.Module] = []
        width = img_channels * img_resolution * img_resolution
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, int(hidden)), nn.LeakyReLU(0.2, inplace=True), nn.Dropout(dropout)]
            width = int(hidden)
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, img: Tensor) -> Tensor:
        """(N, img_channels, R, R) images in [-1, 1] -> (N, 1) logits (real > 0)."""
        return self.net(img.flatten(1))
