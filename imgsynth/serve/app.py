"""The ASGI application of ``imgsynth serve``: the page, its API and the checks every request passes.

API (JSON errors are ``{"error": "one sentence"}``; results are PNG bytes with their provenance in
an ``imgsynth`` text chunk, exactly as ``imgsynth inpaint`` / ``translate`` write them):

==========================  ==========================================================================
``GET /``                   the page (``static/index.html``); ``/static/*`` its CSS and JS modules
``GET /api/info``           models (keys, titles, classes and palettes of the label-map models), limits
``GET /api/status``         the running job: stage, fraction done (or null), seconds
``POST /api/inpaint``       multipart ``model``, ``image`` (a photo), ``mask`` (white = hole) -> PNG
``POST /api/synthesize``    multipart ``model``, ``width``, ``height``, ``labels`` (width*height bytes,
                            one palette id per pixel, row-major), optional ``instances`` (uint16
                            little-endian per pixel, 0 = none), ``style`` (an image), ``seed`` -> PNG
``POST /api/labels``        multipart ``model``, ``file`` (an index or palette-coloured label map)
                            -> ``{"width", "height", "labels": base64 of width*height bytes}``
==========================  ==========================================================================

Safety, in the order a request meets it (:class:`Guard`): the ``Host`` header must name this
server (a loopback name or address unless ``--host`` bound elsewhere), which defeats DNS
rebinding; only ``GET``/``HEAD`` and ``POST`` to the API are served, and no response carries CORS
headers, so other sites can neither read answers nor pass a preflight; every ``/api/`` request needs
the per-start token in ``X-Imgsynth-Token`` (the page reads it from its URL fragment, which is never
sent over the wire), and a ``POST`` whose ``Origin`` is another site is refused even with it; a body
over ``max_upload_bytes`` is cut off with 413 (by ``Content-Length`` or while streaming), an image
whose declared size is over ``max_pixels`` is refused with 413 before decoding (decompression
bombs), an undecodable one with 400. The client never names a file: results are the response
bodies, or server-named files under ``--output-dir``. Every response carries a ``'self'``-only
Content-Security-Policy, ``nosniff``, ``no-referrer`` and ``DENY`` framing; API responses
``no-store``.
"""

from __future__ import annotations

import base64
import hmac
import io as _io
import ipaddress
import os
import secrets
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from imgsynth.errors import ImgsynthError, InputError, UsageError
from imgsynth.serve.work import Busy, Worker, catalog

TOKEN_HEADER = "x-imgsynth-token"
MAX_UPLOAD_BYTES = 32 * 1024 * 1024
MAX_PIXELS = 25_000_000  # a 6000x4000 photo; far below what a bomb declares
MAX_SIDE = 16384
RETRY_AFTER_S = 2
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def split_host_header(value: str) -> str:
    """The host name of a ``Host`` header value, lower-case, without port or IPv6 brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


@dataclass
class ServeConfig:
    """How the server was started (from the command line)."""

    host: str = "127.0.0.1"
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    models: list[str] | None = None
    output_dir: Path | None = None
    device: str = "auto"
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_pixels: int = MAX_PIXELS
    allowed_hosts: tuple[str, ...] = ()  # extra Host names to accept (beyond the bind host and loopback)

    def host_allowed(self, name: str) -> bool:
        """Whether a request's ``Host`` name may reach this server (the DNS-rebinding guard).

        Bound to loopback: only loopback names and addresses. Bound elsewhere: also any IP address
        literal (a rebinding page's Host is its own domain name, never an address) and this
        machine's host names. Names given with ``allowed_hosts`` always pass.
        """
        name = name.lower().rstrip(".")
        if name in LOOPBACK_NAMES or name in {h.lower() for h in self.allowed_hosts}:
            return True
        if name == self.host.lower().strip("[]"):
            return True
        if _is_ip(name) and ipaddress.ip_address(name).is_loopback:
            return True
        if is_loopback(self.host):
            return False
        return _is_ip(name) or name in {socket.gethostname().lower(), socket.getfqdn().lower()}


class TooLarge(Exception):
    """The request body passed the upload limit."""


def _json(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None):
    from starlette.responses import JSONResponse

    return JSONResponse(payload, status_code=status, headers=headers)


def error(status: int, message: str, headers: dict[str, str] | None = None):
    """A JSON error response with a one-line message."""
    first = str(message).strip().splitlines()[0] if str(message).strip() else "unknown error"
    return _json(status, {"error": first}, headers)


class Guard:
    """ASGI middleware: Host, method, token and origin checks, the body limit and the headers."""

    def __init__(self, app: Any, config: ServeConfig) -> None:
        self.app, self.config = app, config

    async def _reply(self, scope: Any, receive: Any, send: Any, status: int, message: str) -> None:
        await self._send_with_headers(scope, receive, send, error(status, message))

    async def _send_with_headers(self, scope: Any, receive: Any, send: Any, app: Any) -> None:
        api = scope["path"].startswith("/api/")

        async def send_wrapped(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if not k.lower().startswith(b"access-control-")]
                headers += SECURITY_HEADERS
                if api:
                    headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_wrapped)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":  # the page uses none
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if not host or not self.config.host_allowed(split_host_header(host)):
            await self._reply(scope, receive, send, 400, "this server does not answer to that Host header "
                              "(open it at the address `imgsynth serve` printed)")
            return
        method, path = scope["method"], scope["path"]
        if method not in ("GET", "HEAD", "POST") or (method == "POST" and not path.startswith("/api/")):
            await self._reply(scope, receive, send, 405, f"{method} is not served here")
            return
        if path.startswith("/api/"):
            token = headers.get(TOKEN_HEADER, "")
            if not token or not hmac.compare_digest(token.encode(), self.config.token.encode()):
                await self._reply(scope, receive, send, 403, "missing or wrong access token: open the page at "
                                  "the URL `imgsynth serve` printed (it carries the token)")
                return
        if method == "POST":
            origin = headers.get("origin")
            site = headers.get("sec-fetch-site")
            # With Referrer-Policy no-referrer a browser may send "Origin: null" for its own
            # same-origin POSTs; Sec-Fetch-Site (sent by current browsers) then says which it is.
            same = origin is None or origin.rstrip("/").lower() == f"http://{host}".lower() or (
                origin == "null" and site == "same-origin")
            if not same or (site is not None and site not in ("same-origin", "none")):
                await self._reply(scope, receive, send, 403, "requests from other sites are refused")
                return
            limit = self.config.max_upload_bytes
            try:
                declared = int(headers.get("content-length", "0") or 0)
            except ValueError:
                await self._reply(scope, receive, send, 400, "bad Content-Length header")
                return
            if declared > limit:
                await self._reply(scope, receive, send, 413, f"upload of {declared:,} bytes is over this "
                                  f"server's {limit:,}-byte limit")
                return
            received = 0
            started = False

            async def receive_limited() -> dict:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise TooLarge()
                return message

            async def send_tracking(message: dict) -> None:
                nonlocal started
                if message["type"] == "http.response.start":
                    started = True
                await send(message)

            try:
                await self._send_with_headers(scope, receive_limited, send_tracking, self.app)
            except TooLarge:
                if not started:
                    await self._reply(scope, receive, send, 413, f"upload is over this server's {limit:,}-byte limit")
            return
        await self._send_with_headers(scope, receive, send, self.app)


def static_dir() -> Path:
    """The folder of the page's files (package data)."""
    return Path(str(resources.files("imgsynth.serve").joinpath("static")))


class Api:
    """The request handlers (bound to one worker and config)."""

    def __init__(self, config: ServeConfig, worker: Worker) -> None:
        self.config, self.worker = config, worker
        self._saved = 0

    # --- helpers --------------------------------------------------------------------------------
    def _check_pixels(self, data: bytes, what: str) -> None:
        """Refuse an image whose *declared* size is over the pixel limit, before decoding it."""
        from PIL import Image

        if not data:
            raise InputError(f"{what}: empty file")
        try:
            with Image.open(_io.BytesIO(data)) as img:
                w, h = img.size
        except Exception:  # PIL raises many types for junk; all mean the same here
            raise InputError(f"{what}: not a recognised image file (PNG, JPEG, WebP, BMP, TIFF)") from None
        if w * h > self.config.max_pixels or max(w, h) > MAX_SIDE:
            raise _Refused(413, f"{what} is {w}x{h} pixels, over this server's limit of "
                           f"{self.config.max_pixels:,} pixels")

    def _image(self, data: bytes, what: str) -> np.ndarray:
        from imgsynth.engine import io

        self._check_pixels(data, what)
        return io.decode_image(data, what).rgb

    def _mask(self, data: bytes) -> np.ndarray:
        from imgsynth.engine import io

        self._check_pixels(data, "the mask")
        return io.decode_mask(data, "the mask")

    def _save(self, task: str, png: bytes) -> str | None:
        """Write ``png`` under --output-dir with a server-chosen name; return the name."""
        if self.config.output_dir is None:
            return None
        from imgsynth.engine.io import write_atomic

        stamp = time.strftime("%Y%m%d-%H%M%S")
        while True:
            self._saved += 1
            path = self.config.output_dir / f"{task}-{stamp}-{self._saved:03d}.png"
            if not path.exists():
                break
        write_atomic(path, png)
        return path.name

    async def _form(self, request: Any) -> Any:
        from starlette.datastructures import UploadFile

        try:
            form = await request.form(max_files=4, max_fields=16, max_part_size=64 * 1024)
        except TooLarge:
            raise
        except Exception as e:  # malformed multipart bodies
            raise InputError(f"could not read the upload ({str(e).splitlines()[0] if str(e) else 'malformed form'})") from None
        out: dict[str, Any] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                out[key] = await value.read()  # the client's file name is never used
            else:
                out[key] = value
        return out

    async def _run(self, task: str, job: Any) -> Any:
        """Run ``job`` on the worker thread; 429 when another job holds the worker."""
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import Response

        from imgsynth.engine.io import encode_image

        def work() -> tuple[bytes, str | None]:
            result = job()
            png = encode_image(result.rgb, "png", result.metadata)
            return png, self._save(task, png)

        try:
            with self.worker.reserve(task):
                png, saved = await run_in_threadpool(work)
        except Busy:
            return self._busy()
        headers = {"x-imgsynth-seconds": str(self.worker.status.last_seconds)}
        if saved:
            headers["x-imgsynth-saved"] = saved
        return Response(png, media_type="image/png", headers=headers)

    def _busy(self):
        return error(429, "the server is busy with another job; trying again shortly",
                     {"retry-after": str(RETRY_AFTER_S)})

    # --- endpoints ------------------------------------------------------------------------------
    async def info(self, request: Any):
        from starlette.concurrency import run_in_threadpool

        return _json(200, {
            "models": await run_in_threadpool(self.worker.info),
            "limits": {"max_upload_bytes": self.config.max_upload_bytes, "max_pixels": self.config.max_pixels,
                       "max_side": MAX_SIDE},
            "output_dir": self.config.output_dir is not None,
        })

    async def status(self, request: Any):
        return _json(200, self.worker.status.public())

    async def inpaint(self, request: Any):
        if self.worker.status.busy:
            return self._busy()
        form = await self._form(request)
        key = _field(form, "model")
        image, mask = _file(form, "image", "a photo"), _file(form, "mask", "a mask")
        self.worker.model(key, "inpaint")
        return await self._run("inpaint", lambda: self.worker.inpaint(key, self._image(image, "the photo"),
                                                                     self._mask(mask)))

    async def synthesize(self, request: Any):
        if self.worker.status.busy:
            return self._busy()
        form = await self._form(request)
        key = _field(form, "model")
        m = self.worker.model(key, "translate")
        w, h = self._size(form)
        labels = np.frombuffer(_file(form, "labels", "the label map"), np.uint8)
        if labels.size != w * h:
            raise InputError(f"the label map holds {labels.size:,} values, not width x height = {w * h:,}")
        instances = None
        if "instances" in form and m.instances:
            raw = _file(form, "instances", "the instance map")
            if len(raw) != 2 * w * h:
                raise InputError(f"the instance map holds {len(raw):,} bytes, not 2 x width x height = {2 * w * h:,}")
            instances = np.frombuffer(raw, "<u2").reshape(h, w)
        style = form.get("style")
        seed_text = str(form.get("seed", "0") or "0")
        try:
            seed = int(seed_text)
        except ValueError:
            raise InputError(f"seed must be an integer, got {seed_text[:20]!r}") from None
        label_map = labels.reshape(h, w)
        return await self._run("synthesize", lambda: self.worker.synthesize(
            key, label_map, instances, self._image(style, "the style image") if style else None, seed))

    async def labels(self, request: Any):
        """Decode an uploaded label map into palette ids, as ``imgsynth translate`` reads one."""
        from starlette.concurrency import run_in_threadpool

        form = await self._form(request)
        m = self.worker.model(_field(form, "model"), "translate")
        data = _file(form, "file", "a label map")

        def decode() -> np.ndarray:
            from imgsynth.engine import io
            from imgsynth.pipelines.labels import decode_color_labels, load_palette

            self._check_pixels(data, "the label map")
            raw, dec = io.decode_label_map(data, "the label map")
            if raw is None:
                raw = decode_color_labels(dec.rgb, load_palette(m.palette or ""), name_for_errors="the label map")
            bad = [int(v) for v in np.unique(raw) if not m.label_ok(int(v))]
            if bad:
                raise InputError(f"the label map holds value(s) {bad[:5]} that are not classes of {m.key}")
            return raw.astype(np.uint8)

        raw = await run_in_threadpool(decode)
        return _json(200, {"width": int(raw.shape[1]), "height": int(raw.shape[0]),
                           "labels": base64.b64encode(raw.tobytes()).decode("ascii")})

    def _size(self, form: dict[str, Any]) -> tuple[int, int]:
        try:
            w, h = int(_field(form, "width")), int(_field(form, "height"))
        except ValueError:
            raise InputError("width and height must be integers") from None
        if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
            raise InputError(f"width and height must be 1..{MAX_SIDE}")
        if w * h > self.config.max_pixels:
            raise _Refused(413, f"a {w}x{h} label map is over this server's limit of {self.config.max_pixels:,} pixels")
        return w, h


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _field(form: dict[str, Any], name: str) -> str:
    value = form.get(name)
    if value is None or isinstance(value, bytes):
        raise InputError(f"the request lacks the {name!r} field")
    return str(value)


def _file(form: dict[str, Any], name: str, what: str) -> bytes:
    value = form.get(name)
    if not isinstance(value, bytes):
        raise InputError(f"the request lacks {what} (form file {name!r})")
    return value


def _handler(fn: Any) -> Any:
    """Turn the library's errors into JSON answers with the right status."""

    async def wrapped(request: Any) -> Any:
        try:
            return await fn(request)
        except TooLarge:
            return error(413, f"upload is over this server's {request.app.state.config.max_upload_bytes:,}-byte limit")
        except _Refused as e:
            return error(e.status, str(e))
        except (InputError, UsageError) as e:
            return error(400, str(e))
        except ImgsynthError as e:
            return error(500, str(e))
        except Exception as e:  # keep the server up; the page shows one line, the terminal the trace
            traceback.print_exc(file=sys.stderr)
            return error(500, f"internal error: {type(e).__name__}: {e}")

    return wrapped


def create_app(config: ServeConfig, worker: Worker | None = None) -> Any:
    """The ASGI app for ``config`` (``worker`` defaults to one over :func:`catalog`)."""
    from starlette.applications import Starlette
    from starlette.responses import FileResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    worker = worker or Worker(catalog(config.models), device=config.device)
    if config.output_dir is not None:
        try:
            config.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"{config.output_dir}: cannot create the output directory ({e.strerror})") from None
        if not os.access(config.output_dir, os.W_OK | os.X_OK):
            raise UsageError(f"{config.output_dir}: output directory is not writable")
    api = Api(config, worker)
    root = static_dir()

    async def index(request: Any):
        return FileResponse(root / "index.html", media_type="text/html; charset=utf-8",
                            headers={"cache-control": "no-cache"})

    routes = [
        Route("/", index, methods=["GET", "HEAD"]),
        Route("/api/info", _handler(api.info), methods=["GET"]),
        Route("/api/status", _handler(api.status), methods=["GET"]),
        Route("/api/inpaint", _handler(api.inpaint), methods=["POST"]),
        Route("/api/synthesize", _handler(api.synthesize), methods=["POST"]),
        Route("/api/labels", _handler(api.labels), methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(root)), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.worker, app.state.config = worker, config
    guarded = Guard(app, config)
    guarded.worker = worker  # type: ignore[attr-defined]
    return guarded


__all__ = ["ServeConfig", "create_app", "is_loopback"]
