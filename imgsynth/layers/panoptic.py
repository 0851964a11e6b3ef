"""Panoptic-aware convolution and panoptic-aware upsampling (Dundar et al., CVPR 2020).

Paper: Dundar, Sapra, Liu, Tao, Catanzaro, "Panoptic-based Image Synthesis", CVPR 2020,
arXiv 2004.10289. No official code or weights were released; this module implements the
definitions of Sec. 3 of the paper and is tested rule by rule (``tests/layers/test_panoptic.py``).

Panoptic-aware convolution (a partial convolution, Liu et al. 2018, whose mask comes from the
panoptic map P instead of from holes). For the sliding window centred on pixel c:

    m(i, j) = 1 if P(i, j) == P(c) else 0
    x'      = W^T (X * M) * sum(1) / sum(M) + b      if sum(M) > 0
            = 0                                      otherwise

The mask is one map per window shared by all input channels, so ``sum(1)`` is the number of
taps ``kh * kw`` (the ratio equals ``Cin*kh*kw / (Cin*sum(M))``). The renormalisation is
:func:`imgsynth.layers.partial_conv.renormalize` (NVIDIA's rule, exact here: for S >= 1 the
``1e-8`` it adds is below float32 resolution). The kernel is shared with a plain convolution:
:class:`PanopticAwareConv2d` is an ``nn.Conv2d`` with the same ``weight``/``bias`` keys.

Choices where the paper is silent (each tested):

- Zero padding counts as *another* segment: a padding tap never equals the centre's id, so
  its mask entry is 0 (it still counts in ``sum(1)``, as in NVIDIA's partial convolution). A
  window that lies entirely inside one segment and away from the border therefore gives exactly
  the plain convolution.
- Kernels must have odd sizes (the centre of an even window is undefined). A window whose
  centre falls into the padding (``padding > dilation * (k // 2)``) has M = 0 and outputs 0.
- An integer (N, H, W) tensor given instead of features is read as labels, one-hot over
  ``in_channels``: the same numbers as the convolution of the one-hot map, computed as a table
  lookup (much cheaper for the label maps of the normalisation branches).

Panoptic-aware upsampling (Algorithm 1, x2). Given features F^d (h, w) with panoptic map P^d
and the panoptic map P^u at (2h, 2w), every output pixel (i, j) (i = row, j = column) takes the
first source in the order

    (i//2, j//2),  (i//2 + 1, j//2),  (i//2, j//2 + 1),  (i//2 + 1, j//2 + 1)

whose id P^d equals P^u(i, j); the correction mask M is 1 where some source matched. Pixels
left with M = 0 belong to segments that appear only at the higher resolution and get

    F^u = F^u * M + (1 - M) * f_holefilling(S^u)

where f_holefilling is a panoptic-aware convolution (on P^u) of the semantic map S^u at the
higher resolution. Choices: i indexes rows, so the pixel below has priority over the pixel to
the right; a source index past the bottom or right border (i//2 + 1 == h, j//2 + 1 == w) is not
a match. Clamping it to the border instead gives the same result, because the clamped source is
always one that an earlier pass already tried (tested).

How it is computed (exact reformulations, no loop over pixels): where sum(M) = k*k (the window
is inside the image and inside one segment) the definition is the plain convolution, so the
plain convolution runs once and only the other windows (``PanopticWindows.partial``: segment
boundaries and the image border) are recomputed from their gathered, masked taps, one GEMM per
chunk. The upsampling is one gather of the chosen sources, then ``where(M, F^u, f(S^u))``, which
equals the formula above for finite values. The only loops are over kernel taps and the four
passes.

Deviations from the original: none known in the definitions; the choices above fill the gaps.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from imgsynth.layers.partial_conv import renormalize

_Pair = tuple[int, int]

PASSES: tuple[_Pair, ...] = ((0, 0), (1, 0), (0, 1), (1, 1))
"""Algorithm 1's source offsets (row, column) from (i//2, j//2), in priority order."""


def _pair(v: int | Sequence[int]) -> _Pair:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _ids3(panoptic: torch.Tensor, what: str = "panoptic") -> torch.Tensor:
    """(N, H, W) or (N, 1, H, W) integer ids -> (N, H, W)."""
    if panoptic.is_floating_point() or panoptic.is_complex() or panoptic.dtype == torch.bool:
        # float ids would merge neighbouring ids once cast to the model dtype (bf16 keeps 8 bits)
        raise ValueError(f"{what} ids must be an integer tensor, got {panoptic.dtype}")
    if panoptic.dim() == 4 and panoptic.shape[1] == 1:
        return panoptic[:, 0]
    if panoptic.dim() != 3:
        raise ValueError(f"{what} ids must be (N, H, W) or (N, 1, H, W), got {tuple(panoptic.shape)}")
    return panoptic


def nearest_index(size_in: int, size_out: int, device: torch.device | None = None) -> torch.Tensor:
    """Source indices of PyTorch's legacy 'nearest' resize along one axis, (size_out,) int64.

    Computed by ``F.interpolate`` itself on an index ramp, so it follows that function's rule
    (``floor(dst * in / out)``) on every device bit for bit.
    """
    ramp = torch.arange(size_in, dtype=torch.float32, device=device).view(1, 1, size_in)
    return F.interpolate(ramp, size=size_out, mode="nearest").view(size_out).long()


def resize_ids(panoptic: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize an integer id map with legacy 'nearest', the rule SPADE uses for label maps.

    ``panoptic`` (N, H, W) or (N, 1, H, W) integer -> the same rank at ``size`` = (h, w), same
    dtype. Identical to ``F.interpolate(x, size, mode="nearest")``, which has no integer kernels.
    """
    ids = _ids3(panoptic)
    h, w = int(size[0]), int(size[1])
    if tuple(ids.shape[-2:]) != (h, w):
        rows = nearest_index(ids.shape[-2], h, ids.device)
        cols = nearest_index(ids.shape[-1], w, ids.device)
        ids = ids.index_select(1, rows).index_select(2, cols)
    return ids.unsqueeze(1) if panoptic.dim() == 4 else ids


class PanopticWindows(NamedTuple):
    """Per-window panoptic masks for one convolution geometry (see :func:`panoptic_windows`).

    ``mask``: (N, kh*kw, H', W') bool, tap t = dy*kw + dx of the window of each output position
    is 1 where its id equals the window centre's. ``count``: (N, 1, H', W') float32, sum(M).
    ``partial``: (N, H', W') bool, sum(M) < kh*kw: the windows that touch another segment or
    the padding, the only ones where the result can differ from the plain convolution.
    ``geometry``: (kernel_size, stride, padding, dilation) as pairs.
    """

    mask: torch.Tensor
    count: torch.Tensor
    partial: torch.Tensor
    geometry: tuple[_Pair, _Pair, _Pair, _Pair]


def _tap_slices(
    k: _Pair, s: _Pair, d: _Pair, out: _Pair
) -> list[tuple[slice, slice]]:
    """Slices of the padded input picking tap (dy, dx) of every output position, tap order."""
    return [
        (slice(dy * d[0], dy * d[0] + s[0] * (out[0] - 1) + 1, s[0]),
         slice(dx * d[1], dx * d[1] + s[1] * (out[1] - 1) + 1, s[1]))
        for dy in range(k[0]) for dx in range(k[1])
    ]


def _out_size(size: _Pair, k: _Pair, s: _Pair, p: _Pair, d: _Pair) -> _Pair:
    h, w = ((size[a] + 2 * p[a] - d[a] * (k[a] - 1) - 1) // s[a] + 1 for a in range(2))
    return h, w


def panoptic_windows(
    panoptic: torch.Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
) -> PanopticWindows:
    """The panoptic masks M of every sliding window of a convolution geometry.

    Args:
        panoptic: (N, H, W) or (N, 1, H, W) integer panoptic ids (any values; only equality
            matters).
        kernel_size: odd sizes only (the window centre must be a pixel).
        stride, padding, dilation: as for ``nn.Conv2d`` (zero padding).

    Returns:
        :class:`PanopticWindows`; padding taps are 0 (padding never equals the centre's id).
    """
    k, s, p, d = _pair(kernel_size), _pair(stride), _pair(padding), _pair(dilation)
    if k[0] % 2 == 0 or k[1] % 2 == 0:
        raise ValueError(f"panoptic-aware windows need odd kernel sizes, got {k}")
    ids = _ids3(panoptic)
    n, h, w = ids.shape
    out = _out_size((h, w), k, s, p, d)
    if out[0] < 1 or out[1] < 1:
        raise ValueError(f"input {h}x{w} is too small for kernel {k} with padding {p} and dilation {d}")
    # Padding is marked by a separate validity map rather than a sentinel id, so no id value
    # (negative, huge) can ever be mistaken for padding.
    inside = torch.ones(n, h, w, dtype=torch.uint8, device=ids.device)
    if p != (0, 0):
        ids = F.pad(ids, (p[1], p[1], p[0], p[0]))
        inside = F.pad(inside, (p[1], p[1], p[0], p[0]))
    inside = inside.bool()
    slices = _tap_slices(k, s, d, out)
    cy, cx = slices[(k[0] // 2) * k[1] + k[1] // 2]
    centre, centre_in = ids[:, cy, cx], inside[:, cy, cx]
    mask = torch.stack([(ids[:, sy, sx] == centre) & inside[:, sy, sx] & centre_in for sy, sx in slices], 1)
    count = mask.sum(1, keepdim=True, dtype=torch.float32)
    return PanopticWindows(mask, count, count[:, 0] < mask.shape[1], (k, s, p, d))


_CHUNK = 8192  # windows recomputed per batch (bounds the gathered (B, k*k*Cin) block)


def _tap_offsets(win: PanopticWindows, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    (kh, kw), _, _, (dh, dw) = win.geometry
    dy = torch.arange(kh, device=device).repeat_interleave(kw) * dh
    dx = torch.arange(kw, device=device).repeat(kh) * dw
    return dy, dx


def _flat_taps(win: PanopticWindows, where: torch.Tensor, hw: tuple[int, int], shift: _Pair) -> torch.Tensor:
    """(B, k*k) flat positions in an (N, H, W) grid of the taps of the windows ``where`` (B, 3).

    ``shift`` is the padding the grid lacks: tap rows/columns are moved back by it and clamped
    into the grid. Clamped taps are padding taps, whose mask is 0, so what they read is unused.
    """
    _, (sy, sx), _, _ = win.geometry
    h, w = hw
    n, y, x = (t.unsqueeze(1) for t in where.unbind(1))
    dy, dx = _tap_offsets(win, where.device)
    rows = (y * sy + dy - shift[0]).clamp_(0, h - 1)
    cols = (x * sx + dx - shift[1]).clamp_(0, w - 1)
    return (n * h + rows) * w + cols


def _masked_dense(x: torch.Tensor, weight: torch.Tensor, win: PanopticWindows, where: torch.Tensor) -> torch.Tensor:
    """W^T (X * M) of the windows ``where`` (B, 3) -> (B, Cout), from the unpadded input."""
    cout, cin, kh, kw = weight.shape
    taps = kh * kw
    xl = x.permute(0, 2, 3, 1).reshape(-1, cin)  # (N*H*W, Cin); a view for channels-last
    wt = weight.permute(2, 3, 1, 0).reshape(taps * cin, cout)  # rows ordered (tap, channel)
    out = []
    for lo in range(0, where.shape[0], _CHUNK):
        w = where[lo : lo + _CHUNK]
        flat = _flat_taps(win, w, (x.shape[-2], x.shape[-1]), win.geometry[2])
        m = win.mask[w[:, 0], :, w[:, 1], w[:, 2]].unsqueeze(2)  # (B, taps, 1)
        taps_x = xl.index_select(0, flat.view(-1)).view(-1, taps, cin)
        out.append(taps_x.mul_(m.to(taps_x.dtype)).view(-1, taps * cin) @ wt)
    return out[0] if len(out) == 1 else torch.cat(out)


def _label_table(weight: torch.Tensor) -> torch.Tensor:
    """(L*k*k + 1, Cout) lookup table: row ``label * k*k + tap`` = weight[:, label, tap]; last row 0."""
    cout, nlab, kh, kw = weight.shape
    table = weight.permute(1, 2, 3, 0).reshape(nlab * kh * kw, cout)
    return torch.cat([table, table.new_zeros(1, cout)])


def _label_rows(lp: torch.Tensor, taps: int, nlab: int) -> torch.Tensor:
    """Table rows for padded labels ``lp`` at tap positions; padding (-1) maps to the zero row."""
    t = torch.arange(taps, device=lp.device)
    return torch.where(lp < 0, nlab * taps, lp * taps + t)


def _plain_labels(lp: torch.Tensor, table: torch.Tensor, bias: torch.Tensor | None, win: PanopticWindows,
                  nlab: int) -> torch.Tensor:
    """Plain conv of ``one_hot(labels)`` + bias at every position via ``embedding_bag``."""
    (kh, kw), s, _, d = win.geometry
    n, ho, wo = win.mask.shape[0], win.mask.shape[2], win.mask.shape[3]
    cols = torch.stack([lp[:, sy, sx] for sy, sx in _tap_slices((kh, kw), s, d, (ho, wo))], -1)
    rows = _label_rows(cols, kh * kw, nlab).reshape(-1, kh * kw)
    out = F.embedding_bag(rows, table, mode="sum")
    if bias is not None:
        out = out.add_(bias.to(out.dtype))
    return out.view(n, ho, wo, -1).permute(0, 3, 1, 2)


def _masked_labels(lp: torch.Tensor, table: torch.Tensor, win: PanopticWindows, where: torch.Tensor,
                   nlab: int) -> torch.Tensor:
    """W^T (one_hot(labels) * M) of the windows ``where`` -> (B, Cout): masked table sums."""
    (kh, kw) = win.geometry[0]
    flat = _flat_taps(win, where, (lp.shape[-2], lp.shape[-1]), (0, 0))
    rows = _label_rows(lp.reshape(-1)[flat], kh * kw, nlab)
    m = win.mask[where[:, 0], :, where[:, 1], where[:, 2]].to(table.dtype)
    return F.embedding_bag(rows, table, mode="sum", per_sample_weights=m)


def panoptic_conv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, windows: PanopticWindows
) -> torch.Tensor:
    """Panoptic-aware convolution (Sec. 3.1), functional form.

    Args:
        x: (N, Cin, H, W) float features, or (N, H, W) int64 labels in [0, Cin) standing for
            their one-hot map.
        weight: (Cout, Cin, kh, kw); bias: (Cout,) or None.
        windows: :func:`panoptic_windows` of the panoptic map at (H, W) for this geometry.

    Returns:
        (N, Cout, H', W') in the weight's dtype: ``W^T (X*M) * kh*kw / sum(M) + b`` where
        sum(M) > 0, exactly 0 elsewhere.

    Computed exactly but not literally: where sum(M) = k*k (the window lies inside the image and
    inside one segment) the definition reduces to the plain convolution ``W^T X + b``, so the
    plain convolution runs everywhere and only the windows in ``windows.partial`` are recomputed
    from their gathered, masked taps and renormalised
    (:func:`imgsynth.layers.partial_conv.renormalize`).
    """
    k, s, p, d = windows.geometry
    if tuple(weight.shape[-2:]) != k:
        raise ValueError(f"windows are for kernel {k}, weight is {tuple(weight.shape[-2:])}")
    n, taps = windows.mask.shape[0], windows.mask.shape[1]
    pad = (p[1], p[1], p[0], p[0])
    if x.is_floating_point():
        if x.dim() != 4 or x.shape[1] != weight.shape[1]:
            raise ValueError(f"expected (N, {weight.shape[1]}, H, W) input, got {tuple(x.shape)}")
        out = F.conv2d(x, weight, bias, s, p, d)
    else:
        if x.dim() != 3:
            raise ValueError(f"label input must be (N, H, W) integers, got {tuple(x.shape)}")
        nlab = weight.shape[1]
        lp = F.pad(x.long(), pad, value=-1) if p != (0, 0) else x.long()
        table = _label_table(weight)
        out = _plain_labels(lp, table, bias, windows, nlab)
    if out.shape[0] != n or tuple(out.shape[-2:]) != tuple(windows.mask.shape[-2:]):
        raise ValueError(f"panoptic windows {tuple(windows.mask.shape)} do not match the input {tuple(x.shape)}")
    where = windows.partial.nonzero()
    if where.shape[0] == 0:
        return out
    if x.is_floating_point():
        raw = _masked_dense(x, weight, windows, where)
    else:
        raw = _masked_labels(lp, table, windows, where, nlab)
    count = windows.count[where[:, 0], :, where[:, 1], where[:, 2]]  # (B, 1)
    fixed, _ = renormalize(raw.view(*raw.shape, 1, 1), count.view(-1, 1, 1, 1), taps, bias)
    # the plain conv's output is not needed by its backward, so it can be patched in place
    out.permute(0, 2, 3, 1).index_put_(tuple(where.unbind(1)), fixed.view(raw.shape).to(out.dtype))
    return out


class PanopticAwareConv2d(nn.Conv2d):
    """Panoptic-aware convolution (Dundar et al. 2020, Sec. 3.1): a partial convolution whose
    per-window mask is "same panoptic id as the window centre".

    State dict: ``weight`` (Cout, Cin, kh, kw) and ``bias`` (Cout,) exactly as ``nn.Conv2d``,
    so a plain convolution's weights load unchanged. Odd kernel sizes, zero padding, groups 1.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
    ) -> None:
        if isinstance(padding, str):
            raise ValueError("padding must be an int or a pair (zero padding of that many pixels)")
        k = _pair(kernel_size)
        if k[0] % 2 == 0 or k[1] % 2 == 0:
            raise ValueError(f"panoptic-aware convolution needs odd kernel sizes, got {k}")
        super().__init__(in_channels, out_channels, k, stride=stride, padding=padding, dilation=dilation, bias=bias)

    @property
    def geometry(self) -> tuple[_Pair, _Pair, _Pair, _Pair]:
        """(kernel_size, stride, padding, dilation), each a pair."""
        return (_pair(self.kernel_size), _pair(self.stride), _pair(self.padding), _pair(self.dilation))

    def windows(self, panoptic: torch.Tensor) -> PanopticWindows:
        """:func:`panoptic_windows` of ``panoptic`` (N, [1,] H, W) for this layer's geometry."""
        return panoptic_windows(panoptic, *self.geometry)

    def forward(self, x: torch.Tensor, panoptic: torch.Tensor | PanopticWindows) -> torch.Tensor:
        """Panoptic-aware convolution of ``x``.

        Args:
            x: (N, Cin, H, W) float features, or (N, H, W) int64 labels read as one-hot.
            panoptic: (N, H, W) / (N, 1, H, W) integer ids at (H, W), or precomputed
                :class:`PanopticWindows` of this layer's geometry (to share them between
                layers that see the same map).

        Returns:
            (N, Cout, H', W'), 0 where a window holds no pixel of its centre's segment.
        """
        win = panoptic if isinstance(panoptic, PanopticWindows) else self.windows(panoptic)
        if win.geometry != self.geometry:
            raise ValueError(f"windows are for geometry {win.geometry}, this layer has {self.geometry}")
        return panoptic_conv2d(x, self.weight, self.bias, win)


def upsample_sources(
    panoptic_low: torch.Tensor, panoptic_high: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1's choice of source pixel for every pixel of the x2 grid.

    Args:
        panoptic_low: (N, h, w) or (N, 1, h, w) integer ids P^d.
        panoptic_high: (N, 2h, 2w) or (N, 1, 2h, 2w) integer ids P^u.

    Returns:
        ``(index, correction)``: index (N, 2h, 2w) int64, the flat position ``row * w + col`` in
        the low grid that pixel (i, j) copies (0 where nothing matched), and correction
        (N, 2h, 2w) bool, M^correction (True where a source matched). Sources are tried in the
        order of :data:`PASSES`, each only where no earlier one matched; a source past the
        bottom/right border never matches.
    """
    lo, hi = _ids3(panoptic_low, "panoptic_low"), _ids3(panoptic_high, "panoptic_high")
    n, h, w = lo.shape
    if tuple(hi.shape) != (n, 2 * h, 2 * w):
        raise ValueError(f"panoptic_high must be (N, {2 * h}, {2 * w}), got {tuple(hi.shape)}")
    dev = lo.device
    rows = torch.arange(2 * h, device=dev) // 2
    cols = torch.arange(2 * w, device=dev) // 2
    index = torch.zeros(n, 2 * h, 2 * w, dtype=torch.long, device=dev)
    filled = torch.zeros(n, 2 * h, 2 * w, dtype=torch.bool, device=dev)
    for a, b in PASSES:
        r, c = rows + a, cols + b
        inside = (r < h).view(-1, 1) & (c < w).view(1, -1)
        r, c = r.clamp(max=h - 1), c.clamp(max=w - 1)
        source_ids = lo.index_select(1, r).index_select(2, c)
        match = (source_ids == hi) & inside & ~filled
        index = torch.where(match, (r.view(-1, 1) * w + c.view(1, -1)), index)
        filled |= match
    return index, filled


class PanopticAwareUpsample(nn.Module):
    """Panoptic-aware x2 upsampling (Dundar et al. 2020, Algorithm 1) with hole filling.

    Holds ``hole_filling``, a :class:`PanopticAwareConv2d` from the ``semantic_nc``-channel
    semantic map to the ``channels`` feature channels ('same' padding), keys
    ``hole_filling.weight`` / ``hole_filling.bias``.
    """

    def __init__(self, semantic_nc: int, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.hole_filling = PanopticAwareConv2d(semantic_nc, channels, kernel_size, padding=kernel_size // 2)

    def forward(
        self,
        x: torch.Tensor,
        panoptic_low: torch.Tensor,
        panoptic_high: torch.Tensor,
        semantic_high: torch.Tensor,
        hole_windows: PanopticWindows | None = None,
        return_correction: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Upsample ``x`` by 2.

        Args:
            x: (N, C, h, w) float features F^d.
            panoptic_low: (N, [1,] h, w) integer ids P^d of ``x``'s grid.
            panoptic_high: (N, [1,] 2h, 2w) integer ids P^u.
            semantic_high: S^u, (N, semantic_nc, 2h, 2w) float, or (N, 2h, 2w) int64 labels
                (one-hot over semantic_nc).
            hole_windows: optional precomputed ``hole_filling.windows(panoptic_high)``.
            return_correction: also return M^correction.

        Returns:
            F^u (N, C, 2h, 2w) in ``x``'s dtype (and M^correction (N, 1, 2h, 2w) 0/1 in that dtype).
        """
        index, filled = upsample_sources(panoptic_low, panoptic_high)
        if x.dim() != 4 or (x.shape[0], *x.shape[-2:]) != (index.shape[0], index.shape[1] // 2, index.shape[2] // 2):
            raise ValueError(f"x must be (N, C, {index.shape[1] // 2}, {index.shape[2] // 2}) like panoptic_low, "
                             f"got {tuple(x.shape)}")
        n, c, h, w = x.shape
        # one gather of C-vectors over the flattened batch: a view for channels-last features
        rows = x.permute(0, 2, 3, 1).reshape(n * h * w, c)
        source = index + (torch.arange(n, device=index.device) * (h * w)).view(n, 1, 1)
        up = rows.index_select(0, source.view(-1)).view(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)
        win = hole_windows if hole_windows is not None else self.hole_filling.windows(panoptic_high)
        hole = self.hole_filling(semantic_high, win).to(up.dtype)
        mask = filled.unsqueeze(1)
        # (1 - M) * f(S^u) + M * F^u; `where` gives the same numbers for finite values
        out = torch.where(mask, up, hole)
        if return_correction:
            return out, mask.to(out.dtype)
        return out
