"""Panoptic-based image synthesis: a SPADE generator with panoptic-aware convolution and upsampling.

Paper: Dundar, Sapra, Liu, Tao, Catanzaro, "Panoptic-based Image Synthesis", CVPR 2020,
arXiv 2004.10289. No official code or weights have been released; this file is written from the
paper's definitions (layers in :mod:`imgsynth.layers.panoptic`, each rule tested). The generator
around them is SPADE's (Park et al. 2019, https://github.com/NVlabs/SPADE, CC BY-NC-SA 4.0;
architecture only, no SPADE code or weights are bundled).

The generator maps a one-hot semantic map plus a panoptic id map to an RGB image. It is the
SPADE generator (``fc`` on the label map at the latent grid, SPADE residual blocks, ``conv_img``
+ tanh) in which

- every convolution of every SPADE normalisation branch (``mlp_shared``, ``mlp_gamma``,
  ``mlp_beta``) is a panoptic-aware convolution on the panoptic map at that resolution, so the
  modulation of a pixel only sees pixels of its own segment (Sec. 3.1), and
- every 2x nearest upsampling between blocks is a panoptic-aware upsampling (Algorithm 1, Sec.
  3.2) whose holes are filled by a panoptic-aware convolution of the semantic map.

Deviations / choices (the paper leaves these open; each is tested in
``tests/models/test_panoptic_model.py``):

- Inputs: ``forward(input_semantics, panoptic)``: the one-hot semantic map exactly as SPADE
  takes it (``label_nc`` + optional dontcare channel, **no** instance-edge channel: the panoptic
  map carries instance identity, so ``use_instance`` is False) and the (N, H, W) integer panoptic
  id map at the same size. Ids only need to be unique per segment (COCO ``R + 256 G + 256^2 B``,
  Cityscapes ``class * 1000 + instance``, ...).
- Resolutions: both maps are resized to each block's grid with the legacy ``'nearest'`` rule
  (``floor(dst * in / out)``), the rule SPADE uses for its label maps, from the full-size input.
  The low and high maps of an upsampling are therefore the same map at two resolutions.
- Replaced convolutions: the three convolutions of each SPADE branch, plus the hole-filling
  convolutions. The residual-path convolutions (``conv_0``, ``conv_1``, ``conv_s``),
  ``conv_img`` and the head ``fc`` stay plain convolutions (``panoptic_fc=True`` makes ``fc``
  panoptic-aware as well).
- Hole filling: one panoptic-aware conv per upsampling (``upsample.{i}.hole_filling``, in order
  of application: before ``G_middle_0``, before ``G_middle_1`` in the "more"/"most" modes, then
  before ``up_0`` ... ``up_3`` and ``up_4``), from the ``semantic_nc``-channel one-hot map S^u
  at the higher resolution to the feature channels, kernel ``kernel_size`` ('same' padding).
- Algorithm 1 indexing: i = row, j = column (the pixel below has priority over the pixel to the
  right); sources past the bottom/right border never match (identical to clamping them).
- Padding of the panoptic convolutions counts as a different segment (never matches the centre).
- ``latent_downsample="area"`` gives the head ``fc`` the mean of the semantic map over each
  latent cell, as in :class:`imgsynth.models.spade.SPADEGenerator` (default ``"nearest"``, the
  SPADE rule). Not with ``panoptic_fc``, whose convolution reads one label per cell.
- No style encoder (``use_vae``): the paper's experiments do not use one.
- State-dict keys are those of :class:`imgsynth.models.spade.SPADEGenerator` with
  ``use_instance=False``, plus ``upsample.*``: a SPADE state dict loads with ``strict=False``
  (only the hole-filling convs stay at their initialisation).
- Speed: on CPU the one-hot maps are processed as label indices (exact table lookups) and the
  forward runs in channels-last memory; panoptic-aware convs run the plain convolution and
  recompute only the windows that touch another segment (exact, see the layer module).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from imgsynth.layers.label_maps import one_hot
from imgsynth.layers.panoptic import (
    PanopticAwareConv2d,
    PanopticAwareUpsample,
    PanopticWindows,
    panoptic_windows,
    resize_ids,
)
from imgsynth.layers.spade_norm import (
    NORM_TYPES,
    SPADE,
    SPADEResnetBlock,
    modulate,
    resize_nearest,
)
from imgsynth.models.registry import register_model
from imgsynth.models.spade import (
    LATENT_DOWNSAMPLING,
    UPSAMPLING_MODES,
    LatentGrid,
    latent_grid,
    latent_map,
    run_trunk,
)

Semantic = torch.Tensor
"""A semantic map at one resolution: (N, C, H, W) float one-hot, or (N, H, W) int64 labels."""


def _panoptic_conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Module:
    return PanopticAwareConv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    # as in the SPADE generator: CPU (oneDNN) and CUDA convolutions gain from it, MPS has had bugs
    if t.device.type in ("cpu", "cuda"):
        return t.contiguous(memory_format=torch.channels_last)
    return t


def onehot_labels(seg: torch.Tensor) -> torch.Tensor | None:
    """(N, C, H, W) -> (N, H, W) int64 labels if ``seg`` is exactly one-hot, else None."""
    if torch.compiler.is_exporting():  # a graph (ONNX) takes the dense path: no data-dependent branch
        return None
    lo, hi = torch.aminmax(seg, dim=1)
    if bool((lo >= 0).all()) and bool((hi == 1).all()) and bool((seg.sum(1) == 1).all()):
        return seg.argmax(1)
    return None


class PanopticResnetBlock(SPADEResnetBlock):
    """SPADE residual block whose normalisation branches are panoptic-aware.

    Same structure and keys as :class:`SPADEResnetBlock`; every ``mlp_shared``/``mlp_gamma_beta``
    conv is a :class:`PanopticAwareConv2d`. Call it as ``block(x, semantic, windows)``; its SPADE
    layers are not meant to be called on their own (their convs need the panoptic windows).
    """

    def __init__(
        self, fin: int, fout: int, semantic_nc: int, *, nhidden: int = 128, kernel_size: int = 3,
        norm: str = "batch", spectral_norm: bool = False,
    ) -> None:
        super().__init__(
            fin, fout, semantic_nc, nhidden=nhidden, kernel_size=kernel_size, norm=norm,
            spectral_norm=spectral_norm, conv_factory=_panoptic_conv,
        )

    @staticmethod
    def _modulated(norm: SPADE, hidden: torch.Tensor, x: torch.Tensor, windows: PanopticWindows) -> torch.Tensor:
        gamma, beta = norm.mlp_gamma_beta(hidden, windows).chunk(2, dim=1)
        return modulate(norm.param_free_norm(x), gamma, beta)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, semantic: Semantic, windows: PanopticWindows
    ) -> torch.Tensor:
        """x (N, fin, H, W); semantic at (H, W); windows of the panoptic map at (H, W) for the
        branch geometry -> (N, fout, H, W)."""
        norms = [self.norm_0, self.norm_s, self.norm_1] if self.learned_shortcut else [self.norm_0, self.norm_1]
        # one conv per norm rather than one with concatenated weights: channel slices of a fused
        # output are strided views that the next convolution would have to copy
        hidden = [F.relu_(n.mlp_shared[0](semantic, windows)) for n in norms]
        if self.learned_shortcut:
            h0, hs, h1 = hidden
            x_s = self.conv_s(self._modulated(self.norm_s, hs, x, windows))
        else:
            (h0, h1), x_s = hidden, x
        dx = self.conv_0(F.leaky_relu_(self._modulated(self.norm_0, h0, x, windows), 0.2))
        dx = self.conv_1(F.leaky_relu_(self._modulated(self.norm_1, h1, dx, windows), 0.2))
        return dx.add_(x_s)


@register_model(
    "panoptic",
    task="translate",
    tiny={"label_nc": 4, "contain_dontcare": True, "ngf": 2, "crop_size": 32, "aspect_ratio": 1.0,
          "num_upsampling_layers": "normal", "nhidden": 8},
)
class PanopticGenerator(LatentGrid, nn.Module):
    """Panoptic-based image synthesis generator (Dundar et al. 2020): semantic + panoptic map -> RGB.

    Defaults are the paper's Cityscapes setting on SPADE's Cityscapes generator (35 labels, no
    dontcare, 256x512 output, "more" upsampling). See the module docstring for every choice.

    Args:
        label_nc: number of semantic labels (without the dontcare label).
        contain_dontcare: one more one-hot channel for the dontcare label.
        ngf: base width; the latent grid has ``16 * ngf`` channels.
        crop_size, aspect_ratio: training crop width and W/H; they fix the latent grid.
        latent_size: explicit ``[sh, sw]`` latent grid (overrides crop_size/aspect_ratio).
        latent_from_input: derive the grid from each input's size instead.
        latent_downsample: "nearest" (one label per latent cell, SPADE's rule) or "area" (label
            fractions of each cell) for the head ``fc``'s input; see the SPADE generator.
        num_upsampling_layers: "normal" (5 upsamplings), "more" (6) or "most" (7, adds ``up_4``).
        nhidden, kernel_size, norm: SPADE branch width, kernel size (odd; also the hole-filling
            kernel) and parameter-free norm ("batch"/"syncbatch" or "instance").
        spectral_norm: spectral norm on the residual-block convs (training).
        panoptic_fc: make the head ``fc`` a panoptic-aware conv too.
    """

    use_instance = False  # no instance-edge channel: the panoptic map replaces it
    use_panoptic = True  # pipelines pass the panoptic id map as the second input

    def __init__(
        self,
        label_nc: int = 35,
        contain_dontcare: bool = False,
        ngf: int = 64,
        crop_size: int = 512,
        aspect_ratio: float = 2.0,
        latent_size: list[int] | None = None,
        latent_from_input: bool = False,
        latent_downsample: str = "nearest",
        num_upsampling_layers: str = "more",
        nhidden: int = 128,
        kernel_size: int = 3,
        norm: str = "batch",
        spectral_norm: bool = False,
        panoptic_fc: bool = False,
    ) -> None:
        super().__init__()
        if num_upsampling_layers not in UPSAMPLING_MODES:
            raise ValueError(f"num_upsampling_layers must be one of {list(UPSAMPLING_MODES)}")
        if norm not in NORM_TYPES:
            raise ValueError(f"norm must be one of {NORM_TYPES}, got {norm!r}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for panoptic-aware convolutions, got {kernel_size}")
        if latent_downsample not in LATENT_DOWNSAMPLING:
            raise ValueError(f"latent_downsample must be one of {LATENT_DOWNSAMPLING}, got {latent_downsample!r}")
        if panoptic_fc and latent_downsample != "nearest":
            raise ValueError("panoptic_fc reads one label per latent cell: use latent_downsample='nearest'")
        self.latent_downsample = latent_downsample
        self.label_nc = label_nc
        self.contain_dontcare = contain_dontcare
        self.semantic_nc = label_nc + int(contain_dontcare)
        self.ngf = ngf
        self.kernel_size = kernel_size
        self.num_upsampling_layers = num_upsampling_layers
        self.scale = 2 ** UPSAMPLING_MODES[num_upsampling_layers]
        if latent_size is not None:
            self.sh, self.sw = int(latent_size[0]), int(latent_size[1])
        else:
            self.sh, self.sw = latent_grid(crop_size, aspect_ratio, num_upsampling_layers)
        if self.sh < 1 or self.sw < 1:
            raise ValueError(f"latent grid {self.sh}x{self.sw} is empty; raise crop_size")
        self.latent_from_input = latent_from_input
        self.panoptic_fc = panoptic_fc

        nf = ngf
        fc_cls = PanopticAwareConv2d if panoptic_fc else nn.Conv2d
        self.fc = fc_cls(self.semantic_nc, 16 * nf, 3, padding=1)

        def block(fin: int, fout: int) -> PanopticResnetBlock:
            return PanopticResnetBlock(
                fin, fout, self.semantic_nc, nhidden=nhidden, kernel_size=kernel_size, norm=norm,
                spectral_norm=spectral_norm,
            )

        self.head_0 = block(16 * nf, 16 * nf)
        self.G_middle_0 = block(16 * nf, 16 * nf)
        self.G_middle_1 = block(16 * nf, 16 * nf)
        self.up_0 = block(16 * nf, 8 * nf)
        self.up_1 = block(8 * nf, 4 * nf)
        self.up_2 = block(4 * nf, 2 * nf)
        self.up_3 = block(2 * nf, 1 * nf)
        # channels of the features each upsampling receives, in order of application
        up_channels = [16 * nf] + ([16 * nf] if num_upsampling_layers in ("more", "most") else [])
        up_channels += [16 * nf, 8 * nf, 4 * nf, 2 * nf]
        final_nc = nf
        if num_upsampling_layers == "most":
            self.up_4 = block(1 * nf, nf // 2)
            up_channels.append(1 * nf)
            final_nc = nf // 2
        self.upsample = nn.ModuleList(PanopticAwareUpsample(self.semantic_nc, c, kernel_size) for c in up_channels)
        self.conv_img = nn.Conv2d(final_nc, 3, 3, padding=1)

    def _check_inputs(self, input_semantics: torch.Tensor, panoptic: torch.Tensor) -> torch.Tensor:
        if input_semantics.dim() != 4 or input_semantics.shape[1] != self.semantic_nc:
            raise ValueError(f"expected (N, {self.semantic_nc}, H, W) semantic maps, "
                             f"got {tuple(input_semantics.shape)}")
        if panoptic.is_floating_point() or panoptic.dtype == torch.bool:
            raise ValueError(f"panoptic ids must be an integer tensor (do not cast them to the model dtype), "
                             f"got {panoptic.dtype}")
        pan = panoptic[:, 0] if panoptic.dim() == 4 and panoptic.shape[1] == 1 else panoptic
        n, _, h, w = input_semantics.shape
        if tuple(pan.shape) != (n, h, w):
            raise ValueError(f"panoptic map must be (N, H, W) = {(n, h, w)} like the semantic map, "
                             f"got {tuple(panoptic.shape)}")
        return pan.to(input_semantics.device)

    def forward(self, input_semantics: torch.Tensor, panoptic: torch.Tensor) -> torch.Tensor:
        """(N, semantic_nc, H, W) one-hot float + (N, H, W) integer ids -> (N, 3, *output_size(H, W)).

        ``input_semantics`` is one-hot over ``label_nc`` (+1 dontcare) channels; ``panoptic``
        (N, H, W) or (N, 1, H, W), any integer dtype, equal values = same segment. The output
        is float in [-1, 1] in the weights' dtype.
        """
        pan = self._check_inputs(input_semantics, panoptic)
        seg = _channels_last(input_semantics.to(self.conv_img.weight.dtype))
        labels = onehot_labels(seg) if seg.device.type == "cpu" else None
        sh, sw = self.grid_size(*seg.shape[-2:])
        k = self.kernel_size
        levels: dict[tuple[int, int], tuple[torch.Tensor, Semantic, PanopticWindows]] = {}

        def level(size: tuple[int, int]) -> tuple[torch.Tensor, Semantic, PanopticWindows]:
            # ids, semantic map and branch windows of one resolution, shared by all its layers
            if size not in levels:
                ids = resize_ids(pan, size)
                sem = resize_ids(labels, size) if labels is not None else resize_nearest(seg, size)
                levels[size] = (ids, sem, panoptic_windows(ids, k, 1, k // 2, 1))
            return levels[size]

        if self.panoptic_fc:
            ids, sem, win = level((sh, sw))
            x = self.fc(sem, win if k == 3 else self.fc.windows(ids))
        else:
            x = self.fc(latent_map(seg, (sh, sw), self.latent_downsample))
        x = _channels_last(x)
        ups = iter(self.upsample)

        def run(blk: PanopticResnetBlock, x: torch.Tensor) -> torch.Tensor:
            _, sem, win = level((x.shape[-2], x.shape[-1]))
            return blk(x, sem, win)

        def up(x: torch.Tensor) -> torch.Tensor:
            ids_low = level((x.shape[-2], x.shape[-1]))[0]
            ids_high, sem_high, win_high = level((2 * x.shape[-2], 2 * x.shape[-1]))
            return next(ups)(x, ids_low, ids_high, sem_high, hole_windows=win_high)

        return run_trunk(self, x, run, up)

    def dummy_inputs(self, batch_size: int, generator: torch.Generator) -> tuple:
        """``(input_semantics, panoptic)`` at the output size: blocky random labels with 3
        instances per label, panoptic id = label * 3 + instance."""
        h, w = self.sh * self.scale, self.sw * self.scale
        cell = max(1, min(h, w) // 8)
        ch, cw = -(-h // cell), -(-w // cell)
        label = torch.randint(0, self.semantic_nc, (batch_size, ch, cw), generator=generator)
        inst = torch.randint(0, 3, (batch_size, ch, cw), generator=generator)

        def grow(t: torch.Tensor) -> torch.Tensor:
            return t.repeat_interleave(cell, 1).repeat_interleave(cell, 2)[:, :h, :w]

        label, inst = grow(label), grow(inst)
        return one_hot(label, self.semantic_nc), label * 3 + inst
