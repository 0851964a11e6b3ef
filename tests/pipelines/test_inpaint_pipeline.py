"""Inpainting pipeline: classical methods and a PConv network, known pixels always kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgsynth.errors import InputError, UsageError
from imgsynth.models.registry import build_model, get_model
from imgsynth.pipelines.inpaint import Inpainter, check_hole, composite, grow_hole


def scene(h=40, w=56, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    hole = np.zeros((h, w), bool)
    hole[10:20, 12:30] = True
    return img, hole


@pytest.mark.parametrize("method", ["telea", "ns", "patchmatch"])
def test_classical_keeps_known_pixels(method):
    img, hole = scene()
    out = Inpainter(method)([img], [hole])[0]
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out[~hole], img[~hole])
    assert not np.array_equal(out[hole], img[hole])


def test_telea_fills_smoothly_from_the_border():
    img = np.full((32, 32, 3), 100, np.uint8)
    hole = np.zeros((32, 32), bool)
    hole[12:20, 12:20] = True
    img[hole] = 0
    out = Inpainter("telea")([img], [hole])[0]
    assert np.abs(out[hole].astype(int) - 100).max() <= 2


def _tiny_pconv():
    torch.manual_seed(0)
    return build_model("pconv_unet", get_model("pconv_unet").tiny).eval()


@pytest.mark.parametrize("strategy", ["pad", "resize"])
def test_network_any_size_known_pixels_kept(strategy):
    net = _tiny_pconv()
    imgs, holes = zip(scene(40, 56, 0), scene(40, 56, 1), scene(23, 37, 2))
    holes = list(holes)
    holes[2] = holes[2][:23, :37]
    outs = Inpainter(net, strategy=strategy, resolution=32)(list(imgs), holes)
    for img, hole, out in zip(imgs, holes, outs):
        assert out.shape == img.shape
        assert np.array_equal(out[~hole], img[~hole])


def test_network_batch_independent():
    net = _tiny_pconv()
    a, ha = scene(32, 48, 0)
    b, hb = scene(32, 48, 1)
    both = Inpainter(net)([a, b], [ha, hb])
    alone = Inpainter(net)([b], [hb])
    assert np.abs(both[1].astype(int) - alone[0].astype(int)).max() <= 1


def test_helpers():
    hole = np.zeros((9, 9), bool)
    hole[4, 4] = True
    assert grow_hole(hole, 2).sum() > 9 and grow_hole(hole, 0) is hole
    with pytest.raises(InputError, match="no hole"):
        check_hole(np.zeros((3, 3), bool), "m.png")
    with pytest.raises(InputError, match="whole image"):
        check_hole(np.ones((3, 3), bool), "m.png")
    img = np.zeros((2, 2, 3), np.uint8)
    fill = np.full((2, 2, 3), 9, np.uint8)
    h = np.array([[True, False], [False, False]])
    assert composite(img, fill, h)[0, 0, 0] == 9 and composite(img, fill, h)[1, 1, 0] == 0
    with pytest.raises(UsageError):
        Inpainter("magic")
