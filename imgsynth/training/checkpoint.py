"""Training checkpoints as safetensors files, written atomically, read without unpickling.

A checkpoint is one ``step-NNNNNNNN.safetensors`` file: every tensor of the training state
(networks, EMA, optimiser moments, RNG states) is a safetensors entry, and everything else
(optimiser hyper-parameters, GradScaler and sampler state, Python and numpy RNG states, the loss
history, the resolved config) is JSON in the file's metadata, with ``{"__tensor__": key}``
placeholders where tensors were. The resolved recipe is also written beside it as
``step-NNNNNNNN.toml``. Both are written to a temporary name and moved into place with
:func:`os.replace`, so a crash or Ctrl-C never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from imgsynth.errors import OutputError, WeightsError

FORMAT = "imgsynth-train-checkpoint"
VERSION = 1
_NAME = re.compile(r"^step-(\d{8})\.safetensors$")


def flatten_state(obj: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """Split nested dicts/lists/tuples into (tensors by key, JSON skeleton with placeholders).

    Tuples and dicts with non-string keys are tagged so that :func:`unflatten_state` rebuilds
    exactly what was given (``random.setstate`` wants tuples; optimiser states use int keys).
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(x: Any, path: str) -> Any:
        if isinstance(x, torch.Tensor):
            # safetensors refuses shared or non-contiguous storage: store an owned copy
            tensors[path] = x.detach().to("cpu", copy=True).contiguous()
            return {"__tensor__": path}
        if isinstance(x, dict):
            if all(isinstance(k, str) for k in x):
                return {k: walk(v, f"{path}.{k}" if path else k) for k, v in x.items()}
            return {"__items__": [[k, walk(v, f"{path}.{k}")] for k, v in x.items()]}
        if isinstance(x, tuple):
            return {"__tuple__": [walk(v, f"{path}.{i}") for i, v in enumerate(x)]}
        if isinstance(x, list):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(x)]
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise TypeError(f"cannot store {type(x).__name__} at {path!r} in a checkpoint")

    return tensors, walk(obj, "")


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(skeleton, dict):
        if set(skeleton) == {"__tensor__"}:
            return tensors[skeleton["__tensor__"]]
        if set(skeleton) == {"__tuple__"}:
            return tuple(unflatten_state(v, tensors) for v in skeleton["__tuple__"])
        if set(skeleton) == {"__items__"}:
            return {k: unflatten_state(v, tensors) for k, v in skeleton["__items__"]}
        return {k: unflatten_state(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [unflatten_state(v, tensors) for v in skeleton]
    return skeleton


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint after ``step`` steps."""
    return f"step-{step:08d}.safetensors"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_checkpoint(state: dict[str, Any], directory: str | Path, step: int, config_toml: str) -> Path:
    """Write ``state`` as ``directory/step-NNNNNNNN.safetensors`` (+ ``.toml``) atomically."""
    directory = Path(directory)
    path = directory / checkpoint_name(step)
    tensors, skeleton = flatten_state(state)
    meta = {"format": FORMAT, "version": str(VERSION), "state": json.dumps(skeleton)}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(path.with_suffix(".toml"), config_toml)
        save_file(tensors, str(tmp), metadata=meta)
        os.chmod(tmp, 0o644)  # like the PNGs and TOML beside it (safetensors creates it 0600)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write checkpoint {str(path)!r}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on CPU)."""
    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise WeightsError(f"no checkpoint in {str(path)!r}")
        path = found
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise WeightsError(
                    f"{str(path)!r} is not an imgsynth training checkpoint "
                    "(exported weights are used with --weights, not resumed)"
                )
            if int(meta.get("version", "0")) > VERSION:
                raise WeightsError(
                    f"{str(path)!r} was written by a newer imgsynth (checkpoint version {meta['version']})"
                )
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except FileNotFoundError:
        raise WeightsError(f"checkpoint {str(path)!r} does not exist") from None
    except WeightsError:
        raise
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise WeightsError(f"cannot read checkpoint {str(path)!r}: {exc}") from None
    return unflatten_state(json.loads(meta["state"]), tensors)


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the complete checkpoints in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        m = _NAME.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The checkpoint with the most steps in ``directory`` (or its ``checkpoints/`` folder)."""
    directory = Path(directory)
    found = list_checkpoints(directory) or list_checkpoints(directory / "checkpoints")
    return found[-1][1] if found else None


def prune_checkpoints(directory: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (``keep`` 0 keeps all)."""
    if keep <= 0:
        return
    for _, path in list_checkpoints(directory)[:-keep]:
        path.unlink(missing_ok=True)
        path.with_suffix(".toml").unlink(missing_ok=True)
