"""Cards of the officially released checkpoints: sound as data, and working end to end from the cache.

The released files cannot be downloaded here. The conformance weights (``../shared/conformance``: the
official key layout, random values, reduced widths) stand in for them: each family test writes a copy
of the official card (same url, filename, format and converter) whose ``config`` is the reduced one,
builds the file the way the official code saves it, puts it where ``imgsynth models download`` leaves
it (or serves it from a loopback URL), and runs the real CLI with ``--model <id> --offline``. Outputs
are compared with the recorded official outputs; the one-time conversion is checked not to repeat.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from imgsynth.cli.main import app
from imgsynth.convert import dcgan, get_converter, pconv, pix2pix, pix2pixhd, progan, stylegan2_pkl
from imgsynth.convert.official import ZooConfig, convert_file, read_official
from imgsynth.engine.cards import Card, load_cards
from imgsynth.engine.fetch import cache_state, hub_cache_dir
from imgsynth.engine.loading import load_model
from imgsynth.errors import WeightsError
from imgsynth.models.registry import build_model, get_model
from imgsynth.pipelines.sample import Sampler, to_uint8

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "weights"
SHARED = ROOT.parent / "shared" / "conformance"
DATA = SHARED / "data"
runner = CliRunner()

OFFICIAL = {c.id: c for c in load_cards(WEIGHTS).values() if c.source.kind == "url"}


def _shared() -> None:
    if not DATA.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {DATA} is missing")
        pytest.skip(f"{DATA} not found (conformance data lives beside the repo, not in it)")


def _manifest(name: str) -> dict:
    return json.loads((DATA / f"{name}.manifest.json").read_text())


def _weights(name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(DATA / f"{name}.weights.safetensors"))


def _io(name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(DATA / f"{name}.io.safetensors"))


def _released_shapes(name: str) -> dict[str, torch.Tensor]:
    """The released config's key/shape list as tensors that cost no memory.

    Meta tensors, except the PConv mask kernels, which the converter checks are all ones: those
    are a broadcast view of a single 1.
    """
    out = {}
    for key, spec in _manifest(name)["full"]["state_dict"].items():
        if key.endswith("mask_conv.weight"):
            out[key] = torch.ones(1).expand(spec["shape"])
        else:
            out[key] = torch.empty(spec["shape"], dtype=getattr(torch, spec["dtype"]), device="meta")
    return out


# --- every official card --------------------------------------------------------------------------


def test_there_are_official_cards_for_every_released_family():
    archs = {c.arch for c in OFFICIAL.values()}
    assert archs >= {"pix2pix_unet", "cyclegan_resnet", "pix2pixhd_local", "pconv_unet", "dcgan", "progan", "stylegan2"}


@pytest.mark.parametrize("card_id", sorted(OFFICIAL))
def test_official_card_is_sound(card_id):
    card = OFFICIAL[card_id]
    s = card.source
    assert s.url.startswith(("http://", "https://")) and s.filename and "/" not in s.filename
    assert s.format in ("pth", "pkl")
    assert callable(get_converter(s.converter))
    assert not card.task_default, "task defaults are bundled weights trained by imgsynth"
    assert get_model(card.arch).task == card.task
    for text in (card.title, card.license, card.paper, card.description, card.dataset, card.official_url):
        assert text.strip()
    if card.arch in ("stylegan2",) or card.license.startswith("CC BY-NC"):
        assert "non-commercial" in card.license.lower()
    # the config is constructor kwargs that build the network (on the meta device: no memory)
    with torch.device("meta"):
        build_model(card.arch, card.config)
    if "palette" in card.io:
        from imgsynth.pipelines.labels import load_palette

        load_palette(card.io["palette"])
    if "normalization" in card.io:
        allowed = ("frame", "running") if card.task == "translate-video" else ("imagenet", "tanh")
        assert card.io["normalization"] in allowed
    if "input" in card.io:
        from imgsynth.pipelines.translate import KINDS

        assert card.io["input"] in KINDS


def _ganzoo(sd):
    return {"config": ZooConfig(), "netG": sd, "avgG": sd}


# card id prefix -> (conformance manifest, config reader, what the official file wraps the state dict in)
RELEASED = {
    "pix2pix-": ("pix2pix_unet256_facades", pix2pix.infer_unet_config, lambda sd: sd),
    "cyclegan-": ("cyclegan_resnet9_horse2zebra", pix2pix.infer_resnet_config, lambda sd: sd),
    "pix2pixhd-label2city-1024p": ("pix2pixhd_local_1024p", pix2pixhd.infer_config, lambda sd: sd),
    "pconv-places2-naoto": ("pconv_unet_places2", pconv.infer_config, lambda sd: {"n_iter": 1, "model": sd}),
    "dcgan-fashiongen": ("dcgan_ganzoo_fashiongen", dcgan.infer_config, _ganzoo),
    "progan-celebahq-256": ("pgan_celebahq256", progan.infer_config, _ganzoo),
    "progan-celebahq-512": ("pgan_celebahq512", progan.infer_config, _ganzoo),
    "stylegan2-ffhq-1024": ("stylegan2ada_ffhq1024", stylegan2_pkl.infer_config, lambda sd: sd),
    "stylegan2-ffhq-256": ("stylegan2ada_ffhq256", stylegan2_pkl.infer_config, lambda sd: sd),
}


def _released(card_id: str):
    for prefix, spec in RELEASED.items():
        if card_id.startswith(prefix):
            return spec
    return None


@pytest.mark.parametrize("card_id", sorted(i for i in OFFICIAL if _released(i)))
def test_card_config_is_the_released_one(card_id):
    """infer_config on the released key/shape list gives the card's config, and the card's converter
    maps that list exactly onto the network the card builds."""
    _shared()
    card = OFFICIAL[card_id]
    name, infer, wrap = _released(card_id)
    sd = _released_shapes(name)
    inferred = infer(sd)
    full = pix2pix.full_config(card.arch, card.config)
    if card.arch == "stylegan2":
        # shapes cannot show conv_clamp / num_fp16_res: the official init_kwargs give the whole config
        official = stylegan2_pkl.config_from_init_kwargs(_manifest(name)["full"]["options"])
        assert full == official
        inferred = {k: v for k, v in inferred.items() if k not in ("conv_clamp", "num_fp16_res")}
    assert {k: full[k] for k in inferred} == inferred
    state = get_converter(card.source.converter)(wrap(sd), dict(card.config))
    with torch.device("meta"):
        net = build_model(card.arch, card.config)
    net.load_state_dict(state, strict=True, assign=True)


def test_progan_cards_follow_the_standard_depths():
    """The GAN-zoo files without a manifest assume the same rule as the two with one."""
    depths = [512, 512, 512, 512, 256, 128, 64, 32, 16]
    for card in OFFICIAL.values():
        if card.arch == "progan":
            n = len(card.config["channels"])
            assert card.config["channels"] == depths[:n]
            name = card.source.filename
            assert f"_s{n - 1}_" in name, (card.id, name)  # GAN-zoo names carry the last scale index


# --- official.py: what may be unpickled ------------------------------------------------------------


class _Arbitrary:
    pass


def test_pth_reader_refuses_anything_but_the_gan_zoo_config(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"netG": {"w": torch.ones(1)}, "extra": _Arbitrary()}, path)
    with pytest.raises(WeightsError, match="not a loadable weights-only checkpoint"):
        read_official(path, "pth")


# --- building files the way the official code saves them -----------------------------------------


@pytest.fixture
def gan_zoo_modules(monkeypatch):
    """``models.utils.config.BaseConfig`` importable while a checkpoint is written (as in the GAN zoo)."""

    class BaseConfig:
        pass

    BaseConfig.__module__, BaseConfig.__qualname__ = "models.utils.config", "BaseConfig"
    mod = types.ModuleType("models.utils.config")
    mod.BaseConfig = BaseConfig
    for name, m in [("models", types.ModuleType("models")), ("models.utils", types.ModuleType("models.utils")),
                    ("models.utils.config", mod)]:
        monkeypatch.setitem(sys.modules, name, m)
    return BaseConfig


def _gan_zoo_file(base_config, state_dict, options: dict) -> bytes:
    """``torch.save(model.getStateDict())``: {'config': BaseConfig, 'netG', 'netD', 'avgG'}."""
    cfg = base_config()
    for k, v in options.items():
        setattr(cfg, k, v)
    buf = io.BytesIO()
    torch.save({"config": cfg, "netG": state_dict, "netD": {}, "avgG": state_dict}, buf)
    return buf.getvalue()


@pytest.fixture
def persistence_modules(monkeypatch):
    """``torch_utils.persistence`` / ``dnnlib.util`` importable while a network pickle is written."""

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("the pickle's reconstruct function must never run")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence = types.ModuleType("torch_utils.persistence")
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj

    class EasyDict(dict):
        pass

    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    util = types.ModuleType("dnnlib.util")
    util.EasyDict = EasyDict
    for name, m in [("torch_utils", types.ModuleType("torch_utils")), ("torch_utils.persistence", persistence),
                    ("dnnlib", types.ModuleType("dnnlib")), ("dnnlib.util", util)]:
        monkeypatch.setitem(sys.modules, name, m)
    return types.SimpleNamespace(reconstruct=_reconstruct_persistent_obj, EasyDict=EasyDict)


def _network_pickle(mods, g: torch.nn.Module, init_kwargs: dict) -> bytes:
    """A snapshot pickled the way ``torch_utils.persistence`` writes one: every module a record
    ``{type, version, module_src, class_name, state=<module __dict__>}``."""

    def easy(d):
        return mods.EasyDict({k: easy(v) if isinstance(v, dict) else v for k, v in d.items()})

    class Pickler(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, torch.nn.Module):
                state = dict(obj.__dict__, _init_args=(), _init_kwargs=easy(init_kwargs if obj is g else {}))
                meta = dict(type="class", version=6, module_src="# training/networks.py\n",
                            class_name="Generator" if obj is g else type(obj).__name__, state=state)
                return mods.reconstruct, (meta,), None
            return NotImplemented

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump({"G": g, "G_ema": g, "augment_pipe": None,
                                   "training_set_kwargs": easy({"resolution": init_kwargs["img_resolution"]})})
    return buf.getvalue()


# --- test cards and the cache ------------------------------------------------------------------------






def _cache(card: Card, data: bytes) -> Path:
    """Put ``data`` where a download of the card's URL lands."""
    assert cache_state(card) == "not cached"
    s = card.source
    path = hub_cache_dir() / "imgsynth-url" / hashlib.sha1(s.url.encode()).hexdigest()[:16] / s.filename
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    assert cache_state(card) == "cached"
    return path


def _converted(card: Card, data: bytes) -> Path:
    """The one converted file of ``card`` (unpinned cards are keyed on the cached file's identity)."""
    found = sorted((hub_cache_dir() / "imgsynth-converted").glob(f"{card.id}-*.safetensors"))
    assert len(found) <= 1, found
    return found[0] if found else hub_cache_dir() / "imgsynth-converted" / f"{card.id}-missing.safetensors"


def _cli(*args) -> None:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


def _twice(card: Card, data: bytes, *args) -> None:
    """Run the CLI twice: the first run converts the official file once, the second reuses it."""
    _cli(*args)
    converted = _converted(card, data)
    assert converted.exists()
    before = converted.stat()
    _cli(*args, "--overwrite")
    after = converted.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in converted.parent.iterdir()) == [converted.name]


def _png(path: Path, rgb: np.ndarray) -> Path:
    Image.fromarray(rgb).save(path)
    return path


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int32)


def _to_rgb(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8, as the translate pipeline writes it."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _close(out: torch.Tensor, ref: torch.Tensor, atol: float = 1e-4) -> None:
    err = float((out - ref).abs().max())
    assert err <= atol * max(1.0, float(ref.abs().max())), err


# --- translate -----------------------------------------------------------------------------------------


def test_pix2pix_facades_end_to_end(cards_dir, tmp_path, copy_card):
    """latest_net_G.pth (plain state dict) -> translate with the official test-time behaviour:
    batch statistics and active dropout, seeded per image (the recorded train_seeded_b1 case)."""
    _shared()
    sd = _weights("pix2pix_unet256_facades")
    card = copy_card(OFFICIAL["pix2pix-facades"], pix2pix.infer_unet_config(sd))
    buf = io.BytesIO()
    torch.save(sd, buf)
    data = buf.getvalue()
    _cache(card, data)
    rec = _io("pix2pix_unet256_facades")
    x, ref = rec["train_seeded_b1/in/x"][0], rec["train_seeded_b1/out/out0"][0]
    src = _png(tmp_path / "labels.png", _to_rgb(x))
    out = tmp_path / "photo.png"
    _twice(card, data, "translate", src, "--model", card.id, "--offline", "--seed", 1234, "-o", out)
    # the input PNG is the recorded input rounded to 8 bits, so the output moves by a few levels
    diff = np.abs(_read(out) - _to_rgb(ref).astype(np.int32))
    assert diff.mean() < 1.0 and diff.max() <= 12, (diff.mean(), diff.max())
    # the exact recorded input through the model the card loaded (eval mode = the --eval case)
    net = load_model("translate", model=card.id, offline=True).model
    with torch.no_grad():
        _close(net(rec["eval_b2/in/x"]), rec["eval_b2/out/out0"])


def test_cyclegan_downloads_once_then_runs_offline(cards_dir, tmp_path, hub_server, copy_card):
    """The file is fetched from its URL (a loopback server here), converted once, then used offline."""
    _shared()
    sd = _weights("cyclegan_resnet9_horse2zebra")
    buf = io.BytesIO()
    torch.save(sd, buf)
    data = buf.getvalue()
    official = OFFICIAL["cyclegan-horse2zebra"]
    url = hub_server.add_plain(f"/files/{official.source.filename}", data)
    card = copy_card(official, pix2pix.infer_resnet_config(sd), url=url)
    rec = _io("cyclegan_resnet9_horse2zebra")
    x, ref = rec["eval_b2/in/x"], rec["eval_b2/out/out0"]
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        _png(src / f"horse{i}.png", _to_rgb(x[i]))
    out = tmp_path / "out"
    _cli("translate", src, "--model", card.id, "-o", out)
    served = hub_server.requests
    assert served == 1 and _converted(card, data).exists()
    _cli("translate", src, "--model", card.id, "--offline", "-o", out, "--overwrite")
    assert hub_server.requests == served
    for i in range(2):
        diff = np.abs(_read(out / f"horse{i}.png") - _to_rgb(ref[i]).astype(np.int32))
        assert diff.mean() < 1.5 and diff.max() <= 16, (i, diff.mean(), diff.max())
    net = load_model("translate", model=card.id, offline=True).model
    with torch.no_grad():
        _close(net(x), ref)


def test_pix2pixhd_label2city_end_to_end(cards_dir, tmp_path, copy_card):
    """Cityscapes-style labelIds + instanceIds PNGs -> the recorded output, to the rounding."""
    _shared()
    sd = _weights("pix2pixhd_local_1024p")
    card = copy_card(OFFICIAL["pix2pixhd-label2city-1024p"], pix2pixhd.infer_config(sd))
    buf = io.BytesIO()
    torch.save(sd, buf)
    data = buf.getvalue()
    _cache(card, data)
    rec = _io("pix2pixhd_local_1024p")
    labels, inst, ref = rec["eval_b2/aux/label"], rec["eval_b2/aux/inst"], rec["eval_b2/out/out0"]
    src = tmp_path / "city"
    src.mkdir()
    for i in range(2):
        Image.fromarray(labels[i, 0].numpy().astype(np.uint8)).save(src / f"f{i}_gtFine_labelIds.png")
        Image.fromarray(inst[i, 0].numpy().astype(np.uint16)).save(src / f"f{i}_gtFine_instanceIds.png")
    out = tmp_path / "out"
    _twice(card, data, "translate", src, "--model", card.id, "--offline", "-o", out)
    assert sorted(p.name for p in out.iterdir()) == ["f0_gtFine_labelIds.png", "f1_gtFine_labelIds.png"]
    for i in range(2):
        diff = np.abs(_read(out / f"f{i}_gtFine_labelIds.png") - _to_rgb(ref[i]).astype(np.int32))
        assert diff.max() <= 1, (i, diff.max())


# --- inpaint -------------------------------------------------------------------------------------------


def test_pconv_naoto_end_to_end(cards_dir, tmp_path, copy_card):
    """{'n_iter', 'model', 'optimizer'} -> inpaint with ImageNet normalisation, as naoto0804's test.py."""
    _shared()
    sd = _weights("pconv_unet_places2")
    card = copy_card(OFFICIAL["pconv-places2-naoto"], pconv.infer_config(sd))
    buf = io.BytesIO()
    torch.save({"n_iter": 1000000, "model": sd, "optimizer": {}}, buf)
    data = buf.getvalue()
    _cache(card, data)
    rec = _io("pconv_unet_places2")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    gt = rec["eval_b2/aux/gt"] * std + mean
    mask, ref = rec["eval_b2/in/mask"], rec["eval_b2/out/out0"] * std + mean
    to8 = lambda t: (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()  # noqa: E731
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir()
    masks.mkdir()
    for i in range(2):
        _png(photos / f"p{i}.png", to8(gt[i]))
        Image.fromarray(((mask[i, 0] == 0).numpy() * 255).astype(np.uint8)).save(masks / f"p{i}.png")
    out = tmp_path / "out"
    _twice(card, data, "inpaint", photos, "--mask", masks, "--model", card.id, "--offline", "-o", out)
    for i in range(2):
        got, src = _read(out / f"p{i}.png"), _read(photos / f"p{i}.png")
        hole = (mask[i, 0] == 0).numpy()
        assert np.array_equal(got[~hole], src[~hole])
        diff = np.abs(got[hole] - to8(ref[i]).astype(np.int32)[hole])
        assert diff.mean() < 1.0 and diff.max() <= 12, (i, diff.mean(), diff.max())
    net = load_model("inpaint", model=card.id, offline=True).model
    with torch.no_grad():
        _close(net(rec["eval_b2/in/x"], mask)[0], rec["eval_b2/out/out0"])


@pytest.mark.parametrize("card_id", ["pconv-places-mmagic", "pconv-celeba-mmagic"])
def test_pconv_mmagic_end_to_end(cards_dir, tmp_path, copy_card, mmagic_checkpoint, card_id):
    """An mmcv checkpoint {'meta', 'state_dict'} (generator.* keys, all-ones mask updaters, a loss
    network's weights) -> inpaint with [-1, 1] inputs, as mmagic's PConvInpaintor runs it."""
    official = OFFICIAL[card_id]
    assert official.config["renorm"] == "nvidia" and official.config["enc1_bias"] is True
    assert official.io["normalization"] == "tanh"
    config = {**official.config, "layer_size": 4, "widths": [4, 8, 8, 8]}
    card = copy_card(official, config)
    torch.manual_seed(1)
    net = build_model("pconv_unet", config).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    buf = io.BytesIO()
    torch.save(mmagic_checkpoint(net), buf)
    data = buf.getvalue()
    _cache(card, data)
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    hole = np.zeros((32, 48), bool)
    hole[8:20, 10:30] = True
    _png(tmp_path / "p.png", photo)
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "m.png")
    _twice(card, data, "inpaint", tmp_path / "p.png", "--mask", tmp_path / "m.png", "--model", card.id,
           "--offline", "-o", tmp_path / "o.png")
    # mmagic: (x - 127.5) / 127.5 in, gt * mask, mask 1 = known; out * 127.5 + 127.5, composited
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 127.5 - 1
    valid = torch.from_numpy(~hole)[None, None].float().expand(-1, 3, -1, -1)
    with torch.no_grad():
        ref = net(x * valid, valid)[0][0]
    ref8 = ((ref.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy().astype(np.int32)
    got = _read(tmp_path / "o.png")
    assert np.array_equal(got[~hole], photo[~hole].astype(np.int32))
    assert np.abs(got[hole] - ref8[hole]).max() <= 1


# --- sample --------------------------------------------------------------------------------------------


def _sample_twice(card: Card, data: bytes, tmp_path: Path, seeds: str, *extra) -> Path:
    out = tmp_path / "samples"
    _twice(card, data, "sample", "--model", card.id, "--offline", "--seeds", seeds, "-o", out, *extra)
    return out


def _seed_images(out: Path, seeds: list[int]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(out / f"seed{s:04d}.png").convert("RGB")) for s in seeds])


def test_dcgan_ganzoo_end_to_end(cards_dir, tmp_path, gan_zoo_modules, copy_card):
    _shared()
    sd = _weights("dcgan_ganzoo_fashiongen")
    card = copy_card(OFFICIAL["dcgan-fashiongen"], dcgan.infer_config(sd))
    opts = _manifest("dcgan_ganzoo_fashiongen")["options"]
    data = _gan_zoo_file(gan_zoo_modules, sd, {"lossCriterion": opts["lossMode"], "dimG": opts["dimG"],
                                                "depth": opts["depth"], "dimLatentVector": opts["dimLatentVector"]})
    _cache(card, data)
    out = _sample_twice(card, data, tmp_path, "0-2")
    loaded = load_model("sample", model=card.id, offline=True)
    expected = to_uint8(Sampler(loaded.model).from_seeds([0, 1, 2]))
    assert np.array_equal(_seed_images(out, [0, 1, 2]), expected) and expected.shape == (3, 64, 64, 3)
    rec = _io("dcgan_ganzoo_fashiongen")
    with torch.no_grad():
        _close(loaded.model(rec["eval_b4/in/z"]), rec["eval_b4/out/out0"])


def test_progan_ganzoo_end_to_end(cards_dir, tmp_path, gan_zoo_modules, copy_card):
    _shared()
    sd = _weights("pgan_celebahq256")
    card = copy_card(OFFICIAL["progan-celebahq-256"], progan.infer_config(sd))
    opts = _manifest("pgan_celebahq256")["options"]
    data = _gan_zoo_file(gan_zoo_modules, sd, {k: opts[k] for k in ("lossMode", "depthScale0", "depthOtherScales",
                                                                     "perChannelNormalization", "leakyReluLeak")}
                         | {"lossCriterion": opts["lossMode"]})
    _cache(card, data)
    out = _sample_twice(card, data, tmp_path, "3")
    loaded = load_model("sample", model=card.id, offline=True)
    assert np.array_equal(_seed_images(out, [3]), to_uint8(Sampler(loaded.model).from_seeds([3])))
    rec = _io("pgan_celebahq256")
    with torch.no_grad():
        _close(loaded.model(rec["eval_b2/in/z"]), rec["eval_b2/out/out0"])


def test_stylegan2_pickle_end_to_end(cards_dir, tmp_path, persistence_modules, copy_card):
    """A network pickle written like the official one -> restricted unpickling -> sample."""
    _shared()
    options = _manifest("stylegan2ada_tiny")["options"]
    config = stylegan2_pkl.config_from_init_kwargs(options)
    g = build_model("stylegan2", config).eval()
    g.load_state_dict(_weights("stylegan2ada_tiny"), strict=True)
    data = _network_pickle(persistence_modules, g, options)
    card = copy_card(OFFICIAL["stylegan2-ffhq-256"], config)
    _cache(card, data)
    out = _sample_twice(card, data, tmp_path, "0,1", "--trunc", 0.7)
    loaded = load_model("sample", model=card.id, offline=True)
    expected = to_uint8(Sampler(loaded.model).from_seeds([0, 1], truncation_psi=0.7))
    assert np.array_equal(_seed_images(out, [0, 1]), expected)
    rec = _io("stylegan2ada_tiny")
    for case in _manifest("stylegan2ada_tiny")["cases"]:
        name = case["name"]
        with torch.no_grad():
            got = loaded.model(rec[f"{name}/in/z"], rec[f"{name}/in/c"], **case["kwargs"])
        _close(got, rec[f"{name}/out/out0"], atol=2e-4)


def test_pickle_config_differing_from_the_card_warns(tmp_path, persistence_modules):
    _shared()
    options = _manifest("stylegan2ada_tiny")["options"]
    config = stylegan2_pkl.config_from_init_kwargs(options)
    g = build_model("stylegan2", config)
    path = tmp_path / "net.pkl"
    path.write_bytes(_network_pickle(persistence_modules, g, options))
    wrong = {k: v for k, v in config.items() if k != "conv_clamp"}  # card says no clamp; the file recorded 256
    with pytest.warns(UserWarning, match=r"conv_clamp: card None, file 256"):
        convert_file(path, "pkl", "stylegan2_pkl:from_official", wrong, tmp_path / "out.safetensors")
    assert (tmp_path / "out.safetensors").exists()
