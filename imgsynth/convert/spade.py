"""Official NVlabs/SPADE checkpoints -> imgsynth ``spade`` state dicts.

The official ``latest_net_G.pth`` is a plain ``netG.state_dict()`` (read it with
``torch.load(path, map_location="cpu", weights_only=True)``). With ``use_vae`` the style encoder
lives in a second file, ``latest_net_E.pth``; pass both as ``{"netG": G, "netE": E}``.

Key mapping (official -> imgsynth):
- spectral-normed convs ``X.weight_orig``, ``X.weight_u``, ``X.weight_v`` -> ``X.weight`` =
  ``weight_orig / sigma``, ``sigma = u . (W_mat v)`` with the *stored* u, v (exactly what the
  official eval-mode forward uses; no power iteration). With ``spectral_norm=True`` in the
  config they map to the parametrization keys instead (for fine-tuning).
- ``*.mlp_gamma.*`` + ``*.mlp_beta.*`` -> ``*.mlp_gamma_beta.*`` (gamma rows first).
- encoder keys get the prefix ``encoder.``; everything else is unchanged (BatchNorm
  ``running_mean/var/num_batches_tracked`` included).

What the shapes cannot tell (the split of the label channels into labels, dontcare and instance
edges; ``normal`` vs ``more`` upsampling; the crop size) comes from ``infer_config`` hints, e.g.
``infer_config(ckpt, dataset="cityscapes")``.
"""

from __future__ import annotations

from typing import Any

import torch

from imgsynth.errors import ConfigError, WeightsError
from imgsynth.models.registry import build_model
from imgsynth.models.spade import latent_grid

DATASETS: dict[str, dict[str, Any]] = {
    "cityscapes": dict(label_nc=35, contain_dontcare=False, use_instance=True, crop_size=512,
                       aspect_ratio=2.0, num_upsampling_layers="more"),
    "ade20k": dict(label_nc=150, contain_dontcare=True, use_instance=False, crop_size=256,
                   aspect_ratio=1.0, num_upsampling_layers="normal"),
    "coco": dict(label_nc=182, contain_dontcare=True, use_instance=True, crop_size=256,
                 aspect_ratio=1.0, num_upsampling_layers="normal"),
}
"""Options of the released checkpoints (official dataset option defaults + README test commands)."""

_HINTS = {"label_nc", "contain_dontcare", "use_instance", "crop_size", "aspect_ratio", "latent_size",
          "latent_from_input", "num_upsampling_layers", "spectral_norm"}


def fold_spectral_norm(weight_orig: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Eval-mode spectral norm: ``weight_orig / (u . (W_mat v))`` with ``W_mat`` = (out, -1)."""
    w_mat = weight_orig.reshape(weight_orig.shape[0], -1)
    sigma = torch.dot(u, torch.mv(w_mat, v))
    return weight_orig / sigma


def convert_keys(state_dict: dict[str, torch.Tensor], *, spectral_norm: bool = False) -> dict[str, torch.Tensor]:
    """Map official SPADE module keys (generator, residual block or SPADE layer) to imgsynth's.

    Strictness against a target module is left to ``load_state_dict(strict=True)`` or
    :func:`from_official`; an incomplete spectral-norm or gamma/beta group raises WeightsError.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.endswith(("weight_u", "weight_v")) and key[:-2] + "_orig" in state_dict:
            continue  # consumed with its weight_orig
        if key.endswith(".weight_orig") or key == "weight_orig":
            base = key[: -len("_orig")]
            try:
                u, v = state_dict[base + "_u"], state_dict[base + "_v"]
            except KeyError:
                raise WeightsError(f"spectral-norm weight {key} has no {base}_u/_v in the checkpoint") from None
            if spectral_norm:
                prefix = base[: -len("weight")]
                out[prefix + "parametrizations.weight.original"] = value
                out[prefix + "parametrizations.weight.0._u"] = u
                out[prefix + "parametrizations.weight.0._v"] = v
            else:
                out[base] = fold_spectral_norm(value, u, v)
        elif ".mlp_beta." in key or key.startswith("mlp_beta."):
            continue  # consumed with its mlp_gamma
        elif ".mlp_gamma." in key or key.startswith("mlp_gamma."):
            beta_key = key.replace("mlp_gamma.", "mlp_beta.")
            if beta_key not in state_dict:
                raise WeightsError(f"{key} has no matching {beta_key} in the checkpoint")
            out[key.replace("mlp_gamma.", "mlp_gamma_beta.")] = torch.cat([value, state_dict[beta_key]])
        else:
            out[key] = value
    for key in state_dict:
        if (".mlp_beta." in key or key.startswith("mlp_beta.")) and key.replace("mlp_beta.", "mlp_gamma.") not in state_dict:
            raise WeightsError(f"{key} has no matching mlp_gamma entry in the checkpoint")
    return out


def _split(checkpoint: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    if "netG" in checkpoint:
        return checkpoint["netG"], checkpoint.get("netE")
    return checkpoint, None


def _get(sd: dict[str, torch.Tensor], *keys: str) -> torch.Tensor:
    for k in keys:
        if k in sd:
            return sd[k]
    raise WeightsError(f"not an official SPADE generator checkpoint: no {keys[0]!r} key")


def infer_config(checkpoint: dict[str, Any], **hints: Any) -> dict[str, Any]:
    """Constructor config of the ``spade`` architecture for an official checkpoint.

    Read from the shapes: ``ngf``, label-map channels, ``nhidden``, ``kernel_size``, ``norm``,
    ``use_vae``/``z_dim``, and ``num_upsampling_layers="most"`` (an ``up_4`` block). Hints
    supply the rest: ``dataset="cityscapes"|"ade20k"|"coco"`` for a released config and/or any
    of ``label_nc``, ``contain_dontcare``, ``use_instance``, ``crop_size``, ``aspect_ratio``,
    ``latent_size``, ``latent_from_input``, ``num_upsampling_layers``, ``spectral_norm``.
    Without hints every channel counts as a label, no dontcare, no instance edges.
    """
    g, _ = _split(checkpoint)
    dataset = hints.pop("dataset", None)
    unknown = sorted(set(hints) - _HINTS)
    if unknown:
        raise ConfigError(f"unknown SPADE hint(s) {', '.join(unknown)}; known: dataset, {', '.join(sorted(_HINTS))}")
    opts: dict[str, Any] = {}
    if dataset is not None:
        if dataset not in DATASETS:
            raise ConfigError(f"unknown SPADE dataset {dataset!r}; known: {', '.join(DATASETS)}")
        opts.update(DATASETS[dataset])
    opts.update(hints)

    head = _get(g, "head_0.conv_0.weight_orig", "head_0.conv_0.weight")
    shared = _get(g, "head_0.norm_0.mlp_shared.0.weight")
    fc = _get(g, "fc.weight")
    ngf = head.shape[0] // 16
    semantic_nc = shared.shape[1]
    cfg: dict[str, Any] = {
        "ngf": ngf,
        "nhidden": shared.shape[0],
        "kernel_size": shared.shape[-1],
        "norm": "batch" if "head_0.norm_0.param_free_norm.running_mean" in g else "instance",
        "use_vae": fc.dim() == 2,
        "z_dim": fc.shape[1] if fc.dim() == 2 else 256,
        "spectral_norm": bool(opts.get("spectral_norm", False)),
    }

    has_up4 = any(k.startswith("up_4.") for k in g)
    mode = opts.get("num_upsampling_layers", "most" if has_up4 else "normal")
    if (mode == "most") != has_up4:
        raise WeightsError(
            f"num_upsampling_layers={mode!r} does not match the checkpoint "
            f"({'has' if has_up4 else 'has no'} an up_4 block)"
        )
    cfg["num_upsampling_layers"] = mode

    dontcare = bool(opts.get("contain_dontcare", False))
    instance = bool(opts.get("use_instance", False))
    label_nc = int(opts.get("label_nc", semantic_nc - dontcare - instance))
    if label_nc + dontcare + instance != semantic_nc:
        raise WeightsError(
            f"checkpoint takes {semantic_nc} label channels but label_nc={label_nc} "
            f"+ dontcare={int(dontcare)} + instance={int(instance)} = {label_nc + dontcare + instance}"
        )
    cfg.update(label_nc=label_nc, contain_dontcare=dontcare, use_instance=instance)

    for key in ("crop_size", "aspect_ratio", "latent_size", "latent_from_input"):
        if key in opts:
            cfg[key] = opts[key]
    if cfg["use_vae"]:
        sh, sw = cfg.get("latent_size") or latent_grid(
            cfg.get("crop_size", 256), cfg.get("aspect_ratio", 1.0), mode
        )
        if sh * sw * 16 * ngf != fc.shape[0]:
            raise WeightsError(
                f"fc maps z to {fc.shape[0]} values but the latent grid {sh}x{sw} needs {sh * sw * 16 * ngf}; "
                "give crop_size/aspect_ratio/num_upsampling_layers (or dataset=...)"
            )
    return cfg


def from_official(checkpoint: dict[str, Any], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Official netG state dict (or ``{"netG": ..., "netE": ...}``) -> ``spade`` state dict.

    The result loads with ``strict=True`` into ``build_model("spade", config)``; any missing,
    unexpected or mis-shaped key raises WeightsError.
    """
    g, e = _split(checkpoint)
    sn = bool(config.get("spectral_norm", False))
    out = convert_keys(g, spectral_norm=sn)
    if e is not None:
        out.update({f"encoder.{k}": v for k, v in convert_keys(e, spectral_norm=sn).items()})
    try:
        with torch.device("meta"):
            expected = build_model("spade", config).state_dict()
    except ValueError as err:
        raise ConfigError(f"invalid SPADE config: {err}") from None
    missing = [k for k in expected if k not in out]
    unexpected = [k for k in out if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s) (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s) (e.g. {', '.join(unexpected[:3])})")
        hint = " (use_vae checkpoints need {'netG': G, 'netE': E})" if any(k.startswith("encoder.") for k in missing) else ""
        raise WeightsError(f"SPADE checkpoint does not match the config: {'; '.join(parts)}{hint}")
    bad = [k for k in expected if tuple(out[k].shape) != tuple(expected[k].shape)]
    if bad:
        k = bad[0]
        raise WeightsError(
            f"SPADE checkpoint does not match the config: {len(bad)} mis-shaped key(s), e.g. {k} "
            f"{tuple(out[k].shape)} vs {tuple(expected[k].shape)}"
        )
    return {k: out[k] for k in expected}
