"""The documented pipe: ``cat photo.png | imgsynth inpaint - --mask hole.png > out.png``.

Input ``-`` with no ``-o`` writes to stdout when stdout is not a terminal and is refused (exit 2,
before any work) on one; ``-o -`` on a terminal is refused before any work; stdin never counts
as "already done"; commands chain. Real subprocesses (and a pseudo-terminal for the TTY cases).
"""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def _env() -> dict:
    return {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def _png(path: Path, seed: int = 0, w: int = 24, h: int = 20) -> Path:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def _mask(path: Path, w: int = 24, h: int = 20) -> Path:
    arr = np.zeros((h, w), np.uint8)
    arr[5:12, 6:14] = 255
    Image.fromarray(arr).save(path)
    return path


def _cli(*args, stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imgsynth", *map(str, args)], input=stdin, capture_output=True,
                          cwd=cwd or ROOT, env=_env(), timeout=120)


def _on_tty_stdout(*args, stdin: bytes = b"", cwd: Path | None = None) -> tuple[int, str, float]:
    """Run with stdout on a pseudo-terminal (stdin a pipe): (exit code, stderr, seconds)."""
    master, slave = pty.openpty()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "imgsynth", *map(str, args)], stdin=subprocess.PIPE,
                            stdout=slave, stderr=subprocess.PIPE, cwd=cwd or ROOT, env=_env())
    os.close(slave)
    _, err = proc.communicate(stdin, timeout=120)
    seconds = time.perf_counter() - t0
    os.close(master)
    return proc.returncode, err.decode(), seconds


def test_stdin_without_o_writes_png_to_stdout_and_nothing_else(tmp_path):
    p, m = _png(tmp_path / "p.png"), _mask(tmp_path / "m.png")
    proc = _cli("inpaint", "-", "--mask", m, "--model", "ns", stdin=p.read_bytes(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout[:8] == PNG
    out = np.asarray(Image.open(io.BytesIO(proc.stdout)))
    hole = np.asarray(Image.open(m)) >= 128
    assert np.array_equal(out[~hole], np.asarray(Image.open(p))[~hole])
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.png", "p.png"]  # no ./out/stdin.png


def test_stdin_is_never_already_done(tmp_path):
    m = _mask(tmp_path / "m.png")
    outs = []
    for seed in (1, 2):
        proc = _cli("inpaint", "-", "--mask", m, "--model", "ns", "-o", tmp_path / "out",
                    stdin=_png(tmp_path / f"p{seed}.png", seed).read_bytes())
        assert proc.returncode == 0, proc.stderr.decode()
        assert "1 written, 0 skipped" in proc.stderr.decode()
        outs.append(np.asarray(Image.open(tmp_path / "out" / "stdin.png")))
    assert not np.array_equal(*outs)


@pytest.mark.parametrize("args", [
    ["inpaint", "-", "--mask", "M", "--model", "ns"],
    ["inpaint", "-", "--mask", "M", "--model", "ns", "-o", "-"],
    ["inpaint", "X", "--mask", "M", "--model", "ns", "-o", "-"],
    ["translate", "-", "--model", "pix2pix-edges-photos"],
    ["sample", "--seeds", "1", "-o", "-"],
])
def test_terminal_stdout_is_refused_before_any_work(tmp_path, args):
    p, m = _png(tmp_path / "p.png"), _mask(tmp_path / "m.png")
    args = [str(m) if a == "M" else str(p) if a == "X" else a for a in args]
    code, err, seconds = _on_tty_stdout(*args, stdin=p.read_bytes(), cwd=tmp_path)
    assert code == 2, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "terminal" in err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.png", "p.png"]
    assert seconds < 5  # refused at parse time: no model is loaded (generous for a loaded machine)


def test_json_with_stdout_image_is_a_usage_error(tmp_path):
    p, m = _png(tmp_path / "p.png"), _mask(tmp_path / "m.png")
    proc = _cli("inpaint", "-", "--mask", m, "--model", "ns", "--json", stdin=p.read_bytes())
    assert proc.returncode == 2 and b"--json" in proc.stderr


def test_terminal_stdin_is_refused(tmp_path):
    master, slave = pty.openpty()
    proc = subprocess.run([sys.executable, "-m", "imgsynth", "inpaint", "-", "--model", "ns", "-o", "x.png"],
                          stdin=slave, capture_output=True, cwd=tmp_path, env=_env(), timeout=60)
    os.close(slave), os.close(master)
    assert proc.returncode == 2 and b"stdin is a terminal" in proc.stderr


def test_chain_inpaint_into_translate(tmp_path):
    """`cat p.png | imgsynth inpaint - -o - | imgsynth translate - ... > x.png`, as a shell runs it."""
    p, m = _png(tmp_path / "p.png", w=32, h=32), _mask(tmp_path / "m.png", w=32, h=32)
    py = sys.executable
    cmd = (f"cat {p} | {py} -m imgsynth inpaint - --mask {m} --model telea -o - "
           f"| {py} -m imgsynth translate - --model pix2pix-edges-photos --offline > {tmp_path / 'x.png'}")
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, cwd=tmp_path, env=_env(),
                          timeout=180)
    assert proc.returncode == 0, proc.stderr.decode()
    with Image.open(tmp_path / "x.png") as im:
        assert im.size == (32, 32)


def test_progress_on_a_terminal_covers_the_model_load_and_each_item(tmp_path):
    """stderr on a terminal: the bar appears before any item is done (the load) and counts items."""
    for i in range(2):
        _png(tmp_path / f"p{i}.png", i), _mask(tmp_path / f"p{i}_mask.png")
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "imgsynth", "inpaint", str(tmp_path / "p0.png"),
                             str(tmp_path / "p1.png"), "--model", "patchmatch", "-o", str(tmp_path / "out")],
                            stdout=subprocess.DEVNULL, stderr=slave, cwd=ROOT, env={**_env(), "TERM": "xterm"})
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=120)
    os.close(master)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "inpaint: loading the model" in text
    assert "2/2" in text or "1/2" in text
