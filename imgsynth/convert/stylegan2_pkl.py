"""Official StyleGAN2-ADA network pickles -> imgsynth ``stylegan2`` config and state dict, without running them.

The released ``.pkl`` files (``ffhq.pkl``, ``network-snapshot-*.pkl``; NVlabs/stylegan2-ada-pytorch,
NVIDIA Source Code License-NC) are a plain ``pickle.dump`` of a dict ``{'G', 'D', 'G_ema',
'augment_pipe', 'training_set_kwargs'}`` whose networks are ``torch_utils.persistence`` objects:
each module pickles as ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with
``meta = {'type': 'class', 'version': 6, 'module_src': <the module's source code>,
'class_name': ..., 'state': <the module's __dict__>}``. Unpickling them the official way executes
``module_src``. Here a restricted unpickler resolves only an explicit allow-list of globals to safe
stand-ins:

- ``torch_utils.persistence._reconstruct_persistent_obj`` -> a :class:`PersistentRecord` holding the
  class name and state (``module_src`` is kept as text and never executed or imported);
- tensors: ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter[_with_state]`` and
  ``torch.storage._load_from_bytes`` (a storage pickled as legacy ``torch.save`` bytes, which are
  read with ``torch.load(weights_only=True)``), ``_codecs.encode`` (protocol-2 bytes) for latin-1 only;
- containers and numbers: ``collections.OrderedDict``, ``builtins.set``/``frozenset``,
  ``dnnlib.util.EasyDict`` (-> dict), numeric numpy scalars / arrays / dtypes.

Anything else (``os.system``, ``builtins.eval``, an unknown class) raises :class:`WeightsError`
before it is called. The state dict is then read off the records (``_parameters``, persistent
``_buffers``, ``_modules`` in the official order) and the config off the recorded ``init_kwargs``.

TensorFlow-era pickles (``dnnlib.tflib.network.Network``, converted by the official ``legacy.py``)
are not supported: convert them once with the official ``legacy.py`` / re-save, then load here.
"""

from __future__ import annotations

import codecs
import collections
import io
import math
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgsynth.errors import WeightsError
from imgsynth.models.registry import build_model
from imgsynth.models.stylegan2 import StyleGAN2Discriminator

__all__ = [
    "PersistentRecord",
    "config_from_init_kwargs",
    "discriminator_config_from_init_kwargs",
    "from_official",
    "from_pkl",
    "infer_config",
    "load_pkl",
    "record_state_dict",
]

NETWORKS = ("G_ema", "G", "D")


class PersistentRecord:
    """What a ``torch_utils.persistence`` object holds: class name, version, source text and state.

    Nothing of it is ever executed; ``module_src`` is kept only so that callers can inspect it.
    """

    def __init__(self, class_name: str, version: int, module_src: str, state: dict[str, Any]) -> None:
        self.class_name = class_name
        self.version = version
        self.module_src = module_src
        self.state = state

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """The constructor keyword arguments the official code recorded (plain dicts)."""
        return _plain(self.state.get("_init_kwargs") or {})

    @property
    def init_args(self) -> tuple:
        """The positional constructor arguments (empty for every released network)."""
        return tuple(self.state.get("_init_args") or ())

    def __repr__(self) -> str:
        return f"PersistentRecord({self.class_name!r}, version={self.version})"


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a dict (subclass only so BUILD has a ``__dict__``)."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.update(state)


def _plain(obj: Any) -> Any:
    """Recursively turn stand-in containers into plain dicts / lists."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_plain(v) for v in obj)
    return obj


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise WeightsError("malformed torch_utils.persistence record in the pickle (expected type 'class')")
    class_name, state = meta.get("class_name"), meta.get("state")
    if not isinstance(class_name, str) or not isinstance(state, dict):
        raise WeightsError("malformed torch_utils.persistence record in the pickle (class_name/state)")
    return PersistentRecord(class_name, int(meta.get("version", -1)), str(meta.get("module_src", "")), state)


def _load_storage_bytes(data: Any) -> Any:
    if not isinstance(data, (bytes, bytearray)):
        raise WeightsError("malformed tensor storage in the pickle")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # TypedStorage deprecation: we unwrap at once
            return torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's weights-only unpickler refuses anything but storages
        raise WeightsError(f"a tensor storage in the pickle could not be read safely: {exc}") from None


def _check_storage(storage: Any) -> None:
    if not isinstance(storage, torch.TypedStorage):
        raise WeightsError("a tensor in the pickle is not backed by a plain storage")


def _rebuild_tensor(storage: Any, offset: int, size: Any, stride: Any, *rest: Any) -> torch.Tensor:
    _check_storage(storage)
    if not (isinstance(offset, int) and all(isinstance(v, int) for v in (*size, *stride))):
        raise WeightsError("malformed tensor geometry in the pickle")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch._utils._rebuild_tensor(storage, offset, tuple(size), tuple(stride))
    except RuntimeError as exc:
        raise WeightsError(f"a tensor in the pickle does not fit its storage: {exc}") from None


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None, *rest: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise WeightsError("malformed parameter in the pickle")
    return data


def _codecs_encode(text: Any, encoding: str = "utf-8", *rest: Any) -> bytes:
    # Protocol-2 pickles store bytes as latin-1 text run through _codecs.encode.
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise WeightsError("the pickle uses _codecs.encode beyond latin-1 bytes")
    return text.encode("latin-1")


class _NumpyDType:
    """Stand-in for ``numpy.dtype(name, align, copy)`` + BUILD: numeric dtypes only."""

    def __init__(self, name: Any, align: Any = False, copy: Any = False) -> None:
        try:
            dtype = np.dtype(str(name))
        except TypeError:
            raise WeightsError(f"unsupported numpy dtype {name!r} in the pickle") from None
        if dtype.kind not in "biufc":
            raise WeightsError(f"non-numeric numpy dtype {name!r} in the pickle is refused")
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(state[1])


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, _NumpyDType) or not isinstance(data, (bytes, bytearray)):
        raise WeightsError("malformed numpy scalar in the pickle")
    if len(data) != dtype.dtype.itemsize:
        raise WeightsError("malformed numpy scalar in the pickle")
    return np.frombuffer(bytes(data), dtype=dtype.dtype)[0].item()


class _NumpyArray:
    """Stand-in for ``numpy.core.multiarray._reconstruct(ndarray, ...)`` + BUILD: numeric arrays only."""

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise WeightsError("malformed numpy array in the pickle")
        _, shape, dtype, fortran, raw = state
        if not isinstance(dtype, _NumpyDType) or not isinstance(raw, (bytes, bytearray)):
            raise WeightsError("malformed numpy array in the pickle")
        count = math.prod(int(v) for v in shape)
        arr = np.frombuffer(bytes(raw), dtype=dtype.dtype, count=count)
        self.array = arr.reshape(tuple(shape), order="F" if fortran else "C").copy()


def _numpy_reconstruct(cls: Any, shape: Any = None, dtype_code: Any = None) -> _NumpyArray:
    if cls is not _NUMPY_NDARRAY:
        raise WeightsError("numpy _reconstruct of something else than an ndarray in the pickle")
    return _NumpyArray()


_NUMPY_NDARRAY = object()

_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("_codecs", "encode"): _codecs_encode,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "scalar")] = _numpy_scalar
    _ALLOWED[(_mod, "_reconstruct")] = _numpy_reconstruct
_ALLOWED[("numpy", "dtype")] = _NumpyDType
_ALLOWED[("numpy", "ndarray")] = _NUMPY_NDARRAY


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the allow-listed globals; everything else is refused before it can run."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            pass
        if module.startswith("dnnlib.tflib"):
            raise WeightsError(
                "this is a TensorFlow-era StyleGAN pickle, which imgsynth does not read; convert it to a "
                "PyTorch pickle with the official stylegan2-ada-pytorch legacy.py first"
            )
        raise WeightsError(
            f"refusing to load {module}.{name} from the pickle: only tensors, containers and "
            "torch_utils.persistence records are allowed (the file may be malicious or not an official network)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise WeightsError("unexpected persistent id in the pickle (a torch.save file is not a network pickle)")


def _numpy_arrays_out(obj: Any) -> Any:
    """Replace array stand-ins by numpy arrays inside plain containers (records are left alone)."""
    if isinstance(obj, _NumpyArray):
        return obj.array
    if isinstance(obj, dict):
        for k, v in obj.items():
            obj[k] = _numpy_arrays_out(v)
    elif isinstance(obj, list):
        obj[:] = [_numpy_arrays_out(v) for v in obj]
    elif isinstance(obj, PersistentRecord):
        _numpy_arrays_out(obj.state)
    return obj


def load_pkl(source: str | Path | bytes | io.IOBase) -> dict[str, Any]:
    """Safely unpickle an official network pickle: networks become :class:`PersistentRecord`.

    ``source`` is a path, the file's bytes, or a binary file object. Raises :class:`WeightsError`
    for anything outside the allow-list, a truncated / corrupt file, or a top level that is not a dict.
    """
    if isinstance(source, (bytes, bytearray)):
        f: Any = io.BytesIO(bytes(source))
    elif isinstance(source, (str, Path)):
        try:
            f = open(source, "rb")
        except OSError as exc:
            raise WeightsError(f"cannot read {source}: {exc.strerror}") from None
    else:
        f = source
    try:
        data = _RestrictedUnpickler(f).load()
    except WeightsError:
        raise
    except Exception as exc:  # corrupt / truncated pickles raise a zoo of exception types
        raise WeightsError(f"not a readable network pickle ({type(exc).__name__}: {exc})") from None
    finally:
        if isinstance(source, (str, Path)):
            f.close()
    if not isinstance(data, dict):
        raise WeightsError(f"the pickle holds a {type(data).__name__}, not the official dict of networks")
    return _numpy_arrays_out(data)


def record_state_dict(record: PersistentRecord) -> dict[str, torch.Tensor]:
    """The ``state_dict()`` the recorded module would return, in the same key order.

    Per module: its parameters, then its persistent buffers, then its children (recursively).
    """
    out: dict[str, torch.Tensor] = {}

    def visit(rec: Any, prefix: str) -> None:
        if not isinstance(rec, PersistentRecord):
            raise WeightsError(f"submodule {prefix.rstrip('.') or '<root>'} is not a persistence record")
        state = rec.state
        skip = set(state.get("_non_persistent_buffers_set") or ())
        for group in ("_parameters", "_buffers"):
            for name, value in (state.get(group) or {}).items():
                if value is None or (group == "_buffers" and name in skip):
                    continue
                if not isinstance(value, torch.Tensor):
                    raise WeightsError(f"{prefix}{name} in the pickle is not a tensor")
                out[prefix + name] = value
        for name, child in (state.get("_modules") or {}).items():
            if child is not None:
                visit(child, f"{prefix}{name}.")

    visit(record, "")
    return out


_G_MAPPING_KEYS = {"num_layers", "embed_features", "layer_features", "activation", "lr_multiplier", "w_avg_beta"}
_G_SYNTHESIS_KEYS = {
    "channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture", "resample_filter",
    "use_noise", "activation", "fp16_channels_last", "kernel_size",
}


def _check_value(kwargs: dict, key: str, allowed: Any, where: str) -> None:
    if key in kwargs and kwargs[key] is not None and kwargs[key] != allowed:
        raise WeightsError(f"unsupported {where} {key}={kwargs[key]!r} (imgsynth supports {allowed!r})")


def config_from_init_kwargs(init_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The ``stylegan2`` constructor config from an official ``Generator`` ``init_kwargs``.

    ``init_kwargs`` is what the pickle recorded (or a conformance manifest's ``options``):
    ``z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs, synthesis_kwargs``.
    """
    kw = _plain(init_kwargs)
    unknown = set(kw) - {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs",
                         "synthesis_kwargs", "class_name"}
    mk, sk = dict(kw.get("mapping_kwargs") or {}), dict(kw.get("synthesis_kwargs") or {})
    unknown |= {f"mapping_kwargs.{k}" for k in set(mk) - _G_MAPPING_KEYS}
    unknown |= {f"synthesis_kwargs.{k}" for k in set(sk) - _G_SYNTHESIS_KEYS}
    if unknown:
        raise WeightsError(f"generator options imgsynth does not know: {', '.join(sorted(unknown))}")
    _check_value(mk, "activation", "lrelu", "mapping")
    _check_value(sk, "activation", "lrelu", "synthesis")
    _check_value(sk, "kernel_size", 3, "synthesis")
    if "resample_filter" in sk and [float(v) for v in sk["resample_filter"]] != [1.0, 3.0, 3.0, 1.0]:
        raise WeightsError(f"unsupported resample_filter {sk['resample_filter']!r} (imgsynth uses [1, 3, 3, 1])")
    try:
        config = {
            "z_dim": int(kw["z_dim"]),
            "c_dim": int(kw["c_dim"]),
            "w_dim": int(kw["w_dim"]),
            "img_resolution": int(kw["img_resolution"]),
            "img_channels": int(kw["img_channels"]),
        }
    except KeyError as exc:
        raise WeightsError(f"generator init_kwargs lack {exc.args[0]!r}") from None
    config.update(
        mapping_layers=int(mk.get("num_layers", 8)),
        mapping_lr_multiplier=float(mk.get("lr_multiplier", 0.01)),
        embed_features=mk.get("embed_features"),
        layer_features=mk.get("layer_features"),
        w_avg_beta=float(mk["w_avg_beta"]) if mk.get("w_avg_beta") is not None else 0.995,
        channel_base=int(sk.get("channel_base", 32768)),
        channel_max=int(sk.get("channel_max", 512)),
        num_fp16_res=int(sk.get("num_fp16_res", 0)),
        conv_clamp=sk.get("conv_clamp"),
        architecture=str(sk.get("architecture", "skip")),
        use_noise=bool(sk.get("use_noise", True)),
    )
    return config


def discriminator_config_from_init_kwargs(init_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The :class:`~imgsynth.models.stylegan2.StyleGAN2Discriminator` config from an official ``D`` ``init_kwargs``."""
    kw = _plain(init_kwargs)
    bk = dict(kw.get("block_kwargs") or {})
    mk = dict(kw.get("mapping_kwargs") or {})
    ek = dict(kw.get("epilogue_kwargs") or {})
    _check_value(bk, "activation", "lrelu", "discriminator")
    _check_value(ek, "activation", "lrelu", "discriminator")
    try:
        config = {
            "c_dim": int(kw["c_dim"]),
            "img_resolution": int(kw["img_resolution"]),
            "img_channels": int(kw["img_channels"]),
        }
    except KeyError as exc:
        raise WeightsError(f"discriminator init_kwargs lack {exc.args[0]!r}") from None
    config.update(
        architecture=str(kw.get("architecture", "resnet")),
        channel_base=int(kw.get("channel_base", 32768)),
        channel_max=int(kw.get("channel_max", 512)),
        num_fp16_res=int(kw.get("num_fp16_res", 0)),
        conv_clamp=kw.get("conv_clamp"),
        cmap_dim=kw.get("cmap_dim"),
        mbstd_group_size=int(ek.get("mbstd_group_size") or 4),
        mbstd_num_channels=int(ek.get("mbstd_num_channels", 1)),
        mapping_layers=int(mk.get("num_layers", 8)),
    )
    return config


def _layer_index(keys: Any, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in keys if (m := re.fullmatch(pattern, k))})


def infer_config(state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Read a ``stylegan2`` config off the tensor shapes of an official ``G_ema.state_dict()``.

    Shapes do not record ``conv_clamp`` or ``num_fp16_res`` (they come back as None / 0); take those
    from the pickle's ``init_kwargs`` (:func:`from_pkl` does) when the network used them.
    """
    keys = list(state_dict)
    fcs = _layer_index(keys, r"mapping\.fc(\d+)\.weight")
    res = _layer_index(keys, r"synthesis\.b(\d+)\.conv1\.weight")
    if not fcs or not res or "synthesis.b4.const" not in state_dict:
        raise WeightsError("not a StyleGAN2(-ADA) generator state dict (no mapping.fc*/synthesis.b* keys)")
    w_dim = state_dict[f"mapping.fc{fcs[-1]}.weight"].shape[0]
    c_dim = state_dict["mapping.embed.weight"].shape[1] if "mapping.embed.weight" in state_dict else 0
    embed = state_dict["mapping.embed.weight"].shape[0] if c_dim else 0
    z_dim = state_dict["mapping.fc0.weight"].shape[1] - embed
    layer_features = state_dict["mapping.fc0.weight"].shape[0] if len(fcs) > 1 else w_dim
    channels = {r: state_dict[f"synthesis.b{r}.conv1.weight"].shape[0] for r in res}
    channel_max = max(channels.values())
    # channels(r) = min(channel_base // r, channel_max): any r below the cap pins channel_base down.
    below = [c * r for r, c in channels.items() if c < channel_max]
    channel_base = max(below) if below else channel_max * res[-1]
    img_res = res[-1]
    torgbs = [r for r in res if f"synthesis.b{r}.torgb.weight" in state_dict]
    architecture = "skip" if len(torgbs) == len(res) else "orig"
    if any(f"synthesis.b{r}.skip.weight" in state_dict for r in res):
        architecture = "resnet"
    return {
        "z_dim": int(z_dim),
        "c_dim": int(c_dim),
        "w_dim": int(w_dim),
        "img_resolution": int(img_res),
        "img_channels": int(state_dict[f"synthesis.b{img_res}.torgb.weight"].shape[0]),
        "mapping_layers": len(fcs),
        "mapping_lr_multiplier": 0.01,
        "embed_features": int(embed) if c_dim and embed != w_dim else None,
        "layer_features": int(layer_features) if layer_features != w_dim else None,
        "w_avg_beta": 0.995,
        "channel_base": int(channel_base),
        "channel_max": int(channel_max),
        "num_fp16_res": 0,
        "conv_clamp": None,
        "architecture": architecture,
        "use_noise": f"synthesis.b{img_res}.conv1.noise_const" in state_dict,
    }


def from_official(checkpoint: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Converter hook: an official ``G_ema.state_dict()`` already has the imgsynth layout.

    Checks the keys and shapes against ``build_model('stylegan2', config)`` and returns float
    tensors in the official order; raises :class:`WeightsError` naming the first mismatch.
    """
    with torch.device("meta"):
        expected = build_model("stylegan2", config).state_dict()
    missing = [k for k in expected if k not in checkpoint]
    extra = [k for k in checkpoint if k not in expected]
    if missing or extra:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise WeightsError(f"checkpoint does not match the stylegan2 config: {detail}")
    out = {}
    for k, ref in expected.items():
        t = checkpoint[k]
        if tuple(t.shape) != tuple(ref.shape):
            raise WeightsError(f"{k} has shape {tuple(t.shape)}, the config expects {tuple(ref.shape)}")
        out[k] = t.detach().to(torch.float32).contiguous()
    return out


def from_pkl(
    source: str | Path | bytes | io.IOBase, network: str = "G_ema"
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config, state_dict) of one network of an official pickle, read without executing it.

    ``network``: 'G_ema' (the inference generator), 'G', or 'D'. The config is the ``stylegan2``
    constructor config (or the discriminator's for 'D'), taken from the recorded ``init_kwargs``
    and cross-checked against the tensor shapes.
    """
    if network not in NETWORKS:
        raise WeightsError(f"network must be one of {NETWORKS}, got {network!r}")
    data = load_pkl(source)
    record = data.get(network)
    if not isinstance(record, PersistentRecord):
        found = ", ".join(sorted(k for k, v in data.items() if isinstance(v, PersistentRecord))) or "none"
        raise WeightsError(f"the pickle has no {network} network (networks found: {found})")
    expected_class = "Discriminator" if network == "D" else "Generator"
    if record.class_name != expected_class:
        raise WeightsError(f"{network} in the pickle is a {record.class_name}, not a StyleGAN2-ADA {expected_class}")
    if record.init_args:
        raise WeightsError(f"{network} was built with positional arguments; cannot read its config")
    state_dict = record_state_dict(record)
    if network == "D":
        config = discriminator_config_from_init_kwargs(record.init_kwargs)
        _check_discriminator(config, state_dict)
        return config, {k: v.to(torch.float32).contiguous() for k, v in state_dict.items()}
    config = config_from_init_kwargs(record.init_kwargs)
    shape_config = infer_config(state_dict)
    for key in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_layers", "channel_max"):
        if shape_config[key] != config[key]:
            raise WeightsError(f"{network}: recorded {key}={config[key]} but the tensors say {shape_config[key]}")
    return config, from_official(state_dict, config)


def _check_discriminator(config: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> None:
    with torch.device("meta"):
        expected = StyleGAN2Discriminator(**config).state_dict()
    if set(expected) != set(state_dict):
        diff = sorted(set(expected) ^ set(state_dict))[:3]
        raise WeightsError(f"D state dict does not match its recorded config (first differences: {diff})")
    for k, ref in expected.items():
        if tuple(state_dict[k].shape) != tuple(ref.shape):
            raise WeightsError(f"D: {k} has shape {tuple(state_dict[k].shape)}, expected {tuple(ref.shape)}")
