import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "conformance"))


@pytest.fixture(autouse=True)
def _offline_env(monkeypatch, tmp_path_factory):
    """No test may reach the network or the user's real Hub cache."""
    home = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("NO_COLOR", "1")


# --- a loopback server that speaks the Hub's resolve protocol ------------------------------------
import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HubServer:
    """Serves ``/{repo_id}/resolve/{revision}/{filename}`` (and plain ``/files/...`` URLs) on 127.0.0.1.

    ``add(repo_id, filename, data, revision=COMMIT, aliases=("main",))`` publishes a file; a
    request for anything else answers 404 with the Hub's ``X-Error-Code`` header, which
    huggingface_hub turns into RepositoryNotFound / RevisionNotFound / EntryNotFound errors.
    ``requests`` counts the requests served so tests can prove a cache hit made none.
    """

    def __init__(self):
        self.files: dict[tuple[str, str, str], tuple[bytes, str]] = {}
        self.repos: set[str] = set()
        self.revisions: dict[tuple[str, str], str] = {}
        self.plain: dict[str, bytes] = {}
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, headers, body=b""):
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD" and body:
                    self.wfile.write(body)

            def _handle(self):
                server.requests += 1
                path = self.path.split("?", 1)[0]
                if path.startswith("/files/"):
                    data = server.plain.get(path)
                    if data is None:
                        return self._send(404, {"Content-Length": "0"})
                    return self._send(200, {"Content-Length": str(len(data))}, data)
                if "/resolve/" not in path:
                    return self._send(404, {"Content-Length": "0", "X-Error-Code": "RepoNotFound"})
                repo, rest = path.lstrip("/").split("/resolve/", 1)
                rev, _, filename = rest.partition("/")
                if repo not in server.repos:
                    return self._send(404, {"Content-Length": "0", "X-Error-Code": "RepoNotFound",
                                            "X-Error-Message": "Repository not found"})
                commit = server.revisions.get((repo, rev))
                if commit is None:
                    return self._send(404, {"Content-Length": "0", "X-Error-Code": "RevisionNotFound",
                                            "X-Error-Message": "Invalid rev id"})
                entry = server.files.get((repo, commit, filename))
                if entry is None:
                    return self._send(404, {"Content-Length": "0", "X-Error-Code": "EntryNotFound",
                                            "X-Error-Message": "Entry not found", "X-Repo-Commit": commit})
                data, etag = entry
                return self._send(200, {"Content-Length": str(len(data)), "ETag": f'"{etag}"',
                                        "X-Repo-Commit": commit, "Accept-Ranges": "bytes"}, data)

            do_GET = _handle
            do_HEAD = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def add(self, repo_id: str, filename: str, data: bytes, revision: str = "a" * 40,
            aliases: tuple[str, ...] = ("main",)) -> str:
        self.repos.add(repo_id)
        for name in (revision, *aliases):
            self.revisions[(repo_id, name)] = revision
        self.files[(repo_id, revision, filename)] = (data, hashlib.sha256(data).hexdigest())
        return hashlib.sha256(data).hexdigest()

    def add_plain(self, path: str, data: bytes) -> str:
        self.plain[path] = data
        return f"{self.endpoint}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hub_server(monkeypatch):
    server = HubServer()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield server
    server.close()


@pytest.fixture
def cards_dir(tmp_path, monkeypatch):
    """An empty weights/ folder for cards written by a test (IMGSYNTH_WEIGHTS_DIR)."""
    d = tmp_path / "weights"
    d.mkdir()
    monkeypatch.setenv("IMGSYNTH_WEIGHTS_DIR", str(d))
    return d


def _toml(value) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(type(value))


@pytest.fixture
def copy_card(cards_dir):
    """``copy_card(official, config, **source)``: the official card with a reduced ``config`` (and
    optionally other ``[source]`` values) written to ``cards_dir`` and loaded back."""
    from imgsynth.engine.cards import load_cards

    def write(official, config: dict, **source):
        src = {k: v for k, v in vars(official.source).items() if v is not None}
        src.update(source)
        lines = [f"{k} = {_toml(getattr(official, k))}" for k in ("id", "arch", "task", "title", "license")]
        for section, table in (("source", src), ("config", config), ("io", official.io)):
            lines.append(f"[{section}]")
            lines += [f"{k} = {_toml(v)}" for k, v in table.items() if v is not None]
        (cards_dir / f"{official.id}.toml").write_text("\n".join(lines) + "\n")
        return load_cards(cards_dir)[official.id]

    return write


def _mmagic_checkpoint(model):
    """What an mmagic PConvInpaintor checkpoint holds for a ``pconv_unet`` (+ a loss module's weights):
    ``{'meta', 'state_dict'}`` with ``generator.{encoder,decoder}.encN/decN.*`` keys and all-ones
    ``weight_mask_updater`` buffers."""
    import torch

    sd = {}
    for k, v in model.state_dict().items():
        layer, _, rest = k.partition(".")
        kind, idx = layer.split("_")
        part = "encoder" if kind == "enc" else "decoder"
        sd[f"generator.{part}.{kind}{idx}.{rest}"] = v.clone()
        if rest == "conv.weight":
            sd[f"generator.{part}.{kind}{idx}.conv.weight_mask_updater"] = torch.ones_like(v)
    sd["loss_percep.vgg.vgg_layers.0.weight"] = torch.randn(4, 3, 3, 3)
    return {"meta": {"mmedit_version": "0.x"}, "state_dict": sd}


@pytest.fixture
def mmagic_checkpoint():
    """``mmagic_checkpoint(model)``: the mmcv checkpoint dict mmagic would save for this PConv U-Net."""
    return _mmagic_checkpoint


@pytest.fixture
def make_export(tmp_path):
    """Write a tiny registered architecture as an ``imgsynth train --export`` folder."""

    def make(arch: str, config: dict | None = None, task: str | None = None, seed: int = 0):
        import json

        import torch
        from safetensors.torch import save_file

        from imgsynth.models.registry import get_model

        spec = get_model(arch)
        cfg = dict(spec.tiny if config is None else config)
        torch.manual_seed(seed)
        model = spec.build(cfg)
        d = tmp_path / f"export-{arch}-{seed}"
        d.mkdir()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / "model.safetensors"))
        (d / "config.json").write_text(json.dumps({
            "format": "imgsynth-weights", "version": 1, "arch": arch, "task": task or spec.task,
            "config": cfg, "io": {}}))
        return d

    return make


@pytest.fixture
def native_precision(monkeypatch):
    """``native_precision(bf16=True, fp16=False)``: force the CPU capability answer of
    :func:`imgsynth.engine.device.cpu_native_precision` (bf16 paths run at tiny sizes on any CPU)."""
    from imgsynth.engine import device

    def force(bf16: bool = True, fp16: bool = False) -> None:
        answers = {"fp32": True, "bf16": bf16, "fp16": fp16}
        monkeypatch.setattr(device, "cpu_native_precision", lambda precision: answers[precision])

    return force


@pytest.fixture
def conv_paths(monkeypatch):
    """``select(packed)``: run ``imgsynth.layers.fast_conv`` on oneDNN's packed weights (True; the
    test is skipped on a build without the ops) or on the channels-last / GEMM paths (False).
    Returns the cache slot the chosen path fills on a conv module."""
    from imgsynth.layers import fast_conv

    def select(packed: bool) -> str:
        if packed and not fast_conv._onednn_ops():
            pytest.skip("this torch build has no oneDNN fused convolution ops")
        monkeypatch.setattr(fast_conv, "ONEDNN_PACKED", packed)
        return "_weight_cache_onednn" if packed else "_weight_cache_cl"

    return select
