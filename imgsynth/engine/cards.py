"""Weight cards: one TOML file per weight set in ``weights/``, validated as data.

A card says what a weight set is (architecture, task, constructor config, input/output contract,
licence, paper) and where its file comes from (bundled in ``weights/``, a Hugging Face Hub file
pinned to a revision, or an official download URL), with the sha256 we expect. An official URL may
be an archive (``.tar.gz``, ``.tgz``, ``.tar``, ``.zip``) holding several releases; ``member`` then
names the one file of the card inside it (``member_sha256`` pins that file), or ``members`` names
several (a model released as one file per part, such as vid2vid's one file per spatial scale; the
converter then receives ``{member: checkpoint}``). Classical methods
without weights (OpenCV Telea/NS, PatchMatch) have cards too, with ``source.kind = "none"``, so
that ``--model`` has one namespace. This module does not import torch.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from imgsynth.errors import CardError, UnknownModelError

TASKS = ("sample", "translate", "inpaint", "translate-video")
SOURCE_KINDS = ("none", "bundled", "hub", "url")
FORMATS = ("safetensors", "pth", "pkl")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")

TOP_KEYS = {
    "id": str, "arch": str, "task": str, "title": str, "default": bool, "task_default": bool,
    "license": str,
    "paper": str, "description": str, "dataset": str, "official_url": str, "notes": str,
    "source": dict, "config": dict, "io": dict, "metrics": dict,
}
REQUIRED_TOP = ("id", "arch", "task", "title", "license", "source")
SOURCE_KEYS = {
    "kind": str, "path": str, "repo_id": str, "filename": str, "revision": str, "url": str,
    "sha256": str, "format": str, "converter": str, "size": int, "member": str, "member_sha256": str,
    "members": list,
}
REQUIRED_SOURCE = {
    "none": (),
    "bundled": ("path", "sha256"),
    "hub": ("repo_id", "filename", "revision"),
    "url": ("url", "filename"),
}
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Source:
    """Where a card's weights come from."""

    kind: str
    path: str | None = None
    repo_id: str | None = None
    filename: str | None = None
    revision: str | None = None
    url: str | None = None
    sha256: str | None = None
    format: str = "safetensors"
    converter: str | None = None
    size: int | None = None
    member: str | None = None
    member_sha256: str | None = None
    members: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Card:
    """One weight set (or one classical method), as read from its TOML file."""

    id: str
    arch: str
    task: str
    title: str
    license: str
    source: Source
    default: bool = False
    task_default: bool = False
    paper: str = ""
    description: str = ""
    dataset: str = ""
    official_url: str = ""
    notes: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    io: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def has_weights(self) -> bool:
        return self.source.kind != "none"

    @property
    def pinned(self) -> bool:
        """True when the expected sha256 is written on the card."""
        return self.source.sha256 is not None or not self.has_weights

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly record for ``models list --json`` / ``models show``."""
        s = self.source
        return {
            "id": self.id, "arch": self.arch, "task": self.task, "title": self.title,
            "default": self.default, "task_default": self.task_default, "license": self.license, "paper": self.paper,
            "dataset": self.dataset, "description": self.description,
            "source": {k: v for k, v in vars(s).items() if v is not None},
            "config": self.config, "io": self.io, "metrics": self.metrics,
            "card": str(self.path) if self.path else None,
        }


def _check_types(where: str, data: dict, schema: dict) -> None:
    unknown = sorted(set(data) - set(schema))
    if unknown:
        raise CardError(f"{where}: unknown key(s) {', '.join(unknown)}")
    for key, typ in schema.items():
        if key in data and not isinstance(data[key], typ):
            raise CardError(f"{where}: {key!r} must be a {typ.__name__}")


def check_member_name(member: str) -> str:
    """Raise :class:`CardError` unless ``member`` is a safe relative path inside an archive.

    A member name is used to find one entry, never as a path to write to, but a name that climbs
    out of the archive (``..``), is absolute or uses backslashes or drive letters is refused
    outright so that no card can even describe such a file.
    """
    parts = member.split("/")
    if (not member or member.startswith("/") or "\\" in member or "\0" in member
            or re.match(r"^[A-Za-z]:", member) or any(p in ("", ".", "..") for p in parts)):
        raise CardError(
            f"archive member {member!r} must be a relative path like 'folder/file.pth' "
            "(no '..', no leading '/', no backslashes)"
        )
    return member


def parse_card(data: dict[str, Any], where: str = "<card>", path: Path | None = None) -> Card:
    """Validate one card's TOML data and return a :class:`Card`."""
    _check_types(where, data, TOP_KEYS)
    for key in REQUIRED_TOP:
        if key not in data:
            raise CardError(f"{where}: missing required key {key!r}")
    if not _ID_RE.match(data["id"]):
        raise CardError(f"{where}: id {data['id']!r} must be lower-case letters, digits, '.', '_' or '-'")
    if data["task"] not in TASKS:
        raise CardError(f"{where}: task must be one of {', '.join(TASKS)}")
    src = dict(data["source"])
    _check_types(f"{where} [source]", src, SOURCE_KEYS)
    kind = src.get("kind")
    if kind not in SOURCE_KINDS:
        raise CardError(f"{where} [source]: kind must be one of {', '.join(SOURCE_KINDS)}")
    for key in REQUIRED_SOURCE[kind]:
        if key not in src:
            raise CardError(f"{where} [source]: kind {kind!r} needs {key!r}")
    for key in ("sha256", "member_sha256"):
        if key in src and not _SHA_RE.match(src[key]):
            raise CardError(f"{where} [source]: {key} must be 64 lower-case hex digits")
    if "member" in src:
        if kind != "url":
            raise CardError(f"{where} [source]: 'member' needs kind = \"url\" (an official archive)")
        if not src["filename"].lower().endswith(ARCHIVE_SUFFIXES):
            raise CardError(
                f"{where} [source]: 'member' needs an archive filename ending in {', '.join(ARCHIVE_SUFFIXES)}"
            )
        try:
            check_member_name(src["member"])
        except CardError as e:
            raise CardError(f"{where} [source]: {e}") from None
    elif "member_sha256" in src:
        raise CardError(f"{where} [source]: 'member_sha256' needs a 'member'")
    if "members" in src:
        members = src["members"]
        if "member" in src or kind != "url" or not src["filename"].lower().endswith(ARCHIVE_SUFFIXES):
            raise CardError(
                f"{where} [source]: 'members' needs kind = \"url\", an archive filename and no 'member'"
            )
        if not members or not all(isinstance(m, str) for m in members) or len(set(members)) != len(members):
            raise CardError(f"{where} [source]: 'members' must be a non-empty list of distinct member names")
        try:
            for m in members:
                check_member_name(m)
        except CardError as e:
            raise CardError(f"{where} [source]: {e}") from None
        src["members"] = tuple(members)
    fmt = src.setdefault("format", "safetensors")
    if fmt not in FORMATS:
        raise CardError(f"{where} [source]: format must be one of {', '.join(FORMATS)}")
    if fmt != "safetensors" and "converter" not in src:
        raise CardError(f"{where} [source]: a {fmt} file needs a converter ('module:function')")
    if kind == "hub" and not re.fullmatch(r"[0-9a-f]{40}", src["revision"]):
        raise CardError(f"{where} [source]: a Hub revision must be pinned to a 40-hex commit id")
    fields = {k: v for k, v in data.items() if k != "source"}
    return Card(source=Source(**src), path=path, **fields)


def load_card(path: Path) -> Card:
    """Read and validate one card file."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CardError(f"{path}: not valid TOML ({e})") from None
    except OSError as e:
        raise CardError(f"{path}: cannot read the card ({e.strerror or e})") from None
    card = parse_card(data, where=str(path), path=path)
    if card.id != path.stem:
        raise CardError(f"{path}: id {card.id!r} must equal the file name {path.stem!r}")
    return card


def weights_dir() -> Path:
    """The folder holding cards and bundled weights (``IMGSYNTH_WEIGHTS_DIR`` overrides)."""
    env = os.environ.get("IMGSYNTH_WEIGHTS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "weights"


def load_cards(directory: Path | None = None) -> dict[str, Card]:
    """All cards of ``directory`` (default :func:`weights_dir`), checked as a set.

    Parsed once per process while no card file changes (a command asks several times).
    """
    directory = directory or weights_dir()
    paths = sorted(directory.glob("*.toml"))
    try:
        stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
    except OSError:
        stamp = None
    if stamp is not None and _CACHE.get(str(directory), (None,))[0] == stamp:
        return dict(_CACHE[str(directory)][1])
    cards = _load_cards(paths)
    if stamp is not None:
        _CACHE[str(directory)] = (stamp, dict(cards))
    return cards


_CACHE: dict[str, tuple[tuple, dict[str, Card]]] = {}


def _load_cards(paths: list[Path]) -> dict[str, Card]:
    cards: dict[str, Card] = {}
    for path in paths:
        card = load_card(path)
        cards[card.id] = card
    defaults: dict[str, str] = {}
    for card in cards.values():
        keys = ([card.arch] if card.default else []) + ([f"task {card.task}"] if card.task_default else [])
        for key in keys:
            if key in defaults:
                raise CardError(f"{key!r} has two default cards: {defaults[key]} and {card.id}")
            defaults[key] = card.id
    return cards


def get_card(model_id: str, cards: dict[str, Card] | None = None) -> Card:
    """The card ``model_id`` (or the default card of architecture ``model_id``).

    Raises :class:`UnknownModelError` with the closest id as a suggestion.
    """
    cards = load_cards() if cards is None else cards
    if model_id in cards:
        return cards[model_id]
    for card in cards.values():
        if card.arch == model_id and card.default:
            return card
    names = list(cards) + sorted({c.arch for c in cards.values()})
    close = difflib.get_close_matches(model_id, names, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else "; see `imgsynth models list`"
    raise UnknownModelError(f"unknown model {model_id!r}{hint}")


def default_card(task: str, cards: dict[str, Card] | None = None) -> Card:
    """The default card of a task (the first default in id order)."""
    cards = load_cards() if cards is None else cards
    for card in cards.values():
        if card.task == task and card.task_default:
            return card
    raise UnknownModelError(f"no default model for {task!r}; pass --model (see `imgsynth models list --task {task}`)")
