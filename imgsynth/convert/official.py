"""Reading official checkpoint files safely and converting them once to safetensors.

``.pth`` files are read with ``torch.load(weights_only=True)`` (no arbitrary unpickling). The one
non-tensor object allowed in them is pytorch_GAN_zoo's ``models.utils.config.BaseConfig``, the
empty attribute holder its released checkpoints pickle under ``'config'``: it is rebuilt as an
inert :class:`ZooConfig` (attributes only; no code of the checkpoint runs). StyleGAN2-ADA ``.pkl``
networks go through the restricted unpickler of ``convert.stylegan2_pkl``; the card's converter
then receives the ``G_ema`` state dict. Nothing else is ever unpickled.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from imgsynth.convert import get_converter
from imgsynth.errors import WeightsError


class ZooConfig:
    """Inert stand-in for pytorch_GAN_zoo's ``BaseConfig``: its pickled attributes, nothing else.

    The GAN-zoo converters read it with ``getattr`` (``lossCriterion``, ``depthScale0``, ...).
    """

    def __repr__(self) -> str:
        return f"ZooConfig({vars(self)!r})"


# torch's weights-only unpickler builds an allow-listed class with ``cls.__new__(cls)`` and fills
# ``__dict__`` from the pickled state; ZooConfig has no __setstate__, so that is all that happens.
_PTH_SAFE_GLOBALS: list[Any] = [(ZooConfig, "models.utils.config.BaseConfig")]


def read_network_pickle(path: Path, network: str = "G_ema") -> tuple[dict[str, Any], dict[str, Any]]:
    """(recorded ``stylegan2`` config, state dict) of one network of an official StyleGAN2-ADA pickle."""
    from imgsynth.convert.stylegan2_pkl import from_pkl

    return from_pkl(path, network)


def read_official(path: Path, fmt: str) -> Any:
    """Safely deserialise an official checkpoint into dicts of tensors.

    ``pth``: the ``torch.load(weights_only=True)`` result. ``pkl``: the ``G_ema`` state dict of a
    StyleGAN2-ADA network pickle (official key layout), read without executing the pickle.
    """
    import torch

    if fmt == "pth":
        try:
            with torch.serialization.safe_globals(_PTH_SAFE_GLOBALS):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises UnpicklingError / RuntimeError variants
            raise WeightsError(f"{path}: not a loadable weights-only checkpoint ({str(e).splitlines()[0]})") from None
    if fmt == "pkl":
        return read_network_pickle(path)[1]
    raise WeightsError(f"{path}: no reader for format {fmt!r}")


def _check_recorded_config(path: Path, recorded: dict[str, Any], config: dict[str, Any]) -> None:
    """Warn where the card's ``stylegan2`` config differs from the constructor kwargs the pickle recorded.

    Shape-changing differences fail in the converter anyway; this catches the rest
    (``conv_clamp``, ``num_fp16_res``, ``w_avg_beta``, ...), which change the numbers, not the keys.
    """
    from imgsynth.convert.pix2pix import full_config

    card = full_config("stylegan2", config)
    diff = [f"{k}: card {card[k]!r}, file {v!r}" for k, v in recorded.items() if k in card and card[k] != v]
    if diff:
        warnings.warn(
            f"{path.name}: the card's config differs from the one recorded in the pickle ({'; '.join(diff)}); "
            "the card's values are used",
            stacklevel=3,
        )


def convert_file(
    path: Path, fmt: str, converter: str | None, config: dict, target: Path, *, members: dict[str, Path] | None = None
) -> Path:
    """Convert ``path`` with ``converter`` and write ``target`` (safetensors) atomically.

    ``members`` ({archive member name: extracted file}) is for a card made of several files: the
    converter then receives ``{member name: checkpoint}``.
    """
    from safetensors.torch import save_file

    if converter is None:
        raise WeightsError(f"{path}: format {fmt!r} needs a converter on its card")
    fn = get_converter(converter)
    if members is not None:
        if fmt == "pkl":
            raise WeightsError(f"{path}: several-file cards hold pth files, not pickles")
        checkpoint = {name: read_official(file, fmt) for name, file in members.items()}
    elif fmt == "pkl":
        recorded, checkpoint = read_network_pickle(path)
        _check_recorded_config(path, recorded, config)
    else:
        checkpoint = read_official(path, fmt)
    state = fn(checkpoint, dict(config))
    state = {k: v.contiguous() for k, v in state.items()}
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    os.close(fd)
    try:
        source = ",".join(members) if members is not None else path.name
        save_file(state, tmp, metadata={"converted_from": source, "converter": converter})
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
