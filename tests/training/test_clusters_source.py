"""``data.source = "clusters"``: photo crops paired with their colour-cluster poster."""

import numpy as np
import torch
from PIL import Image

from imgsynth.pipelines.translate import CLUSTERS, colour_clusters
from imgsynth.training.config import DataConfig, TrainConfig
from imgsynth.training.data import (
    DerivedPairs,
    build_dataset,
    dataset_name,
    draw_augment,
    prepare,
)


def photos(tmp_path, n=3, size=(48, 40)):
    """Smooth colour photos with a few flat squares: many colours, so 8 clusters are all used."""
    rs = np.random.RandomState(0)
    for i in range(n):
        y, x = np.mgrid[: size[1], : size[0]]
        img = np.stack([(x * 5 + 40 * i) % 256, (y * 6) % 256, np.full_like(x, 90 + 30 * i)], 2).astype(np.uint8)
        for _ in range(4):
            x0, y0 = rs.randint(0, size[0] - 10), rs.randint(0, size[1] - 10)
            img[y0 : y0 + 9, x0 : x0 + 9] = rs.randint(0, 256, 3)
        Image.fromarray(img).save(tmp_path / f"p{i}.png")
    return tmp_path


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


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
