"""Shared training-test fixtures.

Training tests run their tiny networks on one thread: fastest for tiny networks, and on a busy
2-core machine spinning OpenMP threads are very slow (OMP_WAIT_POLICY is fixed once torch has loaded).
``final_state`` reads a run's last checkpoint; ``assert_same`` compares two (nested) states bit for bit.
"""

from __future__ import annotations

import pytest
import torch

from imgsynth.training.checkpoint import list_checkpoints, load_checkpoint


def _final_state(out_dir):
    return load_checkpoint(list_checkpoints(out_dir / "checkpoints")[-1][1])


def _assert_same(a, b, path=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    else:
        assert a == b, path


@pytest.fixture
def final_state():
    """``final_state(out_dir)``: the last checkpoint of the run in ``out_dir``."""
    return _final_state


@pytest.fixture
def assert_same():
    """``assert_same(a, b)``: tensors, dicts of them and plain values equal bit for bit."""
    return _assert_same


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
