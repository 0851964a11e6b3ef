"""Weight cards: every card in weights/ is valid; the schema refuses what it must."""

from __future__ import annotations

import pytest

from imgsynth.engine.cards import (
    default_card, get_card, load_card, load_cards, parse_card, weights_dir,
)
from imgsynth.errors import CardError, UnknownModelError

BASE = {"id": "x", "arch": "dcgan", "task": "sample", "title": "t", "license": "MIT",
        "source": {"kind": "none"}}


def test_every_bundled_card_is_valid():
    cards = load_cards()
    assert {"telea", "ns", "patchmatch"} <= set(cards)
    for card in cards.values():
        assert card.path.parent == weights_dir()
        if card.source.kind == "bundled":
            assert (weights_dir() / card.source.path).exists(), card.id
            assert card.source.sha256, card.id
        if card.source.kind == "hub":
            assert len(card.source.revision) == 40
    for task in ("inpaint",):
        assert default_card(task, cards).task == task


def test_every_card_arch_is_registered_or_classical():
    from imgsynth.models.registry import list_models
    from imgsynth.pipelines.inpaint import CLASSICAL

    known = set(list_models()) | set(CLASSICAL)
    for card in load_cards().values():
        assert card.arch in known, f"{card.id}: unknown arch {card.arch}"


@pytest.mark.parametrize("change,pattern", [
    ({"colour": "red"}, "unknown key"),
    ({"id": "Bad Id"}, "lower-case"),
    ({"task": "paint"}, "task must be"),
    ({"default": "yes"}, "'default' must be a bool"),
    ({"source": {"kind": "ftp"}}, "kind must be"),
    ({"source": {"kind": "hub", "repo_id": "a/b", "filename": "f"}}, "needs 'revision'"),
    ({"source": {"kind": "hub", "repo_id": "a/b", "filename": "f", "revision": "main"}}, "pinned to a 40-hex"),
    ({"source": {"kind": "bundled", "path": "x.safetensors", "sha256": "abc"}}, "64 lower-case hex"),
    ({"source": {"kind": "url", "url": "http://x/y.pth", "filename": "y.pth", "format": "pth"}}, "needs a converter"),
    ({"source": {"kind": "none", "mirror": "x"}}, "unknown key"),
])
def test_schema_refuses(change, pattern):
    data = {**BASE, **change}
    with pytest.raises(CardError, match=pattern):
        parse_card(data)


def test_missing_required_key():
    data = dict(BASE)
    del data["license"]
    with pytest.raises(CardError, match="missing required key 'license'"):
        parse_card(data)


def test_id_must_match_file_name(tmp_path):
    p = tmp_path / "other.toml"
    p.write_text('id = "x"\narch = "a"\ntask = "sample"\ntitle = "t"\nlicense = "MIT"\n[source]\nkind = "none"\n')
    with pytest.raises(CardError, match="must equal the file name"):
        load_card(p)


def test_invalid_toml(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text("id = \n")
    with pytest.raises(CardError, match="not valid TOML"):
        load_card(p)


def _write(d, cid, extra=""):
    (d / f"{cid}.toml").write_text(
        f'id = "{cid}"\narch = "dcgan"\ntask = "sample"\ntitle = "t"\nlicense = "MIT"\n{extra}[source]\nkind = "none"\n')


def test_at_most_one_default_per_arch(cards_dir):
    _write(cards_dir, "a", "default = true\n")
    _write(cards_dir, "b", "default = true\n")
    with pytest.raises(CardError, match="two default cards"):
        load_cards()


def test_arch_name_resolves_to_its_default(cards_dir):
    _write(cards_dir, "a", "default = true\ntask_default = true\n")
    _write(cards_dir, "b")
    assert get_card("dcgan").id == "a"
    assert default_card("sample").id == "a"
    with pytest.raises(UnknownModelError, match="did you mean 'a'"):
        get_card("aa")
    with pytest.raises(UnknownModelError, match="no default model for 'inpaint'"):
        default_card("inpaint")
