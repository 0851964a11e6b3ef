"""``colour_clusters`` and the ``clusters`` input kind: a deterministic k-colour poster of a photo."""

import numpy as np
import pytest
import torch

from imgsynth.errors import UsageError
from imgsynth.models.registry import build_model
from imgsynth.pipelines.translate import (
    CLUSTERS,
    TranslateInput,
    Translator,
    colour_clusters,
)

from tolerance import assert_close


def photo(h=40, w=56, seed=0) -> np.ndarray:
    """A smooth gradient with noise: many distinct colours, no natural clusters."""
    rs = np.random.RandomState(seed)
    y, x = np.mgrid[:h, :w]
    img = np.stack([x * 4, y * 6, (x + y) * 2], 2) + rs.randint(-20, 21, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_same_photo_same_map_with_k_colours():
    img = photo()
    out = colour_clusters(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, colour_clusters(img.copy()))
    assert len(np.unique(out.reshape(-1, 3), axis=0)) == CLUSTERS == 8
    for k in (1, 3, 5):
        assert len(np.unique(colour_clusters(img, k).reshape(-1, 3), axis=0)) == k
    # posterising is a fair summary: closer to the photo than its mean colour, and more colours help
    err = {k: np.abs(colour_clusters(img, k).astype(float) - img).mean() for k in (1, 3, 8)}
    assert err[8] < err[3] < err[1]
    with pytest.raises(UsageError):
        colour_clusters(img, 0)


def test_each_pixel_gets_its_nearest_centre():
    img = photo(seed=1)
    out = colour_clusters(img, 4)
    colours = np.unique(out.reshape(-1, 3), axis=0).astype(float)
    d = ((img.reshape(-1, 1, 3).astype(float) - colours[None]) ** 2).sum(2)
    chosen = ((out.reshape(-1, 1, 3).astype(float) - colours[None]) ** 2).sum(2).argmin(1)
    # float32 ties aside, the colour of a pixel is the nearest of the map's colours
    assert (d[np.arange(len(d)), chosen] <= d.min(1) + 1e-3 * d.min(1) + 1e-3).all()


def test_a_flat_colour_map_is_its_own_poster():
    img = np.zeros((24, 30, 3), np.uint8)
    img[:, :10], img[:, 10:20], img[:, 20:] = (200, 30, 30), (20, 150, 60), (10, 10, 240)
    np.testing.assert_array_equal(colour_clusters(img, 3), img)
    # fewer colours than k: no new colour appears
    assert {tuple(c) for c in colour_clusters(img, 8).reshape(-1, 3)} <= {(200, 30, 30), (20, 150, 60), (10, 10, 240)}


def test_large_photos_fit_on_a_subset_and_map_every_pixel():
    img = photo(300, 260, seed=2)
    out = colour_clusters(img, 6, max_fit=4096)
    assert out.shape == img.shape and len(np.unique(out.reshape(-1, 3), axis=0)) == 6
    np.testing.assert_array_equal(out, colour_clusters(img, 6, max_fit=4096))


def test_translator_clusters_kind_feeds_the_poster_with_the_cards_k():
    torch.manual_seed(0)
    model = build_model("pix2pix_unet", {"input_nc": 3, "output_nc": 3, "num_downs": 5, "ngf": 4,
                                         "norm": "instance"})
    img = photo(32, 32)
    tr = Translator(model, {"input": "clusters", "clusters": 3})
    assert tr.kind == "clusters"
    x = tr.encode_image(TranslateInput("p", image=img))
    ref = torch.from_numpy(colour_clusters(img, 3)).permute(2, 0, 1)[None].float() / 127.5 - 1
    assert_close(x, ref, rtol=0, atol=0)
    out, how = tr.translate_one(TranslateInput("p", image=img))
    assert out.shape == img.shape and how == "none"
    # without io.clusters the default k applies
    x8 = Translator(model, {}, kind="clusters").encode_image(TranslateInput("p", image=img))
    assert len(torch.unique(x8.flatten(2)[0].T, dim=0)) == CLUSTERS
