"""SPADE generator: semantic image synthesis with spatially-adaptive normalisation.

Paper: Park, Liu, Wang, Zhu, "Semantic Image Synthesis with Spatially-Adaptive Normalization",
CVPR 2019. Official code: https://github.com/NVlabs/SPADE (licence CC BY-NC-SA 4.0; released
weights are non-commercial). Checkpoints convert with :mod:`imgsynth.convert.spade`.

The generator maps a one-hot label map (plus optional dontcare and instance-edge channels) to an
RGB image: a 3x3 conv ``fc`` on the label map resized to the latent grid (or, with
``use_vae``, a linear layer on a style code z), then SPADE residual blocks with 2x nearest
upsampling between them, and ``conv_img`` + tanh.

Deviations from the original:
- ``mlp_gamma``/``mlp_beta`` are fused into ``mlp_gamma_beta`` and the three ``mlp_shared``
  convs of a block run as one conv (see :mod:`imgsynth.layers.spade_norm`); spectral norm is
  folded into plain weights by the converter (``spectral_norm=True`` re-applies it for
  training). SyncBatchNorm is ``BatchNorm2d``.
- On CPU and CUDA the blocks from 64x64 up run in channels-last memory format (faster
  convolutions); the returned image is contiguous NCHW. On CPU the ``mlp_shared`` convs of an
  exactly one-hot label map run as table lookups (:func:`imgsynth.layers.spade_norm.onehot_conv2d`).
- ``latent_from_input=True`` (not in the original) derives the latent grid from the input size
  (``H // 2**k``, ``W // 2**k``) so any multiple of ``2**k`` can be translated; at the trained
  size it equals the official grid.
- ``latent_downsample="area"`` (not in the original; default ``"nearest"`` is the official rule)
  gives ``fc`` the mean of the label map over each latent cell (label fractions) instead of the
  label map sampled at one pixel per cell. On a 1x1 latent grid (32x32 outputs) the official
  sample is the top-left pixel, background in almost every image, so the first blocks see the
  same input in every batch: their batch variance is zero, BatchNorm maps them to 0 in training
  whatever the weights, and eval mode (running statistics) turns any rounding or drift of the
  stored mean into offsets that those blocks amplify (measured in
  ``benchmarks/results/translate.md``). The area mean varies from image to image.
- The style encoder (``use_vae``) always has six stride-2 layers: the official one drops
  ``layer6`` when ``crop_size < 256`` and then cannot run (its ``fc_mu`` expects a 4x4 grid),
  so no working official encoder lacks it. Its linear layers output ``z_dim`` (official: 256,
  the official default ``z_dim``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from imgsynth.layers.label_maps import instance_edges, one_hot
from imgsynth.layers.spade_norm import NORM_TYPES, SPADEResnetBlock, resize_nearest
from imgsynth.models.registry import register_model

UPSAMPLING_MODES = {"normal": 5, "more": 6, "most": 7}
"""``num_upsampling_layers`` -> number of 2x upsamplings between latent grid and output."""


def latent_grid(crop_size: int, aspect_ratio: float, num_upsampling_layers: str) -> tuple[int, int]:
    """The official latent grid (sh, sw): ``sw = crop_size // 2**k``, ``sh = round(sw / aspect)``."""
    sw = crop_size // (2 ** UPSAMPLING_MODES[num_upsampling_layers])
    return round(sw / aspect_ratio), sw


LATENT_DOWNSAMPLING = ("nearest", "area")
"""How the label map reaches the latent grid: sampled (official) or averaged over each cell."""


def latent_map(seg: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """(N, C, H, W) label map -> (N, C, *size) input of the head ``fc``.

    ``"nearest"``: legacy nearest sampling (official SPADE, ``F.interpolate(seg, size)``);
    ``"area"``: the mean over each cell (per-label fractions of the cell; ``adaptive_avg_pool2d``).
    """
    if mode == "area":
        return F.adaptive_avg_pool2d(seg, size)
    return resize_nearest(seg, size)


CHANNELS_LAST_MIN_PIXELS = 64 * 64
"""Blocks at least this large (H*W) run channels-last on CPU/CUDA. Below it the activations are
smaller than the conv weights, which a channels-last conv would re-lay out on every call."""


def _memory_format(t: torch.Tensor) -> torch.Tensor:
    # MPS convolutions have had channels-last bugs; CPU (oneDNN) and CUDA gain from it.
    if t.device.type in ("cpu", "cuda") and t.shape[-2] * t.shape[-1] >= CHANNELS_LAST_MIN_PIXELS:
        return t.contiguous(memory_format=torch.channels_last)
    return t.contiguous()


class SPADEStyleEncoder(nn.Module):
    """The VAE style encoder (official ``ConvEncoder``): image -> (mu, logvar) of a style code.

    Six 3x3 stride-2 convs (no bias) each followed by parameter-free InstanceNorm, LeakyReLU(0.2)
    between them, then ``fc_mu`` / ``fc_var`` on the flattened 4x4 grid. Keys ``layer{i}.0.weight``,
    ``fc_mu.*``, ``fc_var.*`` (official keys with the spectral norm folded).
    """

    def __init__(self, ndf: int = 64, z_dim: int = 256, spectral_norm: bool = False) -> None:
        super().__init__()
        widths = [3, ndf, ndf * 2, ndf * 4, ndf * 8, ndf * 8, ndf * 8]
        for i in range(6):
            conv = nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1, bias=False)
            if spectral_norm:
                conv = torch.nn.utils.parametrizations.spectral_norm(conv)
            self.add_module(f"layer{i + 1}", nn.Sequential(conv, nn.InstanceNorm2d(widths[i + 1])))
        self.fc_mu = nn.Linear(ndf * 8 * 4 * 4, z_dim)
        self.fc_var = nn.Linear(ndf * 8 * 4 * 4, z_dim)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) image in [-1, 1] -> mu, logvar, each (N, z_dim).

        Images that are not 256x256 are resized bilinearly (align_corners=False) first.
        """
        x = image
        if tuple(x.shape[-2:]) != (256, 256):
            x = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False)
        for i in range(6):
            x = getattr(self, f"layer{i + 1}")(x if i == 0 else F.leaky_relu(x, 0.2))
        x = F.leaky_relu(x, 0.2).flatten(1)
        return self.fc_mu(x), self.fc_var(x)


def run_trunk(gen: nn.Module, x: torch.Tensor, run, up) -> torch.Tensor:
    """The SPADE generator's block sequence, shared with the panoptic generator.

    head_0 -> up -> G_middle_0 -> [up if more/most] -> G_middle_1 -> (up -> up_k) k = 0..3
    -> [up -> up_4 if most] -> conv_img(leaky_relu(x, 0.2)) -> tanh. ``run(block, x)`` applies a
    residual block with the right label map; ``up(x)`` is the x2 upsampling.
    """
    x = run(gen.head_0, x)
    x = run(gen.G_middle_0, up(x))
    if gen.num_upsampling_layers in ("more", "most"):
        x = up(x)
    x = run(gen.G_middle_1, x)
    for name in ("up_0", "up_1", "up_2", "up_3"):
        x = run(getattr(gen, name), up(x))
    if gen.num_upsampling_layers == "most":
        x = run(gen.up_4, up(x))
    x = gen.conv_img(F.leaky_relu(x, 0.2))
    return torch.tanh_(x).contiguous()


class LatentGrid:
    """Output-size rule shared by the SPADE and panoptic generators (needs ``sh``, ``sw``,
    ``scale`` and ``latent_from_input`` on the instance)."""

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Latent grid (sh, sw) used for an input of size (height, width)."""
        if not self.latent_from_input:
            return self.sh, self.sw
        if height % self.scale or width % self.scale:
            raise ValueError(f"input {height}x{width} is not a multiple of {self.scale}")
        return height // self.scale, width // self.scale

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Output (H, W) for an input label map of size (height, width)."""
        sh, sw = self.grid_size(height, width)
        return sh * self.scale, sw * self.scale


@register_model(
    "spade",
    task="translate",
    tiny={"label_nc": 5, "contain_dontcare": True, "use_instance": True, "ngf": 2, "crop_size": 64, "nhidden": 8},
)
class SPADEGenerator(LatentGrid, nn.Module):
    """SPADE generator (Park et al. 2019): label map -> RGB image.

    Defaults are the released COCO-Stuff config (182 labels + dontcare + instance edges,
    ngf 64, 256x256). Cityscapes: ``label_nc=35, contain_dontcare=False, use_instance=True,
    crop_size=512, aspect_ratio=2.0, num_upsampling_layers="more"`` (256x512 output); ADE20K:
    ``label_nc=150, contain_dontcare=True, use_instance=False``.

    Args:
        label_nc: number of semantic labels (without the dontcare label).
        contain_dontcare: one more one-hot channel for the dontcare label.
        use_instance: one more channel holding the instance edge map.
        ngf: base width; the latent grid has ``16 * ngf`` channels.
        crop_size, aspect_ratio: training crop width and W/H; they fix the latent grid.
        latent_size: explicit ``[sh, sw]`` latent grid (overrides crop_size/aspect_ratio).
        latent_from_input: derive the grid from each input's size instead (not with use_vae).
        latent_downsample: how the label map is brought to the latent grid for ``fc``: "nearest"
            (official: one pixel per cell) or "area" (mean over each cell; use it for tiny grids,
            see the module docstring). Not with use_vae.
        num_upsampling_layers: "normal" (5 upsamplings), "more" (6) or "most" (7, adds ``up_4``).
        nhidden, kernel_size, norm: SPADE layer width, kernel size and parameter-free norm
            ("batch"/"syncbatch" or "instance").
        use_vae: start from a style code z (``fc`` is linear) and hold the style ``encoder``.
        z_dim: size of z.
        spectral_norm: spectral norm on the residual-block convs (training); converted official
            checkpoints hold folded weights and use False.
    """

    def __init__(
        self,
        label_nc: int = 182,
        contain_dontcare: bool = True,
        use_instance: bool = True,
        ngf: int = 64,
        crop_size: int = 256,
        aspect_ratio: float = 1.0,
        latent_size: list[int] | None = None,
        latent_from_input: bool = False,
        latent_downsample: str = "nearest",
        num_upsampling_layers: str = "normal",
        nhidden: int = 128,
        kernel_size: int = 3,
        norm: str = "batch",
        use_vae: bool = False,
        z_dim: int = 256,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        if num_upsampling_layers not in UPSAMPLING_MODES:
            raise ValueError(f"num_upsampling_layers must be one of {list(UPSAMPLING_MODES)}")
        if norm not in NORM_TYPES:
            raise ValueError(f"norm must be one of {NORM_TYPES}, got {norm!r}")
        if use_vae and latent_from_input:
            raise ValueError("latent_from_input cannot be used with use_vae (fc has a fixed grid)")
        if latent_downsample not in LATENT_DOWNSAMPLING:
            raise ValueError(f"latent_downsample must be one of {LATENT_DOWNSAMPLING}, got {latent_downsample!r}")
        if use_vae and latent_downsample != "nearest":
            raise ValueError("latent_downsample only applies without use_vae (fc then reads z, not the label map)")
        self.latent_downsample = latent_downsample
        self.label_nc = label_nc
        self.contain_dontcare = contain_dontcare
        self.use_instance = use_instance
        self.semantic_nc = label_nc + int(contain_dontcare) + int(use_instance)
        self.ngf = ngf
        self.num_upsampling_layers = num_upsampling_layers
        self.scale = 2 ** UPSAMPLING_MODES[num_upsampling_layers]
        if latent_size is not None:
            self.sh, self.sw = int(latent_size[0]), int(latent_size[1])
        else:
            self.sh, self.sw = latent_grid(crop_size, aspect_ratio, num_upsampling_layers)
        if self.sh < 1 or self.sw < 1:
            raise ValueError(f"latent grid {self.sh}x{self.sw} is empty; raise crop_size")
        self.latent_from_input = latent_from_input
        self.use_vae = use_vae
        self.z_dim = z_dim

        nf = ngf
        if use_vae:
            self.fc = nn.Linear(z_dim, 16 * nf * self.sh * self.sw)
        else:
            self.fc = nn.Conv2d(self.semantic_nc, 16 * nf, 3, padding=1)

        def block(fin: int, fout: int) -> SPADEResnetBlock:
            return SPADEResnetBlock(
                fin, fout, self.semantic_nc,
                nhidden=nhidden, kernel_size=kernel_size, norm=norm, spectral_norm=spectral_norm,
                onehot_nc=label_nc + int(contain_dontcare),
            )

        self.head_0 = block(16 * nf, 16 * nf)
        self.G_middle_0 = block(16 * nf, 16 * nf)
        self.G_middle_1 = block(16 * nf, 16 * nf)
        self.up_0 = block(16 * nf, 8 * nf)
        self.up_1 = block(8 * nf, 4 * nf)
        self.up_2 = block(4 * nf, 2 * nf)
        self.up_3 = block(2 * nf, 1 * nf)
        final_nc = nf
        if num_upsampling_layers == "most":
            self.up_4 = block(1 * nf, nf // 2)
            final_nc = nf // 2
        self.conv_img = nn.Conv2d(final_nc, 3, 3, padding=1)
        if use_vae:
            self.encoder = SPADEStyleEncoder(ngf, z_dim, spectral_norm=spectral_norm)

    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Style image (N, 3, H, W) in [-1, 1] -> (mu, logvar), each (N, z_dim).

        A style code is ``z = mu + exp(0.5 * logvar) * eps`` with eps ~ N(0, 1) (official
        ``reparameterize``), or ``mu`` for the mean style. Only with ``use_vae``.
        """
        if not self.use_vae:
            raise ValueError("this SPADE generator has no style encoder (use_vae=False)")
        return self.encoder(image)

    def forward(self, input_semantics: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """(N, semantic_nc, H, W) float label map -> (N, 3, *output_size(H, W)) float in [-1, 1].

        ``input_semantics`` is one-hot over ``label_nc (+1 dontcare)`` channels, then the
        instance edge map if ``use_instance``. ``z`` (N, z_dim) is the style code (use_vae only;
        drawn from N(0, 1) when omitted); without use_vae it must be None.
        """
        if input_semantics.shape[1] != self.semantic_nc:
            raise ValueError(f"expected {self.semantic_nc} label channels, got {input_semantics.shape[1]}")
        # The convs run in the weights' dtype (e.g. bf16); one-hot maps cast losslessly.
        seg = input_semantics.to(self.conv_img.weight.dtype)
        sh, sw = self.grid_size(*seg.shape[-2:])
        if self.use_vae:
            if z is None:
                z = torch.randn(seg.shape[0], self.z_dim, dtype=seg.dtype, device=seg.device)
            x = self.fc(z).view(-1, 16 * self.ngf, sh, sw)
        else:
            if z is not None:
                raise ValueError("z is only used with use_vae=True")
            x = self.fc(latent_map(seg, (sh, sw), self.latent_downsample))

        # Each resolution's label map is resized once and shared by the blocks that use it.
        segs: dict[tuple[int, int], torch.Tensor] = {}

        def run(blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
            size = (x.shape[-2], x.shape[-1])
            if size not in segs:
                segs[size] = resize_nearest(seg, size)
            return blk(_memory_format(x), segs[size])

        def up(x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x, scale_factor=2.0, mode="nearest")

        return run_trunk(self, x, run, up)

    def dummy_inputs(self, batch_size: int, generator: torch.Generator) -> tuple:
        """A random label map (and instance edges) at the output size: ``(input_semantics,)``."""
        h, w = self.sh * self.scale, self.sw * self.scale
        n = self.label_nc + int(self.contain_dontcare)
        label = torch.randint(0, n, (batch_size, 1, h, w), generator=generator)
        x = one_hot(label, n)
        if self.use_instance:
            inst = torch.randint(0, 3, (batch_size, 1, h, w), generator=generator)
            x = torch.cat([x, instance_edges(inst)], dim=1)
        return (x,)
