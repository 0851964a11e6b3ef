"""Inpainting pipeline: classical methods and a PConv network, known pixels always kept."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from imgsynth.errors import InputError, UsageError
from imgsynth.models.registry import build_model, get_model
from imgsynth.pipelines.inpaint import (
    SHARP_DETAIL_SIGMA,
    SHARP_PATCHMATCH_GAIN,
    Inpainter,
    check_hole,
    composite,
    crop_boxes,
    grow_hole,
    scale_detail,
)


def scene(h=40, w=56, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    hole = np.zeros((h, w), bool)
    hole[10:20, 12:30] = True
    return img, hole


@pytest.mark.parametrize("method", ["telea", "ns", "patchmatch"])
def test_classical_keeps_known_pixels(method):
    img, hole = scene()
    out = Inpainter(method)([img], [hole])[0]
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out[~hole], img[~hole])
    assert not np.array_equal(out[hole], img[hole])


def test_telea_fills_smoothly_from_the_border():
    img = np.full((32, 32, 3), 100, np.uint8)
    hole = np.zeros((32, 32), bool)
    hole[12:20, 12:20] = True
    img[hole] = 0
    out = Inpainter("telea")([img], [hole])[0]
    assert np.abs(out[hole].astype(int) - 100).max() <= 2


def _tiny_pconv():
    torch.manual_seed(0)
    return build_model("pconv_unet", get_model("pconv_unet").tiny).eval()


@pytest.mark.parametrize("strategy", ["pad", "resize"])
def test_network_any_size_known_pixels_kept(strategy):
    net = _tiny_pconv()
    imgs, holes = zip(scene(40, 56, 0), scene(40, 56, 1), scene(23, 37, 2))
    holes = list(holes)
    holes[2] = holes[2][:23, :37]
    outs = Inpainter(net, strategy=strategy, resolution=32)(list(imgs), holes)
    for img, hole, out in zip(imgs, holes, outs):
        assert out.shape == img.shape
        assert np.array_equal(out[~hole], img[~hole])


def test_network_batch_independent():
    net = _tiny_pconv()
    a, ha = scene(32, 48, 0)
    b, hb = scene(32, 48, 1)
    both = Inpainter(net)([a, b], [ha, hb])
    alone = Inpainter(net)([b], [hb])
    assert np.abs(both[1].astype(int) - alone[0].astype(int)).max() <= 1


def _forward_plain(net, img, hole):
    """The network's fill of one image, unrounded, [0, 1] float (H, W, 3)."""
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255
    valid = torch.from_numpy(np.ascontiguousarray(~hole))[None, None].float()
    return Inpainter(net)._forward(x, valid)[0].permute(1, 2, 0).numpy()


def _members(img, n):
    """The first ``n`` self-ensemble views (transpose, row flip, column flip) and their inverses."""
    views = [(t, r, c) for t in (False, True) for r in (False, True) for c in (False, True)][:n]

    def view(a, t, r, c):
        a = a.swapaxes(0, 1) if t else a
        a = a[::-1] if r else a
        return np.ascontiguousarray(a[:, ::-1] if c else a)

    def undo(a, t, r, c):
        a = a[:, ::-1] if c else a
        a = a[::-1] if r else a
        return a.swapaxes(0, 1) if t else a

    return [(lambda a, v=v: view(a, *v), lambda a, v=v: undo(a, *v)) for v in views]


@pytest.mark.parametrize("n", [2, 4, 8])
def test_ensemble_averages_the_undone_views(n):
    net = _tiny_pconv()
    img, hole = scene(32, 48, 3)  # not square: transposed members see 48x32
    fills = [undo(_forward_plain(net, view(img), view(hole))) for view, undo in _members(img, n)]
    expected = composite(img, (np.clip(np.mean(fills, 0), 0, 1) * 255).round().astype(np.uint8), hole)
    out = Inpainter(net, ensemble=n)([img], [hole])[0]
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1
    assert not np.array_equal(out, Inpainter(net)([img], [hole])[0])


@pytest.mark.parametrize("strategy", ["pad", "resize", "crops"])
def test_ensemble_of_eight_with_every_strategy(strategy):
    img, hole = scene(40, 72, 4)
    out = Inpainter(_tiny_pconv(), ensemble=8, strategy=strategy, resolution=32)([img], [hole])[0]
    assert out.shape == img.shape and np.array_equal(out[~hole], img[~hole])


class _Pointwise(torch.nn.Module):
    """A "network" that colours each pixel on its own: every flip and transpose commutes with it."""

    layer_size = 3

    def __init__(self):
        super().__init__()
        self.mix = torch.nn.Conv2d(3, 3, 1)

    def forward(self, x, mask):
        return torch.sin(3 * self.mix(x)), mask


@pytest.mark.parametrize("n", [2, 4, 8])
def test_ensemble_undoes_each_view_exactly(n):
    # a misplaced pixel in any undone member would change the average of a pointwise network
    torch.manual_seed(0)
    net = _Pointwise()
    img, hole = scene(40, 72, 5)
    assert np.array_equal(Inpainter(net, ensemble=n)([img], [hole])[0], Inpainter(net)([img], [hole])[0])


def test_ensemble_size_is_checked():
    with pytest.raises(UsageError, match="--ensemble must be one of 1, 2, 4, 8"):
        Inpainter(_tiny_pconv(), ensemble=3)


def test_helpers():
    hole = np.zeros((9, 9), bool)
    hole[4, 4] = True
    assert grow_hole(hole, 2).sum() > 9 and grow_hole(hole, 0) is hole
    with pytest.raises(InputError, match="no hole"):
        check_hole(np.zeros((3, 3), bool), "m.png")
    with pytest.raises(InputError, match="whole image"):
        check_hole(np.ones((3, 3), bool), "m.png")
    img = np.zeros((2, 2, 3), np.uint8)
    fill = np.full((2, 2, 3), 9, np.uint8)
    h = np.array([[True, False], [False, False]])
    assert composite(img, fill, h)[0, 0, 0] == 9 and composite(img, fill, h)[1, 1, 0] == 0
    with pytest.raises(UsageError):
        Inpainter("magic")


# ---------------------------------------------------------------- crops around the holes

def large_scene(holes, h=700, w=900, seed=3):
    """A 900x700 photo-sized random image with rectangular holes given as (y0, x0, y1, x1)."""
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    hole = np.zeros((h, w), bool)
    for y0, x0, y1, x1 in holes:
        hole[y0:y1, x0:x1] = True
    return img, hole


FAR = [(100, 100, 130, 140), (550, 700, 580, 760)]
NEAR = [(100, 100, 130, 140), (160, 200, 180, 220)]
CORNERS = [(0, 0, 12, 15), (688, 880, 700, 900)]


def _covers(box, hole_box):
    return box[0] <= hole_box[0] and box[1] <= hole_box[1] and box[2] >= hole_box[2] and box[3] >= hole_box[3]


@pytest.mark.parametrize("holes,expected", [(FAR, 2), (NEAR, 1), (CORNERS, 2)])
def test_crop_boxes_group_holes(holes, expected):
    _, hole = large_scene(holes)
    boxes = crop_boxes(hole, 256)
    assert len(boxes) == expected
    for y0, x0, y1, x1 in boxes:
        assert 0 <= y0 < y1 <= 700 and 0 <= x0 < x1 <= 900
        assert y1 - y0 == x1 - x0 >= 256  # square, at least the network's resolution, kept at the borders
    assert all(any(_covers(b, hb) for b in boxes) for hb in holes)
    covered = np.zeros_like(hole, np.int32)
    for y0, x0, y1, x1 in boxes:
        covered[y0:y1, x0:x1] += 1
    assert covered.max() == 1  # disjoint, so each hole pixel is pasted from exactly one crop


def test_crop_boxes_context_and_fallbacks():
    _, hole = large_scene([(300, 300, 400, 500)])  # 200 wide: crop of 400, hole at most half of each side
    assert crop_boxes(hole, 256) == [(150, 200, 550, 600)]
    _, most = large_scene([(20, 30, 690, 880)])
    assert crop_boxes(most, 256) == [(0, 0, 700, 900)]  # most of the photo: one crop, the whole photo
    assert crop_boxes(np.zeros((50, 60), bool), 256) == []
    specks = np.random.default_rng(0).random((700, 900)) < 0.002  # ~1,300 holes merge fast into one
    assert crop_boxes(specks, 256) == [(0, 0, 700, 900)]
    thin = np.zeros((100, 900), bool)
    thin[40:50, 10:20] = True
    assert crop_boxes(thin, 256) == [(0, 0, 100, 256)]  # an image thinner than the crop keeps its height


def _merge_by_pairs(boxes):
    """The reference for ``_merge_touching``: the bounding boxes of the groups of boxes linked by
    overlapping or sharing an edge (a shared corner alone does not link), sorted."""
    parent = list(range(len(boxes)))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i, a in enumerate(boxes):
        for j, b in enumerate(boxes[:i]):
            rows = min(a[2], b[2]) - max(a[0], b[0])  # > 0: the row spans overlap, 0: they abut
            cols = min(a[3], b[3]) - max(a[1], b[1])
            if rows >= 0 and cols >= 0 and (rows > 0 or cols > 0):
                parent[root(i)] = root(j)
    groups = {}
    for i, b in enumerate(boxes):
        g = groups.setdefault(root(i), list(b))
        groups[root(i)] = [min(g[0], b[0]), min(g[1], b[1]), max(g[2], b[2]), max(g[3], b[3])]
    return sorted(tuple(g) for g in groups.values())


@pytest.mark.parametrize("seed", range(6))
def test_merging_boxes_on_their_own_edge_grid_equals_pairwise_unions(seed):
    from imgsynth.pipelines.inpaint import _merge_touching

    rng = np.random.default_rng(seed)
    boxes = []
    for _ in range(int(rng.integers(1, 14))):
        y0, x0 = (int(v) for v in rng.integers(0, 40, 2))
        boxes.append((y0, x0, y0 + int(rng.integers(1, 12)), x0 + int(rng.integers(1, 12))))
    boxes += [(0, 0, 5, 5), (5, 0, 8, 3), (60, 60, 62, 62), (62, 62, 64, 64)]  # an edge shared; a corner only
    assert sorted(_merge_touching(boxes)) == _merge_by_pairs(boxes)


def _counting(net):
    seen = []
    net.register_forward_hook(lambda mod, args, out: seen.append(tuple(args[0].shape)))
    return seen


@pytest.mark.parametrize("holes,crops", [(FAR, 2), (NEAR, 1), (CORNERS, 2)])
def test_network_crops_exact_known_pixels_and_crop_count(holes, crops):
    net = _tiny_pconv()
    seen = _counting(net)
    img, hole = large_scene(holes)
    inp = Inpainter(net, strategy="crops", resolution=256)
    out = inp([img], [hole])[0]
    assert out.shape == img.shape
    assert np.array_equal(out[~hole], img[~hole])
    for y0, x0, y1, x1 in holes:
        assert not np.array_equal(out[y0:y1, x0:x1], img[y0:y1, x0:x1])
    assert sum(s[0] for s in seen) == crops  # one network input per crop, each at the resolution
    assert all(s[-2:] == (256, 256) for s in seen)


def test_network_crops_large_hole_and_thin_image():
    net = _tiny_pconv()
    seen = _counting(net)
    img, hole = large_scene([(20, 30, 690, 880)])
    out = Inpainter(net, strategy="crops", resolution=256)([img], [hole])[0]
    assert np.array_equal(out[~hole], img[~hole]) and not np.array_equal(out[hole], img[hole])
    assert seen == [(1, 3, 208, 256)]  # the whole photo, scaled to 199x256, padded to the multiple of 16
    img, hole = large_scene([(40, 10, 50, 20)], h=100)
    out = Inpainter(net, strategy="crops", resolution=256)([img], [hole])[0]
    assert np.array_equal(out[~hole], img[~hole]) and seen[-1] == (1, 3, 112, 256)


def test_auto_strategy_pads_small_and_sharpens_large_images():
    net = _tiny_pconv()
    inp = Inpainter(net, resolution=256)
    assert inp.strategy_for((512, 500)) == "pad" and inp.strategy_for((513, 200)) == "sharp"
    assert Inpainter(net, strategy="pad").strategy_for((5000, 5000)) == "pad"
    assert Inpainter("telea").strategy_for((5000, 5000)) == "full"
    assert Inpainter("telea", strategy="crops").strategy_for((10, 10)) == "crops"
    small, small_hole = scene(40, 56, 0)
    big, big_hole = large_scene(FAR)
    auto = inp([small, big], [small_hole, big_hole])
    assert np.array_equal(auto[0], Inpainter(net, strategy="pad")([small], [small_hole])[0])
    assert np.array_equal(auto[1], Inpainter(net, strategy="sharp")([big], [big_hole])[0])


def _textured_photo(h, w, seed=5):
    """Smooth colour gradients plus fine grain: what a photo's detail looks like to a Laplacian."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    base = np.stack([80 + 60 * np.sin(xx / 90), 120 + 40 * np.cos(yy / 70), 100 + 30 * np.sin((xx + yy) / 120)], -1)
    grain = cv2.GaussianBlur(rng.normal(0, 18, (h, w)).astype(np.float32), (0, 0), 0.7)
    return np.clip(base + grain[..., None], 0, 255).astype(np.uint8)


def _lap_var(img, where):
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(cv2.Laplacian(g, cv2.CV_32F)[where].var())


def test_sharp_scales_crops_by_hole_thickness():
    net = _tiny_pconv()
    seen = _counting(net)
    img = _textured_photo(560, 800)  # 0.45 MP: under SHARP_MAX_PIXELS
    thin = np.zeros((560, 800), bool)
    thin[300:316, 50:750] = True  # a long 16-px stroke: the crops strategy shrinks it 3x
    Inpainter(net, strategy="crops", resolution=256)([img], [thin])
    Inpainter(net, strategy="sharp", resolution=256, reach=16)([img], [thin])
    assert max(seen[0][-2:]) <= 256  # crops: scaled to the resolution
    assert max(seen[1][-2:]) >= 800  # sharp: the stroke is within reach at full resolution
    img = _textured_photo(700, 900)
    thick = np.zeros((700, 900), bool)
    thick[200:500, 300:600] = True  # 150 px from the border at its centre: 16/150 of full size
    seen.clear()
    Inpainter(net, strategy="sharp", resolution=256, reach=16)([img], [thick])
    assert max(seen[0][-2:]) <= 272  # never bigger than the crops strategy makes it (padded to 16)


def test_sharp_fill_carries_the_photos_detail():
    net = _tiny_pconv()
    img = _textured_photo(700, 900)
    hole = np.zeros((700, 900), bool)
    hole[250:420, 300:520] = True
    inner = cv2.erode(hole.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    crops = Inpainter(net, strategy="crops", resolution=256)([img], [hole])[0]
    sharp = Inpainter(net, strategy="sharp", resolution=256)([img], [hole])[0]
    assert np.array_equal(sharp[~hole], img[~hole])
    truth = _lap_var(img, inner)
    assert _lap_var(crops, inner) < 0.2 * truth  # an upscaled low-resolution fill: no grain
    assert _lap_var(sharp, inner) > 0.4 * truth  # the photo's own grain, copied in


def test_sharp_texture_stages_both_carry_the_detail_on_the_networks_layout():
    net = _tiny_pconv()
    img = _textured_photo(700, 900, seed=3)
    hole = np.zeros((700, 900), bool)
    hole[250:420, 300:520] = True
    inner = cv2.erode(hole.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    outs = {t: Inpainter(net, strategy="sharp", resolution=256, texture=t)([img], [hole])[0]
            for t in ("patchmatch", "residual")}
    for out in outs.values():
        assert np.array_equal(out[~hole], img[~hole])
        assert _lap_var(out, inner) > 0.4 * _lap_var(img, inner)
    # the layout (low frequencies) comes from the (untrained, so unlike the photo) network's
    # fill in both: the two agree far better than either agrees with the photo
    low = lambda a: cv2.GaussianBlur(a.astype(np.float32), (0, 0), 8)[inner]  # noqa: E731
    between = np.abs(low(outs["patchmatch"]) - low(outs["residual"])).mean()
    assert between < 0.5 * np.abs(low(outs["residual"]) - low(img)).mean(), between


def test_scale_detail_scales_only_the_holes_fine_detail():
    img = _textured_photo(300, 260, seed=7)
    hole = np.zeros((300, 260), bool)
    hole[40:120, 30:90] = True
    hole[200:290, 150:250] = True  # two holes far apart: bands with and without hole rows
    inner = cv2.erode(hole.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    half = scale_detail(img, hole, 0.5, 3.0)
    assert half is not img and np.array_equal(half[~hole], img[~hole])
    ratio = _lap_var(half, inner) / _lap_var(img, inner)
    assert 0.18 < ratio < 0.35, ratio  # the Laplacian's variance scales with the gain squared
    # ... while the low frequencies (the layout) stay
    low = lambda a: cv2.GaussianBlur(a.astype(np.float32), (0, 0), 6)[inner]  # noqa: E731
    assert np.abs(low(half) - low(img)).mean() < 1.0
    # bands of a few rows give the same result as one band over the whole hole
    assert np.array_equal(scale_detail(img, hole, 0.5, 3.0, band=7), half)
    assert scale_detail(img, hole, 1.0, 3.0) is img
    assert scale_detail(img, np.zeros_like(hole), 0.5, 3.0) is img


def test_sharp_patchmatch_keeps_the_copied_detail_at_the_gain():
    net = _tiny_pconv()
    img = _textured_photo(600, 640, seed=2)
    hole = np.zeros((600, 640), bool)
    hole[200:300, 250:380] = True
    full = Inpainter(net, strategy="sharp", resolution=256, texture="patchmatch", gain=1.0)([img], [hole])[0]
    default = Inpainter(net, strategy="sharp", resolution=256, texture="patchmatch")([img], [hole])[0]
    expected = scale_detail(full, hole, SHARP_PATCHMATCH_GAIN, SHARP_DETAIL_SIGMA)
    assert np.array_equal(default, expected) and not np.array_equal(default, full)


def test_sharp_reports_progress_within_a_crop():
    net = _tiny_pconv()
    img = _textured_photo(600, 640)
    hole = np.zeros((600, 640), bool)
    hole[200:300, 250:380] = True
    steps = []
    Inpainter(net, strategy="sharp", resolution=256, texture="patchmatch", progress=steps.append)([img], [hole])
    assert len(steps) > 2 and steps == sorted(steps) and steps[-1] == 1.0
    assert any(0 < f < 1 for f in steps)  # the texture stage of the one crop reports as it goes


def test_sharp_texture_auto_follows_numba(monkeypatch):
    import imgsynth.models.patchmatch as pm

    net = _tiny_pconv()
    monkeypatch.setattr(pm, "numba_available", lambda: True)
    assert Inpainter(net).texture_for() == "patchmatch"
    monkeypatch.setattr(pm, "numba_available", lambda: False)
    assert Inpainter(net).texture_for() == "residual"
    assert Inpainter(net, texture="patchmatch").texture_for() == "patchmatch"
    with pytest.raises(UsageError, match="texture"):
        Inpainter(net, texture="grain")
    # auto resolves to the stage it names: the same output
    img = _textured_photo(600, 640)
    hole = np.zeros((600, 640), bool)
    hole[200:300, 250:380] = True
    a = Inpainter(net, strategy="sharp", resolution=256)([img], [hole])[0]
    b = Inpainter(net, strategy="sharp", resolution=256, texture="residual")([img], [hole])[0]
    assert np.array_equal(a, b)


def test_sharp_runs_its_own_ensemble_size():
    net = _tiny_pconv()
    inp = Inpainter(net, ensemble=4, sharp_ensemble=1, resolution=256)
    assert inp.ensemble_for((200, 200)) == 4 and inp.ensemble_for((2000, 1500)) == 1
    assert Inpainter(net, ensemble=4).ensemble_for((2000, 1500)) == 4
    assert Inpainter("telea").ensemble_for((2000, 1500)) == 1
    with pytest.raises(UsageError):
        Inpainter(net, sharp_ensemble=3)


def test_classical_patchmatch_matches_texture_too():
    from imgsynth.models.patchmatch import patchmatch_inpaint

    img = _textured_photo(120, 140, seed=4)
    hole = np.zeros((120, 140), bool)
    hole[40:80, 50:100] = True
    out = Inpainter("patchmatch")([img], [hole])[0]
    assert np.array_equal(out, patchmatch_inpaint(img, hole, texture_weight=4.0))
    assert not np.array_equal(out, patchmatch_inpaint(img, hole))


def test_classical_crops():
    img, hole = large_scene(FAR)
    # Telea only reads --radius pixels around the hole: crops give the very same pixels
    assert np.array_equal(Inpainter("telea", strategy="crops")([img], [hole])[0], Inpainter("telea")([img], [hole])[0])
    img, hole = large_scene([(20, 20, 30, 34), (150, 140, 158, 150)], h=180, w=180)
    steps = []
    out = Inpainter("patchmatch", strategy="crops", resolution=48, progress=steps.append)([img], [hole])[0]
    assert np.array_equal(out[~hole], img[~hole]) and not np.array_equal(out[hole], img[hole])
    assert steps == sorted(steps) and steps[-1] == pytest.approx(1.0)


def test_patchmatch_crops_copy_only_from_the_crop():
    """``--strategy crops`` restricts PatchMatch's sources to the crop around the hole: every filled
    pixel is a copy of a known pixel inside that crop, never of the far part of the photo."""
    from imgsynth.pipelines.inpaint import crop_boxes

    rng = np.random.default_rng(0)
    img = np.empty((160, 320, 3), np.uint8)
    img[:, :160] = rng.integers(0, 128, (160, 160, 3))  # near the hole: dark colours only
    img[:, 160:] = rng.integers(128, 256, (160, 160, 3))  # far away: bright colours only
    hole = np.zeros((160, 320), bool)
    hole[60:80, 50:70] = True
    (y0, x0, y1, x1), = crop_boxes(hole, 64)
    assert x1 <= 160  # the crop lies in the dark half
    out = Inpainter("patchmatch", strategy="crops", resolution=64)([img], [hole])[0]
    crop_colours = {tuple(c) for c in img[y0:y1, x0:x1][~hole[y0:y1, x0:x1]]}
    assert {tuple(c) for c in out[hole]} <= crop_colours
    assert np.array_equal(out[~hole], img[~hole])
