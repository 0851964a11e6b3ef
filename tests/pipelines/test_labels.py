"""Label palettes: bundled data validity, known facts, colour <-> id round trips and errors."""

from __future__ import annotations

import json
from collections import defaultdict
from importlib import resources

import cv2
import numpy as np
import pytest

from imgsynth.errors import InputError, UsageError
from imgsynth.pipelines.labels import colorize, decode_color_labels, list_palettes, load_palette, overlay

BUNDLED = ["ade20k", "cityscapes", "coco_stuff", "fashion_mnist"]
# id counts and the colours the official tables deliberately share between ids
EXPECTED = {
    "cityscapes": (35, {(0, 0, 0): [0, 1, 2, 3, 4], (153, 153, 153): [17, 18], (0, 0, 142): [26, -1]}),
    "ade20k": (151, {(140, 140, 140): [7, 49]}),
    "coco_stuff": (183, {}),
    "fashion_mnist": (11, {}),
}


def _raw(name: str) -> dict:
    text = resources.files("imgsynth.pipelines").joinpath("palettes", f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


def _canonical(pal) -> dict[int, int]:
    """id -> the id a decoder must return for its colour (the first listed with that colour)."""
    first: dict[tuple, int] = {}
    for i, c in zip(pal.ids.tolist(), map(tuple, pal.colors.tolist())):
        first.setdefault(c, i)
    return {i: first[tuple(c)] for i, c in zip(pal.ids.tolist(), pal.colors.tolist())}


def test_bundled_palettes_are_listed():
    assert list_palettes() == BUNDLED


@pytest.mark.parametrize("name", BUNDLED)
def test_palette_file_is_valid(name):
    raw = _raw(name)
    count, shared = EXPECTED[name]
    assert raw["name"] == name and raw["source"] and raw["licence"]
    labels = raw["labels"]
    assert raw["num_labels"] == len(labels) == count
    ids = [entry["id"] for entry in labels]
    assert len(set(ids)) == len(ids)
    for entry in labels:
        assert set(entry) == {"id", "name", "color"} and entry["name"].strip() == entry["name"] != ""
        assert len(entry["color"]) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in entry["color"])
    by_colour = defaultdict(list)
    for entry in labels:
        by_colour[tuple(entry["color"])].append(entry["id"])
    assert {c: i for c, i in by_colour.items() if len(i) > 1} == shared
    if raw["ignore_index"] is not None:
        assert raw["ignore_index"] in ids
    pal = load_palette(name)
    assert len(pal) == count and pal.ids.dtype == np.int32 and pal.colors.dtype == np.uint8
    assert pal.colors.shape == (count, 3) and len(pal.names) == count


def test_cityscapes_facts():
    pal = load_palette("cityscapes")
    assert sorted(pal.ids.tolist()) == list(range(-1, 34))
    facts = {7: ("road", (128, 64, 128)), 26: ("car", (0, 0, 142)), 23: ("sky", (70, 130, 180)),
             24: ("person", (220, 20, 60)), 33: ("bicycle", (119, 11, 32)), -1: ("license plate", (0, 0, 142))}
    for i, (n, c) in facts.items():
        k = int(np.flatnonzero(pal.ids == i)[0])
        assert pal.names[k] == n and tuple(pal.colors[k].tolist()) == c
    assert pal.ignore_index is None
    # shared colours decode to the id the dataset tools write
    rgb = np.array([[[0, 0, 0], [153, 153, 153], [0, 0, 142]]], dtype=np.uint8)
    assert decode_color_labels(rgb, pal, name_for_errors="x").tolist() == [[0, 17, 26]]


def test_ade20k_facts():
    pal = load_palette("ade20k")
    assert sorted(pal.ids.tolist()) == list(range(151)) and pal.ignore_index == 0
    facts = {0: ("other", (0, 0, 0)), 1: ("wall", (120, 120, 120)), 3: ("sky", (6, 230, 230)),
             13: ("person", (150, 5, 61)), 21: ("car", (0, 102, 200)), 150: ("flag", (92, 0, 255))}
    for i, (n, c) in facts.items():
        k = int(np.flatnonzero(pal.ids == i)[0])
        assert pal.name_of(i) == n and tuple(pal.colors[k].tolist()) == c
    rgb = np.array([[[140, 140, 140]]], dtype=np.uint8)
    assert decode_color_labels(rgb, pal, name_for_errors="x").tolist() == [[7]]


def test_coco_stuff_facts():
    pal = load_palette("coco_stuff")
    assert sorted(pal.ids.tolist()) == list(range(182)) + [255] and pal.ignore_index == 255
    assert pal.name_of(0) == "person" and pal.name_of(90) == "hair brush"
    assert pal.name_of(91) == "banner" and pal.name_of(181) == "wood" and pal.name_of(255) == "unlabeled"
    # SPADE's colour map is the PASCAL VOC bit map shifted by one: VOC 1 (128,0,0), 8 (64,0,0), 15 (192,128,128)
    for i, c in {0: (128, 0, 0), 7: (64, 0, 0), 14: (192, 128, 128)}.items():
        assert tuple(pal.colors[int(np.flatnonzero(pal.ids == i)[0])].tolist()) == c


def test_fashion_mnist_palette():
    pal = load_palette("fashion_mnist")
    assert pal.ids.tolist() == list(range(11))
    assert pal.names == ["background", "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"]
    assert pal.colors[0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("name", BUNDLED)
def test_colorize_then_decode_round_trips(name):
    pal = load_palette(name)
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.resize(pal.ids, 24 * 20)).reshape(24, 20).astype(np.int32)
    rgb = colorize(labels, pal)
    assert rgb.shape == (24, 20, 3) and rgb.dtype == np.uint8
    back = decode_color_labels(rgb, pal, name_for_errors="map.png")
    assert back.dtype == np.int32
    canon = _canonical(pal)
    assert np.array_equal(back, np.vectorize(canon.get)(labels))
    if not EXPECTED[name][1]:
        assert np.array_equal(back, labels)


def test_unknown_colour_names_file_colour_and_count():
    pal = load_palette("cityscapes")
    rgb = colorize(np.full((4, 5), 7), pal)
    rgb[0, :3] = (1, 2, 3)
    rgb[3, 4] = (9, 9, 9)
    with pytest.raises(InputError) as e:
        decode_color_labels(rgb, pal, name_for_errors="maps/a.png")
    msg = str(e.value)
    assert msg.startswith("maps/a.png:") and "4 of 20 pixels" in msg and "cityscapes" in msg
    assert "(1, 2, 3) x3" in msg and "(9, 9, 9) x1" in msg and "JPEG" in msg


def test_jpeg_compressed_map_is_refused():
    pal = load_palette("ade20k")
    labels = np.repeat(np.repeat(np.arange(1, 17).reshape(4, 4), 8, 0), 8, 1)
    rgb = colorize(labels, pal)
    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    jpeg = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    with pytest.raises(InputError, match="JPEG"):
        decode_color_labels(np.ascontiguousarray(jpeg), pal, name_for_errors="a.jpg")
    # the same map stored losslessly decodes exactly
    ok, buf = cv2.imencode(".png", rgb[..., ::-1])
    png = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    assert np.array_equal(decode_color_labels(np.ascontiguousarray(png), pal, name_for_errors="a.png"), labels)


def test_decode_rejects_non_rgb():
    with pytest.raises(InputError, match=r"\(H, W, 3\)"):
        decode_color_labels(np.zeros((4, 4), np.uint8), load_palette("ade20k"), name_for_errors="g.png")


def test_colorize_unknown_ids_are_black():
    pal = load_palette("coco_stuff")
    out = colorize(np.array([[0, 200, 300, -5]]), pal)
    assert out[0, 0].tolist() == [128, 0, 0]
    assert out[0, 1:].tolist() == [[0, 0, 0]] * 3


def test_overlay_blends_known_labels_only():
    pal = load_palette("ade20k")
    image = np.full((2, 3, 3), 100, np.uint8)
    labels = np.array([[1, 0, 999], [3, 3, 1]])
    assert np.array_equal(overlay(image, labels, pal, alpha=0.0), image)
    full = overlay(image, labels, pal, alpha=1.0)
    assert full[0, 0].tolist() == [120, 120, 120] and full[1, 0].tolist() == [6, 230, 230]
    assert full[0, 1].tolist() == [100, 100, 100]  # ignore index 0 keeps the image
    assert full[0, 2].tolist() == [100, 100, 100]  # unknown id keeps the image
    half = overlay(image, labels, pal, alpha=0.5)
    assert half[1, 0].tolist() == [53, 165, 165]
    with pytest.raises(ValueError):
        overlay(image, labels, pal, alpha=1.5)
    with pytest.raises(ValueError):
        overlay(image, labels[:, :2], pal)


def test_load_palette_names_and_errors(tmp_path):
    assert load_palette("COCO-Stuff") is load_palette("coco_stuff")
    with pytest.raises(UsageError, match="available: ade20k, cityscapes"):
        load_palette("pascal")
    pal = load_palette("ade20k")
    with pytest.raises(ValueError):
        pal.colors[0, 0] = 1  # cached palettes are shared, hence read-only


def test_user_palette_file(tmp_path):
    good = tmp_path / "mine.json"
    good.write_text(json.dumps({"name": "mine", "num_labels": 2, "ignore_index": 0, "labels": [
        {"id": 0, "name": "void", "color": [0, 0, 0]}, {"id": 5, "name": "thing", "color": [10, 20, 30]}]}))
    pal = load_palette(str(good))
    rgb = np.array([[[10, 20, 30], [0, 0, 0]]], np.uint8)
    assert decode_color_labels(rgb, pal, name_for_errors="m").tolist() == [[5, 0]]
    bad_docs = {
        "dup.json": {"name": "d", "labels": [{"id": 1, "name": "a", "color": [1, 1, 1]},
                                             {"id": 1, "name": "b", "color": [2, 2, 2]}]},
        "count.json": {"name": "c", "num_labels": 3, "labels": [{"id": 1, "name": "a", "color": [1, 1, 1]}]},
        "colour.json": {"name": "c", "labels": [{"id": 1, "name": "a", "color": [1, 1, 256]}]},
        "ignore.json": {"name": "c", "ignore_index": 9, "labels": [{"id": 1, "name": "a", "color": [1, 1, 1]}]},
    }
    for fname, doc in bad_docs.items():
        path = tmp_path / fname
        path.write_text(json.dumps(doc))
        with pytest.raises(InputError, match=fname):
            load_palette(str(path))
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InputError, match="cannot read"):
        load_palette(str(tmp_path / "broken.json"))
    with pytest.raises(InputError, match="not found"):
        load_palette(str(tmp_path / "missing.json"))
