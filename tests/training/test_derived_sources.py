"""``data.source = "edges" | "gray" | "clusters"``: photo crops with their input derived on the fly."""

import numpy as np
import pytest
import torch
from PIL import Image

from imgsynth.errors import ConfigError
from imgsynth.pipelines.translate import CLUSTERS, canny_edges, colour_clusters, to_gray
from imgsynth.training.config import DataConfig, TrainConfig
from imgsynth.training.data import (
    DerivedPairs,
    build_dataset,
    dataset_name,
    draw_augment,
    prepare,
)


def photos(tmp_path, n=3, size=(48, 40)):
    """Smooth colour photos with a few sharp flat squares: Canny finds edges, 8 clusters are all used."""
    rs = np.random.RandomState(0)
    for i in range(n):
        y, x = np.mgrid[: size[1], : size[0]]
        img = np.stack([(x * 5 + 40 * i) % 256, (y * 6) % 256, np.full_like(x, 90 + 30 * i)], 2).astype(np.uint8)
        for _ in range(4):
            x0, y0 = rs.randint(0, size[0] - 10), rs.randint(0, size[1] - 10)
            img[y0 : y0 + 9, x0 : x0 + 9] = rs.randint(0, 256, 3)
        Image.fromarray(img).save(tmp_path / f"p{i}.png")
    return tmp_path


def cfg(path, **kw):
    base = {"source": "edges", "path": str(path), "resolution": 16, "load_size": 32, "hflip": True, "batch_size": 2}
    return DataConfig(**(base | kw))


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("source, derive", [("edges", canny_edges), ("gray", to_gray)])
def test_inputs_are_the_translate_conversion_of_the_crop(tmp_path, source, derive):
    c = cfg(photos(tmp_path), source=source)
    ds = build_dataset(c, seed=3)
    assert isinstance(ds, DerivedPairs) and ds.kind == "paired"
    assert (ds.channels_a, ds.channels_b, len(ds)) == (1, 3, 3)
    found_edges = False
    for index, epoch in [(0, 0), (1, 0), (2, 5)]:
        item = ds[(index, epoch)]
        assert item["a"].shape == (1, 16, 16) and item["b"].shape == (3, 16, 16)
        # the crop computed independently, then the pipeline's own conversion
        aug = draw_augment(c, 3, epoch, index)
        crop = to_uint8(prepare(Image.open(ds.files[index]), c, aug, 3))
        np.testing.assert_array_equal(to_uint8(item["b"]), crop)
        np.testing.assert_array_equal(to_uint8(item["a"])[:, :, 0], derive(crop)[:, :, 0])
        found_edges |= bool((item["a"] < 0).any())
    assert found_edges  # the test photos do have edges, so the comparison means something


def test_seeded_and_deterministic(tmp_path):
    c = cfg(photos(tmp_path))
    a, b = build_dataset(c, seed=1), build_dataset(c, seed=1)
    for key in [(0, 0), (2, 3)]:
        for k in ("a", "b"):
            torch.testing.assert_close(a[key][k], b[key][k], rtol=0, atol=0)
    # another epoch or seed draws another crop
    other = [build_dataset(c, seed=2)[(0, 0)]["b"], a[(0, 1)]["b"]]
    assert all(not torch.equal(x, a[(0, 0)]["b"]) for x in other)


def test_empty_folder_is_a_config_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no photos here")
    with pytest.raises(ConfigError, match="holds no photos"):
        build_dataset(cfg(tmp_path))
    with pytest.raises(ConfigError, match="is not a folder"):
        build_dataset(cfg(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="RGB targets"):
        build_dataset(cfg(photos(tmp_path), channels=1))


def test_pix2pix_export_declares_the_input_kind(tmp_path):
    from imgsynth.training.families import get_family

    fam = get_family("pix2pix")
    for source, kind in [("edges", "edges"), ("gray", "gray"), ("paired", "image")]:
        tc = TrainConfig()
        tc.data.source = source
        assert fam.io(tc, {"norm": "instance"}, 3)["input"] == kind


def test_inputs_are_the_cluster_map_of_the_crop(tmp_path):
    c = DataConfig(source="clusters", path=str(photos(tmp_path)), resolution=16, load_size=32, hflip=True,
                   batch_size=2)
    ds = build_dataset(c, seed=4)
    assert isinstance(ds, DerivedPairs) and ds.kind == "paired"
    assert (ds.channels_a, ds.channels_b, len(ds)) == (3, 3, 3)
    assert "clusters" in dataset_name(c)
    for index, epoch in [(0, 0), (1, 2), (2, 7)]:
        item = ds[(index, epoch)]
        assert item["a"].shape == (3, 16, 16) and item["b"].shape == (3, 16, 16)
        aug = draw_augment(c, 4, epoch, index)
        crop = to_uint8(prepare(Image.open(ds.files[index]), c, aug, 3))
        np.testing.assert_array_equal(to_uint8(item["b"]), crop)
        a = to_uint8(item["a"])
        np.testing.assert_array_equal(a, colour_clusters(crop))
        assert 1 < len(np.unique(a.reshape(-1, 3), axis=0)) <= CLUSTERS
        assert not np.array_equal(a, crop)  # the poster is not the photo, so the pairing means something
    # same seed, same items
    again = build_dataset(c, seed=4)[(1, 2)]
    torch.testing.assert_close(again["a"], ds[(1, 2)]["a"], rtol=0, atol=0)


def test_pix2pix_export_declares_clusters_and_k():
    from imgsynth.training.families import get_family

    tc = TrainConfig()
    tc.data.source = "clusters"
    io = get_family("pix2pix").io(tc, {"norm": "instance"}, 3)
    assert (io["input"], io["clusters"]) == ("clusters", CLUSTERS)
    tc.data.source = "edges"
    assert "clusters" not in get_family("pix2pix").io(tc, {"norm": "instance"}, 3)
