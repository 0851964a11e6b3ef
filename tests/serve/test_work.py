"""The models serve offers (from cards, without their weights) and the worker's jobs on tiny models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imgsynth.engine.cards import get_card, load_cards
from imgsynth.errors import InputError, UnknownModelError, UsageError, WeightsError
from imgsynth.serve.work import Busy, Worker, _from_card, catalog


def card_model(card_id: str):
    return _from_card(get_card(card_id, load_cards()), default=False)


def test_the_official_spade_cards_paint_with_their_dataset_palettes():
    city = card_model("spade-cityscapes").public()
    ids = [c["id"] for c in city["classes"]]
    assert ids == list(range(34)) and city["eraser"] == 0  # license plate (-1) cannot be painted
    assert city["instances"] == "edges" and (city["width"], city["height"]) == (512, 256)
    ade = card_model("spade-ade20k")
    pub = ade.public()
    assert [c["id"] for c in pub["classes"]] == list(range(151)) and pub["eraser"] == 0  # 0 = other (dontcare)
    assert pub["classes"][1]["name"] == "wall" and pub["instances"] is None
    coco = card_model("spade-coco").public()
    assert [c["id"] for c in coco["classes"]][-2:] == [181, 255] and coco["eraser"] == 255
    assert coco["instances"] == "edges" and coco["style"] is False
    assert not ade.label_ok(152) and not ade.label_ok(-1)  # 151 - 1 = 150 is the dontcare channel itself


def test_catalog_offers_only_what_runs_offline():
    keys = [m.key for m in catalog()]
    assert keys[:4] == ["pconv-photos-256", "telea", "ns", "patchmatch"]
    assert "spade-fashion-mnist" in keys and "panoptic-mosaics" in keys
    assert "spade-cityscapes" not in keys  # not cached here (HF_HOME is empty in tests)
    assert not [k for k in keys if "stylegan" in k or "pix2pix-" in k]  # neither samplers nor photo translators
    with pytest.raises(WeightsError, match="models download spade-ade20k"):
        catalog(["spade-ade20k"])
    with pytest.raises(UsageError, match="inpainting and label-map"):
        catalog(["dcgan-fashion-mnist"])
    with pytest.raises(UnknownModelError):
        catalog(["no-such-model"])


def test_reserve_is_one_job_at_a_time():
    w = Worker(catalog(["telea"]))
    with w.reserve("inpaint"):
        assert w.status.busy
        with pytest.raises(Busy):
            with w.reserve("inpaint"):
                pass
    assert not w.status.busy and w.status.last_seconds is not None
    with w.reserve("inpaint"):  # free again
        pass


def _export(tmp_path, name, config, io_cfg):
    import torch
    from safetensors.torch import save_file

    from imgsynth.models.registry import build_model

    torch.manual_seed(0)
    net = build_model("spade", config)
    folder = tmp_path / name
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"format": "imgsynth-weights", "version": 1, "arch": "spade",
                                                    "task": "translate", "config": config, "io": io_cfg}))
    return folder


def test_painted_objects_become_instance_edges(tmp_path):
    """A Cityscapes-like model with instance maps: splitting one painted region into two objects
    adds an edge between them, which changes the picture; the same objects give the same picture."""
    cfg = dict(label_nc=35, contain_dontcare=False, use_instance=True, ngf=2, crop_size=32, nhidden=8)
    folder = _export(tmp_path, "tiny-city", cfg, {"input": "label", "palette": "cityscapes", "label_offset": 0})
    w = Worker(catalog([str(folder)]))
    m = w.model("weights:tiny-city", "translate")
    assert m.instances == "edges" and m.palette == "cityscapes"
    labels = np.full((32, 32), 7, np.uint8)  # road
    labels[8:24, 4:28] = 26  # car
    one = np.zeros((32, 32), np.uint16)
    one[8:24, 4:28] = 1
    two = one.copy()
    two[8:24, 16:28] = 2
    with w.reserve("translate"):
        a = w.synthesize(m.key, labels, one).rgb
        b = w.synthesize(m.key, labels, two).rgb
        a2 = w.synthesize(m.key, labels, one).rgb
        none = w.synthesize(m.key, labels, None).rgb
    assert a.shape == (32, 32, 3)
    assert np.array_equal(a, a2) and not np.array_equal(a, b)
    assert np.array_equal(a, none)  # one object per class region: the same edges as no objects at all
    with pytest.raises(InputError, match="not classes"):
        w.synthesize(m.key, np.full((32, 32), 40, np.uint8))
