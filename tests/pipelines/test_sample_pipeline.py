"""Sampling and interpolation pipelines: seeds, batching independence, truncation, walks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgsynth.errors import UsageError
from imgsynth.models.registry import build_model, get_model
from imgsynth.pipelines.interpolate import lerp, slerp, walk
from imgsynth.pipelines.sample import Sampler, make_grid, parse_grid, parse_seeds, seed_latents

from tolerance import assert_close


def test_parse_seeds_and_grid():
    assert parse_seeds("0,1,4-6") == [0, 1, 4, 5, 6]
    for bad in ("a", "5-2", ""):
        with pytest.raises(UsageError):
            parse_seeds(bad)
    assert parse_grid("4x3") == (4, 3)
    with pytest.raises(UsageError):
        parse_grid("4by3")


def test_seed_latents_follow_generate_py():
    z = seed_latents([42], 7)
    assert torch.equal(z[0], torch.from_numpy(np.random.RandomState(42).randn(7)).float())


def _tiny(arch):
    torch.manual_seed(0)
    return build_model(arch, get_model(arch).tiny).eval()


@pytest.mark.parametrize("arch", ["dcgan", "gan"])
def test_same_seed_same_image_whatever_the_batch(arch):
    s = Sampler(_tiny(arch))
    together = s.from_seeds([3, 4, 5])
    alone = torch.cat([s.from_seeds([k]) for k in (3, 4, 5)])
    assert_close(together, alone, atol=1e-5, rtol=0)
    assert together.min() >= -1 and together.max() <= 1


def test_truncation_needs_mapping():
    s = Sampler(_tiny("dcgan"))
    with pytest.raises(UsageError, match="mapping network"):
        s.check_options(0.7, False, "const")


def test_stylegan2_truncation_and_mixing():
    s = Sampler(_tiny("stylegan2"))
    c = s.c_dim
    base = s.from_seeds([1], class_idx=0 if c else None)
    trunc0 = s.from_seeds([1, 2], truncation_psi=0.0, class_idx=0 if c else None)
    assert_close(trunc0[0], trunc0[1])  # psi 0 -> every seed maps to w_avg
    mixed = s.from_seeds([1], mix_seeds=[2], mix_layers=[s.model.num_ws - 1], class_idx=0 if c else None)
    assert not torch.equal(base, mixed)
    with pytest.raises(UsageError, match="out of range"):
        s.from_seeds([1], mix_seeds=[2], mix_layers=[99], class_idx=0 if c else None)


def test_lerp_slerp_endpoints_and_norm():
    a, b = torch.randn(16), torch.randn(16)
    t = torch.tensor([0.0, 0.5, 1.0])
    for fn in (lerp, slerp):
        out = fn(a, b, t)
        assert_close(out[0], a)
        assert_close(out[2], b, atol=1e-5, rtol=1e-5)
    u, v = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    mid = slerp(u, v, torch.tensor([0.5]))[0]
    assert_close(mid.norm(), torch.tensor(1.0))  # stays on the circle
    assert_close(slerp(u, u, torch.tensor([0.3]))[0], u)  # parallel: no NaN


def test_walk_frame_counts():
    keys = torch.randn(3, 4)
    path = walk(keys, 5, "lerp")
    assert path.shape[0] == 11 and torch.equal(path[-1], keys[-1]) and torch.equal(path[0], keys[0])
    looped = walk(keys, 5, "slerp", loop=True)
    assert looped.shape[0] == 15
    with pytest.raises(UsageError):
        walk(keys[:1], 5)


def test_make_grid_layout():
    imgs = np.stack([np.full((2, 3, 1), i, np.uint8) for i in range(5)])
    g = make_grid(imgs, 2, 3, pad=1)
    assert g.shape == (5, 11, 1) and g[3, 4, 0] == 4 and g[0, 3, 0] == 0
