"""Contextual residual aggregation: full-resolution detail for a fill computed at low resolution.

Paper: Z. Yi, Q. Tang, S. Azizi, D. Jang, Z. Xu, "Contextual Residual Aggregation for Ultra
High-Resolution Image Inpainting", CVPR 2020 (Sec. 3.1-3.2: a network fills a downscaled photo;
the photo's high-frequency residual, the photo minus its blurred self, is copied into the hole at
full resolution, each hole patch receiving the residuals of the known patches that the attention
computed at low resolution finds most similar).
Official code: https://github.com/Atlas200dk/sample-imageinpainting-HiFill (licence not stated);
none of it is used here: this file is written from the paper (imgsynth's MIT licence; no weights).

This is a procedure, not a network: it has no weights and is not in the model registry. The
inpainting pipeline (``pipelines.inpaint``, strategy ``sharp``) runs it after any network whose
fill was computed on a downscaled crop.

Deviations from the original:
- The attention scores are not learned features of the network: a cell's descriptor is the 3x3
  neighbourhood of cell means of the low-passed (coarse-filled) photo, whitened per channel, plus
  its position scaled by ``locality`` (so that among equally similar sources the nearer wins), and
  each hole cell takes the single best known cell (top-1, as a hard attention) instead of a
  softmax over all: averaging residuals cancels texture, which is what the fill lacks.
- Residual patches are twice the cell size and overlap by half, weighted by a squared-sine window
  whose shifted copies sum to one, so copied patches meet without seams.
- The low-pass is a Gaussian of sigma ``cell / 2`` on the full-resolution photo (the paper
  subtracts the bilinear upsampling of the downscaled photo); residual sources are only taken
  where that blur did not reach into the hole.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["aggregate_residuals", "cell_for_scale"]

# Sources per nearest-neighbour query block; bounds the (targets x sources) score matrix.
_CHUNK = 2048
# At most this many source cells are scored (a seeded subset beyond): time stays linear in the hole.
MAX_SOURCES = 16384
# Matches are searched on a grid of at least this many pixels; finer residual cells inherit the
# offset of the match cell around them (as PatchMatch upsamples a nearest-neighbour field), which
# keeps the search 4x smaller for 4-px cells and the copies coherent.
MATCH_CELL = 8
# Coherence of the copied pieces (:func:`_cohere`): the descriptor distance a hole cell accepts to
# agree with one more neighbour, in units of the median best-match distance; and the ICM sweeps.
COHERENCE = 1.0
COHERE_ITERS = 6
# Labels of :func:`_cohere`: this many most frequent best-match offsets (plus 8 shifts).
N_OFFSETS = 24
# Blur of the descriptors, in match cells (see :func:`_match`).
DESCRIPTOR_BLUR = 1.0


def cell_for_scale(scale: float) -> int:
    """The residual cell side (pixels) for a fill computed at ``scale`` of the full resolution:
    about one low-resolution pixel, between 4 and 16 full-resolution pixels."""
    if scale <= 0:
        raise ValueError("scale must be positive")
    return int(min(16, max(4, 2 * round(0.5 / scale))))


def _window(cell: int) -> np.ndarray:
    """(2c, 2c) squared-sine window; copies shifted by ``cell`` sum to exactly one."""
    n = np.arange(2 * cell, dtype=np.float64)
    w = np.sin(np.pi * (n + 0.5) / (2 * cell)) ** 2
    return np.outer(w, w).astype(np.float32)


def _integral(mask: np.ndarray) -> np.ndarray:
    """(H+1, W+1) summed-area table of a boolean mask."""
    import cv2

    return cv2.integral(mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8))


def _box_count(ii: np.ndarray, y0: np.ndarray, x0: np.ndarray, size: int) -> np.ndarray:
    """True pixels in the ``size`` x ``size`` squares at (y0, x0) (may overhang the image), from the
    summed-area table ``ii`` of :func:`_integral`."""
    h, w = ii.shape[0] - 1, ii.shape[1] - 1
    ya, xa = np.clip(y0, 0, h), np.clip(x0, 0, w)
    yb, xb = np.clip(y0 + size, 0, h), np.clip(x0 + size, 0, w)
    return ii[yb, xb] - ii[ya, xb] - ii[yb, xa] + ii[ya, xa]


def _grid(h: int, w: int, c: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Top-left corners (rows, cols) of the 2c x 2c windows at stride c that cover an h x w image
    twice along each axis: window k along an axis covers [k*c - c, k*c + c)."""
    ny, nx = math.ceil(h / c) + 1, math.ceil(w / c) + 1
    gy0, gx0 = np.meshgrid(np.arange(ny) * c - c, np.arange(nx) * c - c, indexing="ij")
    return gy0, gx0, ny, nx


def _match(low: np.ndarray, hole: np.ndarray, ii: np.ndarray, c: int, reach: int, locality: float,
           seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Hard attention on a grid of cell ``c``: for every window touching the hole, the top-left
    corner of the most similar fully known window. Returns (target rows, cols, source rows, cols),
    or None when no window is known."""
    import torch

    h, w = hole.shape
    gy0, gx0, _, _ = _grid(h, w, c)
    size = 2 * c
    targets = _box_count(ii, gy0, gx0, size) > 0
    inside = (gy0 >= 0) & (gx0 >= 0) & (gy0 + size <= h) & (gx0 + size <= w)
    # a source's window and the reach of the blur around it must be known and inside the photo
    sources = inside & (_box_count(ii, gy0 - reach, gx0 - reach, size + 2 * reach) == 0)
    if not sources.any():
        return None
    # Descriptors: the 3x3 neighbourhood of cell means around each window centre, of the photo
    # blurred so much (sigma DESCRIPTOR_BLUR cells) that a smooth fill and real texture compare
    # by their colour layout alone.
    import cv2

    cy, cx = np.clip(gy0 + c, 0, h - 1), np.clip(gx0 + c, 0, w - 1)
    means = _cell_means(cv2.GaussianBlur(low, (0, 0), DESCRIPTOR_BLUR * c), c)
    mh, mw = means.shape[:2]
    my, mx = np.clip(cy * mh // h, 0, mh - 1), np.clip(cx * mw // w, 0, mw - 1)
    padded = np.pad(means, ((1, 1), (1, 1), (0, 0)), mode="edge")
    feats = np.concatenate([padded[my + 1 + dy, mx + 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], -1)
    src_idx = np.flatnonzero(sources.ravel())
    if src_idx.size > MAX_SOURCES:
        src_idx = np.sort(np.random.default_rng(seed).choice(src_idx, MAX_SOURCES, replace=False))
    tgt_idx = np.flatnonzero(targets.ravel())
    f = feats.reshape(-1, feats.shape[-1]).astype(np.float32)
    f = f / (f[src_idx].std(0) + 4.0)  # whiten per channel; +4 grey levels: flat photos stay tolerant
    pos = np.stack([cy.ravel(), cx.ravel()], -1).astype(np.float32) / max(h, w)
    f = np.concatenate([f, pos * (4.0 * math.sqrt(locality * f.shape[1]))], -1)
    fs, ft = torch.from_numpy(f[src_idx]), torch.from_numpy(f[tgt_idx])
    fs_sq = (fs * fs).sum(1)
    best = torch.empty(len(tgt_idx), dtype=torch.long)
    for k in range(0, len(tgt_idx), _CHUNK):
        best[k:k + _CHUNK] = torch.addmm(fs_sq[None, :], ft[k:k + _CHUNK], fs.T, alpha=-2.0).argmin(1)
    chosen = src_idx[best.numpy()]
    nyg, nxg = gy0.shape
    tj, ti = np.divmod(tgt_idx, nxg)
    sj, si = np.divmod(chosen, nxg)
    oy, ox = _cohere(f.reshape(nyg, nxg, -1), sources, tj, ti, sj - tj, si - ti)
    return gy0[tj, ti], gx0[tj, ti], gy0[tj + oy, ti + ox], gx0[tj + oy, ti + ox]


def _cohere(feats: np.ndarray, sources: np.ndarray, tj: np.ndarray, ti: np.ndarray, oy: np.ndarray,
            ox: np.ndarray, iters: int = COHERE_ITERS) -> tuple[np.ndarray, np.ndarray]:
    """Choose every hole cell's offset from a few dominant offsets, coherently (He & Sun 2012).

    Independent best matches tile a smooth hole with the same few source patches (a visible grid,
    and averaged-away contrast). After "Statistics of Patch Offsets for Image Completion" (K. He,
    J. Sun, ECCV 2012), the labels are the ``N_OFFSETS`` most frequent offsets of the best
    matches plus the eight shifts that move the hole's bounding box just outside itself; each hole
    cell then takes the label that minimises its descriptor distance plus ``COHERENCE`` times the
    median best-match distance for each 4-neighbour that disagrees (iterated conditional modes in
    place of the paper's graph cuts). Cells with one label copy one contiguous piece of the photo.
    """
    ny, nx, _ = feats.shape

    def cost(j, i, y, x):
        sy, sx = j + y, i + x
        ok = (sy >= 0) & (sy < ny) & (sx >= 0) & (sx < nx)
        sy, sx = np.clip(sy, 0, ny - 1), np.clip(sx, 0, nx - 1)
        ok &= sources[sy, sx]
        return np.where(ok, ((feats[j, i] - feats[sy, sx]) ** 2).sum(-1), np.inf)

    own = cost(tj, ti, oy, ox)
    offs, counts = np.unique(np.stack([oy, ox], 1), axis=0, return_counts=True)
    labels = [tuple(o) for o in offs[np.argsort(-counts)][:N_OFFSETS]]
    bh, bw = int(tj.max() - tj.min() + 2), int(ti.max() - ti.min() + 2)
    labels += [(dy * bh, dx * bw) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    lab = np.asarray(labels, np.int64)
    data = np.stack([cost(tj, ti, y, x) for y, x in lab], 1)  # (targets, labels)
    best = data.min(1)
    finite = best[np.isfinite(best)]
    lam = COHERENCE * (float(np.median(finite)) if finite.size else float(np.median(own))) + 1e-3
    # the cell's own best match is a last resort, for cells that no shared offset can serve
    data = np.concatenate([data, np.where(np.isfinite(best), np.inf, own)[:, None]], 1)
    cur = np.argmin(data, 1)
    grid = np.full((ny, nx), -1, np.int64)
    nb = ((-1, 0), (1, 0), (0, -1), (0, 1))
    own_label = len(lab)
    for _ in range(iters):
        for parity in (0, 1):
            grid[tj, ti] = np.where(cur == own_label, -2 - np.arange(len(tj)), cur)  # own labels never agree
            sel = np.flatnonzero((tj + ti) % 2 == parity)
            j, i = tj[sel], ti[sel]
            e = data[sel].copy()
            for dy, dx in nb:
                jj, ii = j + dy, i + dx
                inside = (jj >= 0) & (jj < ny) & (ii >= 0) & (ii < nx)
                nl = np.where(inside, grid[np.clip(jj, 0, ny - 1), np.clip(ii, 0, nx - 1)], -1)
                has = nl != -1
                # disagreeing with a neighbour costs lam for every label but the neighbour's own
                e += lam * has[:, None]
                agree = has & (nl >= 0)
                e[np.flatnonzero(agree), nl[agree]] -= lam
            cur[sel] = np.argmin(e, 1)
    chosen = cur < own_label
    oy = np.where(chosen, lab[np.minimum(cur, own_label - 1), 0], oy)
    ox = np.where(chosen, lab[np.minimum(cur, own_label - 1), 1], ox)
    return oy, ox


def _cell_means(img: np.ndarray, c: int) -> np.ndarray:
    """Means of c x c cells (area resampling)."""
    import cv2

    h, w = img.shape[:2]
    return cv2.resize(img, (max(1, w // c), max(1, h // c)), interpolation=cv2.INTER_AREA)


def aggregate_residuals(image: np.ndarray, hole: np.ndarray, coarse: np.ndarray, cell: int = 8,
                        gain: float = 1.0, locality: float = 0.5, seed: int = 0) -> np.ndarray:
    """Add the photo's own high-frequency detail to a smooth fill, at full resolution.

    Args:
        image: (H, W, 3) uint8, the photo (hole pixels are ignored).
        hole: (H, W) bool, True = fill.
        coarse: (H, W, 3) float, the fill in [0, 255] at full resolution (e.g. a network's fill of
            a downscaled crop, upsampled); only its hole pixels are used.
        cell: residual cell side in pixels (:func:`cell_for_scale`); the low-pass keeps structures
            larger than about one cell and the residual everything finer.
        gain: scale of the copied residual (1 = the sources' own contrast).
        locality: weight of the distance between a hole cell and a source cell in the match
            (positions in units of the photo's longer side); 0 picks by appearance alone.
        seed: seeds the choice of scored sources when there are more than ``MAX_SOURCES``.

    Returns:
        (H, W, 3) uint8: the photo with the hole filled by the low-passed fill plus the aggregated
        residual; every known pixel is the input pixel.
    """
    import cv2
    import torch

    if image.shape[:2] != hole.shape or coarse.shape != image.shape:
        raise ValueError(f"image {image.shape}, hole {hole.shape} and coarse {coarse.shape} differ")
    if cell < 2:
        raise ValueError("cell must be at least 2 pixels")
    h, w = hole.shape
    comp = coarse.astype(np.float32)  # a fresh copy
    np.copyto(comp, image, where=~hole[..., None], casting="unsafe")
    sigma = cell / 2.0
    low = cv2.GaussianBlur(comp, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    out = image.copy()
    if not hole.any():
        return out
    mc = max(cell, MATCH_CELL)
    reach = int(math.ceil(3 * sigma))
    ii = _integral(hole)
    found = _match(low, hole, ii, mc, reach, locality, seed)
    if found is None:  # nothing to copy from: the smooth fill alone
        out[hole] = np.clip(np.rint(coarse[hole]), 0, 255).astype(np.uint8)
        return out
    residual = torch.from_numpy(comp - low)

    c, size = cell, 2 * cell
    gy0, gx0, ny, nx = _grid(h, w, c)
    targets = _box_count(ii, gy0, gx0, size) > 0
    tj, ti = np.nonzero(targets)  # window row, column
    if mc == c:
        _, _, sy, sx = found  # the same windows, in the same raster order, as (tj, ti)
    else:
        # each residual window takes the offset of the match window whose centre is nearest its own
        mty, mtx, msy, msx = found
        lut_y = np.full((math.ceil(h / mc) + 1, math.ceil(w / mc) + 1), -1, np.int64)
        lut_y[(mty + mc) // mc, (mtx + mc) // mc] = np.arange(len(mty))
        ty, tx = gy0[tj, ti], gx0[tj, ti]
        k = lut_y[np.clip((ty + c + mc // 2) // mc, 0, lut_y.shape[0] - 1),
                  np.clip((tx + c + mc // 2) // mc, 0, lut_y.shape[1] - 1)]
        miss = k < 0  # its match window does not touch the hole: take any neighbour's offset
        if miss.any():
            k[miss] = np.argmin(np.abs(mty[None, :] - ty[miss, None]) + np.abs(mtx[None, :] - tx[miss, None]), 1)
        sy = np.clip(ty + (msy - mty)[k], 0, h - size)
        sx = np.clip(tx + (msx - mtx)[k], 0, w - size)

    # Paste windowed source residuals at the target windows (overlap-add). Windows of one parity
    # (even/odd row, even/odd column) tile the plane without overlapping: four dense placements.
    win = torch.from_numpy(_window(c))[..., None]
    ar = torch.arange(size)
    sy_t, sx_t = torch.from_numpy(np.asarray(sy)), torch.from_numpy(np.asarray(sx))
    acc = torch.zeros((c * (ny + 2), c * (nx + 2), 3), dtype=torch.float32)  # origin at (-c, -c)
    for py in (0, 1):
        for px in (0, 1):
            sel = np.flatnonzero((tj % 2 == py) & (ti % 2 == px))
            if sel.size == 0:
                continue
            gh, gw = (ny - py + 1) // 2, (nx - px + 1) // 2
            grid = torch.zeros((gh, gw, size, size, 3), dtype=torch.float32)
            rs = (sy_t[sel, None] + ar)[:, :, None]
            cs = (sx_t[sel, None] + ar)[:, None, :]
            grid[torch.from_numpy(tj[sel] // 2), torch.from_numpy(ti[sel] // 2)] = residual[rs, cs] * win
            acc[py * c:py * c + gh * size, px * c:px * c + gw * size] += grid.permute(0, 2, 1, 3, 4).reshape(
                gh * size, gw * size, 3)
    detail = acc[c:c + h, c:c + w].numpy()
    out[hole] = np.clip(np.rint(low[hole] + gain * detail[hole]), 0, 255).astype(np.uint8)
    return out
