"""PatchGAN and multi-scale discriminators for training translation models.

- :class:`NLayerDiscriminator`: the PatchGAN of pix2pix (Isola et al., CVPR 2017, Sec. 2.2.2 and
  appendix 6.1.2): ``n_layers`` 4x4 stride-2 convs, one 4x4 stride-1 conv and a 4x4 conv to one
  logit per overlapping patch (``n_layers=3`` is the 70x70 PatchGAN). Official code:
  https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix (BSD licence).
- :class:`MultiscaleDiscriminator`: ``num_D`` PatchGANs on an image pyramid made with
  AvgPool2d(3, stride 2, padding 1, count_include_pad=False) (pix2pixHD, Wang et al., CVPR 2018,
  Sec. 3.2, https://github.com/NVIDIA/pix2pixHD, CC BY-NC-SA 4.0; reused by SPADE, Park et al.,
  CVPR 2019). Each scale can return its intermediate features for the feature-matching loss
  (pix2pixHD Eq. 4; :func:`imgsynth.training.losses.feature_matching`).

Configurations of the three papers (``n_layers`` counts the stride-2 convs):

=========  =========  =======  ==========================================  =====
paper      n_layers   padding  norm                                        num_D
=========  =========  =======  ==========================================  =====
pix2pix    3          1        batch                                       1
pix2pixHD  3          2        instance                                    2
SPADE      3          2        instance, ``spectral_norm=True``            2
=========  =========  =======  ==========================================  =====

(SPADE's ``n_layers_D=4`` counts the stride-1 conv too; its layers are the same.)

Deviations from the original:
- Channels are ``min(ndf * 2**i, max_channels)`` (pix2pixHD/SPADE); pix2pix's ``ndf * min(2**i, 8)``
  is the same for ``ndf=64``.
- A conv has a bias only when no normalisation follows it (BatchNorm/InstanceNorm cancel a bias);
  pix2pixHD keeps such biases, pix2pix keeps them before InstanceNorm. This changes parameter
  names/counts, not what the network can represent.
- No final sigmoid (pix2pixHD ``use_sigmoid``): the losses in :mod:`imgsynth.training.losses`
  take logits.
- In the multi-scale discriminator ``scales[0]`` sees the full-resolution input (as in SPADE;
  pix2pixHD stores the full-resolution one last).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from imgsynth.errors import ConfigError

NORMS = ("batch", "instance", "none")


def _norm(norm: str, channels: int) -> nn.Module | None:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    return None


class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator: one real/fake logit per receptive-field patch.

    Args:
        input_nc: input channels (for conditional GANs: condition and image concatenated).
        ndf: channels of the first conv.
        n_layers: stride-2 4x4 convs (3: 70x70 patches).
        norm: ``"batch"``, ``"instance"`` or ``"none"``; not applied after the first conv.
        spectral_norm: wrap every conv in spectral normalisation (Miyato et al. 2018), as SPADE.
        padding: 4x4 conv padding, 1 (pix2pix: 256 -> 30x30 logits) or 2 (pix2pixHD, SPADE).
        max_channels: channel cap of the deeper convs.
    """

    def __init__(
        self,
        input_nc: int,
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = "batch",
        spectral_norm: bool = False,
        padding: int = 1,
        max_channels: int = 512,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ConfigError(f"discriminator norm must be one of {', '.join(NORMS)}, got {norm!r}")
        if n_layers < 1:
            raise ConfigError(f"discriminator n_layers must be >= 1, got {n_layers}")
        self.n_layers = n_layers

        def layer(cin: int, cout: int, stride: int, normed: bool, act: bool) -> nn.Sequential:
            norm_layer = _norm(norm, cout) if normed else None
            conv = nn.Conv2d(cin, cout, 4, stride=stride, padding=padding, bias=norm_layer is None)
            mods: list[nn.Module] = [_spectral_norm(conv) if spectral_norm else conv]
            if norm_layer is not None:
                mods.append(norm_layer)
            if act:
                mods.append(nn.LeakyReLU(0.2))
            return nn.Sequential(*mods)

        widths = [min(ndf * 2**i, max_channels) for i in range(n_layers + 1)]
        layers = [layer(input_nc, widths[0], 2, normed=False, act=True)]
        for i in range(1, n_layers):
            layers.append(layer(widths[i - 1], widths[i], 2, normed=True, act=True))
        layers.append(layer(widths[n_layers - 1], widths[n_layers], 1, normed=True, act=True))
        layers.append(layer(widths[n_layers], 1, 1, normed=False, act=False))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor | list[torch.Tensor]:
        """(N, input_nc, H, W) -> (N, 1, H', W') patch logits (unbounded).

        With ``return_features`` the outputs of all ``n_layers + 2`` layers, logits last (the
        others are the features pix2pixHD matches).
        """
        feats = []
        h = x
        for layer in self.layers:
            h = layer(h)
            feats.append(h)
        return feats if return_features else h


class MultiscaleDiscriminator(nn.Module):
    """``num_D`` PatchGANs, scale i seeing the input average-pooled i times (pix2pixHD Sec. 3.2).

    Args:
        input_nc, ndf, n_layers, norm, spectral_norm, padding, max_channels: per-scale
            :class:`NLayerDiscriminator` options (defaults: pix2pixHD's).
        num_D: number of scales (pix2pixHD and SPADE: 2; pix2pixHD's option default 2).
    """

    def __init__(
        self,
        input_nc: int,
        num_D: int = 2,
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = "instance",
        spectral_norm: bool = False,
        padding: int = 2,
        max_channels: int = 512,
    ) -> None:
        super().__init__()
        if num_D < 1:
            raise ConfigError(f"num_D must be >= 1, got {num_D}")
        self.scales = nn.ModuleList(
            NLayerDiscriminator(input_nc, ndf, n_layers, norm, spectral_norm, padding, max_channels)
            for _ in range(num_D)
        )

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> list[torch.Tensor] | list[list[torch.Tensor]]:
        """(N, input_nc, H, W) -> one result per scale, full resolution first: the (N, 1, h, w)
        logits, or with ``return_features`` each scale's list of layer outputs (logits last)."""
        out = []
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            out.append(d(x, return_features))
        return out
