"""Fetching weight files: bundled, from the Hugging Face Hub, or from an official URL.

Hub files go through ``hf_hub_download`` into the standard cache (``HF_HOME`` / ``HF_HUB_CACHE``,
``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` are read at call time, so a process can point at a mirror
or a loopback server). Official URLs land in the same cache under ``imgsynth-url/``; when the URL
is an archive, the card's ``member`` is extracted once beside it (that one entry only, streamed,
size-limited, never a link) and the archive is kept for the other cards that share it. Every file
is checked against the card's sha256 (the Hub client does not do that), and files that are not
safetensors are converted once, through ``imgsynth.convert``, into ``imgsynth-converted/``.

Some official files live on Google Drive, which answers a script with a confirmation page instead
of a large file. :func:`install_from_file` takes the file a user saved in a browser (the archive or
the member itself), checks it and puts it where the download would have gone
(``imgsynth models download ID --from-file PATH``); everything after that runs offline.
This module does not import torch unless a conversion is needed.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from imgsynth.engine.cards import Card, check_member_name, weights_dir
from imgsynth.errors import CardError, InputError, UsageError, WeightsError

Progress = Callable[[str], None]

MAX_MEMBER_BYTES = 8 << 30
"""Largest archive member we extract (8 GiB): released generators are well under 1 GiB."""

_DRIVE_HOSTS = ("drive.google.com", "docs.google.com", "drive.usercontent.google.com")


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
    _check_sha256(card, path, card.source.sha256)


def _check_sha256(card: Card, path: Path, want: str | None) -> None:
    if want is None:
        return
    got = sha256_file(path)
    if got != want:
        raise WeightsError(
            f"{path}: sha256 {got[:12]}… does not match card {card.id!r} ({want[:12]}…); "
            f"the file is corrupt or not the pinned release: delete it and run `imgsynth models download {card.id}`"
        )


def is_drive_url(url: str) -> bool:
    """True for Google Drive links, which a script cannot reliably download."""
    return (urllib.parse.urlsplit(url).hostname or "").lower() in _DRIVE_HOSTS


def manual_download_hint(card: Card) -> str:
    """How to get a URL card's file by hand: the URL and the exact ``--from-file`` command."""
    s = card.source
    return (
        f"open {s.url} in a browser, save {s.filename}, then run "
        f"`imgsynth models download {card.id} --from-file {s.filename}`"
    )


def _how_to_get(card: Card) -> str:
    s = card.source
    if s.kind == "url" and is_drive_url(s.url):
        return f"Google Drive serves this file only to a browser: {manual_download_hint(card)}"
    where = f"{s.repo_id}/{s.filename}@{s.revision[:12]}" if s.kind == "hub" else s.url
    hint = (
        f"run `imgsynth models download {card.id}` where the network is reachable "
        f"(it fetches {where} into {hub_cache_dir()}), then copy that cache here or set HF_HOME to it"
    )
    if s.kind == "url":
        hint += f"; or {manual_download_hint(card)}"
    return hint


def _hub_download(card: Card, revision: str | None, offline: bool) -> Path:
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import hf_hub_download

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


def url_path(card: Card) -> Path:
    """Where the file of a URL card's ``url`` lives in the cache (shared by cards with one URL)."""
    s = card.source
    return hub_cache_dir() / "imgsynth-url" / hashlib.sha1(s.url.encode()).hexdigest()[:16] / s.filename


def member_path(card: Card) -> Path:
    """Where a URL card's archive ``member`` is extracted in the cache (beside its archive)."""
    member = check_member_name(card.source.member)
    return _members_dir(card) / Path(*member.split("/"))


def _members_dir(card: Card) -> Path:
    return url_path(card).parent / "members"


def _looks_like_html(first: bytes) -> bool:
    return first.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html"))


def _url_download(card: Card, offline: bool) -> Path:
    s = card.source
    target = url_path(card)
    folder = target.parent
    if target.exists():
        return target
    if offline:
        raise WeightsError(f"model {card.id!r} is not in the cache and we are offline: {_how_to_get(card)}")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".download-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(s.url, timeout=60) as resp:
            ctype = resp.headers.get("Content-Type", "")
            first = resp.read(512)
            if "text/html" in ctype or _looks_like_html(first):
                raise WeightsError(
                    f"model {card.id!r}: {s.url} answered with a web page, not the weights (a download "
                    f"confirmation page?); {manual_download_hint(card)}"
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
    it is the pinned one. For an archive ``member``, the path is the extracted member: the
    archive is downloaded (or found in the cache) and checked against ``sha256``, the member is
    extracted once and checked against ``member_sha256``.
    """
    s = card.source
    offline = offline or env_offline()
    if s.kind == "none":
        raise WeightsError(f"model {card.id!r} has no weights to fetch")
    if s.member is not None:
        return _fetch_member(card, offline)
    if s.members is not None:
        return _fetch_members(card, offline)
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


def _fetch_member(card: Card, offline: bool) -> Path:
    target = member_path(card)
    if not target.exists():
        archive = _url_download(card, offline)
        verify_sha256(card, archive)
        extract_member(archive, card.source.member, target)
    _check_sha256(card, target, card.source.member_sha256)
    return target


def members_paths(card: Card) -> list[Path]:
    """Where a multi-member URL card's ``members`` are extracted in the cache (beside the archive)."""
    return [_members_dir(card) / Path(*check_member_name(m).split("/")) for m in card.source.members]


def _fetch_members(card: Card, offline: bool) -> Path:
    """Extract every member of a multi-member card (once); returns the members folder."""
    targets = members_paths(card)
    if not all(t.exists() for t in targets):
        archive = _url_download(card, offline)
        verify_sha256(card, archive)
        for member, target in zip(card.source.members, targets):
            if not target.exists():
                extract_member(archive, member, target)
    return _members_dir(card)


def _archive_kind(path: Path) -> str | None:
    """``"tar"`` (plain or gzip/bz2/xz-compressed), ``"zip"`` or None, from the file's content."""
    with open(path, "rb") as f:
        head = f.read(6)
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head == b"\xfd7zXZ\x00":
        return "tar"
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        return "tar" if tarfile.is_tarfile(path) else None
    except OSError:
        return None


def _norm_entry(name: str) -> str:
    """An archive entry name as a member name: ``./a/b`` and ``a/b`` are the same entry."""
    while name.startswith("./"):
        name = name[2:]
    return name


def _copy_limited(src: IO[bytes], target: Path, limit: int, what: str) -> None:
    """Stream ``src`` into ``target`` atomically, refusing more than ``limit`` bytes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".extract-", suffix=".tmp")
    try:
        written = 0
        with os.fdopen(fd, "wb") as out:
            while block := src.read(1 << 20):
                written += len(block)
                if written > limit:  # the header's size can lie (zip); count what really comes out
                    raise WeightsError(f"{what} is larger than the {limit} byte limit for an archive member")
                out.write(block)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _archive_entries(archive: Path, kind: str) -> Iterator[tuple[str, str, int, Callable[[], IO[bytes]]]]:
    """(name, "file" | "link" | "other", size, opener) for each entry of a tar or zip archive, read
    lazily (the archive stays open while the caller iterates)."""
    if kind == "tar":
        with tarfile.open(archive, "r:*") as tf:
            for info in tf:
                entry_type = "link" if info.issym() or info.islnk() else "file" if info.isfile() else "other"
                yield info.name, entry_type, info.size, lambda info=info: tf.extractfile(info)
    else:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                entry_type = ("link" if stat.S_ISLNK(info.external_attr >> 16)
                              else "other" if info.is_dir() else "file")
                yield info.filename, entry_type, info.file_size, lambda info=info: zf.open(info)


def extract_member(archive: Path, member: str, target: Path, *, max_bytes: int = MAX_MEMBER_BYTES) -> Path:
    """Extract the one regular file ``member`` of a tar (any compression) or zip archive to ``target``.

    Only that entry is read and it is written to ``target`` (the archive's own paths are never
    used as paths), so other entries, whatever their names, are never written. A link, a folder,
    a device or an entry over ``max_bytes`` is refused with :class:`WeightsError`, as is a
    missing member (naming entries with the same file name, if any) or an unreadable archive.
    """
    try:
        check_member_name(member)
    except CardError as e:
        raise WeightsError(str(e)) from None
    kind = _archive_kind(archive)
    if kind is None:
        raise WeightsError(f"{archive}: not a tar or zip archive (an interrupted download?); delete it and retry")
    where = f"{archive.name}: member {member!r}"
    similar: list[str] = []
    try:
        for raw_name, entry_type, size, open_entry in _archive_entries(archive, kind):
            name = _norm_entry(raw_name)
            if name != member:
                if name.rsplit("/", 1)[-1] == member.rsplit("/", 1)[-1]:
                    similar.append(raw_name)
                continue
            if entry_type == "link":
                raise WeightsError(f"{where} is a link, not a file; refusing to follow it")
            if entry_type != "file":
                raise WeightsError(f"{where} is not a regular file")
            if size > max_bytes:
                raise WeightsError(f"{where} is {size} bytes, over the {max_bytes} byte limit")
            with open_entry() as src:
                _copy_limited(src, target, max_bytes, where)
            return target
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError) as e:
        raise WeightsError(f"{archive}: damaged archive ({e}); delete it and retry") from None
    except OSError as e:
        if e.errno is not None:  # the system refused (disk full, permissions), not the archive
            raise WeightsError(f"{where}: cannot extract to {target.parent}: {e.strerror}") from None
        raise WeightsError(f"{archive}: damaged archive ({e}); delete it and retry") from None
    hint = f" (entries with that file name: {', '.join(similar[:3])})" if similar else ""
    raise WeightsError(f"{archive.name} has no member {member!r}{hint}")


def install_from_file(card: Card, path: Path) -> tuple[Path, bool]:
    """Put a file the user downloaded by hand where fetching the card's URL would have put it.

    ``path`` is the card's file, or, for an archive card, either the archive or the member
    itself. It is checked (not a web page; the card's sha256 or member_sha256 when pinned; the
    archive must hold the member) before anything is placed, then copied into the cache (the
    user's file stays where it is). Returns the cache path of the card's file (the member for an
    archive card) and whether a sha256 was verified.
    """
    s = card.source
    if s.kind != "url":
        raise UsageError(f"model {card.id!r}: --from-file is for cards with an official URL, not {s.kind!r} weights")
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path}: no such file (--from-file needs the file you downloaded)")
    with open(path, "rb") as f:
        if _looks_like_html(f.read(512)):
            raise WeightsError(
                f"{path} is a web page, not the weights (Google Drive's confirmation page?); "
                f"download {s.url} again in a browser and confirm the download"
            )
    kind = _archive_kind(path) if (s.member is not None or s.members is not None) else None
    is_archive = kind == "tar" or (kind == "zip" and all(_zip_has(path, m) for m in (s.members or [s.member])))
    if s.members is not None and not is_archive:
        raise UsageError(
            f"model {card.id!r} is made of {len(s.members)} files inside {s.filename}: --from-file needs that "
            f"archive ({', '.join(s.members)})"
        )
    if s.member is not None and not is_archive:
        target, want = member_path(card), s.member_sha256
    else:
        target, want = url_path(card), s.sha256
    digest = sha256_file(path)
    if want is not None and digest != want:
        raise WeightsError(
            f"{path}: sha256 {digest[:12]}… does not match card {card.id!r} ({want[:12]}…): "
            "not the release the card pins (a different or incomplete download?)"
        )
    same = target.exists() and (
        os.path.samefile(target, path)
        or (target.stat().st_size == path.stat().st_size and sha256_file(target) == digest)
    )
    if not same:
        if is_archive:
            # members extracted from an older copy of the archive (for any card sharing it) are
            # stale; extracting from the user's file first proves the archive holds the member
            shutil.rmtree(_members_dir(card), ignore_errors=True)
            if s.members is not None:
                for member, target_i in zip(s.members, members_paths(card)):
                    extract_member(path, member, target_i)
            else:
                extract_member(path, s.member, member_path(card))
        _copy_into(path, target)
    return fetch_file(card, offline=True), want is not None


def _copy_into(path: Path, target: Path) -> None:
    """Copy ``path`` to ``target`` atomically (a partial copy never has the target's name)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".copy-", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(path, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _zip_has(path: Path, member: str) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(_norm_entry(n) == member for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def resolve_weights(card: Card, *, revision: str | None = None, offline: bool = False) -> Path:
    """A safetensors file for the card: the fetched file, or its one-time converted copy."""
    path = fetch_file(card, revision=revision, offline=offline)
    if card.source.format == "safetensors":
        return path
    pinned = card.source.member_sha256 if card.source.member is not None else card.source.sha256
    if pinned:
        digest = pinned
    elif card.source.members is not None:  # unpinned: key the conversion on the members' identities
        ident = "|".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in members_paths(card))
        digest = hashlib.sha256(ident.encode()).hexdigest()
    else:  # unpinned: key the conversion on the file's identity instead of re-hashing it each run
        st = path.stat()
        digest = hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    converted = hub_cache_dir() / "imgsynth-converted" / f"{card.id}-{digest[:16]}.safetensors"
    if not converted.exists():
        from imgsynth.convert.official import convert_file

        if card.source.members is not None:
            files = dict(zip(card.source.members, members_paths(card)))
            convert_file(path, card.source.format, card.source.converter, card.config, converted, members=files)
        else:
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
        # an archive member is extracted offline on first use, so a cached archive is enough
        present = url_path(card).exists() or (s.member is not None and member_path(card).exists()) or (
            s.members is not None and all(p.exists() for p in members_paths(card))
        )
    return "cached" if present else "not cached"
