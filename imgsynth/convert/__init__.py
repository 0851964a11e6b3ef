"""Converters from official checkpoint formats to imgsynth state dicts.

Each module here holds pure functions ``fn(checkpoint, config) -> state_dict``: ``checkpoint`` is
what the official file holds once safely deserialised (a dict of tensors, possibly nested),
``config`` the constructor kwargs of the target architecture, and the result loads with
``load_state_dict(strict=True)`` into ``build_model(arch, config)``. Cards name a converter as
``"module:function"`` relative to this package (e.g. ``"pconv:from_naoto"``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable

from imgsynth.errors import CardError, WeightsError

if TYPE_CHECKING:
    import torch

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


def check_state_dict(
    state_dict: dict[str, torch.Tensor], arch: str, config: dict[str, Any], source: str, unknown: list[str] = ()  # type: ignore[assignment]
) -> dict[str, torch.Tensor]:
    """Raise :class:`WeightsError` unless ``state_dict`` has exactly the keys and shapes of ``arch(config)``.

    Returns the tensors in the model's key order. The reference model is built on the ``meta``
    device, so this costs no memory. ``unknown`` lists source keys a converter could not map.
    """
    import torch

    from imgsynth.models.registry import build_model

    with torch.device("meta"):
        expected = build_model(arch, config).state_dict()
    missing = [k for k in expected if k not in state_dict]
    extra = list(unknown) + [k for k in state_dict if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s) ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
        if extra:
            parts.append(f"unexpected {len(extra)} key(s) ({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''})")
        raise WeightsError(
            f"{source}: checkpoint does not fit {arch} {config}: {'; '.join(parts)}; "
            "check the architecture options (infer_config reads them off the checkpoint)"
        )
    for k, ref in expected.items():
        if tuple(state_dict[k].shape) != tuple(ref.shape):
            raise WeightsError(
                f"{source}: {k} has shape {tuple(state_dict[k].shape)}, {arch} {config} needs {tuple(ref.shape)}"
            )
    return {k: state_dict[k] for k in expected}
