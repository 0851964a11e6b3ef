"""The shared GAN training loop: steps, EMA, precision, checkpoints, exact resume, data parallelism.

One step is ``loss.d_steps`` discriminator updates followed by one generator update (Goodfellow
et al. 2014, Algorithm 1). With one D update per step the generated batch is reused for the G
update, as pytorch/examples ``dcgan/main.py`` does.

Resume is exact: a checkpoint holds G, D, the EMA of G, both optimisers, both GradScalers, the
sampler position (epoch, batch) and every RNG the run draws from (torch CPU and CUDA, numpy,
Python ``random``, the latent generator; one set per rank), so N steps + resume + M steps gives
the same weights bit for bit as N + M steps (on CPU; on GPU as far as the kernels are
deterministic).

Started by ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set) the loop joins the process
group (NCCL on GPUs, gloo on CPU), gives each rank its shard of every epoch, and averages
gradients across ranks after every backward pass, so all ranks take identical optimiser steps.
The averaging is the all-reduce that DistributedDataParallel performs, done explicitly (as
StyleGAN2-ADA does) because a GAN step runs D inside G's backward pass and R1 / WGAN-GP need
double backward, neither of which DDP's bucketed reducer supports. BatchNorm buffers are
broadcast from rank 0 after each step (DDP's ``broadcast_buffers``), so every rank ends every step
with the same state. Only rank 0 reports
progress and writes files.

Ctrl-C (SIGINT) finishes the current step, writes a checkpoint and returns with
``interrupted=True``; a second Ctrl-C stops at once.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from imgsynth.errors import ConfigError, DeviceError, OutputError
from imgsynth.training import losses as L
from imgsynth.training.augment import AdaptiveP, AugmentPipe
from imgsynth.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from imgsynth.training.config import TrainConfig, dumps_config, from_dict
from imgsynth.training.data import (
    BatchStream,
    ResumableBatchSampler,
    SkipUnreadable,
    data_fingerprint,
    dataset_name,
    split_validation,
)
from imgsynth.training.families import get_family
from imgsynth.training.families.base import Family
from imgsynth.training.finetune import InitSource, load_init_source, load_into
from imgsynth.training.visuals import save_grid, save_loss_curve

# ---------------------------------------------------------------- environment


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a (possibly one-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_from_env() -> DistInfo:
    """Read torchrun's ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (a single process without them)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None
    return DistInfo(rank, world, local)


def resolve_device(spec: str, info: DistInfo) -> torch.device:
    """``auto`` -> this rank's GPU if CUDA is available, else MPS, else CPU; others are checked."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", info.local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available() \
                and not info.enabled:
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise DeviceError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec!r} asked for, but CUDA is not available here")
        if device.index is None:
            device = torch.device("cuda", info.local_rank % torch.cuda.device_count())
    elif device.type == "mps" and not (torch.backends.mps.is_available()):
        raise DeviceError("device 'mps' asked for, but MPS is not available here")
    return device


def resolve_precision(spec: str, device: torch.device) -> str:
    """``auto`` -> fp16 (with a GradScaler) on CUDA, fp32 elsewhere; explicit values are checked.

    bf16 autocast on CPU is opt-in (``precision = "bf16"``): it only pays off for large
    convolutions on CPUs with AMX; for the small CPU recipes it was slower than fp32 in every
    measurement (DCGAN 32 px, batch 64, Xeon with AMX-BF16: 520 vs 600 images/s at best,
    ``benchmarks/train_speed.py``).
    """
    if spec == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if spec == "fp16" and device.type == "cpu":
        raise DeviceError("fp16 training needs a GPU; use precision fp32 on CPU")
    if spec == "bf16":
        from imgsynth.engine.device import check_precision

        # on a CPU without AVX512-BF16/AMX, bf16 autocast runs reference kernels 100x slower than fp32
        check_precision("bf16", device, what="bf16 autocast (precision bf16)", fix="use precision fp32")
    return spec


# ---------------------------------------------------------------- reporting


@dataclass
class Progress:
    """One report from the loop to whoever draws it.

    ``kind``: ``start``, ``step`` (after every step), ``log`` (every ``run.log_every`` steps, with
    averaged ``losses`` and ``images_per_s``), ``sample`` / ``checkpoint`` (``path`` written),
    ``info`` (``message``), ``val`` (validation figures in ``losses``), ``best`` (a new best
    checkpoint at ``path``), ``done`` or ``interrupted``.
    """

    kind: str
    step: int
    total: int
    losses: dict[str, float] = field(default_factory=dict)
    images_per_s: float = 0.0
    path: Path | None = None
    message: str = ""


ProgressFn = Callable[[Progress], None]


@dataclass
class TrainResult:
    """What a run did."""

    step: int
    out_dir: Path
    checkpoint: Path | None
    interrupted: bool
    images_per_s: float
    history: list[dict[str, float]]
    precision: str
    device: str
    #: unreadable files skipped so far (named once each in the log)
    skipped: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- helpers


class EMA:
    """Exponential moving average of G's weights (Karras et al. 2018, Sec. 3; Yazici et al. 2019).

    BatchNorm running statistics are averaged with the same decay as the weights, so the EMA
    network's statistics cover the same stretch of training as its weights. Copying the live
    network's statistics (a momentum average over its last few batches) gives the EMA weights
    statistics measured with other weights, which describe only the last ~``1 / momentum``
    batches (``examples/train/spade-mosaics.toml``, held-out mosaics, eval mode: EMA generator
    at step 900 13.7 dB with averaged statistics, 10.2 dB with copied ones; 15.1 vs 14.8 dB at
    step 1500). Other buffers (counters, StyleGAN's tracked mean w, fixed noise) are copied.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._averaged = {
            f"{name}.{stat}" if name else stat
            for name, m in self.model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for stat in ("running_mean", "running_var") if getattr(m, stat, None) is not None
        }

    @torch.no_grad()
    def update(self, model: nn.Module, copy_only: bool = False) -> None:
        """ema = decay * ema + (1 - decay) * model for float parameters and BatchNorm running
        statistics; other buffers are copied. ``copy_only`` copies everything."""
        w = 1.0 if copy_only else 1.0 - self.decay
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.lerp_(p.detach(), w)
        for (name, e), b in zip(self.model.named_buffers(), model.buffers()):
            if name in self._averaged and not copy_only:
                e.lerp_(b, w)
            else:
                e.copy_(b)


def _rng_state(noise: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_initialized() else [],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": random.getstate(),
        "noise": noise.get_state(),
    }


def _set_rng_state(state: dict[str, Any], noise: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])
    noise.set_state(state["noise"])


def _seed_for(seed: int, *parts: int) -> int:
    """A 63-bit seed derived from ``seed`` and ``parts`` (so ranks and streams differ)."""
    lo, hi = np.random.SeedSequence([seed & 0xFFFFFFFF, *parts]).generate_state(2, np.uint32)
    return (int(hi) << 31) ^ int(lo)


def _cast_batch(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, Tensor)}


class _FeatureTap:
    """Collects the outputs of chosen modules during a forward pass (for feature matching)."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.modules, self.outputs = modules, []
        self.handles: list[Any] = []

    def __enter__(self) -> list[Tensor]:
        self.outputs = []
        self.handles = [m.register_forward_hook(lambda _m, _i, o: self.outputs.append(o))
                        for m in self.modules]
        return self.outputs

    def __exit__(self, *exc: Any) -> None:
        for h in self.handles:
            h.remove()


# ---------------------------------------------------------------- the trainer


class Trainer:
    """Trains one recipe. ``Trainer(cfg, resume=True).run()`` continues from the newest checkpoint."""

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        resume: bool = False,
        progress: ProgressFn | None = None,
        dist_info: DistInfo | None = None,
    ) -> None:
        self.cfg = cfg
        self.resume = resume
        self.info = dist_info or dist_from_env()
        self._progress = progress
        self.out_dir = Path(cfg.run.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.family: Family = get_family(cfg.model.family)
        self._stop = False
        self._init_message = ""
        self._fid_note = ""
        self._owns_group = False
        self._tb: Any = None

    # ------------------------------------------------------------ reporting
    def _emit(self, kind: str, **kw: Any) -> None:
        if self._progress is not None and self.info.is_main:
            self._progress(Progress(kind, self.step, self.cfg.run.steps, **kw))

    # ------------------------------------------------------------ setup
    def _setup_dist(self) -> None:
        if not self.info.enabled or dist.is_initialized():
            return
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        dist.init_process_group(backend=backend, rank=self.info.rank, world_size=self.info.world_size)
        self._owns_group = True

    def _setup(self) -> None:
        cfg, info = self.cfg, self.info
        self.device = resolve_device(cfg.run.device, info)
        self.precision = resolve_precision(cfg.run.precision, self.device)
        # the recipe's family options and network arguments, before any data is read
        self.family.options(cfg)
        self.family.check_networks(cfg)
        self._setup_dist()

        train_data, val_data = split_validation(cfg.data, seed=cfg.run.seed)
        self.dataset = SkipUnreadable(train_data)
        self.val_dataset = SkipUnreadable(val_data) if val_data is not None else None
        if val_data is not None and self.family.task == "sample":
            raise ConfigError(f"data.val_path / data.val_items: the {self.family.name!r} family samples from noise; "
                              "it has no targets to validate against (its sample grids use fixed seeds)")
        self.val_history: list[dict[str, float]] = []
        self.best: dict[str, float] = {}
        self._fid_net: nn.Module | None = None
        self._fid_real: Tensor | None = None
        if self.family.task == "sample" and cfg.data.source == "fashion-mnist" and cfg.run.fid_samples > 0:
            from imgsynth.training.fid import cache_path, load_classifier

            self._fid_net = load_classifier()
            if self._fid_net is None:
                self._fid_note = (f"no Fashion-MNIST feature extractor at {cache_path()} (python "
                                  "benchmarks/fid_fashion.py trains it once): no Fréchet distance, sample grids only")
        self.fingerprint = data_fingerprint(self.dataset)
        self.skipped: list[str] = []
        if getattr(self.dataset, "kind", "images") != self.family.data_kind:
            raise ConfigError(
                f"model.family {self.family.name!r} trains on {self.family.data_kind} data, "
                f"but data.source {cfg.data.source!r} gives {self.dataset.kind}"
            )
        self.channels = int(self.dataset.channels)
        sampler = ResumableBatchSampler(
            len(self.dataset), cfg.data.batch_size, rank=info.rank, world_size=info.world_size,
            shuffle=cfg.data.shuffle, seed=cfg.run.seed,
        )
        # the loader draws its worker base seed from its own generator, not from the global RNG
        self.stream = BatchStream(
            self.dataset, sampler, workers=cfg.data.workers,
            generator=torch.Generator().manual_seed(_seed_for(cfg.run.seed, 3, info.rank)),
        )

        # identical initial weights on every rank; rank 0's are broadcast below anyway
        torch.manual_seed(cfg.run.seed)
        # numpy's and Python's global generators too (checkpointed with the others), so that any
        # use of them (a library, a future augmentation) stays reproducible and resumes exactly
        np.random.seed(_seed_for(cfg.run.seed, 4, info.rank) & 0xFFFFFFFF)
        random.seed(_seed_for(cfg.run.seed, 5, info.rank))
        self.options = self.family.options(cfg)
        source = self._init_source()
        net_cfg = cfg
        if source is not None:
            # empty [model.generator] / [model.discriminator] tables take the source's configs
            model = dataclasses.replace(
                cfg.model, generator=cfg.model.generator or dict(source.g_config),
                discriminator=cfg.model.discriminator or dict(source.d_config or {}))
            net_cfg = dataclasses.replace(cfg, model=model)
        self.g_config = self.family.generator_config(net_cfg, self.dataset)
        self.d_config = self.family.discriminator_config(net_cfg, self.dataset)
        self.G = self.family.build_generator(self.g_config)
        self.D = self.family.build_discriminator(self.d_config)
        self.family.init_weights(self.G)
        self.family.init_weights(self.D)
        if source is not None:
            load_into(self.G, source.g_weights, source.what, "generator")
            loaded = "G"
            if source.d_weights is not None:
                load_into(self.D, source.d_weights, source.what, "discriminator")
                loaded = "G and D"
            self._init_message = f"{loaded} initialised from {source.what}"
        self.G.to(self.device).train()
        self.D.to(self.device).train()
        self._check_shapes()

        opt = cfg.optim
        betas = (opt.betas[0], opt.betas[1])
        if opt.optimizer == "adam":
            self.opt_g = torch.optim.Adam(self.G.parameters(), opt.g_lr, betas=betas, weight_decay=opt.weight_decay)
            self.opt_d = torch.optim.Adam(self.D.parameters(), opt.d_lr, betas=betas, weight_decay=opt.weight_decay)
        else:
            self.opt_g = torch.optim.RMSprop(self.G.parameters(), opt.g_lr, weight_decay=opt.weight_decay)
            self.opt_d = torch.optim.RMSprop(self.D.parameters(), opt.d_lr, weight_decay=opt.weight_decay)
        fp16 = self.precision == "fp16"
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        self.ema = EMA(self.G, opt.ema_decay) if opt.ema_decay > 0 else None

        self.noise = torch.Generator().manual_seed(_seed_for(cfg.run.seed, 1, info.rank))
        self.step = 0
        self.history: list[dict[str, float]] = []
        self._logs: dict[str, Tensor] = {}
        self._window_steps = 0
        self.grid_seeds = list(range(cfg.run.grid_samples))
        self._setup_augment()
        self.fm_layers = self.family.feature_layers(self.D) if cfg.loss.feature_matching > 0 else []
        if cfg.loss.feature_matching > 0 and not self.fm_layers:
            raise ConfigError("loss.feature_matching needs a discriminator with activation layers")

        if self.resume:
            self._load_latest()
        elif latest_checkpoint(self.ckpt_dir) is not None:
            raise ConfigError(
                f"{str(self.out_dir)!r} already holds checkpoints; pass --resume to continue that run, "
                "or choose another run.out_dir"
            )
        if info.enabled:
            self._broadcast_from_rank0()

    def _init_source(self) -> InitSource | None:
        """The weights ``[model] init_from`` names (None without it)."""
        source = self.cfg.model.init_from
        if not source:
            return None
        if self.options.get("init_from"):
            raise ConfigError("give the starting weights once: model.init_from (model.options.init_from is "
                              "the pconv family's older spelling of it)")
        return load_init_source(source, self.family.arch, self.family.task)

    def _setup_augment(self) -> None:
        """ADA (``[augment]``): the pipeline D's inputs go through, and p's controller when adaptive."""
        aug = self.cfg.augment
        adaptive = aug.ada == "on" or (aug.ada == "auto" and self.family.ada_default)
        self.augment: AugmentPipe | None = None
        self.ada: AdaptiveP | None = None
        if not adaptive and aug.p <= 0:
            return
        if not self.family.adversarial:
            raise ConfigError(f"the {self.family.name!r} family has no discriminator to augment for; "
                              "set augment.ada = \"off\" and augment.p = 0")
        self.augment = AugmentPipe(aug.pipe, aug.p)
        if adaptive:
            centre = 0.5 if self.cfg.loss.gan == "lsgan" else 0.0
            self.ada = AdaptiveP(aug.target, aug.interval, aug.kimg, centre=centre, p=aug.p)

    def _augment(self, x: Tensor, color_channels: int, params: dict[str, Tensor] | None = None) -> Tensor:
        """What D sees of ``x``: augmented with ``params`` (drawn from the run's noise generator if None)."""
        if self.augment is None or self.augment.p <= 0:
            return x
        if params is None:
            params = self.augment.draw(x.shape[0], x.shape[-1], self.noise)
        return self.augment.apply(x, params, color_channels)

    def _ada_reduce(self, total: float, count: int) -> tuple[float, int]:
        if not self.info.enabled:
            return total, count
        t = torch.tensor([total, float(count)], dtype=torch.float64,
                         device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return float(t[0]), int(t[1])

    def _check_shapes(self) -> None:
        r = self.cfg.data.resolution
        want = (self.channels, r, r)
        with torch.no_grad():
            self.G.eval()
            inputs = self.family.grid_inputs(self.G, [0, 1], self.dataset)
            inputs = tuple(x.to(self.device) for x in inputs)
            # families whose G is not one call (video rollouts) say how to run it for this check
            forward = getattr(self.family, "check_forward", None)
            out = forward(self.G, inputs) if forward is not None else self.G(*inputs)
            self.G.train()
        if tuple(out.shape[1:]) != want:
            raise ConfigError(
                f"the generator makes {tuple(out.shape[1:])} images but the data is {want} "
                f"(channels, height, width); adjust [model.generator] or data.resolution/channels"
            )

    @torch.no_grad()
    def _broadcast_from_rank0(self) -> None:
        for module in (self.G, self.D) + ((self.ema.model,) if self.ema else ()):
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, 0)

    @torch.no_grad()
    def _broadcast_buffers(self) -> None:
        for module in (self.G, self.D):
            for b in module.buffers():
                dist.broadcast(b, 0)

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly (this rank's RNG states only)."""
        return {
            "step": self.step,
            "family": self.family.name,
            "arch": self.family.arch,
            "task": self.family.task,
            "config": self.cfg.to_dict(),
            "generator_config": self.g_config,
            "discriminator_config": self.d_config,
            "channels": self.channels,
            "dataset": dataset_name(self.cfg.data),
            "world_size": self.info.world_size,
            "precision": self.precision,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.ema.model.state_dict() if self.ema else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "data": self.stream.state_dict(),
            "history": self.history,
            "family_state": self.family.state_dict(),
            "data_files": {**self.fingerprint, "skipped": list(self.skipped)},
            "augment": self.ada.state_dict() if self.ada is not None else None,
            "validation": {"history": self.val_history, "best": self.best},
            "log_window": {"steps": self._window_steps,
                           "sums": {k: float(v) for k, v in self._logs.items()}},
        }

    def _gather_rng(self) -> list[dict[str, Any]]:
        mine = _rng_state(self.noise)
        if not self.info.enabled:
            return [mine]
        everyone: list[Any] = [None] * self.info.world_size
        dist.all_gather_object(everyone, mine)
        return everyone

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0 writes; every rank must call this)."""
        rngs = self._gather_rng()
        self._saved_step = self.step
        if not self.info.is_main:
            return None
        state = self.state_dict()
        state["rng"] = rngs
        path = save_checkpoint(state, self.ckpt_dir, self.step, dumps_config(self.cfg))
        prune_checkpoints(self.ckpt_dir, self.cfg.run.keep_checkpoints)
        self._last_ckpt = path
        return path

    def _load_latest(self) -> None:
        path = latest_checkpoint(self.ckpt_dir)
        if path is None:
            self._emit("info", message=f"nothing to resume in {self.ckpt_dir}; starting at step 0")
            return
        state = load_checkpoint(path)
        self._check_compatible(state)
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        if self.ema is not None:
            if state["G_ema"] is not None:
                self.ema.model.load_state_dict(state["G_ema"])
            else:
                self.ema.update(self.G, copy_only=True)
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        for scaler, saved in ((self.scaler_g, state["scaler_g"]), (self.scaler_d, state["scaler_d"])):
            if saved:  # empty when the run was saved without fp16: the scaler starts fresh
                scaler.load_state_dict(saved)
        self.stream.load_state_dict(state["data"])
        self.family.load_state_dict(state.get("family_state") or {})
        self._report_data_change(state.get("data_files"))
        val = state.get("validation") or {}
        self.val_history, self.best = list(val.get("history", [])), dict(val.get("best", {}))
        if self.ada is not None and state.get("augment"):
            self.ada.load_state_dict(state["augment"])
            self.augment.p = self.ada.p  # type: ignore[union-attr]
        self.step = int(state["step"])
        self.history = list(state["history"])
        window = state["log_window"]
        self._window_steps = int(window["steps"])
        self._logs = {k: torch.tensor(v, dtype=torch.float32, device=self.device)
                      for k, v in window["sums"].items()}
        rngs = state["rng"]
        if len(rngs) == self.info.world_size:
            _set_rng_state(rngs[self.info.rank], self.noise)
        else:
            self._emit("info", message=(
                f"checkpoint written by {len(rngs)} process(es), resuming with {self.info.world_size}: "
                "data order and latents will differ from an uninterrupted run"))
        self._last_ckpt = path
        self._saved_step = self.step
        self._emit("info", message=f"resumed from {path} at step {self.step}")

    def _report_data_change(self, saved: dict[str, Any] | None) -> None:
        """Say on resume when the training files differ from the checkpoint's (and what was skipped)."""
        if not saved:
            return
        self.skipped = list(saved.get("skipped", []))
        now = self.fingerprint
        if saved.get("items") != now["items"] or saved.get("digest") != now["digest"]:
            what = (f"{saved.get('items')} item(s) then, {now['items']} now" if saved.get("items") != now["items"]
                    else "same number of items, but files were replaced or modified")
            self._emit("info", message=f"the data changed since the checkpoint ({what}); "
                                       "continuing with the data as it is now")
        if self.skipped:
            self._emit("info", message=f"{len(self.skipped)} unreadable file(s) skipped before the checkpoint")

    def _note_skipped(self, batch: dict[str, Tensor]) -> None:
        """Name each unreadable item the first time a batch skipped it (and count them)."""
        skipped = batch.pop("skipped", None)
        if skipped is None:
            return
        for index in sorted({int(i) for i in skipped.tolist() if int(i) >= 0}):
            name = self.dataset.item_name(index)
            if name not in self.skipped:
                self.skipped.append(name)
                self._emit("info", message=f"skipped unreadable {name} ({len(self.skipped)} so far)")

    def _check_compatible(self, state: dict[str, Any]) -> None:
        saved = state["config"]
        try:  # a setting added to the recipe schema after the checkpoint was written takes its default
            saved = from_dict(saved).to_dict()
        except ConfigError:
            pass  # a setting since removed, or a value no longer accepted: compare as written
        now = self.cfg.to_dict()
        if saved["model"] != now["model"]:
            raise ConfigError(
                "the recipe's [model] differs from the checkpoint's; resume with the same model settings"
            )
        ignore = {"workers", "path", "path_b", "path_inst", "name", "license"}
        diff = sorted(k for k in now["data"] if k not in ignore and now["data"][k] != saved["data"].get(k))
        if diff:
            raise ConfigError(
                f"data setting(s) {', '.join('data.' + k for k in diff)} changed since the checkpoint; "
                "resume with the same values"
            )

    # ------------------------------------------------------------ steps
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _sync_grads(self, module: nn.Module) -> None:
        """Average gradients over ranks (one flat all-reduce, as DDP's reducer does per bucket)."""
        if not self.info.enabled:
            return
        params = [p for p in module.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        flat /= self.info.world_size
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n

    def _apply(self, loss: Tensor, module: nn.Module, opt: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler) -> None:
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        self._sync_grads(module)
        if self.cfg.optim.grad_clip > 0:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(module.parameters(), self.cfg.optim.grad_clip)
        scaler.step(opt)
        scaler.update()

    def _d_step(self, batch: dict[str, Tensor], fake: Tensor, d_iter: int, logs: dict[str, Tensor]) -> None:
        cfg, fam = self.cfg.loss, self.family
        self.D.requires_grad_(True)
        x_real = fam.d_input(batch, fam.real(batch))
        x_fake = fam.d_input(batch, fake.detach())
        use_r1 = cfg.r1_gamma > 0 and d_iter % cfg.r1_every == 0
        if use_r1:
            x_real = x_real.detach().requires_grad_(True)
        scale = self.scaler_d.get_scale() if self.scaler_d.is_enabled() else None
        cc = fake.shape[1]
        with self._autocast():
            real_out = fam.discriminate(self.D, self._augment(x_real, cc))
            fake_out = fam.discriminate(self.D, self._augment(x_fake, cc))
        if self.ada is not None:
            self.ada.observe(real_out)
        loss = L.d_loss(cfg.gan, real_out, fake_out)
        logs["d"] = logs.get("d", 0) + loss.detach()
        if cfg.gan == "wgan-gp" and cfg.gp_weight > 0:
            def critic(x: Tensor) -> Any:
                with self._autocast():
                    return fam.discriminate(self.D, self._augment(x, cc))
            gp = L.gradient_penalty(critic, x_real.detach(), x_fake, self.noise, scale)
            logs["gp"] = logs.get("gp", 0) + gp.detach()
            loss = loss + cfg.gp_weight * gp
        for name, extra in fam.d_regularizers(real_out, self.options).items():
            logs[name] = logs.get(name, 0) + extra.detach()
            loss = loss + extra
        if use_r1:
            # lazy regularisation: every r1_every steps, weighted by r1_every (Karras et al. 2020, Sec. 3.1)
            r1 = L.r1_penalty(real_out, x_real, scale)
            logs["r1"] = logs.get("r1", 0) + r1.detach()
            loss = loss + (cfg.r1_gamma / 2) * cfg.r1_every * r1
        self._apply(loss, self.D, self.opt_d, self.scaler_d)

    def _g_step(self, batch: dict[str, Tensor], fake: Tensor, logs: dict[str, Tensor]) -> None:
        cfg, fam = self.cfg.loss, self.family
        self.D.requires_grad_(False)
        x_fake = fam.d_input(batch, fake)
        use_fm = cfg.feature_matching > 0
        cc = fake.shape[1]
        # real and fake features are compared under the same augmentation
        params = (self.augment.draw(x_fake.shape[0], x_fake.shape[-1], self.noise)
                  if self.augment is not None and self.augment.p > 0 else None)
        with self._autocast():
            if use_fm:
                with _FeatureTap(self.fm_layers) as fake_feats:
                    fake_out = fam.discriminate(self.D, self._augment(x_fake, cc, params))
                with torch.no_grad(), _FeatureTap(self.fm_layers) as real_feats:
                    fam.discriminate(self.D, self._augment(fam.d_input(batch, fam.real(batch)), cc, params))
            else:
                fake_out = fam.discriminate(self.D, self._augment(x_fake, cc, params))
        loss = L.g_loss(cfg.gan, fake_out)
        logs["g"] = logs.get("g", 0) + loss.detach()  # unweighted, as D's loss is
        weight = fam.adversarial_weight(self.options)
        if weight != 1.0:
            loss = weight * loss
        if use_fm:
            fm = L.feature_matching(real_feats, fake_feats, fam.feature_matching_mode)
            logs["fm"] = logs.get("fm", 0) + fm.detach()
            loss = loss + cfg.feature_matching * fm
        with self._autocast():
            regs = fam.g_regularizers(self.G, fake.shape[0], self.noise, self.step, self.options)
        for name, extra in {**fam.extra_g_losses(self.cfg, batch, fake), **regs}.items():
            logs[name] = logs.get(name, 0) + extra.detach()
            loss = loss + extra
        self._apply(loss, self.G, self.opt_g, self.scaler_g)
        self.D.requires_grad_(True)

    def _generate(self, batch: dict[str, Tensor], grad: bool) -> Tensor:
        inputs = self.family.generator_inputs(self.G, batch, self.noise)
        inputs = tuple(x.to(self.device) if isinstance(x, Tensor) else x for x in inputs)
        with torch.set_grad_enabled(grad), self._autocast():
            return self.family.generate(self.G, inputs, self.noise, self.options)

    def lr_factor(self, step: int) -> float:
        """The learning-rate multiplier of ``step`` (0-based) under ``optim.lr_schedule``."""
        opt, total = self.cfg.optim, self.cfg.run.steps
        if opt.lr_schedule == "constant" or step < opt.lr_decay_start:
            return 1.0
        progress = (step - opt.lr_decay_start) / max(1, total - opt.lr_decay_start)
        if opt.lr_schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    def train_step(self, batches: list[dict[str, Tensor]], logs: dict[str, Tensor]) -> None:
        """One step: a D update per batch, then a G update (on the last batch's fakes)."""
        factor = self.lr_factor(self.step)
        for opt, base in ((self.opt_g, self.cfg.optim.g_lr), (self.opt_d, self.cfg.optim.d_lr)):
            for group in opt.param_groups:
                group["lr"] = base * factor
        if self.cfg.optim.lr_schedule != "constant":
            logs["lr"] = logs.get("lr", 0) + torch.tensor(self.cfg.optim.g_lr * factor)
        self.family.begin_step(self.step, self.options)
        n = len(batches)
        fake = None
        for i, batch in enumerate(batches):
            last = i == n - 1
            fake = self._generate(batch, grad=last)
            self._d_step(batch, fake, self.step * n + i, logs)
        assert fake is not None
        self._g_step(batches[-1], fake, logs)
        if self.info.enabled:
            # BatchNorm statistics saw only this rank's batch: take rank 0's everywhere
            self._broadcast_buffers()
        if self.ema is not None:
            self.ema.update(self.G, copy_only=self.step < self.cfg.optim.ema_start)
        if self.ada is not None:
            images = self.cfg.data.batch_size * n * self.info.world_size
            self.ada.update(images, self._ada_reduce)
            self.augment.p = self.ada.p  # type: ignore[union-attr]
        if self.augment is not None:
            logs["ada_p"] = logs.get("ada_p", 0) + torch.tensor(self.augment.p)
            if self.ada is not None and self.ada.steps >= self.ada.interval:  # r_t exists after the first adjustment
                logs["ada_rt"] = logs.get("ada_rt", 0) + torch.tensor(self.ada.last_rt)

    # ------------------------------------------------------------ outputs
    @torch.no_grad()
    def validate(self) -> dict[str, float] | None:
        """PSNR (dB), SSIM and L1 of G (its EMA if on) on the held-out items, in [0, 1] pixel units.

        Deterministic: the same items, fitted without crops or flips, and holes / latents from a
        fixed-seed generator. None when the family has no target to compare with or no held-out data.
        """
        if self._fid_net is not None:
            return self._frechet()
        if self.val_dataset is None:
            return None
        from imgsynth.training.losses import ssim_loss

        G = self.ema.model if self.ema is not None else self.G
        was_training = G.training
        G.eval()
        generator = torch.Generator().manual_seed(_seed_for(self.cfg.run.seed, 6))
        n, sums = 0, {"psnr": 0.0, "ssim": 0.0, "l1": 0.0}
        size = self.cfg.data.batch_size
        try:
            for start in range(0, len(self.val_dataset), size):
                items = [self.val_dataset[(i, 0)] for i in range(start, min(start + size, len(self.val_dataset)))]
                batch = {k: torch.stack([it[k] for it in items]) for k in items[0] if k != "skipped"}
                batch = _cast_batch(batch, self.device)
                with self._autocast():
                    pair = self.family.validation_pair(G, batch, generator)
                if pair is None:
                    return None
                out, target = ((x.float().clamp(-1, 1) + 1) / 2 for x in pair)
                mse = (out - target).square().flatten(1).mean(1).clamp_min(1e-10)
                sums["psnr"] += float((10 * torch.log10(1.0 / mse)).sum())
                sums["l1"] += float((out - target).abs().flatten(1).mean(1).sum())
                rgb = (lambda x: x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3])
                if min(out.shape[-2:]) >= 11:
                    sums["ssim"] += float(1 - ssim_loss(rgb(out), rgb(target))) * out.shape[0]
                n += out.shape[0]
        finally:
            G.train(was_training)
        record = {"step": self.step, **{f"val_{k}": v / max(n, 1) for k, v in sums.items()}}
        if self.cfg.data.resolution < 11:  # smaller than SSIM's window
            record.pop("val_ssim")
        return record

    @torch.no_grad()
    def _frechet(self) -> dict[str, float] | None:
        """Fréchet distance of ``run.fid_samples`` samples of G (its EMA) from fixed seeds to the test set."""
        from imgsynth.errors import InputError
        from imgsynth.training.fid import features, frechet_distance, test_set_features, to_classifier_input

        n = self.cfg.run.fid_samples
        net = self._fid_net
        assert net is not None
        if self._fid_real is None:
            try:
                self._fid_real = test_set_features(net, self.cfg.data.path, n)
            except InputError as exc:
                self._emit("info", message=f"no Fréchet distance: {exc}")
                self._fid_net = None
                return None
        G = self.ema.model if self.ema is not None else self.G
        was_training = G.training
        G.eval()
        self.family.begin_step(max(self.step - 1, 0), self.options)
        seeds = list(range(10_000, 10_000 + n))  # not the grid's seeds
        parts = []
        try:
            for i in range(0, n, 250):
                chunk = seeds[i : i + 250]
                inputs = tuple(x.to(self.device) for x in self.family.grid_inputs(G, chunk, self.dataset))
                with self._autocast():
                    images, _ = self.family.grid_images(G, inputs, chunk, self.dataset)
                parts.append(to_classifier_input(images.float().cpu()))
        finally:
            G.train(was_training)
        fd = frechet_distance(features(net, torch.cat(parts)), self._fid_real)
        return {"step": self.step, "val_fd": fd}

    def _validate_and_keep_best(self) -> None:
        record = self.validate()
        if record is None:
            return
        self.val_history.append(record)
        self._emit("val", losses={k: v for k, v in record.items() if k != "step"})
        if self.info.is_main:
            save_loss_curve(self.val_history, self.out_dir / "validation.png")
        if self._tb is not None:
            for k, v in record.items():
                if k != "step":
                    self._tb.add_scalar(f"val/{k[4:]}", v, self.step)
        key = "val_fd" if "val_fd" in record else "val_psnr"
        lower = key == "val_fd"
        if not self.best or (record[key] < self.best[key] if lower else record[key] > self.best[key]):
            self.best = dict(record)
            rngs = self._gather_rng()
            if self.info.is_main:
                state = self.state_dict()
                state["rng"] = rngs
                path = save_checkpoint(state, self.out_dir / "best", self.step, dumps_config(self.cfg))
                prune_checkpoints(self.out_dir / "best", 1)
                self._emit("best", path=path, losses={key: record[key]})

    @torch.no_grad()
    def sample_grid(self) -> Path | None:
        """Write ``samples/step-NNNNNNNN.png`` from the fixed grid seeds (EMA weights if on)."""
        if not self.info.is_main or not self.grid_seeds:
            return None
        G = self.ema.model if self.ema is not None else self.G
        was_training = G.training
        G.eval()
        self.family.begin_step(max(self.step - 1, 0), self.options)  # the state the last step trained
        seeds = self.grid_seeds
        images, columns = [], 0
        for i in range(0, len(seeds), 64):  # bounded memory for big grids
            chunk = seeds[i : i + 64]
            inputs = tuple(x.to(self.device) for x in self.family.grid_inputs(G, chunk, self.dataset))
            part, columns = self.family.grid_images(G, inputs, chunk, self.dataset)
            images.append(part.float())
        G.train(was_training)
        return save_grid(torch.cat(images), self.out_dir / "samples" / f"step-{self.step:08d}.png", columns)

    def _open_tensorboard(self) -> None:
        mode = self.cfg.run.tensorboard
        if mode == "off" or not self.info.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            if mode == "on":
                raise ConfigError("run.tensorboard = 'on' needs the tensorboard package (pip install tensorboard)") from None
            return
        self._tb = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"), purge_step=self.step)

    # ------------------------------------------------------------ signals
    @contextlib.contextmanager
    def _sigint_stops(self) -> Iterator[None]:
        """First Ctrl-C asks the loop to stop after this step; a second one interrupts at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum: int, frame: Any) -> None:
            if self._stop:
                raise KeyboardInterrupt
            self._stop = True

        signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def request_stop(self) -> None:
        """Stop after the current step and write a checkpoint (what Ctrl-C does)."""
        self._stop = True

    def _should_stop(self) -> bool:
        if not self.info.enabled:
            return self._stop
        flag = torch.tensor([1.0 if self._stop else 0.0],
                            device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    # ------------------------------------------------------------ the run
    def run(self) -> TrainResult:
        """Train up to ``run.steps`` steps (from the newest checkpoint with ``resume``)."""
        self.step = 0
        self._last_ckpt: Path | None = None
        self._saved_step = -1
        try:
            with self._sigint_stops():
                return self._run()
        finally:
            if self._tb is not None:
                self._tb.close()
            if self._owns_group and dist.is_initialized():
                dist.destroy_process_group()

    def _run(self) -> TrainResult:
        cfg = self.cfg
        self._setup()
        if self.info.is_main:
            try:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                (self.out_dir / "config.toml").write_text(dumps_config(cfg), encoding="utf-8")
            except OSError as exc:
                raise OutputError(f"cannot write to run.out_dir {str(self.out_dir)!r}: {exc.strerror or exc}") from None
        self._open_tensorboard()
        self._emit("start", message=(
            f"{self.family.name} on {dataset_name(cfg.data)} ({len(self.dataset)} items), "
            f"{self.device} {self.precision}, {self.info.world_size} process(es)"))
        if self._init_message and self.step == 0:
            self._emit("info", message=self._init_message)
        if self._fid_note:
            self._emit("info", message=self._fid_note)
        per_step = cfg.data.batch_size * cfg.loss.d_steps * self.info.world_size
        window_start = time.perf_counter()
        overall_start, overall_steps = window_start, 0
        ips = 0.0
        interrupted = False
        while self.step < cfg.run.steps:
            if self._should_stop():
                interrupted = True
                break
            data_state = self.stream.state_dict()
            try:
                batches = [self.stream.next() for _ in range(cfg.loss.d_steps)]
            except Exception:
                if not self._stop:
                    raise
                # Ctrl-C reached a DataLoader worker first: nothing of this step was applied
                self.stream.load_state_dict(data_state)
                interrupted = True
                break
            for batch in batches:
                self._note_skipped(batch)
            batches = [_cast_batch(b, self.device) for b in batches]
            self.train_step(batches, self._logs)
            self.step += 1
            self._window_steps += 1
            overall_steps += 1
            self._emit("step")
            last = self.step == cfg.run.steps
            if self.step % cfg.run.log_every == 0 or last:
                elapsed = time.perf_counter() - window_start
                ips = self._window_steps * per_step / max(elapsed, 1e-9)
                order = sorted(self._logs, key=lambda k: (k not in ("d", "g"), k))  # d, g, then the rest
                record = {k: float(self._logs[k]) / self._window_steps for k in order}
                if self.info.enabled:
                    # the loss curve shows the mean over ranks
                    t = torch.tensor([record[k] for k in sorted(record)], dtype=torch.float64,
                                     device=self.device if self.device.type == "cuda" else "cpu")
                    dist.all_reduce(t)
                    record = {k: float(v) / self.info.world_size for k, v in zip(sorted(record), t)}
                self.history.append({"step": self.step, **record})
                self._emit("log", losses=record, images_per_s=ips)
                if self._tb is not None:
                    for k, v in record.items():
                        self._tb.add_scalar(f"loss/{k}", v, self.step)
                    self._tb.add_scalar("speed/images_per_s", ips, self.step)
                self._logs, self._window_steps, window_start = {}, 0, time.perf_counter()
            if self.step % cfg.run.sample_every == 0 or last:
                path = self.sample_grid()
                if path is not None:
                    self._emit("sample", path=path)
                    self._write_curve()
                    if self._tb is not None:
                        from PIL import Image

                        with Image.open(path) as im:
                            grid = np.array(im)
                        self._tb.add_image("samples", grid, self.step,
                                           dataformats="HW" if grid.ndim == 2 else "HWC")
            if (self.val_dataset is not None or self._fid_net is not None) and (
                    self.step % (cfg.run.val_every or cfg.run.checkpoint_every) == 0 or last):
                self._validate_and_keep_best()
            if self.step % cfg.run.checkpoint_every == 0 or last:
                path = self.save()
                if path is not None:
                    self._emit("checkpoint", path=path)
        else:
            if self._saved_step != self.step:
                # resumed at (or past) the last step: make sure the final state is on disk
                path = self.save()
                if path is not None:
                    self._emit("checkpoint", path=path)
        if interrupted and self._saved_step != self.step:
            path = self.save()
            if path is not None:
                self._emit("checkpoint", path=path)
            self._write_curve()
        total = time.perf_counter() - overall_start
        mean_ips = overall_steps * per_step / total if overall_steps and total > 0 else 0.0
        self._emit("interrupted" if interrupted else "done", images_per_s=mean_ips,
                   path=self._last_ckpt)
        return TrainResult(
            step=self.step, out_dir=self.out_dir, checkpoint=self._last_ckpt,
            interrupted=interrupted, images_per_s=mean_ips, history=list(self.history),
            precision=self.precision, device=str(self.device), skipped=list(self.skipped),
        )

    def _write_curve(self) -> None:
        if self.info.is_main:
            save_loss_curve(self.history, self.out_dir / "losses.png")


def train(cfg: TrainConfig, *, resume: bool = False, progress: ProgressFn | None = None) -> TrainResult:
    """Run a recipe to its last step (or until Ctrl-C); see :class:`Trainer`."""
    return Trainer(cfg, resume=resume, progress=progress).run()
