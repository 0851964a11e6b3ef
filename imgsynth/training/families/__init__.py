"""Training families: what the shared loop needs to know about one kind of model.

One module per family, named like the model's file in :mod:`imgsynth.models` (``dcgan``,
``gan``, ``progan``, ``stylegan``, ``stylegan2``, ``pix2pix``, ``pix2pixhd``, ``spade``,
``panoptic``, ``pconv``), so a model, its converter, its pipeline and its training family are
found by the same name in each layer. :class:`Family` (in :mod:`.base`) says what a family
provides; :mod:`.labelmaps` and :mod:`.vgg` hold what the translation families share.

Registered families: ``dcgan`` (Radford et al. 2016), ``gan`` (Goodfellow et al. 2014, MLP
networks), ``pix2pix`` (Isola et al. 2017, paired translation with a U-Net and a PatchGAN),
``stylegan`` (Karras et al. 2019, at constant resolution), ``stylegan2`` (Karras et al.
2020, with style mixing, lazy R1 and path-length regularisation),
``pix2pixhd`` (Wang et al. 2018) and ``spade`` (Park et al. 2019) for label maps, ``panoptic``
(Dundar et al. 2020) for panoptic maps, ``progan`` (Karras et al. 2018, progressive growing),
``pconv`` (Liu et al. 2018, inpainting with partial convolutions, reconstruction losses and
optionally an SN-PatchGAN term), ``vid2vid`` (Wang et al. 2018, video from clips with known flow).

A new family is a module here whose class carries ``@register_family("name")``, plus its name in
:data:`FAMILY_MODULES`; modules are imported when their family is first asked for.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable

from imgsynth.errors import ConfigError
from imgsynth.training.families.base import Family

__all__ = ["FAMILY_MODULES", "Family", "get_family", "list_families", "register_family"]

#: family name -> module that registers it (one module per family, named like its model file)
FAMILY_MODULES: dict[str, str] = {
    name: f"imgsynth.training.families.{name}"
    for name in ("dcgan", "gan", "panoptic", "pconv", "pix2pix", "pix2pixhd", "progan", "spade",
                 "stylegan", "stylegan2", "vid2vid")
}

_FAMILIES: dict[str, Callable[[], Family]] = {}


def register_family(name: str) -> Callable[[type[Family]], type[Family]]:
    """Class decorator adding a :class:`Family` under ``name``."""

    def deco(cls: type[Family]) -> type[Family]:
        _FAMILIES[name] = cls
        return cls

    return deco


def get_family(name: str) -> Family:
    """A fresh instance of family ``name`` or ConfigError listing the known ones."""
    if name not in _FAMILIES and name in FAMILY_MODULES:
        importlib.import_module(FAMILY_MODULES[name])
    try:
        return _FAMILIES[name]()
    except KeyError:
        close = difflib.get_close_matches(name, list_families(), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(list_families())}"
        raise ConfigError(f"unknown model.family {name!r}; {hint}") from None


def list_families() -> list[str]:
    """Names of the known families (registered or importable)."""
    return sorted(set(_FAMILIES) | set(FAMILY_MODULES))

