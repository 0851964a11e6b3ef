"""Inpainting as arrays in, arrays out: classical methods and networks behind one call.

``Inpainter(method)(images, holes)`` takes RGB uint8 arrays (H, W, 3) and boolean hole masks
(H, W) (True = fill) and returns RGB uint8 arrays of the same sizes, in which every known pixel is
exactly the input pixel (the fill is composited into the hole only).

Methods: ``"telea"`` (Telea 2004, fast marching) and ``"ns"`` (Bertalmio et al. 2001,
Navier-Stokes) through OpenCV, ``"patchmatch"`` (Barnes et al. 2009, ``models.patchmatch``), or a
partial-convolution network (``models.pconv``) given as a module.

Strategies (how an image meets the method, :class:`Inpainter`): ``pad`` and ``resize`` run a
network on the whole image; ``crops`` runs any method on squares around the holes only
(:func:`crop_boxes`), which keeps a 256-pixel network at the scale it was trained at and its cost
independent of the photo's size; ``sharp`` runs a network on those crops scaled down only as far
as the thickest hole needs, then gives the fill the photo's own full-resolution texture: a
PatchMatch guided by the network's fill (Yang et al. 2017; ``models.patchmatch``) or, without
numba, contextual residual aggregation (Yi et al. 2020; ``models.residual_aggregation``);
``auto`` picks ``pad`` or ``sharp`` from the image size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from imgsynth.errors import InputError, UsageError

if TYPE_CHECKING:
    import torch

CLASSICAL = ("telea", "ns", "patchmatch")
STRATEGIES = ("auto", "pad", "resize", "crops", "sharp")
# Geometric self-ensemble (Lim et al. 2017, EDSR "+"): a network's fill averaged over this many
# flips / transposes of its input, each undone on the output. 1 is the plain forward.
ENSEMBLES = (1, 2, 4, 8)
# (transpose, flip rows, flip columns) of each ensemble member; the first n are used.
_TRANSFORMS = ((False, False, False), (False, False, True), (False, True, False), (False, True, True),
               (True, False, False), (True, False, True), (True, True, False), (True, True, True))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ``auto`` runs a network on the whole image (``pad``) while its longer side is at most this many times
# the network's resolution, and on crops beyond: there the whole-photo forward costs far more than a
# few holes need (2000x1500, 3 holes: 13 s against 0.5 s on one CPU core), and crops scaled down to the
# resolution keep a large hole at the size the network was trained to fill.
AUTO_CROPS_ABOVE = 2
# A crop's side is this many times its hole's longer bounding-box side (at least the network's
# resolution), so the hole spans at most half the crop in each direction, like the training holes.
CROP_CONTEXT = 2.0
# Crops of one network input size go through the network this many at a time.
CROP_BATCH = 8
# ``sharp``: a crop is scaled down only as far as its thickest hole needs: until no hole pixel lies
# more than this many (network-resolution) pixels from the known region, about the half-width of the
# thick training strokes; never further down than ``crops`` scales it, never up.
SHARP_REACH = 48.0
# ``sharp``: a crop goes through the network at no more than this many pixels (scaled down further
# when larger), which bounds the memory of a 12-megapixel photo with a long hole.
SHARP_MAX_PIXELS = 600_000
# ``sharp``: contrast of the photo's own detail copied into the hole (1 = the sources' contrast)
# by the ``residual`` texture stage.
SHARP_GAIN = 0.75
# ``sharp``: how the full-resolution texture is made. ``patchmatch``: a PatchMatch whose search
# inside the hole matches a blend of the current estimate and the network's upsampled fill (Yang
# et al. 2017), plus two texture channels (Newson et al. 2014: the local mean absolute luminance
# differences, set inside the hole to the surroundings' level), at every level of a pyramid deep
# enough for the hole; its full-resolution field is voted once (the mode), so the hole gets whole
# full-resolution patches of the photo laid out as the network says, with the texture of the
# hole's surroundings. The fill's share of the match is 0.9 at the coarsest level, where the
# layout is decided, and its excess over 0.3 halves at each finer level, so the fine levels take the
# photo's texture without drifting from that layout. Then the copied detail (above a 3-pixel
# Gaussian) is kept at ``SHARP_PATCHMATCH_GAIN`` of its contrast: the least-squares estimate of
# detail that is right in kind but not in place. With a quarter of the fill matched at every
# level (the previous setting) the coarse layout followed the estimate's own coherence: on
# examples/inpaint/forest.jpg the ground's moss climbed 60-100 px up the removed trunk and a
# patch of it floated higher up; without the texture channels the search took the photo's
# flattest patches wherever the fill was smooth and dark. ``residual``: contextual residual
# aggregation (Yi et al. 2020), the network's fill low-passed plus the photo's detail copied cell
# by cell. ``auto``: ``patchmatch`` when numba is installed (the numpy backend is several times
# slower), else ``residual``. Measured on 17 held-out photos at 2048 px:
# benchmarks/results/inpaint_photos.md.
SHARP_TEXTURES = ("auto", "patchmatch", "residual")
# ``--model patchmatch`` (no network): the library's defaults plus the texture channels. On 17
# held-out 2048-px photos with object-removal holes, through the CLI, PSNR / SSIM / texture went
# from 27.95 / 0.9489 / 1.44 to 27.93 / 0.9474 / 1.69 (level, a little lower, more detail); on
# examples/inpaint/forest.jpg the removed trunk became the forest behind it instead of a darker
# copy of a trunk, and the ground patch the forest floor's leaves.
CLASSICAL_PATCHMATCH = {"texture_weight": 4.0}
SHARP_PATCHMATCH = {"patch_size": 5, "iterations": 2, "em_steps": 0, "pyramid_levels": None,
                    "guide_weight": 0.9, "guide_decay": 0.5, "guide_floor": 0.3, "texture_weight": 4.0}
SHARP_PATCHMATCH_GAIN = 0.65
# ``sharp`` / ``patchmatch``: the Gaussian (pixels) that splits the copied fill into the part kept
# as it is and the detail scaled by the gain.
SHARP_DETAIL_SIGMA = 3.0

Box = tuple[int, int, int, int]
"""A crop as ``(y0, x0, y1, x1)``, ends exclusive."""


def scale_detail(image: np.ndarray, hole: np.ndarray, gain: float, sigma: float, band: int = 256) -> np.ndarray:
    """``image`` (uint8 (H, W, C)) with the detail above a Gaussian of ``sigma`` pixels scaled by
    ``gain`` inside ``hole`` only: ``low + gain * (image - low)``, the rest unchanged. Works in
    bands of ``band`` rows over the hole's bounding box, so a 12-megapixel photo needs a few MB
    of floats."""
    if gain == 1.0 or not hole.any():
        return image
    import cv2

    out = image.copy()
    h, w = hole.shape
    ksize = int(round(8 * sigma + 1)) | 1  # OpenCV's own kernel size for float images
    margin = ksize // 2
    rows, cols = np.flatnonzero(hole.any(1)), np.flatnonzero(hole.any(0))
    x0, x1 = max(int(cols[0]) - margin, 0), min(int(cols[-1]) + margin + 1, w)
    for top in range(int(rows[0]), int(rows[-1]) + 1, band):
        bottom = min(top + band, int(rows[-1]) + 1)
        inside = hole[top:bottom, x0:x1]
        if not inside.any():
            continue
        y0, y1 = max(top - margin, 0), min(bottom + margin, h)
        block = image[y0:y1, x0:x1].astype(np.float32)
        low = cv2.GaussianBlur(block, (ksize, ksize), sigma, borderType=cv2.BORDER_REFLECT)
        block -= low
        block *= gain
        block += low
        part = block[top - y0 : bottom - y0]
        out[top:bottom, x0:x1][inside] = np.clip(np.rint(part[inside]), 0, 255).astype(np.uint8)
    return out


def grow_hole(hole: np.ndarray, pixels: int) -> np.ndarray:
    """Dilate a boolean hole mask by ``pixels`` (a disc), for ``--dilate``."""
    if pixels <= 0:
        return hole
    import cv2

    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(hole.astype(np.uint8), k).astype(bool)


def check_hole(hole: np.ndarray, name: str) -> None:
    """Refuse masks with nothing to fill or nothing to fill from."""
    n = int(hole.sum())
    if n == 0:
        raise InputError(f"{name}: the mask has no hole (all black); white (>= 128) marks pixels to fill, or use --invert-mask")
    if n == hole.size:
        raise InputError(f"{name}: the mask covers the whole image (all white); nothing is left to fill from")


def composite(image: np.ndarray, fill: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Known pixels from ``image``, hole pixels from ``fill``."""
    return np.where(hole[..., None], fill, image).astype(np.uint8)


def _square(box: Box, side: int, shape: tuple[int, int]) -> Box:
    """The ``side`` x ``side`` box centred on ``box``, shrunk to the image and shifted inside it."""
    y0, x0, y1, x1 = box
    h, w = shape
    sh, sw = min(side, h), min(side, w)
    top = min(max((y0 + y1 - sh) // 2, 0), h - sh)
    left = min(max((x0 + x1 - sw) // 2, 0), w - sw)
    return top, left, top + sh, left + sw


def _merge_touching(boxes: list[Box]) -> list[Box]:
    """Bounding boxes of the connected unions of ``boxes`` (overlapping or sharing an edge)."""
    import cv2

    # Paint every box at once on the grid of the boxes' own edges (+1/-1 at its corners, then two
    # running sums): each cell of that grid is a rectangle of the image covered alike, so the
    # 4-connected cells are the 4-connected unions. Linear in boxes + cells, where pairwise overlap
    # tests would be quadratic in the number of holes (a speckled mask has many) and a full-size
    # grid costs two passes over the photo.
    corners = np.asarray(boxes, np.int64).reshape(-1, 4)
    ys, xs = np.unique(corners[:, [0, 2]]), np.unique(corners[:, [1, 3]])
    iy0, iy1 = np.searchsorted(ys, corners[:, 0]), np.searchsorted(ys, corners[:, 2])
    ix0, ix1 = np.searchsorted(xs, corners[:, 1]), np.searchsorted(xs, corners[:, 3])
    diff = np.zeros((ys.size, xs.size), np.int32)
    np.add.at(diff, (iy0, ix0), 1)
    np.add.at(diff, (iy0, ix1), -1)
    np.add.at(diff, (iy1, ix0), -1)
    np.add.at(diff, (iy1, ix1), 1)
    cover = (diff.cumsum(0).cumsum(1)[:-1, :-1] > 0).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(cover, connectivity=4)
    return [(int(ys[y]), int(xs[x]), int(ys[y + bh]), int(xs[x + bw])) for x, y, bw, bh, _ in stats[1:]]


def crop_boxes(hole: np.ndarray, min_side: int, context: float = CROP_CONTEXT) -> list[Box]:
    """Disjoint crops that together hold every hole pixel with known context around it.

    Each connected hole region (8-connected) gets the square centred on its bounding box whose side
    is ``context`` times the box's longer side, and at least ``min_side`` (the network's
    resolution); a square larger than the image is shrunk to it and every square is shifted
    inside the image, so crops at the borders keep their size. Crops that overlap or share an edge
    are replaced by the square around their union, until none do. A hole spanning most of the
    image thus gives one crop: the whole image.

    Args:
        hole: (H, W) bool, True = fill.
        min_side: smallest crop side in pixels.
        context: crop side over the hole's bounding-box side.

    Returns:
        ``(y0, x0, y1, x1)`` boxes, ends exclusive, in raster order; empty when there is no hole.
    """
    import cv2

    if not hole.any():
        return []
    _, _, stats, _ = cv2.connectedComponentsWithStats(hole.astype(np.uint8), connectivity=8)
    boxes = [
        _square((int(y), int(x), int(y + bh), int(x + bw)), max(min_side, math.ceil(context * max(bw, bh))), hole.shape)
        for x, y, bw, bh, _ in stats[1:]
    ]
    while True:
        # the union of crops already holds its holes' context: squaring it is enough
        merged = [_square(b, max(b[2] - b[0], b[3] - b[1]), hole.shape) for b in _merge_touching(boxes)]
        if len(merged) == len(boxes):  # nothing merged: every box came back unchanged
            return sorted(merged)
        boxes = merged


@dataclass
class Inpainter:
    """Fill holes with ``method``: a classical method name or a PConv network (nn.Module).

    ``strategy`` (one of ``STRATEGIES``) says how an image meets the method:

    - ``pad``: the whole image at full size, reflect-padded to the network's multiple, cropped back.
    - ``resize``: the whole image resized to ``resolution`` x ``resolution`` (the card's training
      size), the fill resized back.
    - ``crops``: only squares around the holes (:func:`crop_boxes`, at least ``resolution`` wide),
      each scaled down to fit ``resolution`` when larger (aspect kept, area averaging, padded to
      the multiple), the fill scaled back and pasted into the holes of that crop.
    - ``sharp``: the crops of ``crops``, each scaled down only until no hole pixel is more than
      ``reach`` network pixels from the known region (and to at most ``SHARP_MAX_PIXELS``), never
      further than ``crops`` would; the fill is upsampled and the photo's own full-resolution
      texture laid into the hole by ``texture`` (``SHARP_TEXTURES``): ``patchmatch``, a
      PatchMatch guided by the upsampled fill (:func:`~imgsynth.models.patchmatch.patchmatch_inpaint`
      with ``SHARP_PATCHMATCH``), or ``residual``, the fill low-passed plus the detail of the
      known patches that match it best
      (:func:`~imgsynth.models.residual_aggregation.aggregate_residuals`); ``gain``: the contrast
      of the detail either stage lays in (None: ``SHARP_PATCHMATCH_GAIN`` or ``SHARP_GAIN``);
      ``auto``: ``patchmatch`` when numba is installed. Runs ``sharp_ensemble`` views (default:
      ``ensemble``).
    - ``auto`` (default): ``pad`` for images whose longer side is at most ``AUTO_CROPS_ABOVE`` x
      ``resolution``, ``sharp`` beyond.

    ``ensemble`` (1, 2, 4 or 8) averages a network's fill over that many flips and transposes of
    the input (geometric self-ensemble, Lim et al. 2017): the same network and weights, ``ensemble``
    forward passes, a fill with less of any one orientation's error. Classical methods ignore it.

    Classical methods always work at full size; they run on the whole image unless ``crops``,
    which runs them on each crop (unscaled). Telea and NS only look a few pixels around the hole,
    so crops change nothing but the time; PatchMatch then copies patches from the crop's
    surroundings only instead of the whole photo, far faster on large photos.

    ``normalization``: how the network expects pixels: ``imagenet`` ((x - mean) / std, naoto0804
    and the paper's VGG-based training) or ``tanh`` ([-1, 1], mmagic's PConv).
    Every known pixel of the result is the input pixel, whatever the strategy.
    """

    method: Any
    strategy: str = "auto"
    radius: int = 3
    seed: int = 0
    resolution: int = 256
    normalization: str = "imagenet"
    ensemble: int = 1
    reach: float = SHARP_REACH
    gain: float | None = None
    texture: str = "auto"
    sharp_ensemble: int | None = None
    device: torch.device | None = None
    dtype: torch.dtype | None = None
    progress: Callable[[float], None] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.method, str) and self.method not in CLASSICAL:
            raise UsageError(f"unknown inpainting method {self.method!r}; use {', '.join(CLASSICAL)} or a network")
        if self.strategy not in STRATEGIES:
            raise UsageError(f"unknown --strategy {self.strategy!r}; use {', '.join(STRATEGIES)}")
        if self.texture not in SHARP_TEXTURES:
            raise UsageError(f"unknown sharp texture stage {self.texture!r}; use {', '.join(SHARP_TEXTURES)}")
        if not isinstance(self.method, str) and self.normalization not in ("imagenet", "tanh"):
            raise UsageError(f"unknown normalization {self.normalization!r} on the card (imagenet or tanh)")
        for n in (self.ensemble, self.sharp_ensemble):
            if n is not None and n not in ENSEMBLES:
                raise UsageError(f"--ensemble must be one of {', '.join(map(str, ENSEMBLES))}, got {n}")

    def ensemble_for(self, size: tuple[int, int]) -> int:
        """The self-ensemble size an image of ``size`` (H, W) runs with (1 for classical methods)."""
        if isinstance(self.method, str):
            return 1
        if self.strategy_for(size) == "sharp" and self.sharp_ensemble is not None:
            return self.sharp_ensemble
        return self.ensemble

    def texture_for(self) -> str:
        """The ``sharp`` texture stage this inpainter runs: ``texture`` with ``auto`` resolved."""
        if self.texture != "auto":
            return self.texture
        from imgsynth.models.patchmatch import numba_available

        return "patchmatch" if numba_available() else "residual"

    def strategy_for(self, size: tuple[int, int]) -> str:
        """The strategy an image of ``size`` (H, W) runs with: ``auto`` resolved; ``full`` for a
        classical method on the whole image."""
        if isinstance(self.method, str):
            return "crops" if self.strategy == "crops" else "full"
        if self.strategy == "auto":
            return "pad" if max(size) <= AUTO_CROPS_ABOVE * self.resolution else "sharp"
        return self.strategy

    def __call__(self, images: Sequence[np.ndarray], holes: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Inpaint ``images`` ((H, W, 3) uint8) in ``holes`` ((H, W) bool, True = fill); same sizes out."""
        if len(images) != len(holes):
            raise ValueError("images and holes differ in number")
        for img, hole in zip(images, holes):
            if img.shape[:2] != hole.shape:
                raise ValueError(f"image {img.shape[:2]} and hole {hole.shape} differ in size")
        if isinstance(self.method, str):
            fills = [self._classical_image(img, hole) for img, hole in zip(images, holes)]
        else:
            fills = self._network(images, holes)
        return [composite(img, fill, hole) for img, fill, hole in zip(images, fills, holes)]

    def _classical_image(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        if self.strategy != "crops":
            return self._classical(image, hole, self.progress)
        fill = image.copy()
        boxes = crop_boxes(hole, self.resolution)
        for k, (y0, x0, y1, x1) in enumerate(boxes):
            progress = None
            if self.progress is not None:
                progress = (lambda f, k=k: self.progress((k + f) / len(boxes)))  # type: ignore[misc]
            fill[y0:y1, x0:x1] = self._classical(image[y0:y1, x0:x1], hole[y0:y1, x0:x1], progress)
        return fill

    def _classical(self, image: np.ndarray, hole: np.ndarray, progress: Callable[[float], None] | None) -> np.ndarray:
        if self.method == "patchmatch":
            from imgsynth.models.patchmatch import inpaint_patchmatch

            return inpaint_patchmatch(image, hole, seed=self.seed, progress=progress, **CLASSICAL_PATCHMATCH)
        import cv2

        flag = cv2.INPAINT_TELEA if self.method == "telea" else cv2.INPAINT_NS
        bgr = np.ascontiguousarray(image[..., ::-1])
        out = cv2.inpaint(bgr, hole.astype(np.uint8) * 255, float(self.radius), flag)
        return out[..., ::-1]

    def _network(self, images: Sequence[np.ndarray], holes: Sequence[np.ndarray]) -> list[np.ndarray]:
        # Whole-image strategies batch same-size images; crops batch same-size crops of all images.
        groups: dict[tuple[int, int], list[int]] = {}
        cropped: list[int] = []
        for i, img in enumerate(images):
            strategy = self.strategy_for(img.shape[:2])
            if strategy in ("crops", "sharp"):
                cropped.append(i)
            else:
                groups.setdefault(img.shape[:2], []).append(i)
        out: list[np.ndarray | None] = [None] * len(images)
        for idx in groups.values():
            fills = self._network_batch([images[i] for i in idx], [holes[i] for i in idx])
            for i, f in zip(idx, fills):
                out[i] = f
        if cropped:
            fills = self._network_crops([images[i] for i in cropped], [holes[i] for i in cropped])
            for i, f in zip(cropped, fills):
                out[i] = f
        return out  # type: ignore[return-value]

    def _network_batch(self, images: Sequence[np.ndarray], holes: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch
        import torch.nn.functional as F

        h, w = images[0].shape[:2]
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
        valid = torch.from_numpy(~np.stack(holes)).unsqueeze(1).float()
        resize = self.strategy_for((h, w)) == "resize"
        if resize:
            size = (self.resolution, self.resolution)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
            valid = (F.interpolate(valid, size=size, mode="area") >= 0.999).float()
        y = self._fill(x, valid)
        if resize:
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        return [_to_uint8(t) for t in y]

    def _network_crops(self, images: Sequence[np.ndarray], holes: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch
        import torch.nn.functional as F

        fills = [img.copy() for img in images]
        jobs: dict[tuple[int, int], list[tuple[int, Box, torch.Tensor, torch.Tensor]]] = {}
        for i, (img, hole) in enumerate(zip(images, holes)):
            for box in crop_boxes(hole, self.resolution):
                y0, x0, y1, x1 = box
                x = torch.from_numpy(np.ascontiguousarray(img[y0:y1, x0:x1])).permute(2, 0, 1)[None].float().div_(255.0)
                valid = torch.from_numpy(~hole[y0:y1, x0:x1])[None, None].float()
                scale = self._crop_scale(hole[y0:y1, x0:x1], sharp=self.strategy_for(img.shape[:2]) == "sharp")
                if scale < 1:
                    size = (max(1, round((y1 - y0) * scale)), max(1, round((x1 - x0) * scale)))
                    # Area averaging for the image and the mask alike: a pixel of the small crop is
                    # known only if all its sources are, and then it averages known pixels only.
                    x = F.interpolate(x, size=size, mode="area")
                    valid = (F.interpolate(valid, size=size, mode="area") >= 0.999).float()
                n = self.ensemble_for(img.shape[:2])
                jobs.setdefault((x.shape[-2], x.shape[-1], n), []).append((i, box, x, valid, scale))
        done, total = 0, sum(len(v) for v in jobs.values())
        for (_, _, n), items in jobs.items():
            for k in range(0, len(items), CROP_BATCH):
                chunk = items[k:k + CROP_BATCH]
                y = self._fill(torch.cat([c[2] for c in chunk]), torch.cat([c[3] for c in chunk]), n)
                for (i, (y0, x0, y1, x1), _, _, scale), yi in zip(chunk, y):
                    if yi.shape[-2:] != (y1 - y0, x1 - x0):
                        yi = F.interpolate(yi[None], size=(y1 - y0, x1 - x0), mode="bilinear", align_corners=False)[0]
                    if self.strategy_for(images[i].shape[:2]) == "sharp":
                        # in place: a 12-megapixel crop's float fill is 144 MB, held once
                        coarse = yi.clamp_(0, 1).mul_(255.0).permute(1, 2, 0).numpy()
                        within = None
                        if self.progress is not None:
                            report, start = self.progress, done
                            within = lambda f, report=report, start=start: report((start + f) / total)  # noqa: E731
                        fills[i][y0:y1, x0:x1] = self._texture(
                            images[i][y0:y1, x0:x1], holes[i][y0:y1, x0:x1], coarse, scale, within)
                    else:
                        fills[i][y0:y1, x0:x1] = _to_uint8(yi)
                    done += 1
                    if self.progress is not None:
                        self.progress(done / total)
        return fills

    def _texture(self, image: np.ndarray, hole: np.ndarray, coarse: np.ndarray, scale: float,
                 progress: Callable[[float], None] | None = None) -> np.ndarray:
        """The ``sharp`` stage on one crop: ``coarse`` (the network's fill at full size, float in
        [0, 255]) given the photo's full-resolution texture; ``progress`` gets the fraction done."""
        if self.texture_for() == "patchmatch":
            from imgsynth.models.patchmatch import patchmatch_inpaint

            filled = patchmatch_inpaint(image, hole, coarse, seed=self.seed, progress=progress, **SHARP_PATCHMATCH)
            gain = SHARP_PATCHMATCH_GAIN if self.gain is None else self.gain
            return scale_detail(filled, hole, gain, SHARP_DETAIL_SIGMA)
        from imgsynth.models.residual_aggregation import aggregate_residuals, cell_for_scale

        gain = SHARP_GAIN if self.gain is None else self.gain
        return aggregate_residuals(image, hole, coarse, cell=cell_for_scale(scale), gain=gain, seed=self.seed)

    def _crop_scale(self, hole: np.ndarray, sharp: bool) -> float:
        """How far a crop with ``hole`` is scaled down for the network: to the resolution
        (``crops``), or only until its thickest hole is within ``reach`` (``sharp``)."""
        side = max(hole.shape)
        scale = min(1.0, self.resolution / side)
        if not sharp:
            return scale
        import cv2

        reach = float(cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 5).max())
        cap = math.sqrt(SHARP_MAX_PIXELS / hole.size)
        return min(1.0, cap, max(scale, self.reach / max(reach, 1.0)))

    def _fill(self, x: torch.Tensor, valid: torch.Tensor, ensemble: int | None = None) -> torch.Tensor:
        """:meth:`_forward` averaged over the first ``ensemble`` (default ``self.ensemble``) flips /
        transposes (:data:`_TRANSFORMS`)."""
        n = self.ensemble if ensemble is None else ensemble
        if n == 1:
            return self._forward(x, valid)

        total = None
        for tf in _TRANSFORMS[:n]:
            y = _unview(self._forward(_view(x, *tf), _view(valid, *tf)), *tf)
            total = y if total is None else total + y
        return total / n

    def _forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The network on (N, 3, h, w) pixels in [0, 1] with (N, 1, h, w) validity (1 = known),
        reflect-padded to its multiple and cropped back; returns (N, 3, h, w) float on the CPU."""
        import torch
        import torch.nn.functional as F

        net = self.method
        param = next(net.parameters())
        device = self.device or param.device
        dtype = self.dtype or param.dtype
        h, w = x.shape[-2:]
        multiple = 2 ** int(getattr(net, "layer_size", 0))
        ph, pw = (-h) % multiple, (-w) % multiple
        if ph or pw:
            # reflection needs the pad to be shorter than the side; tiny images replicate instead
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if (ph < h and pw < w) else "replicate")
            valid = F.pad(valid, (0, pw, 0, ph), value=1.0)
        if self.normalization == "imagenet":
            mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        else:
            mean, std = torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.5)
        mask3 = valid.expand(-1, 3, -1, -1).contiguous()
        xn = (x - mean) / std
        with torch.inference_mode():
            y, _ = net((xn * mask3).to(device, dtype), mask3.to(device, dtype))
        y = y.float().cpu() * std + mean
        return y[:, :, :h, :w]


def _view(t: torch.Tensor, transpose: bool, rows: bool, cols: bool) -> torch.Tensor:
    """One self-ensemble member's view of (..., H, W): transposed, then flipped."""
    t = t.transpose(-1, -2) if transpose else t
    dims = [d for d, flip in ((-2, rows), (-1, cols)) if flip]
    return t.flip(dims) if dims else t


def _unview(t: torch.Tensor, transpose: bool, rows: bool, cols: bool) -> torch.Tensor:
    """The inverse of :func:`_view`: flipped back (flips are their own inverse), then transposed."""
    t = _view(t, False, rows, cols)
    return t.transpose(-1, -2) if transpose else t


def _to_uint8(y: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    import torch

    return (y.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
