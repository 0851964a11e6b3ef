"""Training tests run their tiny networks on one thread: fastest for tiny networks, and on a busy
2-core machine spinning OpenMP threads are very slow (OMP_WAIT_POLICY is fixed once torch has loaded)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
