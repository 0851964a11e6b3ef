"""Dataset label palettes: colour-coded label maps to label ids and back.

A palette is data (``pipelines/palettes/<name>.json``): ``{"name", "source", "licence", "num_labels",
"ignore_index", "labels": [{"id", "name", "color": [r, g, b]}, ...]}``. Ids are the dataset's own
annotation ids (Cityscapes labelIds, ADE20K 0..150, COCO-Stuff stuffthingmaps 0..181 and 255), the
same values an index-image label map of that dataset holds; model-specific shifts such as SPADE's
ADE20K ``-1`` happen later (``--label-offset``).

Some official tables give two ids one colour (Cityscapes ids 0-4, pole/polegroup, car/license
plate; ADE20K road/skyscraper). A colour then decodes to the *first* id listed with it, which is
the id the dataset's own tools write for those pixels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from imgsynth.errors import InputError, UsageError

_PACKAGE = "imgsynth.pipelines"
_FOLDER = "palettes"


@dataclass(frozen=True, eq=False)
class Palette:
    """A dataset's label ids, their colours and names (row k of each array is one label)."""

    name: str
    ids: np.ndarray  # (K,) int32
    colors: np.ndarray  # (K, 3) uint8
    names: list[str]
    ignore_index: int | None = None
    source: str = ""
    licence: str = ""
    # decode tables: sorted packed colours and the (first-listed) id of each
    _keys: np.ndarray = field(init=False, repr=False)
    _key_ids: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # palettes are cached and shared: keep their arrays read-only
        for arr in (self.ids, self.colors):
            arr.setflags(write=False)
        packed = _pack(self.colors)
        # np.unique returns the first occurrence of each colour, i.e. the first-listed id wins
        keys, first = np.unique(packed, return_index=True)
        object.__setattr__(self, "_keys", keys)
        object.__setattr__(self, "_key_ids", self.ids[first].astype(np.int32))

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def name_of(self, label_id: int) -> str:
        """The class name of ``label_id`` (KeyError if the palette has no such id)."""
        hit = np.flatnonzero(self.ids == label_id)
        if hit.size == 0:
            raise KeyError(f"{self.name} has no label id {label_id}")
        return self.names[int(hit[0])]


def _pack(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) int32 0xRRGGBB, one integer per colour for sorting and lookup."""
    rgb = rgb.astype(np.int32, copy=False)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _from_json(data: object, where: str, error: type[Exception]) -> Palette:
    """Validate a parsed palette document and build the Palette."""

    def bad(msg: str) -> Exception:
        return error(f"{where}: {msg}")

    if not isinstance(data, dict):
        raise bad("a palette must be a JSON object")
    for key in ("name", "labels"):
        if key not in data:
            raise bad(f"missing {key!r}")
    labels = data["labels"]
    if not isinstance(labels, list) or not labels:
        raise bad("'labels' must be a non-empty list")
    ids, colors, names = [], [], []
    for i, entry in enumerate(labels):
        if not isinstance(entry, dict) or not {"id", "name", "color"} <= entry.keys():
            raise bad(f"labels[{i}] needs 'id', 'name' and 'color'")
        lid, color = entry["id"], entry["color"]
        if not isinstance(lid, int) or isinstance(lid, bool):
            raise bad(f"labels[{i}].id must be an integer, got {lid!r}")
        if (not isinstance(color, list) or len(color) != 3
                or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in color)):
            raise bad(f"labels[{i}].color must be [r, g, b] with integers 0..255, got {color!r}")
        ids.append(lid)
        colors.append(color)
        names.append(str(entry["name"]))
    if len(set(ids)) != len(ids):
        dup = sorted({x for x in ids if ids.count(x) > 1})
        raise bad(f"label ids must be unique, repeated: {dup}")
    if "num_labels" in data and data["num_labels"] != len(ids):
        raise bad(f"num_labels is {data['num_labels']} but {len(ids)} labels are listed")
    ignore = data.get("ignore_index")
    if ignore is not None and (not isinstance(ignore, int) or ignore not in ids):
        raise bad(f"ignore_index {ignore!r} is not one of the listed ids")
    return Palette(
        name=str(data["name"]),
        ids=np.asarray(ids, dtype=np.int32),
        colors=np.asarray(colors, dtype=np.uint8),
        names=names,
        ignore_index=ignore,
        source=str(data.get("source", "")),
        licence=str(data.get("licence", "")),
    )


def list_palettes() -> list[str]:
    """Names of the bundled palettes (``load_palette`` accepts these)."""
    folder = resources.files(_PACKAGE).joinpath(_FOLDER)
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def load_palette(name: str) -> Palette:
    """A bundled palette by name (``cityscapes``, ``ade20k``, ...) or a ``.json`` file of the same shape.

    Unknown names raise UsageError listing the bundled ones; a malformed user file raises InputError.
    Palettes are cached (translate asks once per image), so the returned arrays are read-only.
    """
    if name.lower().endswith(".json"):
        path = Path(name)
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            raise InputError(f"{name}: palette file not found") from None
        except OSError as e:
            raise InputError(f"{name}: cannot read the palette file ({e.strerror})") from None
        return _load_file(name, stamp)
    key = name.strip().lower().replace("-", "_")
    available = list_palettes()
    if key not in available:
        raise UsageError(f"unknown palette {name!r}; available: {', '.join(available)} (or a path to a .json palette)")
    return _load_bundled(key)


@lru_cache(maxsize=16)
def _load_bundled(key: str) -> Palette:
    text = resources.files(_PACKAGE).joinpath(_FOLDER, f"{key}.json").read_text(encoding="utf-8")
    # a bundled file failing validation is a packaging bug, not a user error
    return _from_json(json.loads(text), f"palette {key}", ValueError)


@lru_cache(maxsize=16)
def _load_file(name: str, stamp: int) -> Palette:
    """``stamp`` (the file's mtime) is part of the cache key so an edited file is read again."""
    try:
        data = json.loads(Path(name).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{name}: cannot read the palette file ({e})") from None
    return _from_json(data, name, InputError)


def decode_color_labels(rgb: np.ndarray, palette: Palette, *, name_for_errors: str) -> np.ndarray:
    """(H, W, 3) uint8 colour-coded label map -> (H, W) int32 label ids, by exact colour match.

    Every pixel must carry a palette colour; otherwise InputError names the file, the count of
    unmatched pixels and the commonest unmatched colours (lossy JPEG or smooth resizing are the
    usual causes).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"{name_for_errors}: a colour label map must be (H, W, 3) RGB, got shape {tuple(rgb.shape)}")
    packed = _pack(rgb)
    keys = palette._keys
    pos = np.searchsorted(keys, packed)
    pos_c = np.minimum(pos, keys.size - 1)
    known = keys[pos_c] == packed
    if not known.all():
        bad = packed[~known]
        colours, counts = np.unique(bad, return_counts=True)
        order = np.argsort(-counts, kind="stable")[:3]
        top = zip(colours[order].tolist(), counts[order].tolist())
        shown = ", ".join(f"({c >> 16}, {(c >> 8) & 255}, {c & 255}) x{n:,}" for c, n in top)
        more = f" and {colours.size - order.size} more colours" if colours.size > order.size else ""
        raise InputError(
            f"{name_for_errors}: {bad.size:,} of {packed.size:,} pixels have colours that are not in the "
            f"{palette.name} palette: {shown}{more}. Colour label maps must match exactly: JPEG compression and "
            f"smooth resizing change colours, so save them as PNG and resize with nearest-neighbour "
            f"(or pass an index-image label map)")
    return palette._key_ids[pos_c]


def colorize(labels: np.ndarray, palette: Palette) -> np.ndarray:
    """(H, W) integer label ids -> (H, W, 3) uint8 palette colours; ids not in the palette are black."""
    labels = np.asarray(labels)
    lo, hi = int(palette.ids.min()), int(palette.ids.max())
    # dense lookup table over the palette's id range (ids are small: -1..255 for the bundled ones)
    lut = np.zeros((hi - lo + 2, 3), dtype=np.uint8)  # the last row stays black for out-of-range ids
    lut[palette.ids - lo] = palette.colors
    idx = labels.astype(np.int64) - lo
    idx[(idx < 0) | (idx > hi - lo)] = hi - lo + 1
    return lut[idx]


def overlay(image: np.ndarray, labels: np.ndarray, palette: Palette, alpha: float = 0.5) -> np.ndarray:
    """Blend the label colours over an (H, W, 3) uint8 image: ``(1 - alpha) * image + alpha * colour``.

    Pixels whose id is the palette's ignore index, or not in the palette, keep the image as is.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != labels.shape:
        raise ValueError(f"image (H, W, 3) and labels (H, W) must match, got {image.shape} and {labels.shape}")
    colours = colorize(labels, palette).astype(np.float32)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    out = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    keep = ~np.isin(labels, palette.ids)
    if palette.ignore_index is not None:
        keep |= labels == palette.ignore_index
    out[keep] = image[keep]
    return out
