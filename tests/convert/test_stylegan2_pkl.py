"""Restricted unpickling of official StyleGAN2-ADA network pickles (imgsynth.convert.stylegan2_pkl).

The pickles are built here the way ``torch_utils.persistence`` writes them: every module pickles as
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with ``meta = {type, version,
module_src, class_name, state=<module __dict__>}``, ``init_kwargs`` hold ``dnnlib.util.EasyDict``
objects and gains are numpy float64 scalars. Stand-in ``torch_utils``/``dnnlib`` modules exist only
while pickling, and their functions write a marker file if anything ever calls them.
"""

from __future__ import annotations

import copyreg
import io
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from imgsynth.convert.stylegan2_pkl import (
    PersistentRecord,
    config_from_init_kwargs,
    from_official,
    from_pkl,
    infer_config,
    load_pkl,
)
from imgsynth.errors import WeightsError
from imgsynth.models.registry import build_model
from imgsynth.models.stylegan2 import StyleGAN2Discriminator

G_KWARGS = {
    "z_dim": 16, "w_dim": 16, "c_dim": 4, "img_resolution": 16, "img_channels": 3,
    "mapping_kwargs": {"num_layers": 2},
    "synthesis_kwargs": {"channel_base": 128, "channel_max": 16, "num_fp16_res": 4, "conv_clamp": 256},
}
D_KWARGS = {
    "c_dim": 4, "img_resolution": 16, "img_channels": 3, "architecture": "resnet", "channel_base": 128,
    "channel_max": 16, "num_fp16_res": 4, "conv_clamp": 256, "block_kwargs": {}, "mapping_kwargs": {},
    "epilogue_kwargs": {"mbstd_group_size": 2},
}
OFFICIAL_CLASS = {
    "StyleGAN2Generator": "Generator", "StyleGAN2Discriminator": "Discriminator",
    "_Conv2dLayer": "Conv2dLayer", "_DiscriminatorBlock": "DiscriminatorBlock",
    "_DiscriminatorEpilogue": "DiscriminatorEpilogue", "MinibatchStdDev": "MinibatchStdLayer",
}


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "payload_ran"


@pytest.fixture
def official_modules(monkeypatch, marker: Path):
    """Stand-ins for the official ``torch_utils.persistence`` and ``dnnlib.util`` (pickling only)."""
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # what unpickling the official way would run
        marker.write_text("official reconstruct called")
        raise AssertionError("the loader called the pickled reconstruct function")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    dnnlib_util = types.ModuleType("dnnlib.util")

    class EasyDict(dict):
        pass

    EasyDict.__module__ = "dnnlib.util"
    EasyDict.__qualname__ = "EasyDict"
    dnnlib_util.EasyDict = EasyDict
    for name, mod in [("torch_utils", types.ModuleType("torch_utils")), ("torch_utils.persistence", persistence),
                      ("dnnlib", types.ModuleType("dnnlib")), ("dnnlib.util", dnnlib_util)]:
        monkeypatch.setitem(sys.modules, name, mod)
    return types.SimpleNamespace(reconstruct=_reconstruct_persistent_obj, EasyDict=EasyDict)


def _easy(mods, d: dict):
    return mods.EasyDict({k: _easy(mods, v) if isinstance(v, dict) else v for k, v in d.items()})


def _dump(obj, mods, init_kwargs: dict[int, dict], protocol: int, module_src: str = "# networks.py\n") -> bytes:
    """Pickle ``obj`` with every nn.Module written as a persistence record (official layout).

    ``init_kwargs`` maps ``id(module)`` to the constructor kwargs recorded for it (others: {}).
    """

    class PersistencePickler(pickle.Pickler):
        def reducer_override(self, o):
            if isinstance(o, nn.Module):
                # The module __dict__ as the official __reduce__ takes it; gains are numpy float64 there.
                state = {k: np.float64(v) if type(v) is float else v for k, v in o.__dict__.items()}
                state["_init_args"] = ()
                state["_init_kwargs"] = _easy(mods, init_kwargs.get(id(o), {}))
                cls = type(o).__name__
                meta = dict(type="class", version=6, module_src=module_src,
                            class_name=OFFICIAL_CLASS.get(cls, cls), state=state)
                return mods.reconstruct, (meta,), None
            return NotImplemented

    f = io.BytesIO()
    PersistencePickler(f, protocol=protocol).dump(obj)
    return f.getvalue()


def _snapshot(mods, protocol: int = 2) -> tuple[bytes, nn.Module, nn.Module]:
    """A training snapshot dict (G, D, G_ema, augment_pipe, training_set_kwargs) in one stream."""
    torch.manual_seed(0)
    g = build_model("stylegan2", config_from_init_kwargs(G_KWARGS)).eval()
    with torch.no_grad():
        for p in g.parameters():
            p.normal_()
        g.mapping.w_avg.normal_()
    d = StyleGAN2Discriminator(c_dim=4, img_resolution=16, channel_base=128, channel_max=16,
                               num_fp16_res=4, conv_clamp=256, mbstd_group_size=2)
    snapshot = {
        "G": g, "D": d, "G_ema": g, "augment_pipe": None,
        "training_set_kwargs": _easy(mods, {"class_name": "training.dataset.ImageFolderDataset", "xflip": False}),
    }
    return _dump(snapshot, mods, {id(g): G_KWARGS, id(d): D_KWARGS}, protocol), g, d


@pytest.mark.parametrize("protocol", [2, 4])
def test_official_layout_loads_and_matches(official_modules, marker, protocol):
    data, g, _ = _snapshot(official_modules, protocol)
    config, sd = from_pkl(data)
    assert config == config_from_init_kwargs(G_KWARGS)
    assert config["conv_clamp"] == 256 and config["c_dim"] == 4
    ref = g.state_dict()
    assert list(sd) == list(ref)  # same keys, same (official) order
    for k in ref:
        assert torch.equal(sd[k], ref[k]), k
    model = build_model("stylegan2", config).eval()
    model.load_state_dict(sd, strict=True)
    z = torch.randn(2, 16)
    c = torch.eye(4)[:2]
    with torch.no_grad():
        assert torch.equal(model(z, c, truncation_psi=0.7), g(z, c, truncation_psi=0.7))
    assert not marker.exists()
    # Control: the official way (plain pickle) would call the pickled reconstruct function.
    with pytest.raises(AssertionError, match="called the pickled reconstruct"):
        pickle.loads(data)
    assert marker.exists()


def test_discriminator_and_records(official_modules, marker, tmp_path):
    data, _, d = _snapshot(official_modules)
    path = tmp_path / "network-snapshot.pkl"
    path.write_bytes(data)
    config, sd = from_pkl(path, network="D")
    assert config["mbstd_group_size"] == 2 and config["mapping_layers"] == 8
    net = StyleGAN2Discriminator(**config)
    net.load_state_dict(sd, strict=True)
    img = torch.randn(2, 3, 16, 16)
    c = torch.eye(4)[:2]
    with torch.no_grad():
        assert torch.equal(net(img, c), d(img, c))
    top = load_pkl(path)
    assert isinstance(top["G_ema"], PersistentRecord) and top["G_ema"].class_name == "Generator"
    assert top["training_set_kwargs"] == {"class_name": "training.dataset.ImageFolderDataset", "xflip": False}
    assert type(top["G_ema"].init_kwargs["mapping_kwargs"]) is dict
    assert isinstance(top["G_ema"].state["_modules"]["synthesis"].state["_modules"]["b4"], PersistentRecord)
    assert not marker.exists()


def test_infer_config_reads_shapes(official_modules):
    data, g, _ = _snapshot(official_modules)
    _, sd = from_pkl(data)
    shape_cfg = infer_config(sd)
    cfg = config_from_init_kwargs(G_KWARGS)
    for key in ("z_dim", "c_dim", "w_dim", "img_resolution", "mapping_layers", "channel_max", "architecture"):
        assert shape_cfg[key] == cfg[key], key
    # channel_base may differ in value but must give the same widths
    built = build_model("stylegan2", {**shape_cfg, "conv_clamp": 256})
    built.load_state_dict(from_official(sd, shape_cfg), strict=True)


class _Payload:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _assert_refused(data: bytes, marker: Path, match: str = "refus") -> None:
    with pytest.raises(WeightsError, match=match):
        load_pkl(data)
    assert not marker.exists()


def test_os_system_payload_never_runs(marker):
    data = pickle.dumps({"G_ema": _Payload(os.system, f"touch {marker}")}, protocol=2)
    _assert_refused(data, marker)
    pickle.loads(data)  # control: a plain unpickler runs the payload
    assert marker.exists()


def test_exec_and_eval_payloads_never_run(marker):
    import builtins

    code = f"open({str(marker)!r}, 'w').write('x')"
    _assert_refused(pickle.dumps([_Payload(builtins.exec, code)], protocol=4), marker)
    _assert_refused(pickle.dumps({"a": _Payload(builtins.eval, code)}, protocol=2), marker)


def test_payload_inside_official_structure_never_runs(official_modules, marker):
    """A record whose state smuggles a payload is refused as a whole; nothing before it runs either."""
    g = build_model("stylegan2", config_from_init_kwargs(G_KWARGS))
    g.synthesis.evil = _Payload(os.system, f"touch {marker}")  # plain attribute inside the module state
    data = _dump({"G_ema": g}, official_modules, {id(g): G_KWARGS}, 2)
    _assert_refused(data, marker)


def test_class_that_would_need_import_is_refused(official_modules, marker):
    """A plainly pickled network class (training.networks.Generator) would have to be imported: refused."""
    Generator = type("Generator", (), {"__reduce__": lambda self: (copyreg._reconstructor, (type(self), object, None))})
    Generator.__module__ = "training.networks"
    fake = types.ModuleType("training.networks")
    fake.Generator = Generator
    sys.modules["training.networks"] = fake
    try:
        data = pickle.dumps({"G_ema": Generator()}, protocol=2)
    finally:
        del sys.modules["training.networks"]
    _assert_refused(data, marker)


def test_module_src_is_never_executed(official_modules, marker):
    """Records carry source code; it stays text. A non-Generator class is then refused by from_pkl."""
    lin = nn.Linear(2, 2)
    src = f"open({str(marker)!r}, 'w').write('module_src executed')\n"
    data = _dump({"G_ema": lin}, official_modules, {}, 2, module_src=src)
    top = load_pkl(data)
    assert top["G_ema"].module_src == src
    assert not marker.exists()
    with pytest.raises(WeightsError, match="Linear, not a StyleGAN2-ADA Generator"):
        from_pkl(data)
    assert not marker.exists()


def test_storage_bytes_payload_is_refused(marker):
    """``torch.storage._load_from_bytes`` content is itself a pickle: read weights-only, so refused."""
    import torch.storage

    inner = pickle.dumps(_Payload(os.system, f"touch {marker}"), protocol=2)
    data = pickle.dumps({"w": _Payload(torch.storage._load_from_bytes, inner)}, protocol=2)
    _assert_refused(data, marker, match="could not be read safely")


def test_tensorflow_pickle_and_garbage(official_modules, marker):
    # TF-era networks pickle as NEWOBJ of dnnlib.tflib.network.Network + BUILD of their state.
    Network = type("Network", (), {"__getstate__": lambda self: {"version": 4, "variables": []}})
    Network.__module__ = "dnnlib.tflib.network"
    sys.modules["dnnlib.tflib.network"] = types.SimpleNamespace(Network=Network)
    try:
        data = pickle.dumps((Network(), Network(), Network()), protocol=2)
    finally:
        del sys.modules["dnnlib.tflib.network"]
    _assert_refused(data, marker, match="TensorFlow")
    good, _, _ = _snapshot(official_modules)
    with pytest.raises(WeightsError, match="not a readable network pickle"):
        load_pkl(good[: len(good) // 2])
    with pytest.raises(WeightsError, match="not the official dict"):
        load_pkl(pickle.dumps([1, 2], protocol=2))
    with pytest.raises(WeightsError, match="no G network"):
        from_pkl(pickle.dumps({"G_ema": None}, protocol=2), network="G")


def test_from_official_rejects_wrong_keys():
    cfg = config_from_init_kwargs(G_KWARGS)
    sd = build_model("stylegan2", cfg).state_dict()
    sd.pop("mapping.w_avg")
    with pytest.raises(WeightsError, match="missing"):
        from_official(sd, cfg)
    with pytest.raises(WeightsError, match="does not know"):
        config_from_init_kwargs({**G_KWARGS, "synthesis_kwargs": {"magic": 1}})
