"""benchmarks/run.py: the machine line comes first and every figure carries wall and CPU seconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_small_paths_report(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--only", "python-start,help",
                           "--repeat", "1", "--out", str(out)], capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    first = proc.stdout.decode().splitlines()[0]
    assert first.startswith("machine: ") and "cpus" in first and "load" in first
    report = json.loads(out.read_text())
    assert report["machine"]["line"] == first
    names = [r["name"] for r in report["results"]]
    assert names == ["python -c pass (baseline)", "help"]
    assert all(r["wall_s"] > 0 and r["cpu_s"] > 0 for r in report["results"])


def test_unknown_benchmark_is_a_usage_error():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--only", "nope"],
                          capture_output=True, timeout=60)
    assert proc.returncode == 2 and b"unknown benchmark" in proc.stderr
