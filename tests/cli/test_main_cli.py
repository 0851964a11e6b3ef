"""The top-level app: help, version, start-up without torch, models commands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from imgsynth import __version__
from imgsynth.cli.main import app

runner = CliRunner()


def test_version_and_help():
    assert runner.invoke(app, ["--version"]).stdout.strip() == f"imgsynth {__version__}"
    res = runner.invoke(app, ["-h"])
    assert res.exit_code == 0 and "inpaint" in res.stdout and "models" in res.stdout
    res = runner.invoke(app, ["inpaint", "--help"])
    assert "Examples" in res.stdout and "--mask" in res.stdout


@pytest.mark.parametrize("argv", [["--help"], ["models", "list"], ["models", "list", "--json"], ["inpaint", "-h"]])
def test_no_torch_for_help_and_list(argv):
    code = (
        "import sys\n"
        "from imgsynth.cli.main import app\n"
        "try:\n"
        f"    app({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'cv2' not in sys.modules, 'cv2 was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_models_list_show_verify():
    res = runner.invoke(app, ["models", "list", "--json", "--task", "inpaint"])
    assert res.exit_code == 0
    recs = [json.loads(line) for line in res.stdout.splitlines()]
    ids = {r["id"] for r in recs}
    assert {"telea", "ns", "patchmatch"} <= ids and all(r["task"] == "inpaint" for r in recs)
    telea = next(r for r in recs if r["id"] == "telea")
    assert telea["weights"] == "builtin" and not telea["task_default"]
    default = next(r for r in recs if r["task_default"])
    assert default["id"] == "pconv-photos-256" and default["weights"] == "bundled"
    res = runner.invoke(app, ["models", "show", "telea"])
    assert json.loads(res.stdout)["arch"] == "telea"
    res = runner.invoke(app, ["models", "show", "telee"])
    assert res.exit_code == 2 and "did you mean 'telea'" in res.stderr
    res = runner.invoke(app, ["models", "verify"])
    assert res.exit_code == 0, res.stdout + res.stderr
    res = runner.invoke(app, ["models", "list", "--task", "paint"])
    assert res.exit_code == 2


def test_models_list_marks_unverified_cards(cards_dir):
    (cards_dir / "official.toml").write_text(
        'id = "official"\narch = "dcgan"\ntask = "sample"\ntitle = "t"\nlicense = "MIT"\n'
        '[source]\nkind = "url"\nurl = "http://127.0.0.1:9/x.pth"\nfilename = "x.pth"\nformat = "pth"\n'
        'converter = "dcgan:from_examples"\n')
    res = runner.invoke(app, ["models", "list"])
    assert "not verified" in res.stdout
    res = runner.invoke(app, ["models", "download", "official", "--offline"])
    assert res.exit_code == 1 and "offline" in res.stderr
