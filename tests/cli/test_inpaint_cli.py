"""``imgsynth inpaint`` end to end: CliRunner and real subprocesses, good and bad inputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgsynth.cli.main import app
from imgsynth.engine.io import read_metadata
from imgsynth.pipelines.inpaint import grow_hole

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def photo(path: Path, w=40, h=32, mode="RGB", seed=0) -> Path:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w, 4 if mode == "RGBA" else 3), dtype=np.uint8)
    if mode == "RGBA":
        arr[..., 3] = 255
        arr[8:16, 8:16, 3] = 0
    Image.fromarray(arr, mode).save(path)
    return path


def mask(path: Path, w=40, h=32, box=(8, 8, 20, 20), value=255) -> Path:
    arr = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = box
    arr[y0:y1, x0:x1] = value
    Image.fromarray(arr).save(path)
    return path


def run(*args):
    return runner.invoke(app, ["inpaint", *map(str, args)])


def test_single_file_known_pixels_unchanged(tmp_path):
    p, m, o = photo(tmp_path / "p.png"), mask(tmp_path / "m.png"), tmp_path / "o.png"
    res = run(p, "--mask", m, "-o", o, "--model", "telea")
    assert res.exit_code == 0, res.stderr
    src, out = np.asarray(Image.open(p)), np.asarray(Image.open(o))
    hole = np.asarray(Image.open(m)) >= 128
    assert np.array_equal(src[~hole], out[~hole])
    assert not np.array_equal(src[hole], out[hole])
    meta = read_metadata(o)
    assert meta["model"] == "telea" and meta["radius"] == 3


@pytest.mark.parametrize("model", ["ns", "telea"])
def test_json_records_and_concat(tmp_path, model):
    p, m = photo(tmp_path / "p.png"), mask(tmp_path / "m.png")
    res = run(p, "--mask", m, "-o", tmp_path / "out", "--model", model, "--json", "--concat")
    assert res.exit_code == 0, res.stderr
    import json

    rec = json.loads(res.stdout.strip())
    assert rec["status"] == "ok" and rec["metadata"]["model"] == model
    assert Image.open(rec["output"]).size == (120, 32)


def test_batch_with_corrupt_file_then_resume(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(3):
        photo(d / f"p{i}.png", seed=i)
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    m = mask(tmp_path / "m.png")
    out = tmp_path / "out"
    res = run(d, "--mask", m, "-o", out, "--workers", "1")
    assert res.exit_code == 1
    assert "broken.png" in res.stderr and "3 written, 0 skipped" in res.stderr
    assert sorted(x.name for x in out.iterdir()) == ["p0.png", "p1.png", "p2.png"]
    again = run(d, "--mask", m, "-o", out)
    assert again.exit_code == 1 and "0 written, 3 skipped" in again.stderr
    redo = run(d, "--mask", m, "-o", out, "--overwrite")
    assert "3 written" in redo.stderr


def test_masks_paired_by_stem_and_suffix(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    photo(d / "a.png")
    mask(d / "a_mask.png")
    photo(d / "b.png")
    mask(d / "b_mask.png", box=(0, 0, 5, 5))
    res = run(d, "-o", tmp_path / "out", "--json")
    assert res.exit_code == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    md = tmp_path / "masks"
    md.mkdir()
    mask(md / "a.png")
    res = run(d / "a.png", "--mask", md, "-o", tmp_path / "o2")
    assert res.exit_code == 0, res.stderr


def test_rgba_alpha_is_the_hole(tmp_path):
    p = photo(tmp_path / "cut.png", mode="RGBA")
    res = run(p, "-o", tmp_path / "o.png")
    assert res.exit_code == 0, res.stderr
    assert read_metadata(tmp_path / "o.png")["mask"] == "alpha"


def test_no_mask_found(tmp_path):
    p = photo(tmp_path / "p.png")
    res = run(p, "-o", tmp_path / "o.png")
    assert res.exit_code == 1 and "p.png: no mask" in res.stderr


def test_mask_size_mismatch_and_resize(tmp_path):
    p, m = photo(tmp_path / "p.png"), mask(tmp_path / "m.png", w=20, h=16, box=(2, 2, 8, 8))
    res = run(p, "--mask", m, "-o", tmp_path / "o.png")
    assert res.exit_code == 1 and "mask is 20x16 but" in res.stderr
    res = run(p, "--mask", m, "-o", tmp_path / "o.png", "--resize-mask")
    assert res.exit_code == 0, res.stderr


@pytest.mark.parametrize("value,box,pattern", [
    (255, (0, 0, 40, 32), "covers the whole image"),
    (0, (0, 0, 40, 32), "has no hole"),
])
def test_mask_all_white_or_black(tmp_path, value, box, pattern):
    p, m = photo(tmp_path / "p.png"), mask(tmp_path / "m.png", box=box, value=value)
    res = run(p, "--mask", m, "-o", tmp_path / "o.png")
    assert res.exit_code == 1 and pattern in res.stderr


def test_invert_mask_and_dilate(tmp_path):
    p = photo(tmp_path / "p.png")
    m = mask(tmp_path / "m.png", box=(0, 0, 40, 30))  # white everywhere but two rows
    res = run(p, "--mask", m, "--invert-mask", "--dilate", "1", "-o", tmp_path / "o.png")
    assert res.exit_code == 0, res.stderr
    src, out = np.asarray(Image.open(p)), np.asarray(Image.open(tmp_path / "o.png"))
    assert np.array_equal(src[:28], out[:28]) and not np.array_equal(src[29:], out[29:])


def test_output_equal_to_input(tmp_path):
    p, m = photo(tmp_path / "p.png"), mask(tmp_path / "m.png")
    before = p.read_bytes()
    res = run(p, "--mask", m, "-o", p)
    assert res.exit_code == 1 and "would overwrite an input" in res.stderr
    assert p.read_bytes() == before


def test_missing_input_and_mask(tmp_path):
    m = mask(tmp_path / "m.png")
    res = run(tmp_path / "nope.png", "--mask", m, "-o", tmp_path / "o.png")
    assert res.exit_code == 1 and "nope.png: file not found" in res.stderr
    res = run(photo(tmp_path / "p.png"), "--mask", tmp_path / "nomask.png", "-o", tmp_path / "o.png")
    assert res.exit_code == 1 and "nomask.png: mask file not found" in res.stderr


def test_unknown_model_suggests(tmp_path):
    res = run(photo(tmp_path / "p.png"), "--mask", mask(tmp_path / "m.png"), "--model", "teleaa")
    assert res.exit_code == 2 and "did you mean 'telea'" in res.stderr


@pytest.mark.parametrize("args,pattern", [
    (["--precision", "fp16", "--device", "cpu"], "fp16 is not supported on the CPU"),
    (["--device", "tpu"], "unknown device"),
    (["--strategy", "tile"], "unknown --strategy"),
])
def test_device_precision_errors(tmp_path, args, pattern):
    res = run(photo(tmp_path / "p.png"), "--mask", mask(tmp_path / "m.png"), "-o", tmp_path / "o.png", *args)
    assert res.exit_code in (1, 2) and pattern in res.stderr


def test_cuda_without_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    res = run(photo(tmp_path / "p.png"), "--mask", mask(tmp_path / "m.png"), "--device", "cuda")
    assert res.exit_code == 1 and "no CUDA GPU is available" in res.stderr


def test_usage_error_exit_code_2(tmp_path):
    res = runner.invoke(app, ["inpaint", "--batch-size", "0", "x.png"])
    assert res.exit_code == 2


def _cli(*args, stdin=None, cwd=None):
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "imgsynth", *map(str, args)], input=stdin,
                          capture_output=True, cwd=cwd or ROOT, env=env, timeout=120)


def test_subprocess_stdin_to_stdout(tmp_path):
    p, m = photo(tmp_path / "p.png"), mask(tmp_path / "m.png")
    proc = _cli("inpaint", "-", "--mask", m, "--model", "ns", "-o", "-", stdin=p.read_bytes())
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "o.png"
    out.write_bytes(proc.stdout)
    assert Image.open(out).size == (40, 32)


def test_subprocess_error_is_one_line(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    proc = _cli("inpaint", bad, "--mask", mask(tmp_path / "m.png"), "-o", tmp_path / "o.png")
    assert proc.returncode == 1
    lines = proc.stderr.decode().strip().splitlines()
    assert lines[0].startswith("error: ") and "bad.png: not a recognised image" in lines[0]
    assert "Traceback" not in proc.stderr.decode()


def test_bundled_example_runs(tmp_path):
    ex = ROOT / "examples" / "inpaint"
    res = run(ex / "astronaut.png", "--mask", ex / "astronaut_mask.png", "-o", tmp_path / "o.png", "--model", "telea")
    assert res.exit_code == 0, res.stderr


def test_default_is_the_bundled_network_with_its_self_ensemble(tmp_path):
    ex = ROOT / "examples" / "inpaint"
    res = run(ex / "astronaut.png", "--mask", ex / "astronaut_mask.png", "-o", tmp_path / "o.png", "--offline")
    assert res.exit_code == 0, res.stderr
    meta = read_metadata(tmp_path / "o.png")
    assert meta["model"] == "pconv-photos-256" and meta["arch"] == "pconv_unet" and meta["ensemble"] == 4
    src, out = np.asarray(Image.open(ex / "astronaut.png").convert("RGB")), np.asarray(Image.open(tmp_path / "o.png"))
    hole = np.asarray(Image.open(ex / "astronaut_mask.png").convert("L")) >= 128
    assert np.array_equal(src[~hole], out[~hole]) and not np.array_equal(src[hole], out[hole])


def test_network_weights_folder_end_to_end(make_export, tmp_path, native_precision):
    native_precision(bf16=True)  # the bf16 path at a tiny size, whatever this CPU has
    d = make_export("pconv_unet")
    p, m = photo(tmp_path / "p.png", w=50, h=30), mask(tmp_path / "m.png", w=50, h=30)
    res = run(p, "--mask", m, "--weights", d, "-o", tmp_path / "o.png", "--precision", "bf16")
    assert res.exit_code == 0, res.stderr
    src, out = np.asarray(Image.open(p)), np.asarray(Image.open(tmp_path / "o.png"))
    hole = np.asarray(Image.open(m)) >= 128
    assert np.array_equal(src[~hole], out[~hole])
    assert read_metadata(tmp_path / "o.png")["arch"] == "pconv_unet"
    assert read_metadata(tmp_path / "o.png")["strategy"] == "pad"  # auto: within 2x the resolution


def test_ensemble_option_and_card_setting(make_export, tmp_path):
    import json

    d = make_export("pconv_unet")
    p, m = photo(tmp_path / "p.png", w=50, h=30), mask(tmp_path / "m.png", w=50, h=30)
    res = run(p, "--mask", m, "--weights", d, "-o", tmp_path / "plain.png")
    assert res.exit_code == 0, res.stderr
    assert "ensemble" not in read_metadata(tmp_path / "plain.png")
    res = run(p, "--mask", m, "--weights", d, "-o", tmp_path / "x4.png", "--ensemble", "4")
    assert res.exit_code == 0, res.stderr
    assert read_metadata(tmp_path / "x4.png")["ensemble"] == 4
    plain, x4 = np.asarray(Image.open(tmp_path / "plain.png")), np.asarray(Image.open(tmp_path / "x4.png"))
    hole = np.asarray(Image.open(m)) >= 128
    assert np.array_equal(plain[~hole], x4[~hole]) and not np.array_equal(plain[hole], x4[hole])
    # the export's io.ensemble is the default; --ensemble overrides it
    cfg = json.loads((d / "config.json").read_text())
    cfg["io"]["ensemble"] = 4
    (d / "config.json").write_text(json.dumps(cfg))
    res = run(p, "--mask", m, "--weights", d, "-o", tmp_path / "card.png")
    assert res.exit_code == 0 and read_metadata(tmp_path / "card.png")["ensemble"] == 4
    assert np.array_equal(np.asarray(Image.open(tmp_path / "card.png")), x4)
    res = run(p, "--mask", m, "--weights", d, "-o", tmp_path / "one.png", "--ensemble", "1")
    assert res.exit_code == 0 and np.array_equal(np.asarray(Image.open(tmp_path / "one.png")), plain)
    res = run(p, "--mask", m, "--weights", d, "-o", tmp_path / "bad.png", "--ensemble", "3")
    assert res.exit_code == 2 and "--ensemble must be one of 1, 2, 4, 8" in res.stderr
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.parametrize("args,strategy", [
    (["--model", "pconv-photos-256"], "sharp"),  # auto: 600 px is beyond 2x the card's 256
    (["--model", "pconv-photos-256", "--strategy", "crops", "--dilate", "2"], "crops"),
    (["--model", "telea", "--strategy", "crops"], "crops"),
])
def test_crops_and_sharp_on_a_large_photo(tmp_path, args, strategy):
    p = photo(tmp_path / "p.png", w=600, h=520)
    arr = np.zeros((520, 600), np.uint8)
    arr[20:50, 30:70] = arr[450:490, 520:580] = 255  # two holes far apart, at the borders
    Image.fromarray(arr).save(tmp_path / "m.png")
    res = run(p, "--mask", tmp_path / "m.png", "-o", tmp_path / "o.png", *args)
    assert res.exit_code == 0, res.stderr
    src, out = np.asarray(Image.open(p)), np.asarray(Image.open(tmp_path / "o.png"))
    hole = grow_hole(arr > 0, 2 if "--dilate" in args else 0)
    assert hole.sum() > (arr > 0).sum() or "--dilate" not in args
    assert np.array_equal(src[~hole], out[~hole])
    assert not np.array_equal(src[20:50, 30:70], out[20:50, 30:70])
    assert not np.array_equal(src[450:490, 520:580], out[450:490, 520:580])
    assert read_metadata(tmp_path / "o.png")["strategy"] == strategy


def test_classical_methods_do_not_import_torch(tmp_path):
    p, m = photo(tmp_path / "p.png"), mask(tmp_path / "m.png")
    code = (
        "import sys\n"
        "from imgsynth.cli.main import app\n"
        "try:\n"
        f"    app(['inpaint', {str(p)!r}, '--mask', {str(m)!r}, '-o', {str(tmp_path / 'o.png')!r}, '--model', 'ns'])\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o.png").exists()
