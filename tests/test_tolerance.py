"""The shared float comparison: relative to the reference's magnitude, one bound per tensor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tolerance import NETWORK, assert_close, max_error


def test_scale_is_the_reference_magnitude():
    ref = torch.tensor([100.0, 0.0])
    assert_close(ref + torch.tensor([5e-4, 5e-4]), ref)  # 5e-4 <= 1e-5 * 100
    with pytest.raises(AssertionError, match="max"):
        assert_close(ref + torch.tensor([2e-3, 0.0]), ref)
    assert max_error(np.array([0.5]), np.array([0.25])) == (0.25, 1.0)  # scale never below 1


def test_an_element_near_zero_does_not_fail_a_whole_tensor():
    ref = torch.tensor([0.9, 1e-7])
    got = ref + torch.tensor([0.0, 1.18e-5])  # the pix2pixHD case: within 1e-4 of a unit-scale output
    assert_close(got, ref, NETWORK)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_shapes_and_integers_are_exact():
    with pytest.raises(AssertionError, match="shape"):
        assert_close(torch.zeros(2), torch.zeros(3))
    assert_close(torch.tensor([1, 2]), torch.tensor([1, 2]))
    with pytest.raises(AssertionError):
        assert_close(torch.tensor([1, 2]), torch.tensor([1, 3]))
