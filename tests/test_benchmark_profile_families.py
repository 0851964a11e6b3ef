"""``benchmarks/profile_families.py``: operator shares, and the costliest layers by input shape."""

from __future__ import annotations

import pytest

from benchmarks.conformance_speed import DATA
from benchmarks.profile_families import group_of, profile


def test_operator_groups():
    assert group_of("aten::mkldnn_convolution") == "convolution" and group_of("aten::bmm") == "convolution"
    assert group_of("aten::native_batch_norm") == "normalisation" and group_of("aten::copy_") == "copies / layout"


@pytest.mark.skipif(not (DATA / "dcgan_examples.manifest.json").exists(), reason="needs ../shared/conformance")
def test_profile_lists_the_costliest_layers_with_their_shapes():
    r = profile("dcgan_examples", shapes=4)
    assert r["self_cpu_s"] > 0 and abs(sum(r["groups"].values()) - 1) < 0.01
    assert 1 <= len(r["layers"]) <= 4
    shares = [layer["share"] for layer in r["layers"]]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.001
    assert all(layer["op"].startswith("aten::") and layer["shapes"] for layer in r["layers"])
