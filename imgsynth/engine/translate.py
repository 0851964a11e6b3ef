"""The ``translate`` job: label maps or photos from files to translated images.

Label maps are index images (L, P, I;16: raw values are the labels) or colour-coded maps decoded
with a dataset palette (``--palette`` or the card's ``io.palette``). Instance maps are found with
``--instance FILE|DIR`` (paired by stem), else beside the label map with ``labelIds`` replaced by
``instanceIds`` in the name (the Cityscapes convention) or as ``<stem>_instance.png``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from imgsynth.engine import io
from imgsynth.engine.runner import ItemResult, Report, finished, run_batched, shard, unusable
from imgsynth.errors import ImgsynthError, InputError, UsageError

INSTANCE_SUFFIX = "_instance"


@dataclass
class TranslateRequest:
    """Everything ``imgsynth translate`` was asked to do."""

    inputs: list[str]
    output: str | None = None
    model: str | None = None
    weights: Path | None = None
    revision: str | None = None
    offline: bool = False
    device: str = "auto"
    precision: str = "fp32"
    runtime: str = "torch"
    workers: int | None = None
    seed: int = 0
    input_kind: str | None = None
    instance: str | None = None
    palette: str | None = None
    label_offset: int | None = None
    style: Path | None = None
    segments: Path | None = None
    concat: bool = False
    overwrite: bool = False


def _instance_path(item: io.InputItem, instance: str | None) -> Path | None:
    if instance is not None:
        p = Path(instance)
        if p.is_dir():
            for stem in (item.stem, item.stem.replace("labelIds", "instanceIds"), item.stem + INSTANCE_SUFFIX):
                for ext in io.IMAGE_EXTS:
                    if (p / f"{stem}{ext}").exists():
                        return p / f"{stem}{ext}"
            raise InputError(f"{item.path}: no instance map named {item.stem}.png in {p}")
        return p
    if item.is_stdin:
        return None
    here = Path(item.path)
    for stem in ({item.stem.replace("labelIds", "instanceIds")} - {item.stem}) | {item.stem + INSTANCE_SUFFIX}:
        for ext in io.IMAGE_EXTS:
            cand = here.with_name(f"{stem}{ext}")
            if cand.exists():
                return cand
    return None


def _is_instance_map(item: io.InputItem) -> bool:
    return item.stem.endswith(INSTANCE_SUFFIX) or "instanceIds" in item.stem


def _known_kind(request: TranslateRequest) -> str | None:
    """The input kind as far as the card (or the export's config.json) tells without loading the model.

    The model takes label maps when its ``label_nc`` > 0; the kind is ``--input-kind``, else
    ``io.input``, else that. None when the card or export says neither, or when they disagree on
    being a label map (the loaded model then decides, or refuses).
    """
    import json

    try:
        if request.weights is not None:
            cfg = json.loads((Path(request.weights) / "config.json").read_text())
            cfg_io, config = cfg.get("io") or {}, cfg.get("config") or {}
        else:
            from imgsynth.engine.cards import default_card, get_card, load_cards

            cards = load_cards()
            card = get_card(request.model, cards) if request.model else default_card("translate", cards)
            cfg_io, config = card.io, card.config
        declared = cfg_io.get("input")
        natural = ("label" if int(config["label_nc"]) > 0 else "image") if "label_nc" in config else None
    except (OSError, ValueError, TypeError, AttributeError, ImgsynthError):
        return None
    kind = request.input_kind or declared or natural
    known = natural or declared
    if not isinstance(kind, str) or not isinstance(known, str) or (kind == "label") != (known == "label"):
        return None
    return kind


class PrepareTranslate:
    """Decode one input (and its instance map) into a TranslateInput; picklable for workers."""

    def __init__(self, kind: str, instance: str | None, palette: str | None, needs_instance: bool,
                 style: np.ndarray | None, seed: int, panoptic: bool = False, segments: dict | None = None):
        self.kind, self.instance, self.palette = kind, instance, palette
        self.needs_instance, self.style, self.seed = needs_instance, style, seed
        self.panoptic, self.segments = panoptic, segments

    def _panoptic(self, item: io.InputItem, data: bytes):
        """(semantic, panoptic ids) from a COCO panoptic PNG (+ --segments), a semantic map with an
        instance map, or a Cityscapes-style instanceIds map (class * 1000 + instance)."""
        from imgsynth.pipelines import panoptic_maps as pm

        name = item.path
        if self.segments is not None:
            dec = io.decode_image(data, name)
            segs = pm.coco_segments(self.segments, Path(name).name)
            return pm.from_coco_panoptic(dec.rgb, segs, name=name)
        ip = _instance_path(item, self.instance)
        if ip is not None:
            inst, _ = io.decode_label_map(io.read_bytes(io.InputItem(str(ip), ip.stem)), str(ip))
            if inst is None:
                raise InputError(f"{ip}: an instance map must be a single-channel integer image")
            return pm.from_semantic_instance(self._labels(data, name), inst, name=name)
        raw, _ = io.decode_label_map(data, name)
        if raw is None:
            raise InputError(f"{name}: a panoptic input is an instanceIds map, a COCO panoptic PNG with "
                             f"--segments, or a label map with --instance")
        return pm.from_cityscapes_instance_ids(raw, name=name)

    def _labels(self, data: bytes, name: str) -> np.ndarray:
        raw, dec = io.decode_label_map(data, name)
        if raw is not None:
            return raw
        if self.palette is None:
            raise InputError(f"{name}: a colour label map needs --palette (see `imgsynth translate --help`)")
        from imgsynth.pipelines.labels import decode_color_labels, load_palette

        return decode_color_labels(dec.rgb, load_palette(self.palette), name_for_errors=name)

    def __call__(self, item: io.InputItem):
        from imgsynth.pipelines.translate import TranslateInput

        if item.error:
            raise InputError(f"{item.path}: {item.error}")
        data = io.read_bytes(item)
        if self.kind != "label":
            return TranslateInput(item.path, image=io.decode_image(data, item.path).rgb, style=self.style, seed=self.seed)
        if self.panoptic:
            semantic, ids = self._panoptic(item, data)
            return TranslateInput(item.path, label=semantic, panoptic=ids, style=self.style, seed=self.seed)
        label = self._labels(data, item.path)
        inst = None
        if self.needs_instance:
            ip = _instance_path(item, self.instance)
            if ip is not None:
                raw, _ = io.decode_label_map(io.read_bytes(io.InputItem(str(ip), ip.stem)), str(ip))
                if raw is None:
                    raise InputError(f"{ip}: an instance map must be a single-channel integer image")
                inst = raw
        return TranslateInput(item.path, label=label, instance=inst, style=self.style, seed=self.seed)


def _label_preview(label: np.ndarray, palette: str | None) -> np.ndarray:
    if palette is not None:
        from imgsynth.pipelines.labels import colorize, load_palette

        return colorize(label, load_palette(palette))
    rng = np.random.RandomState(0)
    colors = rng.randint(0, 256, (int(label.max()) + 1, 3)).astype(np.uint8)
    return colors[np.clip(label, 0, None)]


def run_translate(request: TranslateRequest, progress: Callable[[int, int, str], None] | None = None,
                  stdout: Any = None) -> Report:
    """Run a translation request end to end."""
    started = time.perf_counter()
    items = shard(io.expand_inputs(request.inputs, exclude_suffix=None))
    if not any(i.is_stdin or i.error for i in items):
        inst_like = [i for i in items if _is_instance_map(i)]
        kind = _known_kind(request) if inst_like else None
        if not inst_like or kind is not None:
            todo = [i for i in items if i not in inst_like] if kind == "label" and len(items) > len(inst_like) \
                else items
            early = io.plan_output(request.output, n_results=len(todo), default="out", inputs=items,
                                   overwrite=request.overwrite, stdout=stdout)
            done = early.all_done([i.stem for i in todo])
            if done is not None:  # a rerun of a finished folder: skip before torch or a model is loaded
                return finished([i.path for i in todo], done, started)
    failed = unusable(items, started)
    if failed is not None:  # no input to work on (e.g. a misspelt name): say so before loading anything
        return failed
    from imgsynth.engine.device import select_device, select_dtype
    from imgsynth.engine.loading import load_model
    from imgsynth.engine.video_io import is_video_file
    from imgsynth.pipelines.translate import Translator

    # a video file is a clip, not an image: point to the command that translates clips
    items = [io.InputItem(i.path, i.stem, f"a video file; translate clips with `imgsynth translate-video {i.path}`")
             if not i.error and not i.is_stdin and is_video_file(i.path) else i for i in items]
    device = select_device(request.device)
    dtype = select_dtype(request.precision, device)
    from imgsynth.engine.onnx import check_runtime, wrap

    check_runtime(request.runtime, device, dtype)
    loaded = load_model("translate", model=request.model, weights=request.weights, revision=request.revision,
                        offline=request.offline, device=device, dtype=dtype)
    from imgsynth.pipelines.video import is_video_model

    if is_video_model(loaded.model):
        raise UsageError(f"model {loaded.model_id!r} is a video model; translate clips with `imgsynth translate-video`")
    wrap(loaded, request.runtime, device, request.weights)
    cfg_io = dict(loaded.io)
    if request.label_offset is not None:
        cfg_io["label_offset"] = request.label_offset
    translator = Translator(loaded.model, cfg_io, request.input_kind, device, dtype)
    palette = request.palette or cfg_io.get("palette")
    style = io.decode_image(request.style.read_bytes(), str(request.style)).rgb if request.style else None
    if style is not None and not getattr(loaded.model, "use_vae", False):
        raise InputError(f"{request.style}: --style needs a model with a style encoder (SPADE with use_vae)")
    side_files = io.mask_files(request.instance) + [str(p) for p in (request.style, request.segments) if p]
    plan = io.plan_output(request.output, n_results=len(items), default="out", inputs=items,
                          overwrite=request.overwrite, stdout=stdout, protect=side_files)
    # instance maps beside their label maps are not inputs of their own
    inst_like = [i for i in items if _is_instance_map(i)]
    if translator.kind == "label" and len(items) > len(inst_like):
        items = [i for i in items if i not in inst_like]
    options = {"input_kind": translator.kind, "seed": request.seed}
    if translator.kind == "label":
        options["label_offset"] = int(cfg_io.get("label_offset", 0))

    def skip(item: io.InputItem) -> str | None:
        path = plan.path_for(item.stem)
        return str(path) if plan.check(path) == "skip" else None

    def write(p, out: tuple[np.ndarray, str]) -> ItemResult:
        img, how = out
        meta = {**loaded.provenance(), **options, "input": Path(p.name).name, "size_handling": how}
        if request.concat:
            left = _label_preview(p.label, palette) if p.label is not None else p.image
            img = np.concatenate([left, img], axis=1)
        path = plan.write(Path(p.name).stem if p.name != "-" else "stdin", img, meta, stdout=stdout)
        return ItemResult(p.name, "ok", output=str(path) if path else "-", metadata=meta)

    workers = request.workers if request.workers is not None else (1 if len(items) > 2 else 0)
    if any(i.is_stdin for i in items):
        workers = 0
    segments = None
    if request.segments is not None:
        import json

        try:
            segments = json.loads(Path(request.segments).read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"{request.segments}: cannot read the COCO panoptic JSON ({e})") from None
    prepare = PrepareTranslate(translator.kind, request.instance, palette,
                               bool(getattr(loaded.model, "use_instance", False)), style, request.seed,
                               bool(getattr(loaded.model, "use_panoptic", False)), segments)
    return run_batched(items, prepare=prepare, process=lambda b: [translator.translate_one(x) for x in b],
                       write=write, name_of=lambda i: i.path, skip=skip, batch_size=1, workers=workers,
                       progress=progress)
