"""Device and precision selection."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest
import torch

from imgsynth.engine import device as device_mod
from imgsynth.engine.device import check_precision, cpu_flags, cpu_native_precision, select_device, select_dtype
from imgsynth.errors import DeviceError, PrecisionError, UsageError


def test_auto_and_cpu():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cpu", "cuda", "mps")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "tpu", "cpu:0"])
def test_unknown_device(spec):
    with pytest.raises(DeviceError, match="unknown device"):
        select_device(spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_missing():
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        select_device("cuda:0")


def test_precisions_on_cpu_with_native_bf16(native_precision):
    native_precision(bf16=True, fp16=False)
    cpu = torch.device("cpu")
    assert select_dtype("fp32", cpu) is torch.float32
    assert select_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(PrecisionError, match="fp16 is not supported on the CPU.*use --precision bf16"):
        select_dtype("fp16", cpu)
    with pytest.raises(DeviceError, match="unknown precision"):
        select_dtype("fp8", cpu)


def test_bf16_refused_on_cpu_without_native_kernels(native_precision):
    native_precision(bf16=False, fp16=False)
    cpu = torch.device("cpu")
    assert select_dtype("fp32", cpu) is torch.float32
    with pytest.raises(PrecisionError) as err:
        select_dtype("bf16", cpu)
    msg = str(err.value)
    assert "\n" not in msg and "AVX512-BF16 or AMX" in msg and msg.endswith("use --precision fp32")
    assert isinstance(err.value, UsageError) and err.value.exit_code == 2
    with pytest.raises(PrecisionError, match="fp16 is not supported on the CPU.*use --precision fp32$"):
        select_dtype("fp16", cpu)


def test_native_fp16_cpu_is_accepted(native_precision):
    native_precision(bf16=True, fp16=True)
    assert select_dtype("fp16", torch.device("cpu")) is torch.float16


def test_capability_matches_the_cpu_flags():
    # the oneDNN answer agrees with the instruction set: native bf16 needs AVX512-BF16 or AMX
    flags = cpu_flags()
    assert isinstance(flags["model"], str) and flags["model"]
    if cpu_native_precision("bf16"):
        assert flags["avx512_bf16"] or flags["amx"] or not Path("/proc/cpuinfo").exists()
    assert cpu_native_precision("fp32") is True


def test_check_precision_names_the_refused_thing(native_precision):
    native_precision(bf16=False)
    with pytest.raises(PrecisionError, match="^bf16 autocast is not supported.*use precision fp32$"):
        check_precision("bf16", torch.device("cpu"), what="bf16 autocast", fix="use precision fp32")
    check_precision("bf16", torch.device("meta"))  # not a CPU: no oneDNN question to ask
    assert device_mod.cpu_native_precision("bf16") is False


_FAULTS = r"""
import resource, sys
import numpy as np
from imgsynth.engine.device import prepare_allocator
print(prepare_allocator())
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.ones(50_000_000, np.float32)  # 200 MB, far over glibc's 32 MB mmap limit
    del a
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(faults[1:]))
"""


def _allocations(env_extra):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES" and not k.startswith(("MALLOC_", "IMGSYNTH_MALLOC"))}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_allocator_reuses_freed_large_blocks():
    tuned, tuned_faults = _allocations({})
    plain, plain_faults = _allocations({"IMGSYNTH_MALLOC": "system"})
    assert tuned and not plain
    # the second 200 MB block reuses the pages of the first instead of faulting in fresh ones
    assert plain_faults > 20 and tuned_faults < plain_faults / 10


@pytest.mark.parametrize("env", [{"IMGSYNTH_MALLOC": "system"}, {"MALLOC_ARENA_MAX": "2"}, {"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0"}])
def test_allocator_left_alone_when_the_user_chose(monkeypatch, env):
    called = []
    monkeypatch.setattr("ctypes.CDLL", lambda *a, **k: called.append(a))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert device_mod.prepare_allocator() is False and not called


def test_prepare_runtime_sets_threads_and_allocator(monkeypatch):
    calls = []
    monkeypatch.setattr(device_mod, "prepare_threads", lambda: calls.append("threads"))
    monkeypatch.setattr(device_mod, "prepare_allocator", lambda: calls.append("allocator"))
    device_mod.prepare_runtime()
    assert calls == ["threads", "allocator"]
