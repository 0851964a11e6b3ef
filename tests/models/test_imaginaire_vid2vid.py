"""imaginaire vid2vid: the three frame paths and the previous-frame window."""

from __future__ import annotations

import torch

from imgsynth.models.imaginaire_vid2vid import push_frame
from imgsynth.models.registry import get_model


def test_push_frame_keeps_the_latest_n():
    a, b, c = (torch.full((1, 2, 1, 1), float(i)) for i in range(3))
    w = push_frame(None, a, 2)
    w = push_frame(w, b, 2)
    assert w.shape == (1, 2, 2, 1, 1)
    w = push_frame(w, c, 2)
    assert w[0, :, 0, 0, 0].tolist() == [1.0, 2.0]


def test_frame_paths():
    spec = get_model("imaginaire_vid2vid")
    gen = spec.build(spec.tiny).eval()
    label, prev_labels, prev_images = gen.dummy_inputs(1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        first = gen(label)
        second = gen(label, prev_labels[:, -1:], prev_images[:, -1:])
        full = gen(label, prev_labels, prev_images)
    assert first.flow is None and second.flow is None and second.warped is None
    assert full.flow.shape[1] == 2 and full.mask.shape[1] == 1 and full.warped.shape == prev_images[:, -1].shape
    for out in (first, second, full):
        assert out.image.shape == label[:, :3].shape and out.image.abs().max() <= 1
    assert not torch.allclose(first.image, full.image)
