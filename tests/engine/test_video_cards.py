"""The official video checkpoints as cards: released configs, and end to end from cached official files.

The released files cannot be downloaded here (Google Drive). The conformance weights
(``../shared/conformance``: official key layouts, random values, reduced widths) stand in for them:
each test packs them the way the release is packed (NVIDIA: a zip with one ``latest_net_G<s>.pth``
per scale plus the single-image ``netG_i``; imaginaire: a trainer checkpoint whose ``net_G`` holds
``module.*`` and ``averaged_model.*``), hands the file to ``imgsynth models download --from-file``,
loads the card's model offline and compares it with the recorded official outputs.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from imgsynth.cli.main import app
from imgsynth.convert import get_converter
from imgsynth.convert import imaginaire as imaginaire_convert
from imgsynth.convert import vid2vid as vid2vid_convert
from imgsynth.convert.pix2pix import full_config
from imgsynth.convert.spade import fold_spectral_norm
from imgsynth.engine.cards import load_cards
from imgsynth.engine.fetch import cache_state, members_paths
from imgsynth.engine.loading import load_model
from imgsynth.models.registry import build_model

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "conformance" / "data"
CARDS = load_cards(ROOT / "weights")
runner = CliRunner()
ATOL = 1e-4


def _shared() -> None:
    if not DATA.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {DATA} is missing")
        pytest.skip(f"{DATA} not found (conformance data lives beside the repo, not in it)")


def _manifest(name: str) -> dict:
    return json.loads((DATA / f"{name}.manifest.json").read_text())


def _safetensors(name: str, kind: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(DATA / f"{name}.{kind}.safetensors"))


def _meta(shapes: dict) -> dict[str, torch.Tensor]:
    return {k: torch.empty(v["shape"], dtype=getattr(torch, v["dtype"]), device="meta") for k, v in shapes.items()}


def _pth(sd: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(sd, buf)  # BaseModel.save_network / imaginaire save_checkpoint: torch.save
    return buf.getvalue()


def _close(got: torch.Tensor, ref: torch.Tensor) -> None:
    err = float((got.double() - ref.double()).abs().max())
    assert err <= ATOL * max(1.0, float(ref.abs().max())), err


def _cli(*args, code: int = 0):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == code, res.output
    return res


def _load_meta(card, state) -> None:
    with torch.device("meta"):
        net = build_model(card.arch, card.config)
    net.load_state_dict(state, strict=True, assign=True)


# --- the released configs (key/shape lists of the full models, meta tensors: no memory) -----------------


@pytest.mark.parametrize("card_id, name", [("vid2vid-label2city-2048", "vid2vid_composite_local2"),
                                           ("vid2vid-label2city-1024-g1", "vid2vid_composite_fg")])
def test_vid2vid_cards_are_the_released_configs(card_id, name):
    _shared()
    card = CARDS[card_id]
    full = _manifest(name)["full"]
    sd = _meta(full["state_dict"])
    scales = vid2vid_convert.split_scales(sd)
    assert len(scales) == 3 == card.config["n_scales"]
    files = {member: scales[s] for s, member in enumerate(card.source.members)}
    assert [m.rsplit("/", 1)[1] for m in files] == [f"latest_net_G{s}.pth" for s in range(3)]
    inferred = vid2vid_convert.infer_config(vid2vid_convert.merge_files(files), fg_labels=full["options"]["fg_labels"])
    assert {k: full_config(card.arch, card.config)[k] for k in inferred} == inferred
    assert card.config["n_downsample"] == full["options"]["n_downsample_G"]
    assert "non-commercial" in card.license.lower() and card.io["first_frame_model"] in CARDS
    _load_meta(card, get_converter(card.source.converter)(files, dict(card.config)))
    single = CARDS[card.io["first_frame_model"]]
    assert single.source.url == card.source.url and single.source.filename == card.source.filename
    netg_i = _meta(full["netG_i"]["state_dict"])
    arch, cfg = vid2vid_convert.first_frame_config(netg_i)
    assert arch == single.arch and {k: full_config(arch, single.config)[k] for k in cfg} == cfg
    _load_meta(single, get_converter(single.source.converter)(netg_i, dict(single.config)))


def _net_g(module_sd: dict, averaged: dict) -> dict:
    """imaginaire ``save_checkpoint``: {'net_G': ModelAverage state, 'net_D': ..., 'current_epoch': ...}."""
    net_g = {f"module.{k}": v for k, v in module_sd.items()}
    net_g.update({f"averaged_model.{k}": v for k, v in averaged.items()})
    net_g["num_updates_tracked"] = torch.tensor(12)
    return {"net_G": net_g, "net_D": {"module.fc.weight": torch.zeros(1)}, "current_epoch": 3, "current_iteration": 12}


@pytest.mark.parametrize("card_id, name, infer", [
    ("imaginaire-vid2vid-cityscapes", "imaginaire_vid2vid", imaginaire_convert.infer_vid2vid_config),
    ("fs-vid2vid-faceforensics", "imaginaire_fs_vid2vid", imaginaire_convert.infer_fs_config),
])
def test_imaginaire_cards_are_the_released_configs(card_id, name, infer):
    _shared()
    card = CARDS[card_id]
    full = _manifest(name)["full"]
    module_sd = _meta(full["state_dict"])
    averaged = _meta(full["checkpoint_net_G_keys"]["averaged_model_state_dict"])
    assert not any(k.endswith("weight_orig") for k in averaged)
    flow = full["options"]["gen"]["flow"]["flow_output_multiplier"]
    assert card.config["flow_multiplier"] == flow
    for checkpoint in (_net_g(module_sd, averaged), module_sd):
        inferred = infer(checkpoint, flow_multiplier=flow)
        assert {k: full_config(card.arch, card.config)[k] for k in inferred} == inferred
        _load_meta(card, get_converter(card.source.converter)(checkpoint, dict(card.config)))
    assert "non-commercial" in card.license.lower()


# --- end to end from the cached official files ---------------------------------------------------------


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_vid2vid_models_g1_zip_end_to_end(cards_dir, tmp_path, copy_card):
    """models_g1.zip: the video card's scale files and the first-frame card's netG_i from one archive."""
    _shared()
    g = _safetensors("vid2vid_composite_fg", "weights")
    single = _safetensors("vid2vid_single_G", "weights")
    member = "label2city_1024_g1/latest_net_G0.pth"
    archive = tmp_path / "Downloads" / "models_g1.zip"
    archive.parent.mkdir()
    archive.write_bytes(_zip({member: _pth(g), "label2city_single/latest_net_G_1024.pth": _pth(single),
                              "label2city_1024_g1/opt.txt": b"n_scales_spatial: 1\n"}))
    video_cfg = vid2vid_convert.infer_config(g, fg_labels=[3, 4])
    _, single_cfg = vid2vid_convert.first_frame_config(single)
    video = copy_card(CARDS["vid2vid-label2city-1024-g1"], video_cfg, members=[member])
    first = copy_card(CARDS["vid2vid-label2city-single-1024"], single_cfg)
    assert cache_state(video) == cache_state(first) == "not cached"
    _cli("models", "download", video.id, first.id, "--from-file", archive)
    assert cache_state(video) == cache_state(first) == "cached"
    assert [p.read_bytes() for p in members_paths(video)] == [_pth(g)]

    rec = _safetensors("vid2vid_composite_fg", "io")
    gen = load_model("translate-video", model=video.id, offline=True).model
    with torch.no_grad():
        out = gen(rec["eval_step_b2/in/input"], rec["eval_step_b2/in/img_prev"])
    for got, key in zip(out[:4], ("img_final", "flow", "weight", "img_raw")):
        _close(got, rec[f"eval_step_b2/out/{key}"])
    rec1 = _safetensors("vid2vid_single_G", "io")
    net_i = load_model("translate", model=first.id, offline=True).model
    with torch.no_grad():
        _close(net_i(rec1["eval_b1/in/input_label"]), rec1["eval_b1/out/out0"])


def test_vid2vid_two_scale_zip_end_to_end(cards_dir, tmp_path, copy_card):
    """One file per scale (coarsest G0 first), merged by the card's converter into one network."""
    _shared()
    w = _safetensors("vid2vid_composite_local2", "weights")
    scales = vid2vid_convert.split_scales(w)
    members = [f"label2city_2048/latest_net_G{s}.pth" for s in range(2)]
    archive = tmp_path / "models.zip"
    archive.write_bytes(_zip({m: _pth(scales[s]) for s, m in enumerate(members)}))
    card = copy_card(CARDS["vid2vid-label2city-2048"], vid2vid_convert.infer_config(w, fg_labels=[3, 4]),
                     members=members)
    _cli("models", "download", card.id, "--from-file", archive)
    gen = load_model("translate-video", model=card.id, offline=True).model
    rec = _safetensors("vid2vid_composite_local2", "io")
    with torch.no_grad():
        out = gen(rec["eval_step_b2/in/label_fine"], [rec["eval_step_b2/in/img_prev_coarse"], rec["eval_step_b2/in/img_prev_fine"]])
    _close(out.image, rec["eval_step_b2/out/img_final"])
    _close(out.scales[0].image, rec["eval_step_b2/out/img_final_coarse"])
    # a lone scale file is not the archive this card needs: one line, nothing cached changes
    lone = tmp_path / "latest_net_G0.pth"
    lone.write_bytes(_pth(scales[0]))
    res = _cli("models", "download", card.id, "--from-file", lone, code=1)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "needs that archive" in lines[0]


def _averaged(module_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``averaged_model.*``: the same modules with spectral norm removed (weight = weight_orig / sigma)."""
    out = {}
    for k, v in module_sd.items():
        if k.endswith(("weight_u", "weight_v")):
            continue
        if k.endswith(".weight_orig"):
            base = k[: -len("_orig")]
            out[base] = fold_spectral_norm(v, module_sd[base + "_u"], module_sd[base + "_v"])
        else:
            out[k] = v
    return out


@pytest.mark.parametrize("card_id, name, case", [
    ("imaginaire-vid2vid-cityscapes", "imaginaire_vid2vid", "eval_step_b2"),
    ("fs-vid2vid-faceforensics", "imaginaire_fs_vid2vid", "eval_step_k1_b2"),
])
def test_imaginaire_checkpoint_end_to_end(cards_dir, tmp_path, copy_card, card_id, name, case):
    """A trainer checkpoint: the card uses averaged_model.* (module.* is made different here to prove it)."""
    _shared()
    module_sd = _safetensors(name, "weights")
    averaged = _averaged(module_sd)
    scrambled = {k: (v * 2 if v.is_floating_point() else v) for k, v in module_sd.items()}
    ckpt = tmp_path / card_id / CARDS[card_id].source.filename
    ckpt.parent.mkdir()
    ckpt.write_bytes(_pth(_net_g(scrambled, averaged)))
    infer = imaginaire_convert.infer_vid2vid_config if "fs" not in name else imaginaire_convert.infer_fs_config
    opts = _manifest(name)["options"]
    card = copy_card(CARDS[card_id], infer(module_sd, flow_multiplier=opts["gen"]["flow"]["flow_output_multiplier"]))
    _cli("models", "download", card.id, "--from-file", ckpt)
    gen = load_model("translate-video", model=card.id, offline=True).model
    rec = _safetensors(name, "io")
    spec = next(c for c in _manifest(name)["cases"] if c["name"] == case)
    with torch.no_grad():
        out = [t for t in gen(*[rec[f"{case}/in/{n}"] for n in spec["inputs"]]) if t is not None]
    for got, key in zip(out, spec["outputs"]):
        _close(got, rec[f"{case}/out/{key}"])


@pytest.mark.parametrize("source, pattern", [
    ({"members": ["a.pth"], "filename": "x.pth"}, "archive filename"),
    ({"members": ["a.pth"], "member": "a.pth"}, "no 'member'"),
    ({"members": []}, "non-empty"),
    ({"members": ["a.pth", "a.pth"]}, "distinct"),
    ({"members": ["../a.pth"]}, "relative path"),
])
def test_members_schema(source, pattern):
    from imgsynth.engine.cards import parse_card
    from imgsynth.errors import CardError

    src = {"kind": "url", "url": "https://example.org/m.zip", "filename": "m.zip", "format": "pth",
           "converter": "vid2vid:from_official_files", **source}
    with pytest.raises(CardError, match=pattern):
        parse_card({"id": "v", "arch": "vid2vid", "task": "translate-video", "title": "t", "license": "x",
                    "source": src})
