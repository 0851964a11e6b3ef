"""Turn a training checkpoint into a ``--weights DIR`` folder.

The folder holds:

- ``model.safetensors``: exactly ``build_model(arch, config).state_dict()`` of the generator
  (the EMA weights when the run kept an EMA), in fp32 or fp16;
- ``config.json``: ``{"format": "imgsynth-weights", "version": 1, "arch", "task", "config",
  "io", "license", "source"}``, what the engine reads to rebuild the network;
- ``README.md``: a model card (data, steps, losses, last logged values, licence).

:func:`export` also returns a TOML stanza for a ``weights/`` card, so a trained model can become a
bundled or Hub default (the schema of :mod:`imgsynth.engine.cards`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from imgsynth.errors import ConfigError, ImgsynthError, OutputError, WeightsError
from imgsynth.training.checkpoint import load_checkpoint
from imgsynth.training.config import dumps_toml

WEIGHTS_FORMAT = "imgsynth-weights"
WEIGHTS_VERSION = 1

_PAPERS = {
    "dcgan": "Radford, Metz, Chintala 2016, Unsupervised Representation Learning with Deep "
             "Convolutional Generative Adversarial Networks (arXiv:1511.06434)",
    "gan": "Goodfellow et al. 2014, Generative Adversarial Nets (arXiv:1406.2661)",
    "pix2pix_unet": "Isola, Zhu, Zhou, Efros 2017, Image-to-Image Translation with Conditional "
                    "Adversarial Networks (arXiv:1611.07004)",
    "progan": "Karras, Aila, Laine, Lehtinen 2018, Progressive Growing of GANs for Improved Quality, "
              "Stability, and Variation (arXiv:1710.10196)",
    "stylegan": "Karras, Laine, Aila 2019, A Style-Based Generator Architecture for Generative Adversarial "
                "Networks (arXiv:1812.04948)",
    "stylegan2": "Karras et al. 2020, Training Generative Adversarial Networks with Limited Data "
                 "(StyleGAN2-ADA, arXiv:2006.06676)",
    "pix2pixhd_global": "Wang et al. 2018, High-Resolution Image Synthesis and Semantic Manipulation with "
                        "Conditional GANs (arXiv:1711.11585)",
    "spade": "Park, Liu, Wang, Zhu 2019, Semantic Image Synthesis with Spatially-Adaptive Normalization "
             "(arXiv:1903.07291)",
    "panoptic": "Dundar, Sapra, Liu, Tao, Catanzaro 2020, Panoptic-based Image Synthesis (arXiv:2004.10289)",
    "pconv_unet": "Liu et al. 2018, Image Inpainting for Irregular Holes Using Partial Convolutions "
                  "(arXiv:1804.07723)",
}


@dataclass
class ExportResult:
    """Where an export went and what it contains."""

    out_dir: Path
    arch: str
    task: str
    steps: int
    dtype: str
    ema: bool
    sha256: str
    card_toml: str
    #: what the export decided for the user (e.g. a bundled model's name not inherited)
    notes: list[str] = field(default_factory=list)


def _slug(name: str) -> str:
    """A card id made from a model name."""
    return re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")


def _card_ids() -> set[str]:
    """Ids of the cards imgsynth ships (weights/*.toml)."""
    from imgsynth.engine.cards import load_cards

    try:
        return set(load_cards())
    except ImgsynthError:  # a broken card file must not stop an export
        return set()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _weights(state: dict[str, Any], use_ema: bool) -> tuple[dict[str, torch.Tensor], bool]:
    if use_ema and state.get("G_ema") is not None:
        return state["G_ema"], True
    return state["G"], False


def _card_readme(state: dict[str, Any], cfg: dict[str, Any], info: dict[str, Any], ema: bool,
                 dtype: str) -> str:
    arch, steps = state["arch"], int(state["step"])
    loss, optim, data = cfg["loss"], cfg["optim"], cfg["data"]
    history = state.get("history") or []
    last = history[-1] if history else {}
    spdx = info["license"].lower()
    hub_licence = spdx if re.fullmatch(r"[a-z0-9][a-z0-9.\-]*", spdx) and spdx != "unspecified" else "other"
    lines = [
        # Hub model-card metadata (YAML front matter)
        "---",
        f"license: {hub_licence}",
        "library_name: imgsynth",
        "pipeline_tag: unconditional-image-generation" if info["task"] == "sample"
        else "pipeline_tag: image-to-image",
        f"tags: [imgsynth, gan, {arch}]",
        "---",
        "",
        f"# {info['name']}",
        "",
        f"A `{arch}` generator ({info['task']}) trained with `imgsynth train`.",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | `{arch}` ({_PAPERS.get(arch, 'see imgsynth.models.' + arch)}) |",
        f"| data | {state['dataset']} ({data['source']}, {data['resolution']}x{data['resolution']}, "
        f"{state['channels']} channel(s)) |",
        f"| steps | {steps} x batch {data['batch_size']} x {state.get('world_size', 1)} process(es) |",
        f"| adversarial loss | {loss['gan']} |",
    ]
    regs = []
    if loss["gan"] == "wgan-gp":
        regs.append(f"gradient penalty x {loss['gp_weight']}")
    if loss["r1_gamma"] > 0:
        regs.append(f"R1 gamma {loss['r1_gamma']} every {loss['r1_every']}")
    if loss["feature_matching"] > 0:
        regs.append(f"feature matching x {loss['feature_matching']}")
    lines += [
        f"| regularisers | {', '.join(regs) or 'none'} |",
        f"| optimiser | {optim['optimizer']}, lr G {optim['g_lr']} / D {optim['d_lr']}, "
        f"betas {optim['betas']} |",
        f"| weights | {'EMA of G (decay ' + str(optim['ema_decay']) + ')' if ema else 'G'}, {dtype} |",
        f"| training precision | {state.get('precision', 'fp32')} |",
        f"| licence | {info['license']} |",
    ]
    if last:
        vals = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k != "step")
        lines += ["", f"Last logged losses (step {int(last['step'])}): {vals}."]
    lines += [
        "",
        "No sample-quality metric (FID, KID) was computed for this export.",
        "",
        "## Use",
        "",
        "```",
        f"imgsynth {info['task']} --weights DIR ...",
        "```",
        "",
        "## Generator config",
        "",
        "```json",
        json.dumps(info["config"], indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


def export(
    checkpoint_or_state: str | Path | dict[str, Any],
    out_dir: str | Path,
    *,
    dtype: str | None = None,
    use_ema: bool = True,
    license: str | None = None,
    name: str | None = None,
) -> ExportResult:
    """Write ``model.safetensors`` + ``config.json`` + ``README.md`` for a trained generator.

    ``checkpoint_or_state``: a checkpoint file, a run folder (its newest checkpoint) or a state dict
    as returned by :meth:`Trainer.state_dict`. ``dtype`` ``fp32``/``fp16`` and ``license``/``name``
    default to the recipe's ``[export]`` section.
    """
    from imgsynth.models.registry import build_model

    state = (
        checkpoint_or_state if isinstance(checkpoint_or_state, dict)
        else load_checkpoint(checkpoint_or_state)
    )
    cfg = state["config"]
    exp = cfg.get("export", {})
    dtype = dtype or exp.get("dtype") or "fp32"
    if dtype not in ("fp32", "fp16"):
        raise ConfigError(f"export dtype must be fp32 or fp16, got {dtype!r}")
    arch, task = state["arch"], state["task"]
    g_config = dict(state["generator_config"])

    weights, ema = _weights(state, use_ema)
    from imgsynth.training.config import from_dict as _from_dict
    from imgsynth.training.families import get_family as _get_family

    family = _get_family(state["family"])
    g_config, weights = family.export_generator(
        g_config, weights, int(state["step"]), family.options(_from_dict(cfg)))
    # the weights must load into the registry's network exactly as the engine will load them
    model = build_model(arch, g_config)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"checkpoint weights do not fit {arch!r}: {str(exc).splitlines()[0]}") from None
    out_state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if dtype == "fp16" and v.is_floating_point():
            v = v.half()
        out_state[k] = v.contiguous().clone()

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {str(out)!r}: {exc.strerror}") from None
    weights_path = out / "model.safetensors"
    tmp = weights_path.with_name(f".{weights_path.name}.tmp-{os.getpid()}")
    save_file(out_state, str(tmp), metadata={"format": "pt"})
    os.chmod(tmp, 0o644)  # safetensors creates the file private; a weights folder is for sharing
    os.replace(tmp, weights_path)
    sha = _sha256(weights_path)

    notes: list[str] = []
    recipe_name = exp.get("name") or ""
    recipe_licence = exp.get("license") or cfg["data"].get("license") or ""
    if name is None and recipe_name and _slug(recipe_name) in _card_ids():
        # a copied bundled recipe: its name, card id and licence belong to that bundled model
        notes.append(
            f"export.name {recipe_name!r} is the id of a model imgsynth ships; the export is named after "
            f"the run instead, with licence 'unspecified' (pass --name / --license to set them)"
        )
        recipe_name, recipe_licence = "", ""
    licence = license or recipe_licence or "unspecified"
    model_name = name or recipe_name or f"{arch}-{Path(cfg['run']['out_dir']).name}"
    from imgsynth.training.config import from_dict
    from imgsynth.training.families import get_family

    io = get_family(state["family"]).io(from_dict(cfg), g_config, int(state["channels"]))
    config_json = {
        "format": WEIGHTS_FORMAT,
        "version": WEIGHTS_VERSION,
        "arch": arch,
        "task": task,
        "config": g_config,
        "io": io,
        "license": licence,
        "source": {
            "trained_by": "imgsynth train",
            "steps": int(state["step"]),
            "dataset": state["dataset"],
            "family": state["family"],
            "ema": ema,
            "dtype": dtype,
        },
    }
    _atomic_write(out / "config.json", json.dumps(config_json, indent=2) + "\n")
    info = {"name": model_name, "task": task, "license": licence, "config": g_config}
    _atomic_write(out / "README.md", _card_readme(state, cfg, info, ema, dtype))

    card_id = _slug(model_name) or arch
    card = {
        "id": card_id,
        "arch": arch,
        "task": task,
        "title": f"{arch} trained on {state['dataset']} ({int(state['step'])} steps, imgsynth train)",
        "license": licence,
        "paper": _PAPERS.get(arch, ""),
        "dataset": state["dataset"],
        "description": f"Generator exported by imgsynth train ({'EMA weights, ' if ema else ''}{dtype}).",
        "source": {"kind": "bundled", "path": f"{card_id}.safetensors", "sha256": sha},
        "config": g_config,
        "io": io,
    }
    card_toml = (
        f"# weights/{card_id}.toml: copy model.safetensors to weights/{card_id}.safetensors, or upload it\n"
        "# (imgsynth models push) and use [source] kind = \"hub\" with repo_id, filename and revision\n"
        + dumps_toml(card)
    )
    return ExportResult(
        out_dir=out, arch=arch, task=task, steps=int(state["step"]), dtype=dtype, ema=ema,
        sha256=sha, card_toml=card_toml, notes=notes,
    )


@dataclass
class PushResult:
    """What :func:`push_to_hub` uploaded (or would upload, with ``dry_run``)."""

    repo_id: str
    repo_url: str
    revision: str
    files: list[dict[str, Any]]
    dry_run: bool
    commit: str | None = None
    commit_url: str | None = None

    def record(self) -> dict[str, Any]:
        """JSON-friendly summary."""
        return dict(vars(self))


PUSH_FILES = ("model.safetensors", "config.json", "README.md")


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    dry_run: bool = False,
    commit_message: str | None = None,
) -> PushResult:
    """Upload an exported folder (model.safetensors, config.json, README.md) to a Hub model repo.

    The repository is created if needed (``private`` then applies), and so is branch ``revision``.
    With ``dry_run`` only the folder is checked and the files listed; nothing touches the network.
    Endpoint and token come from huggingface_hub's usual settings (``HF_ENDPOINT``, ``HF_TOKEN``).
    """
    folder = Path(folder)
    meta_path = folder / "config.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError(f"{str(folder)!r} has no config.json; export a checkpoint first") from None
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{meta_path}: invalid JSON ({exc})") from None
    if meta.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"{meta_path}: not an imgsynth export (format {WEIGHTS_FORMAT!r})")
    if not (folder / "model.safetensors").is_file():
        raise WeightsError(f"{str(folder)!r} has no model.safetensors")
    if not re.fullmatch(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+", repo_id):
        raise ConfigError(f"repository id must look like namespace/name, got {repo_id!r}")
    files = [
        {"path": name, "size": (folder / name).stat().st_size, "sha256": _sha256(folder / name)}
        for name in PUSH_FILES if (folder / name).is_file()
    ]
    from huggingface_hub import constants

    # read at call time (huggingface_hub reads HF_ENDPOINT once, at import)
    endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    branch = revision or "main"
    repo_url = f"{endpoint}/{repo_id}"
    if dry_run:
        return PushResult(repo_id, repo_url, branch, files, True)

    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=endpoint)
    message = commit_message or (
        f"imgsynth: {meta.get('arch')} ({meta.get('source', {}).get('steps', '?')} steps on "
        f"{meta.get('source', {}).get('dataset', '?')})"
    )
    try:
        repo_url = str(api.create_repo(repo_id, private=private, exist_ok=True))
        if branch != "main":
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), revision=branch,
            allow_patterns=list(PUSH_FILES), commit_message=message,
        )
    except HfHubHTTPError as exc:
        raise OutputError(f"cannot push to {repo_id!r}: {str(exc).splitlines()[0]}") from None
    return PushResult(repo_id, repo_url, branch, files, False, info.oid, info.commit_url)
