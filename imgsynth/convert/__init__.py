"""Converters from official checkpoint formats to imgsynth state dicts.

Each module here holds pure functions ``fn(checkpoint, config) -> state_dict``: ``checkpoint`` is
what the official file holds once safely deserialised (a dict of tensors, possibly nested),
``config`` the constructor kwargs of the target architecture, and the result loads with
``load_state_dict(strict=True)`` into ``build_model(arch, config)``. Cards name a converter as
``"module:function"`` relative to this package (e.g. ``"pconv:from_naoto"``).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from imgsynth.errors import CardError

Converter = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]


def get_converter(spec: str) -> Converter:
    """Resolve ``"module:function"`` to a converter function in ``imgsynth.convert``."""
    if ":" not in spec:
        raise CardError(f"converter {spec!r} must look like 'module:function'")
    mod, fn = spec.split(":", 1)
    try:
        module = importlib.import_module(f"imgsynth.convert.{mod}")
        return getattr(module, fn)
    except (ImportError, AttributeError):
        raise CardError(f"converter {spec!r} does not exist in imgsynth.convert") from None
