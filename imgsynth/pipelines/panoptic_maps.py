"""Panoptic inputs: decoded maps in, (semantic labels, panoptic ids) out (arrays only, no files).

A panoptic map gives every pixel a semantic class and a segment identity: "things" (countable
objects) get one segment per instance, "stuff" one segment per class. The panoptic generator
(:mod:`imgsynth.models.panoptic`) takes the class as a one-hot map and the segment as an integer
id map. Three input conventions are read here, each into ``(semantic, panoptic)``, both (H, W)
int64 arrays:

* COCO panoptic (Kirillov et al. 2019): an RGB PNG with segment id ``R + 256 G + 256^2 B`` and
  a JSON record whose ``segments_info`` gives each id's ``category_id``; id 0 is unlabelled
  (void). The panoptic id is the segment id.
* Cityscapes ``*_instanceIds.png`` (Cordts et al. 2016): ``class * 1000 + instance`` for pixels
  of thing instances, the class id alone elsewhere. The panoptic id is the value itself.
* A pair of semantic and instance maps (e.g. a SPADE/pix2pixHD ``label`` + ``inst`` pair): a
  segment is a (class, instance) pair; the panoptic id is ``class * F + instance`` with
  ``F = 1000`` when every instance value is below 1000 (the Cityscapes encoding), else
  ``max(instance) + 1``.

Every reader checks that each panoptic id has exactly one class and raises
:class:`imgsynth.errors.InputError` with the offending ids otherwise.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from imgsynth.errors import InputError

VOID_LABEL = 255
"""Semantic label given to COCO's unlabelled pixels (the dontcare value of the label pipeline)."""


def _prefix(name: str) -> str:
    return f"{name}: " if name else ""


def _int_map(arr: np.ndarray, what: str, name: str) -> np.ndarray:
    """A 2-D non-negative integer array as int64, or InputError."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise InputError(f"{_prefix(name)}{what} must be a single-channel (H, W) map, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
        raise InputError(f"{_prefix(name)}{what} must hold integers, got {a.dtype}")
    a = a.astype(np.int64)
    if a.size and a.min() < 0:
        raise InputError(f"{_prefix(name)}{what} has negative value(s) {sorted(set(a[a < 0].tolist()))[:5]}")
    return a


def check_consistent(semantic: np.ndarray, panoptic: np.ndarray, name: str = "") -> None:
    """Raise InputError unless the maps have one shape and every panoptic id one class."""
    if semantic.shape != panoptic.shape:
        raise InputError(f"{_prefix(name)}semantic map {semantic.shape[::-1]} and panoptic map "
                         f"{panoptic.shape[::-1]} differ in size")
    pairs = np.unique(np.stack([panoptic.ravel(), semantic.ravel()], 1), axis=0)
    ids, counts = np.unique(pairs[:, 0], return_counts=True)
    if (counts > 1).any():
        bad = ids[counts > 1][:5]
        detail = "; ".join(f"id {i} has classes {pairs[pairs[:, 0] == i, 1].tolist()}" for i in bad)
        raise InputError(f"{_prefix(name)}inconsistent panoptic map: {detail} (each segment must have one class)")


def coco_rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 COCO panoptic PNG -> (H, W) int64 segment ids ``R + 256 G + 256^2 B``."""
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] < 3 or a.dtype != np.uint8:
        raise InputError(f"a COCO panoptic PNG must be 8-bit RGB (H, W, 3), got {a.dtype} {a.shape}")
    a = a[..., :3].astype(np.int64)
    return a[..., 0] + 256 * a[..., 1] + 256 * 256 * a[..., 2]


def id_to_coco_rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W) segment ids in [0, 256^3) -> (H, W, 3) uint8 COCO panoptic colours."""
    a = np.asarray(ids).astype(np.int64)
    if a.size and (a.min() < 0 or a.max() >= 256 ** 3):
        raise InputError("COCO panoptic ids must be in [0, 256^3)")
    return np.stack([a % 256, (a // 256) % 256, a // (256 * 256)], -1).astype(np.uint8)


def coco_segments(annotations: Mapping[str, Any], file_name: str) -> list[dict[str, Any]]:
    """The ``segments_info`` of ``file_name`` in a COCO panoptic JSON (``{"annotations": [...]}``).

    Matches the record's ``file_name`` exactly, then by stem (``000123.png`` ~ ``000123``).
    """
    records = annotations.get("annotations") if isinstance(annotations, Mapping) else None
    if not isinstance(records, list):
        raise InputError("a COCO panoptic JSON must have an 'annotations' list")
    stem = file_name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    for want in (file_name, stem):
        for rec in records:
            fn = str(rec.get("file_name", ""))
            if fn == want or (want == stem and fn.rsplit(".", 1)[0] == stem):
                info = rec.get("segments_info")
                if not isinstance(info, list):
                    raise InputError(f"{file_name}: its annotation has no 'segments_info' list")
                return info
    raise InputError(f"{file_name}: no annotation with this file_name in the COCO panoptic JSON")


def from_coco_panoptic(
    rgb: np.ndarray,
    segments_info: Sequence[Mapping[str, Any]],
    *,
    category_to_label: Mapping[int, int] | None = None,
    void_label: int = VOID_LABEL,
    name: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """COCO panoptic PNG + its ``segments_info`` -> (semantic, panoptic), (H, W) int64 each.

    Args:
        rgb: (H, W, 3) uint8 PNG pixels.
        segments_info: ``[{"id": int, "category_id": int, ...}, ...]`` of that image.
        category_to_label: maps category ids to the model's label indices (e.g. a contiguous
            0..132 range); None keeps the category ids.
        void_label: semantic label of id 0 (unlabelled) pixels.
        name: the input's name for error messages.

    Raises:
        InputError: an id in the PNG with no segment in the JSON, an id listed with two
            categories, or a category missing from ``category_to_label``.
    """
    ids = coco_rgb_to_id(rgb)
    cats: dict[int, int] = {}
    for seg in segments_info:
        try:
            sid, cat = int(seg["id"]), int(seg["category_id"])
        except (KeyError, TypeError, ValueError):
            raise InputError(
                f"{_prefix(name)}a segment lacks an integer 'id' or 'category_id': {dict(seg)!r}"
            ) from None
        if sid in cats and cats[sid] != cat:
            raise InputError(f"{_prefix(name)}segment id {sid} is listed with two categories ({cats[sid]} and {cat})")
        cats[sid] = cat
    present = np.unique(ids)
    missing = [int(i) for i in present if i != 0 and int(i) not in cats]
    if missing:
        raise InputError(f"{_prefix(name)}segment id(s) {missing[:5]} of the PNG are missing from the JSON "
                         f"segments_info ({len(missing)} in all)")
    table = {}
    for sid in present.tolist():
        if sid == 0:
            table[0] = void_label
            continue
        cat = cats[sid]
        if category_to_label is not None:
            if cat not in category_to_label:
                raise InputError(f"{_prefix(name)}category {cat} (segment {sid}) has no label in the category map")
            cat = int(category_to_label[cat])
        table[sid] = cat
    keys = np.array(sorted(table), dtype=np.int64)
    values = np.array([table[k] for k in keys.tolist()], dtype=np.int64)
    semantic = values[np.searchsorted(keys, ids)]
    return semantic, ids


def from_cityscapes_instance_ids(
    instance_ids: np.ndarray, *, label_ids: np.ndarray | None = None, name: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """Cityscapes ``instanceIds`` -> (semantic, panoptic), (H, W) int64 each.

    ``v >= 1000`` is instance ``v % 1000`` of class ``v // 1000``; smaller values are the class
    itself (stuff, or things without instance annotation). The panoptic id is ``v``. When the
    ``labelIds`` map is given too it must agree with the classes encoded in ``instance_ids``.
    """
    v = _int_map(instance_ids, "instanceIds map", name)
    semantic = np.where(v >= 1000, v // 1000, v)
    if label_ids is not None:
        lab = _int_map(label_ids, "labelIds map", name)
        if lab.shape != v.shape:
            raise InputError(
                f"{_prefix(name)}labelIds {lab.shape[::-1]} and instanceIds {v.shape[::-1]} differ in size"
            )
        bad = lab != semantic
        if bad.any():
            y, x = np.argwhere(bad)[0]
            raise InputError(f"{_prefix(name)}labelIds and instanceIds disagree at {int(bad.sum())} pixel(s), e.g. "
                             f"(x={x}, y={y}): label {int(lab[y, x])}, instanceId {int(v[y, x])}")
    return semantic, v


def from_semantic_instance(
    semantic: np.ndarray,
    instance: np.ndarray,
    *,
    stuff_instance: int | None = 0,
    ids_per_class: bool = False,
    name: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """A semantic map and an instance map -> (semantic, panoptic), (H, W) int64 each.

    A segment is a (class, instance value) pair, id ``class * F + instance`` (``F`` = 1000, or
    ``max(instance) + 1`` for larger instance values).

    Args:
        semantic, instance: (H, W) non-negative integer maps of one size.
        stuff_instance: the instance value meaning "no instance" (one segment per class); None
            when every value is an instance.
        ids_per_class: instance ids restart for every class (instance 1 of "car" and instance 1
            of "person" are different objects). By default an instance value is one object, and
            an instance value other than ``stuff_instance`` found on two classes is an error.
    """
    sem = _int_map(semantic, "semantic map", name)
    inst = _int_map(instance, "instance map", name)
    if sem.shape != inst.shape:
        raise InputError(
            f"{_prefix(name)}instance map {inst.shape[::-1]} and semantic map {sem.shape[::-1]} differ in size"
        )
    if not ids_per_class:
        things = inst != stuff_instance if stuff_instance is not None else np.ones_like(inst, dtype=bool)
        pairs = np.unique(np.stack([inst[things], sem[things]], 1), axis=0)
        vals, counts = np.unique(pairs[:, 0], return_counts=True)
        if (counts > 1).any():
            bad = vals[counts > 1][:5]
            detail = "; ".join(f"instance {i} has classes {pairs[pairs[:, 0] == i, 1].tolist()}" for i in bad)
            raise InputError(f"{_prefix(name)}inconsistent instance map: {detail} (use ids_per_class if "
                             f"instance ids restart for every class)")
    top = int(inst.max()) if inst.size else 0
    factor = 1000 if top < 1000 else top + 1
    if sem.size and int(sem.max()) >= (2 ** 62) // factor:
        raise InputError(f"{_prefix(name)}label values too large to combine with instance values")
    return sem, sem * factor + inst
