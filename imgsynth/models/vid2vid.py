"""vid2vid: label-map video -> photorealistic video with a flow-warped, occlusion-blended generator.

Paper: Wang, Liu, Zhu, Liu, Tao, Kautz, Catanzaro, "Video-to-Video Synthesis", NeurIPS 2018.
Official code: https://github.com/NVIDIA/vid2vid (commit 2e6d137; licence CC BY-NC-SA 4.0, the
released Cityscapes checkpoints are non-commercial). Checkpoints (one file per spatial scale,
``latest_net_G<s>.pth``) convert with :mod:`imgsynth.convert.vid2vid`.

Public API (what the ``translate-video`` command and the vid2vid trainer call)
-------------------------------------------------------------------------------
:class:`Vid2VidGenerator` (registered ``"vid2vid"``) is the whole sequential generator F of the
paper (Eq. 4) over ``n_scales`` spatial scales; one call makes one frame t::

    gen = build_model("vid2vid", config)                     # or load_model(card)
    x_t = gen.encode_frame(label_t, instance_t)              # (N, label_nc [+1], H, W) one-hot (+ edge)
    labels = torch.cat([x_{t-2}, x_{t-1}, x_t], 1)           # the n_frames window, oldest first
    history = gen.initial_history([img_0, img_1])            # n_frames - 1 first frames, oldest first
    out = gen(labels, history)                               # Vid2VidOutput
    out.image, out.flow, out.weight, out.raw                 # finest-scale results of frame t
    history = gen.update_history(history, out)               # slide the window by one frame

- ``labels``: (N, n_frames * frame_nc, H, W) float, the encoded label maps of frames
  t - n_frames + 1 .. t, oldest first; ``frame_nc = label_nc + use_instance`` (one-hot, then the
  instance-edge channel, as pix2pixHD). H and W multiples of ``2**(n_downsample + n_scales - 1)``.
- ``history``: a list with one entry per scale, coarsest first: (N, (n_frames - 1) * 3, H_s, W_s)
  float in [-1, 1], the last n_frames - 1 frames *this scale* generated, oldest first (each scale
  keeps its own history, as the official ``fake_B_prev``). With one scale a bare tensor works.
  :meth:`Vid2VidGenerator.initial_history` builds it from full-size first frames (average-pooled
  pyramid, official ``build_pyr``); :meth:`Vid2VidGenerator.update_history` drops the oldest
  frame of every scale and appends the new one.
- Output :class:`Vid2VidOutput`: ``image`` (N, 3, H, W) in [-1, 1] (``img_final``); ``flow``
  (N, 2, H, W) pixels (backward flow from frame t to the warped previous frame); ``weight``
  (N, 1, H, W) in [0, 1] (the soft occlusion mask: 1 = hallucinated, 0 = warped); ``raw``
  (N, 3, H, W) in [-1, 1] (hallucinated frame, ``img_raw``); ``scales``: a :class:`ScaleOutput`
  (image, flow, weight, raw) per scale, coarsest first (the last one is the finest = the above).
  ``flow``/``weight`` are None with ``flow=False``.
- First frames (the official ``generate_first_frame``): frames 0 .. n_frames - 2 come from a
  single-image generator ``netG_i`` (``--use_single_G``), ``gen.first_frame`` when the config
  names one (:class:`imgsynth.models.pix2pixhd.GlobalGenerator` or ``LocalEnhancer`` with
  ``label_nc=35, use_instance=False, norm="instance_tracked"``), fed ``one_hot(label)``
  *without* the edge channel (the official cards ship it as a card of its own, named by the video
  card's ``io.first_frame_model``); or zeros (``--no_first_img``: then the first
  call passes ``use_raw_only=True``); or real frames (``--use_real_img``). The official test.py
  writes frames n_frames - 1 onwards only.
- Normalisation: the official test.py never calls ``.eval()``, so BatchNorm (and the tracked
  InstanceNorm) normalise with the statistics of the current frame. :func:`frame_statistics`
  gives that behaviour without touching the running statistics; ``.eval()`` uses the running
  statistics instead (what a trained-here model wants).
- ``align_corners``: the warp's ``grid_sample`` flag. The official code on PyTorch >= 1.3 samples
  with False (the default here, and what the conformance cases record); the released
  checkpoints were trained under PyTorch 0.4, whose behaviour was True.

Architecture (paper Sec. 3.1 / official ``CompositeGenerator``, ``CompositeLocalGenerator``)
--------------------------------------------------------------------------------------------
Scale 0 (coarsest, width ``ngf``): a label encoder (ReflectPad3·Conv7·norm·ReLU, ``n_downsample``
x Conv3 s2·norm·ReLU, ``n_blocks - n_blocks // 2`` residual blocks) and an image encoder of the
same layout on the previous frames are summed; two decoders of the same layout (``n_blocks // 2``
residual blocks, ConvTranspose ups) give the hallucinated image (Conv7·tanh) and the flow
(Conv7, x20) with its weight (Conv7·sigmoid). ``img_final = raw * w + warp(prev[t-1], flow) * (1 - w)``.
Scale s >= 1 (width ``ngf / 2**s``): encoders of one Conv7 and one stride-2 conv; the coarser
scale's decoder features are added before its ``n_blocks_local`` residual blocks and one up;
flow x ``20 * 2**s``. ``fg=True`` adds a single-image foreground branch on the labels only whose
output replaces ``img_final`` and ``raw`` inside the mask of ``fg_labels`` (of frame t).

Deviations from the original:
- Readable module names (``label_encoder``, ``image_encoder``, ``image_decoder``, ``image_out``,
  ``flow_decoder``, ``flow_out``, ``weight_out``, ``fg_encoder``, ``fg_decoder``, ``fg_out``; the
  scales are ``scales.<s>``) instead of the flat ``model_*`` / ``indv_*`` Sequentials and one
  network per file; :mod:`imgsynth.convert.vid2vid` maps the keys.
- All scales live in one module; the official code holds ``netG0 .. netG{S-1}`` separately.
- The warp builds its grid on the flow's device (the official one calls ``.cuda()``).
- ``--dataset_mode face`` / pose (netG_i with a feature encoder, openpose inputs) are not offered.
- On CPU some layers run as GEMM + im2col or channels-last (see :mod:`imgsynth.models.cyclegan`).

Extensions (off by default; the official checkpoints and conformance cases never use them), for
models trained here on a CPU budget:
- ``flow_search = r`` (with ``search_window``, ``search_temperature``): a parameter-free
  correlation layer (:func:`imgsynth.layers.warp.block_match`, FlowNetC-style block matching of
  the window's last input frame against the one before it over whole-pixel displacements up to
  r) gives a flow estimate, its (2r+1)**2 match probabilities and the best match cost. The flow
  head predicts a correction of that estimate (``flow = estimate + 0.1 * flow_out(...)``,
  pixels) and the flow and weight heads also see the probabilities, the estimate / r and the cost
  (a high cost marks occlusions). Learning motion from scratch took far more steps than a CPU gives.
- ``hallucination = "first_frame"``: the hallucinated frame is the single-image generator
  ``first_frame`` on frame t (no image decoder is built), so the video model only learns the flow
  and the blend of the warped previous output with the per-frame image. The single-image
  generator always runs in eval mode (as at test time).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from imgsynth.errors import ConfigError
from imgsynth.layers.label_maps import instance_edges, one_hot
from imgsynth.layers.warp import block_match, downsample_avg, flow_warp
from imgsynth.models.cyclegan import ConvBlock, ResnetBlock, fast_conv2d
from imgsynth.models.registry import build_model, register_model

VID2VID_NORMS = ("batch", "instance_tracked")
"""``--norm batch`` (default) and ``--norm instance`` (InstanceNorm with tracked running statistics)."""
HALLUCINATIONS = ("decoder", "first_frame")
"""Where the hallucinated frame comes from: the official image decoder, or the single-image generator."""


class ScaleOutput(NamedTuple):
    """What one spatial scale made of frame t (see :class:`Vid2VidOutput` for shapes and ranges)."""

    image: torch.Tensor
    flow: torch.Tensor | None
    weight: torch.Tensor | None
    raw: torch.Tensor


class Vid2VidOutput(NamedTuple):
    """One generated frame (finest scale) and every scale's results (for the per-scale history)."""

    image: torch.Tensor
    flow: torch.Tensor | None
    weight: torch.Tensor | None
    raw: torch.Tensor
    scales: tuple[ScaleOutput, ...]


class Encoder(nn.Module):
    """ReflectPad3·Conv7·norm·ReLU, ``n_down`` x [Conv3 s2·norm·ReLU], ``n_blocks`` residual blocks."""

    def __init__(self, input_nc: int, ngf: int, n_down: int, n_blocks: int, norm: str) -> None:
        super().__init__()
        self.stem = ConvBlock(input_nc, ngf, 7, padding=3, padding_mode="reflect", norm=norm)
        self.down = nn.ModuleList(
            ConvBlock(ngf * 2**i, ngf * 2 ** (i + 1), 3, stride=2, padding=1, norm=norm) for i in range(n_down)
        )
        self.blocks = nn.ModuleList(ResnetBlock(ngf * 2**n_down, norm=norm) for _ in range(n_blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, input_nc, H, W) -> (N, ngf * 2**n_down, H / 2**n_down, W / 2**n_down)."""
        h = self.stem(x)
        for layer in self.down:
            h = layer(h)
        for block in self.blocks:
            h = block(h)
        return h


class Decoder(nn.Module):
    """``n_blocks`` residual blocks, then ``n_up`` x [ConvTranspose3 s2 p1 op1·norm·ReLU] (channels halving)."""

    def __init__(self, width: int, n_blocks: int, n_up: int, norm: str) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ResnetBlock(width, norm=norm) for _ in range(n_blocks))
        self.up = nn.ModuleList(
            ConvBlock(width // 2**i, width // 2 ** (i + 1), 3, stride=2, padding=1, norm=norm, transposed=True)
            for i in range(n_up)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(N, width, h, w) -> (N, width / 2**n_up, h * 2**n_up, w * 2**n_up), non-negative."""
        for block in self.blocks:
            h = block(h)
        for layer in self.up:
            h = layer(h)
        return h


def _head(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 7, padding=3, padding_mode="reflect")


class CompositeScale(nn.Module):
    """The generator of one spatial scale (official ``CompositeGenerator`` at s = 0, else
    ``CompositeLocalGenerator``), with independent label / image encoders and image / flow decoders."""

    def __init__(
        self,
        input_nc: int,
        prev_nc: int,
        output_nc: int,
        ngf: int,
        *,
        n_down: int,
        enc_blocks: int,
        dec_blocks: int,
        fg: bool,
        ngf_fg: int,
        fg_enc_blocks: int,
        fg_dec_blocks: int,
        flow: bool,
        flow_multiplier: float,
        norm: str,
        frame_nc: int = 0,
        flow_search: int = 0,
        search_window: int = 7,
        search_temperature: float = 0.02,
        image_decoder: bool = True,
    ) -> None:
        super().__init__()
        self.flow_multiplier = flow_multiplier
        self.frame_nc, self.flow_search = frame_nc, flow_search
        self.search_window, self.search_temperature = search_window, search_temperature
        head_nc = ngf + ((2 * flow_search + 1) ** 2 + 3 if flow_search else 0)
        width = ngf * 2**n_down
        self.label_encoder = Encoder(input_nc, ngf, n_down, enc_blocks, norm)
        self.image_encoder = Encoder(prev_nc, ngf, n_down, enc_blocks, norm)
        if image_decoder:
            self.image_decoder = Decoder(width, dec_blocks, n_down, norm)
            self.image_out = _head(ngf, output_nc)
        else:  # the hallucinated frame comes from outside (``hallucination="first_frame"``)
            self.image_decoder = self.image_out = None
        if flow:
            self.flow_decoder = Decoder(width, dec_blocks, n_down, norm)
            self.flow_out = _head(head_nc, 2)
            self.weight_out = _head(head_nc, 1)
        else:
            self.flow_decoder = self.flow_out = self.weight_out = None
        if fg:
            self.fg_encoder = Encoder(input_nc, ngf_fg, n_down, fg_enc_blocks, norm)
            self.fg_decoder = Decoder(ngf_fg * 2**n_down, fg_dec_blocks, n_down, norm)
            self.fg_out = _head(ngf_fg, output_nc)
        else:
            self.fg_encoder = self.fg_decoder = self.fg_out = None

    def forward(
        self,
        labels: torch.Tensor,
        prev: torch.Tensor,
        mask: torch.Tensor | None,
        coarse: tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None],
        use_raw_only: bool,
        align_corners: bool,
        raw: torch.Tensor | None = None,
    ) -> tuple:
        """One scale of one frame.

        labels (N, input_nc, H, W); prev (N, prev_nc, H, W) in [-1, 1]; mask (N, 1, H, W) in
        [0, 1] or None; coarse = the coarser scale's (img_feat, flow_feat, fg_feat) or Nones.
        raw: the hallucinated frame (N, 3, H, W) in [-1, 1] when this scale has no image decoder.
        Returns (img_final, flow, weight, img_raw, img_feat, flow_feat, fg_feat).
        """
        img_coarse, flow_coarse, fg_coarse = coarse
        down = self.label_encoder(labels) + self.image_encoder(prev)
        if self.image_decoder is not None:
            img_feat = self.image_decoder(down if img_coarse is None else down + img_coarse)
            img_raw = torch.tanh(fast_conv2d(img_feat, self.image_out))
        else:
            if raw is None:
                raise ValueError("a scale without an image decoder needs the hallucinated frame (raw)")
            img_feat, img_raw = None, raw
        flow = weight = flow_feat = None
        if self.flow_decoder is not None:
            flow_feat = self.flow_decoder(down if flow_coarse is None else down + flow_coarse)
            if self.flow_search:
                probs, prior, min_cost = self.search(labels)
                head_in = torch.cat([flow_feat, probs, prior / self.flow_search, min_cost], 1)
                flow = prior + 0.1 * fast_conv2d(head_in, self.flow_out)  # a correction in pixels
            else:
                head_in = flow_feat
                flow = fast_conv2d(head_in, self.flow_out) * self.flow_multiplier
            weight = torch.sigmoid(fast_conv2d(head_in, self.weight_out))
        if use_raw_only or flow is None:
            img_final = img_raw
        else:
            warped = flow_warp(prev[:, -3:], flow, align_corners=align_corners)
            img_final = img_raw * weight + warped * (1 - weight)
        fg_feat = None
        if self.fg_encoder is not None:
            h = self.fg_encoder(labels)
            fg_feat = self.fg_decoder(h if fg_coarse is None else h + fg_coarse)
            img_fg = torch.tanh(fast_conv2d(fg_feat, self.fg_out))
            if mask is None:
                raise ValueError("a foreground model needs the fg mask")
            mask = mask.expand_as(img_raw)
            img_final = img_fg * mask + img_final * (1 - mask)
            img_raw = img_fg * mask + img_raw * (1 - mask)
        return img_final, flow, weight, img_raw, img_feat, flow_feat, fg_feat

    def search(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Block matching of the window's last frame against the one before it
        (:func:`imgsynth.layers.warp.block_match`): (probs, flow prior in pixels, min cost)."""
        c = self.frame_nc
        return block_match(labels[:, -c:], labels[:, -2 * c : -c], self.flow_search,
                           window=self.search_window, temperature=self.search_temperature)


@register_model(
    "vid2vid",
    task="translate-video",
    tiny={"label_nc": 4, "ngf": 4, "n_downsample": 1, "n_blocks": 2, "n_blocks_local": 1, "n_scales": 2,
          "fg": True, "fg_labels": [2]},
)
class Vid2VidGenerator(nn.Module):
    """NVIDIA/vid2vid sequential generator (``--netG composite``) over ``n_scales`` spatial scales.

    Args:
        label_nc: label classes one-hot encoded per frame (35 for Cityscapes); 0 means each
            frame is an image of ``input_nc`` channels instead.
        use_instance: an instance-edge channel follows each frame's labels.
        input_nc: channels of an image input frame when ``label_nc == 0``.
        output_nc: generated image channels.
        ngf: width of the coarsest scale (128 released); scale s uses ``ngf // 2**s``.
        n_downsample: stride-2 stages of the coarsest scale (``--n_downsample_G``: 3 for
            label2city_2048, 2 for label2city_1024_g1); also decides the foreground width
            (``ngf_s // 2`` if ``n_downsample > 2`` else ``ngf_s``).
        n_blocks: residual blocks of the coarsest scale (9 released), split encoder/decoder.
        n_blocks_local: residual blocks of each finer scale (3).
        n_frames: frames per label window (``--n_frames_G``, 3); n_frames - 1 previous frames.
        n_scales: spatial scales (``--n_scales_spatial``, 3 released).
        norm: ``"batch"`` (released) or ``"instance_tracked"`` (``--norm instance``).
        fg: the foreground branch (``--fg``, released on).
        fg_labels: label ids forming the foreground mask (Cityscapes ``[26]`` = car).
        flow: the flow / weight heads (official ``not --no_flow``).
        first_frame_arch, first_frame_config: the single-image generator ``netG_i`` for the first
            n_frames - 1 frames (``--use_single_G``), e.g. ``"pix2pixhd_global"`` with
            ``{"label_nc": 35, "use_instance": False, "ngf": 64, "n_downsample_global": 4,
            "norm": "instance_tracked"}`` (label2city 1024); held as ``self.first_frame`` (None
            without it). Call it on ``one_hot(label)`` without the edge channel.
    """

    def __init__(
        self,
        label_nc: int = 35,
        use_instance: bool = True,
        input_nc: int = 3,
        output_nc: int = 3,
        ngf: int = 128,
        n_downsample: int = 3,
        n_blocks: int = 9,
        n_blocks_local: int = 3,
        n_frames: int = 3,
        n_scales: int = 1,
        norm: str = "batch",
        fg: bool = False,
        fg_labels: Sequence[int] = (26,),
        flow: bool = True,
        first_frame_arch: str | None = None,
        first_frame_config: dict | None = None,
        flow_search: int = 0,
        search_window: int = 7,
        search_temperature: float = 0.02,
        hallucination: str = "decoder",
    ) -> None:
        super().__init__()
        if hallucination not in HALLUCINATIONS:
            raise ConfigError(f"hallucination must be one of {', '.join(HALLUCINATIONS)}, got {hallucination!r}")
        if hallucination == "first_frame" and (first_frame_arch is None or fg):
            raise ConfigError("hallucination = 'first_frame' needs first_frame_arch (the single-image generator) "
                              "and no foreground branch")
        if norm not in VID2VID_NORMS:
            raise ConfigError(f"norm must be one of {', '.join(VID2VID_NORMS)}, got {norm!r}")
        if n_frames < 2 or n_scales < 1 or n_downsample < 1 or n_blocks < 0:
            raise ConfigError(
                f"need n_frames >= 2, n_scales >= 1, n_downsample >= 1, n_blocks >= 0; got "
                f"{n_frames}, {n_scales}, {n_downsample}, {n_blocks}"
            )
        if flow_search < 0 or (flow_search and (search_window < 1 or search_window % 2 == 0 or search_temperature <= 0)):
            raise ConfigError(
                f"need flow_search >= 0, an odd search_window >= 1 and search_temperature > 0; got "
                f"{flow_search}, {search_window}, {search_temperature}"
            )
        if ngf % 2 ** (n_scales - 1):
            raise ConfigError(f"ngf {ngf} must be divisible by 2**(n_scales - 1) = {2 ** (n_scales - 1)}")
        if fg and (label_nc <= 0 or not fg_labels or not all(0 <= i < label_nc for i in fg_labels)):
            raise ConfigError(f"fg needs label ids in [0, {label_nc}), got {list(fg_labels)}")
        self.label_nc = label_nc
        self.use_instance = use_instance
        self.input_nc = input_nc
        self.output_nc = output_nc
        self.n_frames = n_frames
        self.n_scales = n_scales
        self.n_downsample = n_downsample
        self.fg = fg
        self.fg_labels = [int(i) for i in fg_labels]
        self.hallucination = hallucination
        self.frame_nc = (label_nc if label_nc > 0 else input_nc) + int(use_instance)
        in_nc = n_frames * self.frame_nc
        prev_nc = (n_frames - 1) * output_nc
        scales = []
        for s in range(n_scales):
            ngf_s = ngf // 2**s
            ngf_fg = ngf_s // 2 if n_downsample > 2 else ngf_s
            if s == 0:
                cfg = dict(n_down=n_downsample, enc_blocks=n_blocks - n_blocks // 2, dec_blocks=n_blocks // 2,
                           fg_enc_blocks=n_blocks, fg_dec_blocks=0, flow_multiplier=20.0)
            else:
                cfg = dict(n_down=1, enc_blocks=0, dec_blocks=n_blocks_local,
                           fg_enc_blocks=0, fg_dec_blocks=n_blocks_local, flow_multiplier=20.0 * 2**s)
            scales.append(CompositeScale(in_nc, prev_nc, output_nc, ngf_s, fg=fg, ngf_fg=ngf_fg, flow=flow,
                                         norm=norm, frame_nc=self.frame_nc, flow_search=flow_search,
                                         search_window=search_window, search_temperature=search_temperature,
                                         image_decoder=hallucination == "decoder", **cfg))
        self.scales = nn.ModuleList(scales)
        self.first_frame: nn.Module | None = None
        if first_frame_arch is not None:
            self.first_frame = build_model(first_frame_arch, first_frame_config or {})

    # --- inputs ------------------------------------------------------------------------------

    def encode_frame(self, label: torch.Tensor, instance: torch.Tensor | None = None) -> torch.Tensor:
        """One frame's network input.

        label: (N, 1, H, W) integer ids in [0, label_nc) (or, with ``label_nc == 0``, an
        (N, input_nc, H, W) image in [-1, 1]); instance: (N, 1, H, W) instance ids, required
        when ``use_instance`` (pass the label map itself when there are no instance maps, as
        the official datasets do). Returns (N, frame_nc, H, W) float.
        """
        x = one_hot(label, self.label_nc) if self.label_nc > 0 else label.float()
        if self.use_instance:
            if instance is None:
                raise ValueError("this model takes an instance map per frame (use_instance)")
            x = torch.cat([x, instance_edges(instance)], dim=1)
        return x

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x`` at every scale, coarsest first (official ``build_pyr``: repeated AvgPool2d(3, 2, 1))."""
        levels = [x]
        for _ in range(self.n_scales - 1):
            levels.append(downsample_avg(levels[-1]))
        return levels[::-1]

    def fg_mask(self, labels: torch.Tensor) -> torch.Tensor:
        """(N, n_frames * frame_nc, H, W) window (any scale) -> (N, 1, H, W) clamp(sum of the
        ``fg_labels`` channels of the last frame, 0, 1) (official ``compute_mask``)."""
        base = (self.n_frames - 1) * self.frame_nc
        mask = labels[:, base + self.fg_labels[0]: base + self.fg_labels[0] + 1].clone()
        for i in self.fg_labels[1:]:
            mask = mask + labels[:, base + i: base + i + 1]
        return torch.clamp(mask, 0, 1)

    def initial_history(self, frames: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """n_frames - 1 full-size first frames (N, 3, H, W), oldest first -> the per-scale history
        (list, coarsest first, of (N, (n_frames - 1) * 3, H_s, W_s)): official ``build_pyr``."""
        if len(frames) != self.n_frames - 1:
            raise ValueError(f"need {self.n_frames - 1} first frames, got {len(frames)}")
        return self.pyramid(torch.cat(list(frames), dim=1))

    def zero_history(self, batch: int, height: int, width: int, *, device=None, dtype=torch.float32) -> list[torch.Tensor]:
        """The ``--no_first_img`` history: zeros at every scale (then call with ``use_raw_only=True`` once)."""
        z = torch.zeros(batch, (self.n_frames - 1) * self.output_nc, height, width, device=device, dtype=dtype)
        return self.pyramid(z)

    def update_history(self, history: Sequence[torch.Tensor] | torch.Tensor, out: Vid2VidOutput) -> list[torch.Tensor]:
        """Drop each scale's oldest frame and append the frame just generated at that scale."""
        hist = [history] if isinstance(history, torch.Tensor) else list(history)
        c = self.output_nc
        return [torch.cat([h[:, c:], so.image], dim=1) for h, so in zip(hist, out.scales)]

    # --- forward -----------------------------------------------------------------------------

    def forward(
        self,
        labels: torch.Tensor,
        history: Sequence[torch.Tensor] | torch.Tensor,
        *,
        use_raw_only: bool = False,
        align_corners: bool = False,
    ) -> Vid2VidOutput:
        """Generate frame t.

        Args:
            labels: (N, n_frames * frame_nc, H, W) float, encoded label maps of frames
                t - n_frames + 1 .. t (oldest first); H, W multiples of ``2**(n_downsample + n_scales - 1)``.
            history: per scale, coarsest first, (N, (n_frames - 1) * output_nc, H_s, W_s) float in
                [-1, 1], that scale's previous outputs oldest first (a tensor when ``n_scales == 1``).
            use_raw_only: output the hallucinated frame without the warp (first call after a zero
                history, ``--no_first_img``).
            align_corners: ``grid_sample`` flag of the warp (False = official code on PyTorch >= 1.3).

        Returns:
            :class:`Vid2VidOutput` (image (N, 3, H, W) in [-1, 1], flow (N, 2, H, W) px, weight
            (N, 1, H, W) in [0, 1], raw (N, 3, H, W) in [-1, 1], per-scale images).
        """
        hist = [history] if isinstance(history, torch.Tensor) else list(history)
        if len(hist) != self.n_scales:
            raise ValueError(f"history must hold {self.n_scales} scale(s), got {len(hist)}")
        pyramid = self.pyramid(labels)
        raws = self.pyramid(self.single_image(labels)) if self.hallucination == "first_frame" else [None] * self.n_scales
        coarse: tuple = (None, None, None)
        per_scale = []
        for s, net in enumerate(self.scales):
            mask = self.fg_mask(pyramid[s]) if self.fg else None
            out = net(pyramid[s], hist[s], mask, coarse, use_raw_only, align_corners, raws[s])
            per_scale.append(ScaleOutput(*out[:4]))
            coarse = (out[4], out[5], out[6])
        return Vid2VidOutput(*per_scale[-1], tuple(per_scale))

    def single_image(self, labels: torch.Tensor) -> torch.Tensor:
        """The single-image generator on the window's last frame (its label channels without the
        instance edge, or its image channels): (N, output_nc, H, W) in [-1, 1]."""
        if self.first_frame is None:
            raise ValueError("this model has no single-image generator (first_frame_arch)")
        last = labels[:, -self.frame_nc :]
        return self.first_frame(last[:, : self.label_nc if self.label_nc > 0 else self.input_nc])

    def train(self, mode: bool = True) -> "Vid2VidGenerator":
        """As ``nn.Module.train``; with ``hallucination="first_frame"`` the single-image generator
        always runs as at test time (eval mode: no dropout), so training sees what inference gives."""
        super().train(mode)
        if self.hallucination == "first_frame" and self.first_frame is not None:
            self.first_frame.eval()
        return self

    def dummy_inputs(self, batch_size: int, generator: torch.Generator) -> tuple:
        """A random encoded label window and a random history at the smallest valid size x 2."""
        side = 2 ** (self.n_downsample + self.n_scales)
        frames = []
        for _ in range(self.n_frames):
            if self.label_nc > 0:
                label = torch.randint(0, self.label_nc, (batch_size, 1, side, side), generator=generator)
            else:
                label = torch.rand(batch_size, self.input_nc, side, side, generator=generator) * 2 - 1
            inst = torch.randint(0, 3, (batch_size, 1, side, side), generator=generator)
            frames.append(self.encode_frame(label, inst if self.use_instance else None))
        prev = [torch.rand(batch_size, self.output_nc, side, side, generator=generator) * 2 - 1
                for _ in range(self.n_frames - 1)]
        p = next(self.parameters())
        hist = [h.to(p.device, p.dtype) for h in self.initial_history(prev)]
        return torch.cat(frames, 1).to(p.device, p.dtype), hist


_NORM_TYPES = (nn.BatchNorm2d, nn.InstanceNorm2d)


@contextlib.contextmanager
def frame_statistics(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model``'s normalisation layers on the current batch's statistics (official test.py,
    which never calls ``.eval()``) without changing their running statistics.

    Norm layers with running statistics are put in train mode with momentum 0 for the duration;
    everything else keeps its mode. Use under ``torch.no_grad()``.
    """
    saved = []
    for m in model.modules():
        if isinstance(m, _NORM_TYPES) and m.track_running_stats:
            saved.append((m, m.training, m.momentum, m.num_batches_tracked.clone()))
            m.train()
            m.momentum = 0.0
    try:
        yield model
    finally:
        for m, training, momentum, nbt in saved:
            m.train(training)
            m.momentum = momentum
            m.num_batches_tracked.copy_(nbt)


__all__ = ["Vid2VidGenerator", "Vid2VidOutput", "ScaleOutput", "CompositeScale", "frame_statistics"]
