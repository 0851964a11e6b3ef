"""ONNX export of generators and the ONNX Runtime path of ``sample`` / ``translate`` / ``inpaint``.

What an ONNX graph holds: the network's ``forward`` only (for StyleGAN-type samplers, ``mapping``
and ``synthesis`` as two graphs), in fp32, exported with ``torch.onnx.export(dynamo=True)``. The
fixed pre- and post-processing stays in imgsynth and is written next to the graph (``PREPROCESS``):
latents are ``N(0, 1)`` from a per-seed CPU generator, images in ``[-1, 1]`` NCHW RGB, label maps
one-hot (plus the instance edge map), PConv inputs ImageNet-normalised with the hole zeroed and
the mask as a 3-channel 0/1 map; outputs are NCHW in about ``[-1, 1]`` (PConv: normalised RGB).

``--runtime onnx`` wraps the loaded torch generator in :class:`OrtGenerator`: attribute look-ups
(``label_nc``, ``z_dim``, ...) go to the torch module, calls go to an ``onnxruntime`` session. A
session is made per input signature (shapes, dtypes, keyword values) from the graph exported
next to ``--weights`` when it fits, else from a graph exported on first use into the cache
(``$IMGSYNTH_CACHE`` or ``~/.cache/imgsynth``, keyed by the weights' fingerprint and the signature),
so the second run starts at once. What ONNX cannot reproduce exactly is refused: per-call random
noise (StyleGAN ``--noise-mode random``), active dropout, batch statistics.
"""

from __future__ import annotations

import contextlib
import hashlib
import io as _io
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from imgsynth.errors import UsageError, WeightsError

RUNTIMES = ("torch", "onnx")
OPSET = 18
ONNX_FORMAT = "imgsynth-onnx"

PREPROCESS = {
    "sample": "z: (N, z_dim) float32 N(0, 1) latents from a per-seed CPU generator (torch.Generator().manual_seed"
              "(seed)); c: (N, c_dim) one-hot class labels (N, 0 when unconditional)",
    "translate": "x: (N, C, H, W) float32: RGB images scaled to [-1, 1] (x / 127.5 - 1), or label maps one-hot "
                 "over label_nc (+1 don't-care) channels with the instance edge map appended when use_instance; "
                 "sides padded to the model's multiple (reflect for photos, edge for labels) and cropped back",
    "inpaint": "x: (N, 3, H, W) float32 RGB normalised as the card's io.normalization says (imagenet: "
               "(x/255 - mean) / std; tanh: x / 127.5 - 1) with the hole set to 0; mask: (N, 3, H, W) float32, "
               "1 = known pixel, 0 = hole; sides padded to a multiple of 2**layer_size",
}
POSTPROCESS = ("image: (N, 3 or 1, H, W) float32 in about [-1, 1]; imgsynth clamps to [-1, 1] and maps to uint8 "
               "as round((y + 1) * 127.5) (PConv: de-normalise the same way, keep known pixels from the input)")


def onnx_available() -> bool:
    """Whether ``onnx`` and ``onnxruntime`` (the ``onnx`` extra) are importable."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def require_onnx() -> None:
    if not onnx_available():
        raise UsageError("the ONNX runtime is not installed; pip install 'imgsynth[onnx]' (onnx, onnxruntime, "
                         "onnxscript) or use --runtime torch")


def check_runtime(runtime: str, device: Any, dtype: Any) -> None:
    """Refuse a ``--runtime`` this run cannot use (usage errors, exit 2)."""
    if runtime not in RUNTIMES:
        raise UsageError(f"unknown --runtime {runtime!r}; use {' or '.join(RUNTIMES)}")
    if runtime == "onnx":
        require_onnx()
        import torch

        if dtype is not None and dtype != torch.float32:
            raise UsageError("--runtime onnx runs the fp32 graph; use --precision fp32")
        if device is not None and device.type not in ("cpu", "cuda"):
            raise UsageError(f"--runtime onnx runs on cpu or cuda, not {device.type}")


# ------------------------------------------------------------------ export


class _Call:
    """An ``nn.Module`` whose forward is ``module.<method>(*inputs, **kwargs)`` (what one graph holds)."""

    def __new__(cls, module: Any, method: str, kwargs: dict[str, Any]):
        import torch

        class Call(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.module = module

            def forward(self, *inputs):
                fn = self.module if method == "forward" else getattr(self.module, method)
                return fn(*inputs, **kwargs)

        return Call()


def export_graph(module: Any, inputs: Sequence[Any], path: Path, *, method: str = "forward",
                 kwargs: dict[str, Any] | None = None, input_names: Sequence[str] | None = None,
                 dynamic_spatial: Sequence[int] = ()) -> dict[str, Any]:
    """Write ``module.<method>(*inputs, **kwargs)`` as an ONNX graph; returns its description.

    ``dynamic_spatial`` lists the inputs whose last two (H, W) dimensions are exported as dynamic;
    if the architecture cannot be exported that way the graph is written with static sizes and
    the description says so (``dynamic: []``).
    """
    import torch

    require_onnx()
    names = list(input_names or [f"input{i}" for i in range(len(inputs))])
    wrapper = _Call(module, method, dict(kwargs or {})).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")

    def attempt(dynamic: Sequence[int]) -> None:
        shapes = None
        if dynamic:
            h, w = torch.export.Dim("height", min=2), torch.export.Dim("width", min=2)
            shapes = tuple({2: h, 3: w} if i in dynamic else None for i in range(len(inputs)))
        log = _io.StringIO()
        with warnings.catch_warnings(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            warnings.simplefilter("ignore")
            prog = torch.onnx.export(wrapper, tuple(inputs), dynamo=True, opset_version=OPSET,
                                     input_names=names, dynamic_shapes=shapes,
                                     optimize=True, verify=False, report=False, external_data=False)
            prog.save(str(tmp))

    dynamic = list(dynamic_spatial)
    with torch.inference_mode(False), torch.no_grad():
        inputs = [x.clone() for x in inputs]  # inference tensors cannot be traced
        try:
            attempt(dynamic)
        except Exception:  # noqa: BLE001 - a shape guard in the model: fall back to the example size
            if not dynamic:
                raise
            dynamic = []
            attempt(dynamic)
    os.replace(tmp, path)
    return {"file": path.name, "method": method, "kwargs": {k: v for k, v in (kwargs or {}).items()},
            "inputs": [{"name": n, "shape": list(x.shape), "dtype": str(x.dtype).replace("torch.", ""),
                        "dynamic": ["height", "width"] if i in dynamic else []}
                       for i, (n, x) in enumerate(zip(names, inputs))],
            "opset": OPSET}


def _example_inputs(model: Any, task: str, io: dict[str, Any]) -> tuple[list[Any], list[str], list[int]]:
    """Batch-1 inputs at the model's natural size, their names and which have a dynamic H, W."""
    import torch

    gen = torch.Generator().manual_seed(0)
    xs = list(model.dummy_inputs(1, gen))
    if task == "sample":
        return xs, ["z", "c"][: len(xs)], []
    if task == "inpaint":
        res = int(io.get("resolution", 256))
        mult = 2 ** int(getattr(model, "layer_size", 0))
        side = max(mult, res - res % mult)
        mask = torch.ones(1, 3, side, side)
        mask[:, :, side // 4: side // 2, side // 4: side // 2] = 0
        return [torch.randn(1, 3, side, side) * mask, mask], ["image", "mask"], [0, 1]
    names = ["x", "z", "panoptic"][: len(xs)]
    return xs, names, [i for i, n in enumerate(names) if n in ("x", "panoptic")]


def export_onnx(loaded: Any, out_dir: Path, *, weights_dir: Path | None = None) -> dict[str, Any]:
    """Write the generator of ``loaded`` (a :class:`imgsynth.engine.loading.Loaded`) to ``out_dir``.

    ``out_dir`` gets ``generator.onnx`` (``mapping.onnx`` + ``synthesis.onnx`` for StyleGAN-type
    samplers, ``truncation_psi = 1``, ``noise_mode = const``), the imgsynth weights and config
    (``model.safetensors``, ``config.json`` with an ``onnx`` stanza), so the folder also works
    with ``--weights DIR`` under either runtime. Returns the stanza.
    """
    from safetensors.torch import save_file

    model, out_dir = loaded.model, Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    xs, names, dynamic = _example_inputs(model, loaded.task, loaded.io)
    graphs = {}
    if loaded.task == "sample" and all(hasattr(model, a) for a in ("mapping", "synthesis", "num_ws")):
        import torch

        with torch.no_grad():
            ws = model.mapping(*xs)
        graphs["mapping"] = export_graph(model, xs, out_dir / "mapping.onnx", method="mapping",
                                         kwargs={"truncation_psi": 1.0, "truncation_cutoff": None},
                                         input_names=names)
        graphs["synthesis"] = export_graph(model, [ws], out_dir / "synthesis.onnx", method="synthesis",
                                           kwargs={"noise_mode": "const"}, input_names=["ws"])
    else:
        graphs["generator"] = export_graph(model, xs, out_dir / "generator.onnx", input_names=names,
                                           dynamic_spatial=dynamic)
    stanza = {"format": ONNX_FORMAT, "graphs": graphs, "preprocess": PREPROCESS[loaded.task],
              "postprocess": POSTPROCESS}
    config = {"format": "imgsynth-weights", "version": 1, "arch": loaded.arch, "task": loaded.task,
              "config": loaded.config, "io": loaded.io, "source_model": loaded.model_id, "onnx": stanza}
    if weights_dir is None:
        state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(out_dir / "model.safetensors"))
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return stanza


def card_stanza(stanza: dict[str, Any]) -> str:
    """The ``[onnx]`` TOML lines that describe the graphs on a card."""
    lines = ["[onnx]", f'format = "{stanza["format"]}"', f"opset = {OPSET}"]
    for name, g in stanza["graphs"].items():
        ins = ", ".join(f'{{ name = "{i["name"]}", shape = {i["shape"]}, dynamic = {json.dumps(i["dynamic"])} }}'
                        for i in g["inputs"])
        lines += [f"[onnx.graphs.{name}]", f'file = "{g["file"]}"', f"inputs = [{ins}]"]
    lines += [f"# preprocess: {stanza['preprocess']}", f"# postprocess: {stanza['postprocess']}"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ running


def _cache_dir() -> Path:
    root = os.environ.get("IMGSYNTH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "imgsynth")
    return Path(root) / "onnx"


def fingerprint(module: Any) -> str:
    """sha256 over the module's state (names, shapes, bytes): the cache key of its graphs."""
    h = hashlib.sha256(type(module).__name__.encode())
    for k, v in module.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.view(-1).view(__import__("torch").uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:24]


class _Method:
    """One callable of the generator (``forward``, ``mapping`` or ``synthesis``) run by onnxruntime."""

    def __init__(self, owner: "OrtGenerator", method: str) -> None:
        self.owner, self.method = owner, method

    def __call__(self, *inputs: Any, **kwargs: Any) -> Any:
        return self.owner._run(self.method, inputs, kwargs)


class OrtGenerator:
    """A torch generator whose calls run through onnxruntime (attributes still come from torch)."""

    def __init__(self, module: Any, *, exported: Path | None = None, device: Any = None,
                 threads: int | None = None) -> None:
        require_onnx()
        import onnxruntime as ort

        self._module, self._exported, self._sessions = module, exported, {}
        self._device = device
        self._fingerprint: str | None = None
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        # like OMP_WAIT_POLICY=PASSIVE for torch: spinning worker threads steal the CPU from
        # everything else between calls on small machines
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if threads:
            opts.intra_op_num_threads = threads
        self._opts = opts
        avail = ort.get_available_providers()
        cuda = device is not None and getattr(device, "type", "cpu") == "cuda"
        if cuda and "CUDAExecutionProvider" not in avail:
            raise UsageError("--runtime onnx --device cuda needs onnxruntime-gpu; use --runtime torch")
        self._providers = (["CUDAExecutionProvider"] if cuda else []) + ["CPUExecutionProvider"]
        self._stanza = {}
        if exported is not None and (exported / "config.json").exists():
            self._stanza = json.loads((exported / "config.json").read_text()).get("onnx", {}).get("graphs", {})

    # the torch module answers everything that is not a call
    def __getattr__(self, name: str) -> Any:
        if name in ("mapping", "synthesis") and hasattr(self._module, name):
            return _Method(self, name)
        return getattr(self._module, name)

    def __call__(self, *inputs: Any, **kwargs: Any) -> Any:
        return self._run("forward", inputs, kwargs)

    def eval(self) -> "OrtGenerator":
        self._module.eval()
        return self

    @property
    def torch_module(self) -> Any:
        return self._module

    def _check_deterministic(self, method: str, kwargs: dict[str, Any]) -> None:
        import torch

        if kwargs.get("noise_mode", "const") == "random":
            raise UsageError("--runtime onnx cannot draw per-call noise (--noise-mode random); use const or none, "
                             "or --runtime torch")
        for m in self._module.modules():
            if m.training and isinstance(m, (torch.nn.Dropout, torch.nn.modules.batchnorm._BatchNorm)):
                raise UsageError("this model runs with active dropout or batch statistics, which the ONNX graph "
                                 "cannot reproduce; use --runtime torch")

    def _stored_graph(self, method: str, inputs: Sequence[Any], kwargs: dict[str, Any]) -> Path | None:
        key = {"forward": "generator"}.get(method, method)
        g = self._stanza.get(key)
        if not g or self._exported is None or g.get("kwargs", {}) != {k: v for k, v in kwargs.items()}:
            return None
        if len(g["inputs"]) != len(inputs):
            return None
        for spec, x in zip(g["inputs"], inputs):
            shape = list(x.shape)
            fixed = spec["shape"][1:-2] if spec["dynamic"] else spec["shape"][1:]
            if (shape[1:-2] if spec["dynamic"] else shape[1:]) != fixed or shape[0] != spec["shape"][0]:
                return None
        return self._exported / g["file"]

    def _session(self, method: str, inputs: Sequence[Any], kwargs: dict[str, Any]):
        import onnxruntime as ort

        sig = json.dumps([method, [(list(x.shape), str(x.dtype)) for x in inputs], sorted(kwargs.items())],
                         default=str)
        if sig in self._sessions:
            return self._sessions[sig]
        path = self._stored_graph(method, inputs, kwargs)
        if path is None:
            self._fingerprint = self._fingerprint or fingerprint(self._module)
            digest = hashlib.sha256(sig.encode()).hexdigest()[:16]
            path = _cache_dir() / f"{type(self._module).__name__}-{self._fingerprint}-{digest}.onnx"
            if not path.exists():
                cpu = [x.detach().cpu() for x in inputs]
                export_graph(self._module, cpu, path, method=method, kwargs=kwargs,
                             input_names=[f"input{i}" for i in range(len(inputs))])
        try:
            sess = ort.InferenceSession(str(path), self._opts, providers=self._providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise WeightsError(f"{path}: onnxruntime cannot load this graph ({str(e).splitlines()[0][:200]})") from None
        self._sessions[sig] = sess
        return sess

    def _run(self, method: str, inputs: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        import torch

        self._check_deterministic(method, kwargs)
        sess = self._session(method, inputs, kwargs)
        feeds = {i.name: x.detach().cpu().numpy() for i, x in zip(sess.get_inputs(), inputs)}
        out = sess.run(None, feeds)
        device = inputs[0].device if inputs else torch.device("cpu")
        ys = [torch.from_numpy(o).to(device) for o in out]
        return ys[0] if len(ys) == 1 else tuple(ys)


def wrap(loaded: Any, runtime: str, device: Any = None, weights: Path | None = None) -> Any:
    """Replace ``loaded.model`` by an :class:`OrtGenerator` when ``runtime == 'onnx'`` (networks only)."""
    if runtime != "onnx" or not loaded.is_network:
        return loaded
    loaded.model = OrtGenerator(loaded.model, exported=Path(weights) if weights else None, device=device)
    return loaded


def timed_compare(fn_torch: Callable[[], Any], fn_onnx: Callable[[], Any], rounds: int = 3) -> dict[str, float]:
    """Median seconds of the torch and the onnxruntime call, interleaved in the same process."""
    import statistics
    import time

    fn_torch(), fn_onnx()
    ts, os_ = [], []
    for _ in range(rounds):
        t = time.perf_counter(); fn_torch(); ts.append(time.perf_counter() - t)  # noqa: E702
        t = time.perf_counter(); fn_onnx(); os_.append(time.perf_counter() - t)  # noqa: E702
    return {"torch_s": statistics.median(ts), "onnx_s": statistics.median(os_)}



def export_model_onnx(source: str, out_dir: Path, *, offline: bool = False) -> dict[str, Any]:
    """``imgsynth models export SOURCE --onnx DIR``: SOURCE is a card id or a ``--weights`` folder."""
    from imgsynth.engine.cards import get_card, load_cards
    from imgsynth.engine.loading import load_model, read_export_config

    require_onnx()
    path = Path(source)
    if path.is_dir():
        task = read_export_config(path).get("task")
        loaded = load_model(task, weights=path)
    else:
        card = get_card(source, load_cards())
        loaded = load_model(card.task, model=source, offline=offline)
    if not loaded.is_network:
        raise UsageError(f"{source}: {loaded.arch!r} is a classical method with no network to export")
    try:
        stanza = export_onnx(loaded, Path(out_dir))
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - torch.export / onnxscript raise many types
        first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise WeightsError(f"{source}: {loaded.arch} cannot be exported to ONNX ({first[:200]})") from None
    return {"stanza": stanza, "toml": card_stanza(stanza), "arch": loaded.arch, "task": loaded.task}
