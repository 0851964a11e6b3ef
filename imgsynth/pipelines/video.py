"""Video translation, one frame at a time: a per-frame image model, or a vid2vid-family model.

Both runners take :class:`~imgsynth.pipelines.translate.TranslateInput` frames in order and give
(H, W, 3) uint8 frames back; neither keeps more than the model's window of past frames, so memory
does not grow with the clip.

* :class:`PerFrame` runs any image translation model (pix2pix, pix2pixHD, SPADE, ...) on each
  frame independently (``translate-video --mode per-frame``): the baseline every video model is
  compared with, and useful in itself.
* :class:`ImaginaireStream` runs imaginaire's vid2vid generator
  (:mod:`imgsynth.models.imaginaire_vid2vid`), which makes every frame itself, the first one
  included (no first-frame policy): frame t from the one-hot label of frame t and the labels and
  frames of the previous ``num_frames - 1`` frames (as the official inference loop; the previous
  frames are the 8-bit frames written, so a resumed run continues exactly).
* :class:`Vid2VidStream` runs :class:`imgsynth.models.vid2vid.Vid2VidGenerator`: frame t from the
  inputs of frames t-n+1..t and the n-1 frames it generated before (n = ``model.n_frames``). The
  first n-1 frames follow a *first-frame policy*, the three the official code offers:

  - ``single``: a single-image generator makes frames 0..n-2 (``--use_single_G``);
  - ``real``: given real frames are frames 0..n-2 (``--use_real_img``), written as they are;
  - ``zeros``: the history starts as zeros and frame 0 is the hallucinated image alone
    (``--no_first_img``, the first call with ``use_raw_only``).

  Unlike the official test.py, which writes frames n-1 onwards only, every input frame gets an
  output: at t < n-1 the input window is padded with copies of frame 0's input.

  History: a one-scale model's previous frames are the 8-bit frames it wrote (the official code
  keeps floats; the difference is the rounding, at most half a grey level), so a run resumed from
  the written frames continues exactly as an uninterrupted one. A multi-scale model keeps each
  scale's own float outputs as the official code does, and a resume rebuilds the coarser scales
  from the written frames by average pooling (an approximation, recorded in the metadata).
  Normalisation: a card's ``io.normalization = "frame"`` normalises with each frame's own
  statistics without touching the running ones (the official test.py, which never calls
  ``.eval()``; also what a model trained with instance norm saw); otherwise eval mode.
"""

from __future__ import annotations

import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from imgsynth.errors import InputError, UsageError
from imgsynth.pipelines.translate import TranslateInput, Translator

FIRST_FRAME_POLICIES = ("single", "zeros", "real")


def is_imaginaire(model: Any) -> bool:
    """True for imaginaire's vid2vid generator (one network for every frame, its own window API)."""
    return hasattr(model, "label_embedding") and hasattr(model, "num_frames") and not hasattr(model, "few_shot_k")


def is_few_shot(model: Any) -> bool:
    """True for few-shot vid2vid (it needs reference images of the subject)."""
    return hasattr(model, "few_shot_k")


def is_video_model(model: Any) -> bool:
    """True for a sequential video generator (it has a past-frame window)."""
    return (hasattr(model, "n_frames") and hasattr(model, "update_history")) or is_imaginaire(model) or is_few_shot(model)


@dataclass
class PerFrame:
    """Any image translation model, frame by frame."""

    translator: Translator
    window: int = 1

    def metadata(self) -> dict[str, Any]:
        return {"mode": "per-frame"}

    def step(self, item: TranslateInput) -> tuple[np.ndarray, str]:
        return self.translator.translate_one(item)

    def prime(self, items: Sequence[TranslateInput], frames: Sequence[np.ndarray], start: int) -> None:
        """Nothing to restore: every frame is independent."""


def _to_tensor(rgb: np.ndarray, device: Any, dtype: Any) -> torch.Tensor:
    return (torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 127.5 - 1).to(device, dtype)


def _to_uint8(y: torch.Tensor, h: int, w: int) -> np.ndarray:
    img = ((y[0, :, :h, :w].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img


def _pad_to(rgb: np.ndarray, hp: int, wp: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if (h, w) == (hp, wp):
        return rgb
    mode = "reflect" if hp - h < h and wp - w < w else "edge"
    return np.pad(rgb, ((0, hp - h), (0, wp - w), (0, 0)), mode=mode)


@dataclass
class Vid2VidStream:
    """A vid2vid-family generator over a stream of frames; see the module docstring."""

    model: Any
    io: dict[str, Any] = field(default_factory=dict)
    kind: str | None = None
    device: Any = None
    dtype: Any = None
    first_frame: str = "zeros"
    first_model: Translator | None = None  # the single-image generator (policy ``single``)
    real_frames: list[np.ndarray] | None = None  # frames 0..n-2 (policy ``real``)

    def __post_init__(self) -> None:
        if self.first_frame not in FIRST_FRAME_POLICIES:
            raise UsageError(f"--first-frame must be one of {', '.join(FIRST_FRAME_POLICIES)}")
        self.enc = Translator(self.model, self.io, self.kind, self.device, self.dtype)
        self.kind, self.device, self.dtype = self.enc.kind, self.enc.device, self.enc.dtype
        self.n = int(self.model.n_frames)
        self.window = self.n
        self.align_corners = bool(self.io.get("align_corners", False))
        self.frame_stats = self.io.get("normalization", "running") == "frame"
        if self.first_frame == "single" and self.first_model is None:
            raise UsageError("--first-frame single needs a single-image generator (--first-frame-model, or the "
                             "card's io.first_frame_model); or use --first-frame zeros")
        if self.first_frame == "real":
            if not self.real_frames or len(self.real_frames) < self.n - 1:
                got = len(self.real_frames or [])
                raise UsageError(f"--first-frame real needs {self.n - 1} real frame(s) (--first-frames), got {got}")
        self.inputs: deque[torch.Tensor] = deque(maxlen=self.n)
        self.outputs: deque[np.ndarray] = deque(maxlen=self.n - 1)
        self.history: list[torch.Tensor] | None = None
        self.t = 0

    def metadata(self) -> dict[str, Any]:
        meta = {"mode": "video", "first_frame": self.first_frame, "window": self.n,
                "normalization": "per-frame statistics" if self.frame_stats else "running statistics",
                "warp_align_corners": self.align_corners}
        if self.first_frame == "zeros":
            meta["first_frame_note"] = ("history of zeros; frame 0 is the hallucinated image alone; the input "
                                        "window is padded with frame 0 before frame n-1")
        return meta

    # ---------------------------------------------------------------- encoding
    def _encode(self, item: TranslateInput) -> tuple[torch.Tensor, tuple[int, int], str]:
        m = self.model
        if self.kind == "label" and getattr(m, "use_instance", False) and item.instance is None:
            # the official datasets feed the label map as its own instance map when there is none
            item = TranslateInput(item.name, label=item.label, instance=item.label, seed=item.seed)
        sized, (h, w), how = self.enc._prepare_size(item)
        x = self.enc.encode_labels(sized) if self.kind == "label" else self.enc.encode_image(sized)
        return x.to(self.device, self.dtype), (h, w), how

    def _frame_tensor(self, rgb: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
        return _to_tensor(_pad_to(rgb, *shape), self.device, self.dtype)

    def _history_from_outputs(self, shape: tuple[int, int]) -> list[torch.Tensor]:
        frames = [self._frame_tensor(f, shape) for f in self.outputs]
        zeros = torch.zeros(1, int(self.model.output_nc), *shape, device=self.device, dtype=self.dtype)
        frames = [zeros] * (self.n - 1 - len(frames)) + frames
        return [h for h in self.model.initial_history(frames)]

    def _first(self, item: TranslateInput, t: int, hw: tuple[int, int]) -> np.ndarray:
        if self.first_frame == "real":
            rgb = self.real_frames[t]
            if rgb.shape[:2] != hw:
                raise InputError(f"{item.name}: first real frame {t} is {rgb.shape[1]}x{rgb.shape[0]}, the input "
                                 f"frames are {hw[1]}x{hw[0]}")
            return rgb
        return self.first_model.translate_one(item)[0]

    # ---------------------------------------------------------------- running
    def prime(self, items: Sequence[TranslateInput], frames: Sequence[np.ndarray], start: int) -> None:
        """Resume at frame ``start``: ``items`` / ``frames`` are the inputs and written outputs of the
        frames just before it (at most the window), oldest first."""
        self.t = start
        for item in items[-self.n:]:
            self.inputs.append(self._encode(item)[0])
        for f in frames[-(self.n - 1):]:
            self.outputs.append(f)
        self.history = None  # rebuilt from the written frames at the next step

    @torch.inference_mode()
    def step(self, item: TranslateInput) -> tuple[np.ndarray, str]:
        x, (h, w), how = self._encode(item)
        shape = tuple(x.shape[-2:])
        self.inputs.append(x)
        t = self.t
        if t < self.n - 1 and self.first_frame != "zeros":
            img = self._first(item, t, (h, w))
        else:
            window = list(self.inputs)
            window = [window[0]] * (self.n - len(window)) + window
            # one scale: the history is the frames written (so a resumed run continues exactly);
            # several scales keep each scale's own outputs as the official code does (a resume
            # rebuilds them from the written frames by average pooling)
            multi = int(getattr(self.model, "n_scales", 1)) > 1
            history = self.history if multi and self.history is not None else self._history_from_outputs(shape)
            raw_only = self.first_frame == "zeros" and t == 0
            ctx = contextlib.nullcontext()
            if self.frame_stats:
                from imgsynth.models.vid2vid import frame_statistics

                ctx = frame_statistics(self.model)
            with ctx:
                out = self.model(torch.cat(window, 1), history, use_raw_only=raw_only,
                                 align_corners=self.align_corners)
            self.history = self.model.update_history(history, out)
            img = _to_uint8(out.image, h, w)
        if t < self.n - 1 and self.first_frame != "zeros":
            self.history = None  # built from the first frames once they are all there
        self.outputs.append(img)
        self.t += 1
        return img, how


@dataclass
class ImaginaireStream:
    """imaginaire's vid2vid generator over a stream of label maps; see the module docstring."""

    model: Any
    io: dict[str, Any] = field(default_factory=dict)
    kind: str | None = None
    device: Any = None
    dtype: Any = None

    def __post_init__(self) -> None:
        if (self.kind or self.io.get("input", "label")) != "label":
            raise UsageError("imaginaire vid2vid takes label maps (--input-kind label)")
        self.kind = "label"
        p = next(self.model.parameters())
        self.device, self.dtype = self.device or p.device, self.dtype or p.dtype
        self.model.eval()
        self.n = int(self.model.num_frames)
        self.window = self.n - 1
        self.multiple = 2 ** int(self.model.num_layers)
        self.labels: deque[torch.Tensor] = deque(maxlen=self.n - 1)
        self.outputs: deque[np.ndarray] = deque(maxlen=self.n - 1)

    def metadata(self) -> dict[str, Any]:
        return {"mode": "video", "first_frame": "network", "window": self.n,
                "first_frame_note": "the network makes the first frame from its label alone (imaginaire)"}

    def _encode(self, item: TranslateInput) -> tuple[torch.Tensor, tuple[int, int], str]:
        from imgsynth.layers.label_maps import one_hot

        n = int(self.model.label_channels)
        label = item.label.astype(np.int64) + int(self.io.get("label_offset", 0))
        bad = (label < 0) | (label >= n)
        if bad.any():
            vals = sorted(set(np.unique(item.label[bad]).tolist()))[:5]
            raise InputError(f"{item.name}: label value(s) {vals} out of range for a model with {n} labels "
                             f"(0..{n - 1}); check --label-offset or the dataset")
        h, w = label.shape
        k = self.multiple
        ph, pw = (-h) % k, (-w) % k
        how = "pad" if ph or pw else "none"
        if how == "pad":
            label = np.pad(label, ((0, ph), (0, pw)), mode="edge")
        x = one_hot(torch.from_numpy(label)[None], n)
        return x.to(self.device, self.dtype), (h, w), how

    def prime(self, items: Sequence[TranslateInput], frames: Sequence[np.ndarray], start: int) -> None:
        """Resume at frame ``start`` from the inputs and written outputs of the frames before it."""
        for item in items[-(self.n - 1):]:
            self.labels.append(self._encode(item)[0])
        for f in frames[-(self.n - 1):]:
            self.outputs.append(f)

    @torch.inference_mode()
    def step(self, item: TranslateInput) -> tuple[np.ndarray, str]:
        x, (h, w), how = self._encode(item)
        shape = tuple(x.shape[-2:])
        prev_l = prev_i = None
        if self.outputs:
            prev_l = torch.stack(list(self.labels), 1)
            prev_i = torch.stack([_to_tensor(_pad_to(f, *shape), self.device, self.dtype)[0] for f in self.outputs])[None]
        out = self.model(x, prev_l, prev_i)
        img = _to_uint8(out.image, h, w)
        self.labels.append(x)
        self.outputs.append(img)
        return img, how
