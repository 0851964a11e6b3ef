"""The ``inpaint`` job: photos + masks from files to inpainted files.

Mask contract: white (>= 128) = hole; ``invert_mask`` swaps it. A mask is found, per photo, as
(1) ``mask`` when it is a single file (one mask for all photos), (2) ``mask/<stem>.<ext>`` or
``mask/<stem>_mask.<ext>`` when ``mask`` is a folder, (3) ``<stem>_mask.<ext>`` beside the photo
when no ``mask`` is given, (4) the photo's transparent pixels (alpha < 128) when it has alpha and no
mask was found. A mask of another size is an error unless ``resize_mask`` (nearest neighbour).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgsynth.engine import io
from imgsynth.engine.runner import Failed, ItemResult, Report, finished, run_batched, shard, unusable
from imgsynth.errors import InputError

MASK_SUFFIX = "_mask"


@dataclass
class InpaintRequest:
    """Everything ``imgsynth inpaint`` was asked to do."""

    inputs: list[str]
    mask: str | None = None
    output: str | None = None
    model: str | None = None
    weights: Path | None = None
    revision: str | None = None
    offline: bool = False
    device: str = "auto"
    precision: str = "fp32"
    runtime: str = "torch"
    batch_size: int = 1
    workers: int | None = None
    seed: int = 0
    invert_mask: bool = False
    resize_mask: bool = False
    dilate: int = 0
    radius: int = 3
    strategy: str = "auto"
    ensemble: int | None = None  # None: the card's io.ensemble (1 when it has none)
    concat: bool = False
    overwrite: bool = False


@dataclass
class _Prepared:
    name: str
    stem: str
    rgb: np.ndarray
    hole: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def _find_mask(item: io.InputItem, mask: str | None) -> Path | None:
    if mask is not None and mask != io.STDIN:
        mp = Path(mask)
        if mp.is_dir():
            for stem in (item.stem, item.stem + MASK_SUFFIX):
                for ext in io.IMAGE_EXTS:
                    cand = mp / f"{stem}{ext}"
                    if cand.exists():
                        return cand
            raise InputError(f"{item.path}: no mask named {item.stem}.png or {item.stem}{MASK_SUFFIX}.png in {mp}")
        return mp
    if item.is_stdin:
        return None
    for ext in io.IMAGE_EXTS:
        cand = Path(item.path).with_name(f"{item.stem}{MASK_SUFFIX}{ext}")
        if cand.exists():
            return cand
    return None


class PrepareInpaint:
    """Decode one photo and its mask (picklable, runs in DataLoader workers)."""

    def __init__(self, mask: str | None, invert: bool, resize: bool, dilate: int, shared_mask: np.ndarray | None):
        self.mask, self.invert, self.resize, self.dilate = mask, invert, resize, dilate
        self.shared_mask = shared_mask

    def __call__(self, item: io.InputItem) -> _Prepared:
        from imgsynth.pipelines.inpaint import check_hole, grow_hole

        if item.error:
            raise InputError(f"{item.path}: {item.error}")
        dec = io.decode_image(io.read_bytes(item), item.path)
        if self.shared_mask is not None:
            hole, mask_name = self.shared_mask, str(self.mask)
        else:
            mpath = _find_mask(item, self.mask)
            if mpath is not None:
                hole = io.decode_mask(io.read_bytes(io.InputItem(str(mpath), mpath.stem)), str(mpath), invert=self.invert)
                mask_name = str(mpath)
            elif dec.alpha is not None:
                hole = dec.alpha < 128
                mask_name = "alpha"
            else:
                raise InputError(
                    f"{item.path}: no mask; pass --mask FILE|DIR, put {item.stem}{MASK_SUFFIX}.png beside it, "
                    f"or give an RGBA photo whose transparent pixels are the hole"
                )
        if hole.shape != dec.size:
            if not self.resize:
                raise InputError(
                    f"{mask_name}: mask is {hole.shape[1]}x{hole.shape[0]} but {item.path} is "
                    f"{dec.size[1]}x{dec.size[0]}; use --resize-mask to scale it"
                )
            import cv2

            hole = cv2.resize(hole.astype(np.uint8), (dec.size[1], dec.size[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
        hole = grow_hole(hole, self.dilate)
        check_hole(hole, mask_name if mask_name != "alpha" else item.path)
        return _Prepared(item.path, item.stem, dec.rgb, hole, {"mask": mask_name})


def _classical_card(model: str | None) -> bool:
    """True when ``--model`` (or the task default) names a method without weights."""
    from imgsynth.engine.cards import default_card, get_card, load_cards

    cards = load_cards()
    card = get_card(model, cards) if model else default_card("inpaint", cards)
    return not card.has_weights


def _concat(rgb: np.ndarray, hole: np.ndarray, out: np.ndarray) -> np.ndarray:
    mask_rgb = np.repeat((hole.astype(np.uint8) * 255)[..., None], 3, axis=2)
    return np.concatenate([rgb, mask_rgb, out], axis=1)


def run_settings(loaded: Any, inpainter: Any, shape: tuple[int, int]) -> dict[str, Any]:
    """What a photo of ``shape`` (H, W) ran with beyond the card, for its metadata: the strategy
    (``auto`` resolved; absent for a classical method on the whole photo) and the self-ensemble
    size (absent when 1), so that the output says how to reproduce it."""
    meta: dict[str, Any] = {}
    strategy = inpainter.strategy_for(shape)
    if strategy != "full":
        meta["strategy"] = strategy
    views = inpainter.ensemble_for(shape)
    if loaded.is_network and views != 1:
        meta["ensemble"] = views
    return meta


def make_inpainter(loaded: Any, *, strategy: str = "auto", radius: int = 3, seed: int = 0, ensemble: int | None = None,
                   device: Any = None, dtype: Any = None, progress: Callable[[float], None] | None = None) -> Any:
    """The :class:`~imgsynth.pipelines.inpaint.Inpainter` that ``imgsynth inpaint`` runs for ``loaded``.

    The card's (or export's) ``io`` gives the resolution, the normalization and the self-ensemble;
    ``ensemble`` (``--ensemble``) overrides it. Photos filled at full resolution (``sharp``) run one
    view unless ``ensemble`` asks: the detail transfer, not the ensemble, is what they need.
    ``imgsynth serve`` builds its fills here too, with the defaults.
    """
    from imgsynth.pipelines.inpaint import Inpainter

    views = ensemble if ensemble is not None else int(loaded.io.get("ensemble", 1))
    return Inpainter(loaded.model, strategy=strategy, radius=radius, seed=seed,
                     resolution=int(loaded.io.get("resolution", 256)),
                     normalization=loaded.io.get("normalization", "imagenet"),
                     ensemble=views if loaded.is_network else 1, device=device, dtype=dtype,
                     sharp_ensemble=ensemble if ensemble is not None else 1, progress=progress)


def run_inpaint(request: InpaintRequest, progress: Callable[[int, int, str], None] | None = None,
                stdout: Any = None) -> Report:
    """Run an inpainting request end to end and return the :class:`Report`."""
    started = time.perf_counter()
    items = shard(io.expand_inputs(request.inputs, exclude_suffix=MASK_SUFFIX if request.mask is None else None))
    plan = io.plan_output(request.output, n_results=len(items), default="out", inputs=items,
                          overwrite=request.overwrite, stdout=stdout, protect=io.mask_files(request.mask))
    done = None if any(i.is_stdin or i.error for i in items) else plan.all_done([i.stem for i in items])
    if done is not None:  # a rerun of a finished folder: skip before torch or a model is loaded
        return finished([i.path for i in items], done, started)
    failed = unusable(items, started)
    if failed is not None:  # no input to work on (e.g. a misspelt name): say so before loading anything
        return failed
    from imgsynth.engine.device import select_device, select_dtype
    from imgsynth.engine.loading import load_model

    if request.mask is not None and request.mask != io.STDIN and not Path(request.mask).exists():
        raise InputError(f"{request.mask}: mask file not found")
    shared = None
    if request.mask is not None and not Path(request.mask).is_dir():
        if request.mask == io.STDIN:
            raise InputError("-: the mask cannot come from stdin")
        shared = io.decode_mask(Path(request.mask).read_bytes(), request.mask, invert=request.invert_mask)

    classical = request.weights is None and _classical_card(request.model)
    device = dtype = None
    # classical methods skip torch (fast start-up) unless a device/precision was asked for and must be checked
    if not classical or request.device != "auto" or request.precision != "fp32":
        device = select_device(request.device)
        dtype = select_dtype(request.precision, device)
    if request.runtime != "torch":
        from imgsynth.engine.onnx import check_runtime

        check_runtime(request.runtime, device, dtype)
    loaded = load_model("inpaint", model=request.model, weights=request.weights, revision=request.revision,
                        offline=request.offline, device=device, dtype=dtype)
    if request.runtime != "torch":
        from imgsynth.engine.onnx import wrap

        wrap(loaded, request.runtime, device, request.weights)
    inpainter = make_inpainter(loaded, strategy=request.strategy, radius=request.radius, seed=request.seed,
                               ensemble=request.ensemble, device=device, dtype=dtype)
    options: dict[str, Any] = {}
    if not loaded.is_network:
        options = {"radius": request.radius} if loaded.arch in ("telea", "ns") else {"seed": request.seed}
    options.update({"dilate": request.dilate, "invert_mask": request.invert_mask})

    names: dict[str, str] = {}
    collisions: set[str] = set()
    for it in items:
        if it.stem in names:
            collisions.add(it.path)
        names.setdefault(it.stem, it.path)

    def skip(item: io.InputItem) -> str | None:
        if item.path in collisions:
            return None
        path = plan.path_for(item.stem)
        return str(path) if plan.check(path) == "skip" else None

    # Where the runner's count stands, so that a slow classical fill (PatchMatch on a 12-MP photo
    # takes minutes) can report its own progress as a fraction of the current photo.
    counts = {"done": 0, "total": len(items)}

    def runner_progress(done: int, total: int, message: str) -> None:
        counts.update(done=done, total=total)
        if progress is not None:
            progress(done, total, message)

    def process(batch: list[_Prepared]) -> list[Any]:
        if progress is None or loaded.is_network:
            outs = inpainter([p.rgb for p in batch], [p.hole for p in batch])
            if loaded.is_network:
                _trim_heap()
            return outs
        outs = []
        for j, p in enumerate(batch):
            inpainter.progress = lambda f, j=j, name=p.name: progress(counts["done"] + j + f, counts["total"], name)
            outs += inpainter([p.rgb], [p.hole])
        inpainter.progress = None
        return outs

    def write(p: _Prepared, out: np.ndarray) -> ItemResult:
        if p.name in collisions:
            return ItemResult(p.name, "failed", error=f"{p.name}: output name {p.stem!r} collides with {names[p.stem]}")
        meta = {**loaded.provenance(), **options, "input": Path(p.name).name, "mask": p.info["mask"]}
        meta.update(run_settings(loaded, inpainter, p.hole.shape))
        img = _concat(p.rgb, p.hole, out) if request.concat else out
        path = plan.write(p.stem, img, meta, stdout=stdout)
        return ItemResult(p.name, "ok", output=str(path) if path else "-", metadata=meta)

    workers = request.workers
    if workers is None:
        workers = 1 if len(items) > 2 else 0
    if any(i.is_stdin for i in items) or not loaded.is_network:
        workers = 0  # decoding dominates a classical fill; worker processes would only add start-up
    prepare = PrepareInpaint(request.mask, request.invert_mask, request.resize_mask, request.dilate, shared)
    return run_batched(items, prepare=prepare, process=process, write=write, name_of=lambda i: i.path,
                       skip=skip, batch_size=request.batch_size, workers=workers,
                       progress=runner_progress if progress is not None else None)


def _trim_heap() -> None:
    """Hand the heap's free pages back to the OS (glibc's ``malloc_trim``). A network's fill of a
    photo frees hundreds of MB of activations in pieces the allocator otherwise keeps, so the
    resident size crept up photo after photo in a batch (2048-px photos: from 0.79 to 0.99 GB
    over six, before the next forward's own peak). A no-op where glibc is not the C library."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


__all__ = ["Failed", "InpaintRequest", "run_inpaint"]
