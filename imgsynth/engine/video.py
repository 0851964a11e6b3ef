"""The ``translate-video`` job: a clip of conditioning frames in, a translated clip out.

INPUT is a folder of frames (natural order), a glob or a video file (:mod:`imgsynth.engine.video_io`);
each frame is decoded as ``translate`` decodes an image (label maps with palettes, instance maps
paired by stem, photos turned into edges / gray / clusters by the model's input kind). The model
decides the mode: a vid2vid-family model runs as a video model (``--mode video``), an image model
frame by frame (``--mode per-frame``); ``--mode per-frame`` with a video model runs its first-frame
(single-image) generator on every frame, the video model's own per-frame baseline.

Frames stream through: one decoded input frame and the model's window of past frames in memory.
Every output frame is written atomically as soon as it is made (a folder output, or the hidden work
folder of an MP4/GIF), so Ctrl-C loses at most the frame in flight and the next run resumes after
the last written frame (a video model is primed with the written frames and their inputs). A
frame that fails to decode stops the run there (later frames depend on it, or would be misnumbered)
with its one-line error; the frames before it stay written and a rerun resumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from imgsynth.engine import io, video_io
from imgsynth.engine.runner import ItemResult, Report
from imgsynth.errors import ImgsynthError, InputError, UsageError

MODES = ("auto", "video", "per-frame")
DEFAULT_FPS = 24.0


@dataclass
class VideoRequest:
    """Everything ``imgsynth translate-video`` was asked to do."""

    input: str
    output: str | None = None
    model: str | None = None
    weights: Path | None = None
    revision: str | None = None
    offline: bool = False
    device: str = "auto"
    precision: str = "fp32"
    mode: str = "auto"
    first_frame: str | None = None
    first_frame_model: str | None = None
    first_frames: str | None = None
    input_kind: str | None = None
    instance: str | None = None
    palette: str | None = None
    label_offset: int | None = None
    fps: float | None = None
    max_frames: int | None = None
    seed: int = 0
    overwrite: bool = False


def _task_of(request: VideoRequest) -> str:
    """The task of the chosen card or export (video models may be ``translate`` or ``translate-video``)."""
    from imgsynth.engine.cards import default_card, get_card, load_cards
    from imgsynth.engine.loading import read_export_config

    if request.weights is not None and request.model is not None:
        raise UsageError("give either --model or --weights, not both")
    if request.weights is not None:
        task = read_export_config(Path(request.weights)).get("task") or "translate"
    elif request.model is not None:
        task = get_card(request.model, load_cards()).task
    else:
        task = default_card("translate-video", load_cards()).task
    if task not in ("translate", "translate-video"):
        what = request.model or request.weights
        raise UsageError(f"model {what!s} is a {task!r} model; translate-video needs a translation or video model")
    return task


def _load(request: VideoRequest, device: Any, dtype: Any):
    from imgsynth.engine.loading import load_model

    return load_model(_task_of(request), model=request.model, weights=request.weights, revision=request.revision,
                      offline=request.offline, device=device, dtype=dtype)


def _read_real_frames(spec: str, n: int) -> list[np.ndarray]:
    src = video_io.open_frames(spec)
    frames: list[np.ndarray] = []
    if src.is_video:
        for rgb in video_io.iter_video(src.video):
            frames.append(rgb)
            if len(frames) == n:
                break
    else:
        for item in src.items[:n]:
            frames.append(io.decode_image(io.read_bytes(item), item.path).rgb)
    return frames


def run_translate_video(request: VideoRequest, progress: Callable[[int, int, str], None] | None = None) -> Report:
    """Translate one clip end to end; the report has one record, the clip."""
    import time

    t0 = time.perf_counter()
    if request.mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}")
    source = video_io.open_frames(request.input)  # a missing input is reported before torch loads
    from imgsynth.engine.device import select_device, select_dtype
    from imgsynth.engine.loading import load_model
    from imgsynth.engine.translate import INSTANCE_SUFFIX, PrepareTranslate
    from imgsynth.pipelines.translate import TranslateInput, Translator
    from imgsynth.pipelines.video import (
        ImaginaireStream, PerFrame, Vid2VidStream, is_few_shot, is_imaginaire, is_video_model,
    )

    device = select_device(request.device)
    dtype = select_dtype(request.precision, device)
    loaded = _load(request, device, dtype)
    cfg_io = dict(loaded.io)
    if request.label_offset is not None:
        cfg_io["label_offset"] = request.label_offset
    video_model = is_video_model(loaded.model)
    mode = request.mode if request.mode != "auto" else ("video" if video_model else "per-frame")
    if mode == "video" and not video_model:
        raise UsageError(f"model {loaded.model_id!r} is an image model: it runs with --mode per-frame only")

    def first_frame_translator() -> tuple[Translator | None, str | None]:
        ident = request.first_frame_model or cfg_io.get("first_frame_model")
        if not ident:
            return None, None
        path = Path(ident)
        kw = {"weights": path} if path.is_dir() else {"model": ident}
        single = load_model("translate", revision=None, offline=request.offline, device=device, dtype=dtype, **kw)
        if is_video_model(single.model):
            raise UsageError(f"--first-frame-model {ident}: must be a single-image model, not a video model")
        s_io = dict(single.io)
        if request.label_offset is not None:
            s_io["label_offset"] = request.label_offset
        return Translator(single.model, s_io, request.input_kind, device, dtype), single.model_id

    provenance = loaded.provenance()
    if mode == "per-frame" and video_model:
        single, single_id = first_frame_translator()
        if single is None:
            raise UsageError(f"model {loaded.model_id!r} is a video model without a first-frame (single-image) "
                             "generator; --mode per-frame needs an image model (--first-frame-model CARD)")
        runner: Any = PerFrame(single)
        provenance = {**provenance, "per_frame_model": single_id}
        kind = single.kind
    elif mode == "per-frame":
        runner = PerFrame(Translator(loaded.model, cfg_io, request.input_kind, device, dtype))
        kind = runner.translator.kind
    elif is_few_shot(loaded.model):
        raise UsageError(f"model {loaded.model_id!r} is few-shot vid2vid: it needs reference images of the subject, "
                         "which translate-video does not take yet")
    elif is_imaginaire(loaded.model):
        if request.first_frame or request.first_frames or request.first_frame_model:
            raise UsageError(f"model {loaded.model_id!r} makes its first frame itself: no --first-frame options")
        runner = ImaginaireStream(loaded.model, cfg_io, request.input_kind, device, dtype)
        kind = runner.kind
    else:
        policy = request.first_frame or cfg_io.get("first_frame") or "zeros"
        single, single_id, real = None, None, None
        if policy == "single":
            single, single_id = first_frame_translator()
        elif policy == "real":
            if not request.first_frames:
                raise UsageError("--first-frame real needs --first-frames PATH (a folder, glob or video of real frames)")
            real = _read_real_frames(request.first_frames, int(loaded.model.n_frames) - 1)
        runner = Vid2VidStream(loaded.model, cfg_io, request.input_kind, device, dtype, policy, single, real)
        kind = runner.kind
        if single_id:
            provenance = {**provenance, "first_frame_model": single_id}
    if kind == "label" and source.is_video:
        raise InputError(f"{request.input}: a video file holds compressed RGB frames, not label maps; give a folder "
                         "of PNG label maps (or another --input-kind)")

    # the frames, in order (instance maps beside label maps are not frames of their own)
    items = source.items
    if items is not None and kind == "label":
        inst_like = [i for i in items if i.stem.endswith(INSTANCE_SUFFIX) or "instanceIds" in i.stem]
        if len(items) > len(inst_like):
            items = [i for i in items if i not in inst_like]
    total = len(items) if items is not None else source.count
    if request.max_frames is not None:
        total = min(total, request.max_frames) if total else request.max_frames
    fps = float(request.fps or source.fps or DEFAULT_FPS)
    palette = request.palette or cfg_io.get("palette")
    frame_model = runner.translator.model if isinstance(runner, PerFrame) else loaded.model
    needs_instance = bool(getattr(frame_model, "use_instance", False))
    prepare = PrepareTranslate(kind, request.instance, palette, needs_instance, None, request.seed)
    inputs = [i.path for i in items] if items is not None else [str(source.video)]
    sink = video_io.FrameSink(request.output or "out", fps=fps, overwrite=request.overwrite, inputs=inputs)
    options = {**provenance, **runner.metadata(), "input_kind": kind, "seed": request.seed}
    report = Report()
    clip_name = source.name
    if sink.already_complete:
        report.results.append(ItemResult(clip_name, "skipped", output=str(sink.target)))
        report.seconds = time.perf_counter() - t0
        return report

    def frames_from(start: int) -> Iterator[tuple[int, str, Any]]:
        """(index, name, TranslateInput or an error message) from frame ``start`` on."""
        if items is not None:
            for i in range(start, len(items) if total is None else min(total, len(items))):
                try:
                    yield i, items[i].path, prepare(items[i])
                except ImgsynthError as e:
                    yield i, items[i].path, str(e)
            return
        for j, rgb in enumerate(video_io.iter_video(source.video, start)):
            i = start + j
            if total is not None and request.max_frames is not None and i >= total:
                return
            yield i, f"{source.video}#{i}", TranslateInput(f"{source.video}#{i}", image=rgb, seed=request.seed)

    start = sink.done()
    if total is not None and start > total:
        start = total
    if start:
        # resume: prime a video model with the window of inputs and outputs before ``start``
        lo = max(0, start - runner.window)
        prior = [x for _, _, x in _take(frames_from(lo), start - lo)]
        bad = [x for x in prior if isinstance(x, str)]
        if bad and mode == "video":
            raise InputError(bad[0])
        runner.prime([x for x in prior if not isinstance(x, str)], [sink.read(i) for i in range(lo, start)], start)
    written = start
    if progress:
        progress(written, total or 0, "")
    size_notes = set()
    for i, name, item in frames_from(start):
        if isinstance(item, str):
            # later frames depend on this one (video) or would be misnumbered (per-frame): stop here
            raise InputError(f"{item} (frame {i}; the {i} frame(s) before it are written: fix it and run again "
                             "to resume)")
        img, how = runner.step(item)
        if how != "none":
            size_notes.add(how)
        sink.write(i, img, {**options, "frame": i, "input": Path(name).name, "size_handling": how})
        written = i + 1
        if progress:
            progress(written, total or written, name)
    if written == 0:
        raise InputError(f"{request.input}: no frames")
    meta = {**options, "frames": written, "fps": fps, "input": str(request.input)}
    if size_notes:
        meta["size_handling"] = sorted(size_notes)
    if start:
        meta["resumed_at_frame"] = start
    info = sink.finish(written, meta)
    report.results.append(ItemResult(clip_name, "ok", output=str(sink.target), metadata={**meta, **info}))
    report.seconds = time.perf_counter() - t0
    return report


def _take(it: Iterator[Any], n: int) -> list[Any]:
    out = []
    for x in it:
        if len(out) >= n:
            break
        out.append(x)
    return out
