"""NVIDIA/pix2pixHD generators -> imgsynth ``pix2pixhd_global`` / ``pix2pixhd_local``.

The official ``latest_net_G.pth`` (``BaseModel.save_network``) is a plain ``netG.state_dict()``;
read it with ``torch.load(path, map_location="cpu", weights_only=True)`` and pass the dict here.

Key mapping (official -> imgsynth), with ``d = n_downsample_global``, ``b = n_blocks_global``:

- ``GlobalGenerator``: flat ``model.<i>``. ``model.1``/``model.2`` -> ``stem.conv``/``stem.norm``;
  ``model.{4+3i}`` -> ``down.{i}.conv`` (norm at +1); ``model.{4+3d+k}.conv_block.{1,2,5,6}`` ->
  ``blocks.{k}.{conv1,norm1,conv2,norm2}``; ``model.{4+3d+b+3i}`` -> ``up.{i}.conv`` (norm at +1);
  ``model.{5+6d+b}`` -> ``head``.
- ``LocalEnhancer``: ``model.*`` (G1 without its last three layers) -> ``global_net.*`` as above;
  for enhancer n = 1..N (k = n - 1): ``model{n}_1.{1,2,4,5}`` -> ``enhancers.{k}.stem.conv``,
  ``stem.norm``, ``down.conv``, ``down.norm``; ``model{n}_2.{j}.conv_block.*`` ->
  ``enhancers.{k}.blocks.{j}.*``; ``model{n}_2.{m}`` (m = n_blocks_local) -> ``up.conv`` (norm
  at m+1); ``model{N}_2.{m+4}`` -> ``enhancers.{N-1}.head``.

Loading tolerance: the official ``load_network`` falls back to loading only the keys the model
has when a strict load fails. Here extra keys (e.g. legacy InstanceNorm ``running_*`` buffers) are
dropped too, and named: :func:`convert_nvidia` returns them, :func:`from_nvidia` warns. Missing or
misshapen keys are a :class:`WeightsError` (the official fallback would silently leave those
layers randomly initialised).

What the shapes cannot tell: how the input channels split into labels and the instance-edge
channel (``infer_config(ckpt, use_instance=True)``, the official default: 36 = 35 labels + 1).
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Mapping

import torch

from imgsynth.convert import check_state_dict
from imgsynth.convert.pix2pix import as_state_dict, full_config, remap
from imgsynth.errors import WeightsError

_SOURCE = "pix2pixHD checkpoint"


def _plain_convs(sd: Mapping[str, torch.Tensor], prefix: str) -> list[int]:
    pat = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.weight$")
    return sorted(int(m.group(1)) for k, v in sd.items() if (m := pat.match(k)) and v.dim() == 4)


def _blocks(sd: Mapping[str, torch.Tensor], prefix: str) -> list[int]:
    pat = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.conv_block\.")
    return sorted({int(m.group(1)) for k in sd if (m := pat.match(k))})


def _trunk_modules(
    src: str, dst: str, n_down: int, n_blocks: int, with_head: bool
) -> tuple[dict[str, str], dict[str, str]]:
    """(conv modules, norm modules) of an official ``GlobalGenerator.model`` Sequential."""
    convs = {f"{src}.1": f"{dst}stem.conv"}
    norms = {f"{src}.2": f"{dst}stem.norm"}
    for i in range(n_down):
        convs[f"{src}.{4 + 3 * i}"] = f"{dst}down.{i}.conv"
        norms[f"{src}.{5 + 3 * i}"] = f"{dst}down.{i}.norm"
    first = 4 + 3 * n_down
    for k in range(n_blocks):
        _block_modules(convs, norms, f"{src}.{first + k}", f"{dst}blocks.{k}")
    for i in range(n_down):
        convs[f"{src}.{first + n_blocks + 3 * i}"] = f"{dst}up.{i}.conv"
        norms[f"{src}.{first + n_blocks + 3 * i + 1}"] = f"{dst}up.{i}.norm"
    if with_head:
        convs[f"{src}.{first + n_blocks + 3 * n_down + 1}"] = f"{dst}head"
    return convs, norms


def _block_modules(convs: dict[str, str], norms: dict[str, str], src: str, dst: str) -> None:
    # ResnetBlock.conv_block = [ReflectPad, Conv, norm, ReLU, ReflectPad, Conv, norm]
    convs[f"{src}.conv_block.1"] = f"{dst}.conv1"
    norms[f"{src}.conv_block.2"] = f"{dst}.norm1"
    convs[f"{src}.conv_block.5"] = f"{dst}.conv2"
    norms[f"{src}.conv_block.6"] = f"{dst}.norm2"


def _modules(arch: str, cfg: dict[str, Any]) -> tuple[dict[str, str], set[str]]:
    if arch == "pix2pixhd_global":
        convs, norms = _trunk_modules("model", "", cfg["n_downsample_global"], cfg["n_blocks_global"], True)
    else:
        convs, norms = _trunk_modules("model", "global_net.", cfg["n_downsample_global"], cfg["n_blocks_global"], False)
        n_local, m = cfg["n_local_enhancers"], cfg["n_blocks_local"]
        for n in range(1, n_local + 1):
            dst, front, back = f"enhancers.{n - 1}.", f"model{n}_1", f"model{n}_2"
            convs.update({f"{front}.1": dst + "stem.conv", f"{front}.4": dst + "down.conv", f"{back}.{m}": dst + "up.conv"})
            norms.update({f"{front}.2": dst + "stem.norm", f"{front}.5": dst + "down.norm", f"{back}.{m + 1}": dst + "up.norm"})
            for j in range(m):
                _block_modules(convs, norms, f"{back}.{j}", f"{dst}blocks.{j}")
            if n == n_local:
                convs[f"{back}.{m + 4}"] = dst + "head"
    if cfg["norm"] in ("batch", "instance_tracked"):  # layers with running statistics (vid2vid netG_i)
        return {**convs, **norms}, set()
    return convs, set(norms)


def infer_arch(checkpoint: Mapping[str, torch.Tensor]) -> str:
    """``"pix2pixhd_local"`` if the checkpoint has local enhancers (``model1_1.*``), else ``"pix2pixhd_global"``."""
    sd = as_state_dict(checkpoint, _SOURCE)
    if any(k.startswith("model1_1.") for k in sd):
        return "pix2pixhd_local"
    if "model.1.weight" in sd:
        return "pix2pixhd_global"
    raise WeightsError("not a pix2pixHD generator (no model.1.weight); pass latest_net_G.pth")


def infer_config(checkpoint: Mapping[str, torch.Tensor], *, use_instance: bool = True) -> dict[str, Any]:
    """Config of the generator in ``checkpoint``, read off the tensor shapes.

    ``use_instance`` says whether the last input channel is the instance-edge map (the official
    default, and true of the released Cityscapes models); ``label_nc`` is the remaining channels.
    """
    sd = as_state_dict(checkpoint, _SOURCE)
    arch = infer_arch(sd)
    local = arch == "pix2pixhd_local"
    stem = sd["model.1.weight"]
    plain = _plain_convs(sd, "model")
    # stem + d downs + d ups (+ head for the global generator) plain convs in the trunk
    n_down, rest = divmod(len(plain) - (1 if local else 2), 2)
    if rest or n_down < 0:
        raise WeightsError(f"{_SOURCE}: cannot read the down/up-sampling stages off convs at model.{plain}")
    cfg: dict[str, Any] = {
        "use_instance": use_instance,
        "label_nc": int(stem.shape[1]) - int(use_instance),
        "n_downsample_global": n_down,
        "n_blocks_global": len(_blocks(sd, "model")),
        "norm": "batch" if "model.2.weight" in sd else "instance",
    }
    if not local:
        cfg["ngf"] = int(stem.shape[0])
        cfg["output_nc"] = int(sd[f"model.{plain[-1]}.weight"].shape[0])
        return cfg
    n_local = len({k.split(".", 1)[0] for k in sd if re.match(r"^model\d+_1\.", k)})
    last = f"model{n_local}_2"
    m = len(_blocks(sd, last))
    head = sd.get(f"{last}.{m + 4}.weight")
    front = sd.get(f"model{n_local}_1.1.weight")
    if head is None or front is None:
        raise WeightsError(f"{_SOURCE}: local enhancer {n_local} lacks {last}.{m + 4}.weight or model{n_local}_1.1.weight")
    cfg.update(
        ngf=int(front.shape[0]),
        output_nc=int(head.shape[0]),
        n_local_enhancers=n_local,
        n_blocks_local=m,
    )
    return cfg


def convert_nvidia(
    checkpoint: Mapping[str, torch.Tensor], config: dict[str, Any], arch: str | None = None
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official state dict -> (imgsynth state dict for ``arch(config)``, dropped official keys)."""
    sd = as_state_dict(checkpoint, _SOURCE)
    arch = arch or infer_arch(sd)
    modules, legacy = _modules(arch, full_config(arch, config))
    out, unknown, legacy_dropped = remap(sd, modules, legacy)
    return check_state_dict(out, arch, config, _SOURCE), unknown + legacy_dropped


def from_nvidia(checkpoint: Mapping[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Official global or local generator -> imgsynth state dict; warns naming any dropped keys."""
    state_dict, dropped = convert_nvidia(checkpoint, config)
    if dropped:
        shown = ", ".join(dropped[:5]) + (", ..." if len(dropped) > 5 else "")
        warnings.warn(
            f"{_SOURCE}: ignored {len(dropped)} key(s) the model does not use ({shown}), "
            "as the official load_network does",
            stacklevel=2,
        )
    return state_dict


def from_nvidia_global(checkpoint: Mapping[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """``from_nvidia`` for a card that names the global generator explicitly."""
    if infer_arch(checkpoint) != "pix2pixhd_global":
        raise WeightsError(f"{_SOURCE}: this is a local-enhancer (1024p) checkpoint; use arch pix2pixhd_local")
    return from_nvidia(checkpoint, config)


def from_nvidia_local(checkpoint: Mapping[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """``from_nvidia`` for a card that names the local enhancer explicitly."""
    if infer_arch(checkpoint) != "pix2pixhd_local":
        raise WeightsError(f"{_SOURCE}: this is a global-generator (512p) checkpoint; use arch pix2pixhd_global")
    return from_nvidia(checkpoint, config)
