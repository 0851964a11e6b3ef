"""The ``dcgan`` training family: DCGAN (Radford et al. 2016) with :mod:`imgsynth.models.dcgan`."""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from imgsynth.training.families import register_family
from imgsynth.training.families.base import Family, init_normal


@register_family("dcgan")
class DCGANFamily(Family):
    """DCGAN (Radford et al. 2016): :class:`imgsynth.models.dcgan.DCGANGenerator` / ``DCGANDiscriminator``."""

    name = "dcgan"
    arch = "dcgan"

    def discriminator_class(self) -> Any:
        return importlib.import_module("imgsynth.models.dcgan").DCGANDiscriminator

    def init_weights(self, module: nn.Module) -> None:
        init_normal(module)
