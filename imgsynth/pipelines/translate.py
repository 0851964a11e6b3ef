"""Image-to-image translation: label maps or photos in, images out (arrays and tensors only).

Conditioning kinds (``kind``):

* ``label``: an (H, W) integer label map, one-hot encoded over ``label_nc`` (+1 ``dontcare``)
  channels, then the instance edge map when the model uses instances (pix2pixHD, SPADE).
  ``label_offset`` is added first (ADE20K's official loader does ``label - 1``); the values -1
  and 255 then mean *don't care* when the model has that channel.
* ``image``: an RGB photo in [-1, 1] (pix2pix, CycleGAN).
* ``edges``: Canny edges of a photo, black lines on white (the pix2pix edges2photo convention).
* ``gray``: the photo's luminance (colorisation), replicated to the model's input channels.
* ``clusters``: the photo posterised to ``io.clusters`` colours (default 8) by
  :func:`colour_clusters`, each pixel replaced by its k-means centre (flat-colour maps -> photo).
  A flat-colour map made elsewhere goes in as ``image``.

Sizes: fully convolutional models pad to the multiple they need and crop back (reflect for photos,
edge-replicate for label maps). A SPADE generator with a fixed latent grid produces its trained
size; its output is resized back to the input size (bilinear) and the record says so.
BatchNorm: official pix2pix test runs use batch statistics with dropout active; the card's
``io.batchnorm = "batch"`` and ``io.dropout`` reproduce that per image (batch of one, dropout
seeded by the image's seed), so results never depend on batching.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from imgsynth.errors import InputError, UsageError
from imgsynth.layers.label_maps import instance_edges, one_hot

KINDS = ("label", "image", "edges", "gray", "clusters")
CLUSTERS = 8  # colours of a ``clusters`` input when the card does not say (io.clusters)


@dataclass
class TranslateInput:
    """One item: a label map (+ instance map) or a photo, and an optional style image."""

    name: str
    label: np.ndarray | None = None
    instance: np.ndarray | None = None
    image: np.ndarray | None = None
    style: np.ndarray | None = None
    seed: int = 0
    panoptic: np.ndarray | None = None  # (H, W) segment ids, for panoptic models


def model_kind(model: Any) -> str:
    return "label" if int(getattr(model, "label_nc", 0) or 0) > 0 else "image"


def size_multiple(model: Any) -> int:
    """The multiple that input sides must have for ``model`` (1 when any size works)."""
    if hasattr(model, "n_downsample") and hasattr(model, "n_scales"):  # vid2vid
        k = 2 ** (int(model.n_downsample) + int(model.n_scales) - 1)
        if getattr(model, "hallucination", "decoder") == "first_frame" and model.first_frame is not None:
            k = math.lcm(k, size_multiple(model.first_frame))  # its single-image generator runs inside
        return k
    if hasattr(model, "num_downs"):
        return 2 ** int(model.num_downs)
    if hasattr(model, "n_downsample_global"):
        return 2 ** (int(model.n_downsample_global) + int(getattr(model, "n_local_enhancers", 0)))
    if hasattr(model, "grid_size"):
        return int(getattr(model, "scale", 1)) if getattr(model, "latent_from_input", False) else 1
    return 4


def canny_edges(rgb: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """(H, W, 3) uint8 photo -> (H, W, 3) uint8 edge map, black edges on white."""
    import cv2

    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, low, high)
    return np.repeat((255 - edges)[..., None], 3, axis=2)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W, 3) uint8 luminance (ITU-R 601 weights, as Pillow's 'L')."""
    r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
    y = (r * 299 + g * 587 + b * 114 + 500) // 1000
    return np.repeat(y.astype(np.uint8)[..., None], 3, axis=2)


def colour_clusters(rgb: np.ndarray, k: int = CLUSTERS, iters: int = 10, max_fit: int = 65536) -> np.ndarray:
    """(H, W, 3) uint8 photo -> (H, W, 3) uint8 map of at most ``k`` colours (k-means in RGB).

    Lloyd's k-means without randomness, so the same photo always gives the same map: the centres
    start as the means of ``k`` equal-count slices of the pixels sorted by luminance, then
    ``iters`` rounds of assignment and update (a centre left without pixels keeps its place).
    Large photos fit the centres on an evenly strided subset of at most ``max_fit`` pixels; every
    pixel is then replaced by the nearest of the rounded centres.
    """
    if k < 1:
        raise UsageError(f"colour clusters: k must be at least 1, got {k}")
    h, w = rgb.shape[:2]
    px = rgb.reshape(-1, 3).astype(np.float32)
    fit = px[:: max(1, -(-len(px) // max_fit))]
    order = np.argsort(fit @ np.array([0.299, 0.587, 0.114], np.float32), kind="stable")
    centres = np.stack([s.mean(0) if len(s) else fit[order[-1]] for s in np.array_split(fit[order], k)])

    def nearest(x: np.ndarray) -> np.ndarray:
        # |x - c|^2 without the |x|^2 term, which does not change the argmin
        return np.argmin((centres * centres).sum(1) - 2.0 * (x @ centres.T), axis=1)

    labels = None
    for _ in range(iters):
        new = nearest(fit)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        counts = np.bincount(labels, minlength=k)
        sums = np.stack([np.bincount(labels, weights=fit[:, c], minlength=k) for c in range(3)], 1)
        centres = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres).astype(np.float32)
    # the map's colours are the rounded centres, and each pixel takes the nearest of those
    centres = np.clip(np.rint(centres), 0, 255).astype(np.float32)
    return centres.astype(np.uint8)[nearest(px)].reshape(h, w, 3)


def resize_nearest_legacy(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest resize with PyTorch's legacy rule: source index = floor(dst * in / out)."""
    h, w = arr.shape[:2]
    rows = np.floor(np.arange(size[0]) * (h / size[0])).astype(int)
    cols = np.floor(np.arange(size[1]) * (w / size[1])).astype(int)
    return arr[rows][:, cols]


@dataclass
class Translator:
    """Run a translation generator on :class:`TranslateInput` items."""

    model: Any
    io: dict[str, Any] = field(default_factory=dict)
    kind: str | None = None
    device: torch.device | None = None
    dtype: torch.dtype | None = None

    def __post_init__(self) -> None:
        p = next(self.model.parameters())
        self.device = self.device or p.device
        self.dtype = self.dtype or p.dtype
        natural = model_kind(self.model)
        self.kind = self.kind or self.io.get("input", natural)
        if self.kind not in KINDS:
            raise UsageError(f"--input-kind must be one of {', '.join(KINDS)}")
        if (self.kind == "label") != (natural == "label"):
            raise UsageError(f"this model takes {'label maps' if natural == 'label' else 'images'}, "
                             f"not --input-kind {self.kind}")
        self.model.eval()
        if self.io.get("batchnorm") == "batch":
            for m in self.model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.train()
                if isinstance(m, torch.nn.Dropout):
                    m.train(bool(self.io.get("dropout", False)))

    # --- encoding -------------------------------------------------------------------------------
    @property
    def n_label_channels(self) -> int:
        return int(self.model.label_nc) + int(bool(getattr(self.model, "contain_dontcare", False)))

    def encode_labels(self, item: TranslateInput) -> torch.Tensor:
        """(H, W) labels (+ instances) -> (1, C, H, W) float model input."""
        m = self.model
        label = item.label.astype(np.int64) + int(self.io.get("label_offset", 0))
        n = int(m.label_nc)
        if getattr(m, "contain_dontcare", False):
            label = np.where((label == -1) | (label == 255), n, label)
        bad = (label < 0) | (label >= self.n_label_channels)
        if bad.any():
            vals = sorted(set(np.unique(item.label[bad]).tolist()))[:5]
            raise InputError(f"{item.name}: label value(s) {vals} out of range for a model with "
                             f"{n} labels (0..{n - 1}); check --label-offset or the dataset")
        x = one_hot(torch.from_numpy(label)[None], self.n_label_channels)
        if getattr(m, "use_instance", False):
            if item.instance is None:
                raise InputError(f"{item.name}: this model needs an instance map (--instance DIR or "
                                 f"*_instanceIds.png beside the label map)")
            if item.instance.shape != item.label.shape:
                raise InputError(f"{item.name}: instance map {item.instance.shape[::-1]} and label map "
                                 f"{item.label.shape[::-1]} differ in size")
            x = torch.cat([x, instance_edges(torch.from_numpy(item.instance.astype(np.int64))[None, None])], 1)
        return x

    def encode_image(self, item: TranslateInput) -> torch.Tensor:
        rgb = item.image
        if self.kind == "edges":
            rgb = canny_edges(rgb)
        elif self.kind == "gray":
            rgb = to_gray(rgb)
        elif self.kind == "clusters":
            rgb = colour_clusters(rgb, int(self.io.get("clusters", CLUSTERS)))
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1
        nc = int(getattr(self.model, "input_nc", 3))
        if nc == 1:
            x = x[:, :1]
        elif nc != 3:
            raise InputError(f"{item.name}: the model expects {nc} input channels; images give 3")
        return x

    # --- running --------------------------------------------------------------------------------
    def _prepare_size(self, item: TranslateInput) -> tuple[TranslateInput, tuple[int, int], str]:
        src = item.label if self.kind == "label" else item.image
        h, w = src.shape[:2]

        def maps(fn) -> dict[str, np.ndarray | None]:
            return {k: None if getattr(item, k) is None else fn(getattr(item, k))
                    for k in ("label", "instance", "panoptic")}

        if hasattr(self.model, "grid_size") and not getattr(self.model, "latent_from_input", False):
            oh, ow = self.model.output_size(h, w)
            if (oh, ow) != (h, w):
                return TranslateInput(item.name, image=item.image, style=item.style, seed=item.seed,
                                      **maps(lambda a: resize_nearest_legacy(a, (oh, ow)))), (h, w), "resize"
            return item, (h, w), "none"
        k = size_multiple(self.model)
        ph, pw = (-h) % k, (-w) % k
        if not ph and not pw:
            return item, (h, w), "none"
        pad2 = ((0, ph), (0, pw))
        if self.kind == "label":
            new = TranslateInput(item.name, style=item.style, seed=item.seed,
                                 **maps(lambda a: np.pad(a, pad2, mode="edge")))
        else:
            mode = "reflect" if ph < h and pw < w else "edge"
            new = TranslateInput(item.name, image=np.pad(item.image, pad2 + ((0, 0),), mode=mode),
                                 style=item.style, seed=item.seed)
        return new, (h, w), "pad"

    def _style_code(self, item: TranslateInput) -> torch.Tensor | None:
        m = self.model
        if not getattr(m, "use_vae", False):
            if item.style is not None:
                raise UsageError("--style needs a SPADE model with a style encoder (use_vae)")
            return None
        gen = torch.Generator().manual_seed(item.seed)
        eps = torch.randn(1, int(m.z_dim), generator=gen)
        if item.style is None:
            return eps
        x = torch.from_numpy(item.style).permute(2, 0, 1)[None].float() / 127.5 - 1
        x = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False, antialias=True)
        mu, logvar = m.encode(x.to(self.device, self.dtype))
        return mu.float().cpu() + torch.exp(0.5 * logvar.float().cpu()) * eps

    @torch.inference_mode()
    def translate_one(self, item: TranslateInput) -> tuple[np.ndarray, str]:
        """One item -> ((H, W, 3) uint8 image at the input size, how the size was handled)."""
        sized, (h, w), how = self._prepare_size(item)
        x = self.encode_labels(sized) if self.kind == "label" else self.encode_image(sized)
        z = self._style_code(item)
        torch.manual_seed(item.seed)  # dropout / sampling noise depend on the item's seed only
        args = (x.to(self.device, self.dtype),) + (() if z is None else (z.to(self.device, self.dtype),))
        if getattr(self.model, "use_panoptic", False):
            if sized.panoptic is None:
                raise InputError(f"{item.name}: this model needs a panoptic map (segment ids)")
            # ids stay integers: a float (bf16) cast would merge neighbouring ids
            args = args + (torch.from_numpy(sized.panoptic.astype(np.int64))[None].to(self.device),)
        y = self.model(*args).float().cpu()
        if how == "pad":
            y = y[:, :, :h, :w]
        elif how == "resize":
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        img = ((y[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
        if img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
        return img, how

    def __call__(self, items: Sequence[TranslateInput]) -> list[np.ndarray]:
        return [self.translate_one(it)[0] for it in items]
