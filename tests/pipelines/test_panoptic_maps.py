"""Reading panoptic inputs: COCO panoptic PNG + JSON, Cityscapes instanceIds, semantic + instance."""

from __future__ import annotations

import numpy as np
import pytest

from imgsynth.errors import InputError
from imgsynth.pipelines.panoptic_maps import (
    check_consistent,
    coco_rgb_to_id,
    coco_segments,
    from_cityscapes_instance_ids,
    from_coco_panoptic,
    from_semantic_instance,
    id_to_coco_rgb,
)


def _coco_case():
    ids = np.array([[0, 0, 5, 5],
                    [300, 300, 5, 70000],
                    [300, 300, 70000, 70000]], dtype=np.int64)
    segments = [{"id": 5, "category_id": 1, "iscrowd": 0}, {"id": 300, "category_id": 1},
                {"id": 70000, "category_id": 184}]
    return ids, id_to_coco_rgb(ids), segments


def test_coco_id_encoding():
    rgb = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 1], [7, 3, 2]]], dtype=np.uint8)
    assert coco_rgb_to_id(rgb).tolist() == [[1, 256, 65536, 7 + 3 * 256 + 2 * 65536]]
    ids = np.random.default_rng(0).integers(0, 256 ** 3, (5, 6))
    assert np.array_equal(coco_rgb_to_id(id_to_coco_rgb(ids)), ids)
    rgba = np.concatenate([id_to_coco_rgb(ids), np.full((5, 6, 1), 255, np.uint8)], 2)
    assert np.array_equal(coco_rgb_to_id(rgba), ids)  # an alpha channel is ignored
    with pytest.raises(InputError, match="8-bit RGB"):
        coco_rgb_to_id(ids)


def test_coco_panoptic_to_semantic_and_ids():
    ids, rgb, segments = _coco_case()
    semantic, panoptic = from_coco_panoptic(rgb, segments)
    assert np.array_equal(panoptic, ids) and panoptic.dtype == np.int64
    assert semantic.tolist() == [[255, 255, 1, 1], [1, 1, 1, 184], [1, 1, 184, 184]]
    # two touching "person" (1) segments keep two ids: what a semantic map loses
    assert len(np.unique(panoptic[semantic == 1])) == 2
    semantic2, _ = from_coco_panoptic(rgb, segments, category_to_label={1: 0, 184: 132}, void_label=133)
    assert semantic2.tolist() == [[133, 133, 0, 0], [0, 0, 0, 132], [0, 0, 132, 132]]
    check_consistent(semantic, panoptic)


def test_coco_inconsistent_inputs_are_clear_errors():
    ids, rgb, segments = _coco_case()
    with pytest.raises(InputError, match=r"img\.png: segment id\(s\) \[70000\] .* missing from the JSON"):
        from_coco_panoptic(rgb, segments[:2], name="img.png")
    with pytest.raises(InputError, match="segment id 5 is listed with two categories"):
        from_coco_panoptic(rgb, segments + [{"id": 5, "category_id": 3}])
    from_coco_panoptic(rgb, segments + [{"id": 5, "category_id": 1}])  # a repeat that agrees is fine
    with pytest.raises(InputError, match="category 184 .* has no label"):
        from_coco_panoptic(rgb, segments, category_to_label={1: 0})
    with pytest.raises(InputError, match="lacks an integer"):
        from_coco_panoptic(rgb, [{"id": 5}])


def test_coco_segments_lookup():
    ann = {"annotations": [
        {"file_name": "000000000139.png", "image_id": 139, "segments_info": [{"id": 1, "category_id": 2}]},
        {"file_name": "000000000285.png", "image_id": 285, "segments_info": []},
    ]}
    assert coco_segments(ann, "000000000139.png") == [{"id": 1, "category_id": 2}]
    assert coco_segments(ann, "panoptic/000000000285.jpg") == []  # matched by stem
    with pytest.raises(InputError, match="no annotation"):
        coco_segments(ann, "000000000999.png")
    with pytest.raises(InputError, match="'annotations' list"):
        coco_segments({"images": []}, "a.png")


def test_cityscapes_instance_ids():
    v = np.array([[7, 7, 26001, 26002],
                  [7, 24000, 26001, 26002],
                  [11, 11, 26, 26]], dtype=np.int32)
    semantic, panoptic = from_cityscapes_instance_ids(v)
    assert semantic.tolist() == [[7, 7, 26, 26], [7, 24, 26, 26], [11, 11, 26, 26]]
    assert np.array_equal(panoptic, v) and panoptic.dtype == np.int64
    check_consistent(semantic, panoptic)
    # two touching cars (26001, 26002) and a car region without instances (26) stay apart
    assert len(np.unique(panoptic[semantic == 26])) == 3
    from_cityscapes_instance_ids(v.astype(np.uint16), label_ids=semantic)  # 16-bit PNG values
    bad = semantic.copy()
    bad[0, 0] = 8
    with pytest.raises(InputError, match=r"disagree at 1 pixel\(s\), e\.g\. \(x=0, y=0\): label 8, instanceId 7"):
        from_cityscapes_instance_ids(v, label_ids=bad, name="x_instanceIds.png")
    with pytest.raises(InputError, match="must hold integers"):
        from_cityscapes_instance_ids(v.astype(np.float32))
    with pytest.raises(InputError, match="negative"):
        from_cityscapes_instance_ids(v - 100)
    with pytest.raises(InputError, match="single-channel"):
        from_cityscapes_instance_ids(np.zeros((2, 3, 3), np.int32))


def test_semantic_plus_instance_pair():
    sem = np.array([[1, 1, 1, 2],
                    [1, 1, 1, 2],
                    [0, 0, 0, 0]])
    inst = np.array([[3, 3, 4, 0],
                     [3, 3, 4, 0],
                     [0, 0, 0, 0]])
    semantic, panoptic = from_semantic_instance(sem, inst)
    assert np.array_equal(semantic, sem)
    assert panoptic.tolist() == [[1003, 1003, 1004, 2000], [1003, 1003, 1004, 2000], [0, 0, 0, 0]]
    check_consistent(semantic, panoptic)
    # instance values >= 1000 use max + 1 as the class factor and stay unique per segment
    big = np.where(inst > 0, inst + 5000, 0)
    _, pan_big = from_semantic_instance(sem, big)
    assert pan_big[0, 0] == 1 * 5005 + 5003 and len(np.unique(pan_big)) == 4


def test_semantic_plus_instance_inconsistencies():
    sem = np.array([[1, 1, 2, 2]])
    inst = np.array([[3, 3, 3, 0]])  # instance 3 spans classes 1 and 2
    with pytest.raises(InputError, match=r"a\.png: inconsistent instance map: instance 3 has classes \[1, 2\]"):
        from_semantic_instance(sem, inst, name="a.png")
    # ids that restart per class are allowed on request: (1, 3) and (2, 3) are two segments
    _, pan = from_semantic_instance(sem, inst, ids_per_class=True)
    assert pan.tolist() == [[1003, 1003, 2003, 2000]]
    # with no stuff value, 0 is an instance like any other
    with pytest.raises(InputError, match="instance 0 has classes"):
        from_semantic_instance(np.array([[1, 2]]), np.array([[0, 0]]), stuff_instance=None)
    with pytest.raises(InputError, match="differ in size"):
        from_semantic_instance(sem, inst[:, :3])


def test_check_consistent():
    with pytest.raises(InputError, match=r"id 9 has classes \[1, 2\]"):
        check_consistent(np.array([[1, 2, 2]]), np.array([[9, 9, 4]]))
    with pytest.raises(InputError, match="differ in size"):
        check_consistent(np.zeros((2, 2), np.int64), np.zeros((2, 3), np.int64))
