"""Write a complete, commented training recipe for the user's own data (``imgsynth train new``).

:func:`new_recipe` looks at the data (a folder of images, paired folders, label maps, or the
Fashion-MNIST IDX files), picks the data source, how images reach the square training size
(``fit``), network widths, batch size and step count for the family and size, and returns the
TOML text with a comment on every choice. The run, the export and the model card carry the
user's run name, never a bundled model's name, licence or card id.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgsynth.errors import ConfigError, InputError, UsageError

#: families ``train new`` writes recipes for, with the data each takes
FAMILY_DATA = {
    "dcgan": "a folder of images (or the Fashion-MNIST IDX folder)",
    "gan": "a folder of images (or the Fashion-MNIST IDX folder); small images only (MLP networks)",
    "progan": "a folder of images (or the Fashion-MNIST IDX folder)",
    "stylegan": "a folder of images (or the Fashion-MNIST IDX folder)",
    "stylegan2": "a folder of images (or the Fashion-MNIST IDX folder); ADA on",
    "pix2pix": "--data inputs --target outputs (paired by file name), or --data photos --derive edges|gray|clusters",
    "pix2pixhd": "--data label maps (ids in the first channel) --target photos, or the Fashion-MNIST IDX folder",
    "spade": "--data label maps (ids in the first channel) --target photos, or the Fashion-MNIST IDX folder",
    "panoptic": "the Fashion-MNIST IDX folder (seeded mosaics with panoptic maps)",
    "pconv": "a folder of photos (holes are drawn during training)",
}

_SAMPLING = ("dcgan", "gan", "progan", "stylegan", "stylegan2")
_DEFAULT_SIZE = {"dcgan": 64, "gan": 32, "progan": 64, "stylegan": 64, "stylegan2": 64, "pix2pix": 128,
                 "pix2pixhd": 128, "spade": 128, "panoptic": 32, "pconv": 128}
_FASHION = "train-images-idx3-ubyte"


@dataclass
class RecipeInfo:
    """What :func:`new_recipe` decided, for the caller to report."""

    family: str
    name: str
    source: str
    size: int
    fit: str
    items: int
    steps: int
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- looking at the data


def _is_fashion(path: Path) -> bool:
    return any((path / f"{_FASHION}{ext}").is_file() for ext in (".gz", ""))


def _images(path: Path, what: str) -> list[Path]:
    from imgsynth.training.data import list_images

    try:
        return list_images(path)
    except InputError as exc:
        raise InputError(f"{what}: {exc}") from None


def _sizes(files: list[Path], limit: int = 200) -> list[tuple[int, int]]:
    """(width, height) of up to ``limit`` files spread over the list (headers only)."""
    from PIL import Image

    step = max(1, len(files) // limit)
    out = []
    for p in files[::step][:limit]:
        try:
            with Image.open(p) as im:
                out.append(im.size)
        except (OSError, Image.DecompressionBombError):
            continue  # unreadable files are skipped (and named) during training
    return out


def _label_count(files: list[Path], limit: int = 200) -> int:
    """1 + the largest id in the first channel of up to ``limit`` label maps."""
    import numpy as np
    from PIL import Image

    top = 0
    step = max(1, len(files) // limit)
    for p in files[::step][:limit]:
        try:
            with Image.open(p) as im:
                arr = np.array(im)
        except (OSError, Image.DecompressionBombError):
            continue
        if arr.ndim == 3:
            arr = arr[:, :, 0]
        top = max(top, int(arr.max()))
    return top + 1


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "data"


def _pow2_at_most(n: int) -> int:
    return 2 ** int(math.floor(math.log2(max(n, 1))))


# ---------------------------------------------------------------- writing TOML with comments


def _value(v: Any) -> str:
    from imgsynth.training.config import _toml_value

    return _toml_value(v)


class _Doc:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def comment(self, text: str) -> None:
        for line in text.splitlines():
            self.lines.append(f"# {line}".rstrip())

    def table(self, name: str, note: str = "") -> None:
        self.lines.append("")
        if note:
            self.comment(note)
        self.lines.append(f"[{name}]")

    def key(self, k: str, v: Any, note: str = "") -> None:
        line = f"{k} = {_value(v)}"
        self.lines.append(f"{line:<40} # {note}" if note else line)

    def text(self) -> str:
        return "\n".join(self.lines).lstrip("\n") + "\n"


# ---------------------------------------------------------------- per-family defaults


def _widths(family: str, size: int, channels: int) -> dict[str, dict[str, Any]]:
    """[model.generator] / [model.discriminator] for a CPU-sized run at ``size``."""
    scales = int(math.log2(size)) - 1  # 4x4 .. size
    if family == "dcgan":
        w = 32 if size <= 64 else 16
        return {"generator": {"z_dim": 64, "ngf": w}, "discriminator": {"ndf": w}}
    if family == "gan":
        return {"generator": {"z_dim": 64, "hidden_sizes": [256, 512, 1024]},
                "discriminator": {"hidden_sizes": [1024, 512, 256]}}
    if family == "progan":
        chans = [min(128, 256 // 2 ** i) for i in range(scales)]
        return {"generator": {"z_dim": 64, "channels": chans}, "discriminator": {}}
    if family == "stylegan":
        return {"generator": {"z_dim": 64, "w_dim": 64, "mapping_layers": 4, "mapping_features": 64,
                              "fmap_base": 16 * size, "fmap_max": 64}, "discriminator": {}}
    if family == "stylegan2":
        return {"generator": {"z_dim": 64, "w_dim": 64, "mapping_layers": 4, "channel_base": 32 * size,
                              "channel_max": 64},
                "discriminator": {"channel_base": 32 * size, "channel_max": 64}}
    if family == "pix2pix":
        return {"generator": {"num_downs": max(5, min(8, int(math.log2(size)) - 1)), "ngf": 16, "norm": "instance",
                              "use_dropout": True},
                "discriminator": {"ndf": 32, "n_layers": 3, "norm": "instance"}}
    if family == "pix2pixhd":
        return {"generator": {"ngf": 16, "n_downsample_global": 3 if size >= 64 else 2, "n_blocks_global": 4},
                "discriminator": {"ndf": 32, "n_layers": 3, "num_D": 2}}
    if family == "spade":
        return {"generator": {"ngf": 8, "nhidden": 32, "contain_dontcare": False, "num_upsampling_layers": "normal",
                              "spectral_norm": True},
                "discriminator": {"ndf": 32, "n_layers": 3, "num_D": 2, "spectral_norm": True}}
    if family == "panoptic":
        return {"generator": {"ngf": 4, "nhidden": 16, "contain_dontcare": False, "latent_downsample": "area",
                              "num_upsampling_layers": "normal", "spectral_norm": False},
                "discriminator": {"ndf": 32, "n_layers": 3, "num_D": 2, "spectral_norm": True}}
    if family == "pconv":
        return {"generator": {"layer_size": min(7, int(math.log2(size))), "widths": [32, 64, 128, 128],
                              "renorm": "nvidia"}, "discriminator": {}}
    raise ConfigError(f"unknown family {family!r}; known: {', '.join(FAMILY_DATA)}")


_STEPS = {"dcgan": 5000, "gan": 10000, "stylegan": 4000, "stylegan2": 8000, "pix2pix": 4000,
          "pix2pixhd": 3000, "spade": 3000, "panoptic": 1500, "pconv": 2000}

_PAPER = {
    "dcgan": "DCGAN (Radford et al. 2016)", "gan": "the original GAN (Goodfellow et al. 2014), MLP networks",
    "progan": "Progressive GAN (Karras et al. 2018)", "stylegan": "StyleGAN (Karras et al. 2019)",
    "stylegan2": "StyleGAN2 with adaptive discriminator augmentation (Karras et al. 2020)",
    "pix2pix": "pix2pix (Isola et al. 2017)", "pix2pixhd": "pix2pixHD (Wang et al. 2018)",
    "spade": "SPADE (Park et al. 2019)", "panoptic": "panoptic-based synthesis (Dundar et al. 2020)",
    "pconv": "partial-convolution inpainting (Liu et al. 2018)",
}


def _batch(family: str, size: int) -> int:
    if family in ("pix2pix", "pix2pixhd", "spade"):
        return 4
    if family == "pconv":
        return 8
    if family == "panoptic":
        return 16
    return {16: 64, 32: 64, 64: 32, 128: 16}.get(size, 8)


def _loss_optim(family: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(loss, optim, comments) as the family's paper trains it (scaled to short runs)."""
    notes: dict[str, str] = {}
    if family in ("dcgan", "gan"):
        loss = {"gan": "nonsaturating"}
        optim = {"g_lr": 2e-4, "d_lr": 2e-4, "betas": [0.5, 0.999], "ema_decay": 0.999, "ema_start": 500}
    elif family == "progan":
        loss = {"gan": "wgan-gp", "gp_weight": 10.0}
        optim = {"g_lr": 1e-3, "d_lr": 1e-3, "betas": [0.0, 0.99], "ema_decay": 0.999}
    elif family == "stylegan":
        loss = {"gan": "nonsaturating"}
        optim = {"g_lr": 1e-3, "d_lr": 1e-3, "betas": [0.0, 0.99], "ema_decay": 0.998}
    elif family == "stylegan2":
        loss = {"gan": "nonsaturating", "r1_gamma": 0.1, "r1_every": 16}
        optim = {"g_lr": 0.0025, "d_lr": 0.0025, "betas": [0.0, 0.99], "ema_decay": 0.998}
        notes["r1_gamma"] = "R1 weight; the paper scales it with resolution (0.1 suits 32-64 px)"
    elif family == "pix2pix":
        loss = {"gan": "nonsaturating", "l1": 100.0}
        optim = {"g_lr": 2e-4, "d_lr": 2e-4, "betas": [0.5, 0.999], "ema_decay": 0.999, "ema_start": 250}
        notes["l1"] = "lambda of the paper's Eq. 4"
    elif family in ("pix2pixhd",):
        loss = {"gan": "lsgan", "feature_matching": 10.0}
        optim = {"g_lr": 2e-4, "d_lr": 2e-4, "betas": [0.5, 0.999], "ema_decay": 0.999, "ema_start": 250}
    elif family in ("spade", "panoptic"):
        loss = {"gan": "hinge", "feature_matching": 10.0, "l1": 20.0}
        optim = {"g_lr": 1e-4, "d_lr": 4e-4, "betas": [0.0, 0.9], "ema_decay": 0.999, "ema_start": 250}
        notes["l1"] = "not in the paper: a stand-in for the VGG loss when no VGG-19 file is at hand"
    else:  # pconv
        loss = {}
        optim = {"g_lr": 2e-4, "d_lr": 2e-4, "betas": [0.9, 0.999], "ema_decay": 0.995, "ema_start": 200}
    return loss, optim, notes


# ---------------------------------------------------------------- the recipe


def new_recipe(
    family: str,
    data: str | Path,
    *,
    target: str | Path | None = None,
    size: int | None = None,
    fit: str | None = None,
    name: str | None = None,
    derive: str | None = None,
    label_nc: int | None = None,
    steps: int | None = None,
) -> tuple[str, RecipeInfo]:
    """The TOML text of a complete recipe for ``family`` on ``data``, and what was chosen.

    ``target``: the output images of a paired family; ``derive``: ``edges`` / ``gray`` /
    ``clusters`` makes pix2pix inputs from ``data`` itself; ``size``: the square training size
    (a power of two; default per family, never above the images); ``fit``: ``crop`` / ``resize``
    / ``pad`` (default: ``pad`` for Fashion-MNIST, ``crop`` otherwise); ``name``: the run name
    (default ``FAMILY-DATAFOLDER``), used for the run folder and the export.
    """
    if family not in FAMILY_DATA:  # an unknown name: a usage error (exit 2)
        import difflib

        close = difflib.get_close_matches(family, list(FAMILY_DATA), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(FAMILY_DATA)}"
        raise UsageError(f"unknown family {family!r}; {hint}")
    if fit is not None and fit not in ("crop", "resize", "pad"):
        raise ConfigError(f"--fit must be crop, resize or pad, got {fit!r}")
    if derive is not None and derive not in ("edges", "gray", "clusters"):
        raise ConfigError(f"--derive must be edges, gray or clusters, got {derive!r}")
    data = Path(data)
    if not data.is_dir():
        raise InputError(f"{data}: no such folder")
    fashion = _is_fashion(data)
    notes: list[str] = []
    d: dict[str, Any] = {}
    channels = 3
    sizes: list[tuple[int, int]] = []
    items = 0

    if derive and family != "pix2pix":
        raise ConfigError("--derive makes pix2pix inputs; other families take --data (and --target)")
    if target is not None and family not in ("pix2pix", "pix2pixhd", "spade"):
        raise ConfigError(f"the {family} family takes no --target (it trains on {FAMILY_DATA[family]})")
    if family == "panoptic" and not fashion:
        raise ConfigError("the panoptic family trains on Fashion-MNIST mosaics: --data must be the folder "
                          "of the Fashion-MNIST IDX files (apt-get install dataset-fashion-mnist)")

    if fashion:
        source = {"pix2pixhd": "fashion-mnist-labels", "spade": "fashion-mnist-labels",
                  "panoptic": "mosaics"}.get(family, "fashion-mnist")
        if family in ("pix2pix", "pconv"):
            raise ConfigError(f"the {family} family needs photos: --data is the Fashion-MNIST IDX folder")
        d.update(source=source, path=str(data))
        if source != "fashion-mnist":
            d["label_nc"] = 11
        if source == "mosaics":
            d["item_size"] = 14
        if source != "fashion-mnist":
            channels = 3
            d["channels"] = 3
        else:
            channels = 1
        items, sizes = 60000, [(28, 28)]
    else:
        files = _images(data, "--data")
        items = len(files)
        if family in _SAMPLING:
            d.update(source="folder", path=str(data))
        elif family == "pconv":
            d.update(source="masked", path=str(data))
        elif family == "pix2pix":
            if target is None and derive is None:
                raise ConfigError("the pix2pix family needs --target DIR (outputs paired with --data by file "
                                  "name) or --derive edges|gray|clusters (inputs made from --data)")
            if target is not None:
                d.update(source="paired", path=str(data), path_b=str(target))
                _images(Path(target), "--target")
            else:
                d.update(source=derive, path=str(data))
        else:  # pix2pixhd, spade: label maps
            if target is None:
                raise ConfigError(f"the {family} family needs --target DIR: the photos that --data's "
                                  "label maps describe (paired by file name)")
            n_labels = label_nc or _label_count(files)
            d.update(source="paired", path=str(data), path_b=str(target), label_nc=n_labels)
            if not label_nc:
                notes.append(f"label_nc = {n_labels}: 1 + the largest id found in --data's label maps")
            files = _images(Path(target), "--target")
        sizes = _sizes(files)
        from imgsynth.training.data import image_channels

        channels = image_channels(files[0]) if files else 3

    # ---- size and fit
    short = min(min(w, h) for w, h in sizes) if sizes else 64
    if size is None:
        size = min(_DEFAULT_SIZE[family], max(16, _pow2_at_most(short)))
        if fashion:
            size = 32
    if size < 16 or size & (size - 1):
        raise ConfigError(f"--size must be a power of two >= 16, got {size}")
    if family == "spade" and size < 32:
        raise ConfigError("the spade family needs --size 32 or more")
    if family == "gan" and size > 64:
        raise ConfigError("the gan family (MLP networks) is for small images: use --size 64 or less")
    square = all(w == h for w, h in sizes)
    if fit is None:
        fit = "pad" if fashion else "crop"
    fit_note = {
        "crop": "scale the short side to the size, keep the centre (no bars, no distortion; the ends of "
                "long sides are cut)" + ("; all images are square, so nothing is cut" if square else ""),
        "resize": "scale the whole image to the square (nothing cut, no bars; the aspect ratio changes)",
        "pad": "whole image on a black square: right for black-background data like Fashion-MNIST, "
               "black bars on photos",
    }[fit]
    load_size = 0
    if not fashion and family in ("pix2pix", "pconv", "pix2pixhd", "spade") and short >= size * 5 // 4:
        load_size = size + size // 8  # random crops (the papers' load 286 / crop 256 jitter)
    d.update(resolution=size)
    if load_size:
        d["load_size"] = load_size
    if "item_size" not in d:
        d["fit"] = fit
    hflip = family not in ("panoptic",)
    d["hflip"] = hflip
    d["batch_size"] = min(_batch(family, size), max(1, _pow2_at_most(items)))
    d["workers"] = 0
    if not fashion and family not in _SAMPLING and items >= 20:
        d["val_items"] = max(2, min(50, items // 10))  # held out: PSNR / SSIM / L1 during training
    d["name"] = "Fashion-MNIST" if fashion else data.name
    d["license"] = "MIT" if fashion else ""

    run_name = name or f"{family}-{_slug('fashion-mnist' if fashion else data.name)}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", run_name):
        raise ConfigError(f"--name must be letters, digits, '.', '_' or '-', got {run_name!r}")
    widths = _widths(family, size, channels)
    scales = int(math.log2(size)) - 1
    total = steps or (_STEPS[family] if family != "progan" else 1000 * scales + 1000)
    loss, optim, loss_notes = _loss_optim(family)

    doc = _Doc()
    doc.comment(f"{run_name}: {_PAPER[family]} on {d['name']} ({items} items), {size}x{size}.")
    doc.comment("Written by `imgsynth train new`; every value can be changed here or with --set section.key=value.")
    doc.comment("")
    doc.comment(f"  imgsynth train {run_name}.toml --export runs/{run_name}/export")
    task = {"pix2pix": "translate", "pix2pixhd": "translate", "spade": "translate", "panoptic": "translate",
            "pconv": "inpaint"}.get(family, "sample")
    doc.comment("  " + {"sample": f"imgsynth sample --weights runs/{run_name}/export --seeds 0-15 --grid 4x4 -o grid.png",
                        "translate": f"imgsynth translate INPUT.png --weights runs/{run_name}/export -o out.png",
                        "inpaint": f"imgsynth inpaint PHOTO.png --mask HOLE.png --weights runs/{run_name}/export -o out.png",
                        }[task])
    doc.comment("Ctrl-C writes a checkpoint; the same command with --resume continues exactly.")

    doc.table("run")
    doc.key("out_dir", f"runs/{run_name}", "checkpoints/, samples/, losses.png go here")
    doc.key("steps", total, "one step = one D update + one G update")
    doc.key("seed", 0)
    doc.key("device", "auto", "a GPU when there is one, else the CPU")
    doc.key("precision", "auto", "fp16 on GPUs, fp32 on CPUs")
    log_every = 25 if total <= 4000 else 50
    doc.key("log_every", log_every)
    every = max(100, total // 10)
    doc.key("sample_every", every, "sample grid from fixed seeds")
    doc.key("checkpoint_every", every)
    doc.key("keep_checkpoints", 3, "0 keeps all")
    doc.key("grid_samples", 64 if task == "sample" else 8)

    doc.table("data", f"{d['name']}: {items} item(s)" + (f", e.g. {sizes[0][0]}x{sizes[0][1]}" if sizes else ""))
    data_notes = {
        "source": {"folder": "every image under path (recursively)", "masked": "photos; a seeded free-form hole each",
                   "paired": "path (inputs) and path_b (targets) matched by file name",
                   "edges": "inputs: Canny edges of each crop (as translate --input-kind edges)",
                   "gray": "inputs: luminance of each crop", "clusters": "inputs: 8-colour poster of each crop",
                   "fashion-mnist": "the IDX files in path", "fashion-mnist-labels": "label maps -> garments",
                   "mosaics": "seeded mosaics with semantic and panoptic maps"}.get(d["source"], ""),
        "fit": f"chosen: {fit}: {fit_note}; alternatives: " + ", ".join(x for x in ("crop", "resize", "pad") if x != fit),
        "load_size": "images reach load_size, then a random crop of resolution (jitter)",
        "resolution": "training size (square, a power of two)",
        "hflip": "random horizontal flips",
        "batch_size": "images per step",
        "label_nc": "label classes (ids 0 .. label_nc - 1)",
        "name": "shown on the model card",
        "license": "the licence of your images (SPDX id), shown on the model card",
        "channels": "1 grey, 3 colour, 0 from the data",
        "val_items": "the last items, held out from training for validation (best checkpoint in best/)",
    }
    for k, v in d.items():
        doc.key(k, v, data_notes.get(k, ""))

    doc.table("model")
    doc.key("family", family)
    for part in ("generator", "discriminator"):
        if widths[part]:
            doc.table(f"model.{part}", "constructor arguments; sizes that follow from the data are filled in"
                      if part == "generator" else "")
            for k, v in widths[part].items():
                doc.key(k, v)
    if family == "progan":
        doc.table("model.options", "progressive growing: one scale every steps_per_scale steps, faded in")
        doc.key("steps_per_scale", 1000)
        doc.key("fade_steps", 500)
        doc.key("drift", 0.001)
    if family == "pconv":
        doc.table("model.options", "the paper's loss weights; holes cover 10-60% of each image")
        for k, v in {"valid": 1.0, "hole": 6.0, "tv": 0.1, "ssim": 4.0, "min_hole": 0.1, "max_hole": 0.6}.items():
            doc.key(k, v)

    if loss:
        doc.table("loss")
        for k, v in loss.items():
            doc.key(k, v, loss_notes.get(k, ""))
    if family in ("pix2pix", "pix2pixhd", "spade", "panoptic"):
        # pix2pix's niter / niter_decay: constant, then linearly to 0 over the second half
        optim.update(lr_schedule="linear", lr_decay_start=total // 2)
    doc.table("optim")
    for k, v in optim.items():
        doc.key(k, v, {"ema_decay": "the export holds this moving average of G",
                       "lr_schedule": "constant | linear | cosine"}.get(k, ""))

    if family != "pconv":
        doc.table("augment", "adaptive discriminator augmentation (Karras et al. 2020): for few images (< 10k)")
        ada = "on" if family == "stylegan2" or (items < 10000 and family in _SAMPLING) else "off"
        doc.key("ada", ada, "on: p follows D's overfitting; off: none")
        doc.key("pipe", "bgc", "blit + geometric + colour")
        doc.key("target", 0.6)
        doc.key("kimg", 100.0, "p can go 0 -> 1 in this many thousand images")
        if items < 10000 and family in _SAMPLING:
            notes.append(f"ADA is {ada}: {items} images is few for a GAN")

    doc.table("export", "the exported model's name and licence (never a bundled model's)")
    doc.key("name", run_name)
    doc.key("license", "MIT" if fashion else "", "SPDX id; the card says 'unspecified' while empty")
    doc.key("dtype", "fp32")

    text = doc.text()
    from imgsynth.training.config import from_dict
    import tomllib

    from_dict(tomllib.loads(text))  # what we write must load
    info = RecipeInfo(family=family, name=run_name, source=d["source"], size=size, fit=fit, items=items,
                      steps=total, notes=notes)
    return text, info
