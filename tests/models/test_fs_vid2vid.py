"""Few-shot vid2vid: reference encoding, K references with attention, cached hyper weights."""

from __future__ import annotations

import pytest
import torch

from imgsynth.models.fs_vid2vid import _split
from imgsynth.models.registry import get_model


def _gen(**over):
    spec = get_model("fs_vid2vid")
    return spec.build({**spec.tiny, **over}).eval()


def test_cached_references_equal_recomputed_for_k1():
    gen = _gen(few_shot_k=1)
    label, ref_labels, ref_images, prev_labels, prev_images = gen.dummy_inputs(2, torch.Generator().manual_seed(1))
    with torch.no_grad():
        refs = gen.encode_references(ref_labels, ref_images)
        a = gen(label, ref_labels, ref_images, prev_labels, prev_images)
        b = gen(label, ref_labels, ref_images, prev_labels, prev_images, references=refs)
    assert torch.equal(a.image, b.image)
    assert a.flow_prev is not None and a.attention is None and a.ref_idx is None
    with torch.no_grad():
        first = gen(label, ref_labels, ref_images)
    assert first.flow_prev is None and first.flow_ref.shape == (2, 2, *label.shape[-2:])


def test_k2_attention_picks_a_reference_per_sample():
    gen = _gen()
    label, ref_labels, ref_images, *_ = gen.dummy_inputs(2, torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = gen(label, ref_labels, ref_images)
    assert out.ref_idx.shape == (2,) and out.ref_idx.dtype == torch.int64
    assert out.attention.shape[:2] == (1, 1)
    with pytest.raises(ValueError, match="K = 2"):
        gen(label, ref_labels[:, :1], ref_images[:, :1])


def test_weight_reshaper_bias_split():
    flat = torch.arange(2 * 14, dtype=torch.float32).reshape(2, 14)
    w, b = _split(flat, [2, 3, 2, 1])  # 12 weights + 2 biases
    assert w.shape == (2, 2, 3, 2, 1) and torch.equal(b, flat[:, -2:])
    w, b = _split(flat[:, :12], [2, 3, 2, 1])  # no room for a bias: all weight
    assert b is None and w.shape == (2, 2, 3, 2, 1)
