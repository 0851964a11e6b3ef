"""Every registered architecture builds from its tiny config and runs a forward pass."""

from __future__ import annotations

import pytest
import torch

from imgsynth.models.registry import get_model, list_models
from imgsynth.errors import ConfigError, UnknownModelError

ARCHS = list_models()


def test_registry_is_populated():
    assert ARCHS, "no architecture registered"


@pytest.mark.parametrize("name", ARCHS)
def test_tiny_forward(name):
    spec = get_model(name)
    model = spec.build(spec.tiny).eval()
    gen = torch.Generator().manual_seed(0)
    inputs = model.dummy_inputs(2, gen)
    with torch.no_grad():
        out = model(*inputs)
    first = out[0] if isinstance(out, (tuple, list)) else out
    assert first.shape[0] == 2 and torch.isfinite(first).all()
    sd = model.state_dict()
    again = spec.build(spec.tiny)
    again.load_state_dict(sd, strict=True)


def test_unknown_arch_and_option():
    with pytest.raises(UnknownModelError):
        get_model("no-such-arch")
    spec = get_model(ARCHS[0])
    with pytest.raises(ConfigError, match="has no option"):
        spec.build({"definitely_not_an_option": 1})
