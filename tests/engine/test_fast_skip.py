"""A rerun where every output exists skips before torch or a model is loaded (sample, inpaint, translate)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]

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


def _run(args: list[str], cwd: Path) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, cwd=cwd, env=env, timeout=300)
    return proc.returncode, proc.stderr.decode()


def test_finished_sample_folder_is_skipped_without_torch(tmp_path):
    args = ["sample", "--seeds", "0-5", "-o", "out/"]
    code, err = _run(args, tmp_path)
    assert code == 0 and "6 written" in err and err.rstrip().endswith("TORCH"), err
    code, err = _run(args, tmp_path)
    assert code == 0 and "0 written, 6 skipped" in err and err.rstrip().endswith("NO-TORCH"), err
    (tmp_path / "out" / "seed0003.png").unlink()  # one missing: the model is loaded for it alone
    code, err = _run(args, tmp_path)
    assert code == 0 and "1 written, 5 skipped" in err, err


def test_finished_inpaint_and_translate_folders_are_skipped_without_torch(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "ph").mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(tmp_path / "ph" / f"p{i}.png")
        hole = np.zeros((24, 24), np.uint8)
        hole[6:14, 6:14] = 255
        Image.fromarray(hole).save(tmp_path / "ph" / f"p{i}_mask.png")
    for args in (["inpaint", "ph/", "-o", "filled/"],
                 ["translate", "ph/p0.png", "ph/p1.png", "--model", "pix2pix-edges-photos", "-o", "tr/"]):
        code, err = _run(args, tmp_path)
        assert code == 0 and "2 written" in err, err
        code, err = _run(args, tmp_path)
        assert code == 0 and "2 skipped" in err and err.rstrip().endswith("NO-TORCH"), err


def test_finished_label_folder_with_instance_maps_is_skipped_without_torch(tmp_path, make_export):
    """Instance maps beside label maps are not inputs of a label model: the export's config says so."""
    d = make_export("pix2pixhd_global")
    rng = np.random.default_rng(0)
    (tmp_path / "lab").mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 4, (16, 16), dtype=np.uint8)).save(tmp_path / "lab" / f"c{i}_labelIds.png")
        Image.fromarray(rng.integers(0, 3, (16, 16), dtype=np.uint8)).save(tmp_path / "lab" / f"c{i}_instanceIds.png")
    args = ["translate", "lab/", "--weights", str(d), "-o", "tr/"]
    code, err = _run(args, tmp_path)
    assert code == 0 and "2 written" in err and err.rstrip().endswith("TORCH"), err
    assert sorted(p.name for p in (tmp_path / "tr").iterdir()) == ["c0_labelIds.png", "c1_labelIds.png"]
    code, err = _run(args, tmp_path)
    assert code == 0 and "0 written, 2 skipped" in err and err.rstrip().endswith("NO-TORCH"), err
    # an image model takes every file as a photo: the instance maps have no output yet, so it loads
    code, err = _run(args[:2] + ["--input-kind", "image"] + args[2:], tmp_path)
    assert code == 2 and err.split()[-1] == "TORCH", err
    (tmp_path / "tr" / "c1_labelIds.png").unlink()
    code, err = _run(args, tmp_path)
    assert code == 0 and "1 written, 1 skipped" in err, err


def test_missing_inputs_are_reported_without_torch(tmp_path):
    """A misspelt name fails at once: nothing to load when no input can be used."""
    for args in (["inpaint", "nope.png", "-o", "o/"], ["translate", "nope.png", "-o", "o/"],
                 ["translate-video", "nope.mp4", "-o", "o/"]):
        code, err = _run(args, tmp_path)
        assert code == 1 and "error: nope." in err and err.rstrip().endswith("NO-TORCH"), err
