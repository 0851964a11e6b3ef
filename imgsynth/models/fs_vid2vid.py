"""Few-shot vid2vid: a video generator whose SPADE weights are generated from K example images.

Paper: Wang, Liu, Tao, Liu, Kautz, Catanzaro, "Few-shot Video-to-Video Synthesis", NeurIPS 2019.
Official code: https://github.com/NVlabs/imaginaire (commit c6f7484,
``imaginaire/generators/fs_vid2vid.py``; NVIDIA Source Code License-NC, non-commercial; the
released FaceForensics checkpoint is non-commercial too). The original few-shot-vid2vid repository
is superseded by imaginaire, whose checkpoints this file loads (:mod:`imgsynth.convert.imaginaire`).

Public API
----------
``gen = build_model("fs_vid2vid", config)``; per frame t of a sequence::

    refs = gen.encode_references(ref_labels, ref_images)     # once per sequence (optional cache)
    out = gen(label_t, ref_labels, ref_images, prev_labels, prev_images, references=refs)
    out.image                                                # (N, 3, H, W) in [-1, 1]

- ``label_t``: (N, label_channels, H, W) float; for the face model the landmark edge map of
  frame t (1 channel, 0/1, dlib-68 landmarks drawn as polylines). H, W multiples of
  ``2**num_downsamples``.
- ``ref_labels`` (N, K, label_channels, H, W), ``ref_images`` (N, K, 3, H, W) in [-1, 1]: the K
  example frames of the target subject (K = ``few_shot_k``).
- ``prev_labels`` / ``prev_images``: None for the first frame, else (N, k, C, H, W) previous labels
  and generated frames, oldest first (``imaginaire_vid2vid.push_frame`` keeps the window);
  the temporal warp runs when k == num_frames - 1.
- ``references``: the output of :meth:`FewShotVid2VidGenerator.encode_references` for these
  references; the official eval loop computes these hyper-network weights on the first frame and
  reuses them until ``reset()``. They depend only on the references (and, for K > 1, on the
  attention to the current label, so they are recomputed per frame then).
- Output :class:`FewShotVid2VidOutput`: ``image``; reference warp ``flow_ref`` (N, 2, H, W) px,
  ``mask_ref`` (N, 1, H, W) in [0, 1], ``warped_ref`` (N, 3, H, W); previous-frame warp
  ``flow_prev``, ``mask_prev``, ``warped_prev`` (None without a full window); for K > 1
  ``attention`` (1, 1, h, w) (visualisation of the attention summed over the query, first
  reference) and ``ref_idx`` (N,) int64, the reference with the most attention (the one warped).

Architecture (paper Sec. 3)
---------------------------
A *weight generator* (Eq. 5-6) encodes the reference images and labels with 1x1 conv·InstanceNorm·
LeakyReLU stages (stride-2 down, then up), multiplies image features by the softmax of label
features and pools them into per-channel vectors; small MLPs (spectral-normed Linear·LeakyReLU)
turn those into the weights of the SPADE projections of the first ``num_hyper_layers`` up-blocks
and of the label embedder's decoder convs (hyper-network). For K > 1 an attention module between
the current label and the reference labels (at 1/2**attention_num_downsamples) combines the K
reference features. The decoder input is the encoded reference. A flow network warps the (most
attended) reference image to the current frame and, in later frames, the previous frame; each
warped image and its occlusion mask are embedded (U-Net) and added as SPADE conditions 2 and 3
in the last ``multi_spade_layers`` up-blocks.

Deviations from the original:
- Stateless: the hyper weights are recomputed on every call unless ``references=`` passes them
  in (the official module caches them on the first frame in eval mode until ``reset()``).
- Spectral norm (also in the hyper-network's Linear layers) is folded into plain weights (eval
  semantics); ``.layers`` wrappers dropped from the key names (see :mod:`imgsynth.layers.multi_spade`).
- Hyper convs run per sample as one grouped conv.
- ``is_hyper_conv`` (generated main-branch convs), ``concat`` reference-label mode, pose data and
  ``generate_raw_output`` are not implemented (the released face config uses none of them).
- K > 1 builds without the official ``AttentionModule`` bug (it reads a misspelt attribute); the
  attention width is ``num_filters`` (the conformance data's fixed-up config).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from imgsynth.errors import ConfigError
from imgsynth.layers.multi_spade import LRELU, FlowNetwork, LabelEmbedder, SPADEResBlock
from imgsynth.layers.warp import flow_warp
from imgsynth.models.registry import register_model


class FewShotVid2VidOutput(NamedTuple):
    """One frame and its warps (see the module docstring for shapes and ranges)."""

    image: torch.Tensor
    flow_ref: torch.Tensor | None
    mask_ref: torch.Tensor | None
    warped_ref: torch.Tensor | None
    flow_prev: torch.Tensor | None
    mask_prev: torch.Tensor | None
    warped_prev: torch.Tensor | None
    attention: torch.Tensor | None
    ref_idx: torch.Tensor | None


class References(NamedTuple):
    """What the weight generator derives from the references (reusable across frames for K = 1)."""

    x: torch.Tensor
    embedding_weights: list
    norm_weights: list
    attention: torch.Tensor | None
    attention_vis: torch.Tensor | None
    ref_idx: torch.Tensor | None


class ConvINAct(nn.Module):
    """Conv (zero padding) · InstanceNorm2d(affine) · LeakyReLU 0.2 (imaginaire Conv2dBlock, CNA)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, kernel_size // 2)
        self.norm = nn.InstanceNorm2d(cout, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.norm(self.conv(x)), LRELU)


class LinearAct(nn.Module):
    """Linear (the key keeps imaginaire's ``conv`` name) [· LeakyReLU 0.2]."""

    def __init__(self, cin: int, cout: int, act: bool) -> None:
        super().__init__()
        self.conv = nn.Linear(cin, cout)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return F.leaky_relu(y, LRELU) if self.act else y


def _mlp(cin: int, hidden: int, cout: int, layers: int) -> nn.Sequential:
    blocks = [LinearAct(cin, hidden, True)] + [LinearAct(hidden, hidden, True) for _ in range(1, layers)]
    return nn.Sequential(*blocks, LinearAct(hidden, cout, False))


def _split(flat: torch.Tensor, shape: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """imaginaire ``WeightReshaper.reshape_weight``: (N, L) -> weight (N, *shape) and the last
    ``shape[0]`` entries as bias when the sizes allow, else all of it as weight and no bias."""
    n = flat.shape[0]
    bias_size = shape[0]
    weight_numel = 1
    for s in shape:
        weight_numel *= s
    if flat.shape[1] - bias_size == weight_numel:
        return flat[:, :-bias_size].reshape(n, *shape), flat[:, -bias_size:]
    return flat.reshape(n, *shape), None


class AttentionModule(nn.Module):
    """Attention between the current label (query) and the K reference labels (keys), Eq. 7."""

    def __init__(self, label_channels: int, widths: Sequence[int], num_downsamples: int, kernel_size: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.num_downsamples = num_downsamples
        self.atn_query_first = ConvINAct(label_channels, widths[0], kernel_size)
        self.atn_key_first = ConvINAct(label_channels, widths[0], kernel_size)
        for i in range(num_downsamples):
            setattr(self, f"atn_key_{i}", ConvINAct(widths[i], widths[i + 1], kernel_size, 2))
            setattr(self, f"atn_query_{i}", ConvINAct(widths[i], widths[i + 1], kernel_size, 2))

    def _encode(self, x: torch.Tensor, name: str) -> torch.Tensor:
        x = getattr(self, f"{name}_first")(x)
        for i in range(self.num_downsamples):
            x = getattr(self, f"{name}_{i}")(x)
        return x

    def attention_map(self, label: torch.Tensor, ref_label: torch.Tensor) -> torch.Tensor:
        """label (N, C, H, W), ref_label (N*K, C, H, W) -> softmax over the K*h*w keys (N, K*h*w, h*w)."""
        key = self._encode(ref_label, "atn_key")
        query = self._encode(label, "atn_query")
        b = query.shape[0]
        c = key.shape[1]
        key = key.reshape(b, self.k, c, -1).permute(0, 1, 3, 2).reshape(b, -1, c)
        return torch.softmax(torch.bmm(key, query.reshape(b, c, -1)), dim=1)

    def combine(self, feats: torch.Tensor, attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N*K, c, h, w) features -> (N, c, h, w) attention-weighted sum, and the visualisation (1, 1, h, w)."""
        bk, c, h, w = feats.shape
        b = bk // self.k
        f = feats.reshape(b, self.k, c, h * w).permute(0, 2, 1, 3).reshape(b, c, -1)
        out = torch.bmm(f, attention).reshape(b, c, h, w)
        vis = attention.reshape(b, self.k, h * w, h * w).sum(2).reshape(b, self.k, h, w)
        return out, vis[-1:, 0:1]


class WeightGenerator(nn.Module):
    """Reference encoder + hyper-network (official ``WeightGenerator``, ``mul`` reference-label mode)."""

    def __init__(self, *, label_channels: int, image_channels: int, widths: Sequence[int], num_downsamples: int,
                 num_hyper_layers: int, hyper_embed: bool, num_fc_layers: int, spade_kernel_size: int,
                 embed_kernel_size: int, embed_num_downsamples: int, few_shot_k: int,
                 attention_num_downsamples: int) -> None:
        super().__init__()
        self.widths = list(widths)
        self.num_downsamples = num_downsamples
        self.num_hyper_layers = num_hyper_layers
        self.hyper_embed = hyper_embed
        self.spade_kernel_size = spade_kernel_size
        self.embed_kernel_size = embed_kernel_size
        self.few_shot_k = few_shot_k
        self.attention_num_downsamples = attention_num_downsamples
        ks = spade_kernel_size
        self.ref_img_first = ConvINAct(image_channels, widths[0], ks)
        self.ref_label_first = ConvINAct(label_channels, widths[0], ks)
        for i in range(num_downsamples):
            cin, cout = widths[i], widths[i + 1]
            setattr(self, f"ref_img_down_{i}", ConvINAct(cin, cout, ks, 2))
            setattr(self, f"ref_img_up_{i}", ConvINAct(cout, cin, ks))
            setattr(self, f"ref_label_down_{i}", ConvINAct(cin, cout, ks, 2))
            setattr(self, f"ref_label_up_{i}", ConvINAct(cout, cin, ks))
        for i in range(num_hyper_layers):
            ch_in, ch_out = widths[i], widths[i + 1]
            spade = ch_in * ks * ks + 1
            setattr(self, f"fc_spade_0_{i}", _mlp(ch_out, ch_out, spade * 2, num_fc_layers))
            setattr(self, f"fc_spade_1_{i}", _mlp(ch_out, ch_out, spade * (1 if ch_in != ch_out else 2), num_fc_layers))
            setattr(self, f"fc_spade_s_{i}", _mlp(ch_out, ch_out, spade * 2, num_fc_layers))
            if hyper_embed:
                setattr(self, f"fc_spade_e_{i}", _mlp(ch_out, ch_out, ch_in * embed_kernel_size**2 + 1, num_fc_layers))
        self.label_embedding = LabelEmbedder(label_channels, widths[0], embed_num_downsamples, arch="encoderdecoder",
                                             kernel_size=embed_kernel_size, max_num_filters=widths[-1],
                                             num_hyper_layers=num_hyper_layers if hyper_embed else 0)
        self.attention_module = (
            AttentionModule(label_channels, widths, attention_num_downsamples, ks, few_shot_k) if few_shot_k > 1 else None
        )

    def encode(self, ref_image: torch.Tensor, ref_label: torch.Tensor, label: torch.Tensor | None) -> References:
        """ref_image (N, K, 3, H, W), ref_label (N, K, C, H, W), label (N, C, H, W) (used for K > 1)."""
        b, k = ref_image.shape[:2]
        h, w = ref_image.shape[-2:]
        ref_image = ref_image.reshape(b * k, -1, h, w)
        ref_label = ref_label.reshape(b * k, -1, h, w)
        x = self.ref_img_first(ref_image)
        x_label = self.ref_label_first(ref_label)
        atn = atn_vis = ref_idx = None
        for i in range(self.num_downsamples):
            x = getattr(self, f"ref_img_down_{i}")(x)
            x_label = getattr(self, f"ref_label_down_{i}")(x_label)
            if k > 1 and i == self.attention_num_downsamples - 1:
                if label is None:
                    raise ValueError("K > 1 references need the current label (attention)")
                atn = self.attention_module.attention_map(label, ref_label)
                x, atn_vis = self.attention_module.combine(x, atn)
                x_label, _ = self.attention_module.combine(x_label, atn)
                ref_idx = torch.argmax(atn.reshape(b, k, -1).sum(2), dim=1)
        img_feats, label_feats = [x], [x_label]
        for i in reversed(range(self.num_downsamples)):
            img_feats.append(getattr(self, f"ref_img_up_{i}")(img_feats[-1]))
            label_feats.append(getattr(self, f"ref_label_up_{i}")(label_feats[-1]))
        encoded = []
        for conv, conv_label in zip(img_feats, label_feats):
            n, c, hh, ww = conv.shape
            conv_label = torch.softmax(conv_label, dim=1)
            encoded.append((conv.reshape(n, c, 1, hh * ww) * conv_label.reshape(n, 1, c, hh * ww)).sum(3, keepdim=True))
        encoded = encoded[::-1]
        embedding_weights, norm_weights = [], []
        for i in range(self.num_hyper_layers):
            e, nw = self._norm_weights(encoded[min(len(encoded) - 1, i + 1)], i)
            embedding_weights.append(e)
            norm_weights.append(nw)
        return References(x, embedding_weights, norm_weights, atn, atn_vis, ref_idx)

    def _norm_weights(self, feat: torch.Tensor, i: int) -> tuple:
        in_ch, out_ch = self.widths[i], self.widths[i + 1]
        spade_ch, sks, eks = in_ch, self.spade_kernel_size, self.embed_kernel_size
        b, c = feat.shape[:2]
        rows = feat.reshape(b * c, -1)
        emb = None
        if self.hyper_embed:
            fc_e = getattr(self, f"fc_spade_e_{i}")(rows).reshape(b, -1)[:, :-in_ch]
            emb = _split(fc_e, [in_ch, out_ch, eks, eks])
        fc = [getattr(self, f"fc_spade_{n}_{i}")(rows).reshape(b, -1) for n in ("0", "1", "s")]
        norm = [
            _split(fc[0], [out_ch * 2, spade_ch, sks, sks]),
            _split(fc[1], [in_ch * 2, spade_ch, sks, sks]),
            _split(fc[2], [out_ch * 2, spade_ch, sks, sks]),
        ]
        return emb, norm

    def embed_label(self, label: torch.Tensor, refs: References) -> list[torch.Tensor]:
        """The current label's multi-resolution embedding, decoder convs from the hyper-network."""
        return self.label_embedding(label, refs.embedding_weights if self.hyper_embed else None)


def _pick(images: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
    """(N, K, C, H, W) -> (N, C, H, W): reference ``idx[n]`` of sample n (the first when idx is None)."""
    if idx is None:
        return images[:, 0]
    return images[torch.arange(images.shape[0], device=images.device), idx.long()]


@register_model(
    "fs_vid2vid",
    task="translate-video",
    tiny={"num_filters": 4, "max_num_filters": 16, "num_downsamples": 2, "num_hyper_layers": 2,
          "embed_num_downsamples": 2, "flow_num_filters": 4, "flow_max_num_filters": 16, "flow_num_downsamples": 2,
          "flow_num_res_blocks": 1, "warp_embed_num_filters": 4, "warp_embed_num_downsamples": 2,
          "multi_spade_layers": 2, "few_shot_k": 2, "attention_num_downsamples": 1},
)
class FewShotVid2VidGenerator(nn.Module):
    """Few-shot vid2vid generator (``imaginaire.generators.fs_vid2vid``).

    Args (yaml names; released FaceForensics values in brackets):
        label_channels: label channels per frame [1: drawn landmark edges].
        image_channels: [3].
        num_frames: ``data.num_frames_G`` [2]: num_frames - 1 previous frames are warped.
        few_shot_k: K references the model is built for [1]; K > 1 adds the attention module.
        num_filters, max_num_filters, num_downsamples: main-branch widths
            ``min(max, num_filters * 2**i)``, i <= num_downsamples + 1 [32, 1024, 5].
        kernel_size: main-branch conv size [3].
        num_hyper_layers: up-blocks up_0 .. up_{n-1} with generated SPADE weights [4].
        hyper_embed: generate the label embedder's decoder convs too [True].
        num_fc_layers: hidden Linear layers of each hyper MLP [2].
        spade_kernel_size: SPADE projection and reference-encoder conv size [1].
        embed_num_downsamples: label embedder stages [5] (its width is num_filters).
        attention_num_downsamples: attention resolution 1/2**n (K > 1) [2].
        flow_num_filters, flow_max_num_filters, flow_num_downsamples, flow_num_res_blocks: flow
            network [32, 1024, 3, 6 (the official class reads ``num_blocks``, default 6)].
        flow_multiplier: ``flow_output_multiplier`` [20].
        multi_spade_layers: up-blocks with the warped-image SPADE conditions [2].
        warp_embed_num_filters, warp_embed_num_downsamples: U-Net embedders of (warped, mask) [32, 5].
        sep_prev_flow: a separate temporal flow network (official: also when num_frames != 2) [False].
        sep_warp_embed: a separate embedder for the previous-frame warp [True].
    """

    def __init__(
        self,
        label_channels: int = 1,
        image_channels: int = 3,
        num_frames: int = 2,
        few_shot_k: int = 1,
        num_filters: int = 32,
        max_num_filters: int = 1024,
        num_downsamples: int = 5,
        kernel_size: int = 3,
        num_hyper_layers: int = 4,
        hyper_embed: bool = True,
        num_fc_layers: int = 2,
        spade_kernel_size: int = 1,
        embed_num_downsamples: int = 5,
        attention_num_downsamples: int = 2,
        flow_num_filters: int = 32,
        flow_max_num_filters: int = 1024,
        flow_num_downsamples: int = 3,
        flow_num_res_blocks: int = 6,
        flow_multiplier: float = 20.0,
        multi_spade_layers: int = 2,
        warp_embed_num_filters: int = 32,
        warp_embed_num_downsamples: int = 5,
        sep_prev_flow: bool = False,
        sep_warp_embed: bool = True,
    ) -> None:
        super().__init__()
        if num_frames < 2 or few_shot_k < 1 or not 0 <= num_hyper_layers <= num_downsamples + 1:
            raise ConfigError(f"need num_frames >= 2, few_shot_k >= 1, 0 <= num_hyper_layers <= num_downsamples + 1; "
                              f"got {num_frames}, {few_shot_k}, {num_hyper_layers}")
        if few_shot_k > 1 and not 1 <= attention_num_downsamples <= num_downsamples:
            raise ConfigError(f"attention_num_downsamples must be in [1, {num_downsamples}] for K > 1")
        self.label_channels = label_channels
        self.image_channels = image_channels
        self.num_frames = num_frames
        self.few_shot_k = few_shot_k
        self.num_downsamples = num_downsamples
        self.num_hyper_layers = num_hyper_layers
        self.multi_spade_layers = multi_spade_layers
        top = min(max_num_filters, num_filters * 2**num_downsamples)
        widths = [min(top, num_filters * 2**i) for i in range(num_downsamples + 2)]
        self.widths = widths
        self.weight_generator = WeightGenerator(
            label_channels=label_channels, image_channels=image_channels, widths=widths,
            num_downsamples=num_downsamples, num_hyper_layers=num_hyper_layers, hyper_embed=hyper_embed,
            num_fc_layers=num_fc_layers, spade_kernel_size=spade_kernel_size, embed_kernel_size=kernel_size,
            embed_num_downsamples=embed_num_downsamples, few_shot_k=few_shot_k,
            attention_num_downsamples=attention_num_downsamples,
        )
        for i in reversed(range(num_downsamples + 1)):
            dims: list[int | None] = [widths[i]] if i >= multi_spade_layers else [widths[i]] * 3
            if i < num_hyper_layers:
                dims[0] = None
            setattr(self, f"up_{i}", SPADEResBlock(widths[i + 1], widths[i], dims, kernel_size=kernel_size,
                                                   spade_kernel=spade_kernel_size))
        self.conv_img = nn.Conv2d(num_filters, image_channels, kernel_size, padding=kernel_size // 2)
        flow = dict(num_filters=flow_num_filters, max_num_filters=flow_max_num_filters,
                    num_downsamples=flow_num_downsamples, num_res_blocks=flow_num_res_blocks, res_order="NACNAC",
                    multiplier=flow_multiplier, kernel_size=kernel_size)
        self.flow_network_ref = FlowNetwork([("down_flow", label_channels * 2 + image_channels)], **flow)
        self.ref_image_embedding = LabelEmbedder(image_channels + 1, warp_embed_num_filters,
                                                 warp_embed_num_downsamples, arch="unet", kernel_size=kernel_size)
        self.sep_prev_flow = sep_prev_flow or num_frames != 2
        if self.sep_prev_flow:
            self.flow_network_temp = FlowNetwork(
                [("down_flow", label_channels * num_frames + image_channels * (num_frames - 1))], **flow)
        self.sep_warp_embed = sep_warp_embed
        if sep_warp_embed:
            self.prev_image_embedding = LabelEmbedder(image_channels + 1, warp_embed_num_filters,
                                                      warp_embed_num_downsamples, arch="unet", kernel_size=kernel_size)

    def encode_references(self, ref_labels: torch.Tensor, ref_images: torch.Tensor,
                          label: torch.Tensor | None = None) -> References:
        """Run the weight generator on the references (N, K, C, H, W) / (N, K, 3, H, W) in [-1, 1].

        For K > 1 the attention depends on the current ``label`` (N, C, H, W), so the result is
        only valid for that frame."""
        return self.weight_generator.encode(ref_images, ref_labels, label)

    def forward(
        self,
        label: torch.Tensor,
        ref_labels: torch.Tensor,
        ref_images: torch.Tensor,
        prev_labels: torch.Tensor | None = None,
        prev_images: torch.Tensor | None = None,
        *,
        references: References | None = None,
    ) -> FewShotVid2VidOutput:
        """Generate frame t (shapes and ranges in the module docstring)."""
        k = ref_images.shape[1]
        if k != self.few_shot_k:
            raise ValueError(f"this model takes K = {self.few_shot_k} references, got {k}")
        refs = references if references is not None and k == 1 else self.encode_references(ref_labels, ref_images, label)
        encoded = [[m] for m in self.weight_generator.embed_label(label, refs)]

        ref_label, ref_image = _pick(ref_labels, refs.ref_idx), _pick(ref_images, refs.ref_idx)
        flow_ref, mask_ref = self.flow_network_ref(torch.cat([label, ref_label, ref_image], dim=1))
        warped_ref = flow_warp(ref_image, flow_ref, align_corners=True)
        emb_ref = self.ref_image_embedding(torch.cat([warped_ref, mask_ref], dim=1))
        flow_prev = mask_prev = warped_prev = emb_prev = None
        if prev_labels is not None and prev_labels.shape[1] == self.num_frames - 1:
            b, _, _, h, w = prev_labels.shape
            net = self.flow_network_temp if self.sep_prev_flow else self.flow_network_ref
            flow_prev, mask_prev = net(torch.cat([label, prev_labels.reshape(b, -1, h, w),
                                                  prev_images.reshape(b, -1, h, w)], dim=1))
            warped_prev = flow_warp(prev_images[:, -1], flow_prev, align_corners=True)
            embedder = self.prev_image_embedding if self.sep_warp_embed else self.ref_image_embedding
            emb_prev = embedder(torch.cat([warped_prev, mask_prev], dim=1))
        for i in range(self.multi_spade_layers):
            encoded[i] += [emb_ref[i], emb_prev[i] if emb_prev is not None else None]

        x = refs.x
        for i in range(self.num_downsamples, -1, -1):
            hyper = refs.norm_weights[i] if i < self.num_hyper_layers else None
            x = getattr(self, f"up_{i}")(x, encoded[i], hyper)
            if i != 0:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
        image = torch.tanh(self.conv_img(F.leaky_relu(x, LRELU)))
        return FewShotVid2VidOutput(image, flow_ref, mask_ref, warped_ref, flow_prev, mask_prev, warped_prev,
                                    refs.attention_vis, refs.ref_idx)

    def dummy_inputs(self, batch_size: int, generator: torch.Generator) -> tuple:
        """Random edge-map labels, K references and a full previous-frame window, 2**(num_downsamples+1) square."""
        side = 2 ** (self.num_downsamples + 1)
        k, t = self.few_shot_k, self.num_frames - 1

        def lab(*lead: int) -> torch.Tensor:
            return (torch.rand(*lead, self.label_channels, side, side, generator=generator) > 0.8).float()

        def img(*lead: int) -> torch.Tensor:
            return torch.rand(*lead, self.image_channels, side, side, generator=generator) * 2 - 1

        p = next(self.parameters())
        out = (lab(batch_size), lab(batch_size, k), img(batch_size, k), lab(batch_size, t), img(batch_size, t))
        return tuple(x.to(p.device, p.dtype) for x in out)
