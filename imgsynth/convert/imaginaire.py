"""NVlabs/imaginaire video generators -> imgsynth ``imaginaire_vid2vid`` / ``fs_vid2vid``.

imaginaire's trainer saves ``{'net_G': ModelAverage.state_dict(), 'net_D': ..., 'opt_G': ...}``
(``torch.save``; read it with ``torch.load(path, map_location="cpu", weights_only=True)``). The
``net_G`` dict holds

- ``module.<key>``: the generator as trained, spectral-normed convs as ``weight_orig``,
  ``weight_u``, ``weight_v``;
- ``averaged_model.<key>``: the exponential moving average of the same modules with spectral
  norm removed (plain ``weight``) — what inference uses (the trainer tests ``net_G.averaged_model``
  in eval mode);
- ``num_updates_tracked``.

:func:`generator_state_dict` picks ``averaged_model.*`` when present (else ``module.*``, else the
dict as it is: a bare generator state dict, as the conformance data stores it). Spectral norm is
folded with the stored u, v (``weight_orig / (u . (W v))``, the eval-mode value; no power
iteration). Key renames: the ``Conv2dBlock`` wrappers ``.layers.`` are dropped, a SPADE projection
``mlps.<i>.0.conv`` becomes ``mlps.<i>``, single-conv blocks (``conv_img``, ``fc``,
``down_first``, ``conv_flow.0``, ``conv_mask.0``) become plain convs. In few-shot vid2vid with
``num_frames_G 2`` the temporal flow network *is* the reference one (``flow_network_temp`` keys
repeat ``flow_network_ref``); the duplicates are checked equal and dropped.

What the shapes cannot tell: ``flow_output_multiplier`` (40 in the vid2vid Cityscapes config, 20 in
the few-shot face config) and few-shot K (attention modules exist only for K > 1; their presence
sets it to 2 unless ``few_shot_k`` is given). Pass ``flow_multiplier=`` to the ``infer_*`` functions
for other configs, or the yaml config to :func:`config_from_options`, which reads both from it.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from imgsynth.convert import check_state_dict
from imgsynth.convert.spade import fold_spectral_norm
from imgsynth.errors import WeightsError

_SOURCE = "imaginaire checkpoint"


def generator_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The generator's tensors from a trainer checkpoint, its ``net_G`` dict or a bare state dict,
    with spectral norm folded and the imaginaire block wrappers removed from the names."""
    ckpt: Any = checkpoint
    if isinstance(ckpt, Mapping) and "net_G" in ckpt and isinstance(ckpt["net_G"], Mapping):
        ckpt = ckpt["net_G"]
    if not isinstance(ckpt, Mapping) or not ckpt:
        raise WeightsError(f"{_SOURCE}: expected a state dict or a checkpoint with 'net_G'")
    keys = list(ckpt)
    for prefix in ("averaged_model.", "module."):
        if any(k.startswith(prefix) for k in keys):
            ckpt = {k[len(prefix):]: v for k, v in ckpt.items() if k.startswith(prefix)}
            break
    bad = [k for k, v in ckpt.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{_SOURCE}: entries are not tensors: {', '.join(bad[:3])}")
    folded: dict[str, torch.Tensor] = {}
    for k, v in ckpt.items():
        if k.endswith(("weight_u", "weight_v")):
            continue
        if k.endswith(".weight_orig"):
            base = k[: -len("_orig")]
            try:
                u, vv = ckpt[base + "_u"], ckpt[base + "_v"]
            except KeyError:
                raise WeightsError(f"{_SOURCE}: spectral-norm weight {k} has no _u/_v") from None
            v = fold_spectral_norm(v.float(), u.float(), vv.float())
            k = base
        folded[_rename(k)] = v.float() if v.is_floating_point() else v
    return folded


_RULES = [
    (re.compile(r"\.layers\."), "."),
    (re.compile(r"^layers\."), ""),
    (re.compile(r"\.mlps\.(\d+)\.0\.conv\."), r".mlps.\1."),
    (re.compile(r"^(conv_img|fc|down_first)\.conv\."), r"\1."),
    (re.compile(r"\.(conv_flow|conv_mask)\.0\.conv\."), r".\1."),
]


def _rename(key: str) -> str:
    for pat, rep in _RULES:
        key = pat.sub(rep, key)
    return key


def _count(sd: Mapping[str, Any], pattern: str) -> int:
    pat = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := pat.match(k))})


def _max_width(sd: Mapping[str, torch.Tensor], prefix: str) -> int:
    return max(int(v.shape[0]) for k, v in sd.items() if k.startswith(prefix) and k.endswith("conv.weight"))


def _cap(widest: int, uncapped: int) -> int:
    """``max_num_filters`` from the widest layer: the widest width when it is a cap, else (the cap
    never bit, its value cannot be read off the shapes) imaginaire's default 1024 or more."""
    return widest if widest < uncapped else max(1024, widest)


def _embed_cfg(sd: Mapping[str, torch.Tensor], prefix: str) -> tuple[int, int, str]:
    nf = int(sd[f"{prefix}.conv_first.conv.weight"].shape[0])
    n_down = _count(sd, rf"^{re.escape(prefix)}\.down_(\d+)\.")
    n_up = _count(sd, rf"^{re.escape(prefix)}\.up_(\d+)\.")
    arch = "encoder"
    if n_up:
        arch = "encoderdecoder"
        if n_down >= 2:
            w_in = int(sd[f"{prefix}.up_0.conv.weight"].shape[1])
            w_down = int(sd[f"{prefix}.down_0.conv.weight"].shape[0])
            arch = "unet" if w_in == 2 * w_down else "encoderdecoder"
    return nf, n_down, arch


def infer_vid2vid_config(checkpoint: Mapping[str, Any], *, flow_multiplier: float = 40.0) -> dict[str, Any]:
    """Config of an ``imaginaire_vid2vid`` generator from its (converted or official) weights."""
    sd = checkpoint if "fc.weight" in checkpoint else generator_state_dict(checkpoint)
    try:
        label_channels = int(sd["fc.weight"].shape[1])
        num_filters = int(sd["down_first.weight"].shape[0])
        image_channels = int(sd["conv_img.weight"].shape[0])
        lbl_in = int(sd["flow_network_temp.down_lbl.0.conv.weight"].shape[1])
    except KeyError as e:
        raise WeightsError(f"{_SOURCE}: not an imaginaire vid2vid generator (no {e.args[0]})") from None
    num_layers = _count(sd, r"^up_(\d+)\.") - 1
    num_down_img = _count(sd, r"^down_(\d+)\.") - 1
    e_nf, e_down, e_arch = _embed_cfg(sd, "label_embedding")
    w_nf, w_down, w_arch = _embed_cfg(sd, "img_prev_embedding")
    multi = sum(1 for i in range(num_layers + 1) if f"up_{i}.conv_block_0.norm.mlps.1.weight" in sd)
    flow_down = _count(sd, r"^flow_network_temp\.down_lbl\.(\d+)\.") - 1
    return {
        "label_channels": label_channels,
        "image_channels": image_channels,
        "num_frames": lbl_in // label_channels,
        "num_layers": num_layers,
        "num_downsamples_img": num_down_img,
        "num_filters": num_filters,
        "max_num_filters": _cap(max(int(sd["fc.weight"].shape[0]), _max_width(sd, "up_")),
                                num_filters * 2 ** (num_layers + 1)),
        "kernel_size": int(sd["down_first.weight"].shape[-1]),
        "embed_num_filters": e_nf,
        "embed_num_downsamples": e_down,
        "embed_arch": e_arch,
        "flow_num_filters": int(sd["flow_network_temp.down_lbl.0.conv.weight"].shape[0]),
        "flow_max_num_filters": _cap(_max_width(sd, "flow_network_temp.down_lbl."),
                                     int(sd["flow_network_temp.down_lbl.0.conv.weight"].shape[0]) * 2**flow_down),
        "flow_num_downsamples": flow_down,
        "flow_num_res_blocks": _count(sd, r"^flow_network_temp\.res_flow\.(\d+)\."),
        "flow_multiplier": float(flow_multiplier),
        "multi_spade_layers": multi,
        "warp_embed_num_filters": w_nf,
        "warp_embed_num_downsamples": w_down,
        "warp_embed_arch": w_arch,
        "spade_kernel_size": int(sd["up_0.conv_block_0.norm.mlps.0.weight"].shape[-1]),
    }


def from_vid2vid(checkpoint: Mapping[str, Any], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """imaginaire vid2vid ``net_G`` (averaged model preferred) -> ``imaginaire_vid2vid`` state dict."""
    sd = generator_state_dict(checkpoint)
    return check_state_dict(sd, "imaginaire_vid2vid", config, _SOURCE)


def _fs_state_dict(checkpoint: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], bool]:
    """(state dict without a duplicated temporal flow network, whether it had a separate one)."""
    sd = generator_state_dict(checkpoint)
    temp = {k[len("flow_network_temp."):]: v for k, v in sd.items() if k.startswith("flow_network_temp.")}
    ref = {k[len("flow_network_ref."):]: v for k, v in sd.items() if k.startswith("flow_network_ref.")}
    def same(a: torch.Tensor, b: torch.Tensor) -> bool:  # meta tensors (key/shape lists) have no values
        return a.shape == b.shape if a.is_meta or b.is_meta else torch.equal(a, b)

    shared = bool(temp) and temp.keys() == ref.keys() and all(same(temp[k], ref[k]) for k in temp)
    if shared or not temp:
        sd = {k: v for k, v in sd.items() if not k.startswith("flow_network_temp.")}
    return sd, bool(temp) and not shared


def infer_fs_config(
    checkpoint: Mapping[str, Any], *, flow_multiplier: float = 20.0, few_shot_k: int | None = None
) -> dict[str, Any]:
    """Config of an ``fs_vid2vid`` generator from its (official) weights."""
    sd, sep_flow = _fs_state_dict(checkpoint)
    wg = "weight_generator."
    try:
        first = sd[wg + "ref_img_first.conv.weight"]
        label_channels = int(sd[wg + "ref_label_first.conv.weight"].shape[1])
        flow0 = sd["flow_network_ref.down_flow.0.conv.weight"]
    except KeyError as e:
        raise WeightsError(f"{_SOURCE}: not an imaginaire few-shot vid2vid generator (no {e.args[0]})") from None
    n_down = _count(sd, rf"^{wg}ref_img_down_(\d+)\.")
    has_atn = any(k.startswith(wg + "attention_module.") for k in sd)
    image_channels = int(sd["conv_img.weight"].shape[0])
    num_frames = 2
    if sep_flow:
        cin = int(sd["flow_network_temp.down_flow.0.conv.weight"].shape[1])
        num_frames = (cin + image_channels) // (label_channels + image_channels)
    w_nf, w_down, _ = _embed_cfg(sd, "ref_image_embedding")
    return {
        "label_channels": label_channels,
        "image_channels": image_channels,
        "num_frames": num_frames,
        "few_shot_k": few_shot_k if few_shot_k is not None else (2 if has_atn else 1),
        "num_filters": int(first.shape[0]),
        "max_num_filters": _cap(int(sd[f"up_{n_down}.conv_block_0.conv.weight"].shape[1]), int(first.shape[0]) * 2**n_down),
        "num_downsamples": n_down,
        "kernel_size": int(sd["conv_img.weight"].shape[-1]),
        "num_hyper_layers": _count(sd, rf"^{wg}fc_spade_0_(\d+)\."),
        "hyper_embed": any(k.startswith(wg + "fc_spade_e_") for k in sd),
        "num_fc_layers": _count(sd, rf"^{wg}fc_spade_0_0\.(\d+)\.") - 1,
        "spade_kernel_size": int(first.shape[-1]),
        "embed_num_downsamples": _count(sd, rf"^{wg}label_embedding\.down_(\d+)\."),
        "attention_num_downsamples": _count(sd, rf"^{wg}attention_module\.atn_key_(\d+)\.") if has_atn else 2,
        "flow_num_filters": int(flow0.shape[0]),
        "flow_max_num_filters": _cap(_max_width(sd, "flow_network_ref.down_flow."),
                                     int(flow0.shape[0]) * 2 ** (_count(sd, r"^flow_network_ref\.down_flow\.(\d+)\.") - 1)),
        "flow_num_downsamples": _count(sd, r"^flow_network_ref\.down_flow\.(\d+)\.") - 1,
        "flow_num_res_blocks": _count(sd, r"^flow_network_ref\.res_flow\.(\d+)\."),
        "flow_multiplier": float(flow_multiplier),
        "multi_spade_layers": sum(1 for i in range(n_down + 1) if f"up_{i}.conv_block_0.norm.mlps.1.weight" in sd),
        "warp_embed_num_filters": w_nf,
        "warp_embed_num_downsamples": w_down,
        "sep_prev_flow": sep_flow,
        "sep_warp_embed": any(k.startswith("prev_image_embedding.") for k in sd),
    }


_GENERATOR_TYPES = {"imaginaire.generators.vid2vid": "imaginaire_vid2vid",
                    "imaginaire.generators.fs_vid2vid": "fs_vid2vid"}


def config_from_options(checkpoint: Mapping[str, Any], options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(arch, constructor config) for imaginaire weights and their yaml config ``options`` (as
    ``imaginaire.config.Config`` reads it): the generator from ``gen.type`` (else from the keys),
    ``gen.flow.flow_output_multiplier`` and, for few-shot vid2vid, ``data.initial_few_shot_K``;
    the rest is read off the shapes."""
    gen = options.get("gen") or {}
    arch = _GENERATOR_TYPES.get(gen.get("type", ""))
    if arch is None and gen.get("type"):
        raise WeightsError(f"{_SOURCE}: no imgsynth model for generator type {gen['type']!r}")
    if arch is None:
        fs = any(k.startswith("weight_generator.") for k in generator_state_dict(checkpoint))
        arch = "fs_vid2vid" if fs else "imaginaire_vid2vid"
    extra: dict[str, Any] = {}
    multiplier = (gen.get("flow") or {}).get("flow_output_multiplier")
    if multiplier is not None:
        extra["flow_multiplier"] = float(multiplier)
    if arch == "fs_vid2vid":
        k = (options.get("data") or {}).get("initial_few_shot_K")
        return arch, infer_fs_config(checkpoint, few_shot_k=None if k is None else int(k), **extra)
    return arch, infer_vid2vid_config(checkpoint, **extra)


def from_fs_vid2vid(checkpoint: Mapping[str, Any], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """imaginaire few-shot vid2vid ``net_G`` (averaged model preferred) -> ``fs_vid2vid`` state dict."""
    sd, _ = _fs_state_dict(checkpoint)
    return check_state_dict(sd, "fs_vid2vid", config, _SOURCE)
