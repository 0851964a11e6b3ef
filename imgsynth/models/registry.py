"""The architecture registry: name -> constructor, task and a tiny config for contract tests.

A model file registers its top-level class::

    @register_model("dcgan", task="sample", tiny={"z_dim": 8, "ngf": 4})
    class DCGANGenerator(nn.Module):
        def __init__(self, z_dim: int = 100, ngf: int = 64, ...): ...
        def dummy_inputs(self, batch_size: int, generator: torch.Generator) -> tuple: ...

Constructor keyword arguments *are* the config: they are saved as ``config.json`` beside the
weights and read back by :func:`build_model`. ``dummy_inputs`` returns positional inputs for a
forward pass (used by the contract tests over :func:`list_models`).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

from imgsynth.errors import ConfigError, UnknownModelError

TASKS = ("sample", "translate", "inpaint", "layer", "translate-video")


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows of one architecture."""

    name: str
    cls: Callable[..., Any]
    task: str
    tiny: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def build(self, config: dict[str, Any] | None = None) -> Any:
        """Instantiate with ``config`` (constructor kwargs), rejecting unknown keys."""
        config = dict(config or {})
        params = inspect.signature(self.cls).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            unknown = sorted(set(config) - set(params))
            if unknown:
                raise ConfigError(
                    f"architecture {self.name!r} has no option(s) {', '.join(unknown)}; "
                    f"known: {', '.join(p for p in params if p != 'self')}"
                )
        return self.cls(**config)


_REGISTRY: dict[str, ModelSpec] = {}
_DISCOVERED = False


def register_model(
    name: str, *, task: str, tiny: dict[str, Any] | None = None, description: str = ""
) -> Callable[[Any], Any]:
    """Class decorator that registers an architecture under ``name``."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")

    def deco(cls: Any) -> Any:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"architecture {name!r} registered twice")
        doc = description or (inspect.getdoc(cls) or "").split("\n", 1)[0]
        _REGISTRY[name] = ModelSpec(name, cls, task, dict(tiny or {}), doc)
        return cls

    return deco


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    import imgsynth.models as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name != "registry" and not info.name.startswith("_"):
            importlib.import_module(f"imgsynth.models.{info.name}")
    _DISCOVERED = True


def get_model(name: str) -> ModelSpec:
    """Return the spec of architecture ``name`` or raise with a close-match suggestion."""
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownModelError(f"unknown architecture {name!r}{hint}") from None


def build_model(name: str, config: dict[str, Any] | None = None) -> Any:
    """Instantiate architecture ``name`` with constructor kwargs ``config``."""
    return get_model(name).build(config)


def list_models(task: str | None = None) -> list[str]:
    """Names of all registered architectures, optionally only those of one task."""
    _discover()
    return sorted(n for n, s in _REGISTRY.items() if task is None or s.task == task)
