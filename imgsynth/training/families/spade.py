"""The ``spade`` training family: SPADE (Park et al. 2019) with :mod:`imgsynth.models.spade`."""

from __future__ import annotations

from typing import Any

from torch import nn

from imgsynth.errors import ConfigError
from imgsynth.training.config import TrainConfig
from imgsynth.training.families import register_family
from imgsynth.training.families.base import init_xavier
from imgsynth.training.families.labelmaps import LabelMapFamily, uses_instances


@register_family("spade")
class SPADEFamily(LabelMapFamily):
    """SPADE (Park et al. 2019) generator with the multi-scale discriminator.

    Paper setup: ``loss.gan = "hinge"``, ``loss.feature_matching = 10``, TTUR ``g_lr = 1e-4``,
    ``d_lr = 4e-4``, ``betas = [0, 0.9]``, D with ``spectral_norm = true`` and instance norm, G
    with ``spectral_norm = true``. Square crops only (``crop_size`` = ``data.resolution``); no
    VAE style encoder (``use_vae`` must stay off); RGB targets.
    """

    name = "spade"
    arch = "spade"

    def label_channels(self, config: dict[str, Any]) -> int:
        return int(config["label_nc"]) + int(bool(config.get("contain_dontcare", True)))

    def generator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        self._check_data(cfg, dataset)
        if int(dataset.channels_b) != 3:
            raise ConfigError("the spade family makes RGB images: set data.channels = 3")
        return {"label_nc": cfg.data.label_nc, "use_instance": uses_instances(cfg, dataset),
                "crop_size": cfg.data.resolution}

    def generator_config(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        config = super().generator_config(cfg, dataset)
        if config.get("use_vae"):
            raise ConfigError("the spade family does not train the VAE style encoder; remove use_vae")
        return config

    def discriminator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        dontcare = bool(cfg.model.generator.get("contain_dontcare", True))  # SPADEGenerator's default
        return {"input_nc": cfg.data.label_nc + int(dontcare) + int(uses_instances(cfg, dataset)) + 3}

    def init_weights(self, module: nn.Module) -> None:
        init_xavier(module)
