"""``benchmarks/conformance_speed.py``: same-run conv peak, executed FLOPs and the machine line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.conformance_speed import DATA, OFFICIAL_LABEL, machine_info, machine_line, markdown, measure

ROOT = Path(__file__).resolve().parents[1]


def test_measure_counts_executed_flops_and_divides_by_the_same_run_peak():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 3, padding=1))
    x = torch.randn(1, 3, 32, 32)
    r = measure(lambda: net(x), rounds=3, conv_calls=1, min_round_s=0.01, conv_channels=16, conv_size=16)
    expected = 2 * 9 * 32 * 32 * (3 * 8 + 8 * 3)  # 2 FLOPs per multiply-accumulate, bias not counted
    assert r["gflop"] == pytest.approx(expected / 1e9, rel=1e-9)
    # three rounds: the median GFLOP/s is the one of the median time
    assert r["gflops"] == pytest.approx(expected / r["fp32_s"] / 1e9, rel=1e-9)
    assert r["peak_gflops"] == pytest.approx(max(r["peak_nchw_gflops"], r["peak_cl_gflops"]), rel=0.5)
    lo, hi = r["fraction_range"]
    assert 0 < lo <= r["fraction"] <= hi


def test_machine_line_names_the_flags_threads_and_load():
    info = machine_info()
    info["loadavg_after"] = [1.5, 1.0, 0.5]
    line = machine_line(info)
    for word in ("AVX2", "AVX-512", "AVX512-BF16", "AMX", "torch", "threads", "load average", info["model"]):
        assert word in line
    table = markdown({"machine_line": line, "date": "now", "rows": [
        {"model": "m", "fp32_s": 0.5, "gflop": 10.0, "gflops": 20.0, "peak_gflops": 25.0, "peak_nchw_gflops": 25.0,
         "peak_cl_gflops": 24.0, "fraction": 0.8, "fraction_range": [0.7, 0.9], "official_avx512_s": 2.0},
        {"model": "v", "skipped": "no model class"}]})
    assert table.startswith("Machine: CPU") and OFFICIAL_LABEL in table
    assert "| m | 0.5 | 10 | 20.0 | 25.0 (25.0 / 24.0) | 0.80 (0.70-0.90) | 2 |" in table
    assert "| v | skipped: no model class |" in table


@pytest.mark.skipif(not (DATA / "dcgan_examples.manifest.json").exists(), reason="needs ../shared/conformance")
def test_script_on_a_released_config(tmp_path):
    out = tmp_path / "speed.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "conformance_speed.py"), "--models",
                           "dcgan_examples", "--rounds", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    row = result["rows"][0]
    # pytorch/examples DCGAN at 64x64 (manifest flop counter: 209,256,448 FLOPs)
    assert row["gflop"] == pytest.approx(0.209, abs=1e-3) and row["fp32_s"] > 0 and row["fraction"] > 0
    assert proc.stdout.startswith("Machine: CPU") and "dcgan_examples" in proc.stdout
