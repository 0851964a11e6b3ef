"""Faults while reading and writing: every one is one item's ``error: FILE: problem``, the batch goes on,
no temp file is left, and no input is ever written over (real paths, symlinks, ``..``, hard links)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgsynth.cli.main import app
from imgsynth.engine import io
from imgsynth.errors import OutputError

runner = CliRunner()


def _photo(path: Path, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(path)
    return path


def _mask(path: Path) -> Path:
    arr = np.zeros((20, 24), np.uint8)
    arr[4:10, 5:12] = 255
    Image.fromarray(arr).save(path)
    return path


def _inpaint(*args):
    return runner.invoke(app, ["inpaint", *map(str, args), "--model", "telea"])


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*.tmp")]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO, errno.EACCES])
def test_write_errors_fail_one_item_and_leave_no_temp_file(tmp_path, monkeypatch, code):
    for i in range(3):
        _photo(tmp_path / f"p{i}.png", i)
    m = _mask(tmp_path / "m.png")
    real = io._write_file
    calls = []

    def flaky(f, data):
        calls.append(1)
        if len(calls) == 2:  # the second output hits the fault
            f.write(data[: len(data) // 2])
            raise OSError(code, os.strerror(code))
        real(f, data)

    monkeypatch.setattr(io, "_write_file", flaky)
    out = tmp_path / "out"
    res = _inpaint(tmp_path / "p0.png", tmp_path / "p1.png", tmp_path / "p2.png", "--mask", m, "-o", out)
    assert res.exit_code == 1
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert errors == [f"error: {out / 'p1.png'}: cannot write ({os.strerror(code)})"]
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p2.png"]  # the batch went on
    assert _leftovers(tmp_path) == [] and "Traceback" not in res.stderr


def test_dev_full_style_failure_on_the_target_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "o.png"
    target.write_bytes(b"old")

    def full(f, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io, "_write_file", full)
    with pytest.raises(OutputError, match="No space left"):
        io.write_atomic(target, b"new")
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_name_too_long_is_a_per_file_error(tmp_path):
    p, m = _photo(tmp_path / "p.png"), _mask(tmp_path / "m.png")
    res = _inpaint(p, "--mask", m, "-o", tmp_path / ("x" * 300 + ".png"))
    assert res.exit_code == 1
    assert res.stderr.startswith("error: ") and "File name too long" in res.stderr
    assert _leftovers(tmp_path) == [] and "Traceback" not in res.stderr


def test_read_errors_fail_one_item(tmp_path, monkeypatch):
    a, b = _photo(tmp_path / "a.png"), _photo(tmp_path / "b.png", 1)
    m = _mask(tmp_path / "m.png")
    real = Path.read_bytes

    def eio(self):
        if self.name == "a.png":
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", eio)
    res = _inpaint(a, b, "--mask", m, "-o", tmp_path / "out")
    assert res.exit_code == 1
    assert f"error: {a}: cannot read (Input/output error)" in res.stderr
    assert (tmp_path / "out" / "b.png").exists()


@pytest.mark.parametrize("how", ["symlink", "dotdot", "hardlink"])
def test_an_input_is_never_written_over_whatever_its_name(tmp_path, how):
    p, m = _photo(tmp_path / "p.png"), _mask(tmp_path / "m.png")
    before = p.read_bytes()
    (tmp_path / "sub").mkdir()
    if how == "symlink":
        target = tmp_path / "link.png"
        target.symlink_to(p)
    elif how == "dotdot":
        target = tmp_path / "sub" / ".." / "p.png"
    else:
        target = tmp_path / "hard.png"
        os.link(p, target)
    res = _inpaint(p, "--mask", m, "-o", target)
    assert res.exit_code == 1 and "would overwrite an input" in res.stderr
    assert p.read_bytes() == before


def test_masks_are_protected_like_inputs(tmp_path):
    (tmp_path / "photos").mkdir(), (tmp_path / "masks").mkdir()
    _photo(tmp_path / "photos" / "a.png")
    mk = _mask(tmp_path / "masks" / "a.png")
    before = mk.read_bytes()
    res = _inpaint(tmp_path / "photos", "--mask", tmp_path / "masks", "-o", tmp_path / "masks", "--overwrite")
    assert res.exit_code == 1 and "would overwrite an input" in res.stderr
    assert mk.read_bytes() == before
    single = _inpaint(tmp_path / "photos" / "a.png", "--mask", mk, "-o", mk)
    assert single.exit_code == 1 and mk.read_bytes() == before


def test_protected_compares_inodes_and_real_paths(tmp_path):
    f = tmp_path / "f.png"
    f.write_bytes(b"x")
    os.link(f, tmp_path / "h.png")
    (tmp_path / "s.png").symlink_to(f)
    prot = io.Protected([f])
    assert tmp_path / "h.png" in prot and tmp_path / "s.png" in prot and str(tmp_path / "." / "f.png") in prot
    assert tmp_path / "other.png" not in prot
