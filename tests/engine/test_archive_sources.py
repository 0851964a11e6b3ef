"""Official weights inside an archive (SPADE's checkpoints.tar.gz) and files downloaded by hand.

The conformance weights (``../shared/conformance``: the official SPADE key layout, random values,
reduced widths) stand in for the released generators: each test writes them with ``torch.save``
as the official ``latest_net_G.pth``, packs them the way the release is packed, serves or hands the
archive to imgsynth, and compares what ``imgsynth translate`` writes with the recorded official
output. Archives with hostile entries check that only the card's one member is ever written.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from imgsynth.cli.main import app
from imgsynth.convert import get_converter, spade
from imgsynth.engine.cards import load_cards, parse_card
from imgsynth.engine.fetch import (
    cache_state,
    extract_member,
    fetch_file,
    hub_cache_dir,
    install_from_file,
    member_path,
    url_path,
)
from imgsynth.engine.loading import load_model
from imgsynth.errors import CardError, UsageError, WeightsError
from imgsynth.models.registry import build_model

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "conformance" / "data"
CARDS = load_cards(ROOT / "weights")
SPADE_CARDS = {"spade-coco": "coco", "spade-ade20k": "ade20k", "spade-cityscapes": "cityscapes"}
MEMBER = "ade20k_pretrained/latest_net_G.pth"
runner = CliRunner()


def _shared() -> None:
    if not DATA.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {DATA} is missing")
        pytest.skip(f"{DATA} not found (conformance data lives beside the repo, not in it)")






def _tar(entries: list[tuple[str, bytes | str]]) -> bytes:
    """A .tar.gz of regular files (bytes) and symlinks (str: the link target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tf:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if isinstance(data, str):
                info.type, info.linkname = tarfile.SYMTYPE, data
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def ade20k():
    """The reduced ade20k generator as the official latest_net_G.pth, its config and recorded case."""
    _shared()
    from safetensors.torch import load_file

    sd = load_file(str(DATA / "spade_ade20k.weights.safetensors"))
    rec = load_file(str(DATA / "spade_ade20k.io.safetensors"))
    buf = io.BytesIO()
    torch.save(sd, buf)  # util.save_network: torch.save(netG.state_dict())
    pth = buf.getvalue()
    archive = _tar([("./ade20k_pretrained/opt.txt", b"label_nc: 150\n"), (f"./{MEMBER}", pth),
                    ("./coco_pretrained/latest_net_G.pth", b"another release")])
    config = spade.infer_config(sd, dataset="ade20k", crop_size=64)
    return {"pth": pth, "archive": archive, "config": config, "rec": rec}


def _labels(tmp_path: Path, rec: dict) -> Path:
    """The recorded label maps as ADE20K annotation PNGs (raw values: SPADE's label + 1)."""
    src = tmp_path / "labels"
    src.mkdir()
    for i in range(2):
        Image.fromarray((rec["eval_b2/aux/label"][i, 0].numpy() + 1).astype(np.uint8)).save(src / f"a{i}.png")
    return src


def _check_outputs(out: Path, rec: dict) -> None:
    ref = rec["eval_b2/out/out0"]
    for i in range(2):
        got = np.asarray(Image.open(out / f"a{i}.png").convert("RGB")).astype(np.int32)
        want = ((ref[i].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
        assert got.shape == (64, 64, 3)
        assert np.abs(got - want.astype(np.int32)).max() <= 1


def _cli(*args, code: int = 0):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == code, res.output
    return res


def _one_line_error(res, *needles: str) -> None:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# --- the three cards ------------------------------------------------------------------------------


@pytest.mark.parametrize("card_id", sorted(SPADE_CARDS))
def test_spade_card_is_the_released_config(card_id):
    """The card's config is what the official options give, and its converter maps the released
    key/shape list exactly onto the network the card builds (meta tensors: no memory)."""
    _shared()
    card = CARDS[card_id]
    s = card.source
    assert s.member == f"{SPADE_CARDS[card_id]}_pretrained/latest_net_G.pth" and s.filename == "checkpoints.tar.gz"
    assert "non-commercial" in card.license.lower() and card.license.startswith("CC BY-NC-SA 4.0")
    assert url_path(card) == url_path(CARDS["spade-coco"])  # one archive, downloaded once for all three
    manifest = json.loads((DATA / f"spade_{SPADE_CARDS[card_id]}.manifest.json").read_text())
    shapes = {k: torch.empty(v["shape"], device="meta") for k, v in manifest["full"]["state_dict"].items()}
    assert spade.infer_config(shapes, dataset=SPADE_CARDS[card_id]) == card.config
    opts = manifest["full"]["options"]
    assert card.config["label_nc"] == opts["label_nc"] and card.config["crop_size"] == opts["crop_size"]
    assert card.config["use_instance"] == (not opts["no_instance"])
    assert card.config["contain_dontcare"] == opts["contain_dontcare_label"]
    assert card.config["num_upsampling_layers"] == opts["num_upsampling_layers"]
    state = get_converter(s.converter)(shapes, dict(card.config))
    with torch.device("meta"):
        net = build_model(card.arch, card.config)
    net.load_state_dict(state, strict=True, assign=True)
    assert tuple(net.output_size(1, 1)) == tuple(manifest["full"]["output_hw"])


# --- download, extract once, convert once ---------------------------------------------------------


def test_archive_served_once_then_everything_offline(cards_dir, tmp_path, hub_server, ade20k, copy_card):
    url = hub_server.add_plain("/files/drive/checkpoints.tar.gz", ade20k["archive"])
    card = copy_card(CARDS["spade-ade20k"], ade20k["config"], url=url)
    src, out = _labels(tmp_path, ade20k["rec"]), tmp_path / "out"
    _cli("translate", src, "--model", card.id, "-o", out)
    assert hub_server.requests == 1
    _check_outputs(out, ade20k["rec"])
    # only the card's member was written, under the cache's own name for it
    members = url_path(card).parent / "members"
    assert [p.relative_to(members).as_posix() for p in members.rglob("*") if p.is_file()] == [MEMBER]
    assert member_path(card).read_bytes() == ade20k["pth"]
    converted = sorted((hub_cache_dir() / "imgsynth-converted").glob("spade-ade20k-*.safetensors"))
    assert len(converted) == 1
    before = converted[0].stat()
    # a second run (network allowed) makes no request and converts nothing again
    _cli("translate", src, "--model", card.id, "-o", out, "--overwrite")
    assert hub_server.requests == 1
    after = converted[0].stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    _check_outputs(out, ade20k["rec"])
    # the exact recorded input through the model the card loads
    net = load_model("translate", model=card.id, offline=True).model
    rec = ade20k["rec"]
    with torch.no_grad():
        got = net(rec["eval_b2/in/input_semantics"])
    assert float((got - rec["eval_b2/out/out0"]).abs().max()) <= 1e-4


def test_missing_member_is_one_line(cards_dir, tmp_path, hub_server, ade20k, copy_card):
    archive = _tar([("ade20k/latest_net_G.pth", b"x"), ("other.txt", b"y")])
    url = hub_server.add_plain("/files/drive/checkpoints.tar.gz", archive)
    card = copy_card(CARDS["spade-ade20k"], ade20k["config"], url=url)
    res = _cli("translate", _labels(tmp_path, ade20k["rec"]), "--model", card.id, "-o", tmp_path / "o", code=1)
    _one_line_error(res, f"has no member '{MEMBER}'", "entries with that file name: ade20k/latest_net_G.pth")
    assert not member_path(card).exists()


# --- files downloaded by hand --------------------------------------------------------------------


def test_from_file_archive_then_offline(cards_dir, tmp_path, monkeypatch, ade20k, copy_card):
    """The Google Drive card with nothing cached says what to do; doing it makes translate work offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    card = copy_card(CARDS["spade-ade20k"], ade20k["config"])
    src, out = _labels(tmp_path, ade20k["rec"]), tmp_path / "out"
    res = _cli("translate", src, "--model", card.id, "-o", out, code=1)
    _one_line_error(res, card.source.url, "imgsynth models download spade-ade20k --from-file checkpoints.tar.gz")
    saved = tmp_path / "Downloads" / "checkpoints.tar.gz"
    saved.parent.mkdir()
    saved.write_bytes(ade20k["archive"])
    res = _cli("models", "download", card.id, "--from-file", saved)
    converted = Path(res.stdout.strip())
    assert converted.suffix == ".safetensors" and converted.exists()
    assert "pins no sha256" in res.stderr
    assert saved.exists() and url_path(card).read_bytes() == ade20k["archive"]
    _cli("translate", src, "--model", card.id, "--offline", "-o", out)
    _check_outputs(out, ade20k["rec"])


def test_from_file_member_checks_its_sha256(cards_dir, tmp_path, ade20k, copy_card):
    """The extracted latest_net_G.pth is accepted too, checked against member_sha256."""
    pth = tmp_path / "latest_net_G.pth"
    pth.write_bytes(ade20k["pth"])
    wrong = copy_card(CARDS["spade-ade20k"], ade20k["config"], member_sha256="0" * 64)
    res = _cli("models", "download", wrong.id, "--from-file", pth, code=1)
    _one_line_error(res, "does not match card 'spade-ade20k'")
    assert cache_state(wrong) == "not cached"
    good = copy_card(CARDS["spade-ade20k"], ade20k["config"],
                       member_sha256=hashlib.sha256(ade20k["pth"]).hexdigest())
    path, verified = install_from_file(good, pth)
    assert verified and path == member_path(good) and not url_path(good).exists()
    net = load_model("translate", model=good.id, offline=True).model
    assert net.label_nc == 150


def test_from_file_plain_drive_card(cards_dir, tmp_path, monkeypatch, make_export):
    """A single-file Drive card (like pconv-places2-naoto): offline hint, web pages refused, then offline use."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    export = make_export("dcgan")
    weights, config = export / "model.safetensors", json.loads((export / "config.json").read_text())["config"]
    url = "https://docs.google.com/uc?export=download&id=abc"
    (cards_dir / "g.toml").write_text(
        'id = "g"\narch = "dcgan"\ntask = "sample"\ntitle = "t"\nlicense = "MIT"\n'
        f'[source]\nkind = "url"\nurl = "{url}"\nfilename = "G.safetensors"\n'
        f'sha256 = "{hashlib.sha256(weights.read_bytes()).hexdigest()}"\n'
        "[config]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in config.items()))  # ints, int lists
    res = _cli("sample", "--model", "g", "--seeds", "0", "-o", tmp_path / "s", code=1)
    _one_line_error(res, url, "imgsynth models download g --from-file G.safetensors")
    page = tmp_path / "G.safetensors"
    page.write_bytes(b"<!DOCTYPE html><html>Google Drive can't scan this file for viruses</html>")
    _one_line_error(_cli("models", "download", "g", "--from-file", page, code=1), "is a web page")
    page.write_bytes(weights.read_bytes())
    res = _cli("models", "download", "g", "--from-file", page)
    assert "matches the card's sha256" in res.stderr
    _cli("sample", "--model", "g", "--seeds", "0", "--offline", "-o", tmp_path / "s")
    assert (tmp_path / "s" / "seed0000.png").exists()


def test_real_drive_cards_name_the_command_and_url(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for card_id, saved in (("pconv-places2-naoto", "1000000.pth"), ("spade-coco", "checkpoints.tar.gz")):
        card = CARDS[card_id]
        with pytest.raises(WeightsError) as err:
            fetch_file(card)
        msg = str(err.value)
        assert "\n" not in msg and card.source.url in msg
        assert f"`imgsynth models download {card_id} --from-file {saved}`" in msg


def test_from_file_refuses_hub_cards():
    card = parse_card({"id": "h", "arch": "dcgan", "task": "sample", "title": "t", "license": "MIT",
                       "source": {"kind": "hub", "repo_id": "a/b", "filename": "f.safetensors",
                                  "revision": "0" * 40}})
    with pytest.raises(UsageError, match="--from-file is for cards with an official URL"):
        install_from_file(card, Path(__file__))


# --- hostile archives and member names -------------------------------------------------------------


@pytest.mark.parametrize("member", ["../latest_net_G.pth", "a/../../b.pth", "/etc/passwd", "a\\b.pth",
                                    "C:/x.pth", "a//b.pth", "./a.pth", ""])
def test_member_names_that_leave_the_archive_are_refused(member):
    source = {"kind": "url", "url": "https://example.org/c.tar.gz", "filename": "c.tar.gz", "member": member,
              "format": "pth", "converter": "spade:from_official"}
    with pytest.raises(CardError, match="must be a relative path") as err:
        parse_card({"id": "x", "arch": "spade", "task": "translate", "title": "t", "license": "MIT",
                    "source": source})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("source,pattern", [
    ({"kind": "url", "url": "https://e.org/a.pth", "filename": "a.pth", "member": "a/b.pth"}, "archive filename"),
    ({"kind": "hub", "repo_id": "a/b", "filename": "c.zip", "revision": "0" * 40, "member": "b.pth"}, "needs kind"),
    ({"kind": "url", "url": "https://e.org/a.pth", "filename": "a.pth", "member_sha256": "0" * 64}, "needs a 'member'"),
    ({"kind": "url", "url": "https://e.org/a.zip", "filename": "a.zip", "member": "b", "member_sha256": "x"}, "64 lower"),
])
def test_member_schema(source, pattern):
    with pytest.raises(CardError, match=pattern):
        parse_card({"id": "x", "arch": "dcgan", "task": "sample", "title": "t", "license": "MIT", "source": source})


def test_traversal_member_in_a_card_file_is_one_line(cards_dir):
    (cards_dir / "evil.toml").write_text(
        'id = "evil"\narch = "spade"\ntask = "translate"\ntitle = "t"\nlicense = "MIT"\n'
        '[source]\nkind = "url"\nurl = "https://e.org/c.tar.gz"\nfilename = "c.tar.gz"\n'
        'member = "../../../.bashrc"\nformat = "pth"\nconverter = "spade:from_official"\n')
    _one_line_error(_cli("models", "list", code=1), "evil.toml", "must be a relative path")


def test_hostile_entries_are_never_written(tmp_path):
    """Entries that climb out, links named like the member, and oversize members are refused;
    nothing but the target is ever created."""
    work = tmp_path / "work"
    work.mkdir()
    target = work / "out" / "member.pth"
    climbing = tmp_path / "a.tar.gz"
    climbing.write_bytes(_tar([("../evil.pth", b"evil"), ("../x/latest_net_G.pth", b"evil")]))
    with pytest.raises(WeightsError, match=r"has no member 'x/latest_net_G.pth' \(entries with that file name"):
        extract_member(climbing, "x/latest_net_G.pth", target)
    link = tmp_path / "b.tar.gz"
    link.write_bytes(_tar([("x/latest_net_G.pth", "/etc/passwd")]))
    with pytest.raises(WeightsError, match="is a link, not a file"):
        extract_member(link, "x/latest_net_G.pth", target)
    big = tmp_path / "c.tar.gz"
    big.write_bytes(_tar([("x/latest_net_G.pth", b"0" * 1000)]))
    with pytest.raises(WeightsError, match="over the 100 byte limit"):
        extract_member(big, "x/latest_net_G.pth", target, max_bytes=100)
    with pytest.raises(WeightsError, match="must be a relative path"):
        extract_member(big, "../latest_net_G.pth", target)
    broken = tmp_path / "d.tar.gz"
    broken.write_bytes(big.read_bytes()[:40])
    with pytest.raises(WeightsError, match="damaged archive"):
        extract_member(broken, "x/latest_net_G.pth", target)
    assert not (tmp_path / "evil.pth").exists() and list(work.rglob("*")) == []
    assert extract_member(big, "x/latest_net_G.pth", target) == target and target.read_bytes() == b"0" * 1000


def test_zip_archives(tmp_path):
    archive = tmp_path / "w.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("w/model.safetensors", b"weights")
        link = zipfile.ZipInfo("w/link.pth")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
    assert extract_member(archive, "w/model.safetensors", tmp_path / "m").read_bytes() == b"weights"
    with pytest.raises(WeightsError, match="is a link"):
        extract_member(archive, "w/link.pth", tmp_path / "l")
    card = parse_card({"id": "z", "arch": "dcgan", "task": "sample", "title": "t", "license": "MIT",
                       "source": {"kind": "url", "url": "https://e.org/w.zip", "filename": "w.zip",
                                  "member": "w/model.safetensors"}})
    path, verified = install_from_file(card, archive)
    assert path.read_bytes() == b"weights" and not verified and url_path(card).exists()
