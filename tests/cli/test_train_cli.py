"""`imgsynth train`, `models export` and `models push` driven through Typer's CliRunner."""

import base64
import gzip
import json
import struct
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from safetensors.torch import load_file
from typer.testing import CliRunner

from imgsynth.cli.train import models_export, models_push, train
from imgsynth.engine.cards import parse_card
from imgsynth.engine.loading import load_model

runner = CliRunner()


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks run fastest on one thread, and a busy 2-core machine makes spinning
    OpenMP threads very slow (OMP_WAIT_POLICY is fixed once torch has loaded)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_app():
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("train")(train)
    models = typer.Typer()
    models.command("export")(models_export)
    models.command("push")(models_push)
    app.add_typer(models, name="models")
    return app


def write_recipe(tmp_path, steps=4):
    fm = tmp_path / "fm"
    fm.mkdir(exist_ok=True)
    imgs = np.random.default_rng(0).integers(0, 256, (16, 28, 28), dtype=np.uint8)
    with gzip.open(fm / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", 16, 28, 28) + imgs.tobytes())
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f"""
[run]
out_dir = "{tmp_path / 'run'}"
steps = {steps}
log_every = 2
sample_every = 2
checkpoint_every = 2
grid_samples = 4
[data]
source = "fashion-mnist"
path = "{fm}"
resolution = 8
batch_size = 4
[model]
family = "dcgan"
generator = {{z_dim = 4, ngf = 4}}
discriminator = {{ndf = 4}}
[optim]
ema_decay = 0.9
[export]
license = "MIT"
name = "cli-test"
""")
    return recipe


def test_train_export_and_sample(tmp_path):
    app = make_app()
    recipe = write_recipe(tmp_path)
    res = runner.invoke(app, ["train", str(recipe), "--set", "run.steps=2", "--seed", "3", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().endswith("step-00000002.safetensors")
    assert "step 2/2" in res.stderr and "img/s" in res.stderr  # plain progress lines off a terminal
    resolved = tomllib.loads((tmp_path / "run" / "checkpoints" / "step-00000002.toml").read_text())
    assert resolved["run"]["seed"] == 3 and resolved["run"]["steps"] == 2

    # continue to the recipe's 4 steps and export
    res = runner.invoke(app, ["train", str(recipe), "--resume", "--export", str(tmp_path / "export")])
    assert res.exit_code == 0, res.output
    card = parse_card(tomllib.loads(res.stdout))
    assert card.id == "cli-test" and card.arch == "dcgan"
    assert "resumed from" in res.stderr and "try: imgsynth sample --weights" in res.stderr
    meta = json.loads((tmp_path / "export" / "config.json").read_text())
    assert meta["source"]["steps"] == 4
    loaded = load_model("sample", weights=tmp_path / "export")
    assert loaded.arch == "dcgan" and loaded.config["img_resolution"] == 8


def test_json_records(tmp_path):
    res = runner.invoke(make_app(), ["train", str(write_recipe(tmp_path)), "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["event"] for r in records] == ["log", "log", "done"]
    assert records[0]["step"] == 2 and set(records[0]["losses"]) == {"d", "g"}
    assert records[-1]["step"] == 4 and not records[-1]["interrupted"]
    assert res.stderr == ""


def test_errors_are_one_line(tmp_path):
    app = make_app()
    recipe = write_recipe(tmp_path)
    res = runner.invoke(app, ["train", str(recipe), "--set", "run.steps=lots"])
    assert res.exit_code == 1
    assert res.stderr == (f"error: {recipe}: run.steps must be int, got 'lots' "
                          "(set on the command line: run.steps=lots)\n")
    for item, message in [("model.generator.zdim=3", "unknown config key 'model.generator.zdim'; did you mean 'z_dim'?"),
                          ("model.generator.z_dim=-3", "model.generator: these values do not build DCGANGenerator"),
                          ("model.discriminator.ndf=0", "model.discriminator: these values give DCGANDiscriminator "
                                                        "layers without weights")]:
        res = runner.invoke(app, ["train", str(recipe), "--set", item])
        assert res.exit_code == 1 and res.stderr.startswith(f"error: {recipe}: {message}"), res.stderr
        assert res.stderr.count("\n") == 1 and not (tmp_path / "run").exists()
    res = runner.invoke(app, ["train", str(tmp_path / "missing.toml")])
    assert res.exit_code == 1 and "does not exist" in res.stderr
    res = runner.invoke(app, ["train", str(recipe), "--precision", "fp16", "--device", "cpu"])
    assert res.exit_code == 1 and "fp16 training needs a GPU" in res.stderr


def test_bf16_autocast_refused_without_native_support(tmp_path, native_precision):
    native_precision(bf16=False)
    res = runner.invoke(make_app(), ["train", str(write_recipe(tmp_path)), "--precision", "bf16", "--device", "cpu"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "bf16 autocast" in res.stderr and "use precision fp32" in res.stderr


def test_models_export_command(tmp_path):
    app = make_app()
    recipe = write_recipe(tmp_path, steps=2)
    assert runner.invoke(app, ["train", str(recipe), "-q"]).exit_code == 0
    res = runner.invoke(app, ["models", "export", str(tmp_path / "run"), str(tmp_path / "half"),
                              "--dtype", "fp16", "--no-ema", "--name", "Half Model"])
    assert res.exit_code == 0, res.output
    assert tomllib.loads(res.stdout)["id"] == "half-model"
    weights = load_file(str(tmp_path / "half" / "model.safetensors"))
    assert str(weights["main.0.weight"].dtype) == "torch.float16"
    res = runner.invoke(app, ["models", "export", str(tmp_path / "nowhere"), str(tmp_path / "x")])
    assert res.exit_code == 1 and res.stderr.startswith("error: checkpoint ") and "does not exist" in res.stderr


class UploadHub:
    """Loopback server for the Hub's upload protocol: create repo, branch, validate-yaml, preupload, commit.

    Every file is answered "regular" at preupload, so the commit carries it base64-encoded.
    """

    def __init__(self):
        self.repos, self.commits = {}, []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = self.path.split("?", 1)[0]
                if path == "/api/repos/create":
                    req = json.loads(body)
                    repo = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
                    private = req.get("private") or req.get("visibility") == "private"
                    hub.repos.setdefault(repo, {"private": bool(private), "branches": {"main"}})
                    return self._json(200, {"url": f"{hub.endpoint}/{repo}", "name": repo})
                if path == "/api/validate-yaml":
                    return self._json(200, {"errors": [], "warnings": []})
                parts = path.split("/")  # /api/models/<ns>/<name>/<verb>/<rev>
                repo, verb, rev = f"{parts[3]}/{parts[4]}", parts[5], "/".join(parts[6:])
                if repo not in hub.repos:
                    return self._json(404, {"error": "Repository not found"})
                if verb == "branch":
                    hub.repos[repo]["branches"].add(rev)
                    return self._json(200, {})
                if verb == "preupload":
                    files = json.loads(body)["files"]
                    return self._json(200, {"files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
                if verb == "commit":
                    lines = [json.loads(ln) for ln in body.splitlines() if ln.strip()]
                    files = {ln["value"]["path"]: base64.b64decode(ln["value"]["content"])
                             for ln in lines if ln["key"] == "file"}
                    header = next(ln["value"] for ln in lines if ln["key"] == "header")
                    hub.commits.append({"repo": repo, "revision": rev, "files": files,
                                        "summary": header["summary"]})
                    oid = f"{len(hub.commits):040x}"
                    return self._json(200, {"commitUrl": f"{hub.endpoint}/{repo}/commit/{oid}",
                                            "commitOid": oid})
                return self._json(404, {"error": "unknown endpoint"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def upload_hub(monkeypatch):
    hub = UploadHub()
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_TOKEN", "hf_loopback_test_token")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield hub
    hub.close()


def test_push_to_loopback_hub(tmp_path, upload_hub):
    app = make_app()
    recipe = write_recipe(tmp_path, steps=2)
    res = runner.invoke(app, ["train", str(recipe), "-q", "--export", str(tmp_path / "export")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["models", "push", str(tmp_path / "export"), "me/dcgan-tiny", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert [ln.split("\t")[0] for ln in res.stdout.splitlines()] == ["model.safetensors", "config.json",
                                                                     "README.md"]
    assert upload_hub.repos == {} and upload_hub.commits == []  # a dry run sends nothing

    res = runner.invoke(app, ["models", "push", str(tmp_path / "export"), "me/dcgan-tiny", "--private",
                              "--revision", "v1"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == f"{upload_hub.endpoint}/me/dcgan-tiny/commit/{1:040x}"
    assert upload_hub.repos["me/dcgan-tiny"] == {"private": True, "branches": {"main", "v1"}}
    (commit,) = upload_hub.commits
    assert commit["revision"] == "v1" and commit["summary"].startswith("imgsynth: dcgan (2 steps")
    assert set(commit["files"]) == {"model.safetensors", "config.json", "README.md"}
    for name, data in commit["files"].items():
        assert data == (tmp_path / "export" / name).read_bytes()
    assert 'revision = "' + f"{1:040x}" + '"' in res.stderr


def test_push_refuses_a_non_export(tmp_path):
    res = runner.invoke(make_app(), ["models", "push", str(tmp_path), "me/x", "--dry-run"])
    assert res.exit_code == 1 and "has no config.json" in res.stderr


def test_train_new_then_train_through_the_main_app(tmp_path):
    """`imgsynth train new` writes a recipe; `imgsynth train RECIPE` (no subcommand) runs it."""
    from imgsynth.cli.main import app

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        from PIL import Image

        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    recipe = tmp_path / "mine.toml"
    res = runner.invoke(app, ["train", "new", "dcgan", "--data", str(photos), "--size", "16", "-o", str(recipe)])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(recipe) and "fit = 'crop'" in res.stderr and "run name 'mine'" in res.stderr
    raw = tomllib.loads(recipe.read_text())
    assert raw["export"]["name"] == "mine" and raw["run"]["out_dir"] == "runs/mine"
    again = runner.invoke(app, ["train", "new", "dcgan", "--data", str(photos), "-o", str(recipe)])
    assert again.exit_code == 1 and "exists" in again.stderr
    assert tomllib.loads(recipe.read_text()) == raw  # not overwritten
    res = runner.invoke(app, ["train", str(recipe), "--set", "run.steps=1", "--set", "data.batch_size=2",
                              "--set", f'run.out_dir="{tmp_path / "run"}"', "--set", "model.generator.ngf=4",
                              "--set", "model.discriminator.ndf=4", "--export", str(tmp_path / "export")])
    assert res.exit_code == 0, res.output
    assert parse_card(tomllib.loads(res.stdout)).id == "mine"
    bad = runner.invoke(app, ["train", "new", "pix2pix", "--data", str(photos), "-o", str(tmp_path / "p.toml")])
    assert bad.exit_code == 1 and bad.stderr.startswith("error: ") and "--target" in bad.stderr


def test_train_help_lists_families_and_sources_with_examples():
    from imgsynth.cli.main import app
    from imgsynth.training.recipes import FAMILY_DATA

    res = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    for family in FAMILY_DATA:
        assert f"imgsynth train new {family} " in res.stdout or f"{family}," in res.stdout, family
    for source in ("folder", "paired", "masked", "edges", "gray", "clusters", "fashion-mnist-labels", "mosaics"):
        assert source in res.stdout, source
    assert "imgsynth train new dcgan --data photos/ -o my.toml" in res.stdout


def test_resume_hint_keeps_every_override():
    from imgsynth.cli.train import resume_command

    cmd = resume_command(Path("my recipe.toml"), ["run.out_dir=\"runs/x y\"", "run.seed=3"], Path("out"))
    assert cmd == ("imgsynth train 'my recipe.toml' --resume --set 'run.out_dir=\"runs/x y\"' "
                   "--set run.seed=3 --export out")


def test_export_of_a_copied_bundled_recipe_takes_the_run_name(tmp_path):
    """A recipe still named like a shipped model does not export under that model's id or licence."""
    app = make_app()
    recipe = write_recipe(tmp_path, steps=1)
    recipe.write_text(recipe.read_text().replace('name = "cli-test"', 'name = "dcgan-fashion-mnist"'))
    res = runner.invoke(app, ["train", str(recipe), "--export", str(tmp_path / "export")])
    assert res.exit_code == 0, res.output
    card = parse_card(tomllib.loads(res.stdout))
    assert card.id == "dcgan-run" and card.license == "unspecified"
    assert "is the id of a model imgsynth ships" in res.stderr
    res = runner.invoke(app, ["models", "export", str(tmp_path / "run"), str(tmp_path / "again"),
                              "--name", "dcgan-fashion-mnist", "--license", "MIT"])
    assert res.exit_code == 0 and parse_card(tomllib.loads(res.stdout)).id == "dcgan-fashion-mnist"
