"""The ``vid2vid`` training family: a sequential video generator trained on clips with known flow.

Wang et al., "Video-to-Video Synthesis", NeurIPS 2018 (Sec. 3.2 and 4): the generator
(:class:`imgsynth.models.vid2vid.Vid2VidGenerator`) makes frame t from the conditioning inputs of
frames t-n+1..t and its own previous n-1 outputs, and is trained with

* an image discriminator D_I on (condition, frame) pairs: a conditional PatchGAN per frame;
* a temporal discriminator D_V on K consecutive frames and the K-1 ground-truth flows between
  them (the same flows for real and generated sequences, as the paper feeds D_V the real flow);
* a flow loss ``flow_l1 * |w - w~|_1`` against the known flow and a warp loss
  ``warp_l1 * |warp(x_{t-1}, w) - x_t|_1`` where the true flow is valid (not occluded), and a
  weight term ``weight_l1 * mean(m * valid)`` that makes the occlusion mask m (1 = hallucinate)
  prefer the warp wherever the previous frame is visible (the paper's mask regulariser);
* ``loss.l1`` times the L1 distance of each generated frame to the real one.

A training clip starts from n-1 *real* frames (the paper trains from real previous frames; at test
time the first frames come from a single-image generator, zeros or real frames, the ``first_frame``
policy of ``translate-video``). The clip length grows (paper Sec. 4, "we gradually increase the
sequence length"): ``frames_start`` frames at step 0, one more every ``grow_every`` steps, up to
``data.frames``. Gradients flow through the whole rollout. Data: ``data.source = "clips"``
(:mod:`imgsynth.training.clips`), batches ``{"a", "b", "flow", "valid"}`` with a time axis.

Options for small budgets: ``history = "first_frame"`` starts every training clip from the
single-image generator's frames (the ``first_frame_model`` card) instead of real ones, as
``translate-video --first-frame single`` does at test time, so G learns to blend what it will
really be given; with ``[model.generator] hallucination = "first_frame"`` that card's generator is
also G's hallucination branch. Either way the card's weights are put inside G by
:meth:`Vid2VidFamily.init_weights` and stay frozen (no gradient, eval mode). With the generator's
``flow_search`` the flow head's correction starts at zero.

Within the shared loop a "fake" is the rollout's generated frames with the flow and the mask as
extra channels, (N, T', 3 + 2 + 1, H, W) for frames n-1 .. T-1; D sees only the image channels.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from imgsynth.errors import ConfigError
from imgsynth.training.config import TrainConfig
from imgsynth.training.families import register_family
from imgsynth.training.families.base import Family, init_normal


class VideoDiscriminator(nn.Module):
    """vid2vid's two discriminators in one module: D_I per frame and D_V on K-frame windows.

    Input (N, T, C + 3 + 2, H, W): per frame the condition, the image and the flow into it from the
    frame before (ground truth). The first ``temporal_frames - 1`` frames are context (real frames
    the generator was given): D_I scores the frames after them, D_V every window of K frames.
    Returns ``[D_I logits, D_V logits]`` (a list of heads, averaged by the GAN losses).
    """

    def __init__(self, input_nc: int, image_nc: int = 3, temporal_frames: int = 3, ndf: int = 32,
                 n_layers: int = 3, norm: str = "instance", temporal_ndf: int = 32) -> None:
        super().__init__()
        from imgsynth.layers.discriminators import NLayerDiscriminator

        if temporal_frames < 2:
            raise ValueError(f"temporal_frames must be >= 2, got {temporal_frames}")
        self.input_nc, self.image_nc, self.k = input_nc, image_nc, temporal_frames
        self.image = NLayerDiscriminator(input_nc + image_nc, ndf, n_layers, norm)
        self.temporal = NLayerDiscriminator(temporal_frames * image_nc + (temporal_frames - 1) * 2,
                                            temporal_ndf, n_layers, norm)

    def forward(self, x: Tensor) -> list[Tensor]:
        n, t = x.shape[:2]
        c, i = self.input_nc, self.image_nc
        k = self.k
        frames = x[:, k - 1 :, : c + i].flatten(0, 1)
        d_image = self.image(frames)
        imgs, flows = x[:, :, c : c + i], x[:, :, c + i : c + i + 2]
        windows = []
        for s in range(t - k + 1):
            windows.append(torch.cat([imgs[:, s : s + k].flatten(1, 2), flows[:, s + 1 : s + k].flatten(1, 2)], 1))
        d_temporal = self.temporal(torch.cat(windows, 0))
        return [d_image, d_temporal]


@register_family("vid2vid")
class Vid2VidFamily(Family):
    """vid2vid (Wang et al. 2018) on clips with known flow; see the module docstring."""

    name = "vid2vid"
    arch = "vid2vid"
    task = "translate-video"
    data_kind = "clips"
    option_defaults = {
        "frames_start": 4,  # frames of a training clip at step 0 (n_frames - 1 of them real history)
        "grow_every": 2000,  # steps per extra frame, up to data.frames
        "flow_l1": 10.0,
        "warp_l1": 10.0,
        "weight_l1": 1.0,
        "align_corners": True,  # the warp's grid_sample flag (pixel-exact: zero flow copies)
        "first_frame_model": "",  # card id of the single-image generator for the first frames
        "history": "real",  # the first n-1 frames of a training clip: "real" frames or "first_frame" outputs
    }

    def __init__(self) -> None:
        self.frames = 0  # clip length of the current step (set by begin_step)
        self.align_corners = True
        self.history = "real"
        self._first_weights: dict[str, Tensor] | None = None  # the single-image generator's card weights

    def discriminator_class(self) -> Any:
        return VideoDiscriminator

    def generator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        out = {"label_nc": 0, "use_instance": False, "input_nc": int(dataset.channels_a),
               "output_nc": int(dataset.channels_b)}
        return {**out, **self._first_frame_kwargs(cfg)}

    def _first_frame_kwargs(self, cfg: TrainConfig) -> dict[str, Any]:
        """With ``hallucination = "first_frame"`` or ``history = "first_frame"``: the single-image
        generator of the card ``first_frame_model`` goes inside G (its arch and config; its weights
        are loaded by :meth:`init_weights` and stay frozen)."""
        opts = self.options(cfg)
        wanted = cfg.model.generator.get("hallucination", "decoder") == "first_frame" or opts["history"] == "first_frame"
        if not wanted:
            return {}
        card = str(opts["first_frame_model"])
        if not card:
            raise ConfigError("model.options.first_frame_model must name the single-image generator's card when "
                              "model.generator.hallucination or model.options.history is 'first_frame'")
        from imgsynth.engine.loading import load_model
        from imgsynth.errors import ImgsynthError

        try:
            loaded = load_model("translate", model=card, offline=True)
        except ImgsynthError as exc:
            raise ConfigError(f"model.options.first_frame_model: {str(exc).splitlines()[0]}") from None
        self._first_weights = {k: v.float() if v.is_floating_point() else v
                               for k, v in loaded.model.state_dict().items()}
        return {"first_frame_arch": loaded.arch, "first_frame_config": dict(loaded.config)}

    def discriminator_data_kwargs(self, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
        n = int(cfg.model.generator.get("n_frames", 3))
        return {"input_nc": int(dataset.channels_a), "image_nc": int(dataset.channels_b), "temporal_frames": n}

    def init_weights(self, module: nn.Module) -> None:
        """N(0, 0.02) (pix2pix / vid2vid ``init_type='normal'``); with ``flow_search`` the flow head's
        correction starts at zero, so the first flow is the block-matching estimate itself."""
        init_normal(module)
        first = getattr(module, "first_frame", None)
        if first is not None and self._first_weights is not None:
            first.load_state_dict(self._first_weights)
            first.requires_grad_(False)
        for scale in getattr(module, "scales", ()):
            if getattr(scale, "flow_search", 0) and scale.flow_out is not None:
                nn.init.zeros_(scale.flow_out.weight)
                nn.init.zeros_(scale.flow_out.bias)

    def options(self, cfg: TrainConfig) -> dict[str, Any]:
        out = super().options(cfg)
        if out["history"] not in ("real", "first_frame"):
            raise ConfigError(f"model.options.history must be 'real' or 'first_frame', got {out['history']!r}")
        self.history = str(out["history"])
        self.align_corners = bool(out["align_corners"])
        if self.frames == 0:
            self.frames = min(int(out["frames_start"]), cfg.data.frames)
        self._max_frames, self._opts = cfg.data.frames, out
        return out

    def begin_step(self, step: int, options: dict[str, Any]) -> None:
        grow = max(1, int(options["grow_every"]))
        self.frames = min(self._max_frames, int(options["frames_start"]) + step // grow)

    # ------------------------------------------------------------ one step
    def generator_inputs(self, G: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> tuple:
        return batch["a"][:, : self.frames], batch["b"][:, : self.frames]

    def rollout(self, G: nn.Module, a: Tensor, b: Tensor) -> Tensor:
        """Generate frames n-1 .. T-1 of each clip from real frames 0 .. n-2: (N, T', 6, H, W)."""
        n = int(G.n_frames)
        if a.shape[1] < n:
            raise ValueError(f"clips of {a.shape[1]} frames are shorter than the generator's window ({n})")
        if self.history == "first_frame":  # as at test time with --first-frame single
            with torch.no_grad():
                firsts = [G.single_image(a[:, i]) for i in range(n - 1)]
        else:
            firsts = [b[:, i] for i in range(n - 1)]
        history = G.initial_history(firsts)
        outs = []
        for t in range(n - 1, a.shape[1]):
            out = G(a[:, t - n + 1 : t + 1].flatten(1, 2), history, align_corners=self.align_corners)
            outs.append(torch.cat([out.image, out.flow, out.weight], 1))
            history = G.update_history(history, out)
        return torch.stack(outs, 1)

    def generate(self, G: nn.Module, inputs: tuple, generator: torch.Generator, options: dict[str, Any]) -> Tensor:
        return self.rollout(G, *inputs)

    def check_forward(self, G: nn.Module, inputs: tuple) -> Tensor:
        """One generated frame (N, 3, H, W), for the loop's shape check."""
        return self.rollout(G, *inputs)[:, 0, :3]

    def real(self, batch: dict[str, Tensor]) -> Tensor:
        return batch["b"][:, self._hist(batch) : self.frames]

    def _hist(self, batch: dict[str, Tensor]) -> int:
        """Real history frames in front of the generated ones: the generator's n_frames - 1."""
        return self._g_frames - 1

    _g_frames = 3

    def d_input(self, batch: dict[str, Tensor], images: Tensor) -> Tensor:
        h = self._hist(batch)
        k = h  # context frames before the generated ones that D_V windows need (temporal_frames - 1)
        t_end = h + images.shape[1]
        seq = torch.cat([batch["b"][:, h - k : h].to(images.dtype), images[:, :, :3]], 1)
        cond = batch["a"][:, h - k : t_end].to(images.dtype)
        flow = batch["flow"][:, h - k : t_end].to(images.dtype)
        return torch.cat([cond, seq, flow], 2)

    def extra_g_losses(self, cfg: TrainConfig, batch: dict[str, Tensor], fake: Tensor) -> dict[str, Tensor]:
        from imgsynth.layers.warp import flow_warp

        h = self._hist(batch)
        t_end = h + fake.shape[1]
        img, flow, weight = fake[:, :, :3].float(), fake[:, :, 3:5].float(), fake[:, :, 5:6].float()
        real = batch["b"][:, h:t_end].float()
        gt_flow, valid = batch["flow"][:, h:t_end].float(), batch["valid"][:, h:t_end].float()
        o = self._opts
        terms: dict[str, Tensor] = {}
        if cfg.loss.l1 > 0:
            terms["l1"] = cfg.loss.l1 * (img - real).abs().mean()
        if o["flow_l1"] > 0:
            terms["flow"] = o["flow_l1"] * ((flow - gt_flow).abs() * valid).mean()
        if o["warp_l1"] > 0:
            prev = batch["b"][:, h - 1 : t_end - 1].float().flatten(0, 1)
            warped = flow_warp(prev, flow.flatten(0, 1), align_corners=self.align_corners)
            terms["warp"] = o["warp_l1"] * ((warped - real.flatten(0, 1)).abs() * valid.flatten(0, 1)).mean()
        if o["weight_l1"] > 0:
            terms["weight"] = o["weight_l1"] * (weight * valid).mean()
        return terms

    # ------------------------------------------------------------ grids and exports
    def grid_inputs(self, G: nn.Module, seeds: list[int], dataset: Any) -> tuple:
        """The first clips of the dataset (epoch 0), one per seed, at the current clip length."""
        self._g_frames = int(G.n_frames)
        items = self._fixed_items(seeds, dataset)
        t = max(self.frames, int(G.n_frames))
        return torch.stack([i["a"][:t] for i in items]), torch.stack([i["b"][:t] for i in items])

    def grid_images(self, G: nn.Module, inputs: tuple, seeds: list[int], dataset: Any) -> tuple[Tensor, int]:
        """Per clip three rows over the generated frames: input | generated | real."""
        a, b = inputs
        fake = self.rollout(G, a, b)[:, :, :3].float()
        h = a.shape[1] - fake.shape[1]
        cond = a[:, h:].float()
        cond = cond.expand(-1, -1, 3, -1, -1) if cond.shape[2] == 1 else cond[:, :, :3]
        rows = torch.stack([cond, fake, b[:, h:].float()], 1)  # (N, 3, T', 3, H, W)
        return rows.flatten(0, 2), fake.shape[1]

    def build_generator(self, config: dict[str, Any]) -> nn.Module:
        G = super().build_generator(config)
        self._g_frames = int(G.n_frames)
        return G

    def io(self, cfg: TrainConfig, generator_config: dict[str, Any], channels: int) -> dict[str, Any]:
        io = super().io(cfg, generator_config, channels)
        io["input"] = cfg.data.derive
        if cfg.data.derive == "clusters":
            from imgsynth.pipelines.translate import CLUSTERS

            io["clusters"] = CLUSTERS
        opts = self.options(cfg)
        io["align_corners"] = bool(opts["align_corners"])
        # instance norm trained on per-clip statistics: test with each frame's own statistics (as in
        # training); batch norm: eval() with the running statistics
        io["normalization"] = "frame" if generator_config.get("norm") == "instance_tracked" else "running"
        if opts["first_frame_model"]:
            io["first_frame"] = "single"
            io["first_frame_model"] = opts["first_frame_model"]
        else:
            io["first_frame"] = "real"
        return io
