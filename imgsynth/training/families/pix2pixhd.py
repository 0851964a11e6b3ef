"""The ``pix2pixhd`` training family: pix2pixHD (Wang et al. 2018) with :mod:`imgsynth.models.pix2pixhd`."""

from __future__ import annotations

from typing import Any

from torch import nn

from imgsynth.training.config import TrainConfig
from imgsynth.training.families import register_family
from imgsynth.training.families.base import init_normal
from imgsynth.training.families.labelmaps import LabelMapFamily


@register_family("pix2pixhd")
class Pix2PixHDFamily(LabelMapFamily):
    """pix2pixHD (Wang et al. 2018) global generator G1 with a multi-scale discriminator.

    Paper setup: ``loss.gan = "lsgan"``, ``loss.feature_matching = 10``, D ``num_D = 2``, instance
    norm (the MultiscaleDiscriminator defaults). The local enhancer G2 and the instance-wise
    feature encoder are not trained here.
    """

    name = "pix2pixhd"
    arch = "pix2pixhd_global"

    def generator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        self._check_data(cfg, dataset)
        return {"label_nc": cfg.data.label_nc, "use_instance": bool(cfg.data.path_inst),
                "output_nc": int(dataset.channels_b)}

    def discriminator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        return {"input_nc": cfg.data.label_nc + int(bool(cfg.data.path_inst)) + int(dataset.channels_b)}

    def init_weights(self, module: nn.Module) -> None:
        init_normal(module)  # pix2pixHD weights_init: N(0, 0.02), norm scales N(1, 0.02)
