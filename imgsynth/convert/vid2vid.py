"""NVIDIA/vid2vid generators -> imgsynth ``vid2vid`` (and the first-frame ``netG_i``).

The official checkpoints are one plain ``netG<s>.state_dict()`` per spatial scale,
``latest_net_G<s>.pth`` (``BaseModel.save_network``), s = 0 the coarsest (``CompositeGenerator``),
s >= 1 ``CompositeLocalGenerator``s. Read each with ``torch.load(path, map_location="cpu",
weights_only=True)``. The converters here accept either

- one scale's dict (keys ``model_down_seg.1.weight`` ...), taken as scale 0, or
- all scales in one dict with the ``netG<s>.`` prefixes of the official ``Vid2VidModelG``
  attributes (what :func:`merge_scales` makes of the per-scale files, and how the conformance
  data stores a two-scale model).

Key mapping (official -> imgsynth, per scale s under ``scales.<s>.``), with ``d = n_downsample``:

- s = 0: ``model_down_seg`` / ``model_down_img`` (``.1``/``.2`` stem conv/norm, ``.{4+3i}`` /
  ``.{5+3i}`` down i, ``.{4+3d+k}.conv_block.{1,2,5,6}`` residual block k) -> ``label_encoder`` /
  ``image_encoder``; ``model_res_img.k`` + ``model_up_img.{3i,3i+1}`` -> ``image_decoder.blocks.k``
  / ``image_decoder.up.i``; ``model_final_img.1`` -> ``image_out``; the same for
  ``model_res_flow`` / ``model_up_flow`` -> ``flow_decoder``, ``model_final_flow.1`` ->
  ``flow_out``, ``model_final_w.1`` -> ``weight_out``; ``indv_down`` (+ ``indv_res.k``) ->
  ``fg_encoder``, ``indv_up.{3i}`` -> ``fg_decoder.up.i``, ``indv_final.1`` -> ``fg_out``.
- s >= 1: ``model_down_seg`` / ``model_down_img`` ``.1``/``.2``, ``.4``/``.5`` -> encoder stem /
  ``down.0``; ``model_up_img.k`` (k < n_blocks_local) -> ``image_decoder.blocks.k``,
  ``model_up_img.{n,n+1}`` -> ``image_decoder.up.0``; likewise ``model_up_flow``, ``indv_down``,
  ``indv_up``; the ``*_final*`` convs as at s = 0.

Norm layers: ``--norm batch`` keeps weight, bias and running statistics; ``--norm instance``
(InstanceNorm with tracked statistics) has running statistics only. Both are kept.

What the shapes cannot tell: ``use_instance`` (default True: each frame's last channel is the
instance-edge map, as in every released street model) and ``fg_labels`` (default ``[26]``,
Cityscapes cars; the labels are not in the weights). Pass them to :func:`infer_config`, or the
official options to :func:`config_from_options` (which also recognises a first-frame ``netG_i``).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from imgsynth.convert import check_state_dict
from imgsynth.convert.pix2pix import as_state_dict, remap
from imgsynth.errors import WeightsError

_SOURCE = "vid2vid checkpoint"
_ARCH = "vid2vid"
FIRST_FRAME_PREFIX = "netG_i."
"""Prefix of the first-frame generator's keys in a merged checkpoint (the ``Vid2VidModelG`` attribute)."""


def merge_scales(per_scale: Mapping[int, Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """{s: state dict of ``latest_net_G<s>.pth``} -> one dict with ``netG<s>.`` prefixes."""
    out: dict[str, torch.Tensor] = {}
    for s, sd in sorted(per_scale.items()):
        for k, v in as_state_dict(sd, f"{_SOURCE} (scale {s})").items():
            out[f"netG{s}.{k}"] = v
    return out


def split_scales(checkpoint: Mapping[str, Any]) -> dict[int, dict[str, torch.Tensor]]:
    """One dict per scale, from prefixed (``netG<s>.``) or unprefixed (= scale 0) keys."""
    sd = as_state_dict(checkpoint, _SOURCE)
    pat = re.compile(r"^netG(\d+)\.(.*)$")
    scales: dict[int, dict[str, torch.Tensor]] = {}
    plain: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.startswith(FIRST_FRAME_PREFIX):
            continue
        m = pat.match(k)
        if m:
            scales.setdefault(int(m.group(1)), {})[m.group(2)] = v
        else:
            plain[k] = v
    if plain and scales:
        raise WeightsError(f"{_SOURCE}: mixes netG<s>.-prefixed and unprefixed keys ({next(iter(plain))})")
    if plain:
        scales = {0: plain}
    if sorted(scales) != list(range(len(scales))):
        raise WeightsError(f"{_SOURCE}: scales {sorted(scales)} are not 0..{len(scales) - 1}")
    for s, ssd in scales.items():
        if "model_down_seg.1.weight" not in ssd:
            raise WeightsError(f"{_SOURCE}: scale {s} has no model_down_seg.1.weight; pass latest_net_G<s>.pth")
    return scales


def _numbered(sd: Mapping[str, torch.Tensor], prefix: str) -> list[int]:
    pat = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.")
    return sorted({int(m.group(1)) for k in sd if (m := pat.match(k))})


def _blocks(sd: Mapping[str, torch.Tensor], prefix: str) -> list[int]:
    pat = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.conv_block\.")
    return sorted({int(m.group(1)) for k in sd if (m := pat.match(k))})


def infer_config(
    checkpoint: Mapping[str, Any], *, use_instance: bool = True, fg_labels: list[int] | None = None
) -> dict[str, Any]:
    """Constructor config of the ``vid2vid`` generator in ``checkpoint``, read off the shapes."""
    scales = split_scales(checkpoint)
    g0 = scales[0]
    stem = g0["model_down_seg.1.weight"]
    prev = g0["model_down_img.1.weight"]
    out_w = g0.get("model_final_img.1.weight")
    if out_w is None:
        raise WeightsError(f"{_SOURCE}: scale 0 has no model_final_img.1.weight")
    output_nc = int(out_w.shape[0])
    n_prev, rest = divmod(int(prev.shape[1]), output_nc)
    if rest:
        raise WeightsError(f"{_SOURCE}: previous-frame input of {prev.shape[1]} channels is not a multiple of {output_nc}")
    n_frames = n_prev + 1
    frame_nc, rest = divmod(int(stem.shape[1]), n_frames)
    if rest:
        raise WeightsError(f"{_SOURCE}: label input of {stem.shape[1]} channels does not split into {n_frames} frames")
    convs = [i for i in _numbered(g0, "model_down_seg") if g0.get(f"model_down_seg.{i}.weight") is not None
             and g0[f"model_down_seg.{i}.weight"].dim() == 4]
    n_down = len(convs) - 1
    enc_blocks = len(_blocks(g0, "model_down_seg"))
    dec_blocks = len(_blocks(g0, "model_res_img"))
    label_nc = frame_nc - int(use_instance)
    cfg: dict[str, Any] = {
        "label_nc": label_nc,
        "use_instance": use_instance,
        "output_nc": output_nc,
        "ngf": int(stem.shape[0]),
        "n_downsample": n_down,
        "n_blocks": enc_blocks + dec_blocks,
        "n_frames": n_frames,
        "n_scales": len(scales),
        "norm": "batch" if "model_down_seg.2.weight" in g0 else "instance_tracked",
        "fg": "indv_down.1.weight" in g0,
        "flow": "model_final_flow.1.weight" in g0,
    }
    if label_nc <= 0:
        cfg.update(label_nc=0, input_nc=frame_nc - int(use_instance))
    if len(scales) > 1:
        cfg["n_blocks_local"] = len(_blocks(scales[1], "model_up_img"))
    if cfg["fg"]:
        cfg["fg_labels"] = list(fg_labels) if fg_labels is not None else [26]
    first = {k[len(FIRST_FRAME_PREFIX):]: v for k, v in checkpoint.items() if k.startswith(FIRST_FRAME_PREFIX)}
    if first:
        cfg["first_frame_arch"], cfg["first_frame_config"] = first_frame_config(first)
    if enc_blocks != cfg["n_blocks"] - cfg["n_blocks"] // 2:
        raise WeightsError(f"{_SOURCE}: {enc_blocks} encoder / {dec_blocks} decoder blocks is not an official split")
    return cfg



def _encoder(m: dict, src: str, dst: str, n_down: int, n_blocks: int) -> None:
    m[f"{src}.1"] = f"{dst}.stem.conv"
    m[f"{src}.2"] = f"{dst}.stem.norm"
    for i in range(n_down):
        m[f"{src}.{4 + 3 * i}"] = f"{dst}.down.{i}.conv"
        m[f"{src}.{5 + 3 * i}"] = f"{dst}.down.{i}.norm"
    first = 4 + 3 * n_down
    for k in range(n_blocks):
        _block(m, f"{src}.{first + k}", f"{dst}.blocks.{k}")


def _block(m: dict, src: str, dst: str) -> None:
    m[f"{src}.conv_block.1"] = f"{dst}.conv1"
    m[f"{src}.conv_block.2"] = f"{dst}.norm1"
    m[f"{src}.conv_block.5"] = f"{dst}.conv2"
    m[f"{src}.conv_block.6"] = f"{dst}.norm2"


def _ups(m: dict, src: str, dst: str, n_up: int, offset: int) -> None:
    for i in range(n_up):
        m[f"{src}.{offset + 3 * i}"] = f"{dst}.up.{i}.conv"
        m[f"{src}.{offset + 3 * i + 1}"] = f"{dst}.up.{i}.norm"


def _scale_modules(s: int, cfg: dict[str, Any]) -> dict[str, str]:
    m: dict[str, str] = {}
    p = f"scales.{s}"
    flow = cfg.get("flow", True)
    if s == 0:
        d, nb = cfg["n_downsample"], cfg["n_blocks"]
        enc, dec = nb - nb // 2, nb // 2
        _encoder(m, "model_down_seg", f"{p}.label_encoder", d, enc)
        _encoder(m, "model_down_img", f"{p}.image_encoder", d, enc)
        heads = [("img", "image_decoder")] + ([("flow", "flow_decoder")] if flow else [])
        for tag, dst in heads:
            for k in range(dec):
                _block(m, f"model_res_{tag}.{k}", f"{p}.{dst}.blocks.{k}")
            _ups(m, f"model_up_{tag}", f"{p}.{dst}", d, 0)
        if cfg.get("fg"):
            _encoder(m, "indv_down", f"{p}.fg_encoder", d, 0)
            for k in range(nb):
                _block(m, f"indv_res.{k}", f"{p}.fg_encoder.blocks.{k}")
            _ups(m, "indv_up", f"{p}.fg_decoder", d, 0)
    else:
        nl = cfg.get("n_blocks_local", 3)
        _encoder(m, "model_down_seg", f"{p}.label_encoder", 1, 0)
        _encoder(m, "model_down_img", f"{p}.image_encoder", 1, 0)
        heads = [("model_up_img", "image_decoder")] + ([("model_up_flow", "flow_decoder")] if flow else [])
        if cfg.get("fg"):
            _encoder(m, "indv_down", f"{p}.fg_encoder", 1, 0)
            heads.append(("indv_up", "fg_decoder"))
        for src, dst in heads:
            for k in range(nl):
                _block(m, f"{src}.{k}", f"{p}.{dst}.blocks.{k}")
            _ups(m, src, f"{p}.{dst}", 1, nl)
    m["model_final_img.1"] = f"{p}.image_out"
    if flow:
        m["model_final_flow.1"] = f"{p}.flow_out"
        m["model_final_w.1"] = f"{p}.weight_out"
    if cfg.get("fg"):
        m["indv_final.1"] = f"{p}.fg_out"
    return m


def from_official(checkpoint: Mapping[str, Any], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Official per-scale state dicts (merged with ``netG<s>.`` prefixes, or one unprefixed scale)
    -> imgsynth ``vid2vid`` state dict for ``config``; unknown, missing or misshapen keys raise."""
    scales = split_scales(checkpoint)
    want = int(config.get("n_scales", 1))
    if len(scales) != want:
        raise WeightsError(f"{_SOURCE}: holds {len(scales)} scale(s), the config has n_scales = {want}")
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for s, sd in scales.items():
        mapped, bad, _ = remap(sd, _scale_modules(s, config))
        out.update(mapped)
        unknown += [f"netG{s}.{k}" for k in bad]
    first = {k[len(FIRST_FRAME_PREFIX):]: v for k, v in checkpoint.items() if k.startswith(FIRST_FRAME_PREFIX)}
    if first:
        if not config.get("first_frame_arch"):
            raise WeightsError(f"{_SOURCE}: holds a first-frame generator (netG_i) but the config names none")
        sub = from_official_first_frame(first, config.get("first_frame_config") or {})
        out.update({f"first_frame.{k}": v for k, v in sub.items()})
    return check_state_dict(out, _ARCH, config, _SOURCE, unknown)


_SCALE_FILE = re.compile(r"(?:^|/)latest_net_G(\d+)\.pth$")
_SINGLE_FILE = re.compile(r"(?:^|/)latest_net_G_\d+\.pth$")


def merge_files(files: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """{archive member name: its state dict} -> one merged dict: ``latest_net_G<s>.pth`` ->
    ``netG<s>.*``, ``label2city_single/latest_net_G_<size>.pth`` -> ``netG_i.*``."""
    scales: dict[int, Mapping[str, torch.Tensor]] = {}
    out: dict[str, torch.Tensor] = {}
    for name, sd in files.items():
        if m := _SCALE_FILE.search(name):
            scales[int(m.group(1))] = sd
        elif _SINGLE_FILE.search(name):
            out.update({FIRST_FRAME_PREFIX + k: v for k, v in as_state_dict(sd, name).items()})
        else:
            raise WeightsError(f"{_SOURCE}: {name} is neither latest_net_G<s>.pth nor a netG_i latest_net_G_<size>.pth")
    if not scales:
        raise WeightsError(f"{_SOURCE}: no latest_net_G<s>.pth among {', '.join(files)}")
    out.update(merge_scales(scales))
    return out


def from_official_files(checkpoint: Mapping[str, Any], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Card converter for an archive with several members: {member: state dict} (every scale's
    ``latest_net_G<s>.pth`` and optionally ``netG_i``) -> imgsynth ``vid2vid`` state dict."""
    return from_official(merge_files(checkpoint), config)


def is_first_frame(checkpoint: Mapping[str, Any]) -> bool:
    """Whether ``checkpoint`` is a first-frame ``netG_i`` (a flat pix2pixHD ``model.<i>.*``
    Sequential) rather than composite scales (``model_down_seg.*`` / ``netG<s>.*``)."""
    return not any(k.startswith(("model_down_seg", "netG0.")) for k in checkpoint)


def config_from_options(checkpoint: Mapping[str, Any], options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(arch, constructor config) of the network in ``checkpoint``: a first-frame ``netG_i`` or the
    composite generator, read off the shapes, with what the shapes cannot tell taken from the
    official options (``TestOptions`` names: ``use_instance``, default True; ``fg_labels``)."""
    if is_first_frame(checkpoint):
        return first_frame_config(checkpoint)
    return _ARCH, infer_config(checkpoint, use_instance=bool(options.get("use_instance", True)),
                               fg_labels=options.get("fg_labels"))


def first_frame_config(checkpoint: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(arch, config) of the first-frame generator ``netG_i`` (``label2city_single/latest_net_G_*.pth``).

    ``netG_i`` is a pix2pixHD ``GlobalGenerator`` (1024: ngf 64, 4 downsamplings) or
    ``LocalEnhancer`` (2048: ngf 32) fed ``one_hot(label)`` without the edge channel, with
    ``--norm instance`` = InstanceNorm with tracked running statistics (the keys are in the file).
    """
    from imgsynth.convert import pix2pixhd

    arch = pix2pixhd.infer_arch(checkpoint)
    cfg = pix2pixhd.infer_config(checkpoint, use_instance=False)
    if any(k.endswith(".running_mean") for k in checkpoint):
        cfg["norm"] = "instance_tracked"
    return arch, cfg


def from_official_first_frame(checkpoint: Mapping[str, Any], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """``netG_i`` state dict -> imgsynth ``pix2pixhd_global`` / ``pix2pixhd_local`` state dict
    (strict: the official ``load_single_G`` loads it with ``load_state_dict`` strict too)."""
    from imgsynth.convert import pix2pixhd

    sd, dropped = pix2pixhd.convert_nvidia(checkpoint, config)
    if dropped:
        raise WeightsError(f"netG_i checkpoint: keys the generator does not have: {', '.join(dropped[:5])}")
    return sd
