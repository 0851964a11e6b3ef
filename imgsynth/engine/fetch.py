"""Fetching weight files: bundled, from the Hugging Face Hub, or from an official URL.

Hub files go through ``hf_hub_download`` into the standard cache (``HF_HOME`` / ``HF_HUB_CACHE``,
``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` are read at call time, so a process can point at a mirror
or a loopback server). Official URLs land in the same cache under ``imgsynth-url/``. Every file is
checked against the card's sha256 (the Hub client does not do that), and files that are not
safetensors are converted once, through ``imgsynth.convert``, into ``imgsynth-converted/``.
This module does not import torch unless a conversion is needed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from imgsynth.engine.cards import Card, weights_dir
from imgsynth.errors import WeightsError

Progress = Callable[[str], None]


def hub_cache_dir() -> Path:
    """The Hub cache folder, resolved from the environment now (not at import time)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home) / "hub"


def env_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` asks for no network."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_sha256(card: Card, path: Path) -> None:
    """Raise :class:`WeightsError` unless ``path`` has the card's sha256 (if the card pins one)."""
    want = card.source.sha256
    if want is None:
        return
    got = sha256_file(path)
    if got != want:
        raise WeightsError(
            f"{path}: sha256 {got[:12]}… does not match card {card.id!r} ({want[:12]}…); "
            f"the file is corrupt or not the pinned release: delete it and run `imgsynth models download {card.id}`"
        )


def _how_to_get(card: Card) -> str:
    s = card.source
    where = f"{s.repo_id}/{s.filename}@{s.revision[:12]}" if s.kind == "hub" else s.url
    return (
        f"run `imgsynth models download {card.id}` where the network is reachable "
        f"(it fetches {where} into {hub_cache_dir()}), then copy that cache here or set HF_HOME to it"
    )


def _hub_download(card: Card, revision: str | None, offline: bool) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub import errors as hf_errors

    s = card.source
    rev = revision or s.revision
    try:
        path = hf_hub_download(
            s.repo_id, s.filename, revision=rev, cache_dir=hub_cache_dir(),
            local_files_only=offline, endpoint=os.environ.get("HF_ENDPOINT") or None,
        )
    except hf_errors.LocalEntryNotFoundError:
        if offline:
            raise WeightsError(f"model {card.id!r} is not in the cache and we are offline: {_how_to_get(card)}") from None
        raise WeightsError(
            f"model {card.id!r}: could not reach the Hub for {s.repo_id}/{s.filename} and it is not cached: {_how_to_get(card)}"
        ) from None
    except hf_errors.RepositoryNotFoundError:
        raise WeightsError(f"model {card.id!r}: Hub repository {s.repo_id!r} not found (404)") from None
    except hf_errors.RevisionNotFoundError:
        raise WeightsError(f"model {card.id!r}: revision {rev!r} not found in {s.repo_id!r} (404)") from None
    except (hf_errors.EntryNotFoundError, hf_errors.RemoteEntryNotFoundError):
        raise WeightsError(f"model {card.id!r}: file {s.filename!r} not found in {s.repo_id}@{rev[:12]} (404)") from None
    except hf_errors.HfHubHTTPError as e:
        raise WeightsError(f"model {card.id!r}: Hub download failed: {str(e).splitlines()[0]}") from None
    return Path(path)


def _url_download(card: Card, offline: bool) -> Path:
    s = card.source
    folder = hub_cache_dir() / "imgsynth-url" / hashlib.sha1(s.url.encode()).hexdigest()[:16]
    target = folder / s.filename
    if target.exists():
        return target
    if offline:
        raise WeightsError(f"model {card.id!r} is not in the cache and we are offline: {_how_to_get(card)}")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".download-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(s.url, timeout=60) as resp:  # noqa: S310
            ctype = resp.headers.get("Content-Type", "")
            first = resp.read(512)
            if "text/html" in ctype or first.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
                raise WeightsError(
                    f"model {card.id!r}: {s.url} answered with a web page, not the weights (a download "
                    f"confirmation page?); fetch the file in a browser and put it at {target}"
                )
            out.write(first)
            shutil.copyfileobj(resp, out)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except urllib.error.HTTPError as e:
        raise WeightsError(f"model {card.id!r}: {s.url} answered HTTP {e.code} ({e.reason})") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise WeightsError(f"model {card.id!r}: cannot download {s.url}: {reason}; {_how_to_get(card)}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def fetch_file(card: Card, *, revision: str | None = None, offline: bool = False) -> Path:
    """Local path of the card's original file (downloading it if needed), sha256-verified.

    ``revision`` overrides a Hub card's pinned revision; the sha256 check then applies only if
    it is the pinned one.
    """
    s = card.source
    offline = offline or env_offline()
    if s.kind == "none":
        raise WeightsError(f"model {card.id!r} has no weights to fetch")
    if s.kind == "bundled":
        path = weights_dir() / s.path
        if not path.exists():
            raise WeightsError(f"bundled weights {path} are missing: reinstall imgsynth from a full checkout")
    elif s.kind == "hub":
        path = _hub_download(card, revision, offline)
    else:
        path = _url_download(card, offline)
    if revision is None or revision == s.revision:
        verify_sha256(card, path)
    return path


def resolve_weights(card: Card, *, revision: str | None = None, offline: bool = False) -> Path:
    """A safetensors file for the card: the fetched file, or its one-time converted copy."""
    path = fetch_file(card, revision=revision, offline=offline)
    if card.source.format == "safetensors":
        return path
    if card.source.sha256:
        digest = card.source.sha256
    else:  # unpinned: key the conversion on the file's identity instead of re-hashing it each run
        st = path.stat()
        digest = hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    converted = hub_cache_dir() / "imgsynth-converted" / f"{card.id}-{digest[:16]}.safetensors"
    if not converted.exists():
        from imgsynth.convert.official import convert_file

        convert_file(path, card.source.format, card.source.converter, card.config, converted)
    return converted


def cache_state(card: Card) -> str:
    """One word for ``models list``: bundled / cached / missing / none / unpinned."""
    s = card.source
    if s.kind == "none":
        return "builtin"
    if s.kind == "bundled":
        return "bundled" if (weights_dir() / s.path).exists() else "missing"
    if s.kind == "hub":
        snap = hub_cache_dir() / f"models--{s.repo_id.replace('/', '--')}" / "snapshots" / s.revision / s.filename
        present = snap.exists()
    else:
        present = (hub_cache_dir() / "imgsynth-url" / hashlib.sha1(s.url.encode()).hexdigest()[:16] / s.filename).exists()
    return "cached" if present else "not cached"
