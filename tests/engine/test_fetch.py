"""Weights from the Hub (a loopback server), official URLs and bundled files; sha256; offline."""

from __future__ import annotations

import hashlib

import pytest

from imgsynth.engine.cards import parse_card
from imgsynth.engine.fetch import cache_state, fetch_file, resolve_weights
from imgsynth.errors import WeightsError

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"


def hub_card(sha=None, repo="acme/tiny", filename="model.safetensors", revision=COMMIT, **src):
    source = {"kind": "hub", "repo_id": repo, "filename": filename, "revision": revision, **src}
    if sha:
        source["sha256"] = sha
    return parse_card({"id": "tiny", "arch": "dcgan", "task": "sample", "title": "t", "license": "MIT",
                       "source": source})


def test_download_cache_and_offline_reuse(hub_server):
    sha = hub_server.add("acme/tiny", "model.safetensors", b"weights-v1", revision=COMMIT)
    card = hub_card(sha)
    assert cache_state(card) == "not cached"
    path = fetch_file(card)
    assert path.read_bytes() == b"weights-v1"
    assert cache_state(card) == "cached"
    served = hub_server.requests
    again = fetch_file(card, offline=True)
    assert again == path and hub_server.requests == served  # no network for a cached, pinned file


def test_env_offline_is_honoured(hub_server, monkeypatch):
    sha = hub_server.add("acme/tiny", "model.safetensors", b"w", revision=COMMIT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="offline.*imgsynth models download tiny"):
        fetch_file(hub_card(sha))
    assert hub_server.requests == 0


def test_revision_pinning_picks_the_pinned_commit(hub_server):
    hub_server.add("acme/tiny", "model.safetensors", b"old", revision=COMMIT, aliases=())
    hub_server.add("acme/tiny", "model.safetensors", b"new", revision=OTHER, aliases=("main",))
    card = hub_card(hashlib.sha256(b"old").hexdigest())
    assert fetch_file(card).read_bytes() == b"old"
    # an explicit --revision overrides the pin (and skips the pinned sha256)
    assert fetch_file(card, revision="main").read_bytes() == b"new"


def test_wrong_sha256_is_refused(hub_server):
    hub_server.add("acme/tiny", "model.safetensors", b"tampered", revision=COMMIT)
    with pytest.raises(WeightsError, match="sha256 .* does not match card 'tiny'"):
        fetch_file(hub_card("0" * 64))


@pytest.mark.parametrize("repo,filename,revision,pattern", [
    ("acme/missing", "model.safetensors", COMMIT, "repository 'acme/missing' not found"),
    ("acme/tiny", "nope.safetensors", COMMIT, "file 'nope.safetensors' not found"),
    ("acme/tiny", "model.safetensors", OTHER, "revision .* not found"),
])
def test_404_is_explained(hub_server, repo, filename, revision, pattern):
    hub_server.add("acme/tiny", "model.safetensors", b"w", revision=COMMIT)
    with pytest.raises(WeightsError, match=pattern):
        fetch_file(hub_card(repo=repo, filename=filename, revision=revision))


def test_offline_without_cache_says_what_to_do(hub_server):
    with pytest.raises(WeightsError, match=r"not in the cache and we are offline: run `imgsynth models download tiny`"):
        fetch_file(hub_card("1" * 64), offline=True)


def test_official_url_download_and_cache(hub_server):
    url = hub_server.add_plain("/files/ckpt/model.safetensors", b"url-weights")
    card = parse_card({"id": "u", "arch": "dcgan", "task": "sample", "title": "t", "license": "MIT",
                       "source": {"kind": "url", "url": url, "filename": "model.safetensors",
                                  "sha256": hashlib.sha256(b"url-weights").hexdigest()}})
    path = fetch_file(card)
    assert path.read_bytes() == b"url-weights"
    n = hub_server.requests
    assert fetch_file(card, offline=True) == path and hub_server.requests == n


def test_official_url_404(hub_server):
    card = parse_card({"id": "u", "arch": "dcgan", "task": "sample", "title": "t", "license": "MIT",
                       "source": {"kind": "url", "url": f"{hub_server.endpoint}/files/none.pth",
                                  "filename": "none.pth", "format": "pth", "converter": "dcgan:from_examples"}})
    with pytest.raises(WeightsError, match="HTTP 404"):
        fetch_file(card)


def test_bundled_file_checked(cards_dir):
    (cards_dir / "w.safetensors").write_bytes(b"abc")
    good = parse_card({"id": "b", "arch": "dcgan", "task": "sample", "title": "t", "license": "MIT",
                       "source": {"kind": "bundled", "path": "w.safetensors",
                                  "sha256": hashlib.sha256(b"abc").hexdigest()}})
    assert fetch_file(good) == cards_dir / "w.safetensors"
    assert resolve_weights(good) == cards_dir / "w.safetensors"
    (cards_dir / "w.safetensors").write_bytes(b"abd")
    with pytest.raises(WeightsError, match="does not match"):
        fetch_file(good)


def test_html_page_instead_of_weights_is_refused_and_not_cached(hub_server):
    url = hub_server.add_plain("/files/drive/1000000.pth", b"<!DOCTYPE html><html>confirm download</html>")
    card = parse_card({"id": "d", "arch": "pconv_unet", "task": "inpaint", "title": "t", "license": "MIT",
                       "source": {"kind": "url", "url": url, "filename": "1000000.pth", "format": "pth",
                                  "converter": "pconv:from_naoto"}})
    with pytest.raises(WeightsError, match="answered with a web page"):
        fetch_file(card)
    assert cache_state(card) == "not cached"
