"""CLI error handling: one line, escaped, the right exit code, never a traceback without --debug;
usage errors found before torch is imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgsynth.cli import _common
from imgsynth.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_control_characters_in_names_are_escaped(tmp_path):
    name = "evil\x1b[31m\nname\t.png"
    res = runner.invoke(app, ["inpaint", str(tmp_path / name), "--model", "telea", "-o", str(tmp_path / "o")])
    assert res.exit_code == 1
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "\x1b" not in res.stderr
    assert "evil\\x1b[31m\\nname\\t.png: " in errors[0]


def test_one_line_keeps_printable_unicode():
    assert _common.one_line("café\x07 ok") == "café\\x07 ok"


# usage errors (exit 2) of every kind, checked without importing torch: a fresh interpreter runs the
# command and reports whether torch got imported
_PROBE = """
import sys
from imgsynth.cli.main import app
try:
    app(sys.argv[1:], standalone_mode=True)
except SystemExit as e:
    code = e.code
print("TORCH" if "torch" in sys.modules else "NO-TORCH", file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize("args", [
    ["sample", "--seeds", "5-2"],
    ["sample", "--seeds", "0-99999999999999"],
    ["sample", "--seeds", "0-4000000"],
    ["sample", "--grid", "4by4"],
    ["sample", "--model", "no-such-model"],
    ["sample", "--model", "telea"],  # a model of another task
    ["sample", "--noise-mode", "loud"],
    ["sample", "--mix-seeds", "x"],
    ["sample", "--device", "gpu7"],
    ["sample", "--precision", "fp8"],
    ["interpolate", "--seeds", "1,2", "--space", "q"],
    ["interpolate", "--seeds", "1,2", "--method", "cubic"],
    ["translate", "x.png", "--palette", "no-such-palette"],
    ["translate", "x.png", "--input-kind", "sketch"],
    ["translate", "x.png", "--model", "no-such-model"],
    ["inpaint", "x.png", "--strategy", "tiles"],
    ["inpaint", "x.png", "--ensemble", "3"],
    ["inpaint", "x.png", "--model", "no-such-model"],
    ["inpaint", "x.png", "--model", "telea", "--weights", "somewhere"],
])
def test_usage_errors_exit_2_fast_and_before_torch(args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, env=env, timeout=60)
    seconds = time.perf_counter() - t0
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.rstrip().endswith("NO-TORCH"), err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip() and ln != "NO-TORCH"]
    assert any(("error" in ln.lower() or "invalid" in ln.lower()) for ln in lines), err
    assert seconds < 10  # the 0.5 s figure is measured by benchmarks/run.py on an idle machine


def test_choices_match_the_library():
    from imgsynth.engine.device import PRECISIONS
    from imgsynth.pipelines.inpaint import ENSEMBLES, STRATEGIES
    from imgsynth.pipelines.sample import NOISE_MODES
    from imgsynth.pipelines.translate import KINDS

    assert _common.INPAINT_STRATEGIES == STRATEGIES and _common.INPAINT_ENSEMBLES == ENSEMBLES
    assert _common.INPUT_KINDS == KINDS and _common.NOISE_MODES == NOISE_MODES
    assert _common.PRECISIONS == PRECISIONS


@pytest.mark.parametrize("config,key", [
    ({"format": "imgsynth-weights", "arch": "dcgan", "config": {"ngf": "four"}}, "'config'"),
    ({"format": "imgsynth-weights", "arch": "dcgan", "config": {"no_such_option": 1}}, "no_such_option"),
    ({"format": "imgsynth-weights", "arch": "dcgan", "config": [1, 2]}, "'config'"),
    ({"format": "imgsynth-weights", "arch": "no_such_arch"}, "'arch'"),
    ({"format": "imgsynth-weights", "arch": 7}, "'arch'"),
    ([1, 2, 3], "not an imgsynth export"),
])
def test_bad_weights_config_is_one_line_naming_file_and_key(tmp_path, make_export, config, key):
    d = make_export("dcgan")
    (d / "config.json").write_text(json.dumps(config))
    res = runner.invoke(app, ["sample", "--weights", str(d), "--seeds", "1", "-o", str(tmp_path / "o.png")])
    assert res.exit_code == 1, res.stderr
    assert res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "config.json" in res.stderr and key in res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr


def test_unexpected_exceptions_are_one_line_without_debug(monkeypatch, tmp_path):
    import imgsynth.engine.inpaint as engine

    def boom(*a, **k):
        raise RuntimeError("kaput\nsecond line")

    monkeypatch.setattr(engine, "run_inpaint", boom)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "p.png")
    args = ["inpaint", str(tmp_path / "p.png"), "--model", "telea", "-o", str(tmp_path / "o.png")]
    res = runner.invoke(app, args)
    assert res.exit_code == 1
    assert res.stderr.startswith("error: internal error (RuntimeError: kaput\\nsecond line)")
    assert len(res.stderr.strip().splitlines()) == 1
    res = runner.invoke(app, [*args, "--debug"])
    assert isinstance(res.exception, RuntimeError)  # --debug shows the real exception


def test_closed_stdout_is_quiet(tmp_path):
    """`imgsynth models list | head -1`: no BrokenPipeError traceback."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(f"{sys.executable} -m imgsynth models list | head -1", shell=True, capture_output=True,
                          env=env, timeout=60)
    assert proc.stdout.decode().startswith("id\t") and b"Traceback" not in proc.stderr


@pytest.mark.parametrize("old,new,key", [
    ("ngf = 32", 'ngf = "wide"', "'config'"),
    ("ngf = 32", "ngf = -3", "'config'"),
    ('task = "sample"', "task = 7", "'task'"),
    ("default = true", 'default = "yes"', "'default'"),
    ('kind = "bundled"', 'kind = "ftp"', "kind"),
])
def test_bad_card_fields_are_one_line_naming_card_and_key(tmp_path, monkeypatch, old, new, key):
    import shutil

    for name in ("dcgan-fashion-mnist.toml", "dcgan-fashion-mnist.safetensors"):
        shutil.copy(ROOT / "weights" / name, tmp_path / name)
    card = tmp_path / "dcgan-fashion-mnist.toml"
    card.write_text(card.read_text().replace(old, new, 1))
    monkeypatch.setenv("IMGSYNTH_WEIGHTS_DIR", str(tmp_path))
    res = runner.invoke(app, ["sample", "--seeds", "1", "-o", str(tmp_path / "o.png")])
    assert res.exit_code in (1, 2), res.stderr
    assert res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "dcgan-fashion-mnist.toml" in res.stderr and key in res.stderr
    assert "internal error" not in res.stderr
