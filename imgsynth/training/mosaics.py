"""Seeded mosaics of Fashion-MNIST items that touch and overlap: panoptic training data.

Each mosaic is a square canvas with several 28x28 garments (Xiao et al. 2017, Fashion-MNIST)
pasted so that every new item touches an item already there, either beside it (sharing a
boundary) or partly on top of it. Often the new item is of the anchor's class, which gives the
case panoptic maps exist for: two touching objects of one class that a semantic map cannot tell
apart. The true image comes with its maps:

* ``image``: (H, W) uint8, the composed grey image (later items drawn on top);
* ``semantic``: (H, W) int64, 0 = background, ``class + 1`` on an item's pixels;
* ``instance``: (H, W) int64, 0 = background, ``k`` on the visible pixels of the k-th item;
* ``panoptic``: (H, W) int64, ``semantic * 1000 + instance`` (0 = background), the Cityscapes
  encoding that :func:`imgsynth.pipelines.panoptic_maps.from_cityscapes_instance_ids` reads.

An item's pixels are those brighter than ``threshold`` (default 0: the label rule of
``TRAINING-DATA.md``, ``label = (x > 0) * (class + 1)``). Mosaic ``index`` of a generator with
``seed`` is always the same (its random stream is ``numpy.random.default_rng([seed, index])``),
whatever order mosaics are asked for in.

Placement of a new item: an anchor is drawn among the items placed so far, the item is drawn
(of the anchor's class with probability ``same_class_prob``), and every top-left position that
keeps the item inside the canvas is scored exactly with sliding-window sums: it must touch the
anchor's visible pixels (4-neighbourhood) and leave every earlier item at least ``min_visible``
of its own area visible. With probability ``overlap_prob`` a position that covers part of the
anchor is preferred, otherwise one that only borders the foreground. When no position qualifies
the item is left out (so a mosaic may hold fewer than ``min_items`` items in crowded settings).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from imgsynth.errors import ConfigError, InputError
from imgsynth.training.idx import fashion_mnist_files, read_idx

PANOPTIC_FACTOR = 1000
"""``panoptic = semantic * PANOPTIC_FACTOR + instance`` (the Cityscapes ``instanceIds`` rule)."""


@dataclass(frozen=True)
class Placement:
    """One pasted item: its index in the item array, class (0-based), top-left row/column."""

    item: int
    label: int
    top: int
    left: int


@dataclass(frozen=True)
class Mosaic:
    """A mosaic and its maps, all (H, W): image uint8; semantic, instance, panoptic int64."""

    image: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    panoptic: np.ndarray
    placements: tuple[Placement, ...]


def _window_sums(canvas: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Sum of ``canvas * kernel`` at every top-left position where ``kernel`` fits (exact ints)."""
    view = sliding_window_view(canvas, kernel.shape)
    return np.einsum("ijkl,kl->ij", view, kernel, dtype=np.int64)


def _dilate4(mask: np.ndarray) -> np.ndarray:
    """The mask grown by its 4-neighbours (pixels that touch it, and itself)."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def same_class_boundaries(semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels with a 4-neighbour of the same class but another instance.

    The boundaries between touching objects of one class: what a semantic map alone cannot
    show, and where an instance-separation score looks.
    """
    out = np.zeros(semantic.shape, dtype=bool)
    for a, b in (((slice(1, None), slice(None)), (slice(None, -1), slice(None))),
                 ((slice(None), slice(1, None)), (slice(None), slice(None, -1)))):
        hit = (semantic[a] == semantic[b]) & (instance[a] != instance[b]) & (semantic[a] > 0)
        out[a] |= hit
        out[b] |= hit
    return out


class MosaicGenerator:
    """Seeded generator of touching/overlapping item mosaics (see the module docstring).

    Args:
        items: (K, h, w) uint8 item images (Fashion-MNIST: 28x28, black background).
        labels: (K,) integer classes of the items, in [0, num_classes).
        size: canvas side (or (height, width)), at least the item size.
        min_items, max_items: number of items to paste, drawn uniformly in this range.
        same_class_prob: probability that a new item has its anchor's class.
        overlap_prob: probability of preferring a position that covers part of the anchor
            (otherwise one that only borders the existing foreground).
        min_visible: fraction of each earlier item's pixels that must stay visible.
        threshold: pixels above it belong to the item.
        seed: base seed; mosaic ``index`` depends only on (seed, index).
    """

    def __init__(
        self,
        items: np.ndarray,
        labels: np.ndarray,
        *,
        size: int | Sequence[int] = 64,
        min_items: int = 3,
        max_items: int = 6,
        same_class_prob: float = 0.5,
        overlap_prob: float = 0.5,
        min_visible: float = 0.4,
        threshold: int = 0,
        seed: int = 0,
    ) -> None:
        items = np.asarray(items)
        labels = np.asarray(labels)
        if items.ndim != 3 or items.dtype != np.uint8 or len(items) == 0:
            raise InputError(f"items must be a non-empty uint8 (K, h, w) array, got {items.dtype} {items.shape}")
        if labels.shape != (len(items),) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
            raise InputError(
                f"labels must be (K,) = ({len(items)},) non-negative integers, got {labels.dtype} {labels.shape}"
            )
        masks = items > threshold
        if not masks.reshape(len(items), -1).any(1).all():
            raise InputError(f"some items have no pixel above threshold {threshold}")
        h, w = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if h < items.shape[1] or w < items.shape[2]:
            raise ConfigError(f"canvas {h}x{w} is smaller than the items ({items.shape[1]}x{items.shape[2]})")
        if not 1 <= min_items <= max_items:
            raise ConfigError(f"need 1 <= min_items <= max_items, got {min_items}, {max_items}")
        probs = {"same_class_prob": same_class_prob, "overlap_prob": overlap_prob, "min_visible": min_visible}
        for nm, v in probs.items():
            if not 0.0 <= float(v) <= 1.0:
                raise ConfigError(f"{nm} must be in [0, 1], got {v}")
        self.items, self.labels, self.masks = items, labels.astype(np.int64), masks
        self.areas = masks.reshape(len(items), -1).sum(1)
        self.size = (h, w)
        self.min_items, self.max_items = int(min_items), int(max_items)
        self.same_class_prob, self.overlap_prob = float(same_class_prob), float(overlap_prob)
        self.min_visible, self.threshold, self.seed = float(min_visible), int(threshold), int(seed)
        self.num_classes = int(self.labels.max()) + 1
        self.by_class = {c: np.flatnonzero(self.labels == c) for c in np.unique(self.labels).tolist()}

    @property
    def label_nc(self) -> int:
        """Labels of the semantic maps: background + one per item class (a model's ``label_nc``)."""
        return self.num_classes + 1

    @classmethod
    def from_fashion_mnist(cls, root: str | Path, split: str = "train", **kwargs: object) -> "MosaicGenerator":
        """Items and labels from the Fashion-MNIST IDX files in ``root`` (``train`` or ``test``)."""
        images_path = fashion_mnist_files(root, split)
        labels_path = images_path.with_name(images_path.name.replace("images-idx3", "labels-idx1"))
        return cls(read_idx(images_path), read_idx(labels_path), **kwargs)  # type: ignore[arg-type]

    def _pick_item(self, rng: np.random.Generator, label: int | None) -> int:
        pool = self.by_class[label] if label is not None else None
        if pool is None:
            return int(rng.integers(len(self.items)))
        return int(pool[rng.integers(len(pool))])

    def __call__(self, index: int) -> Mosaic:
        """Mosaic number ``index`` (deterministic in (seed, index))."""
        rng = np.random.default_rng([self.seed, int(index)])
        H, W = self.size
        ih, iw = self.items.shape[1:]
        image = np.zeros((H, W), np.uint8)
        instance = np.zeros((H, W), np.int64)
        placed: list[Placement] = []
        target = int(rng.integers(self.min_items, self.max_items + 1))

        first = self._pick_item(rng, None)
        top, left = int(rng.integers(H - ih + 1)), int(rng.integers(W - iw + 1))
        self._paste(image, instance, first, top, left, 1)
        placed.append(Placement(first, int(self.labels[first]), top, left))

        for _ in range(target - 1):
            anchor = int(rng.integers(len(placed)))
            same = rng.random() < self.same_class_prob
            item = self._pick_item(rng, placed[anchor].label if same else None)
            prefer_overlap = rng.random() < self.overlap_prob
            pos = self._position(rng, instance, placed, anchor, item, prefer_overlap)
            if pos is None:
                continue
            self._paste(image, instance, item, pos[0], pos[1], len(placed) + 1)
            placed.append(Placement(item, int(self.labels[item]), pos[0], pos[1]))

        classes = np.array([0] + [p.label + 1 for p in placed], np.int64)
        semantic = classes[instance]
        panoptic = np.where(instance > 0, semantic * PANOPTIC_FACTOR + instance, 0)
        return Mosaic(image, semantic, instance, panoptic, tuple(placed))

    def _paste(self, image: np.ndarray, instance: np.ndarray, item: int, top: int, left: int, inst_id: int) -> None:
        m = self.masks[item]
        ih, iw = m.shape
        image[top : top + ih, left : left + iw][m] = self.items[item][m]
        instance[top : top + ih, left : left + iw][m] = inst_id

    def _position(
        self, rng: np.random.Generator, instance: np.ndarray, placed: list[Placement], anchor: int,
        item: int, prefer_overlap: bool,
    ) -> tuple[int, int] | None:
        kernel = self.masks[item].astype(np.int64)
        fg = instance > 0
        anchor_vis = instance == anchor + 1
        touches = _window_sums(_dilate4(anchor_vis).astype(np.int64), kernel) > 0
        ok = touches
        # each earlier item keeps min_visible of its own area
        for k, p in enumerate(placed):
            vis = instance == k + 1
            covered = _window_sums(vis.astype(np.int64), kernel)
            ok &= (vis.sum() - covered) >= np.ceil(self.min_visible * self.areas[p.item])
        covers_anchor = _window_sums(anchor_vis.astype(np.int64), kernel) > 0
        covers_any = _window_sums(fg.astype(np.int64), kernel) > 0
        overlap, border = ok & covers_anchor, ok & ~covers_any
        first, second = (overlap, border) if prefer_overlap else (border, overlap)
        for choice in (first, second, ok):
            cand = np.argwhere(choice)
            if len(cand):
                top, left = cand[rng.integers(len(cand))]
                return int(top), int(left)
        return None

    def batch(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        """Mosaics ``indices`` stacked: ``image``/``semantic``/``instance``/``panoptic``, (B, H, W)."""
        ms = [self(i) for i in indices]
        return {k: np.stack([getattr(m, k) for m in ms]) for k in ("image", "semantic", "instance", "panoptic")}
