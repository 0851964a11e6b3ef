"""``imgsynth serve``: the interactive demos (inpaint a photo, paint a scene) on a local page."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from imgsynth.cli._common import handle_errors
from imgsynth.cli.options import DebugOpt, DeviceOpt
from imgsynth.errors import UsageError

HELP = """Serve the interactive demos on a local web page: paint a hole away (inpainting) and
paint a label map into a picture (SPADE), on the same models as `inpaint` and `translate`.

[bold]Examples:[/bold]

  imgsynth serve --open

  imgsynth serve --port 0 --output-dir results/

  imgsynth serve -m pconv-photos-256 -m telea -m spade-fashion-mnist

  imgsynth serve -m runs/my-spade/export          [dim]# a `train --export` folder[/dim]

Open the printed URL: its #token part is the page's access key. Ctrl-C stops the server.
It listens on 127.0.0.1 only; --host opens it to other machines over plain HTTP.
Only models whose weights are on this machine are offered; serve never downloads.
Needs the extra: pip install 'imgsynth\\[serve]'.
"""

DEFAULT_PORT = 8765


def _missing_extra(name: str) -> UsageError:
    return UsageError(f"imgsynth serve needs the 'serve' extra ({name} is not installed): "
                      f"pip install 'imgsynth[serve]'")


@handle_errors
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (default: loopback only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535,
                                      help="Port to listen on; 0 picks a free one.")] = DEFAULT_PORT,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in the default browser.")] = False,
    models: Annotated[Optional[list[str]], typer.Option(
        "--models", "-m", help="Offer only these card ids or exported model folders (repeatable or comma-separated; "
        "default: every inpainting and label-map model available offline).", show_default=False)] = None,
    output_dir: Annotated[Optional[Path], typer.Option(
        "--output-dir", help="Also save every result here, under names the server picks.")] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.01,
                                                 help="Largest upload accepted.")] = 32.0,
    max_megapixels: Annotated[float, typer.Option("--max-megapixels", min=0.001,
                                                  help="Largest image accepted (declared size).")] = 25.0,
    allow_host: Annotated[Optional[list[str]], typer.Option(
        "--allow-host", help="Another Host name to answer to (e.g. a name of this machine; repeatable).",
        show_default=False)] = None,
    device: DeviceOpt = "auto",
    debug: DebugOpt = False,
) -> None:
    import socket

    from imgsynth.engine.device import prepare_runtime

    prepare_runtime()
    try:
        import uvicorn
    except ImportError:
        raise _missing_extra("uvicorn") from None
    import importlib.util

    for module, dist in (("starlette", "starlette"), ("python_multipart", "python-multipart")):
        if importlib.util.find_spec(module) is None and not (dist == "python-multipart"
                                                             and importlib.util.find_spec("multipart")):
            raise _missing_extra(dist)
    from imgsynth.serve.app import ServeConfig, create_app, is_loopback

    specs = [s.strip() for m in models or [] for s in m.split(",") if s.strip()]
    config = ServeConfig(host=host, models=specs or None, output_dir=output_dir,
                         device=device, max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                         max_pixels=int(max_megapixels * 1_000_000), allowed_hosts=tuple(allow_host or ()))
    app = create_app(config)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port} ({e.strerror}); try --port 0 for a free port") from None
    sock.listen(64)
    bound = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{bound}/#token={config.token}"
    if not is_loopback(host):
        sys.stderr.write(f"warning: listening on {host}, not loopback: other machines can reach this page over "
                         f"plain HTTP; anyone who sees the URL (with its token) can use it\n")
    n = len(app.worker.models)  # type: ignore[attr-defined]
    sys.stderr.write(f"imgsynth serve: {n} models; Ctrl-C stops the server\n")
    sys.stdout.write(url + "\n")
    sys.stdout.flush()
    import threading

    # torch and the models' defaults load in the background while the page opens
    threading.Thread(target=app.worker.warm, name="imgsynth-warm", daemon=True).start()  # type: ignore[attr-defined]
    if open_browser:
        import webbrowser

        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                           timeout_graceful_shutdown=3, server_header=False))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    # uvicorn re-raises the SIGINT it caught after shutting down (KeyboardInterrupt -> exit 130);
    # a SIGTERM ends the same way
    raise typer.Exit(130 if server.should_exit else 0)


serve.__doc__ = HELP
