"""``imgsynth serve`` as a command: help without heavy imports, the printed URL, loopback by default,
Ctrl-C exits 130, a warning for other addresses, one-line errors for models it cannot offer."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgsynth.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
needs_extra = pytest.mark.skipif(
    any(__import__("importlib").util.find_spec(m) is None for m in ("starlette", "uvicorn", "python_multipart")),
    reason="the 'serve' extra is not installed")


def test_help_lists_serve_without_importing_the_web_stack_or_torch():
    code = (
        "import sys\n"
        "from imgsynth.cli.main import app\n"
        "for argv in (['--help'], ['serve', '--help']):\n"
        "    try:\n"
        "        app(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "for mod in ('torch', 'starlette', 'uvicorn'):\n"
        "    assert mod not in sys.modules, mod + ' was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "serve" in proc.stdout and "--output-dir" in proc.stdout and "Examples" in proc.stdout


def _start(*args: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "imgsynth", "serve", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    line: list[str] = []
    t = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(60)
    if not line or not line[0].strip():
        proc.kill()
        pytest.fail(f"no URL printed: {proc.stderr.read()}")
    return proc, line[0].strip()


def _listening(port: int) -> list[str]:
    """Local addresses listening on ``port``, from /proc/net/tcp and tcp6 (Linux)."""
    found = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(name):
            pytest.skip("no /proc/net/tcp to read listening sockets from")
        for line in Path(name).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:  # 0A: LISTEN
                if len(addr) == 8:
                    found.append(".".join(str(b) for b in bytes.fromhex(addr)[::-1]) + f":{port}")
                else:
                    found.append(f"[{addr}]:{port}")
    return found


@needs_extra
def test_serve_prints_a_loopback_url_with_the_token_and_ctrl_c_exits_130(tmp_path):
    opener = tmp_path / "opener.py"  # --open goes through $BROWSER (Python's webbrowser module)
    opener.write_text("import sys, pathlib\npathlib.Path(sys.argv[1]).write_text(sys.argv[2])\n")
    opened = tmp_path / "opened.txt"
    browser = f"{sys.executable} {opener} {opened} %s"
    proc, url = _start("--port", "0", "-m", "telea", "--open", env={"HF_HOME": str(tmp_path), "BROWSER": browser})
    try:
        assert url.startswith("http://127.0.0.1:") and "/#token=" in url
        base, token = url.split("#token=")
        assert len(token) >= 24
        with urllib.request.urlopen(base, timeout=30) as r:
            assert r.status == 200 and b"imgsynth" in r.read()
        # the API wants the token from the URL ...
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + "api/info", timeout=30)
        assert e.value.code == 403
        req = urllib.request.Request(base + "api/info", headers={"X-Imgsynth-Token": token})
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 200
        # ... and the socket listens on loopback only
        port = int(base.rsplit(":", 1)[1].strip("/"))
        assert _listening(port) == [f"127.0.0.1:{port}"]
        for _ in range(100):
            if opened.exists():
                break
            time.sleep(0.1)
        assert opened.read_text() == url  # the page opened with its token
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(30)
    err = proc.stderr.read()
    assert rc == 130, err
    assert "interrupted" in err and "Traceback" not in err and "warning" not in err


def test_another_address_warns(monkeypatch):
    """--host other than loopback prints a warning (the server itself is not started here)."""
    pytest.importorskip("uvicorn", reason="the 'serve' extra is not installed")
    import uvicorn

    def stop(self, sockets=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(uvicorn.Server, "run", stop)  # uvicorn's loop, not ours: end at once
    res = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--port", "0", "-m", "telea"])
    assert res.exit_code == 130
    assert "warning: listening on 0.0.0.0, not loopback" in res.stderr
    res = runner.invoke(app, ["serve", "--port", "0", "-m", "telea"])
    assert res.exit_code == 130 and "warning" not in res.stderr


@needs_extra
def test_models_it_cannot_offer_are_one_line_errors():
    res = runner.invoke(app, ["serve", "--port", "0", "-m", "telee"])
    assert res.exit_code == 2 and "did you mean 'telea'" in res.stderr and "Traceback" not in res.stderr
    res = runner.invoke(app, ["serve", "--port", "0", "-m", "spade-cityscapes"])
    assert res.exit_code == 1 and "imgsynth models download spade-cityscapes" in res.stderr
    res = runner.invoke(app, ["serve", "--port", "0", "-m", "stylegan2-fashion-mnist"])
    assert res.exit_code == 2 and "inpainting and label-map models" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@needs_extra
def test_an_output_dir_that_is_a_file_is_a_usage_error(tmp_path):
    (tmp_path / "file").write_text("x")
    res = runner.invoke(app, ["serve", "--port", "0", "-m", "telea", "--output-dir", str(tmp_path / "file")])
    assert res.exit_code == 2 and "cannot create the output directory" in res.stderr and "Traceback" not in res.stderr


@needs_extra
def test_a_taken_port_is_a_usage_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        res = runner.invoke(app, ["serve", "--port", str(port), "-m", "telea"])
    assert res.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in res.stderr and "--port 0" in res.stderr
