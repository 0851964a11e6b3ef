"""Start a run from trained weights (``[model] init_from``): fine-tune any family.

The source is one of

- a training checkpoint (a ``.safetensors`` checkpoint file or a run folder, its newest
  checkpoint): G (its EMA when the run kept one) and D, with their constructor configs;
- an exported model folder (``model.safetensors`` + ``config.json``): G only;
- a card id (``imgsynth models list``): the bundled or cached weights the card describes,
  converted from the official format where the card says so (offline: nothing is downloaded
  here; ``imgsynth models fetch`` or a first ``sample``/``translate``/``inpaint`` run caches
  it): G only.

The family's architecture must be the source's. When the recipe's ``[model.generator]`` (or
``[model.discriminator]``) table is empty, the source's constructor config is used, so a
fine-tune recipe need not repeat the network's sizes; otherwise the shapes must match, and the
first key that does not is named in the error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from imgsynth.errors import ConfigError, ImgsynthError


@dataclass
class InitSource:
    """Weights to start from: G's (and D's where the source has D) with their configs."""

    what: str
    arch: str
    g_config: dict[str, Any]
    g_weights: dict[str, Tensor]
    d_config: dict[str, Any] | None = None
    d_weights: dict[str, Tensor] | None = None


def load_init_source(source: str, arch: str, task: str) -> InitSource:
    """Read ``source`` (checkpoint, run folder, export folder or card id) for a family of ``arch``."""
    from imgsynth.engine.loading import load_model
    from imgsynth.training.checkpoint import latest_checkpoint, load_checkpoint

    path = Path(source)
    where = f"model.init_from: {source!r}"
    export = path.is_dir() and (path / "config.json").is_file()
    if not export and (path.exists() or "/" in source or path.suffix == ".safetensors"):
        if path.is_dir():
            found = latest_checkpoint(path / "checkpoints") or latest_checkpoint(path)
            if found is None:
                raise ConfigError(f"{where}: no checkpoint, export or card there")
            path = found
        try:
            state = load_checkpoint(path)
        except ImgsynthError as exc:
            raise ConfigError(f"{where}: {str(exc).splitlines()[0]}") from None
        if state.get("arch") != arch:
            raise ConfigError(f"{where} is a {state.get('arch')!r} checkpoint, not {arch!r}")
        g = state["G_ema"] if state.get("G_ema") is not None else state["G"]
        return InitSource(f"checkpoint {path}", arch, dict(state["generator_config"]), g,
                          dict(state.get("discriminator_config") or {}), state.get("D"))
    try:
        loaded = (load_model(task, weights=path) if export
                  else load_model(task, model=source, offline=True))
    except ImgsynthError as exc:
        raise ConfigError(f"{where}: {str(exc).splitlines()[0]}") from None
    if loaded.arch != arch:
        raise ConfigError(f"{where} is a {loaded.arch!r} model, not {arch!r}")
    weights = {k: v.float() if v.is_floating_point() else v for k, v in loaded.model.state_dict().items()}
    return InitSource(f"export {path}" if export else f"card {source}", arch, dict(loaded.config), weights)


def first_mismatch(module: nn.Module, weights: dict[str, Tensor]) -> str | None:
    """The first key (in the module's order) that is missing, extra or of another shape, described."""
    own = module.state_dict()
    for key, value in own.items():
        if key not in weights:
            return f"{key} is missing from the source"
        if tuple(weights[key].shape) != tuple(value.shape):
            return f"{key} has shape {tuple(weights[key].shape)} in the source, {tuple(value.shape)} in the model"
    for key in weights:
        if key not in own:
            return f"{key} is in the source but not in the model"
    return None


def load_into(module: nn.Module, weights: dict[str, Tensor], what: str, part: str) -> None:
    """Load ``weights`` into ``module`` exactly, or ConfigError naming the first mismatched key."""
    problem = first_mismatch(module, weights)
    if problem is not None:
        raise ConfigError(f"model.init_from: the {part} of {what} does not fit [model.{part}]: {problem}")
    module.load_state_dict(weights)
