"""Turning ``--model`` / ``--weights`` into a ready model on a device.

A model comes from a card (bundled, Hub or official URL weights, or a classical method with no
weights) or from a folder written by ``imgsynth train --export``::

    DIR/config.json        {"format": "imgsynth-weights", "version": 1, "arch": ..., "task": ...,
                            "config": {constructor kwargs}, "io": {...}, "license": ...}
    DIR/model.safetensors  build_model(arch, config).state_dict()
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgsynth.engine.cards import Card, default_card, get_card, load_cards
from imgsynth.engine.fetch import resolve_weights
from imgsynth.errors import UsageError, WeightsError

EXPORT_FORMAT = "imgsynth-weights"


@dataclass
class Loaded:
    """A model ready to run, with what produced it (recorded in output metadata)."""

    model: Any  # torch.nn.Module, or a classical method name
    arch: str
    task: str
    model_id: str
    config: dict[str, Any] = field(default_factory=dict)
    io: dict[str, Any] = field(default_factory=dict)
    revision: str | None = None
    card: Card | None = None

    @property
    def is_network(self) -> bool:
        return not isinstance(self.model, str)

    def provenance(self) -> dict[str, Any]:
        out = {"model": self.model_id, "arch": self.arch}
        if self.revision:
            out["revision"] = self.revision
        return out


def load_state_file(path: Path) -> dict[str, Any]:
    """Read a safetensors file into CPU tensors, with a one-line error if it is not one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a valid safetensors file ({str(e).splitlines()[0]})") from None


def build_from_state(arch: str, config: dict[str, Any], state: dict[str, Any], where: str,
                     config_where: str | None = None) -> Any:
    """Construct ``arch`` with ``config`` and load ``state`` strictly."""
    from imgsynth.errors import ConfigError, ImgsynthError
    from imgsynth.models.registry import build_model

    try:
        model = build_model(arch, config)
    except ImgsynthError as e:
        raise type(e)(f"{config_where or where}: {e}") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError,
            RuntimeError) as e:
        # a constructor refusing a value (wrong type, out of range) of a user-supplied config
        raise ConfigError(
            f"{config_where or where}: 'config' does not build architecture {arch!r} ({type(e).__name__}: {e})"
        ) from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise WeightsError(f"{where}: weights do not fit architecture {arch!r} ({detail[:200]})") from None
    return model


def read_export_config(directory: Path) -> dict[str, Any]:
    """Read and check ``DIR/config.json`` of an exported model."""
    cfg_path = directory / "config.json"
    if not directory.is_dir():
        raise WeightsError(f"{directory}: --weights must be a folder holding config.json and model.safetensors")
    if not cfg_path.exists():
        raise WeightsError(f"{directory}: no config.json (was it written by `imgsynth train --export`?)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WeightsError(f"{cfg_path}: invalid JSON ({e})") from None
    except OSError as e:
        raise WeightsError(f"{cfg_path}: cannot read ({e.strerror or e})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != EXPORT_FORMAT or "arch" not in cfg:
        raise WeightsError(f"{cfg_path}: not an imgsynth export (format must be {EXPORT_FORMAT!r} with an 'arch')")
    for key, kind, name in (("arch", str, "a string"), ("task", str, "a string"), ("config", dict, "an object"),
                            ("io", dict, "an object")):
        if key in cfg and cfg[key] is not None and not isinstance(cfg[key], kind):
            raise WeightsError(f"{cfg_path}: key {key!r} must be {name}, not {type(cfg[key]).__name__}")
    from imgsynth.models.registry import get_model

    try:
        get_model(cfg["arch"])
    except Exception as e:
        raise WeightsError(f"{cfg_path}: key 'arch': {e}") from None
    return cfg


def load_model(
    task: str,
    *,
    model: str | None = None,
    weights: Path | None = None,
    revision: str | None = None,
    offline: bool = False,
    device: Any = None,
    dtype: Any = None,
) -> Loaded:
    """Resolve and load the model for ``task``: ``weights`` folder, else card ``model``, else the default."""
    if weights is not None and model is not None:
        raise UsageError("give either --model or --weights, not both")
    if weights is not None:
        cfg = read_export_config(Path(weights))
        if cfg.get("task") not in (None, task):
            raise UsageError(f"{weights}: this is a {cfg['task']!r} model, not a {task!r} model")
        state = load_state_file(Path(weights) / "model.safetensors")
        net = build_from_state(cfg["arch"], cfg.get("config") or {}, state, str(weights),
                               config_where=str(Path(weights) / "config.json"))
        loaded = Loaded(net, cfg["arch"], task, str(weights), cfg.get("config", {}), cfg.get("io", {}))
    else:
        cards = load_cards()
        card = get_card(model, cards) if model else default_card(task, cards)
        if card.task != task:
            raise UsageError(f"model {card.id!r} is a {card.task!r} model; `imgsynth {task}` needs a {task!r} model")
        if not card.has_weights:
            return Loaded(card.arch, card.arch, task, card.id, dict(card.config), dict(card.io), card=card)
        path = resolve_weights(card, revision=revision, offline=offline)
        state = load_state_file(path)
        net = build_from_state(card.arch, dict(card.config), state, f"model {card.id!r} ({path.name})",
                               config_where=f"card {card.id!r} ([config] of {card.path or card.id + '.toml'})")
        loaded = Loaded(net, card.arch, task, card.id, dict(card.config), dict(card.io),
                        revision or card.source.revision, card)
    net = loaded.model.eval()
    net.requires_grad_(False)
    if device is not None or dtype is not None:
        net.to(device=device, dtype=dtype)
    if device is not None and getattr(device, "type", None) == "cuda":
        import torch

        # cuDNN's fp16/bf16 convolutions are fastest in NHWC; CPU models pick their own layout per layer
        net.to(memory_format=torch.channels_last)
    return loaded
