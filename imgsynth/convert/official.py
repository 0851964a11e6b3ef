"""Reading official checkpoint files safely and converting them once to safetensors.

``.pth`` files are read with ``torch.load(weights_only=True)`` (no arbitrary unpickling);
StyleGAN ``.pkl`` networks go through the restricted unpickler of ``convert.stylegan2_pkl``.
Nothing else is ever unpickled.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from imgsynth.convert import get_converter
from imgsynth.errors import WeightsError


def read_official(path: Path, fmt: str) -> Any:
    """Safely deserialise an official checkpoint into dicts of tensors."""
    import torch

    if fmt == "pth":
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises UnpicklingError / RuntimeError variants
            raise WeightsError(f"{path}: not a loadable weights-only checkpoint ({str(e).splitlines()[0]})") from None
    if fmt == "pkl":
        from imgsynth.convert.stylegan2_pkl import read_pkl

        return read_pkl(path)
    raise WeightsError(f"{path}: no reader for format {fmt!r}")


def convert_file(path: Path, fmt: str, converter: str | None, config: dict, target: Path) -> Path:
    """Convert ``path`` with ``converter`` and write ``target`` (safetensors) atomically."""
    from safetensors.torch import save_file

    if converter is None:
        raise WeightsError(f"{path}: format {fmt!r} needs a converter on its card")
    fn = get_converter(converter)
    state = fn(read_official(path, fmt), dict(config))
    state = {k: v.contiguous() for k, v in state.items()}
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"converted_from": path.name, "converter": converter})
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
