"""PatchMatch image completion: fill a hole by copying patches from the rest of the image.

Paper: C. Barnes, E. Shechtman, A. Finkelstein, D. B. Goldman, "PatchMatch: A Randomized
Correspondence Algorithm for Structural Image Editing", SIGGRAPH 2009 (the nearest-neighbour field
search, Sec. 3), used inside the completion scheme of Y. Wexler, E. Shechtman, M. Irani,
"Space-Time Completion of Video", TPAMI 2007 (the EM-like alternation of patch search and
weighted voting over a coarse-to-fine pyramid).
Official code: no official repository; the authors distributed research code separately. None of
it is used here: this file is written from the papers alone (imgsynth's MIT licence; no weights).

This is not a neural network and is not registered in the model registry; it is a classical
baseline for the ``inpaint`` task that needs no weights.

Deviations from the original:
- Propagation is vectorised over all target patches at once. Instead of the sequential scan-order
  sweep of Barnes et al. (Sec. 3.2), each iteration tries the neighbours at distances 8, 4, 2, 1
  (jump-flooding style whole-array shifts), from above/left on even iterations and from
  below/right on odd ones, so good offsets still cross a hole within one iteration.
- The coarsest level starts from a smooth onion-peel fill of the hole (each ring is the mean of its
  already-known 8-neighbours) and a random NNF; Wexler et al. leave the initial guess open.
- The patch distance weighs known pixels 1 and already-filled hole pixels 0.1 (pixels outside the
  image 0), so the known surroundings steer the search rather than a smooth early fill.
- The pyramid is halved until no hole pixel lies more than two patch widths from the known region;
  thin holes are filled at full resolution only.
- Voting weights are Wexler's similarity term ``exp(-d / (2 sigma^2))`` with ``sigma^2`` the 75th
  percentile of the patch distances, times Wexler's spatial confidence ``1.3^-distance`` to the
  known region averaged over the patch, times the fraction of the patch lying inside the image.
- Coarser levels run more EM steps (``em_steps + 2 * level``): they are cheap and fix the layout.
- Source patches are quantised to uint8 for the distance computation (exact at the finest level,
  at most 0.5 grey levels off at coarser ones) to keep the candidate gathers memory-light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from imgsynth.errors import InputError

__all__ = ["InpaintInputError", "inpaint_patchmatch"]

# Barnes et al. Sec. 3.2: the random-search radius shrinks by this ratio per candidate.
_ALPHA = 0.5
# Jump-flooding propagation distances, largest first (Rong & Tan 2006 order).
_JUMPS = (8, 4, 2, 1)
# Wexler et al.: the confidence of a hole pixel decays as gamma^-distance from the known region.
_GAMMA = 1.3
# Weight of already-filled hole pixels in the patch distance (known pixels weigh 1).
_FILLED_WEIGHT = 0.1
# Above this fraction of targets with a candidate, score all targets rather than gather a subset.
_DENSE_FRACTION = 0.5


class InpaintInputError(InputError, ValueError):
    """The image/hole pair cannot be inpainted (wrong shapes, nothing to copy from, ...)."""


@dataclass
class _Level:
    """One pyramid level: the image (float32, hole content undefined) and its known-pixel mask."""

    image: np.ndarray  # (h, w, C) float32
    known: np.ndarray  # (h, w) bool


def _box_sum(mask: np.ndarray, radius: int) -> np.ndarray:
    """Sum of ``mask`` over the (2r+1)^2 window centred at every pixel, zero outside the image."""
    h, w = mask.shape
    padded = np.zeros((h + 2 * radius + 1, w + 2 * radius + 1), np.int32)
    padded[radius + 1 : radius + 1 + h, radius + 1 : radius + 1 + w] = mask
    integral = padded.cumsum(0).cumsum(1)
    size = 2 * radius + 1
    return (
        integral[size:, size:]
        - integral[:-size, size:]
        - integral[size:, :-size]
        + integral[:-size, :-size]
    )


def _downsample(level: _Level) -> _Level:
    """Halve a level with a 2x2 box filter that averages known pixels only.

    A coarse pixel is known only when all four children are, so every coarse source patch is made
    of genuinely known content.
    """
    image, known = level.image, level.known
    h, w = known.shape
    ph, pw = h % 2, w % 2
    if ph or pw:  # replicate the last row/column so odd sizes map exactly onto 2x2 blocks
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge")
        known = np.pad(known, ((0, ph), (0, pw)), mode="edge")
    hc, wc = known.shape[0] // 2, known.shape[1] // 2
    k = known.reshape(hc, 2, wc, 2).astype(np.float32)
    summed = (image.reshape(hc, 2, wc, 2, -1) * k[..., None]).sum((1, 3))
    count = k.sum((1, 3))
    coarse = summed / np.maximum(count, 1.0)[..., None]
    return _Level(coarse.astype(np.float32), count == 4.0)


def _onion_fill(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill the hole ring by ring with the mean of already-filled 8-neighbours (smooth start)."""
    image = np.where(known[..., None], image, 0.0).astype(np.float32)
    filled = known.copy()
    h, w = known.shape
    while not filled.all():
        pad_img = np.pad(image * filled[..., None], ((1, 1), (1, 1), (0, 0)))
        pad_msk = np.pad(filled.astype(np.float32), 1)
        total = np.zeros_like(image)
        count = np.zeros((h, w), np.float32)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                total += pad_img[dy : dy + h, dx : dx + w]
                count += pad_msk[dy : dy + h, dx : dx + w]
        front = ~filled & (count > 0)
        image[front] = total[front] / count[front][:, None]
        filled |= front
    return image


class _LevelSolver:
    """NNF search and voting for one pyramid level.

    Pixels are addressed by flat indices into the image padded by ``r`` on every side, so a patch
    is ``centre + offsets`` whether or not it touches the border.
    """

    def __init__(self, level: _Level, patch_size: int, rng: np.random.Generator) -> None:
        self.rng = rng
        self.r = r = patch_size // 2
        self.h, self.w = h, w = level.known.shape
        self.channels = level.image.shape[2]
        self.wp = wp = w + 2 * r
        dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
        self.offsets = (dy * wp + dx).ravel()  # (P,)

        # Source centres: the whole patch lies inside the image and holds no hole pixel.
        hole = ~level.known
        src = _box_sum(hole, r) == 0
        src[:r], src[h - r :], src[:, :r], src[:, w - r :] = False, False, False, False
        self.src_id = np.full((h, w), -1, np.int64)
        sy, sx = np.nonzero(src)
        self.src_id[sy, sx] = np.arange(sy.size)
        self.src_yx = np.stack([sy, sx], 1)
        self.num_sources = sy.size

        # Target centres: every patch that overlaps the hole (centres may sit near the border).
        tgt = _box_sum(hole, r) > 0
        ty, tx = np.nonzero(tgt)
        self.tgt_yx = np.stack([ty, tx], 1)
        self.tgt_id = np.full((h, w), -1, np.int64)
        self.tgt_id[ty, tx] = np.arange(ty.size)
        self.tgt_flat = (ty + r) * wp + (tx + r)

        inside = np.pad(np.ones((h, w), np.float32), r).ravel()
        pix_in = inside[self.tgt_flat[:, None] + self.offsets]  # (N, P)
        self.inside_frac = pix_in.mean(1)
        # Distance weights per patch value: 0 outside the image, 1 on known pixels and
        # _FILLED_WEIGHT on pixels filled by an earlier vote, so the known surroundings lead
        # the search instead of the (initially smooth) fill locking onto flat source patches.
        trust = np.where(level.known, 1.0, _FILLED_WEIGHT).astype(np.float32)
        pix_w = np.pad(trust, r).ravel()[self.tgt_flat[:, None] + self.offsets]
        self.weights = np.repeat(pix_w, self.channels, axis=1)
        self.weight_sum = pix_w.sum(1) * self.channels
        # Wexler et al.'s spatial confidence gamma^-dist: content next to the known region
        # is trusted more than content deep inside the hole. Kept in the log domain (float64
        # later) so patches deep inside a large hole do not all underflow to the same weight.
        import cv2  # lazy: the model registry imports this module on discovery

        depth = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_C, 3).astype(np.float64)
        log_conf = np.pad(-np.log(_GAMMA) * depth, r, constant_values=-np.inf).ravel()
        patch_log_conf = log_conf[self.tgt_flat[:, None] + self.offsets]  # (N, P)
        top = patch_log_conf.max(1)
        # log of the mean confidence over the patch's in-image pixels (a stable log-sum-exp)
        self.patch_log_conf = top + np.log(
            np.exp(patch_log_conf - top[:, None]).sum(1) / pix_in.sum(1)
        )
        self.source_image = self._pad_flat(level.image)
        self.source_patches = self._patches(
            self._pad_flat(np.clip(np.rint(level.image), 0, 255).astype(np.uint8)),
            (sy + r) * wp + (sx + r),
        )
        self.radii: list[float] = []
        radius = float(max(h, w))
        while radius >= 1.0:
            self.radii.append(radius)
            radius *= _ALPHA

    def _pad_flat(self, image: np.ndarray) -> np.ndarray:
        r = self.r
        return np.pad(image, ((r, r), (r, r), (0, 0))).reshape(-1, image.shape[2])

    def _patches(self, flat: np.ndarray, centres: np.ndarray) -> np.ndarray:
        """(len(centres), P*C) patch vectors gathered from a padded flat image."""
        return flat[centres[:, None] + self.offsets].reshape(
            centres.size, self.offsets.size * flat.shape[1]
        )

    # --- nearest-neighbour field -------------------------------------------------------------

    def random_nnf(self) -> np.ndarray:
        """Uniformly random source ids (Barnes et al. Sec. 3.1 initialisation)."""
        return self.rng.integers(0, self.num_sources, self.tgt_yx.shape[0])

    def upsample_nnf(self, coarse: _LevelSolver, coarse_nnf: np.ndarray) -> np.ndarray:
        """Fine NNF from a coarse one: double the matched offset, keep the sub-pixel phase."""
        ty, tx = self.tgt_yx[:, 0], self.tgt_yx[:, 1]
        cid = coarse.tgt_id[ty // 2, tx // 2]
        nnf = self.random_nnf()
        has = cid >= 0
        csrc = coarse.src_yx[coarse_nnf[cid[has]]]
        sy = 2 * csrc[:, 0] + ty[has] % 2
        sx = 2 * csrc[:, 1] + tx[has] % 2
        ok = (sy < self.h) & (sx < self.w)
        ids = np.full(sy.shape, -1, np.int64)
        ids[ok] = self.src_id[sy[ok], sx[ok]]
        keep = ids >= 0
        idx = np.nonzero(has)[0][keep]
        nnf[idx] = ids[keep]
        return nnf

    def set_target(self, image: np.ndarray) -> None:
        """Take the current estimate of the filled image as the target patches."""
        self.target_patches = self._patches(self._pad_flat(image), self.tgt_flat)

    def distance(self, rows: np.ndarray | None, src: np.ndarray) -> np.ndarray:
        """Weighted SSD between target patches ``rows`` (None: all) and source patches ``src``."""
        diff = self.source_patches[src].astype(np.float32)
        if rows is None:
            diff -= self.target_patches
            diff *= diff
            return np.einsum("ij,ij->i", diff, self.weights)
        diff -= self.target_patches[rows]
        diff *= diff
        return np.einsum("ij,ij->i", diff, self.weights[rows])

    def _try(
        self, nnf: np.ndarray, dist: np.ndarray, rows: np.ndarray, cy: np.ndarray, cx: np.ndarray
    ) -> None:
        """Replace ``nnf[rows]`` by the candidate source centres (cy, cx) where they are closer."""
        ok = (cy >= 0) & (cy < self.h) & (cx >= 0) & (cx < self.w)
        rows, cy, cx = rows[ok], cy[ok], cx[ok]
        cand = self.src_id[cy, cx]
        valid = cand >= 0
        rows, cand = rows[valid], cand[valid]
        if rows.size == 0:
            return
        if rows.size > _DENSE_FRACTION * nnf.size:
            # Scoring every target (untried ones against their current match) skips gathering
            # the target and weight rows, which costs more than the wasted work here.
            full = nnf.copy()
            full[rows] = cand
            d = self.distance(None, full)
            better = d < dist
            nnf[better] = full[better]
            dist[better] = d[better]
            return
        d = self.distance(rows, cand)
        better = d < dist[rows]
        nnf[rows[better]] = cand[better]
        dist[rows[better]] = d[better]

    def propagate(self, nnf: np.ndarray, dist: np.ndarray, iteration: int) -> None:
        """Barnes et al. Sec. 3.2 propagation, vectorised as jump-flooding shifts."""
        sign = 1 if iteration % 2 == 0 else -1  # even: neighbours above/left, odd: below/right
        ty, tx = self.tgt_yx[:, 0], self.tgt_yx[:, 1]
        for jump in _JUMPS:
            for ey, ex in ((jump * sign, 0), (0, jump * sign)):
                ny, nx = ty - ey, tx - ex
                inb = (ny >= 0) & (ny < self.h) & (nx >= 0) & (nx < self.w)
                rows = np.nonzero(inb)[0]
                nb = self.tgt_id[ny[inb], nx[inb]]
                has = nb >= 0
                rows, nb = rows[has], nb[has]
                src = self.src_yx[nnf[nb]]
                self._try(nnf, dist, rows, src[:, 0] + ey, src[:, 1] + ex)

    def random_search(self, nnf: np.ndarray, dist: np.ndarray) -> None:
        """Barnes et al. Sec. 3.2 random search: u_i = v0 + w alpha^i R_i, R_i in [-1, 1]^2."""
        rows = np.arange(nnf.size)
        for radius in self.radii:
            src = self.src_yx[nnf]
            jitter = np.rint(self.rng.uniform(-radius, radius, (nnf.size, 2))).astype(np.int64)
            self._try(nnf, dist, rows, src[:, 0] + jitter[:, 0], src[:, 1] + jitter[:, 1])

    # --- voting -------------------------------------------------------------------------------

    def vote(self, nnf: np.ndarray, dist: np.ndarray) -> np.ndarray:
        """Wexler et al.'s update step: every hole pixel becomes the weighted mean of what the
        overlapping source patches put there. Returns the (h, w, C) voted image (valid at hole
        pixels)."""
        per_value = dist / self.weight_sum
        sigma2 = max(float(np.percentile(per_value, 75)), 1e-3)
        log_weight = (
            -(per_value - per_value.min()) / (2.0 * sigma2)
            + np.log(self.inside_frac)
            + self.patch_log_conf
        )
        weight = np.exp(log_weight.astype(np.float64))
        r, wp = self.r, self.wp
        src_flat = (self.src_yx[nnf, 0] + r) * wp + self.src_yx[nnf, 1] + r
        acc = np.zeros(self.source_image.shape, np.float64)
        total = np.zeros(acc.shape[0], np.float64)
        wcol = weight[:, None]
        # One pass per in-patch offset: within a pass the destination pixels are all distinct,
        # so plain fancy-index accumulation is exact (no np.add.at needed).
        for off in self.offsets:
            dst = self.tgt_flat + off
            acc[dst] += wcol * self.source_image[src_flat + off]
            total[dst] += weight
        out = (acc / np.maximum(total, np.finfo(np.float64).tiny)[:, None]).astype(np.float32)
        return out.reshape(self.h + 2 * r, self.wp, -1)[r : r + self.h, r : r + self.w]


def _num_levels(hole: np.ndarray, patch_size: int) -> int:
    """How many times to halve: until no hole pixel is more than two patch widths from the known
    region (thin holes are best filled at full resolution, where the nearby context is sharp),
    while the image still holds complete source patches."""
    import cv2  # lazy: the model registry imports this module on discovery

    r = patch_size // 2
    level = _Level(np.zeros(hole.shape + (1,), np.float32), ~hole)
    count = 0
    while True:
        depth = cv2.distanceTransform((~level.known).astype(np.uint8), cv2.DIST_C, 3).max()
        if depth <= 2 * (patch_size - 1):
            return count
        coarse = _downsample(level)
        if min(coarse.known.shape) < 3 * patch_size:
            return count
        inner = _box_sum(~coarse.known, r) == 0
        if not inner[r:-r, r:-r].any():
            return count
        level, count = coarse, count + 1


def inpaint_patchmatch(
    image: np.ndarray,
    hole: np.ndarray,
    *,
    patch_size: int = 7,
    iterations: int = 5,
    em_steps: int = 3,
    pyramid_levels: int | None = None,
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """Fill ``hole`` in ``image`` with patches copied from the known part of the image.

    Coarse-to-fine: at every pyramid level a nearest-neighbour field maps each patch overlapping
    the hole to a completely known source patch (PatchMatch random init, propagation and random
    search, Barnes et al. 2009), then every hole pixel is re-estimated by voting (Wexler et al.
    2007); several such search/vote rounds run per level and the field is upsampled to
    initialise the next level.

    Args:
        image: (H, W, 3) uint8 image (any channel count works).
        hole: (H, W) bool, True where pixels are to be filled.
        patch_size: odd patch side in pixels (>= 3).
        iterations: PatchMatch iterations (propagation + random search) per EM step.
        em_steps: search/vote rounds at full resolution; the level halved ``k`` times runs
            ``em_steps + 2 * k`` (coarse rounds are cheap and settle the layout).
        pyramid_levels: number of levels including the full resolution; None picks it from the
            hole thickness and image size.
        seed: seed of the random initialisation and search; same seed, same output.
        progress: called with the completed fraction in [0, 1].

    Returns:
        (H, W, 3) uint8 image; pixels outside ``hole`` are exactly those of ``image``.

    Raises:
        InpaintInputError (a ValueError): bad shapes or options, an image smaller than a patch, or
        no complete patch of known pixels to copy from.
    """
    image = np.asarray(image)
    hole = np.asarray(hole)
    if image.ndim != 3 or image.dtype != np.uint8:
        raise InpaintInputError(
            f"image must be an (H, W, 3) uint8 array, got {image.dtype} of shape {image.shape}"
        )
    if hole.shape != image.shape[:2]:
        raise InpaintInputError(
            f"hole mask shape {hole.shape} does not match the image's {image.shape[:2]}"
        )
    if patch_size < 3 or patch_size % 2 == 0:
        raise InpaintInputError(f"patch_size must be an odd integer >= 3, got {patch_size}")
    if iterations < 1 or em_steps < 1:
        raise InpaintInputError("iterations and em_steps must be >= 1")
    if pyramid_levels is not None and pyramid_levels < 1:
        raise InpaintInputError(f"pyramid_levels must be >= 1, got {pyramid_levels}")
    hole = hole.astype(bool)
    if not hole.any():
        if progress is not None:
            progress(1.0)
        return image.copy()
    if hole.all():
        raise InpaintInputError("the hole covers the whole image: there is nothing to copy from")
    h, w = hole.shape
    if min(h, w) < patch_size:
        raise InpaintInputError(
            f"image {h}x{w} is smaller than one {patch_size}x{patch_size} patch; "
            "use a smaller patch_size"
        )

    levels = [_Level(image.astype(np.float32), ~hole)]
    count = _num_levels(hole, patch_size) + 1 if pyramid_levels is None else pyramid_levels
    for _ in range(count - 1):
        coarse = _downsample(levels[-1])
        if min(coarse.known.shape) < patch_size:
            break
        levels.append(coarse)

    rng = np.random.default_rng(seed)
    work = sum(lv.known.size * (em_steps + 2 * i) for i, lv in enumerate(levels))
    done = 0.0
    prev: _LevelSolver | None = None
    prev_nnf = np.zeros(0, np.int64)
    estimate = np.zeros(0, np.float32)
    for index in range(len(levels) - 1, -1, -1):
        level = levels[index]
        solver = _LevelSolver(level, patch_size, rng)
        if solver.num_sources == 0:
            if index == 0:
                raise InpaintInputError(
                    f"no complete {patch_size}x{patch_size} patch of known pixels to copy from; "
                    "shrink the hole or use a smaller patch_size"
                )
            prev = None  # too coarse for this hole: start afresh at the next finer level
            continue
        mask = level.known[..., None]
        if prev is None:
            estimate = _onion_fill(level.image, level.known)
            nnf = solver.random_nnf()
        else:
            up = estimate.repeat(2, 0).repeat(2, 1)[: level.known.shape[0], : level.known.shape[1]]
            estimate = np.where(mask, level.image, up)
            nnf = solver.upsample_nnf(prev, prev_nnf)
            # Vote once with the upsampled field so the first search sees sharp content
            # rather than the blocky upsampled colours.
            solver.set_target(estimate)
            dist = solver.distance(None, nnf)
            estimate = np.where(mask, level.image, solver.vote(nnf, dist))
        # Coarse rounds are cheap and settle the global layout, so they get more of them.
        for _ in range(em_steps + 2 * index):
            solver.set_target(estimate)
            dist = solver.distance(None, nnf)
            for it in range(iterations):
                solver.propagate(nnf, dist, it)
                solver.random_search(nnf, dist)
            estimate = np.where(mask, level.image, solver.vote(nnf, dist))
            done += level.known.size
            if progress is not None:
                progress(min(done / work, 1.0))
        prev, prev_nnf = solver, nnf

    out = np.clip(np.rint(estimate), 0, 255).astype(np.uint8)
    out[~hole] = image[~hole]
    if progress is not None:
        progress(1.0)
    return out
