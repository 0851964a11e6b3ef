"""Training recipes: a TOML file mapped onto typed dataclasses, with checked ``--set`` overrides.

A recipe has the sections ``[run]``, ``[data]``, ``[model]`` (with ``[model.generator]`` and
``[model.discriminator]`` tables of constructor keyword arguments), ``[loss]``, ``[optim]``,
``[augment]`` and ``[export]``. Every key is checked against the dataclass field types; an unknown key or a value of
the wrong type is a :class:`~imgsynth.errors.ConfigError` naming the key. The resolved config is
written back as TOML beside every checkpoint (:func:`dumps_toml`), so a run can be repeated.

This module does not import torch.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from imgsynth.errors import ConfigError


@dataclass
class RunConfig:
    """Where a run writes, how long it runs and how often it reports.

    ``val_every``: how often paired and inpainting families are validated on held-out data
    (``data.val_items`` / ``data.val_path``); 0 validates at every checkpoint. The best
    checkpoint by validation PSNR is kept in ``best/`` beside ``checkpoints/``, the curve in
    ``validation.png``. Sampling families on
    ``fashion-mnist`` log instead the Fréchet distance of ``fid_samples`` samples to as many
    test images (:mod:`imgsynth.training.fid`; 0 turns it off), keeping the best (lowest) in
    ``best/``, when the project's feature extractor is cached (``benchmarks/fid_fashion.py``).
    """

    out_dir: str = "runs/train"
    steps: int = 1000
    seed: int = 0
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    grid_samples: int = 64
    tensorboard: Literal["auto", "on", "off"] = "auto"
    val_every: int = 0
    fid_samples: int = 1000


@dataclass
class DataConfig:
    """The training images and how they are prepared.

    ``source``: ``folder`` (one folder of images, searched recursively), ``paired`` (``path`` holds
    inputs A, ``path_b`` targets B, matched by file stem), ``masked`` (a folder of photos, each
    with a generated free-form hole, for inpainting), ``fashion-mnist`` (the IDX files in
    ``path``), ``fashion-mnist-labels`` (their label maps ``(x > 0) * (class + 1)`` -> images, 11
    labels) or ``mosaics`` (seeded mosaics of touching items with semantic, instance and panoptic
    maps, 11 labels; ``item_size`` > 0 scales the 28x28 items to that side first), ``edges`` or
    ``gray`` or ``clusters`` (a folder of photos; the input of each crop is derived from it: Canny
    edges, luminance or an 8-colour k-means poster, as ``imgsynth translate --input-kind
    edges|gray|clusters`` does), or ``clips`` (synthetic moving-shape clips of ``frames`` frames
    cut from a folder of photos, with exact flow, inputs derived by ``derive``; see
    :mod:`imgsynth.training.clips`). With
    ``label_nc`` > 0 the paired inputs are label maps of that many classes (ids in the first
    channel, resized nearest), with instance maps from ``path_inst`` when given.
    ``channels`` 0 takes the channel count from the data (and refuses a mix); 1 or 3 converts
    every image. ``fit`` says how an image reaches the square ``load_size``: ``crop`` (the
    default) scales the short side to it and keeps the centre, cutting off the ends of the long
    side; ``resize`` scales the whole image to the square, changing its aspect ratio; ``pad``
    scales the long side down to it (never up) and fills the rest with black, which suits data
    with a black background such as Fashion-MNIST (28 -> 32) and puts black bars into photos.
    With ``load_size`` > ``resolution`` a random crop of ``resolution`` is then taken (seeded).
    Validation data (paired and inpainting families): ``val_path`` (and ``val_path_b`` for the
    targets of paired folders), else the last ``val_items`` items of the training data, held out
    from training; validation items are fitted to ``resolution`` without crops or flips.
    """

    source: Literal["folder", "paired", "masked", "fashion-mnist", "fashion-mnist-labels", "mosaics", "edges",
                    "gray", "clusters", "clips"] = "folder"
    path: str = ""
    path_b: str = ""
    path_inst: str = ""
    label_nc: int = 0
    split: Literal["train", "test"] = "train"
    item_size: int = 0
    resolution: int = 64
    load_size: int = 0
    channels: int = 0
    fit: Literal["crop", "resize", "pad"] = "crop"
    hflip: bool = False
    batch_size: int = 64
    workers: int = 0
    shuffle: bool = True
    name: str = ""
    license: str = ""
    val_path: str = ""
    val_path_b: str = ""
    val_items: int = 0
    frames: int = 8
    derive: Literal["clusters", "edges", "gray"] = "clusters"


@dataclass
class ModelConfig:
    """Which family is trained, the constructor arguments of its two networks, and family options.

    ``options`` holds training options only one family understands (e.g. StyleGAN2's
    ``style_mixing`` probability); each family checks its own. ``init_from`` starts from trained
    weights: a checkpoint or run folder (G and D), an export folder or a card id (G only); see
    :mod:`imgsynth.training.finetune`.
    """

    family: str = "dcgan"
    generator: dict[str, Any] = field(default_factory=dict)
    discriminator: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    init_from: str = ""


@dataclass
class LossConfig:
    """Adversarial loss and regularisers (see :mod:`imgsynth.training.losses`).

    ``l1`` weighs the L1 distance to the target in paired families (pix2pix: 100).
    """

    gan: Literal["vanilla", "nonsaturating", "lsgan", "hinge", "wgan-gp"] = "nonsaturating"
    gp_weight: float = 10.0
    r1_gamma: float = 0.0
    r1_every: int = 1
    feature_matching: float = 0.0
    l1: float = 0.0
    d_steps: int = 1


@dataclass
class OptimConfig:
    """Optimisers: separate learning rates for G and D (TTUR, Heusel et al. 2017), clipping, EMA.

    ``lr_schedule``: ``constant``; ``linear`` keeps both rates until step ``lr_decay_start`` and
    then decays them linearly to 0 at ``run.steps`` (pix2pix's ``niter`` / ``niter_decay``);
    ``cosine`` follows half a cosine from the full rate at ``lr_decay_start`` to 0 at ``run.steps``
    (a ``lr_decay_start`` at or past ``run.steps`` keeps the rates constant).
    The rate is a function of the step, so resumed runs follow the same curve.
    """

    optimizer: Literal["adam", "rmsprop"] = "adam"
    g_lr: float = 2e-4
    d_lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    ema_decay: float = 0.0
    ema_start: int = 0
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    lr_decay_start: int = 0


@dataclass
class AugmentConfig:
    """Adaptive discriminator augmentation (ADA, Karras et al. 2020; :mod:`imgsynth.training.augment`).

    ``ada``: ``on`` tunes the augmentation probability p during training so that the sign of D's
    output on real images averages ``target`` (paper: 0.6), adjusting every ``interval`` steps by
    a rate that could take p from 0 to 1 in ``kimg`` thousand real images (paper: 500 for runs of
    millions of images; the default 100 suits runs of tens of thousands); ``off`` keeps p fixed
    at ``p`` (0: no augmentation); ``auto`` is ``on`` for the families trained with it by their authors
    (``stylegan2``, as StyleGAN2-ADA) and ``off`` elsewhere. ``pipe``: which transformations (``bgc``: the paper's
    default blit + geometric + colour; ``bg``, ``blit``, ``geom``, ``color``). ``p`` is also where
    an adaptive run starts.
    """

    ada: Literal["auto", "on", "off"] = "auto"
    pipe: Literal["bgc", "bg", "blit", "geom", "color"] = "bgc"
    p: float = 0.0
    target: float = 0.6
    interval: int = 4
    kimg: float = 100.0


@dataclass
class ExportConfig:
    """What an export writes: weight precision and the licence / name shown on the model card."""

    dtype: Literal["fp32", "fp16"] = "fp32"
    license: str = ""
    name: str = ""


@dataclass
class TrainConfig:
    """A whole recipe."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (TOML / JSON serialisable)."""
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- type checking


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{origin.__name__}[{args}]"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` as type ``tp`` or raise ConfigError; ints widen to floats, nothing else converts."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")
    if tp is Any:
        return value
    if origin is Literal:
        if value in typing.get_args(tp) and isinstance(value, str):
            return value
        raise bad
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None) and value is None:
                return None
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise bad
    if origin in (list, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            raise bad
        (item,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise bad
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise bad
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args or [Any] * len(value))))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    raise UnsupportedType(f"{key}: unsupported field type {tp!r}")


class UnsupportedType(ConfigError):
    """A field type :func:`check_value` cannot check (a programming error in a recipe dataclass)."""


def check_value(value: Any, tp: Any, key: str) -> Any:
    """``value`` as type ``tp`` (ints widen to floats, nothing else converts) or a ConfigError naming ``key``.

    Handles bool, int, float, str, ``Literal``, unions, lists, sequences, tuples and dicts; other
    types raise :class:`UnsupportedType`.
    """
    return _coerce(value, tp, key)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unknown(key: str, name: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
    return ConfigError(f"unknown config key {key!r}{hint}")


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = _hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in hints:
            raise _unknown(key, name, known)
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{key} must be a table ([{key}])")
            kwargs[name] = _build(tp, value, f"{key}.")
        else:
            kwargs[name] = _coerce(value, tp, key)
    return cls(**kwargs)


def from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build and check a :class:`TrainConfig` from nested dicts (e.g. a parsed TOML file)."""
    cfg = _build(TrainConfig, data, "")
    validate(cfg)
    return cfg


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a TOML recipe, apply ``key=value`` overrides and check the result."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"recipe {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read recipe {str(path)!r}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    try:
        return from_dict(apply_overrides(data, overrides))
    except ConfigError as exc:
        raise recipe_error(path, exc, overrides) from None


def recipe_error(path: str | Path, exc: ConfigError, overrides: list[str] | tuple[str, ...] = ()) -> ConfigError:
    """``exc`` as ``PATH: message``, saying so when the key it names was set by an override (``--set``)."""
    message = str(exc)
    if message.startswith(f"{path}: "):
        return exc
    for item in reversed(list(overrides)):
        key = item.partition("=")[0].strip()
        if key and re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", message):
            message += f" (set on the command line: {item})"
            break
    return type(exc)(f"{path}: {message}")


# ---------------------------------------------------------------- overrides

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z_][A-Za-z0-9_\-]*)*$")


def parse_value(text: str) -> Any:
    """A ``--set`` value as TOML (``3``, ``2e-4``, ``true``, ``[0.5, 0.99]``, ``"x"``), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of nested ``data`` with each ``section.key=value`` set (types are checked later)."""
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key) or "." not in key:
            raise ConfigError(f"--set expects section.key=value (e.g. optim.g_lr=1e-4), got {item!r}")
        parts = key.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a table")
            node = nxt
        node[parts[-1]] = parse_value(raw.strip())
    return out


# ---------------------------------------------------------------- semantic checks


def validate(cfg: TrainConfig) -> None:
    """Range checks that types alone cannot express."""
    positive = {
        "run.steps": cfg.run.steps,
        "run.log_every": cfg.run.log_every,
        "run.sample_every": cfg.run.sample_every,
        "run.checkpoint_every": cfg.run.checkpoint_every,
        "data.resolution": cfg.data.resolution,
        "data.batch_size": cfg.data.batch_size,
        "loss.d_steps": cfg.loss.d_steps,
        "loss.r1_every": cfg.loss.r1_every,
        "data.frames": cfg.data.frames,
    }
    for section in dataclasses.fields(cfg):
        for f in dataclasses.fields(getattr(cfg, section.name)):
            value = getattr(getattr(cfg, section.name), f.name)
            values = value if isinstance(value, list) else [value]
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                raise ConfigError(f"{section.name}.{f.name} must be a finite number, got {value}")
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key} must be at least 1, got {value}")
    non_negative = {
        "run.seed": cfg.run.seed,
        "data.item_size": cfg.data.item_size,
        "run.keep_checkpoints": cfg.run.keep_checkpoints,
        "run.grid_samples": cfg.run.grid_samples,
        "data.workers": cfg.data.workers,
        "data.load_size": cfg.data.load_size,
        "data.label_nc": cfg.data.label_nc,
        "data.val_items": cfg.data.val_items,
        "run.val_every": cfg.run.val_every,
        "run.fid_samples": cfg.run.fid_samples,
        "loss.gp_weight": cfg.loss.gp_weight,
        "loss.r1_gamma": cfg.loss.r1_gamma,
        "loss.feature_matching": cfg.loss.feature_matching,
        "loss.l1": cfg.loss.l1,
        "optim.weight_decay": cfg.optim.weight_decay,
        "optim.grad_clip": cfg.optim.grad_clip,
        "optim.ema_start": cfg.optim.ema_start,
        "optim.lr_decay_start": cfg.optim.lr_decay_start,
    }
    for key, value in non_negative.items():
        if value < 0:
            raise ConfigError(f"{key} must not be negative, got {value}")
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", cfg.run.device.strip().lower()):
        raise ConfigError(f"run.device must be auto, cpu, cuda, cuda:N or mps, got {cfg.run.device!r}")
    if cfg.data.channels not in (0, 1, 3):
        raise ConfigError(f"data.channels must be 0 (from the data), 1 or 3, got {cfg.data.channels}")
    if cfg.data.load_size and cfg.data.load_size < cfg.data.resolution:
        raise ConfigError(
            f"data.load_size ({cfg.data.load_size}) must be 0 or at least data.resolution "
            f"({cfg.data.resolution})"
        )
    if not 0.0 <= cfg.optim.ema_decay < 1.0:
        raise ConfigError(f"optim.ema_decay must be in [0, 1), got {cfg.optim.ema_decay}")
    if cfg.optim.g_lr <= 0 or cfg.optim.d_lr <= 0:
        raise ConfigError("optim.g_lr and optim.d_lr must be positive")
    if len(cfg.optim.betas) != 2 or not all(0.0 <= b < 1.0 for b in cfg.optim.betas):
        raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {cfg.optim.betas}")
    if not 0.0 <= cfg.augment.p <= 1.0:
        raise ConfigError(f"augment.p must be a probability in [0, 1], got {cfg.augment.p}")
    if not -1.0 < cfg.augment.target < 1.0:
        raise ConfigError(f"augment.target must be in (-1, 1) (paper: 0.6), got {cfg.augment.target}")
    if cfg.augment.interval < 1 or cfg.augment.kimg <= 0:
        raise ConfigError("augment.interval must be at least 1 and augment.kimg positive")
    if cfg.data.source == "paired" and not cfg.data.path_b:
        raise ConfigError("data.source = 'paired' needs data.path (inputs) and data.path_b (targets)")


# ---------------------------------------------------------------- writing TOML


def _toml_key(key: str) -> str:
    return key if re.match(r"^[A-Za-z0-9_\-]+$", key) else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return {"nan": "nan", "inf": "inf", "-inf": "-inf"}[repr(value)]
        return repr(value)
    if isinstance(value, str):
        escaped = (
            value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        )
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def dumps_toml(data: dict[str, Any]) -> str:
    """Write nested dicts of str/int/float/bool/list as TOML tables (enough for recipes and cards)."""
    lines: list[str] = []

    def table(node: dict[str, Any], path: list[str]) -> None:
        scalars = {k: v for k, v in node.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in node.items() if isinstance(v, dict)}
        if path and (scalars or not tables):
            if lines:
                lines.append("")
            lines.append("[" + ".".join(_toml_key(p) for p in path) + "]")
        for k, v in scalars.items():
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for k, v in tables.items():
            table(v, path + [k])

    table(data, [])
    return "\n".join(lines) + "\n"


def dumps_config(cfg: TrainConfig) -> str:
    """The resolved recipe as TOML (loads back with :func:`load_recipe` into an equal config)."""
    return dumps_toml(cfg.to_dict())
