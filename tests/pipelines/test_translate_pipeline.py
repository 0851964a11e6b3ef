"""Translation pipeline: label encoding, instance edges, padding/cropping, BN modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgsynth.errors import InputError, UsageError
from imgsynth.models.registry import build_model, get_model
from imgsynth.pipelines.translate import (
    TranslateInput, Translator, canny_edges, resize_nearest_legacy, size_multiple, to_gray,
)


def tiny(arch, **over):
    torch.manual_seed(0)
    return build_model(arch, {**get_model(arch).tiny, **over}).eval()


def labels(h, w, n, seed=0):
    return np.random.RandomState(seed).randint(0, n, (h, w)).astype(np.int32)


def test_label_encoding_matches_official_rule():
    net = tiny("pix2pixhd_global")
    t = Translator(net)
    lab = np.array([[0, 1], [2, 3]], np.int32)
    inst = np.array([[1, 1], [1, 2]], np.int32)
    x = t.encode_labels(TranslateInput("a", label=lab, instance=inst))
    assert x.shape == (1, 5, 2, 2)
    assert x[0, :4].argmax(0).tolist() == lab.tolist()
    assert x[0, 4].tolist() == [[0, 1], [1, 1]]  # both sides of the 1|2 boundary


def test_out_of_range_and_missing_instance():
    t = Translator(tiny("pix2pixhd_global"))
    with pytest.raises(InputError, match=r"label value\(s\) \[7\] out of range"):
        t.encode_labels(TranslateInput("a.png", label=np.full((4, 4), 7), instance=np.zeros((4, 4))))
    with pytest.raises(InputError, match="needs an instance map"):
        t.encode_labels(TranslateInput("a.png", label=np.zeros((4, 4), np.int32)))


def test_dontcare_and_offset():
    net = tiny("spade")
    t = Translator(net, {"label_offset": -1})
    lab = np.array([[0, 1], [5, 3]], np.int32)  # 0 -> -1 -> dontcare (channel 5)
    x = t.encode_labels(TranslateInput("a", label=lab, instance=np.zeros((2, 2))))
    assert x[0, :6].argmax(0).tolist() == [[5, 0], [4, 2]]


@pytest.mark.parametrize("arch,kind,size", [
    ("pix2pixhd_global", "label", (21, 13)),
    ("pix2pix_unet", "image", (37, 50)),
    ("cyclegan_resnet", "edges", (30, 22)),
    ("spade", "label", (40, 70)),
])
def test_any_size_comes_back_at_input_size(arch, kind, size):
    net = tiny(arch)
    t = Translator(net, {}, kind)
    if kind == "label":
        item = TranslateInput("x", label=labels(*size, int(net.label_nc)), instance=labels(*size, 3, 1))
    else:
        item = TranslateInput("x", image=np.random.RandomState(0).randint(0, 256, (*size, 3)).astype(np.uint8))
    out, how = t.translate_one(item)
    assert out.shape == (*size, 3) and out.dtype == np.uint8
    assert how in ("pad", "resize", "none")


def test_size_multiples():
    assert size_multiple(tiny("pix2pix_unet")) == 32
    assert size_multiple(tiny("pix2pixhd_global")) == 4
    assert size_multiple(tiny("cyclegan_resnet")) == 4


def test_batchnorm_batch_mode_is_deterministic_per_seed():
    net = tiny("pix2pix_unet", num_downs=6)  # one decoder stage with dropout
    t = Translator(net, {"batchnorm": "batch", "dropout": True})
    img = np.random.RandomState(1).randint(0, 256, (64, 64, 3)).astype(np.uint8)
    a = t.translate_one(TranslateInput("a", image=img, seed=3))[0]
    b = t.translate_one(TranslateInput("a", image=img, seed=3))[0]
    c = t.translate_one(TranslateInput("a", image=img, seed=4))[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_kind_mismatch_and_helpers():
    with pytest.raises(UsageError, match="takes label maps"):
        Translator(tiny("spade"), {}, "image")
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:, 4:] = 255
    e = canny_edges(rgb)
    assert e.shape == (8, 8, 3) and (e == 0).any() and (e == 255).any()
    assert to_gray(np.full((1, 1, 3), 200, np.uint8))[0, 0].tolist() == [200, 200, 200]
    arr = np.arange(6).reshape(2, 3)
    assert resize_nearest_legacy(arr, (4, 6)).tolist()[0] == [0, 0, 1, 1, 2, 2]
