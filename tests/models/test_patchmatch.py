"""PatchMatch inpainting: exactness on periodic textures, invariants and input errors."""

import cv2
import numpy as np
import pytest

from imgsynth.errors import ImgsynthError
from imgsynth.models.patchmatch import inpaint_patchmatch


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
        (np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), bool), {"em_steps": 0}),
    ],
    ids=["float-image", "gray-2d", "mask-shape", "even-patch", "zero-em"],
)
def test_bad_inputs_raise_typed_value_errors(image, hole, kwargs):
    with pytest.raises(ValueError) as info:
        inpaint_patchmatch(image, hole, **kwargs)
    assert isinstance(info.value, ImgsynthError)
