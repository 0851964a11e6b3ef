"""The ``sample`` and ``interpolate`` jobs: seeds to image files, grids, GIFs and MP4s."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from imgsynth.engine import io
from imgsynth.engine.runner import ItemResult, Report, finished, run_batched, shard
from imgsynth.errors import InputError, UsageError

ProgressFn = Callable[[int, int, str], None]


@dataclass
class ModelChoice:
    """Which model and where it runs (shared by sample and interpolate)."""

    model: str | None = None
    weights: Path | None = None
    revision: str | None = None
    offline: bool = False
    device: str = "auto"
    precision: str = "fp32"
    runtime: str = "torch"


@dataclass
class SampleRequest:
    """Everything ``imgsynth sample`` was asked to do."""

    seeds: list[int]
    choice: ModelChoice
    output: str | None = None
    batch_size: int = 8
    truncation_psi: float = 1.0
    truncation_cutoff: int | None = None
    class_idx: int | None = None
    noise_mode: str = "const"
    mix_seeds: list[int] | None = None
    mix_layers: list[int] | None = None
    grid: tuple[int, int] | None = None
    overwrite: bool = False


def _sampler(choice: ModelChoice):
    from imgsynth.engine.device import select_device, select_dtype
    from imgsynth.engine.loading import load_model
    from imgsynth.pipelines.sample import Sampler

    device = select_device(choice.device)
    dtype = select_dtype(choice.precision, device)
    from imgsynth.engine.onnx import check_runtime, wrap

    check_runtime(choice.runtime, device, dtype)
    loaded = load_model("sample", model=choice.model, weights=choice.weights, revision=choice.revision,
                        offline=choice.offline, device=device, dtype=dtype)
    wrap(loaded, choice.runtime, device, choice.weights)
    return Sampler(loaded.model, device, dtype), loaded


def _image(arr: np.ndarray) -> np.ndarray:
    return arr[..., 0] if arr.shape[-1] == 1 else arr


def run_sample(request: SampleRequest, progress: ProgressFn | None = None, stdout: Any = None) -> Report:
    """Generate one image per seed (or one grid) and write them."""
    started = time.perf_counter()
    seeds = request.seeds
    mix = request.mix_seeds
    if mix is not None and len(mix) not in (1, len(seeds)):
        raise UsageError(f"--mix-seeds needs 1 or {len(seeds)} seeds (one per --seeds), got {len(mix)}")
    if request.grid and request.grid[0] * request.grid[1] < len(seeds):
        raise UsageError(f"{len(seeds)} seeds do not fit a {request.grid[0]}x{request.grid[1]} grid")
    name = lambda s: f"seed{s:04d}"  # noqa: E731
    if not request.grid and request.output != io.STDIN and Path(request.output or "out").is_dir():
        # a rerun of a finished folder: skip before torch or a model is loaded (a folder that does
        # not exist yet holds nothing finished, and is not created before the request is checked)
        plan = io.plan_output(request.output, n_results=len(shard(seeds)), default="out",
                              overwrite=request.overwrite, stdout=stdout)
        done = plan.all_done([name(s) for s in shard(seeds)])
        if done is not None:
            return finished([name(s) for s in shard(seeds)], done, started)
    from imgsynth.pipelines.sample import class_onehot, make_grid, to_uint8

    sampler, loaded = _sampler(request.choice)
    sampler.check_options(request.truncation_psi, mix is not None, request.noise_mode)
    class_onehot(1, sampler.c_dim, request.class_idx)  # refuse a bad --class before any work
    options = {"truncation_psi": request.truncation_psi, "noise_mode": request.noise_mode}
    if request.truncation_cutoff is not None:
        options["truncation_cutoff"] = request.truncation_cutoff
    if request.class_idx is not None:
        options["class"] = request.class_idx
    mix_for = (lambda s: mix[0] if len(mix) == 1 else mix[seeds.index(s)]) if mix else None

    def generate(batch: Sequence[int]) -> np.ndarray:
        imgs = sampler.from_seeds(
            list(batch), class_idx=request.class_idx, noise_mode=request.noise_mode,
            truncation_psi=request.truncation_psi, truncation_cutoff=request.truncation_cutoff,
            mix_seeds=[mix_for(s) for s in batch] if mix_for else None, mix_layers=request.mix_layers,
        )
        return to_uint8(imgs)

    if request.grid:
        plan = io.plan_output(request.output, n_results=1, default="grid.png", stdout=stdout)
        report = Report()
        tiles = np.concatenate([generate(seeds[i : i + request.batch_size])
                                for i in range(0, len(seeds), request.batch_size)])
        meta = {**loaded.provenance(), **options, "seeds": seeds, "grid": list(request.grid)}
        path = plan.write("grid", _image(make_grid(tiles, *request.grid)), meta, stdout=stdout)
        report.results.append(ItemResult("grid", "ok", output=str(path) if path else "-", metadata=meta))
        return report

    seeds = shard(seeds)
    plan = io.plan_output(request.output, n_results=len(seeds), default="out", overwrite=request.overwrite,
                          stdout=stdout)

    def skip(seed: int) -> str | None:
        path = plan.path_for(name(seed))
        return str(path) if plan.check(path) == "skip" else None

    def write(seed: int, img: np.ndarray) -> ItemResult:
        meta = {**loaded.provenance(), **options, "seed": seed}
        if mix_for:
            meta["mix_seed"] = mix_for(seed)
            meta["mix_layers"] = request.mix_layers
        path = plan.write(name(seed), _image(img), meta, stdout=stdout)
        return ItemResult(name(seed), "ok", output=str(path) if path else "-", metadata=meta)

    return run_batched(seeds, prepare=lambda s: s, process=lambda b: list(generate(b)), write=write,
                       name_of=name, skip=skip, batch_size=request.batch_size, workers=0, progress=progress)


@dataclass
class InterpolateRequest:
    """Everything ``imgsynth interpolate`` was asked to do."""

    choice: ModelChoice
    seeds: list[int] | None = None
    latents: list[Path] | None = None
    output: str = "walk.gif"
    space: str = "z"
    method: str = "slerp"
    steps: int = 30
    loop: bool = False
    fps: float = 24.0
    grid: bool = False
    batch_size: int = 8
    truncation_psi: float = 1.0
    truncation_cutoff: int | None = None
    class_idx: int | None = None
    noise_mode: str = "const"


def load_latents(paths: Sequence[Path], z_dim: int) -> "Any":
    """Key latents from ``.npy`` files: each (z_dim,) or (K, z_dim); never unpickled."""
    import torch

    keys = []
    for p in paths:
        try:
            arr = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputError(f"{p}: not a .npy latent file ({e})") from None
        arr = np.atleast_2d(arr)
        if arr.ndim != 2 or arr.shape[1] != z_dim:
            raise InputError(f"{p}: latents must have shape ({z_dim},) or (K, {z_dim}), got {arr.shape}")
        keys.append(torch.from_numpy(arr.astype(np.float32)))
    return torch.cat(keys)


def _write_video(frames: np.ndarray, path: Path, fps: float) -> dict[str, Any]:
    """A GIF (Pillow) or an H.264 yuv420p MP4 (imageio-ffmpeg's FFmpeg), written atomically."""
    from imgsynth.engine.video_io import write_gif, write_mp4

    frames = (_image(f) for f in frames)
    if path.suffix.lower() == ".gif":
        return write_gif(frames, path, fps)
    return write_mp4(frames, path, fps)


def run_interpolate(request: InterpolateRequest, progress: ProgressFn | None = None) -> Report:
    """Render a latent walk as frames, a GIF, an MP4 or a grid."""
    import torch

    from imgsynth.pipelines.interpolate import walk
    from imgsynth.pipelines.sample import class_onehot, has_mapping, make_grid, seed_latents, to_uint8

    if bool(request.seeds) == bool(request.latents):
        raise UsageError("give the keys as --seeds or as latent .npy files (one of the two)")
    if request.space not in ("z", "w"):
        raise UsageError("--space must be z or w")
    out = Path(request.output)
    ext = out.suffix.lower()
    if request.grid and ext not in (".png", ".jpg", ".jpeg", ".webp"):
        raise UsageError("--grid writes one image: give -o NAME.png")
    if not request.grid and ext not in (".gif", ".mp4", ""):
        raise UsageError(f"-o {request.output}: use NAME.gif, NAME.mp4, a folder for frames, or --grid with NAME.png")
    sampler, loaded = _sampler(request.choice)
    sampler.check_options(request.truncation_psi, False, request.noise_mode)
    if request.space == "w" and not has_mapping(sampler.model):
        raise UsageError("--space w needs a model with a mapping network (StyleGAN, StyleGAN2); use --space z")
    keys = seed_latents(request.seeds, sampler.z_dim) if request.seeds else load_latents(request.latents, sampler.z_dim)
    c = class_onehot(1, sampler.c_dim, request.class_idx)
    kw = {"truncation_psi": request.truncation_psi, "truncation_cutoff": request.truncation_cutoff}
    if request.space == "w":
        keys = sampler.ws(keys, c.expand(keys.shape[0], -1), **kw).float().cpu()
    if request.grid:
        segs = [walk(keys[i : i + 2], request.steps, request.method) for i in range(keys.shape[0] - 1)]
        path_latents, rows, cols = torch.cat(segs), len(segs), request.steps + 1
    else:
        path_latents = walk(keys, request.steps, request.method, request.loop)
    frames = []
    n = path_latents.shape[0]
    for i in range(0, n, request.batch_size):
        chunk = path_latents[i : i + request.batch_size]
        cc = c.expand(chunk.shape[0], -1)
        if request.space == "w":
            torch.manual_seed(0)
            img = sampler.synthesize_ws(chunk.to(sampler.device, sampler.dtype), request.noise_mode).float().clamp(-1, 1)
        else:
            img = sampler.from_latents(chunk, cc, noise_mode=request.noise_mode, **kw)
        frames.append(to_uint8(img))
        if progress:
            progress(min(i + request.batch_size, n), n, "")
    frames_np = np.concatenate(frames)
    meta = {**loaded.provenance(), "space": request.space, "method": request.method, "steps": request.steps,
            "loop": request.loop, "frames": int(n), "truncation_psi": request.truncation_psi,
            "keys": request.seeds if request.seeds else [str(p) for p in request.latents]}
    report = Report()
    if request.grid:
        plan = io.plan_output(str(out), n_results=1, default="walk.png")
        plan.write(out.stem, _image(make_grid(frames_np, rows, cols)), meta)
        report.results.append(ItemResult("grid", "ok", output=str(out), metadata=meta))
    elif ext in (".gif", ".mp4"):
        info = _write_video(frames_np, out, request.fps)
        report.results.append(ItemResult(out.name, "ok", output=str(out), metadata={**meta, **info, "fps": request.fps}))
    else:
        plan = io.plan_output(str(out), n_results=n, default="frames", force_dir=True, overwrite=True)
        for i, f in enumerate(frames_np):
            p = plan.write(f"frame{i:04d}", _image(f), {**meta, "frame": i})
            report.results.append(ItemResult(f"frame{i:04d}", "ok", output=str(p)))
    return report
