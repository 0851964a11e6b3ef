"""``benchmarks/gpu_check.py`` runs the conformance cases in channels-last on a device (here: CPU, fp32)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "conformance"


@pytest.mark.skipif(not (SHARED / "check.py").exists(), reason="needs ../shared/conformance")
def test_cases_pass_and_unsupported_precisions_are_skipped(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu",
                           "--precisions", "fp32,fp16", "--models", "dcgan_examples", "--batches", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skipping fp16: fp16 is not supported on the CPU" in proc.stdout
    report = json.loads(out.read_text())
    cases = report["conformance"]
    assert {c["case"] for c in cases} == {"eval_b4", "train_b4"} and all(c["pass"] for c in cases)
    assert all(c["precision"] == "fp32" for c in cases)
    [speed] = report["speed"]
    assert speed["model"] == "dcgan_examples" and speed["b1_images_per_s"] > 0
    assert "| dcgan_examples | fp32 |" in proc.stdout
