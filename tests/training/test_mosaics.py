"""Seeded touching/overlapping item mosaics, on tiny fake items (no dataset needed)."""

from __future__ import annotations

import gzip
import struct

import cv2
import numpy as np
import pytest

from imgsynth.errors import ConfigError, InputError
from imgsynth.pipelines.panoptic_maps import (
    check_consistent,
    from_cityscapes_instance_ids,
)
from imgsynth.training.mosaics import (
    PANOPTIC_FACTOR,
    MosaicGenerator,
    same_class_boundaries,
)


def fake_items(per_class: int = 3, classes: int = 4, size: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Filled shapes (square, disc, cross, bar) of varying size; values in 60..255, black outside."""
    rng = np.random.default_rng(0)
    items, labels = [], []
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2
    for cls in range(classes):
        for k in range(per_class):
            r = 2 + (k % 3)
            shape = [
                (abs(yy - c) <= r) & (abs(xx - c) <= r),
                (yy - c) ** 2 + (xx - c) ** 2 <= (r + 1) ** 2,
                (abs(yy - c) <= 1) | (abs(xx - c) <= 1),
                abs(xx - c) <= r - 1,
            ][cls % 4]
            items.append(np.where(shape, rng.integers(60, 256, (size, size)), 0).astype(np.uint8))
            labels.append(cls)
    return np.stack(items), np.array(labels)


def _gen(**kw) -> MosaicGenerator:
    items, labels = fake_items()
    return MosaicGenerator(items, labels, **{"size": 32, "seed": 7, **kw})


def test_same_seed_and_index_same_mosaic_in_any_order():
    g = _gen()
    a = [g(i) for i in range(6)]
    b = [_gen()(i) for i in reversed(range(6))][::-1]
    for x, y in zip(a, b):
        for k in ("image", "semantic", "instance", "panoptic"):
            assert np.array_equal(getattr(x, k), getattr(y, k))
        assert x.placements == y.placements
    assert not np.array_equal(a[0].image, a[1].image)
    assert not np.array_equal(a[0].image, _gen(seed=8)(0).image)


def test_maps_agree_with_each_other_and_with_the_image():
    g = _gen(threshold=0)
    for i in range(10):
        m = g(i)
        assert m.image.shape == m.semantic.shape == m.instance.shape == m.panoptic.shape == (32, 32)
        assert m.image.dtype == np.uint8 and m.panoptic.dtype == np.int64
        fg = m.instance > 0
        assert np.array_equal(fg, m.semantic > 0) and np.array_equal(fg, m.image > 0)
        assert np.array_equal(m.panoptic, np.where(fg, m.semantic * PANOPTIC_FACTOR + m.instance, 0))
        check_consistent(m.semantic, m.panoptic)
        # the Cityscapes reader gets the classes back from the panoptic map
        semantic, panoptic = from_cityscapes_instance_ids(m.panoptic)
        assert np.array_equal(semantic, m.semantic) and np.array_equal(panoptic, m.panoptic)
        # repainting the placements in order reproduces the image and the instances
        image = np.zeros_like(m.image)
        inst = np.zeros_like(m.instance)
        for k, p in enumerate(m.placements):
            mask = g.masks[p.item]
            image[p.top : p.top + 10, p.left : p.left + 10][mask] = g.items[p.item][mask]
            inst[p.top : p.top + 10, p.left : p.left + 10][mask] = k + 1
            assert p.label == g.labels[p.item] and (m.semantic[m.instance == k + 1] == p.label + 1).all()
        assert np.array_equal(image, m.image) and np.array_equal(inst, m.instance)


def test_items_touch_and_stay_visible():
    g = _gen(min_items=3, max_items=5, min_visible=0.5)
    counts = []
    for i in range(12):
        m = g(i)
        counts.append(len(m.placements))
        # every item touches the ones before it, so the foreground is one 4-connected piece
        n, _ = cv2.connectedComponents((m.instance > 0).astype(np.uint8), connectivity=4)
        assert n == 2
        for k, p in enumerate(m.placements):
            assert (m.instance == k + 1).sum() >= np.ceil(0.5 * g.areas[p.item])
    assert max(counts) > 3 and min(counts) >= 3


def test_overlap_and_border_preferences():
    # on a roomy canvas a bordering position nearly always exists (the fallback is an overlap)
    over = _gen(overlap_prob=1.0, min_items=4, max_items=4, size=48)
    border = _gen(overlap_prob=0.0, min_items=4, max_items=4, size=48)
    covered_over = covered_border = 0
    for i in range(8):
        for g, m in ((over, over(i)), (border, border(i))):
            hidden = sum(int(g.areas[p.item] - (m.instance == k + 1).sum()) for k, p in enumerate(m.placements))
            if g is over:
                covered_over += hidden
            else:
                covered_border += hidden
    assert covered_over > 5 * covered_border


def test_same_class_touching_items():
    g = _gen(same_class_prob=1.0)
    m = g(0)
    assert len({p.label for p in m.placements}) == 1
    b = same_class_boundaries(m.semantic, m.instance)
    assert b.any()
    ys, xs = np.nonzero(b)
    for y, x in zip(ys, xs):  # each marked pixel has a same-class neighbour of another instance
        steps = ((1, 0), (-1, 0), (0, 1), (0, -1))
        nb = [(y + dy, x + dx) for dy, dx in steps if 0 <= y + dy < 32 and 0 <= x + dx < 32]
        assert any(m.semantic[q] == m.semantic[y, x] and m.instance[q] != m.instance[y, x] for q in nb)
    assert not same_class_boundaries(m.semantic, np.where(m.instance > 0, 1, 0)).any()


def test_batch_and_bad_settings():
    g = _gen()
    assert g.label_nc == 5 and max(int(g(i).semantic.max()) for i in range(5)) < g.label_nc
    batch = g.batch([0, 3])
    assert batch["panoptic"].shape == (2, 32, 32) and np.array_equal(batch["image"][1], g(3).image)
    items, labels = fake_items()
    with pytest.raises(ConfigError, match="smaller than the items"):
        MosaicGenerator(items, labels, size=8)
    with pytest.raises(ConfigError, match="min_items"):
        MosaicGenerator(items, labels, min_items=4, max_items=2)
    with pytest.raises(ConfigError, match="overlap_prob"):
        MosaicGenerator(items, labels, overlap_prob=1.5)
    with pytest.raises(InputError, match="uint8"):
        MosaicGenerator(items.astype(np.float32), labels)
    with pytest.raises(InputError, match="labels must be"):
        MosaicGenerator(items, labels[:-1])
    with pytest.raises(InputError, match="no pixel above"):
        MosaicGenerator(np.zeros_like(items), labels)


def _write_idx(path, arr: np.ndarray) -> None:
    code = {np.dtype(np.uint8): 0x08}[arr.dtype]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())


def test_from_fashion_mnist_idx_files(tmp_path):
    items, labels = fake_items()
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", items)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    g = MosaicGenerator.from_fashion_mnist(tmp_path, "test", size=24, seed=1)
    ref = MosaicGenerator(items, labels, size=24, seed=1)
    assert np.array_equal(g(2).panoptic, ref(2).panoptic)
    with pytest.raises(InputError, match="no Fashion-MNIST train images"):
        MosaicGenerator.from_fashion_mnist(tmp_path, "train")
