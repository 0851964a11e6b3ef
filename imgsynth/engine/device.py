"""Device, precision and thread selection.

``--device auto`` picks cuda, then mps, then cpu. Precision is checked against the device at run
time, without measuring anything: on CPU, bf16 and fp16 are accepted only where oneDNN has native
kernels for them (bf16: AVX512-BF16 or AMX; fp16: AVX512-FP16 or AMX-FP16). Elsewhere torch falls
back to a single-threaded reference convolution 100-300x slower than fp32 (measured on an AVX2 AMD
EPYC), so asking for it is a usage error that says why and to use fp32. On CUDA, bf16 follows
``torch.cuda.is_bf16_supported()``. Threads: on small CPU machines the default OpenMP spin-wait policy costs
milliseconds per parallel region, so the CLI sets ``OMP_WAIT_POLICY=PASSIVE`` before torch is
imported unless the user chose a policy (see ``benchmarks/threads.py`` for the measurement).

Memory: glibc returns every block over 32 MB to the kernel when it is freed, so a forward at
photo or 1024-px scale takes fresh zeroed pages for each large activation, every call. On a
StyleGAN2-1024 forward that was about 230,000 page faults and 0.35-0.44 s of kernel time (AMD
EPYC, AVX2, 2 cores). The CLI therefore tells glibc to serve large blocks from its heap and keep
up to 1 GiB of freed memory for reuse (:func:`prepare_allocator`; ``IMGSYNTH_MALLOC=system``, or
any ``MALLOC_*`` / ``GLIBC_TUNABLES`` setting of the user's, leaves glibc as it is). The
measurement is in ``benchmarks/results/profile.md``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from imgsynth.errors import DeviceError, PrecisionError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "fp16", "bf16")
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
# freed memory glibc keeps at the top of its heap before giving it back to the kernel
KEEP_FREED = 1 << 30


def prepare_runtime() -> None:
    """The CLI's process settings: :func:`prepare_threads` and :func:`prepare_allocator`. Call
    before the first ``import torch``."""
    prepare_threads()
    prepare_allocator()


def prepare_threads() -> None:
    """Set thread-related environment defaults; call before the first ``import torch``."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def prepare_allocator() -> bool:
    """Have glibc's malloc reuse freed large blocks instead of unmapping them; True if it was set.

    Large blocks come from the heap instead of their own mappings, and up to ``KEEP_FREED`` bytes
    of freed memory stay in the process, so the next forward reuses pages already mapped
    instead of faulting in zeroed ones. A no-op (False) off glibc, with ``IMGSYNTH_MALLOC=system``,
    or where the user tuned malloc through ``MALLOC_*`` or ``GLIBC_TUNABLES``.
    Peak memory stays about the same (a 12-MP inpainting: 1.62 -> 1.65 GB) or grows a little with
    fragmentation (pix2pixHD local 1024p: 2.7 -> 3.1 GB); the process keeps its peak until it exits.
    """
    import platform

    if os.environ.get("IMGSYNTH_MALLOC", "").lower() == "system":
        return False
    if "GLIBC_TUNABLES" in os.environ or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, KEEP_FREED)
                    and libc.mallopt(_M_TOP_PAD, 64 << 20))
    except (OSError, AttributeError):
        return False


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


def cpu_flags() -> dict[str, object]:
    """The CPU model and the instruction-set flags that decide CPU speed, read without torch.

    ``{"model": str, "avx2": bool, "avx512": bool, "avx512_bf16": bool, "amx": bool, "cores": int}``;
    flags come from ``/proc/cpuinfo`` (Linux) and are all False where it cannot be read.
    """
    import platform

    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            model = value.strip()
        elif key.strip() in ("flags", "Features"):
            flags = set(value.split())
            break
    return {"model": model, "avx2": "avx2" in flags, "avx512": "avx512f" in flags,
            "avx512_bf16": "avx512_bf16" in flags, "amx": bool({"amx_tile", "amx_bf16"} & flags),
            "cores": os.cpu_count() or 1}


def cpu_native_precision(precision: str) -> bool:
    """Whether this CPU runs ``bf16`` / ``fp16`` convolutions natively (oneDNN), without measuring.

    This is the single capability test of the package; tests monkeypatch it to force both answers.
    """
    import torch

    probe = {"bf16": "_is_mkldnn_bf16_supported", "fp16": "_is_mkldnn_fp16_supported"}.get(precision)
    if probe is None:
        return precision == "fp32"
    fn = getattr(torch.ops.mkldnn, probe, None)
    try:
        return bool(fn()) if fn is not None else False
    except RuntimeError:  # a torch build without oneDNN
        return False


def _cpu_refusal(precision: str, what: str, fix: str) -> str:
    native = "AVX512-BF16 or AMX" if precision == "bf16" else "AVX512-FP16 or AMX-FP16"
    return (f"{what} is not supported natively by this CPU ({cpu_flags()['model']}: no {native}); torch would "
            f"fall back to reference kernels 100x slower than fp32, so {fix}")


def check_precision(precision: str, device: "torch.device", *, what: str | None = None,
                    fix: str = "use --precision fp32") -> None:
    """Raise :class:`PrecisionError` (a usage error, exit 2) if ``device`` cannot run ``precision`` natively.

    ``what`` names the thing refused in the message (default ``"--precision bf16"``); ``fix`` says
    what to use instead.
    """
    import torch

    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
    what = what or f"--precision {precision}"
    if precision == "fp32":
        return
    if device.type == "cpu":
        if not cpu_native_precision(precision):
            if precision == "fp16":
                alt = "use --precision bf16 (or fp32)" if cpu_native_precision("bf16") else fix
                raise PrecisionError(f"fp16 is not supported on the CPU here ({cpu_flags()['model']}: no "
                                     f"AVX512-FP16 or AMX-FP16); {alt}")
            raise PrecisionError(_cpu_refusal(precision, what, fix))
    elif device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise PrecisionError(f"{what}: bf16 is not supported on {torch.cuda.get_device_name(device)}; "
                             "use --precision fp16")


def select_dtype(precision: str, device: "torch.device") -> "torch.dtype":
    """Map ``fp32|fp16|bf16`` to a dtype that ``device`` runs natively, or raise a :class:`DeviceError`."""
    import torch

    check_precision(precision, device)
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
