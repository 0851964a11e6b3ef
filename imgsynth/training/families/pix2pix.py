"""The ``pix2pix`` training family: paired translation (Isola et al. 2017) with :mod:`imgsynth.models.pix2pix`."""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import Tensor, nn

from imgsynth.training.config import TrainConfig
from imgsynth.training.families import register_family
from imgsynth.training.families.base import Family, init_normal
from imgsynth.training.families.vgg import VGGLoss


@register_family("pix2pix")
class Pix2PixFamily(VGGLoss, Family):
    """pix2pix (Isola et al. 2017): U-Net G(a) -> b, PatchGAN D on (a, b) pairs, GAN + lambda * L1.

    Set ``loss.l1 = 100`` and ``loss.gan = "vanilla"`` (their Eq. 4; the G side of our "vanilla"
    is saturating, pix2pix's BCE with real labels is ``nonsaturating``) or ``lsgan``.
    ``model.options.vgg_weights`` adds the VGG-19 perceptual loss of pix2pixHD (not in the
    pix2pix paper; see :class:`VGGLoss`).
    """

    name = "pix2pix"
    arch = "pix2pix_unet"
    task = "translate"
    data_kind = "paired"
    feature_matching_mode = "paired"

    def discriminator_class(self) -> Any:
        return importlib.import_module("imgsynth.layers.discriminators").NLayerDiscriminator

    def generator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        return {"input_nc": int(dataset.channels_a), "output_nc": int(dataset.channels_b)}

    def discriminator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        return {"input_nc": int(dataset.channels_a) + int(dataset.channels_b)}

    def init_weights(self, module: nn.Module) -> None:
        init_normal(module)

    def generator_inputs(self, G: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> tuple:
        # pix2pix has no z: its stochasticity is dropout in G (Isola et al. 2017, Sec. 3.1)
        return (batch["a"],)

    def real(self, batch: dict[str, Tensor]) -> Tensor:
        return batch["b"]

    def d_input(self, batch: dict[str, Tensor], images: Tensor) -> Tensor:
        # conditional D sees the input beside the output (Eq. 1)
        return torch.cat([batch["a"].to(images.dtype), images], 1)

    def extra_g_losses(self, cfg: TrainConfig, batch: dict[str, Tensor], fake: Tensor) -> dict[str, Tensor]:
        return self.paired_losses(cfg, fake, batch["b"])

    def grid_inputs(self, G: nn.Module, seeds: list[int], dataset: Any) -> tuple:
        """The inputs of the first dataset items (epoch-0 augmentation), one per seed."""
        return (torch.stack([item["a"] for item in self._fixed_items(seeds, dataset)]),)

    def grid_images(self, G: nn.Module, inputs: tuple, seeds: list[int], dataset: Any) -> tuple[Tensor, int]:
        """Rows of input | output | target."""
        fake = G(*inputs).float()
        items = self._fixed_items(seeds, dataset)
        target = torch.stack([item["b"] for item in items]).to(fake.device)
        a = inputs[0].float()

        def rgb(x: Tensor) -> Tensor:
            return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]

        rows = torch.stack([rgb(a), rgb(fake), rgb(target)], 1).flatten(0, 1)
        return rows, 3

    def io(self, cfg: TrainConfig, generator_config: dict[str, Any], channels: int) -> dict[str, Any]:
        io = super().io(cfg, generator_config, channels)
        # derived-input sources record their kind so that translate applies the same conversion
        derived = cfg.data.derive if cfg.data.source == "clips" else cfg.data.source
        io["input"] = derived if derived in ("edges", "gray", "clusters") else "image"
        if derived == "clusters":
            from imgsynth.pipelines.translate import CLUSTERS

            io["clusters"] = CLUSTERS
        if generator_config.get("norm", "batch") == "batch" and cfg.data.batch_size == 1:
            # trained on single images, BatchNorm acts as instance norm: keep batch statistics at test
            # time, as pix2pix's test.py does
            io["batchnorm"] = "batch"
        return io
