"""Training data: image folders, paired folders, Fashion-MNIST IDX files (images, label maps,
mosaics); seeded augmentation.

Every dataset yields dicts of float tensors in [-1, 1], shape (C, H, W): ``{"image": x}`` for
unconditional sources, ``{"a": x, "b": y}`` for paired ones, and ``{"image": x, "hole": h}`` for
inpainting, where ``h`` (1, H, W) is 1 inside a generated free-form hole and 0 elsewhere.

Augmentation (random crop, horizontal flip) is a pure function of ``(seed, epoch, index)``: the
sampler hands each item its epoch, so the same run sees the same crops whatever the number of
DataLoader workers, and a resumed run sees exactly what the uninterrupted one would have.
:class:`ResumableBatchSampler` shards with :class:`torch.utils.data.DistributedSampler` (one
shard per rank) and can start in the middle of an epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from imgsynth.errors import ConfigError, InputError
from imgsynth.training.config import DataConfig
from imgsynth.training.idx import fashion_mnist_files, read_idx
from imgsynth.training.mosaics import MosaicGenerator

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

# Channel count each PIL mode converts to without losing colour (alpha is dropped).
_MODE_CHANNELS = {"1": 1, "L": 1, "I": 1, "I;16": 1, "F": 1, "LA": 1, "P": 3, "RGB": 3, "RGBA": 3,
                  "CMYK": 3, "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBX": 3, "PA": 3}


# ---------------------------------------------------------------- files


def list_images(root: str | Path) -> list[Path]:
    """All image files under ``root`` (recursively), sorted; InputError when there are none."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"data folder {str(root)!r} does not exist or is not a folder")
    files = sorted(
        p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file()
    )
    if not files:
        raise InputError(
            f"data folder {str(root)!r} holds no images ({', '.join(IMAGE_EXTS)})"
        )
    return files


def image_channels(path: Path) -> int:
    """Channel count of an image file after conversion (1 for grey, 3 for colour); reads the header only."""
    try:
        with Image.open(path) as im:
            mode = im.mode
    except (OSError, Image.DecompressionBombError) as exc:
        raise InputError(f"cannot read image {str(path)!r}: {exc}") from None
    if mode.startswith("I;16"):
        return 1
    return _MODE_CHANNELS.get(mode, 3)


def common_channels(files: Sequence[Path], what: str) -> int:
    """The one channel count shared by ``files``, or InputError naming one file of each kind."""
    seen: dict[int, Path] = {}
    unreadable: InputError | None = None
    for p in files:
        try:
            seen.setdefault(image_channels(p), p)
        except InputError as exc:  # skipped (and named) when training meets it
            unreadable = exc
    if not seen and unreadable is not None:
        raise unreadable
    if len(seen) > 1:
        examples = ", ".join(f"{c} channel(s): {p.name}" for c, p in sorted(seen.items()))
        raise InputError(
            f"{what} mixes channel counts ({examples}); set data.channels = 1 or 3 to convert all"
        )
    return next(iter(seen))


def match_pairs(a_files: Sequence[Path], b_files: Sequence[Path]) -> list[tuple[Path, Path]]:
    """Pair files of two folders by stem (``x.png`` with ``x.jpg``); InputError on any mismatch."""

    def by_stem(files: Sequence[Path], side: str) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for p in files:
            if p.stem in out:
                raise InputError(f"two {side} files share the stem {p.stem!r}: {out[p.stem].name}, {p.name}")
            out[p.stem] = p
        return out

    a, b = by_stem(a_files, "input"), by_stem(b_files, "target")
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} input(s) without a target (e.g. {only_a[0]!r})")
        if only_b:
            parts.append(f"{len(only_b)} target(s) without an input (e.g. {only_b[0]!r})")
        raise InputError("paired folders do not match by file stem: " + "; ".join(parts))
    return [(a[s], b[s]) for s in sorted(a)]


# ---------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class Augment:
    """Geometry of one sample: fit to ``load_size``, crop ``resolution`` at (top, left), maybe flip."""

    top: int
    left: int
    flip: bool


def draw_augment(cfg: DataConfig, seed: int, epoch: int, index: int) -> Augment:
    """The augmentation of item ``index`` in ``epoch``: a pure function of its arguments."""
    rng = np.random.default_rng([seed & 0xFFFFFFFF, epoch, index])
    load = cfg.load_size or cfg.resolution
    span = load - cfg.resolution
    top = int(rng.integers(0, span + 1)) if span else 0
    left = int(rng.integers(0, span + 1)) if span else 0
    flip = bool(rng.random() < 0.5) if cfg.hflip else False
    return Augment(top, left, flip)


def _fit(im: Image.Image, size: int, fit: str, resample: int) -> Image.Image:
    w, h = im.size
    if fit == "pad":
        if w > size or h > size:
            scale = size / max(w, h)
            im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), resample)
            w, h = im.size
        if (w, h) == (size, size):
            return im
        canvas = Image.new(im.mode, (size, size), 0)
        canvas.paste(im, ((size - w) // 2, (size - h) // 2))
        return canvas
    if fit == "resize":
        return im if (w, h) == (size, size) else im.resize((size, size), resample)
    # crop: resize the short side to size, then centre crop the long side
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), resample)
    x0, y0 = (nw - size) // 2, (nh - size) // 2
    return im.crop((x0, y0, x0 + size, y0 + size))


def prepare(im: Image.Image, cfg: DataConfig, aug: Augment, channels: int) -> torch.Tensor:
    """PIL image -> (C, resolution, resolution) float tensor in [-1, 1] with augmentation ``aug``."""
    im = im.convert("L" if channels == 1 else "RGB")
    im = _fit(im, cfg.load_size or cfg.resolution, cfg.fit, Image.BICUBIC)
    r = cfg.resolution
    if im.size != (r, r):
        im = im.crop((aug.left, aug.top, aug.left + r, aug.top + r))
    arr = np.array(im, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if aug.flip:
        arr = arr[:, ::-1]
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float()
    return x / 127.5 - 1.0


def prepare_label(im: Image.Image, cfg: DataConfig, aug: Augment) -> torch.Tensor:
    """Label or instance map -> (1, resolution, resolution) int64 ids, same geometry as :func:`prepare`.

    Ids are read from the first channel (palette images give their indices) and resized with
    nearest neighbour, so no new ids appear; padding uses id 0.
    """
    arr = np.array(im)
    if arr.ndim == 3:
        arr = arr[:, :, 0]
    im = Image.fromarray(arr.astype(np.int32), "I")
    im = _fit(im, cfg.load_size or cfg.resolution, cfg.fit, Image.NEAREST)
    r = cfg.resolution
    if im.size != (r, r):
        im = im.crop((aug.left, aug.top, aug.left + r, aug.top + r))
    out = np.array(im, dtype=np.int64)
    if aug.flip:
        out = out[:, ::-1]
    return torch.from_numpy(np.ascontiguousarray(out))[None]


def _open(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return im
    except (OSError, Image.DecompressionBombError) as exc:
        raise InputError(f"cannot read image {str(path)!r}: {exc}") from None


# ---------------------------------------------------------------- datasets


def _split_key(key: Any) -> tuple[int, int]:
    """Dataset keys are ``(index, epoch)`` from the sampler, or a bare index (epoch 0)."""
    if isinstance(key, (tuple, list)):
        return int(key[0]), int(key[1])
    return int(key), 0


class FolderImages(Dataset):
    """Every image under a folder, for unconditional training: items ``{"image": (C, R, R)}``."""

    kind = "images"

    def __init__(self, cfg: DataConfig, seed: int = 0) -> None:
        self.cfg, self.seed = cfg, seed
        self.files = list_images(cfg.path)
        self.channels = cfg.channels or common_channels(self.files, f"data folder {cfg.path!r}")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: Any) -> dict[str, torch.Tensor]:
        index, epoch = _split_key(key)
        aug = draw_augment(self.cfg, self.seed, epoch, index)
        return {"image": prepare(_open(self.files[index]), self.cfg, aug, self.channels)}


class PairedFolders(Dataset):
    """Inputs in ``path`` and targets in ``path_b`` matched by stem: items ``{"a": ..., "b": ...}``.

    With ``data.label_nc`` > 0 the inputs are label maps instead: items ``{"label": (1, R, R)
    int64, "b": ...}`` plus ``"inst"`` (instance ids, same shape) when ``data.path_inst`` names a
    folder of instance maps (matched by stem too). All images of an item get the same crop and flip.
    """

    kind = "paired"

    def __init__(self, cfg: DataConfig, seed: int = 0) -> None:
        self.cfg, self.seed = cfg, seed
        self.pairs = match_pairs(list_images(cfg.path), list_images(cfg.path_b))
        a_files, b_files = [a for a, _ in self.pairs], [b for _, b in self.pairs]
        self.labels = cfg.label_nc > 0
        self.channels_a = 0 if self.labels else (
            cfg.channels or common_channels(a_files, f"input folder {cfg.path!r}"))
        self.channels_b = cfg.channels or common_channels(b_files, f"target folder {cfg.path_b!r}")
        self.channels = self.channels_b
        self.instances: list[Path] | None = None
        if cfg.path_inst:
            if not self.labels:
                raise ConfigError("data.path_inst (instance maps) needs label-map inputs (data.label_nc > 0)")
            inst = dict(match_pairs(a_files, list_images(cfg.path_inst)))
            self.instances = [inst[a] for a in a_files]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: Any) -> dict[str, torch.Tensor]:
        index, epoch = _split_key(key)
        aug = draw_augment(self.cfg, self.seed, epoch, index)
        a, b = self.pairs[index]
        item = {"b": prepare(_open(b), self.cfg, aug, self.channels_b)}
        if self.labels:
            item["label"] = prepare_label(_open(a), self.cfg, aug)
            if self.instances is not None:
                item["inst"] = prepare_label(_open(self.instances[index]), self.cfg, aug)
        else:
            item["a"] = prepare(_open(a), self.cfg, aug, self.channels_a)
        return item


class FashionMNIST(Dataset):
    """Fashion-MNIST (Xiao et al. 2017) from its IDX files: items ``{"image": (C, R, R)}``.

    The 28x28 grey images are fitted to ``resolution`` like any other image (``fit = "pad"`` puts
    a 28x28 image in the middle of a 32x32 black frame, the usual DCGAN setup).
    """

    kind = "images"

    def __init__(self, cfg: DataConfig, seed: int = 0) -> None:
        self.cfg, self.seed = cfg, seed
        images = read_idx(fashion_mnist_files(cfg.path, cfg.split))
        if images.ndim != 3 or images.dtype != np.uint8:
            raise InputError(
                f"Fashion-MNIST images must be uint8 (N, H, W), got {images.dtype} {images.shape}"
            )
        if len(images) == 0:
            raise InputError(f"Fashion-MNIST {cfg.split} file in {cfg.path!r} holds no images")
        self.images = images
        self.channels = cfg.channels or 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: Any) -> dict[str, torch.Tensor]:
        index, epoch = _split_key(key)
        aug = draw_augment(self.cfg, self.seed, epoch, index)
        return {"image": prepare(Image.fromarray(self.images[index]), self.cfg, aug, self.channels)}


def _fashion_mnist_arrays(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, classes (N,) int64) of the Fashion-MNIST ``cfg.split``."""
    images_path = fashion_mnist_files(cfg.path, cfg.split)
    labels_path = images_path.with_name(images_path.name.replace("images-idx3", "labels-idx1"))
    images, classes = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8 or len(images) == 0:
        raise InputError(f"Fashion-MNIST images must be non-empty uint8 (N, H, W), got {images.dtype} {images.shape}")
    if classes.shape != (len(images),):
        raise InputError(f"{str(labels_path)!r} holds {classes.shape} labels for {len(images)} images")
    return images, classes.astype(np.int64)


FASHION_LABEL_NC = 11
"""Labels of Fashion-MNIST label maps: 0 = background, ``class + 1`` for the ten garment classes."""


def _check_label_nc(cfg: DataConfig) -> None:
    if cfg.label_nc != FASHION_LABEL_NC:
        raise ConfigError(
            f"data.source = {cfg.source!r} makes label maps with {FASHION_LABEL_NC} labels "
            f"(background + 10 classes): set data.label_nc = {FASHION_LABEL_NC}"
        )


class FashionMNISTLabels(Dataset):
    """Fashion-MNIST label map -> garment pairs: items ``{"label": (1, R, R) int64, "b": (C, R, R)}``.

    The label map of an item is ``(x > 0) * (class + 1)`` (``TRAINING-DATA.md``): 0 on the
    background, the garment class + 1 on its pixels, so ``data.label_nc`` is 11. Map and image
    get the same fit (``pad``: 28 -> 32 with background / black) and flip.
    """

    kind = "paired"

    def __init__(self, cfg: DataConfig, seed: int = 0) -> None:
        _check_label_nc(cfg)
        self.cfg, self.seed = cfg, seed
        self.images, self.classes = _fashion_mnist_arrays(cfg)
        self.channels_a = 0
        self.channels_b = self.channels = cfg.channels or 1
        self.has_instances = False

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: Any) -> dict[str, torch.Tensor]:
        index, epoch = _split_key(key)
        aug = draw_augment(self.cfg, self.seed, epoch, index)
        x = self.images[index]
        label = ((x > 0) * (self.classes[index] + 1)).astype(np.uint8)
        return {"b": prepare(Image.fromarray(x), self.cfg, aug, self.channels_b),
                "label": prepare_label(Image.fromarray(label), self.cfg, aug)}


def mosaic_items(items: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w) uint8 items resized to (N, size, size) with area resampling (Pillow ``BOX``)."""
    return np.stack([np.array(Image.fromarray(x).resize((size, size), Image.BOX)) for x in items])


MOSAIC_SEEDS = {"train": 0, "test": 1}
"""Mosaic seed per split: held-out mosaics differ from the training ones in items and layout."""


class FashionMosaics(Dataset):
    """Seeded Fashion-MNIST mosaics (:mod:`imgsynth.training.mosaics`) at ``resolution`` x ``resolution``.

    Items ``{"label", "inst", "panoptic": (1, R, R) int64, "b": (C, R, R)}``: semantic map
    (``class + 1``), instance ids, panoptic ids ``semantic * 1000 + instance`` and the true
    mosaic. Mosaic ``i`` is the generator's mosaic ``i`` (seed :data:`MOSAIC_SEEDS` of the
    split, items of that split), one per Fashion-MNIST item of the split; ``data.item_size`` > 0
    scales the items first (:func:`mosaic_items`, so small canvases hold several); ``hflip``
    flips all four maps together. No resizing or cropping: ``load_size`` must stay 0 or ``resolution``.
    """

    kind = "paired"

    def __init__(self, cfg: DataConfig, seed: int = 0) -> None:
        _check_label_nc(cfg)
        if cfg.load_size not in (0, cfg.resolution):
            raise ConfigError("data.source = 'mosaics' makes mosaics at data.resolution: leave data.load_size at 0")
        self.cfg, self.seed = cfg, seed
        items, classes = _fashion_mnist_arrays(cfg)
        if cfg.item_size < 0:
            raise ConfigError(f"data.item_size must be 0 (28x28 items) or a side in pixels, got {cfg.item_size}")
        if cfg.item_size and cfg.item_size != items.shape[1]:
            items = mosaic_items(items, cfg.item_size)
        self.mosaics = MosaicGenerator(items, classes, size=cfg.resolution, seed=MOSAIC_SEEDS[cfg.split])
        self.length = len(items)
        self.channels_a = 0
        self.channels_b = self.channels = cfg.channels or 1
        self.has_instances = True

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: Any) -> dict[str, torch.Tensor]:
        index, epoch = _split_key(key)
        aug = draw_augment(self.cfg, self.seed, epoch, index)
        m = self.mosaics(index)

        def ids(a: np.ndarray) -> torch.Tensor:
            a = a[:, ::-1] if aug.flip else a
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))[None]

        image = Image.fromarray(m.image[:, ::-1] if aug.flip else m.image)
        return {"b": prepare(image, self.cfg, Augment(0, 0, False), self.channels_b),
                "label": ids(m.semantic), "inst": ids(m.instance), "panoptic": ids(m.panoptic)}


def free_form_mask(size: int, rng: np.random.Generator, max_strokes: int = 4,
                   max_vertices: int = 12) -> np.ndarray:
    """A free-form hole mask (size, size) of 0/1 uint8: a few thick random polylines.

    After the free-form mask generation of Yu et al. 2019 (DeepFill v2, Algorithm 1): each stroke
    starts at a random point and turns by random angles for a random number of vertices, drawn
    with a random brush width and round joints. Lengths and widths scale with ``size`` (the
    paper's numbers are for 256 px: widths 12..40, segment lengths up to 40).
    """
    im = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(im)
    scale = size / 256.0
    for _ in range(int(rng.integers(1, max_strokes + 1))):
        x, y = float(rng.integers(0, size)), float(rng.integers(0, size))
        width = max(1, int(round(rng.uniform(12, 40) * scale)))
        angle = rng.uniform(0, 2 * np.pi)
        points = [(x, y)]
        for v in range(int(rng.integers(4, max_vertices + 1))):
            # alternate the turn direction so strokes wander instead of circling
            angle += rng.uniform(0, 2 * np.pi / 5) * (1 if v % 2 else -1)
            length = rng.uniform(10, 40) * scale + 1
            x = float(np.clip(x + length * np.cos(angle), 0, size - 1))
            y = float(np.clip(y + length * np.sin(angle), 0, size - 1))
            points.append((x, y))
        draw.line(points, fill=1, width=width)
        r = width / 2
        for px, py in points:
            draw.ellipse([px - r, py - r, px + r, py + r], fill=1)
    mask = np.array(im, dtype=np.uint8)
    if rng.random() < 0.5:
        mask = mask[:, ::-1]
    if rng.random() < 0.5:
        mask = mask[::-1, :]
    return np.ascontiguousarray(mask)


class MaskedImages(FolderImages):
    """Photos with generated free-form holes, for inpainting: items ``{"image": ..., "hole": ...}``.

    The hole of item ``index`` in ``epoch`` is a pure function of ``(seed, epoch, index)``, like
    the augmentation, so runs are reproducible and resumable.
    """

    kind = "masked"

    def __getitem__(self, key: Any) -> dict[str, torch.Tensor]:
        item = super().__getitem__(key)
        index, epoch = _split_key(key)
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, epoch, index, 1])
        hole = torch.from_numpy(free_form_mask(self.cfg.resolution, rng)).float()[None]
        return {"image": item["image"], "hole": hole}


class DerivedPairs(FolderImages):
    """Photos with a conditioning image derived from each crop: items ``{"a": (1, R, R), "b": (C, R, R)}``.

    ``data.source = "edges"``: ``a`` is the Canny edge map of the augmented photo crop, black
    lines on white, made by :func:`imgsynth.pipelines.translate.canny_edges`, the very function
    ``imgsynth translate --input-kind edges`` applies (the pix2pix edges2photo task, Isola et al.
    2017, Sec. 4). ``"gray"``: ``a`` is the crop's luminance
    (:func:`~imgsynth.pipelines.translate.to_gray`, colourisation). Both maps are grey, so ``a``
    has one channel (the translate pipeline feeds one-channel models the first channel).
    ``"clusters"``: ``a`` is the crop posterised to 8 colours
    (:func:`~imgsynth.pipelines.translate.colour_clusters`, ``--input-kind clusters``), RGB. The crop
    and flip are those of :func:`draw_augment`, so items are a pure function of
    ``(seed, epoch, index)``; ``b`` is the RGB photo crop (``data.channels`` 0 or 3).
    """

    kind = "paired"

    def __init__(self, cfg: DataConfig, seed: int = 0) -> None:
        from imgsynth.pipelines.translate import canny_edges, colour_clusters, to_gray

        if cfg.channels not in (0, 3):
            raise ConfigError(f"data.source = {cfg.source!r} makes RGB targets: leave data.channels at 0 or set 3")
        if cfg.label_nc:
            raise ConfigError(f"data.source = {cfg.source!r} makes image inputs: leave data.label_nc at 0")
        root = Path(cfg.path)
        if not root.is_dir():
            raise ConfigError(f"data.path {cfg.path!r} (the photos of data.source = {cfg.source!r}) is not a folder")
        if not any(p.suffix.lower() in IMAGE_EXTS and p.is_file() for p in root.rglob("*")):
            raise ConfigError(
                f"data.path {cfg.path!r} holds no photos ({', '.join(IMAGE_EXTS)}); data.source = "
                f"{cfg.source!r} derives its inputs from a folder of photos"
            )
        self.cfg, self.seed = cfg, seed
        self.files = list_images(cfg.path)
        self.derive = {"edges": canny_edges, "gray": to_gray, "clusters": colour_clusters}[cfg.source]
        self.channels_a = 3 if cfg.source == "clusters" else 1
        self.channels_b = self.channels = 3

    def __getitem__(self, key: Any) -> dict[str, torch.Tensor]:
        index, epoch = _split_key(key)
        aug = draw_augment(self.cfg, self.seed, epoch, index)
        b = prepare(_open(self.files[index]), self.cfg, aug, 3)
        rgb = ((b + 1.0) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
        a = self.derive(rgb)[:, :, : self.channels_a]
        a = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float()
        return {"a": a / 127.5 - 1.0, "b": b}


SOURCES = {"folder": FolderImages, "masked": MaskedImages, "paired": PairedFolders, "fashion-mnist": FashionMNIST,
           "fashion-mnist-labels": FashionMNISTLabels, "mosaics": FashionMosaics,
           "edges": DerivedPairs, "gray": DerivedPairs, "clusters": DerivedPairs}


class SkipUnreadable(Dataset):
    """A dataset whose unreadable items (corrupt, truncated or vanished files) are skipped.

    An item that raises :class:`~imgsynth.errors.InputError` is replaced by the next readable
    one (same epoch, so the same augmentation draw as that item would get); the item then
    carries ``"skipped"``: the index of the first unreadable item met (-1: none), which the
    training loop names in its log. The choice depends only on which files are readable, so runs
    stay reproducible. Other attributes are the wrapped dataset's.
    """

    def __init__(self, inner: Dataset) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (unpickling in a worker)
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getitem__(self, key: Any) -> dict[str, torch.Tensor]:
        index, epoch = _split_key(key)
        n = len(self)
        first_bad = -1
        last: InputError | None = None
        for k in range(n):
            j = (index + k) % n
            try:
                item = self.inner[(j, epoch)]
            except InputError as exc:
                first_bad = j if first_bad < 0 else first_bad
                last = exc
                continue
            item["skipped"] = torch.tensor(first_bad, dtype=torch.int64)
            return item
        raise InputError(f"none of the {n} training item(s) can be read (last: {last})")

    def item_name(self, index: int) -> str:
        """The file(s) behind item ``index``."""
        inner = self.inner
        if isinstance(inner, IndexSubset):
            return inner.item_name(index)
        if hasattr(inner, "files"):
            return str(inner.files[index])
        if hasattr(inner, "pairs"):
            return " + ".join(str(p) for p in inner.pairs[index])
        return f"item {index}"


class IndexSubset(Dataset):
    """Items ``indices`` of a dataset keyed ``(index, epoch)``; other attributes are the dataset's."""

    def __init__(self, inner: Dataset, indices: Sequence[int]) -> None:
        self.inner, self.indices = inner, list(indices)

    def __getattr__(self, name: str) -> Any:
        if name in ("inner", "indices"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: Any) -> dict[str, torch.Tensor]:
        index, epoch = _split_key(key)
        return self.inner[(self.indices[index], epoch)]

    def item_name(self, index: int) -> str:
        """The file(s) behind item ``index``."""
        return SkipUnreadable(self.inner).item_name(self.indices[index])


def split_validation(cfg: DataConfig, seed: int = 0) -> tuple[Dataset, Dataset | None]:
    """(training data, validation data or None) as ``data.val_path`` / ``data.val_items`` say.

    Validation items are fitted to ``resolution`` with neither random crops nor flips.
    """
    import dataclasses

    train = build_dataset(cfg, seed)
    if not cfg.val_path and cfg.val_items <= 0:
        return train, None
    plain = dataclasses.replace(cfg, load_size=0, hflip=False)
    if cfg.val_path:
        val_cfg = dataclasses.replace(plain, path=cfg.val_path, path_b=cfg.val_path_b or cfg.path_b)
        return train, build_dataset(val_cfg, seed)
    n = len(train)  # type: ignore[arg-type]
    if cfg.val_items >= n:
        raise ConfigError(f"data.val_items = {cfg.val_items} leaves nothing to train on ({n} items)")
    cut = n - cfg.val_items
    return IndexSubset(train, range(cut)), IndexSubset(build_dataset(plain, seed), range(cut, n))


def data_fingerprint(dataset: Any) -> dict[str, Any]:
    """Item count and a digest of the files' names, sizes and modification times (folder sources)."""
    import hashlib

    inner = dataset
    while isinstance(inner, (SkipUnreadable, IndexSubset)):
        inner = inner.inner
    paths: list[Path] = []
    if hasattr(inner, "files"):
        paths = list(inner.files)
    elif hasattr(inner, "pairs"):
        paths = [p for pair in inner.pairs for p in pair]
    h = hashlib.sha256()
    for p in paths:
        try:
            st = p.stat()
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0gone\n".encode())
    return {"items": len(dataset), "digest": h.hexdigest() if paths else ""}


def _clips(cfg: DataConfig, seed: int = 0) -> Dataset:
    from imgsynth.training.clips import SyntheticClips

    return SyntheticClips(cfg, seed)


SOURCES["clips"] = _clips


def build_dataset(cfg: DataConfig, seed: int = 0) -> Dataset:
    """The dataset named by ``cfg.source``."""
    if cfg.source not in ("fashion-mnist", "fashion-mnist-labels", "mosaics") and not cfg.path:
        raise ConfigError(f"data.source = {cfg.source!r} needs data.path")
    return SOURCES[cfg.source](cfg, seed)


def dataset_name(cfg: DataConfig) -> str:
    """A human name of the data for model cards."""
    if cfg.name:
        return cfg.name
    if cfg.source == "fashion-mnist":
        return f"Fashion-MNIST ({cfg.split})"
    if cfg.source == "fashion-mnist-labels":
        return f"Fashion-MNIST label maps ({cfg.split})"
    if cfg.source == "mosaics":
        return f"Fashion-MNIST mosaics ({cfg.split}, {cfg.resolution}x{cfg.resolution})"
    if cfg.source == "paired":
        return f"{Path(cfg.path).name} -> {Path(cfg.path_b).name}"
    if cfg.source == "clips":
        return f"synthetic clips over {Path(cfg.path).name} ({cfg.frames} frames, {cfg.derive} -> frames)"
    if cfg.source in ("edges", "gray", "clusters"):
        what = {"edges": "Canny edges", "gray": "grayscale", "clusters": "8-colour clusters"}[cfg.source]
        return f"{Path(cfg.path).name} ({what} -> photo)"
    return Path(cfg.path).name or cfg.path


# ---------------------------------------------------------------- sampling


class ResumableBatchSampler:
    """Batches of ``(index, epoch)`` keys for one rank; can start anywhere inside an epoch.

    The order of an epoch is :class:`~torch.utils.data.DistributedSampler`'s (shuffled by
    ``seed + epoch``, one shard per rank); only whole batches are used, so every step sees
    ``batch_size`` items. The state is ``(epoch, batch)``: :meth:`state_dict` / :meth:`load_state_dict`.
    """

    def __init__(
        self, size: int, batch_size: int, *, rank: int = 0, world_size: int = 1,
        shuffle: bool = True, seed: int = 0,
    ) -> None:
        self.sampler = DistributedSampler(
            range(size), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed
        )
        self.batch_size = batch_size
        if len(self) == 0:
            raise ConfigError(
                f"the data holds {size} item(s), fewer than one batch of {batch_size} per process "
                f"({world_size} process(es)); lower data.batch_size"
            )
        self.epoch = 0
        self.batch = 0

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, start = self.epoch, self.batch
        self.sampler.set_epoch(epoch)
        order = list(self.sampler)
        bs = self.batch_size
        for b in range(start, len(self)):
            yield [(i, epoch) for i in order[b * bs : (b + 1) * bs]]

    def state_dict(self) -> dict[str, int]:
        """Where the next batch starts."""
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue at ``state`` (as returned by :meth:`state_dict`)."""
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])


class BatchStream:
    """An endless stream of batches over epochs that knows its position for checkpoints."""

    def __init__(
        self, dataset: Dataset, sampler: ResumableBatchSampler, workers: int = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        self.sampler = sampler
        # ``generator`` feeds the workers' base seed; without one the loader would draw it from
        # the global RNG at every epoch and shift that RNG's stream
        self.loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            generator=generator if generator is not None else torch.Generator().manual_seed(0),
        )
        self._it: Iterator[Any] | None = None

    def next(self) -> dict[str, torch.Tensor]:
        """The next batch; advances the sampler state past it."""
        while True:
            if self._it is None:
                self._it = iter(self.loader)
            try:
                batch = next(self._it)
            except StopIteration:
                self._it = None
                self.sampler.epoch += 1
                self.sampler.batch = 0
                continue
            self.sampler.batch += 1
            if self.sampler.batch >= len(self.sampler):
                # the epoch is used up: the state points at the start of the next one
                self._it = None
                self.sampler.epoch += 1
                self.sampler.batch = 0
            return batch

    def state_dict(self) -> dict[str, int]:
        """Sampler position of the next batch."""
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a saved position (drops any prefetched batches)."""
        self._it = None
        self.sampler.load_state_dict(state)
