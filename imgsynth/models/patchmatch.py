"""PatchMatch image completion: fill a hole by copying patches from the rest of the image.

Paper: C. Barnes, E. Shechtman, A. Finkelstein, D. B. Goldman, "PatchMatch: A Randomized
Correspondence Algorithm for Structural Image Editing", SIGGRAPH 2009 (the nearest-neighbour field
search, Sec. 3), used inside the completion scheme of Y. Wexler, E. Shechtman, M. Irani,
"Space-Time Completion of Video", TPAMI 2007 (the EM-like alternation of patch search and
weighted voting over a coarse-to-fine pyramid). The optional guide follows C. Yang, X. Lu, Z. Lin,
E. Shechtman, O. Wang, H. Li, "High-Resolution Image Inpainting using Multi-Scale Neural Patch
Synthesis", CVPR 2017: a coarse content prediction steers the synthesis, the known region supplies
the texture.
Official code: no official repository; the authors distributed research code separately. None of
it is used here: this file is written from the papers alone (imgsynth's MIT licence; no weights).

This is not a neural network and is not registered in the model registry; it is a classical
baseline for the ``inpaint`` task that needs no weights.

Two interchangeable backends run the same algorithm: compiled loops through numba when it is
installed (``pip install 'imgsynth[fast]'``), and NumPy code vectorised over chunks of target
patches otherwise. Neither ever builds a stack of patches: a patch distance reads the ``P`` pixels
of the two patches where they lie, so memory is a few bytes per image pixel plus a few dozen per
hole pixel, and time is linear in the number of hole pixels at each pyramid level.

Deviations from the original:
- Every per-pixel array of a level except the image, its known mask and one int32 index map is
  held only for the pixels whose patch overlaps the hole (the "targets"); sources are read from the
  image in place. Known pixels never change, so source patches need no copy.
- The random search covers the whole image only at the coarsest level; finer levels search a
  window of ``4 * patch_size`` pixels around the match inherited from the coarser level (the
  coarse-to-fine scheme of Wexler et al. sets the layout; the fine levels only refine it). This is
  what makes the cost per target constant.
- The numba backend propagates in scan order (Barnes et al. Sec. 3.2, alternating direction per
  iteration). The NumPy backend vectorises propagation as jump-flooding shifts over all targets at
  once (distances 8, 4, 2, 1 from above/left on even iterations, below/right on odd ones), so good
  offsets still cross a hole within one iteration. The two backends give different (equally
  valid) fills for the same seed; each is deterministic.
- The coarsest level starts from a smooth onion-peel fill of the hole (each ring is the mean of its
  already-known 8-neighbours), or from the guide when one is given, and a random NNF.
- The patch distance weighs known pixels 1 and hole pixels 0.1 (pixels outside the image 0), so the
  known surroundings steer the search rather than a smooth early fill. With a guide, hole pixels
  are compared with ``(1 - g) * estimate + g * guide`` and weigh ``0.1 + 0.9 g``.
- The pyramid is halved until no hole pixel lies more than half a patch from the known region
  (while the coarse image keeps complete source patches). Coarser levels run more EM steps
  (``em_steps + 2 * level``): they are cheap and fix the layout.
- Voting weights are Wexler's similarity term ``exp(-d / (2 sigma^2))`` with ``sigma^2`` the 75th
  percentile of the per-value patch distances, times the fraction of the patch inside the image,
  times Wexler's spatial confidence ``1.3^-distance`` to the known region taken at the patch centre
  (not averaged over the patch); it is applied relative to the voted pixel's own confidence,
  which the per-pixel normalisation cancels, so deep holes never underflow.
- At full resolution each hole pixel takes the value of the heaviest patch covering it (the mode
  of the votes) instead of their weighted mean: the mean of 49 overlapping, slightly misaligned
  patches blurs the texture (on four 1024-px photos the Laplacian-variance ratio of the fill rose from
  0.07-0.28 to 0.15-0.60, PSNR within 0.4 dB). Coarser levels keep the mean.
- Level images are uint8 (the 2x2 known-pixel average rounded), at most 0.5 grey levels off.
- Optional texture channels (``texture_weight``) follow Y. Newson, A. Almansa, M. Fradet,
  Y. Gousseau, P. Perez, "Video Inpainting of Complex Scenes", SIAM J. Imaging Sciences 2014:
  the mean absolute luminance differences over a small box, computed once at full resolution and
  halved with the colours, are compared like colours. Inside the hole they start at a smooth
  (push-pull) interpolation of the surroundings' features, which is also what a guide's hole
  pixels carry; voting then updates them like the colours.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from imgsynth.errors import InputError

__all__ = ["InpaintInputError", "inpaint_patchmatch", "numba_available", "patchmatch_inpaint"]

# Barnes et al. Sec. 3.2: the random-search radius shrinks by this ratio per candidate.
_ALPHA = 0.5
# Jump-flooding propagation distances of the NumPy backend, largest first (Rong & Tan 2006 order).
_JUMPS = (8, 4, 2, 1)
# Wexler et al.: the confidence of a hole pixel decays as gamma^-distance from the known region.
_GAMMA = 1.3
# Weight of hole pixels (the current estimate) in the patch distance; known pixels weigh 1.
_FILLED_WEIGHT = 0.1
# Random-search window of the levels below the coarsest, in patch sides.
_FINE_WINDOW = 4
# Rows per band of the parallel search (fixed, so results do not depend on the thread count).
_BAND_ROWS = 16
# One caller at a time in numba's thread pool; a concurrent caller runs the serial kernels.
_PARALLEL_LOCK = threading.Lock()
# Levels with at least this many targets run the parallel kernels, smaller ones the serial twins.
_PARALLEL_ABOVE = 50_000
# Targets per vectorised step of the NumPy backend (bounds its temporaries to a few MB).
_CHUNK = 1 << 13

BACKENDS = ("auto", "numba", "numpy")


class InpaintInputError(InputError, ValueError):
    """The image/hole pair cannot be inpainted (wrong shapes, nothing to copy from, ...)."""


# --- numba kernels ---------------------------------------------------------------------------------
#
# Written as plain Python over scalars so that numba compiles them to tight loops; never called
# uncompiled (the NumPy backend below has its own vectorised versions).
#
# A level is: ``img`` (h, w, C) uint8 (hole content unused), ``idmap`` (h, w) int32 giving each
# target pixel its index (-1 elsewhere), per-target ``ty, tx`` (int32), ``tval`` (N, C) float32 the
# value a target patch is compared with at that pixel and ``wpix`` (N,) float32 its weight, and
# ``src_ok`` (h, w) uint8: 1 where a patch centred there lies inside the image and holds no hole
# pixel. Targets are every pixel whose patch overlaps the hole, so every hole pixel is one, and a
# patch pixel that is not a target is a known pixel (value ``img``, weight 1).
#
# Random numbers come from a counter-based hash of (seed, target, draw), not from a stateful
# generator, so the parallel loops give the same result whatever the thread count or schedule.

_M1 = 0x9E3779B97F4A7C15
_M2 = 0xBF58476D1CE4E5B9
_M3 = 0x94D049BB133111EB


def _k_hash(seed, k, draw):  # pragma: no cover - compiled
    """SplitMix64 finaliser of (seed, k, draw): a uniform uint64 (Steele et al. 2014)."""
    x = np.uint64(seed) * np.uint64(_M1) + np.uint64(k) * np.uint64(_M2) + np.uint64(draw) * np.uint64(_M3)
    x ^= x >> np.uint64(30)
    x *= np.uint64(_M2)
    x ^= x >> np.uint64(27)
    x *= np.uint64(_M3)
    x ^= x >> np.uint64(31)
    return x


def _k_randint(seed, k, draw, lo, hi):  # pragma: no cover - compiled
    """Uniform integer in [lo, hi] (inclusive)."""
    return lo + np.int64(_k_hash(seed, k, draw) % np.uint64(hi - lo + 1))


def _k_patch_dist(img, idmap, tval, wpix, y, x, sy, sx, r, limit):  # pragma: no cover - compiled
    """Weighted SSD between the target patch at (y, x) and the source patch at (sy, sx); stops
    early once a row pushes it past ``limit`` (the current best: the candidate is lost anyway)."""
    h, w, c = img.shape
    d = 0.0
    for dy in range(-r, r + 1):
        yy = y + dy
        if yy < 0 or yy >= h:
            continue
        for dx in range(-r, r + 1):
            xx = x + dx
            if xx < 0 or xx >= w:
                continue
            i = idmap[yy, xx]
            if i >= 0:
                wt = wpix[i]
                for ch in range(c):
                    e = np.float32(img[sy + dy, sx + dx, ch]) - tval[i, ch]
                    d += wt * e * e
            else:
                for ch in range(c):
                    e = np.float32(img[sy + dy, sx + dx, ch]) - np.float32(img[yy, xx, ch])
                    d += e * e
        if d >= limit:
            return d
    return d


def _k_all_dist(img, idmap, tval, wpix, ty, tx, nnf, dist, r):  # pragma: no cover - compiled
    for k in prange(ty.size):
        dist[k] = _k_patch_dist(img, idmap, tval, wpix, ty[k], tx[k], nnf[k, 0], nnf[k, 1], r, np.inf)


def _k_random_init(src_ok, nnf, rows, r, seed):  # pragma: no cover - compiled
    """Uniformly random valid source centres for ``rows`` (Barnes et al. Sec. 3.1)."""
    h, w = src_ok.shape
    for q in prange(rows.size):
        k = rows[q]
        for draw in range(100000):
            cy = _k_randint(seed, k, 2 * draw, r, h - 1 - r)
            cx = _k_randint(seed, k, 2 * draw + 1, r, w - 1 - r)
            if src_ok[cy, cx]:
                nnf[k, 0] = cy
                nnf[k, 1] = cx
                break


def _k_search_band(img, idmap, tval, wpix, src_ok, ty, tx, nnf, dist, r, start, stop, step, radius,
                   seed):  # pragma: no cover - compiled
    """One PatchMatch sweep over targets [start, stop) in scan order (``step`` 1) or reverse scan
    order (-1): propagation from the neighbour above / left (below / right), then random search
    u_i = v0 + w alpha^i R_i (Barnes et al. Sec. 3.2)."""
    h, w = src_ok.shape
    k = start if step == 1 else stop - 1
    for _ in range(stop - start):
        y, x = ty[k], tx[k]
        by, bx, bd = nnf[k, 0], nnf[k, 1], dist[k]
        for e in range(2):
            ny, nx = (y - step, x) if e == 0 else (y, x - step)
            if ny < 0 or ny >= h or nx < 0 or nx >= w:
                continue
            j = idmap[ny, nx]
            if j < 0:
                continue
            cy, cx = nnf[j, 0] + (step if e == 0 else 0), nnf[j, 1] + (0 if e == 0 else step)
            if cy < 0 or cy >= h or cx < 0 or cx >= w or (cy == by and cx == bx) or not src_ok[cy, cx]:
                continue
            d = _k_patch_dist(img, idmap, tval, wpix, y, x, cy, cx, r, bd)
            if d < bd:
                by, bx, bd = cy, cx, d
        rad = radius
        draw = 0
        while rad >= 1:
            cy = min(max(by + _k_randint(seed, k, draw, -rad, rad), r), h - 1 - r)
            cx = min(max(bx + _k_randint(seed, k, draw + 1, -rad, rad), r), w - 1 - r)
            draw += 2
            if src_ok[cy, cx] and not (cy == by and cx == bx):
                d = _k_patch_dist(img, idmap, tval, wpix, y, x, cy, cx, r, bd)
                if d < bd:
                    by, bx, bd = cy, cx, d
            rad = int(rad * 0.5)
        nnf[k, 0], nnf[k, 1], dist[k] = by, bx, bd
        k += step


def _k_search(img, idmap, tval, wpix, src_ok, ty, tx, nnf, dist, r, iterations, radius, seed,
              bands):  # pragma: no cover - compiled
    """``iterations`` PatchMatch sweeps, alternating direction. The targets are cut into bands of
    rows (``bands``: start indices); even bands run in parallel, then odd ones, so no band reads a
    neighbour's field while another thread writes it: the result is that of a fixed sequential
    order, deterministic."""
    nb = bands.size - 1
    for it in range(iterations):
        step = 1 if it % 2 == 0 else -1
        for phase in range(2):
            for q in prange((nb - phase + 1) // 2):
                b = 2 * q + phase
                _k_search_band(img, idmap, tval, wpix, src_ok, ty, tx, nnf, dist, r, bands[b], bands[b + 1],
                               step, radius, seed * 64 + it)


def _k_vote(img, idmap, rows, ty, tx, nnf, weight, r, sharp, out):  # pragma: no cover - compiled
    """Wexler et al.'s update: each hole pixel (``rows``) becomes the weighted mean of what the
    overlapping source patches put there, gathered per pixel (no write conflicts); ``sharp``:
    the value of the single heaviest patch instead (the mode rather than the mean)."""
    h, w, c = img.shape
    for q in prange(rows.size):
        i = rows[q]
        y, x = ty[i], tx[i]
        acc = np.zeros(c, np.float64)
        total = 0.0
        for dy in range(-r, r + 1):
            cy = y - dy
            if cy < 0 or cy >= h:
                continue
            for dx in range(-r, r + 1):
                cx = x - dx
                if cx < 0 or cx >= w:
                    continue
                k = idmap[cy, cx]
                if k < 0:
                    continue
                wt = weight[k]
                sy, sx = nnf[k, 0] + dy, nnf[k, 1] + dx
                if sharp:
                    if wt > total:
                        for ch in range(c):
                            acc[ch] = wt * img[sy, sx, ch]
                        total = wt
                    continue
                for ch in range(c):
                    acc[ch] += wt * img[sy, sx, ch]
                total += wt
        if total > 0:
            for ch in range(c):
                out[i, ch] = acc[ch] / total


def _k_patch_weight(idmap, wpix, ty, tx, r, out_sum, out_inside):  # pragma: no cover - compiled
    """Per target: the summed pixel weights of its patch and the fraction of it inside the image."""
    h, w = idmap.shape
    for k in prange(ty.size):
        s = 0.0
        inside = 0
        for dy in range(-r, r + 1):
            yy = ty[k] + dy
            if yy < 0 or yy >= h:
                continue
            for dx in range(-r, r + 1):
                xx = tx[k] + dx
                if xx < 0 or xx >= w:
                    continue
                inside += 1
                i = idmap[yy, xx]
                s += wpix[i] if i >= 0 else 1.0
        out_sum[k] = s
        out_inside[k] = inside / (2 * r + 1) ** 2


# helpers first: the kernels call them through this module's globals, which numba resolves at
# compile time, so the compiled dispatchers must be in place before the kernels compile
_HELPERS = ("_k_hash", "_k_randint", "_k_patch_dist", "_k_search_band")
_KERNELS = ("_k_all_dist", "_k_random_init", "_k_search", "_k_vote", "_k_patch_weight")
prange = range  # numba.prange once numba is loaded (plain range for the uncompiled source)
_kernels: dict[str, Any] | None = None
_numba_checked = False


def _numba_cache_dir(numba: Any) -> None:
    """Point numba's on-disk cache at the user's cache folder unless the user chose one.

    numba caches next to the source file, which an installed package may not be able to write;
    ``$XDG_CACHE_HOME/imgsynth/numba`` (``~/.cache/...``) works for every install. When even that
    cannot be created numba keeps its own defaults (a user-wide folder, else compiling per
    process: about 15 s on the first call).
    """
    if numba.config.CACHE_DIR:  # NUMBA_CACHE_DIR set by the user
        return
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "imgsynth", "numba")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return
    if os.access(path, os.W_OK):
        numba.config.CACHE_DIR = path


def _load_numba() -> dict[str, Any] | None:
    """The compiled kernels, or None when numba is not installed (compiled lazily on first use,
    then loaded from the on-disk cache in later processes)."""
    global _kernels, _numba_checked
    if _numba_checked:
        return _kernels
    _numba_checked = True
    try:
        import numba
    except ImportError:
        return None
    _numba_cache_dir(numba)
    if not os.environ.get("NUMBA_THREADING_LAYER"):
        # numba's own thread pool: on a loaded machine OpenMP's barrier waits made the parallel
        # kernels 2-3x slower in wall time than this, for the same CPU time. It must not be
        # entered from two threads at once, hence _PARALLEL_LOCK.
        numba.config.THREADING_LAYER = "workqueue"
    module = globals()
    module["prange"] = numba.prange
    for name in _HELPERS:
        module[name] = numba.njit(cache=True, nogil=True)(module[name])
    _kernels = {}
    for name in _KERNELS:
        fn = module[name]
        # A serial twin (its own cache entry, through its own qualname) for small levels: a
        # parallel loop costs a thread hand-off per call, which on a loaded machine can take
        # longer than the work itself.
        twin = type(fn)(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
        twin.__qualname__ = fn.__qualname__ + "_serial"
        twin.__module__ = fn.__module__
        _kernels[name[3:]] = numba.njit(cache=True, nogil=True, parallel=True)(fn)
        _kernels[name[3:] + "_serial"] = numba.njit(cache=True, nogil=True)(twin)
    return _kernels


def numba_available() -> bool:
    """True when the compiled (numba) backend can run in this environment."""
    return _load_numba() is not None


# --- levels ----------------------------------------------------------------------------------------


def _halve_known(known: np.ndarray) -> np.ndarray:
    """The known mask of the halved level: a coarse pixel is known only when its four children are
    (odd sizes: the last row/column replicated)."""
    h, w = known.shape
    if h % 2 or w % 2:
        known = np.pad(known, ((0, h % 2), (0, w % 2)), mode="edge")
    return known[0::2, 0::2] & known[0::2, 1::2] & known[1::2, 0::2] & known[1::2, 1::2]


def _halve(img: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Halve with a 2x2 box filter over known pixels only, the mean rounded half up; a coarse pixel
    is known only when its four children are, so coarse source patches hold only genuinely known
    content. Works in uint16 on quarter-size slices (no full-size float temporaries); only the few
    coarse pixels with one to three known children are summed again over their known ones."""
    h, w = known.shape
    if h % 2 or w % 2:  # replicate the last row/column so odd sizes map onto 2x2 blocks
        img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        known = np.pad(known, ((0, h % 2), (0, w % 2)), mode="edge")
    total = img[0::2, 0::2].astype(np.uint16)
    total += img[0::2, 1::2]
    total += img[1::2, 0::2]
    total += img[1::2, 1::2]
    total += 2
    total >>= 2
    coarse = total.astype(np.uint8)  # right wherever all four children are known
    del total
    if known.all():
        return coarse, np.ones(coarse.shape[:2], bool)
    k = known.view(np.uint8)
    count = k[0::2, 0::2] + k[0::2, 1::2] + k[1::2, 0::2] + k[1::2, 1::2]
    full = count == 4
    coarse[count == 0] = 0
    cy, cx = np.nonzero(~full & (count > 0))  # the few coarse pixels on the hole's edge
    part = np.zeros((cy.size, img.shape[2]), np.uint16)
    for a in (0, 1):
        for b in (0, 1):
            part += img[2 * cy + a, 2 * cx + b] * k[2 * cy + a, 2 * cx + b][:, None]
    n = count[cy, cx].astype(np.uint16)[:, None]
    coarse[cy, cx] = (part + n // 2) // n
    return coarse, full


@dataclass
class _Level:
    """One pyramid level: uint8 image (hole content unused), hole mask, optional uint8 guide."""

    img: np.ndarray
    hole: np.ndarray
    guide: np.ndarray | None = None


def _texture_channels(image: np.ndarray, hole: np.ndarray, window: int, weight: float) -> np.ndarray:
    """Newson et al.'s texture features as two uint8 channels: the mean absolute vertical and
    horizontal luminance differences over a ``window`` x ``window`` box, from known pixel pairs
    only, times ``weight``. Where fewer than half the box's pairs are known (the hole and its rim)
    a feature is a smooth interpolation of the reliable ones around it (:func:`_fill_unreliable`):
    the surroundings' texture level, which the search then asks the hole's patches to have. OpenCV
    passes over uint8 and uint16 planes (a few bytes per pixel; floats only around the hole); the
    box sums fit uint16 for ``window`` <= 16, which :func:`patchmatch_inpaint` checks."""
    import cv2

    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.shape[2] == 3 else image[..., 0].copy()
    known = (~hole).view(np.uint8)
    h, w = hole.shape
    box = (window, window)
    out = np.empty((h, w, 2), np.uint8)
    rows, cols = np.flatnonzero(hole.any(1)), np.flatnonzero(hole.any(0))
    for axis in (0, 1):  # 0: vertical differences (rows), 1: horizontal (columns)
        diff = np.zeros((h, w), np.uint8)
        pair = np.zeros((h, w), np.uint8)
        if axis == 0:
            diff[:-1] = cv2.absdiff(gray[1:], gray[:-1])
            np.bitwise_and(known[1:], known[:-1], out=pair[:-1])
        else:
            diff[:, :-1] = cv2.absdiff(gray[:, 1:], gray[:, :-1])
            np.bitwise_and(known[:, 1:], known[:, :-1], out=pair[:, :-1])
        np.multiply(diff, pair, out=diff)
        total = cv2.boxFilter(diff, cv2.CV_16U, box, normalize=False, borderType=cv2.BORDER_REFLECT)
        count = cv2.boxFilter(pair, cv2.CV_16U, box, normalize=False, borderType=cv2.BORDER_REFLECT)
        del diff, pair
        # weight * total / count, rounded and saturated; 0 where count is 0 (OpenCV's convention)
        out[..., axis] = cv2.divide(total, count, scale=weight, dtype=cv2.CV_8U)
        if rows.size:
            _fill_unreliable(out[..., axis], total, count, rows, cols, window, weight)
    return out


def _fill_unreliable(out: np.ndarray, total: np.ndarray, count: np.ndarray, rows: np.ndarray,
                     cols: np.ndarray, window: int, weight: float) -> None:
    """Set, in ``out`` (uint8, the weighted feature), the pixels whose box held fewer than half
    known pairs (only near the hole, whose rows and columns are ``rows`` and ``cols``) to a smooth
    interpolation of the reliable features ``total / count``: push-pull over a pyramid of the
    region (reliable-weighted means halved until every pixel has support, then upsampled back
    where a level had none). Linear in the region."""
    import cv2

    h, w = count.shape
    y0, y1 = max(int(rows[0]) - window, 0), min(int(rows[-1]) + window + 1, h)
    x0, x1 = max(int(cols[0]) - window, 0), min(int(cols[-1]) + window + 1, w)
    cnt = count[y0:y1, x0:x1]
    reliable = (cnt >= 0.5 * window * window).astype(np.float32)
    todo = reliable == 0
    if not todo.any():
        return
    region = out[y0:y1, x0:x1]
    if not reliable.any():  # nothing to interpolate from: no texture information
        region[todo] = 0
        return
    feat = total[y0:y1, x0:x1].astype(np.float32) / np.maximum(cnt, 1).astype(np.float32)
    sums, weights = [feat * reliable], [reliable]
    del feat
    while weights[-1].min() == 0 and min(weights[-1].shape) > 1:
        hh, ww = weights[-1].shape
        size = ((ww + 1) // 2, (hh + 1) // 2)
        sums.append(cv2.resize(sums[-1], size, interpolation=cv2.INTER_AREA))
        weights.append(cv2.resize(weights[-1], size, interpolation=cv2.INTER_AREA))
    estimate = sums[-1] / np.maximum(weights[-1], 1e-12)
    for k in range(len(sums) - 2, -1, -1):
        hh, ww = weights[k].shape
        up = cv2.resize(estimate, (ww, hh), interpolation=cv2.INTER_LINEAR)
        has = weights[k] > 1e-6
        estimate = np.where(has, sums[k] / np.maximum(weights[k], 1e-12), up)
    region[todo] = np.clip(np.rint(estimate[todo] * weight), 0, 255).astype(np.uint8)


def _hole_depth(hole: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Chessboard distance of each hole pixel to the known region, computed on the hole's bounding
    box grown by one pixel (the nearest known pixel is never farther than that ring), and the
    box's top-left corner."""
    import cv2  # lazy: the model registry imports this module on discovery

    rows, cols = np.flatnonzero(hole.any(1)), np.flatnonzero(hole.any(0))
    y0, y1 = max(rows[0] - 1, 0), min(rows[-1] + 2, hole.shape[0])
    x0, x1 = max(cols[0] - 1, 0), min(cols[-1] + 2, hole.shape[1])
    crop = hole[y0:y1, x0:x1].astype(np.uint8)
    if crop.all():  # the hole fills its box up to the image border: pad with a known ring
        depth = cv2.distanceTransform(np.pad(crop, 1), cv2.DIST_C, 3)[1:-1, 1:-1]
    else:
        depth = cv2.distanceTransform(crop, cv2.DIST_C, 3)
    return depth, (y0, x0)


def _num_levels(hole: np.ndarray, patch_size: int) -> int:
    """How many times to halve: until no hole pixel is more than half a patch from the known
    region, while the coarse image keeps complete source patches. A single full-resolution level
    with a smooth start converges slowly even on thin holes; one coarse level fixes that."""
    import cv2

    r = patch_size // 2
    depth = float(_hole_depth(hole)[0].max())
    known = ~hole
    count = 0
    while depth > r:
        h, w = known.shape
        if min((h + 1) // 2, (w + 1) // 2) < 3 * patch_size:
            break
        known = _halve_known(known)
        sources = cv2.erode(known.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8),
                            borderType=cv2.BORDER_CONSTANT, borderValue=0)
        if not sources.any():
            break
        depth /= 2.0
        count += 1
    return count


class _Solver:
    """Targets, weights and the nearest-neighbour field of one level."""

    def __init__(self, level: _Level, patch_size: int, hole_weight: float) -> None:
        import cv2

        self.level = level
        self.r = r = patch_size // 2
        self.img = level.img
        h, w = level.hole.shape
        self.h, self.w = h, w
        kernel = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
        hole8 = level.hole.astype(np.uint8)
        self.src_ok = cv2.erode(1 - hole8, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        self.num_sources_ok = bool(self.src_ok.any())
        targets = cv2.dilate(hole8, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        ty, tx = np.nonzero(targets)
        del targets
        self.ty, self.tx = ty.astype(np.int32), tx.astype(np.int32)
        n = self.ty.size
        self.idmap = np.full((h, w), -1, np.int32)
        self.idmap[ty, tx] = np.arange(n, dtype=np.int32)
        self.hole = level.hole[ty, tx]
        depth, (y0, x0) = _hole_depth(level.hole)
        hy, hx = ty[self.hole], tx[self.hole]
        self.depth = np.zeros(n, np.float32)
        self.depth[self.hole] = depth[hy - y0, hx - x0]
        self.wpix = np.where(self.hole, np.float32(hole_weight), np.float32(1.0)).astype(np.float32)
        self.nnf = np.zeros((n, 2), np.int32)
        self.dist = np.zeros(n, np.float32)
        self.estimate = level.img[ty, tx].astype(np.float32)  # (N, C): hole rows are the current fill
        # the guide at the hole's targets only (the rows ``self.hole`` selects), uint8
        self.guide = None if level.guide is None else level.guide[hy, hx]

    @property
    def size(self) -> int:
        return int(self.ty.size)

    def target_values(self, guide_weight: float) -> np.ndarray:
        """What target patches are compared with: known pixels as they are, hole pixels the
        estimate blended with the guide (Yang et al. 2017: content from the coarse prediction)."""
        if self.guide is None or guide_weight <= 0.0:
            return self.estimate
        tval = self.estimate.copy()
        blend = self.estimate[self.hole]
        blend *= 1.0 - guide_weight
        blend += np.float32(guide_weight) * self.guide
        tval[self.hole] = blend
        return tval


def _onion_fill(solver: _Solver) -> None:
    """Fill the hole ring by ring with the mean of already-filled 8-neighbours (smooth start),
    on the hole's bounding box only."""
    ty, tx, hole = solver.ty, solver.tx, solver.hole
    y0, y1 = int(ty.min()), int(ty.max()) + 1
    x0, x1 = int(tx.min()), int(tx.max()) + 1
    image = solver.img[y0:y1, x0:x1].astype(np.float32)
    filled = ~solver.level.hole[y0:y1, x0:x1]
    image[~filled] = 0.0
    h, w = filled.shape
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
    rows = np.flatnonzero(hole)
    solver.estimate[rows] = image[ty[rows] - y0, tx[rows] - x0]


# --- the NumPy backend -----------------------------------------------------------------------------


class _NumpyOps:
    """Vectorised versions of the kernels over chunks of at most ``_CHUNK`` targets: a chunk's
    patches (``_CHUNK`` x P x C values) are the largest temporaries, whatever the photo's size."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    @staticmethod
    def _offsets(r: int) -> tuple[np.ndarray, np.ndarray]:
        dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
        return dy.ravel().astype(np.int32), dx.ravel().astype(np.int32)

    def _prepare(self, s: _Solver, tval: np.ndarray) -> None:
        """The target patches of the round as uint8 values (N, P, C) and uint8 weight codes
        (N, P): 0 outside the image, 1 hole, 2 known. Hole-sized (~200 bytes per target), built
        once per search instead of once per candidate."""
        dy, dx = self._offsets(s.r)
        n, p, c = s.size, dy.size, s.img.shape[2]
        self.tgt = np.empty((n, p, c), np.uint8)
        self.code = np.empty((n, p), np.uint8)
        tq = np.clip(np.rint(tval), 0, 255).astype(np.uint8)
        for a in range(0, n, _CHUNK):
            rows = np.arange(a, min(a + _CHUNK, n))
            yy = s.ty[rows, None] + dy
            xx = s.tx[rows, None] + dx
            inside = (yy >= 0) & (yy < s.h) & (xx >= 0) & (xx < s.w)
            np.clip(yy, 0, s.h - 1, out=yy)
            np.clip(xx, 0, s.w - 1, out=xx)
            i = s.idmap[yy, xx]
            is_t = i >= 0
            self.tgt[rows] = np.where(is_t[..., None], tq[i], s.img[yy, xx])
            hole = np.zeros(i.shape, bool)
            hole[is_t] = s.hole[i[is_t]]
            self.code[rows] = np.where(inside, np.where(hole, 1, 2), 0)
        self.code_w = np.array([0.0, s.wpix[s.hole][0] if s.hole.any() else 1.0, 1.0], np.float32)
        self.flat_off = (dy * s.w + dx).astype(np.int64)
        self.img_flat = s.img.reshape(-1, c)

    def _dist(self, s: _Solver, rows: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
        """Weighted SSD between the prepared target patches ``rows`` and source patches (sy, sx)."""
        centre = sy.astype(np.int64) * s.w + sx
        diff = self.img_flat[centre[:, None] + self.flat_off].astype(np.float32)
        diff -= self.tgt[rows]
        diff *= diff
        return np.einsum("np,np->n", diff.sum(-1), self.code_w[self.code[rows]])

    def all_dist(self, s: _Solver, tval: np.ndarray) -> None:
        self._prepare(s, tval)
        for a in range(0, s.size, _CHUNK):
            rows = np.arange(a, min(a + _CHUNK, s.size))
            s.dist[rows] = self._dist(s, rows, s.nnf[rows, 0], s.nnf[rows, 1])

    def random_init(self, s: _Solver, rows: np.ndarray, seed: int) -> None:
        rng = np.random.default_rng(seed)
        r = s.r
        todo = rows
        for _ in range(10000):
            if todo.size == 0:
                return
            cy = rng.integers(r, s.h - r, todo.size).astype(np.int32)
            cx = rng.integers(r, s.w - r, todo.size).astype(np.int32)
            ok = s.src_ok[cy, cx].astype(bool)
            s.nnf[todo[ok], 0], s.nnf[todo[ok], 1] = cy[ok], cx[ok]
            todo = todo[~ok]

    def _try(self, s: _Solver, tval: np.ndarray, rows: np.ndarray, cy: np.ndarray, cx: np.ndarray) -> None:
        ok = (cy >= 0) & (cy < s.h) & (cx >= 0) & (cx < s.w)
        rows, cy, cx = rows[ok], cy[ok], cx[ok]
        ok = s.src_ok[cy, cx].astype(bool)
        rows, cy, cx = rows[ok], cy[ok], cx[ok]
        for a in range(0, rows.size, _CHUNK):
            sl = slice(a, a + _CHUNK)
            rr, yy, xx = rows[sl], cy[sl], cx[sl]
            d = self._dist(s, rr, yy, xx)
            better = d < s.dist[rr]
            rr = rr[better]
            s.nnf[rr, 0], s.nnf[rr, 1], s.dist[rr] = yy[better], xx[better], d[better]

    def search(self, s: _Solver, tval: np.ndarray, iterations: int, radius: int, seed: int) -> None:
        """Searches against the target patches prepared by the preceding :meth:`all_dist` (the
        driver always computes the round's distances first, with the same ``tval``)."""
        rng = np.random.default_rng(seed)
        ty, tx = s.ty, s.tx
        for it in range(iterations):
            sign = 1 if it % 2 == 0 else -1
            for jump in _JUMPS:
                for ey, ex in ((jump * sign, 0), (0, jump * sign)):
                    ny, nx = ty - ey, tx - ex
                    inb = (ny >= 0) & (ny < s.h) & (nx >= 0) & (nx < s.w)
                    rows = np.flatnonzero(inb)
                    nb = s.idmap[ny[inb], nx[inb]]
                    has = nb >= 0
                    rows, nb = rows[has], nb[has]
                    self._try(s, tval, rows, s.nnf[nb, 0] + ey, s.nnf[nb, 1] + ex)
            rad = radius
            rows = np.arange(s.size)
            while rad >= 1:
                jitter = rng.integers(-rad, rad + 1, (s.size, 2)).astype(np.int32)
                cy = np.clip(s.nnf[:, 0] + jitter[:, 0], s.r, s.h - 1 - s.r)
                cx = np.clip(s.nnf[:, 1] + jitter[:, 1], s.r, s.w - 1 - s.r)
                self._try(s, tval, rows, cy, cx)
                rad = int(rad * _ALPHA)
        self.tgt = self.code = None  # type: ignore[assignment]  # hole-sized: free between rounds

    def vote(self, s: _Solver, weight: np.ndarray, sharp: bool = False) -> None:
        dy, dx = self._offsets(s.r)
        hole_rows = np.flatnonzero(s.hole)
        for a in range(0, hole_rows.size, _CHUNK):
            rows = hole_rows[a : a + _CHUNK]
            cy = s.ty[rows, None] - dy  # centres of the patches that cover each pixel
            cx = s.tx[rows, None] - dx
            use = (cy >= 0) & (cy < s.h) & (cx >= 0) & (cx < s.w)
            k = s.idmap[np.clip(cy, 0, s.h - 1), np.clip(cx, 0, s.w - 1)]
            use &= k >= 0
            k[~use] = 0
            wt = np.where(use, weight[k], 0.0)
            sy = np.clip(s.nnf[k, 0] + dy, 0, s.h - 1)
            sx = np.clip(s.nnf[k, 1] + dx, 0, s.w - 1)
            if sharp:  # the heaviest patch's value (first of equals, as the compiled kernel)
                best = wt.argmax(1)
                pick = np.arange(rows.size)
                acc = s.img[sy[pick, best], sx[pick, best]].astype(np.float64)
                total = wt[pick, best]
                acc *= total[:, None]
            else:
                acc = np.einsum("np,npc->nc", wt, s.img[sy, sx].astype(np.float64))
                total = wt.sum(1)
            ok = total > 0
            s.estimate[rows[ok]] = (acc[ok] / total[ok, None]).astype(np.float32)

    def patch_weight(self, s: _Solver) -> tuple[np.ndarray, np.ndarray]:
        dy, dx = self._offsets(s.r)
        wsum = np.zeros(s.size, np.float32)
        inside_frac = np.zeros(s.size, np.float32)
        for a in range(0, s.size, _CHUNK):
            rows = np.arange(a, min(a + _CHUNK, s.size))
            yy, xx = s.ty[rows, None] + dy, s.tx[rows, None] + dx
            inside = (yy >= 0) & (yy < s.h) & (xx >= 0) & (xx < s.w)
            i = s.idmap[np.clip(yy, 0, s.h - 1), np.clip(xx, 0, s.w - 1)]
            wsum[rows] = (np.where(i >= 0, s.wpix[i], np.float32(1.0)) * inside).sum(1)
            inside_frac[rows] = inside.mean(1)
        return wsum, inside_frac


class _NumbaOps:
    """The compiled kernels behind the same interface as :class:`_NumpyOps`; levels with fewer
    than ``_PARALLEL_ABOVE`` targets run the serial twins (same results)."""

    def __init__(self, kernels: dict[str, Any]) -> None:
        self.kernels = kernels

    def _call(self, s: _Solver, name: str, *args: Any) -> None:
        if s.size >= _PARALLEL_ABOVE and _PARALLEL_LOCK.acquire(blocking=False):
            try:
                self.kernels[name](*args)
            finally:
                _PARALLEL_LOCK.release()
            return
        self.kernels[name + "_serial"](*args)  # small level, or another thread holds the pool

    def all_dist(self, s: _Solver, tval: np.ndarray) -> None:
        self._call(s, "all_dist", s.img, s.idmap, tval, s.wpix, s.ty, s.tx, s.nnf, s.dist, s.r)

    def random_init(self, s: _Solver, rows: np.ndarray, seed: int) -> None:
        self._call(s, "random_init", s.src_ok, s.nnf, rows.astype(np.int64), s.r, seed)

    def search(self, s: _Solver, tval: np.ndarray, iterations: int, radius: int, seed: int) -> None:
        bands = np.searchsorted(s.ty, np.arange(0, s.h + _BAND_ROWS, _BAND_ROWS)).astype(np.int64)
        self._call(s, "search", s.img, s.idmap, tval, s.wpix, s.src_ok, s.ty, s.tx, s.nnf, s.dist, s.r,
                   iterations, radius, seed, bands)

    def vote(self, s: _Solver, weight: np.ndarray, sharp: bool = False) -> None:
        self._call(s, "vote", s.img, s.idmap, np.flatnonzero(s.hole), s.ty, s.tx, s.nnf, weight, s.r, sharp,
                   s.estimate)

    def patch_weight(self, s: _Solver) -> tuple[np.ndarray, np.ndarray]:
        wsum = np.zeros(s.size, np.float32)
        inside = np.zeros(s.size, np.float32)
        self._call(s, "patch_weight", s.idmap, s.wpix, s.ty, s.tx, s.r, wsum, inside)
        return wsum, inside


# --- the driver ------------------------------------------------------------------------------------


def _vote(ops: Any, s: _Solver, wsum: np.ndarray, inside: np.ndarray, sharp: bool = False) -> None:
    """Voting weights, then the vote. Per patch: Wexler et al.'s similarity exp(-d / 2 sigma^2)
    (sigma^2 from the distance distribution), the fraction inside the image, and the spatial
    confidence gamma^-depth at the patch centre. Patches voting for one pixel have centres within
    ``r`` of it, so their depths differ by at most ``r`` and the weights stay comparable; the
    clamp keeps holes deeper than ~2,600 pixels from underflowing (equal confidence there)."""
    per_value = s.dist / np.maximum(wsum * s.img.shape[2], 1e-6)
    sigma2 = max(float(np.percentile(per_value, 75)), 1e-3)
    # in place, in float64 (the exponent reaches -740): two target-sized temporaries at a time
    log_w = per_value.astype(np.float64)
    log_w -= float(per_value.min())
    del per_value
    log_w *= -1.0 / (2.0 * sigma2)
    spatial = s.depth.astype(np.float64)
    spatial *= -math.log(_GAMMA)
    np.maximum(spatial, -700.0, out=spatial)
    log_w += spatial
    del spatial
    np.maximum(log_w, -740.0, out=log_w)
    np.exp(log_w, out=log_w)
    log_w *= inside
    ops.vote(s, log_w, sharp)


def _upsample(fine: _Solver, coarse: _Solver, ops: Any, seed: int) -> None:
    """Fine NNF and estimate from the coarse level: double the matched offset keeping the sub-pixel
    phase (Wexler et al. Sec. 3.4); targets without a valid inherited source start at random."""
    ty, tx = fine.ty, fine.tx
    cid = coarse.idmap[ty // 2, tx // 2]
    has = cid >= 0
    sy = np.where(has, 2 * coarse.nnf[cid, 0] + ty % 2, -1)
    sx = np.where(has, 2 * coarse.nnf[cid, 1] + tx % 2, -1)
    ok = has & (sy >= 0) & (sy < fine.h) & (sx >= 0) & (sx < fine.w)
    ok[ok] = fine.src_ok[sy[ok], sx[ok]].astype(bool)
    fine.nnf[ok, 0], fine.nnf[ok, 1] = sy[ok], sx[ok]
    missing = np.flatnonzero(~ok)
    if missing.size:
        ops.random_init(fine, missing, seed)
    # hole pixels start at their coarse parent's estimate (every fine hole pixel has a coarse hole
    # parent, since a coarse pixel is known only when all four children are)
    rows = np.flatnonzero(fine.hole)
    parent = coarse.idmap[ty[rows] // 2, tx[rows] // 2]
    fine.estimate[rows] = coarse.estimate[parent]


def _check(image: np.ndarray, hole: np.ndarray, guide: np.ndarray | None, patch_size: int,
           iterations: int, em_steps: int, pyramid_levels: int | None, guide_weight: float,
           guide_floor: float, backend: str) -> None:
    if image.ndim != 3 or image.dtype != np.uint8:
        raise InpaintInputError(
            f"image must be an (H, W, 3) uint8 array, got {image.dtype} of shape {image.shape}"
        )
    if hole.shape != image.shape[:2]:
        raise InpaintInputError(
            f"hole mask shape {hole.shape} does not match the image's {image.shape[:2]}"
        )
    if guide is not None and guide.shape != image.shape:
        raise InpaintInputError(f"guide shape {guide.shape} does not match the image's {image.shape}")
    if patch_size < 3 or patch_size % 2 == 0:
        raise InpaintInputError(f"patch_size must be an odd integer >= 3, got {patch_size}")
    if iterations < 1 or em_steps < 0:
        raise InpaintInputError("iterations must be >= 1 and em_steps >= 0")
    if em_steps == 0 and pyramid_levels == 1:
        raise InpaintInputError("em_steps=0 needs a coarser level to take the field from (pyramid_levels >= 2)")
    if pyramid_levels is not None and pyramid_levels < 1:
        raise InpaintInputError(f"pyramid_levels must be >= 1, got {pyramid_levels}")
    if not 0.0 <= guide_weight <= 1.0:
        raise InpaintInputError(f"guide_weight must lie in [0, 1], got {guide_weight}")
    if not 0.0 <= guide_floor <= guide_weight:
        raise InpaintInputError(f"guide_floor must lie in [0, guide_weight={guide_weight}], got {guide_floor}")
    if backend not in BACKENDS:
        raise InpaintInputError(f"unknown backend {backend!r}; use {', '.join(BACKENDS)}")


def patchmatch_inpaint(
    image: np.ndarray,
    mask: np.ndarray,
    guide: np.ndarray | None = None,
    *,
    patch_size: int = 7,
    iterations: int = 4,
    em_steps: int = 3,
    pyramid_levels: int | None = None,
    guide_weight: float = 1.0,
    guide_decay: float = 0.5,
    guide_floor: float = 0.0,
    texture_weight: float = 0.0,
    texture_window: int = 8,
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
    backend: str = "auto",
) -> np.ndarray:
    """Fill ``mask`` in ``image`` with patches copied from the known part of the image.

    Coarse-to-fine: at every pyramid level a nearest-neighbour field maps each patch overlapping
    the hole to a completely known source patch (PatchMatch random init, propagation and random
    search, Barnes et al. 2009), then every hole pixel is re-estimated by voting (Wexler et al.
    2007); several such search/vote rounds run per level and the field is upsampled to
    initialise the next level. Memory and time grow with the hole, not with the photo (beyond
    a few bytes per photo pixel for the pyramid and an index map).

    Args:
        image: (H, W, C) uint8 image, typically RGB. Not modified.
        mask: (H, W) bool (or 0/1), True where pixels are to be filled.
        guide: optional (H, W, C) coarse fill of the same image (uint8, or float in [0, 255]),
            e.g. a network's low-resolution fill upsampled to full size; only its hole pixels
            are read. Inside the hole the patch search matches ``(1 - g) * estimate + g * guide``
            instead of the estimate alone (Yang et al. 2017: the guide sets the structure, the
            photo's own patches the texture), and the coarsest level starts from the guide.
        patch_size: odd patch side in pixels (>= 3).
        iterations: PatchMatch iterations (propagation + random search) per EM step.
        em_steps: search/vote rounds at full resolution; the level halved ``k`` times runs
            ``em_steps + 2 * k`` (coarse rounds are cheap and settle the layout). 0: no search
            at full resolution, the field of the level below is upsampled and voted once (about
            four times faster; the patches copied are still full-resolution ones).
        pyramid_levels: number of levels including the full resolution; None picks it from the
            hole thickness and image size.
        guide_weight: ``g`` at the coarsest level, in [0, 1] (1: match the guide alone inside
            the hole). Ignored without a guide.
        guide_decay: factor applied to ``g - guide_floor`` at each finer level (1: the same
            weight at every level; 0.5: halved per level, so with no floor the full-resolution
            texture comes from the photo).
        guide_floor: the weight ``g`` decays towards, in [0, guide_weight]: the level ``d``
            steps below the coarsest matches with ``floor + (guide_weight - floor) * decay**d``.
            A strong guide at the coarse levels fixes the layout, the floor keeps the fine
            levels from drifting away from it.
        texture_weight: weight of two texture channels added to every patch comparison
            (Newson et al. 2014): the mean absolute horizontal and vertical luminance differences
            over ``texture_window`` pixels, computed once at full resolution (so the coarse levels
            still tell fine foliage from a smooth shadow of the same mean colour) and, inside the
            hole, set to the surroundings' level. Without them the search favours smooth sources
            whenever the estimate is smooth, which it is at first; 0 turns them off.
        texture_window: side of the box the texture channels average over, in pixels (2-16).
        seed: seed of the random initialisation and search; same seed and backend, same output.
        progress: called with the completed fraction in [0, 1] after every search/vote round.
        backend: ``"numba"`` (compiled; needs ``pip install 'imgsynth[fast]'``), ``"numpy"``
            (no extra dependency, several times slower), or ``"auto"``: numba when installed.

    Returns:
        (H, W, C) uint8 image; pixels outside ``mask`` are exactly those of ``image``.

    Raises:
        InpaintInputError (a ValueError): bad shapes or options, an image smaller than a patch,
        no complete patch of known pixels to copy from, or ``backend="numba"`` without numba.
    """
    image = np.asarray(image)
    hole = np.asarray(mask)
    if guide is not None:
        guide = np.asarray(guide)
    _check(image, hole, guide, patch_size, iterations, em_steps, pyramid_levels, guide_weight, guide_floor, backend)
    if texture_weight < 0.0 or not 2 <= texture_window <= 16:
        raise InpaintInputError(
            f"texture_weight must be >= 0 and texture_window in [2, 16], got {texture_weight} and {texture_window}"
        )
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
    # crops arrive as strided views; the kernels are compiled for contiguous arrays
    image = np.ascontiguousarray(image)
    kernels = _load_numba() if backend in ("auto", "numba") else None
    if backend == "numba" and kernels is None:
        raise InpaintInputError("backend='numba' needs numba: pip install 'imgsynth[fast]'")
    ops: Any = _NumbaOps(kernels) if kernels is not None else _NumpyOps(seed)
    if guide is not None and guide.dtype != np.uint8:
        guide8 = np.empty(guide.shape, np.uint8)
        for top in range(0, guide.shape[0], 256):  # in bands: no full-size float temporaries
            guide8[top : top + 256] = np.clip(np.rint(guide[top : top + 256]), 0, 255)
        guide = guide8
    elif guide is not None:
        guide = np.ascontiguousarray(guide)
    channels = image.shape[2]
    if texture_weight > 0.0:
        texture = _texture_channels(image, hole, texture_window, texture_weight)
        image = np.concatenate([image, texture], axis=2)
        if guide is not None:
            guide = np.concatenate([guide, texture], axis=2)
        del texture

    levels = [_Level(image, hole, guide)]
    count = _num_levels(hole, patch_size) + 1 if pyramid_levels is None else pyramid_levels
    for _ in range(count - 1):
        prev = levels[-1]
        if min((prev.hole.shape[0] + 1) // 2, (prev.hole.shape[1] + 1) // 2) < patch_size:
            break
        img, known = _halve(prev.img, ~prev.hole)
        coarse_guide = None
        if prev.guide is not None:
            coarse_guide = _halve(prev.guide, np.ones(prev.hole.shape, bool))[0]
        levels.append(_Level(img, ~known, coarse_guide))

    # progress in units of (hole pixels x search/vote rounds), which is what the time follows
    rounds = [em_steps + 2 * i for i in range(len(levels))]
    work = float(sum(int(lv.hole.sum()) * n for lv, n in zip(levels, rounds)))
    done = 0.0
    radius_fine = _FINE_WINDOW * patch_size
    prev_solver: _Solver | None = None
    for index in range(len(levels) - 1, -1, -1):
        level = levels[index]
        depth_from_top = len(levels) - 1 - index
        g = 0.0
        if level.guide is not None:
            g = guide_floor + (guide_weight - guide_floor) * guide_decay**depth_from_top
        solver = _Solver(level, patch_size, _FILLED_WEIGHT + (1.0 - _FILLED_WEIGHT) * g)
        level_seed = seed * 1000 + index
        if not solver.num_sources_ok:
            if index == 0:
                raise InpaintInputError(
                    f"no complete {patch_size}x{patch_size} patch of known pixels to copy from; "
                    "shrink the hole or use a smaller patch_size"
                )
            prev_solver = None  # too coarse for this hole: start afresh at the next finer level
            done += int(level.hole.sum()) * rounds[index]
            continue
        wsum, inside = ops.patch_weight(solver)
        if prev_solver is None:
            if solver.guide is not None:
                solver.estimate[solver.hole] = solver.guide
            else:
                _onion_fill(solver)
            ops.random_init(solver, np.arange(solver.size), level_seed)
            radius = max(solver.h, solver.w)
        else:
            _upsample(solver, prev_solver, ops, level_seed)
            # Vote once with the upsampled field so the first search sees sharp content
            # rather than the blocky upsampled colours (with no search rounds at the full
            # resolution, this vote is the result: the mode, as the last round's would be).
            ops.all_dist(solver, solver.target_values(g))
            _vote(ops, solver, wsum, inside, sharp=index == 0 and rounds[index] == 0)
            radius = min(radius_fine, max(solver.h, solver.w))
        # a level that starts afresh searches at least once (em_steps=0 at the finest level
        # relies on a coarser field, which a hole too big for the coarser levels does not have)
        for step in range(rounds[index] if prev_solver is not None else max(rounds[index], 1)):
            tval = solver.target_values(g)
            ops.all_dist(solver, tval)
            ops.search(solver, tval, iterations, radius, level_seed * 100 + step + 1)
            _vote(ops, solver, wsum, inside, sharp=index == 0)
            done += int(level.hole.sum())
            if progress is not None:
                progress(min(done / work, 1.0))
        prev_solver = solver

    assert prev_solver is not None
    out = image[..., :channels].copy()
    rows = np.flatnonzero(prev_solver.hole)
    out[prev_solver.ty[rows], prev_solver.tx[rows]] = np.clip(
        np.rint(prev_solver.estimate[rows, :channels]), 0, 255
    ).astype(np.uint8)
    if progress is not None:
        progress(1.0)
    return out


def inpaint_patchmatch(
    image: np.ndarray,
    hole: np.ndarray,
    *,
    patch_size: int = 7,
    iterations: int = 4,
    em_steps: int = 3,
    pyramid_levels: int | None = None,
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
    guide: np.ndarray | None = None,
    guide_weight: float = 1.0,
    backend: str = "auto",
    texture_weight: float = 0.0,
    texture_window: int = 8,
) -> np.ndarray:
    """:func:`patchmatch_inpaint` under its earlier name (``hole`` for ``mask``)."""
    return patchmatch_inpaint(
        image, hole, guide, patch_size=patch_size, iterations=iterations, em_steps=em_steps,
        pyramid_levels=pyramid_levels, guide_weight=guide_weight, seed=seed, progress=progress,
        backend=backend, texture_weight=texture_weight, texture_window=texture_window,
    )
