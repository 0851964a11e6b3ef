"""The ``gan`` training family: the original GAN (Goodfellow et al. 2014) with :mod:`imgsynth.models.gan`."""

from __future__ import annotations

import importlib
from typing import Any

from imgsynth.training.families import register_family
from imgsynth.training.families.base import Family


@register_family("gan")
class GANFamily(Family):
    """The original GAN (Goodfellow et al. 2014) with MLP networks from :mod:`imgsynth.models.gan`."""

    name = "gan"
    arch = "gan"

    def discriminator_class(self) -> Any:
        return importlib.import_module("imgsynth.models.gan").GANDiscriminator
