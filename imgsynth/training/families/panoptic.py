"""The ``panoptic`` training family: panoptic-based synthesis (Dundar et al. 2020) with :mod:`imgsynth.models.panoptic`."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from imgsynth.errors import ConfigError
from imgsynth.training.config import TrainConfig
from imgsynth.training.families import register_family
from imgsynth.training.families.base import init_xavier
from imgsynth.training.families.labelmaps import LabelMapFamily


@register_family("panoptic")
class PanopticFamily(LabelMapFamily):
    """Panoptic-based image synthesis (Dundar et al. 2020): :class:`imgsynth.models.panoptic.PanopticGenerator`.

    G gets the one-hot semantic map and the panoptic id map of each item (the data must give
    ``panoptic`` maps: ``data.source = "mosaics"``); D is SPADE's conditional multi-scale
    discriminator on one-hot semantics + the instance-edge map of the panoptic ids + image, the
    input a SPADE baseline's D gets on the same data, so a comparison differs in G only. Same
    setup as the ``spade`` family (hinge, feature matching, TTUR, the VGG-19 loss when
    ``model.options.vgg_weights`` is given; no encoder).
    """

    name = "panoptic"
    arch = "panoptic"

    def label_channels(self, config: dict[str, Any]) -> int:
        return int(config["label_nc"]) + int(bool(config.get("contain_dontcare", False)))

    def _dontcare(self, cfg: TrainConfig) -> bool:
        return bool(cfg.model.generator.get("contain_dontcare", False))  # PanopticGenerator's default

    def generator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        self._check_data(cfg, dataset)
        if not getattr(dataset, "has_instances", False) or not hasattr(dataset, "mosaics"):
            raise ConfigError("the panoptic family needs panoptic maps: set data.source = \"mosaics\"")
        if int(dataset.channels_b) != 3:
            raise ConfigError("the panoptic family makes RGB images: set data.channels = 3")
        # square crops: PanopticGenerator's default aspect ratio is Cityscapes' 2.0
        return {"label_nc": cfg.data.label_nc, "crop_size": cfg.data.resolution, "aspect_ratio": 1.0}

    def discriminator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        return {"input_nc": cfg.data.label_nc + int(self._dontcare(cfg)) + 1 + 3}

    def init_weights(self, module: nn.Module) -> None:
        init_xavier(module)

    def generator_inputs(self, G: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> tuple:
        return (self._encode(batch), batch["panoptic"][:, 0])

    def d_input(self, batch: dict[str, Tensor], images: Tensor) -> Tensor:
        from imgsynth.layers.label_maps import instance_edges

        edges = instance_edges(batch["panoptic"])
        return torch.cat([self._encode(batch).to(images.dtype), edges.to(images.dtype), images], 1)

    def grid_inputs(self, G: nn.Module, seeds: list[int], dataset: Any) -> tuple:
        items = self._fixed_items(seeds, dataset)
        ref = next(G.parameters())
        batch = {k: torch.stack([it[k] for it in items]).to(ref.device) for k in ("label", "panoptic")}
        return self.generator_inputs(G, batch, torch.Generator())
