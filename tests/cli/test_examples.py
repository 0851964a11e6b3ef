"""Every README.md and ``--help`` example that can run offline runs, as written, through the real CLI.

Examples are parsed from the sources (``help_examples.py``); each runs in a temporary folder that
holds small stand-ins for the files it names (photo.png, hole.png, a tiny ``--weights`` export, ...)
and a link to the repository's ``examples/``. An example is skipped only for a stated reason: it
downloads weights (its ``--model`` card is neither bundled nor built in), installs packages, trains,
or needs several GPUs. Plain commands run in-process (CliRunner); pipes and redirects through bash.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgsynth.cli.main import app

from help_examples import ROOT, help_examples, readme_blocks

runner = CliRunner()

_NOT_OFFLINE = {
    "pip": "installs packages", "apt-get": "installs a data set", "torchrun": "needs several GPUs / processes",
    "PYTHONPATH=tests/conformance": "runs in tests/conformance/test_conformance.py",
}


def _examples() -> list[tuple[str, str]]:
    out = [(f"README: {c}", c) for c in readme_blocks()]
    out += [(f"{path} --help: {c}", c) for path, c in help_examples()]
    seen, unique = set(), []
    for ident, cmd in out:
        cmd = cmd.split("&& ", 1)[1] if cmd.startswith("pip install -e . &&") else cmd  # the first screen
        if cmd not in seen:
            seen.add(cmd)
            unique.append((ident, cmd))
    return unique


def _skip_reason(cmd: str) -> str | None:
    first = cmd.split()[0]
    if first in _NOT_OFFLINE:
        return _NOT_OFFLINE[first]
    argv = shlex.split(cmd.split("|")[-1].split(">")[0])
    if argv[:2] == ["imgsynth", "train"]:
        return "trains a model for minutes on a downloaded data set"
    if argv[:3] == ["imgsynth", "models", "download"]:
        return "downloads weights (or needs the downloaded file)"
    if argv[:3] == ["imgsynth", "models", "push"] and "--dry-run" not in argv:
        return "publishes to the Hugging Face Hub (network and a token)"
    if argv[:3] == ["imgsynth", "models", "export"]:
        return "needs a training run's checkpoints"
    if argv[:2] == ["imgsynth", "serve"]:
        return "serves until Ctrl-C (tests/serve start it on a free port and drive it in a browser)"
    from imgsynth.engine.cards import get_card

    for flag in ("--model", "-m"):
        if flag in argv:
            if argv[argv.index(flag) + 1].isupper():
                return f"{argv[argv.index(flag) + 1]} stands for a model id"
            card = get_card(argv[argv.index(flag) + 1])
            if card.has_weights and card.source.kind != "bundled":
                return f"downloads the weights of {card.id}"
    return None


def _photo(path: Path, w: int = 48, h: int = 40, rgba: bool = False, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w]
    rgb = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 90)], 2).astype(np.uint8)
    rgb = np.clip(rgb.astype(int) + rng.integers(-8, 8, rgb.shape), 0, 255).astype(np.uint8)
    if rgba:
        alpha = np.full((h, w), 255, np.uint8)
        alpha[10:22, 12:30] = 0
        Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path)
    else:
        Image.fromarray(rgb).save(path)


def _hole(path: Path, w: int = 48, h: int = 40) -> None:
    arr = np.zeros((h, w), np.uint8)
    arr[12:24, 14:30] = 255
    Image.fromarray(arr).save(path)


@pytest.fixture
def workdir(tmp_path, make_export, monkeypatch):
    """A folder with every file the examples name, as small as possible."""
    d = tmp_path / "work"
    d.mkdir()
    (d / "examples").symlink_to(ROOT / "examples")
    _photo(d / "photo.png"), _hole(d / "hole.png"), _hole(d / "m.png", 64, 56)  # m.png goes with big.jpg
    _photo(d / "cutout.png", rgba=True)
    _photo(d / "big.jpg", 64, 56, seed=1), _hole(d / "big_mask.png", 64, 56)
    Image.open(d / "big.jpg").save(d / "big.jpg", quality=95)
    for sub in ("photos", "masks"):
        (d / sub).mkdir()
    for i in range(2):
        _photo(d / "photos" / f"p{i}.png", seed=i), _hole(d / "masks" / f"p{i}.png")
    dcgan = make_export("dcgan")
    for target in ("runs/dcgan/export", "export", "runs/dcgan-fashion-mnist/export", "runs/my/export"):
        shutil.copytree(dcgan, d / target)
    shutil.copytree(make_export("spade"), d / "runs/spade/export")
    for sub in ("labels", "instances"):
        (d / sub).mkdir()
    labels = np.random.default_rng(0).integers(0, 5, (32, 32), dtype=np.uint8)
    Image.fromarray(labels).save(d / "labels" / "a.png")
    Image.fromarray((labels > 2).astype(np.uint8)).save(d / "instances" / "a.png")
    import cv2

    video = cv2.VideoWriter(str(d / "walk.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (32, 32))
    for i in range(4):
        frame = np.zeros((32, 32, 3), np.uint8)
        frame[8:24, 4 + 2 * i:20 + 2 * i] = 200  # a block moving right
        video.write(frame)
    video.release()
    monkeypatch.chdir(d)
    # huggingface_hub reads HF_HUB_OFFLINE once, at import: import it first, so that the variable
    # set here for these examples does not leave the Hub offline for the tests that run after them
    import huggingface_hub.constants  # noqa: F401

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return d


def _run(cmd: str, cwd: Path) -> tuple[int, str]:
    if any(ch in cmd for ch in "|><"):
        py = shlex.quote(sys.executable)
        shell = cmd.replace("imgsynth ", f"{py} -m imgsynth ")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", shell], cwd=cwd, env=env, capture_output=True,
                              timeout=300)
        return proc.returncode, proc.stderr.decode()
    argv = shlex.split(cmd)
    assert argv[0] == "imgsynth", cmd
    res = runner.invoke(app, argv[1:])
    return res.exit_code, res.stderr + (f"\n{res.exception!r}" if res.exception and res.exit_code not in (0, 1, 2) else "")


@pytest.mark.parametrize("ident,cmd", _examples(), ids=[i for i, _ in _examples()])
def test_documented_example_runs_as_written(ident, cmd, workdir):
    reason = _skip_reason(cmd)
    if reason:
        pytest.skip(reason)
    before = set(p.relative_to(workdir) for p in workdir.rglob("*") if "examples" not in p.parts)
    code, err = _run(cmd, workdir)
    assert code == 0, f"{cmd}\n{err}"
    assert "Traceback" not in err
    after = set(p.relative_to(workdir) for p in workdir.rglob("*") if "examples" not in p.parts)
    argv = shlex.split(cmd.split("|")[-1])
    if argv[:2] != ["imgsynth", "models"]:
        assert after - before, f"{cmd} wrote nothing"


def test_every_example_is_either_run_or_skipped_for_a_reason():
    """The parser finds the documented commands (a format change must not silently skip them all)."""
    cmds = [c for _, c in _examples()]
    assert any(c.startswith("cat photo.png | imgsynth inpaint -") for c in cmds)
    assert any("examples/inpaint/astronaut.png" in c for c in cmds)
    runnable = [c for c in cmds if _skip_reason(c) is None]
    assert len(runnable) >= 20, runnable
