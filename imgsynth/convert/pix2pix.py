"""junyanz/pytorch-CycleGAN-and-pix2pix generators -> imgsynth ``pix2pix_unet`` / ``cyclegan_resnet``.

The official ``latest_net_G.pth`` (``BaseModel.save_networks``) is a plain ``net.state_dict()``;
read it with ``torch.load(path, map_location="cpu", weights_only=True)`` and pass the dict here.

Key mapping (official -> imgsynth):

- U-Net (``unet_256``/``unet_128``): nested ``UnetSkipConnectionBlock``s. Level 0 is
  ``model.model.{0,3}`` (down conv, up conv); level j >= 1 lives under
  ``model.model.1.`` + ``model.3.`` * (j - 1) + ``model.``, with down conv ``1``, down norm ``2``,
  up conv ``5``, up norm ``6`` (innermost level: down conv ``1``, up conv ``3``, up norm ``4``).
  They become ``down.{j}.conv``, ``down.{j}.norm``, ``up.{j}.conv``, ``up.{j}.norm``.
- ResNet (``resnet_9blocks``/``resnet_6blocks``): a flat ``model.<i>`` Sequential. ``model.1`` /
  ``model.2`` -> ``stem.conv`` / ``stem.norm``; ``model.{4,7}`` -> ``down.{0,1}.conv`` (norm at +1);
  ``model.{10+b}.conv_block.{c}`` -> ``blocks.{b}.conv1`` / ``norm1`` / ``conv2`` / ``norm2``;
  ``model.{10+n+3i}`` -> ``up.{i}.conv`` (norm at +1); ``model.{17+n}`` -> ``head``.

Like the official ``load_networks``, InstanceNorm ``running_mean`` / ``running_var`` /
``num_batches_tracked`` entries (written by PyTorch < 0.4 for layers that have no such buffers
now) are dropped; any other unknown, missing or misshapen key is a :class:`WeightsError`.

What the shapes cannot tell: ``use_dropout`` (Dropout has no weights; ``infer_config`` returns the
official default of each architecture: on for pix2pix U-Nets, off for CycleGAN ResNets) and
``reflect`` vs ``replicate`` padding (``reflect`` assumed). Override them in the config if needed.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Mapping

import torch

from imgsynth.convert import check_state_dict
from imgsynth.errors import WeightsError
from imgsynth.models.registry import get_model

LEGACY_NORM_LEAVES = ("running_mean", "running_var", "num_batches_tracked")
"""Buffers that pre-0.4 PyTorch stored for InstanceNorm layers; the official loader deletes them."""


def as_state_dict(checkpoint: Mapping[str, Any], source: str) -> dict[str, torch.Tensor]:
    """``checkpoint`` as a plain dict, or :class:`WeightsError` unless it is a non-empty name -> tensor map."""
    if not isinstance(checkpoint, Mapping) or not checkpoint:
        raise WeightsError(f"{source}: expected a non-empty state dict (name -> tensor), got {type(checkpoint).__name__}")
    bad = [k for k, v in checkpoint.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{source}: entries are not tensors: {', '.join(map(str, bad[:5]))}; pass the generator state dict")
    return dict(checkpoint)


def remap(
    checkpoint: Mapping[str, torch.Tensor],
    modules: Mapping[str, str],
    legacy_norms: set[str] = frozenset(),  # type: ignore[assignment]
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Rename ``<module>.<leaf>`` keys by module prefix.

    Returns ``(state_dict, unknown_keys, dropped_legacy_keys)``: keys of modules in ``modules``
    are renamed; ``running_*`` / ``num_batches_tracked`` of modules in ``legacy_norms``
    (InstanceNorm layers) are dropped; anything else is reported as unknown.
    """
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    dropped: list[str] = []
    for key, value in checkpoint.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix in modules:
            out[f"{modules[prefix]}.{leaf}"] = value
        elif prefix in legacy_norms and leaf in LEGACY_NORM_LEAVES:
            dropped.append(key)
        else:
            unknown.append(key)
    return out, unknown, dropped


def full_config(arch: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` completed with the constructor defaults of ``arch`` (what ``build_model`` will use)."""
    params = inspect.signature(get_model(arch).cls).parameters
    defaults = {n: p.default for n, p in params.items() if p.default is not inspect.Parameter.empty}
    return {**defaults, **config}


# --- U-Net ------------------------------------------------------------------------------------


def _unet_modules(num_downs: int, norm: str) -> tuple[dict[str, str], set[str]]:
    modules = {"model.model.0": "down.0.conv", "model.model.3": "up.0.conv"}
    norms: dict[str, str] = {}
    prefix = "model.model.1.model."
    for j in range(1, num_downs):
        modules[prefix + "1"] = f"down.{j}.conv"
        if j == num_downs - 1:
            modules[prefix + "3"] = f"up.{j}.conv"
            norms[prefix + "4"] = f"up.{j}.norm"
        else:
            norms[prefix + "2"] = f"down.{j}.norm"
            modules[prefix + "5"] = f"up.{j}.conv"
            norms[prefix + "6"] = f"up.{j}.norm"
            prefix += "3.model."
    if norm == "batch":
        return {**modules, **norms}, set()
    return modules, set(norms)


def infer_unet_config(checkpoint: Mapping[str, torch.Tensor], *, use_dropout: bool = True) -> dict[str, Any]:
    """``pix2pix_unet`` config from an official U-Net state dict.

    ``use_dropout`` cannot be read off the weights (Dropout has none): the official default, True,
    unless the model was trained with ``--no_dropout``.
    """
    sd = as_state_dict(checkpoint, "pix2pix U-Net checkpoint")
    try:
        first, last = sd["model.model.0.weight"], sd["model.model.3.weight"]
    except KeyError:
        raise WeightsError("not a junyanz U-Net generator: no model.model.0.weight / model.model.3.weight") from None
    depth = max(k.count("model.") for k in sd)
    return {
        "input_nc": int(first.shape[1]),
        "output_nc": int(last.shape[1]),  # ConvTranspose2d weight is (in, out, k, k)
        "num_downs": depth - 1,
        "ngf": int(first.shape[0]),
        # a bias before BatchNorm is pointless, so the official code only adds one for InstanceNorm
        "norm": "instance" if "model.model.0.bias" in sd else "batch",
        "use_dropout": bool(use_dropout),
    }


def from_junyanz_unet(checkpoint: Mapping[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Official ``UnetGenerator`` state dict -> ``pix2pix_unet`` state dict for ``config``."""
    sd = as_state_dict(checkpoint, "pix2pix U-Net checkpoint")
    cfg = full_config("pix2pix_unet", config)
    modules, legacy = _unet_modules(cfg["num_downs"], cfg["norm"])
    out, unknown, _ = remap(sd, modules, legacy)
    return check_state_dict(out, "pix2pix_unet", config, "pix2pix U-Net checkpoint", unknown)


# --- ResNet -----------------------------------------------------------------------------------

_BLOCK_CONV = re.compile(r"^model\.(\d+)\.conv_block\.(\d+)\.weight$")


def _resnet_layout(sd: dict[str, torch.Tensor]) -> tuple[list[int], int]:
    """(sorted block indices, index of the second conv inside a block) of an official ResNet."""
    blocks: set[int] = set()
    convs: set[int] = set()
    for key, value in sd.items():
        m = _BLOCK_CONV.match(key)
        if m and value.dim() == 4:
            blocks.add(int(m.group(1)))
            convs.add(int(m.group(2)))
    if not blocks:
        return [], 5
    if len(convs) != 2:
        raise WeightsError(f"CycleGAN ResNet checkpoint: expected 2 convs per residual block, found at {sorted(convs)}")
    return sorted(blocks), max(convs)


def _resnet_modules(n_blocks: int, norm: str, padding_type: str, use_dropout: bool) -> tuple[dict[str, str], set[str]]:
    modules = {"model.1": "stem.conv", "model.4": "down.0.conv", "model.7": "down.1.conv"}
    norms = {"model.2": "stem.norm", "model.5": "down.0.norm", "model.8": "down.1.norm"}
    # ResnetBlock.conv_block: [pad] conv norm ReLU [Dropout] [pad] conv norm
    first = 0 if padding_type == "zero" else 1
    second = first + 3 + int(use_dropout) + (0 if padding_type == "zero" else 1)
    for b in range(n_blocks):
        p = f"model.{10 + b}.conv_block."
        modules[f"{p}{first}"] = f"blocks.{b}.conv1"
        norms[f"{p}{first + 1}"] = f"blocks.{b}.norm1"
        modules[f"{p}{second}"] = f"blocks.{b}.conv2"
        norms[f"{p}{second + 1}"] = f"blocks.{b}.norm2"
    for i in range(2):
        modules[f"model.{10 + n_blocks + 3 * i}"] = f"up.{i}.conv"
        norms[f"model.{11 + n_blocks + 3 * i}"] = f"up.{i}.norm"
    modules[f"model.{17 + n_blocks}"] = "head"
    if norm == "batch":
        return {**modules, **norms}, set()
    return modules, set(norms)


def infer_resnet_config(checkpoint: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """``cyclegan_resnet`` config from an official ResNet state dict (``reflect`` padding assumed)."""
    sd = as_state_dict(checkpoint, "CycleGAN ResNet checkpoint")
    if "model.1.weight" not in sd:
        raise WeightsError("not a junyanz ResNet generator: no model.1.weight")
    blocks, second = _resnet_layout(sd)
    n_blocks = len(blocks)
    if blocks != list(range(10, 10 + n_blocks)):
        raise WeightsError(f"CycleGAN ResNet checkpoint: residual blocks at model.{blocks}, expected model.10 onwards")
    head = sd.get(f"model.{17 + n_blocks}.weight")
    if head is None:
        raise WeightsError(f"CycleGAN ResNet checkpoint: no output conv model.{17 + n_blocks}.weight")
    zero = second in (3, 4)
    return {
        "input_nc": int(sd["model.1.weight"].shape[1]),
        "output_nc": int(head.shape[0]),
        "ngf": int(sd["model.1.weight"].shape[0]),
        "n_blocks": n_blocks,
        "norm": "instance" if "model.1.bias" in sd else "batch",
        "use_dropout": second in (4, 6),
        "padding_type": "zero" if zero else "reflect",
    }


def from_junyanz_resnet(checkpoint: Mapping[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Official ``ResnetGenerator`` state dict -> ``cyclegan_resnet`` state dict for ``config``."""
    sd = as_state_dict(checkpoint, "CycleGAN ResNet checkpoint")
    cfg = full_config("cyclegan_resnet", config)
    modules, legacy = _resnet_modules(cfg["n_blocks"], cfg["norm"], cfg["padding_type"], cfg["use_dropout"])
    out, unknown, _ = remap(sd, modules, legacy)
    return check_state_dict(out, "cyclegan_resnet", config, "CycleGAN ResNet checkpoint", unknown)


# --- either -----------------------------------------------------------------------------------


def infer_arch(checkpoint: Mapping[str, torch.Tensor]) -> str:
    """``"pix2pix_unet"`` or ``"cyclegan_resnet"``, from the official key layout."""
    if "model.model.0.weight" in checkpoint:
        return "pix2pix_unet"
    if "model.1.weight" in checkpoint:
        return "cyclegan_resnet"
    raise WeightsError(
        "not a junyanz pix2pix/CycleGAN generator (expected model.model.0.weight or model.1.weight); "
        "pass latest_net_G.pth"
    )


def infer_config(checkpoint: Mapping[str, torch.Tensor], *, use_dropout: bool | None = None) -> dict[str, Any]:
    """Config of whichever generator the checkpoint holds (see :func:`infer_arch`).

    ``use_dropout``: the official ``--no_dropout`` negated. A U-Net's weights do not record it
    (default True, the official default); a ResNet's do (Dropout shifts the block's indices), and
    a value that contradicts them raises :class:`WeightsError`.
    """
    if infer_arch(checkpoint) == "pix2pix_unet":
        return infer_unet_config(checkpoint, use_dropout=True if use_dropout is None else use_dropout)
    cfg = infer_resnet_config(checkpoint)
    if use_dropout is not None and bool(use_dropout) != cfg["use_dropout"]:
        raise WeightsError(
            f"CycleGAN ResNet checkpoint was saved {'with' if cfg['use_dropout'] else 'without'} Dropout "
            f"layers, but use_dropout={use_dropout!r} was given"
        )
    return cfg


def from_junyanz(checkpoint: Mapping[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Either official generator -> imgsynth state dict (U-Net or ResNet by key layout)."""
    if infer_arch(checkpoint) == "pix2pix_unet":
        return from_junyanz_unet(checkpoint, config)
    return from_junyanz_resnet(checkpoint, config)
