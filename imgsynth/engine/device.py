"""Device, precision and thread selection.

``--device auto`` picks cuda, then mps, then cpu. Precision is checked against the device:
fp16 on CPU is refused (CPU kernels for half are slow and lossy; use bf16), bf16 needs a CPU or a
GPU that supports it. Threads: on small CPU machines the default OpenMP spin-wait policy costs
milliseconds per parallel region, so the CLI sets ``OMP_WAIT_POLICY=PASSIVE`` before torch is
imported unless the user chose a policy (see ``benchmarks/threads.py`` for the measurement).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from imgsynth.errors import DeviceError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "fp16", "bf16")
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def prepare_threads() -> None:
    """Set thread-related environment defaults; call before the first ``import torch``."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def select_device(spec: str = "auto") -> "torch.device":
    """Parse ``auto|cpu|cuda|cuda:N|mps`` into an available ``torch.device``."""
    import torch

    spec = (spec or "auto").strip().lower()
    if not _DEVICE_RE.match(spec):
        raise DeviceError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps")
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec!r} requested but no CUDA GPU is available; use --device cpu")
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {spec!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        return torch.device("cuda", index)
    if spec == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise DeviceError("device 'mps' requested but Apple MPS is not available; use --device cpu")
        return torch.device("mps")
    return torch.device("cpu")


def select_dtype(precision: str, device: "torch.device") -> "torch.dtype":
    """Map ``fp32|fp16|bf16`` to a dtype that ``device`` can run, or raise :class:`DeviceError`."""
    import torch

    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return torch.float32
    if precision == "fp16":
        if device.type == "cpu":
            raise DeviceError("fp16 is not supported on the CPU; use --precision bf16 (or fp32)")
        return torch.float16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"bf16 is not supported on {torch.cuda.get_device_name(device)}; use --precision fp16")
    return torch.bfloat16
