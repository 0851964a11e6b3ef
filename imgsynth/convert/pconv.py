"""Released PConv U-Net checkpoints -> ``pconv_unet`` state dicts.

Two formats (see :mod:`imgsynth.models.pconv`):

- naoto0804/pytorch-inpainting-with-partial-conv (release v0.0.0, Places2, 256x256): a
  ``torch.save({'n_iter', 'model': state_dict, 'optimizer'})`` file (or the bare state dict) with
  keys ``enc_1.conv.input_conv.weight``, ``enc_1.conv.mask_conv.weight`` (all ones),
  ``enc_2.bn.running_mean``, ... ``dec_1.conv.input_conv.bias``. Inputs: ImageNet-normalised
  ``gt * mask``. Converted with :func:`from_naoto`; config ``renorm="naoto"``.
- open-mmlab/mmagic (formerly mmediting) ``PConvInpaintor`` (e.g.
  ``pconv_256x256_stage2_4x2_places_20200619-1ffed0e8.pth``): an mmcv checkpoint
  ``{'meta', 'state_dict', 'optimizer'}`` whose generator keys are
  ``generator.encoder.enc1.conv.{weight,bias,weight_mask_updater}``,
  ``generator.encoder.enc2.bn.*``, ... ``generator.decoder.dec1.conv.{weight,bias,...}``
  (``MaskConvModule`` = mmcv ``ConvModule``: ``conv`` + ``bn``; bias only where there is no norm,
  i.e. enc1 and dec1; NVIDIA multi-channel ``PartialConv2d``). Inputs: ``gt * mask`` in [-1, 1].
  Converted with :func:`from_mmagic`; config ``renorm="nvidia"``, ``enc1_bias=True``. The key
  layout is taken from mmagic's source (``PConvEncoder``, ``PConvDecoder``, ``MaskConvModule``,
  ``PartialConv2d``); no released file could be opened here to confirm it.

The all-ones mask kernels are checked and dropped: imgsynth computes mask sums without them.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from imgsynth.errors import WeightsError
from imgsynth.models.registry import build_model

ARCH = "pconv_unet"

_NAOTO_MASK = re.compile(r"^(enc|dec)_(\d+)\.conv\.mask_conv\.weight$")
_NAOTO_KEY = re.compile(r"^(enc|dec)_(\d+)\.(conv\.input_conv|bn)\.(\w+)$")
_MMAGIC_KEY = re.compile(
    r"^(?:module\.)?(?:generator\.)?(?:encoder|decoder)\.(enc|dec)(\d+)\.(conv|bn)\.(\w+)$"
)


def _state_dict(checkpoint: dict[str, Any], wrappers: tuple[str, ...]) -> dict[str, Any]:
    """The tensor dict inside ``checkpoint`` (a training-state wrapper or already bare)."""
    for key in wrappers:
        inner = checkpoint.get(key)
        if isinstance(inner, dict):
            return inner
    return checkpoint


def _check_ones(key: str, value: Any) -> None:
    if not isinstance(value, torch.Tensor) or not bool((value == 1).all()):
        raise WeightsError(
            f"{key} should be an all-ones mask kernel; this is not a PConv U-Net checkpoint imgsynth can use"
        )


def _naoto_keys(sd: dict[str, Any]) -> dict[str, Any]:
    """naoto0804 layout -> imgsynth layout (unknown keys pass through for the strict check)."""
    out: dict[str, Any] = {}
    for k, v in sd.items():
        if _NAOTO_MASK.match(k):
            _check_ones(k, v)
            continue
        m = _NAOTO_KEY.match(k)
        if m is None:
            out[k] = v
        else:
            part = "bn" if m.group(3) == "bn" else "conv"
            out[f"{m.group(1)}_{m.group(2)}.{part}.{m.group(4)}"] = v
    return out


def _mmagic_keys(sd: dict[str, Any]) -> dict[str, Any]:
    """mmagic layout -> imgsynth layout; keys outside the generator (losses) are dropped."""
    out: dict[str, Any] = {}
    for k, v in sd.items():
        m = _MMAGIC_KEY.match(k)
        if m is None:
            if "encoder." in k or "decoder." in k:
                out[k] = v  # a generator key we do not know: the strict check reports it
            continue
        if m.group(4) == "weight_mask_updater":
            _check_ones(k, v)
            continue
        out[f"{m.group(1)}_{m.group(2)}.{m.group(3)}.{m.group(4)}"] = v
    return out


def _expected(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = build_model(ARCH, config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _finish(out: dict[str, Any], config: dict[str, Any], source: str) -> dict[str, torch.Tensor]:
    """Check ``out`` against the model built from ``config``: same keys, same shapes."""
    want = _expected(config)
    missing = sorted(set(want) - set(out))
    extra = sorted(set(out) - set(want))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if extra:
            parts.append(f"{len(extra)} unexpected (e.g. {', '.join(extra[:3])})")
        raise WeightsError(
            f"{source} checkpoint does not fit pconv_unet {config}: {'; '.join(parts)}; "
            "is it the right format? infer_config(checkpoint) reads the config off the file"
        )
    for k, shape in want.items():
        if not isinstance(out[k], torch.Tensor) or tuple(out[k].shape) != shape:
            got = tuple(out[k].shape) if isinstance(out[k], torch.Tensor) else type(out[k]).__name__
            raise WeightsError(
                f"{source} checkpoint: {k} has shape {got} but pconv_unet {config} expects {shape}; "
                "infer_config(checkpoint) reads the config off the file"
            )
    return out


def infer_config(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """``pconv_unet`` constructor kwargs read off a naoto0804 or mmagic checkpoint's shapes."""
    sd = _state_dict(checkpoint, ("model", "state_dict"))
    if "enc_1.conv.input_conv.weight" in sd:
        ours, config = _naoto_keys(sd), {"renorm": "naoto"}
    elif any(k.endswith("encoder.enc1.conv.weight") for k in sd):
        ours, config = _mmagic_keys(sd), {"renorm": "nvidia"}
    else:
        raise WeightsError(
            "not a PConv U-Net checkpoint: expected naoto0804 keys (enc_1.conv.input_conv.weight) "
            "or mmagic keys (generator.encoder.enc1.conv.weight)"
        )
    enc = sorted(int(m.group(1)) for k in ours if (m := re.match(r"^enc_(\d+)\.conv\.weight$", k)))
    if len(enc) < 4 or enc != list(range(1, len(enc) + 1)):
        raise WeightsError(f"PConv U-Net checkpoint has encoder layers {enc}; expected enc_1..enc_N, N >= 4")
    config.update(
        layer_size=len(enc),
        input_channels=int(ours["enc_1.conv.weight"].shape[1]),
        widths=[int(ours[f"enc_{i}.conv.weight"].shape[0]) for i in range(1, 5)],
        enc1_bias="enc_1.conv.bias" in ours,
    )
    return config


def from_naoto(checkpoint: dict[str, Any], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """naoto0804 checkpoint (``{'n_iter', 'model', 'optimizer'}`` or bare) -> ``pconv_unet`` state dict.

    ``enc_i.conv.input_conv.*`` -> ``enc_i.conv.*``; ``bn.*`` unchanged; ``mask_conv.weight``
    (all ones) checked and dropped. Raises :class:`WeightsError` unless the result matches
    ``build_model("pconv_unet", config)`` exactly (``strict=True``).
    """
    return _finish(_naoto_keys(_state_dict(checkpoint, ("model",))), config, "naoto0804")


def from_mmagic(checkpoint: dict[str, Any], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """mmagic / mmediting ``PConvInpaintor`` checkpoint -> ``pconv_unet`` state dict.

    Takes ``checkpoint['state_dict']`` (or a bare dict) and keeps the generator:
    ``generator.encoder.encN.{conv,bn}.*`` -> ``enc_N.{conv,bn}.*``, the decoder alike; the
    ``weight_mask_updater`` buffers (all ones) are checked and dropped; keys outside the
    generator (``loss_percep.vgg...``) are ignored. Raises :class:`WeightsError` unless the
    result matches ``build_model("pconv_unet", config)`` exactly.
    """
    return _finish(_mmagic_keys(_state_dict(checkpoint, ("state_dict",))), config, "mmagic")
