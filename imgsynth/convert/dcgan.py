"""DCGAN generator checkpoints -> :class:`imgsynth.models.dcgan.DCGANGenerator` (keys ``main.<i>.*``).

Three layouts of the same network (ConvT . BN . ReLU stacks, bias-free, tanh):

* pytorch/examples ``dcgan/main.py`` (``torch.save(netG.state_dict())``): ``main.<i>.*``, identical
  to ours. No official trained file is published.
* GAN zoo (facebookresearch/pytorch_GAN_zoo ``DCGAN_nets.GNet``, torch.hub ``DCGAN``, e.g.
  ``DCGAN_fashionGen-1d67302.pth``): ``{'config', 'netG', 'netD', 'avgG'}``; generator keys
  ``formatLayer.weight`` (the first ConvT), ``main.batchNorm<j>.*``, ``main.convTranspose<j>.weight``
  and ``main.outlayer.weight``.
* HugGAN (huggingface/community-events ``huggan/pytorch/dcgan/modeling_dcgan.py``, the class the
  ``huggan/dcgan-mnist`` model card loads with ``Generator.from_pretrained``): ``model.<i>.*`` with the
  pytorch/examples indices (64 px, ``num_channels``/``latent_dim``/``hidden_size`` = our
  ``img_channels``/``z_dim``/``ngf``). The key layout is taken from that source file; the Hub file
  itself could not be inspected here.

Old checkpoints without BatchNorm ``num_batches_tracked`` get it filled with 0 (it only matters for
``momentum=None`` training).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor

from imgsynth.convert import check_state_dict
from imgsynth.errors import WeightsError
from imgsynth.models.dcgan import DCGANGenerator

__all__ = ["from_any", "from_examples", "from_ganzoo", "from_huggan", "infer_config"]

_ZOO_CONVT = re.compile(r"^main\.convTranspose(\d+)\.weight$")
_SEQ_KEY = re.compile(r"^(main|model)\.(\d+)\.weight$")


def _strip_module(state: dict[str, Any]) -> dict[str, Any]:
    # nn.DataParallel checkpoints prefix every key with "module.".
    return {k.removeprefix("module."): v for k, v in state.items()}


def _zoo_generator(checkpoint: dict[str, Any], use_avg: bool) -> dict[str, Tensor]:
    if "netG" in checkpoint or "avgG" in checkpoint:
        key = "avgG" if use_avg else "netG"
        if key not in checkpoint:
            raise WeightsError(f"GAN-zoo checkpoint has no {key!r} entry (has {sorted(checkpoint)})")
        state = checkpoint[key]
    else:
        state = checkpoint
    if not isinstance(state, dict):
        raise WeightsError("GAN-zoo DCGAN generator state is not a dict of tensors")
    state = _strip_module(state)
    if "formatLayer.weight" not in state:
        raise WeightsError("not a GAN-zoo DCGAN generator: 'formatLayer.weight' is missing")
    return state


def _zoo_to_sequential(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename GAN-zoo keys to the pytorch/examples Sequential indices."""
    depth = sum(1 for k in state if _ZOO_CONVT.match(k))
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key == "formatLayer.weight":
            out["main.0.weight"] = value
        elif key == "main.outlayer.weight":
            out[f"main.{3 * (depth + 1)}.weight"] = value
        elif m := re.match(r"^main\.(convTranspose|batchNorm)(\d+)\.(.+)$", key):
            kind, j, rest = m.group(1), int(m.group(2)), m.group(3)
            out[f"main.{3 * j + (1 if kind == 'batchNorm' else 0)}.{rest}"] = value
        else:
            raise WeightsError(f"unexpected key {key!r} in GAN-zoo DCGAN generator")
    return out


def _sequential_state(checkpoint: dict[str, Any], prefix: str) -> dict[str, Tensor]:
    state = _strip_module(checkpoint)
    if f"{prefix}.0.weight" not in state:
        raise WeightsError(f"not a DCGAN generator with {prefix}.<i> keys: '{prefix}.0.weight' is missing")
    return {f"main.{k[len(prefix) + 1:]}": v for k, v in state.items() if k.startswith(prefix + ".")}


def _normalise(checkpoint: dict[str, Any]) -> dict[str, Tensor]:
    """Any supported layout -> ``main.<i>.*`` keys."""
    state = _strip_module(checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if "netG" in state or "avgG" in state or "formatLayer.weight" in state:
        return _zoo_to_sequential(_zoo_generator(checkpoint, use_avg=False))
    if "main.0.weight" in state:
        return _sequential_state(checkpoint, "main")
    if "model.0.weight" in state:
        return _sequential_state(checkpoint, "model")
    raise WeightsError(
        "unrecognised DCGAN checkpoint: expected pytorch/examples 'main.0.weight', HugGAN "
        "'model.0.weight' or a GAN-zoo 'netG' / 'formatLayer.weight'"
    )


def infer_config(checkpoint: dict[str, Any], *, loss_mode: str | None = None) -> dict[str, Any]:
    """``dcgan`` constructor config read off the tensor shapes of any supported layout.

    For GAN-zoo files whose ``config`` says ``lossCriterion='WGANGP'`` (or ``loss_mode="WGANGP"``,
    for a bare state dict that does not record it) the output activation is ``"none"``; every
    other case is tanh.
    """
    state = _normalise(checkpoint)
    convs = sorted(
        (int(m.group(2)), state[k]) for k in state if (m := _SEQ_KEY.match(k)) and state[k].dim() == 4
    )
    if len(convs) < 2:
        raise WeightsError("DCGAN checkpoint needs at least two transposed-conv weights")
    first, last = convs[0][1], convs[-1][1]
    base, k = int(first.shape[-1]), len(convs) - 1
    config = {
        "z_dim": int(first.shape[0]),
        "ngf": int(last.shape[0]),
        "img_channels": int(last.shape[1]),
        "img_resolution": base * 2**k,
        "output_activation": "tanh",
    }
    zoo_config = checkpoint.get("config") if isinstance(checkpoint, dict) else None
    loss = zoo_config.get("lossCriterion") if isinstance(zoo_config, dict) else getattr(zoo_config, "lossCriterion", None)
    if loss_mode is not None:
        loss = loss_mode
    if loss == "WGANGP":
        config["output_activation"] = "none"
    return config


def _finish(state: dict[str, Tensor], config: dict[str, Any], source: str) -> dict[str, Tensor]:
    """Fill legacy BatchNorm counters and check keys/shapes against ``build_model('dcgan', config)``."""
    with torch.device("meta"):
        expected = DCGANGenerator(**config).state_dict()
    state = dict(state)
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.tensor(0, dtype=torch.long)
    return check_state_dict(state, "dcgan", config, f"{source} DCGAN checkpoint")


def from_examples(checkpoint: dict[str, Any], config: dict[str, Any]) -> dict[str, Tensor]:
    """pytorch/examples ``netG_epoch_<n>.pth`` state dict -> ``dcgan`` state dict."""
    return _finish(_sequential_state(checkpoint, "main"), config, "pytorch/examples")


def from_ganzoo(checkpoint: dict[str, Any], config: dict[str, Any], *, use_avg: bool = False) -> dict[str, Tensor]:
    """GAN-zoo DCGAN checkpoint (full dict or bare generator state dict) -> ``dcgan`` state dict.

    ``use_avg`` selects the moving-average generator ``avgG`` instead of ``netG``.
    """
    state = _zoo_to_sequential(_zoo_generator(checkpoint, use_avg))
    return _finish(state, config, "GAN-zoo")


def from_any(checkpoint: dict[str, Any], config: dict[str, Any]) -> dict[str, Tensor]:
    """Any supported layout (pytorch/examples, GAN zoo ``netG``, HugGAN), recognised by its keys."""
    return _finish(_normalise(checkpoint), config, "DCGAN")


def from_huggan(checkpoint: dict[str, Any], config: dict[str, Any]) -> dict[str, Tensor]:
    """HugGAN ``Generator`` (``model.<i>.*``, e.g. ``huggan/dcgan-mnist``) -> ``dcgan`` state dict."""
    return _finish(_sequential_state(checkpoint, "model"), config, "HugGAN")
