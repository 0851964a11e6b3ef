"""The models behind ``imgsynth serve`` and the one inference that runs at a time.

The page never names a file: it picks a model by the key listed in :meth:`Worker.info`, and every
key maps to a card or to a ``--models`` folder that the person who started the server gave. Models
are loaded offline (only bundled, built-in or already cached weights are offered) through
:func:`imgsynth.engine.loading.load_model`, and run through the same pipeline objects as
``imgsynth inpaint`` (:class:`~imgsynth.pipelines.inpaint.Inpainter`) and ``imgsynth translate``
(:class:`~imgsynth.pipelines.translate.Translator`), with the cards' settings (a network's
self-ensemble, the label offset, the fixed SPADE grid).

One job at a time: :meth:`Worker.reserve` fails at once when a job is running (the app answers
429), and :attr:`Worker.status` says what the running job is doing for the page's progress bar.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgsynth.errors import InputError, UsageError, WeightsError

TASKS = ("inpaint", "translate")
AVAILABLE = ("builtin", "bundled", "cached")  # engine.fetch.cache_state values that run offline
CACHE_SIZE = 4  # networks kept loaded (least recently used goes first)
CLASSICAL_ORDER = ("telea", "ns", "patchmatch")


class Busy(Exception):
    """Another job is running; try again in a moment."""


@dataclass
class ServeModel:
    """One model the page may use. ``key`` is what the page sends; paths stay on the server."""

    key: str
    task: str
    title: str
    arch: str
    card_id: str | None = None
    weights: Path | None = None
    network: bool = True
    default: bool = False
    license: str = ""
    # label-map models (task "translate"):
    palette: str | None = None
    label_nc: int = 0
    label_offset: int = 0
    contain_dontcare: bool = False
    instances: str | None = None  # None, "edges" (SPADE / pix2pixHD instance maps) or "panoptic"
    style: bool = False  # the weights hold a style encoder (SPADE use_vae)
    size: tuple[int, int] = (256, 256)  # (width, height) the network was trained at
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    io: dict[str, Any] = field(default_factory=dict, repr=False)
    _resolved: bool = field(default=False, repr=False)

    def resolve(self) -> "ServeModel":
        """Fill in the label-map fields from the architecture's defaults (imports torch once)."""
        if self.task == "translate" and not self._resolved:
            where = f"model {self.key!r}"
            for k, v in _scene_fields(self.arch, self.config, self.io, where).items():
                setattr(self, k, v)
        self._resolved = True
        return self

    def classes(self) -> list[dict[str, Any]]:
        """The palette entries this model can be given: id, name, colour (painting order)."""
        from imgsynth.pipelines.labels import load_palette

        self.resolve()

        pal = load_palette(self.palette or "")
        out = []
        for lid, name, color in zip(pal.ids.tolist(), pal.names, pal.colors.tolist()):
            if self.label_ok(lid):
                out.append({"id": lid, "name": name, "color": color})
        return out

    def label_ok(self, lid: int) -> bool:
        """Whether painting ``lid`` gives a valid network input (the translator's own range rule)."""
        self.resolve()
        if not 0 <= lid <= 255:  # the page paints into an 8-bit index buffer
            return False
        v = lid + self.label_offset
        return 0 <= v < self.label_nc or (self.contain_dontcare and v in (-1, 255, self.label_nc))

    def eraser(self) -> int:
        """The class the eraser paints: the palette's ignore index, else its first usable class."""
        from imgsynth.pipelines.labels import load_palette

        pal = load_palette(self.palette or "")
        if pal.ignore_index is not None and self.label_ok(pal.ignore_index):
            return int(pal.ignore_index)
        return int(self.classes()[0]["id"])

    def public(self) -> dict[str, Any]:
        """What the page is told (no paths)."""
        self.resolve()
        out: dict[str, Any] = {"key": self.key, "task": self.task, "title": self.title, "arch": self.arch,
                               "network": self.network, "default": self.default, "license": self.license}
        if self.task == "translate":
            out.update(palette=self.palette, classes=self.classes(), eraser=self.eraser(),
                       instances=self.instances, style=self.style, width=self.size[0], height=self.size[1])
        return out


def _full_config(arch: str, config: dict[str, Any]) -> dict[str, Any]:
    """The constructor's defaults overlaid with ``config`` (cards may leave defaults out)."""
    import inspect

    from imgsynth.models.registry import get_model

    spec = get_model(arch)
    params = inspect.signature(spec.cls).parameters
    full = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    full.update(config)
    full["_use_panoptic"] = bool(getattr(spec.cls, "use_panoptic", False))
    full["_use_instance_attr"] = getattr(spec.cls, "use_instance", None)
    return full


def _scene_fields(arch: str, config: dict[str, Any], io_cfg: dict[str, Any], where: str) -> dict[str, Any]:
    from imgsynth.pipelines.labels import list_palettes

    cfg = _full_config(arch, config)
    palette = io_cfg.get("palette")
    if not palette or str(palette) not in list_palettes():
        raise WeightsError(f"{where}: a label-map model needs a bundled io.palette to paint with "
                           f"({', '.join(list_palettes())})")
    if cfg["_use_panoptic"]:
        instances = "panoptic"
    else:
        use_inst = cfg.get("use_instance", cfg["_use_instance_attr"])
        instances = "edges" if use_inst else None
    width = int(cfg.get("crop_size") or io_cfg.get("resolution") or 256)
    height = max(1, round(width / float(cfg.get("aspect_ratio") or 1.0)))
    return {"palette": str(palette), "label_nc": int(cfg.get("label_nc") or 0),
            "label_offset": int(io_cfg.get("label_offset", 0)),
            "contain_dontcare": bool(cfg.get("contain_dontcare", False)), "instances": instances,
            "style": bool(cfg.get("use_vae", False)), "size": (width, height)}


def _is_label_model(task: str, config: dict[str, Any], io_cfg: dict[str, Any]) -> bool:
    return task == "translate" and (io_cfg.get("input") == "label" or int(config.get("label_nc", 0) or 0) > 0)


def _from_card(card: Any, default: bool) -> ServeModel:
    return ServeModel(key=card.id, task=card.task, title=card.title, arch=card.arch, card_id=card.id,
                      network=card.has_weights, default=default, license=card.license,
                      config=dict(card.config), io=dict(card.io))


def _from_folder(folder: Path, taken: set[str]) -> ServeModel:
    from imgsynth.engine.loading import read_export_config

    cfg = read_export_config(folder)
    task = cfg.get("task") or ""
    config, io_cfg = dict(cfg.get("config", {})), dict(cfg.get("io", {}))
    if task not in TASKS or (task == "translate" and not _is_label_model(task, config, io_cfg)):
        raise UsageError(f"{folder}: serve offers inpainting models and label-map models, not this {task!r} model")
    key, n = f"weights:{folder.name}", 2
    while key in taken:
        key, n = f"weights:{folder.name}-{n}", n + 1
    return ServeModel(key=key, task=task, title=f"{folder.name} (exported {cfg['arch']})", arch=cfg["arch"],
                      weights=folder, license=str(cfg.get("license", "")), config=config, io=io_cfg)


def catalog(specs: list[str] | None = None) -> list[ServeModel]:
    """The models to offer: ``specs`` (card ids or exported folders, in that order), else every runnable one.

    Without ``specs``: every inpainting card and every label-map translation card whose weights are
    bundled, built in or already in the cache (serve never downloads). A named card that is not
    available offline is an error that says how to get it.
    """
    from imgsynth.engine.cards import default_card, get_card, load_cards
    from imgsynth.engine.fetch import cache_state

    cards = load_cards()
    defaults = set()
    for task in TASKS:
        try:
            defaults.add(default_card(task, cards).id)
        except Exception:  # a card set without a default for a task still serves the rest
            pass
    out: list[ServeModel] = []
    if specs:
        for spec in specs:
            if Path(spec).is_dir():
                out.append(_from_folder(Path(spec), {m.key for m in out}))
                continue
            card = get_card(spec, cards)
            if card.task not in TASKS or not _is_label_model(card.task, card.config, card.io) and card.task != "inpaint":
                raise UsageError(f"model {card.id!r} is a {card.task!r} model; serve offers inpainting and "
                                 f"label-map models")
            if cache_state(card) not in AVAILABLE:
                raise WeightsError(f"model {card.id!r}: weights are not on this machine; get them with "
                                   f"`imgsynth models download {card.id}` (serve never downloads)")
            if card.id not in {m.key for m in out}:
                out.append(_from_card(card, card.id in defaults))
    else:
        for card in cards.values():
            if card.task == "inpaint" or _is_label_model(card.task, card.config, card.io):
                if cache_state(card) in AVAILABLE:
                    out.append(_from_card(card, card.id in defaults))

    def order(m: ServeModel) -> tuple:
        classical = CLASSICAL_ORDER.index(m.key) if m.key in CLASSICAL_ORDER else len(CLASSICAL_ORDER)
        return (TASKS.index(m.task), not m.default, classical, m.key)

    if not specs:  # named models keep the order they were given in
        out.sort(key=order)
    # exactly one default per task: the task default if offered, else the first listed
    for task in TASKS:
        mine = [m for m in out if m.task == task]
        if mine and not any(m.default for m in mine):
            mine[0].default = True
    return out


@dataclass
class Status:
    """What the running job is doing (read by the page's progress bar)."""

    busy: bool = False
    task: str = ""
    stage: str = "idle"
    fraction: float | None = None
    started: float = 0.0
    last_seconds: float | None = None

    def public(self) -> dict[str, Any]:
        out = {"busy": self.busy, "task": self.task, "stage": self.stage, "fraction": self.fraction,
               "last_seconds": self.last_seconds}
        out["elapsed"] = round(time.monotonic() - self.started, 2) if self.busy else None
        return out


@dataclass
class Result:
    """A finished job: the image and the provenance written into its PNG."""

    rgb: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)


class Worker:
    """Runs one job at a time on cached models; thread-safe."""

    def __init__(self, models: list[ServeModel], device: str = "auto") -> None:
        self.models = {m.key: m for m in models}
        self.device_spec = device
        self.status = Status()
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Any] = OrderedDict()

    # --- the one-job rule -----------------------------------------------------------------------
    @contextmanager
    def reserve(self, task: str) -> Iterator[None]:
        """Hold the worker for one job; raises :class:`Busy` at once when it is taken."""
        if not self._lock.acquire(blocking=False):
            raise Busy()
        self.status = Status(busy=True, task=task, stage="starting", started=time.monotonic())
        try:
            yield
        finally:
            self.status = Status(last_seconds=round(time.monotonic() - self.status.started, 3))
            self._lock.release()

    def _stage(self, stage: str, fraction: float | None = None) -> None:
        self.status.stage, self.status.fraction = stage, fraction

    # --- models ---------------------------------------------------------------------------------
    def model(self, key: str, task: str) -> ServeModel:
        m = self.models.get(key)
        if m is None or m.task != task:
            raise InputError(f"unknown model {key!r} for this page (choose one from the list)")
        return m.resolve()

    def _loaded(self, m: ServeModel) -> Any:
        """The loaded model for ``m`` (cached; networks beyond CACHE_SIZE are dropped LRU)."""
        if m.key in self._cache:
            self._cache.move_to_end(m.key)
            return self._cache[m.key]
        self._stage("loading model")
        from imgsynth.engine.loading import load_model

        device = dtype = None
        if m.network:
            from imgsynth.engine.device import prepare_runtime, select_device, select_dtype

            prepare_runtime()
            device = select_device(self.device_spec)
            dtype = select_dtype("fp32", device)
        loaded = load_model(m.task, model=m.card_id, weights=m.weights, offline=True, device=device, dtype=dtype)
        entry = (loaded, device, dtype)
        self._cache[m.key] = entry
        while sum(1 for e in self._cache.values() if e[0].is_network) > CACHE_SIZE:
            oldest = next(k for k, e in self._cache.items() if e[0].is_network)
            del self._cache[oldest]
        return entry

    # --- jobs (call inside reserve) -------------------------------------------------------------
    def inpaint(self, key: str, rgb: np.ndarray, hole: np.ndarray) -> Result:
        """Fill ``hole`` ((H, W) bool) of ``rgb`` ((H, W, 3) uint8) as ``imgsynth inpaint`` would."""
        from imgsynth.engine.inpaint import make_inpainter, run_settings
        from imgsynth.pipelines.inpaint import check_hole

        m = self.model(key, "inpaint")
        if hole.shape != rgb.shape[:2]:
            raise InputError(f"the mask is {hole.shape[1]}x{hole.shape[0]} but the photo is "
                             f"{rgb.shape[1]}x{rgb.shape[0]}")
        check_hole(hole, "the mask")
        loaded, device, dtype = self._loaded(m)
        # what `imgsynth inpaint` runs without options
        inpainter = make_inpainter(loaded, device=device, dtype=dtype,
                                   progress=lambda f: self._stage("inpainting", max(0.0, min(1.0, float(f)))))
        self._stage("inpainting")
        out = inpainter([rgb], [hole])[0]
        meta = {**loaded.provenance(), "via": "imgsynth serve", **run_settings(loaded, inpainter, hole.shape)}
        return Result(out, meta)

    def synthesize(self, key: str, labels: np.ndarray, instances: np.ndarray | None = None,
                   style: np.ndarray | None = None, seed: int = 0) -> Result:
        """Turn an (H, W) label map (palette ids) into an (H, W, 3) image as ``imgsynth translate``."""
        from imgsynth.pipelines.translate import TranslateInput, Translator

        m = self.model(key, "translate")
        bad = [int(v) for v in np.unique(labels) if not m.label_ok(int(v))]
        if bad:
            raise InputError(f"label value(s) {bad[:5]} are not classes of {m.key}")
        if style is not None and not m.style:
            raise InputError(f"{m.key} has no style encoder, so it takes no style image")
        if instances is not None and instances.shape != labels.shape:
            raise InputError("the instance map and the label map differ in size")
        loaded, device, dtype = self._loaded(m)
        self._stage("synthesizing")
        translator = Translator(loaded.model, dict(loaded.io), "label", device, dtype)
        label = labels.astype(np.int64)
        inst = np.zeros(label.shape, np.int64) if instances is None else instances.astype(np.int64)
        item = TranslateInput("the label map", label=label, style=style, seed=int(seed))
        if m.instances == "edges":
            # one id per (class, painted instance): edges wherever either changes
            item.instance = label * 65536 + inst
        elif m.instances == "panoptic":
            from imgsynth.pipelines.panoptic_maps import from_semantic_instance

            _, item.panoptic = from_semantic_instance(label, inst, stuff_instance=0, name="the painted map")
        img, how = translator.translate_one(item)
        meta = {**loaded.provenance(), "via": "imgsynth serve", "input_kind": "label",
                "label_offset": int(loaded.io.get("label_offset", 0)), "seed": int(seed), "size_handling": how}
        return Result(img, meta)

    def info(self) -> list[dict[str, Any]]:
        """The models as the page sees them (resolving them imports torch the first time)."""
        return [m.public() for m in self.models.values()]

    def warm(self) -> None:
        """Import the heavy modules and resolve the models ahead of the first request."""
        try:
            from imgsynth.engine.device import prepare_runtime

            prepare_runtime()  # before the first import of torch
            import imgsynth.pipelines.inpaint  # noqa: F401
            import imgsynth.pipelines.translate  # noqa: F401

            for m in list(self.models.values()):
                m.resolve()
        except Exception:  # the first request reports the same problem in its own answer
            pass
