"""PatchMatch inpainting: exactness on periodic textures, texture, memory, the guide, both backends,
invariants and input errors."""

import sys
import tracemalloc

import cv2
import numpy as np
import pytest

from imgsynth.errors import ImgsynthError
from imgsynth.models import patchmatch
from imgsynth.models.patchmatch import inpaint_patchmatch, numba_available, patchmatch_inpaint

# the compiled backend runs where numba is installed (the `fast` extra); the NumPy one everywhere
BACKENDS = ["numpy"] + (["numba"] if numba_available() else [])


def _periodic(h: int, w: int) -> np.ndarray:
    """Three-channel texture whose joint period (60, 10) fits inside a 96x96 image only a few
    times, so a fill must find the right far-away copies rather than a nearby neighbour."""
    y, x = np.mgrid[:h, :w]
    red = ((x + y) % 7) * 30 + 20
    green = ((x // 3 + y // 5) % 2) * 180 + 40
    blue = ((2 * x - y) % 5) * 50
    return np.stack([red, green, blue], -1).astype(np.uint8)


def _tile(h: int, w: int) -> np.ndarray:
    """Texture with period 8 in x and y: many exact copies of every patch."""
    y, x = np.mgrid[:h, :w]
    red = (((x + 2 * y) // 4) % 2) * 200 + 20
    green = ((x // 4 + y // 4) % 2) * 150 + 50
    blue = (x % 4) * 60
    return np.stack([red, green, blue], -1).astype(np.uint8)


def _hole(shape: tuple[int, int], ys: slice, xs: slice) -> np.ndarray:
    hole = np.zeros(shape, bool)
    hole[ys, xs] = True
    return hole


def _mae(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    return float(np.abs(a[where].astype(np.float64) - b[where]).mean())


def test_periodic_texture_is_reconstructed_where_telea_is_not():
    image = _periodic(96, 96)
    hole = _hole(image.shape[:2], slice(30, 62), slice(36, 66))
    out = inpaint_patchmatch(image, hole, seed=0)
    telea = cv2.inpaint(image, hole.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    pm_err, telea_err = _mae(out, image, hole), _mae(telea, image, hole)
    assert pm_err < 2.0, pm_err
    assert telea_err > 30.0, telea_err
    assert telea_err > 20 * pm_err


@pytest.mark.parametrize(
    "ys, xs",
    [
        (slice(0, 14), slice(0, 18)),  # top-left corner
        (slice(30, 50), slice(52, 64)),  # right edge
        (slice(50, 64), slice(10, 40)),  # bottom edge
    ],
    ids=["corner", "right", "bottom"],
)
def test_border_holes_are_filled_exactly(ys, xs):
    image = _tile(64, 64)
    hole = _hole(image.shape[:2], ys, xs)
    out = inpaint_patchmatch(image, hole)
    assert _mae(out, image, hole) < 1.0


def test_known_pixels_never_change_and_output_contract():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    hole = rng.random((40, 52)) < 0.02
    hole[10:20, 15:30] = True
    before = image.copy()
    out = inpaint_patchmatch(image, hole, iterations=2, em_steps=1)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[~hole], image[~hole])
    np.testing.assert_array_equal(image, before)  # the input is not modified in place


def test_constant_image_fills_with_the_constant():
    image = np.full((30, 30, 3), (12, 200, 77), np.uint8)
    hole = _hole((30, 30), slice(5, 25), slice(8, 20))
    out = inpaint_patchmatch(image, hole)
    np.testing.assert_array_equal(out, image)


def test_same_seed_same_output():
    image = _periodic(48, 48)
    noise = np.random.default_rng(0).integers(0, 40, image.shape, dtype=np.uint8)
    image = image // 2 + noise  # no exact copies, so the result depends on the random search
    hole = _hole((48, 48), slice(14, 34), slice(12, 30))
    first = inpaint_patchmatch(image, hole, seed=7)
    second = inpaint_patchmatch(image, hole, seed=7)
    np.testing.assert_array_equal(first, second)


def test_empty_hole_returns_an_unchanged_copy():
    image = _tile(16, 16)
    calls: list[float] = []
    out = inpaint_patchmatch(image, np.zeros((16, 16), bool), progress=calls.append)
    np.testing.assert_array_equal(out, image)
    assert out is not image
    assert calls == [1.0]


def test_progress_is_monotone_and_ends_at_one():
    image = _tile(48, 48)
    hole = _hole((48, 48), slice(10, 30), slice(10, 30))
    calls: list[float] = []
    inpaint_patchmatch(image, hole, progress=calls.append)
    assert calls == sorted(calls) and calls[-1] == 1.0 and calls[0] > 0.0


def test_full_hole_has_nothing_to_copy_from():
    with pytest.raises(ValueError, match="nothing to copy from"):
        inpaint_patchmatch(_tile(16, 16), np.ones((16, 16), bool))


def test_image_smaller_than_a_patch_is_rejected():
    hole = np.zeros((5, 8), bool)
    hole[2, 3] = True
    with pytest.raises(ValueError, match="smaller than one 7x7 patch"):
        inpaint_patchmatch(np.zeros((5, 8, 3), np.uint8), hole)


def test_no_complete_known_patch_is_rejected():
    hole = np.zeros((32, 32), bool)
    hole[::5, ::5] = True  # a hole pixel in every 7x7 window
    with pytest.raises(ValueError, match="no complete 7x7 patch"):
        inpaint_patchmatch(_tile(32, 32), hole)


@pytest.mark.parametrize(
    "image, hole, kwargs",
    [
        (np.zeros((16, 16, 3), np.float32), np.zeros((16, 16), bool), {}),
        (np.zeros((16, 16), np.uint8), np.zeros((16, 16), bool), {}),
        (np.zeros((16, 16, 3), np.uint8), np.zeros((16, 15), bool), {}),
        (np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), bool), {"patch_size": 6}),
        (np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), bool), {"em_steps": -1}),
        (np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), bool), {"em_steps": 0, "pyramid_levels": 1}),
        (np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), bool), {"guide": np.zeros((16, 15, 3))}),
        (np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), bool), {"guide_weight": 1.5}),
        (np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), bool), {"backend": "cuda"}),
        (np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), bool), {"texture_weight": -1.0}),
        (np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), bool), {"texture_window": 1}),
        (np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), bool), {"texture_window": 17}),
    ],
    ids=["float-image", "gray-2d", "mask-shape", "even-patch", "negative-em", "zero-em-one-level", "guide-shape", "guide-weight",
         "backend", "texture-weight", "texture-window", "texture-window-big"],
)
def test_bad_inputs_raise_typed_value_errors(image, hole, kwargs):
    with pytest.raises(ValueError) as info:
        inpaint_patchmatch(image, hole, **kwargs)
    assert isinstance(info.value, ImgsynthError)


def _laplacian_variance(image: np.ndarray, where: np.ndarray) -> float:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(cv2.Laplacian(gray, cv2.CV_32F)[where].var())


def _noisy_periodic(h: int, w: int, seed: int = 0) -> np.ndarray:
    """The periodic texture plus noise: no exact copy of any patch exists, so the fill must be a
    synthesis, and a smooth fill loses the noise's detail."""
    noise = np.random.default_rng(seed).integers(-25, 26, (h, w, 3))
    return np.clip(_periodic(h, w).astype(int) + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fill_keeps_the_texture_where_a_smear_does_not(backend):
    image = _noisy_periodic(96, 96)
    hole = _hole(image.shape[:2], slice(28, 64), slice(30, 66))
    out = patchmatch_inpaint(image, hole, backend=backend)
    telea = cv2.inpaint(image, hole.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    ring = cv2.dilate(hole.astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool) & ~hole
    reference = _laplacian_variance(image, ring)
    ratio = _laplacian_variance(out, hole) / reference
    assert ratio >= 0.4, ratio
    assert _laplacian_variance(telea, hole) / reference < 0.4  # the measure does catch a smear
    np.testing.assert_array_equal(out[~hole], image[~hole])


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_reconstruct_the_periodic_texture(backend):
    image = _tile(64, 64)
    hole = _hole(image.shape[:2], slice(20, 44), slice(18, 40))
    out = patchmatch_inpaint(image, hole, backend=backend, seed=3)
    assert _mae(out, image, hole) < 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_output_per_backend_and_known_pixels_exact(backend):
    image = _noisy_periodic(48, 56, seed=1)
    hole = _hole(image.shape[:2], slice(12, 30), slice(14, 36))
    hole[40, 5] = True  # a second, single-pixel hole
    first = patchmatch_inpaint(image, hole, backend=backend, seed=11)
    second = patchmatch_inpaint(image, hole, backend=backend, seed=11)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first[~hole], image[~hole])
    other = patchmatch_inpaint(image, hole, backend=backend, seed=12)
    assert not np.array_equal(first, other)  # the seed does drive the search


def _two_textures() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Red texture on the left, blue on the right, a hole across both halves; returns the image,
    the hole and the hole's top and bottom halves."""
    h, w = 96, 128
    y, x = np.mgrid[:h, :w]
    red = np.stack([150 + 60 * ((x + y) % 6 < 3), 40 + 0 * x, 30 + 20 * (y % 4 < 2)], -1)
    blue = np.stack([30 + 0 * x, 60 + 40 * ((x // 2 + y) % 5 < 2), 170 + 50 * (x % 4 < 2)], -1)
    image = np.where((x < w // 2)[..., None], red, blue)
    image = image + np.random.default_rng(0).integers(-10, 11, image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    hole = np.zeros((h, w), bool)
    hole[24:72, 40:88] = True
    return image, hole, hole & (y < 48), hole & (y >= 48)


@pytest.mark.parametrize("backend", BACKENDS)
def test_guide_sets_the_layout_and_the_photo_the_texture(backend):
    image, hole, top, bottom = _two_textures()
    red, blue = image[:, :64].reshape(-1, 3).mean(0), image[:, 64:].reshape(-1, 3).mean(0)
    # a flat coarse "network fill" that puts blue above red, unlike the photo's left/right split
    guide = image.astype(np.float32)
    guide[top], guide[bottom] = blue, red
    out = patchmatch_inpaint(image, hole, guide, backend=backend)
    assert np.abs(out[top].mean(0) - blue).max() < 30, out[top].mean(0)
    assert np.abs(out[bottom].mean(0) - red).max() < 30, out[bottom].mean(0)
    # ... with the photo's texture, not the guide's flat colour
    reference = _laplacian_variance(image, ~hole)
    assert _laplacian_variance(out, hole) / reference > 0.5
    np.testing.assert_array_equal(out[~hole], image[~hole])
    # without the guide both halves of the hole come out alike (the left/right split)
    plain = patchmatch_inpaint(image, hole, backend=backend)
    assert np.abs(plain[top].mean(0) - plain[bottom].mean(0)).max() < 30


@pytest.mark.parametrize("backend", BACKENDS)
def test_guide_floor_sets_the_weight_the_levels_decay_towards(backend):
    """``g_d = floor + (weight - floor) * decay**d``: no floor is the plain decay, a floor equal to
    the weight is the same weight at every level, and a floor between them differs from both."""
    image, hole, top, bottom = _two_textures()
    guide = image.astype(np.float32)
    guide[top] = image[:, 64:].reshape(-1, 3).mean(0)
    guide[bottom] = image[:, :64].reshape(-1, 3).mean(0)
    common = dict(patch_size=5, iterations=2, em_steps=1, backend=backend)
    no_floor = patchmatch_inpaint(image, hole, guide, guide_weight=0.8, guide_decay=0.5, **common)
    assert np.array_equal(
        no_floor, patchmatch_inpaint(image, hole, guide, guide_weight=0.8, guide_decay=0.5, guide_floor=0.0, **common))
    flat = patchmatch_inpaint(image, hole, guide, guide_weight=0.8, guide_decay=1.0, **common)
    assert np.array_equal(
        flat, patchmatch_inpaint(image, hole, guide, guide_weight=0.8, guide_decay=0.5, guide_floor=0.8, **common))
    floored = patchmatch_inpaint(image, hole, guide, guide_weight=0.8, guide_decay=0.5, guide_floor=0.4, **common)
    assert not np.array_equal(floored, no_floor) and not np.array_equal(floored, flat)
    np.testing.assert_array_equal(floored[~hole], image[~hole])
    for bad in (-0.1, 0.9):  # below 0, above the weight
        with pytest.raises(ImgsynthError, match="guide_floor"):
            patchmatch_inpaint(image, hole, guide, guide_weight=0.8, guide_floor=bad, **common)


def _smooth_and_grainy(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A flat left half and a grainy right half of the same mean colour (the same at any coarse
    level); returns the image and the right half's mask."""
    h, w = 96, 128
    rng = np.random.default_rng(seed)
    base = np.array([110, 140, 110])
    right = np.zeros((h, w), bool)
    right[:, w // 2 :] = True
    grain = np.where(right, rng.integers(-45, 46, (h, w)), rng.integers(-2, 3, (h, w)))
    return np.clip(base + grain[..., None], 0, 255).astype(np.uint8), right


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("guided", [True, False], ids=["guided", "plain"])
def test_texture_channels_fill_a_grainy_region_with_grain(backend, guided):
    """Newson et al.'s texture features: a hole in the grainy half, with a smooth start (a flat
    guide of the right mean, as a network's fill is, or the onion-peel start). Matching colour
    alone copies the flat half, whose patches are nearer a smooth estimate; with the texture
    channels the fill takes the grain of its surroundings."""
    image, right = _smooth_and_grainy()
    hole = _hole(image.shape[:2], slice(28, 68), slice(76, 116))
    guide = None
    if guided:
        guide = image.astype(np.float32)
        guide[hole] = image[right].reshape(-1, 3).mean(0)
    inner = cv2.erode(hole.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    reference = _laplacian_variance(image, right & ~hole)
    options = dict(patch_size=5, iterations=2, em_steps=0, guide_weight=0.5, guide_decay=1.0, backend=backend)
    plain = patchmatch_inpaint(image, hole, guide, **options)
    textured = patchmatch_inpaint(image, hole, guide, texture_weight=2.0, **options)
    assert _laplacian_variance(plain, inner) / reference < 0.2  # the failure being fixed
    assert _laplacian_variance(textured, inner) / reference > 0.6
    # the colour is still right, the known pixels untouched and the output three channels
    assert np.abs(textured[hole].mean(0) - image[right].reshape(-1, 3).mean(0)).max() < 6
    assert textured.shape == image.shape and textured.dtype == np.uint8
    np.testing.assert_array_equal(textured[~hole], image[~hole])


def test_texture_channels_are_the_surroundings_level_inside_the_hole():
    image, right = _smooth_and_grainy()
    hole = _hole(image.shape[:2], slice(28, 68), slice(76, 116))
    feats = patchmatch._texture_channels(image, hole, 8, 1.0)
    assert feats.shape == image.shape[:2] + (2,) and feats.dtype == np.uint8
    flat, grainy = feats[10:80, 8:50], feats[10:80][:, 70:124][~hole[10:80, 70:124]]
    assert flat.max() <= 4  # the flat half: +-2 grey levels
    assert grainy.mean() > 15  # the grain: mean |difference| of two uniform draws in +-45 is ~30
    inside = feats[hole].astype(float)
    assert np.abs(inside.mean(0) - grainy.reshape(-1, 2).mean(0)).max() < 0.25 * grainy.mean()
    # doubling the weight doubles the channels (up to rounding)
    double = patchmatch._texture_channels(image, hole, 8, 2.0).astype(int)
    assert np.abs(double - 2 * feats.astype(int)).max() <= 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_full_resolution_search_still_copies_full_resolution_patches(backend):
    """em_steps=0: the field found on the coarser levels is upsampled and voted once at full
    resolution: the periodic tile comes back nearly exact and the noisy one keeps its grain,
    which a fill made at half resolution and upsampled would lose."""
    image = _tile(96, 96)
    hole = _hole(image.shape[:2], slice(30, 62), slice(28, 60))
    out = patchmatch_inpaint(image, hole, backend=backend, em_steps=0, pyramid_levels=2, seed=2)
    assert _mae(out, image, hole) < 4.0
    np.testing.assert_array_equal(out[~hole], image[~hole])
    noisy = _noisy_periodic(96, 96)
    out = patchmatch_inpaint(noisy, hole, backend=backend, em_steps=0, pyramid_levels=3)
    ring = cv2.dilate(hole.astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool) & ~hole
    assert _laplacian_variance(out, hole) / _laplacian_variance(noisy, ring) >= 0.6


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_full_resolution_search_falls_back_when_no_coarser_field_exists(backend):
    """A hole too wide for the coarser level to hold a complete known patch: the full-resolution
    level starts afresh and must search (as em_steps=1 does), not return its initial guess."""
    image = _noisy_periodic(40, 40)
    hole = np.zeros((40, 40), bool)
    hole[:, 9:31] = True  # at half resolution no 7x7 window is free of the hole
    out = patchmatch_inpaint(image, hole, backend=backend, em_steps=0, pyramid_levels=2, seed=1)
    searched = patchmatch_inpaint(image, hole, backend=backend, em_steps=1, pyramid_levels=2, seed=1)
    np.testing.assert_array_equal(out, searched)
    ring = cv2.dilate(hole.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~hole
    assert _laplacian_variance(out, hole) / _laplacian_variance(image, ring) >= 0.4  # patches, not a smear


@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_grows_with_the_hole_not_as_patches_of_the_photo(backend):
    """A 1024x1024 photo with a small hole: the traced peak stays a few bytes per photo pixel
    (output copy, index map, masks); one 7x7 patch per pixel would be 147 bytes per pixel."""
    n = 1024
    image = np.random.default_rng(0).integers(0, 256, (n, n, 3), dtype=np.uint8)
    hole = _hole((n, n), slice(500, 540), slice(300, 340))
    fast = {"backend": backend, "iterations": 1, "em_steps": 1}  # the peak does not depend on them
    patchmatch_inpaint(image[:64, :64], hole[480:544, 280:344], **fast)  # load the kernels first
    tracemalloc.start()
    try:
        out = patchmatch_inpaint(image, hole, **fast)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * n * n, peak / (n * n)
    np.testing.assert_array_equal(out[~hole], image[~hole])


def test_without_numba_the_numpy_backend_runs(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba -> ImportError
    monkeypatch.setattr(patchmatch, "_numba_checked", False)
    monkeypatch.setattr(patchmatch, "_kernels", None)
    assert not numba_available()
    image = _tile(40, 40)
    hole = _hole((40, 40), slice(10, 26), slice(12, 24))
    out = patchmatch_inpaint(image, hole)  # backend="auto" falls back
    assert _mae(out, image, hole) < 1.0
    np.testing.assert_array_equal(out, patchmatch_inpaint(image, hole, backend="numpy"))
    with pytest.raises(ValueError, match="pip install 'imgsynth\\[fast\\]'"):
        patchmatch_inpaint(image, hole, backend="numba")
