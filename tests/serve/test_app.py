"""imgsynth serve's API through Starlette's TestClient: the safety checks and the two demos' jobs."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the 'serve' extra (starlette) is not installed")
pytest.importorskip("httpx", reason="starlette's TestClient needs httpx (the 'test' extra)")
pytest.importorskip("python_multipart", reason="the 'serve' extra (python-multipart) is not installed")

from PIL import Image  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from imgsynth.serve.app import CSP, ServeConfig, create_app, is_loopback, split_host_header  # noqa: E402

TOKEN = "test-token-0123456789"
BASE = "http://127.0.0.1:8765"
AUTH = {"X-Imgsynth-Token": TOKEN}
MODELS = ["pconv-photos-256", "telea", "patchmatch", "spade-fashion-mnist", "panoptic-mosaics"]
ROOT = Path(__file__).resolve().parents[2]


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def photo(h: int = 48, w: int = 64) -> np.ndarray:
    """A textured test photo with a red square in the middle."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // w, y * 255 // h, ((x // 4 + y // 4) % 2) * 120 + 60], -1).astype(np.uint8)
    rgb[h // 3: 2 * h // 3, w // 3: 2 * w // 3] = (230, 20, 20)
    return rgb


def hole_mask(h: int = 48, w: int = 64) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[h // 3 - 2: 2 * h // 3 + 2, w // 3 - 2: 2 * w // 3 + 2] = 255
    return m


@pytest.fixture(scope="module")
def app_and_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("serve-out")
    config = ServeConfig(token=TOKEN, models=MODELS, output_dir=out, max_upload_bytes=800_000, max_pixels=250_000)
    return create_app(config), out


@pytest.fixture(scope="module")
def client(app_and_dir):
    return TestClient(app_and_dir[0], base_url=BASE)


def inpaint(client, model="telea", image=None, mask=None, headers=AUTH, **kw):
    files = {"image": ("photo.png", png(photo()) if image is None else image, "image/png"),
             "mask": ("mask.png", png(hole_mask()) if mask is None else mask, "image/png")}
    return client.post("/api/inpaint", headers=headers, data={"model": model}, files=files, **kw)


def synthesize(client, labels: np.ndarray, model="spade-fashion-mnist", instances=None, style=None, headers=AUTH):
    h, w = labels.shape
    files = {"labels": ("labels", labels.astype(np.uint8).tobytes(), "application/octet-stream")}
    if instances is not None:
        files["instances"] = ("instances", instances.astype("<u2").tobytes(), "application/octet-stream")
    if style is not None:
        files["style"] = ("style.png", style, "image/png")
    return client.post("/api/synthesize", headers=headers, data={"model": model, "width": str(w), "height": str(h)},
                       files=files)


def one_line_error(resp) -> str:
    msg = resp.json()["error"]
    assert "\n" not in msg and msg
    return msg


# --- the page and its headers ----------------------------------------------------------------------
def test_page_and_static_files_carry_the_security_headers(client):
    for path in ("/", "/static/js/main.js", "/static/style.css", "/api/info"):
        r = client.get(path, headers=AUTH)
        assert r.status_code == 200, path
        assert r.headers["content-security-policy"] == CSP
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-frame-options"] == "DENY"
        assert not [k for k in r.headers if k.lower().startswith("access-control-")]
    assert "text/html" in client.get("/").headers["content-type"]
    assert "javascript" in client.get("/static/js/main.js").headers["content-type"]
    assert client.get("/api/info", headers=AUTH).headers["cache-control"] == "no-store"


def test_csp_allows_nothing_but_this_origin():
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["default-src"] == "'self'"
    for name, value in directives.items():
        assert "unsafe" not in value and "*" not in value and "http" not in value, name
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"


def test_page_needs_no_other_origin():
    """Every URL the page's files name is relative to this server (works offline, no CDN)."""
    static = ROOT / "imgsynth" / "serve" / "static"
    files = [p for p in static.rglob("*") if p.suffix in (".html", ".css", ".js")]
    assert files
    for p in files:
        text = p.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, p.name
        assert "@import" not in text and "fonts.googleapis" not in text, p.name
    html = (static / "index.html").read_text()
    assert " style=" not in html and "<script>" not in html and "onclick" not in html  # nothing inline


# --- Host header (DNS rebinding) -------------------------------------------------------------------
@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.evil.example", "localhost.evil.example"])
def test_foreign_host_header_is_refused(client, host):
    assert client.get("/", headers={"Host": host}).status_code == 400
    r = inpaint(client, headers={**AUTH, "Host": host})
    assert r.status_code == 400 and "Host" in one_line_error(r)


@pytest.mark.parametrize("host", ["127.0.0.1:8765", "localhost:8765", "[::1]:8765", "127.0.0.2", "LOCALHOST"])
def test_loopback_host_headers_pass(client, host):
    assert client.get("/", headers={"Host": host}).status_code == 200


def test_host_rules_follow_the_bind_address():
    loop = ServeConfig(host="127.0.0.1")
    assert not loop.host_allowed("192.168.1.5") and not loop.host_allowed("example.com")
    wide = ServeConfig(host="0.0.0.0", allowed_hosts=("studio.lan",))
    assert wide.host_allowed("192.168.1.5") and wide.host_allowed("studio.lan")
    assert not wide.host_allowed("evil.example")
    assert split_host_header("[::1]:80") == "::1" and split_host_header("Example.COM.:8080") == "example.com"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.0.1")


# --- CORS, token, origin -----------------------------------------------------------------------------
def test_no_cors_headers_even_for_a_preflight(client):
    pre = client.options("/api/inpaint", headers={"Origin": "http://evil.example",
                                                  "Access-Control-Request-Method": "POST",
                                                  "Access-Control-Request-Headers": "x-imgsynth-token"})
    assert pre.status_code == 405
    r = client.get("/api/info", headers={**AUTH, "Origin": "http://evil.example"})
    for resp in (pre, r):
        assert not [k for k in resp.headers if k.lower().startswith("access-control-")]


@pytest.mark.parametrize("headers", [{}, {"X-Imgsynth-Token": "wrong"}, {"X-Imgsynth-Token": TOKEN[:-1]}])
def test_every_api_request_needs_the_token(client, headers):
    r = inpaint(client, headers=headers)
    assert r.status_code == 403 and "token" in one_line_error(r)
    assert client.get("/api/info", headers=headers).status_code == 403
    assert synthesize(client, np.zeros((32, 32)), headers=headers).status_code == 403


def test_post_from_another_site_is_refused_even_with_the_token(client):
    r = inpaint(client, headers={**AUTH, "Origin": "http://evil.example"})
    assert r.status_code == 403 and "other sites" in one_line_error(r)
    r = inpaint(client, headers={**AUTH, "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert inpaint(client, headers={**AUTH, "Origin": BASE, "Sec-Fetch-Site": "same-origin"}).status_code == 200
    # "Origin: null" (what no-referrer pages may send) passes only when the browser says same-origin
    assert inpaint(client, headers={**AUTH, "Origin": "null"}).status_code == 403
    assert inpaint(client, headers={**AUTH, "Origin": "null", "Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert inpaint(client, headers={**AUTH, "Origin": "null", "Sec-Fetch-Site": "same-origin"}).status_code == 200


def test_only_get_and_api_posts_are_served(client):
    assert client.put("/api/inpaint", headers=AUTH).status_code == 405
    assert client.delete("/", headers=AUTH).status_code == 405
    assert client.post("/", headers=AUTH).status_code == 405


def test_static_files_stay_inside_the_package(client):
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py"):
        r = client.get(path)
        assert r.status_code in (400, 404), path
        assert b"create_app" not in r.content


# --- size limits -------------------------------------------------------------------------------------
def test_upload_over_the_byte_limit_is_refused(client):
    big = b"\0" * 1_000_000
    r = client.post("/api/inpaint", headers=AUTH, data={"model": "telea"},
                    files={"image": ("a.png", big, "image/png"), "mask": ("m.png", b"x", "image/png")})
    assert r.status_code == 413 and "limit" in one_line_error(r)


def test_streamed_upload_is_cut_at_the_byte_limit(client):
    sent = []

    def body():
        for _ in range(100):  # 100 chunks of 10 kB, no Content-Length
            sent.append(1)
            yield b"\0" * 10_000

    r = client.post("/api/inpaint", headers={**AUTH, "Content-Type": "multipart/form-data; boundary=xyz"},
                    content=body())
    assert r.status_code == 413


def _declared_png(w: int, h: int) -> bytes:
    """A PNG header declaring w x h pixels with almost no data (what a decompression bomb looks like)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bombs_are_refused_before_decoding(client):
    r = inpaint(client, image=_declared_png(50_000, 50_000))
    assert r.status_code == 413 and "50000x50000" in one_line_error(r)
    # a real one: 4000 x 4000 zeros compress to a few kB, well under the byte limit
    bomb = png(np.zeros((4000, 4000), np.uint8))
    assert len(bomb) < 800_000
    r = inpaint(client, mask=bomb)
    assert r.status_code == 413 and "pixels" in one_line_error(r)
    r = synthesize(client, np.zeros((600, 600)))
    assert r.status_code == 413


def test_undecodable_images_are_400(client):
    r = inpaint(client, image=b"not an image at all")
    assert r.status_code == 400 and "not a recognised image" in one_line_error(r)
    r = inpaint(client, image=png(photo())[:200])
    assert r.status_code == 400


# --- no client paths -------------------------------------------------------------------------------
def test_the_client_never_names_a_file(client, app_and_dir, tmp_path):
    _, out = app_and_dir
    before = set(out.iterdir())
    for key in ("../../etc/passwd", str(tmp_path), "/etc/passwd", "weights:../x"):
        r = inpaint(client, model=key)
        assert r.status_code == 400 and "unknown model" in one_line_error(r)
    evil = tmp_path / "evil.png"
    r = client.post("/api/inpaint", headers=AUTH, data={"model": "telea", "output": str(evil), "path": str(evil)},
                    files={"image": (str(evil), png(photo()), "image/png"),
                           "mask": ("../../mask.png", png(hole_mask()), "image/png")})
    assert r.status_code == 200 and not evil.exists()
    saved = r.headers["x-imgsynth-saved"]
    assert set(out.iterdir()) - before == {out / saved}
    assert saved.startswith("inpaint-") and saved.endswith(".png") and "/" not in saved
    assert (out / saved).read_bytes() == r.content


# --- inpaint ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["telea", "pconv-photos-256"])
def test_inpaint_fills_the_hole_and_keeps_every_known_pixel(client, model):
    rgb, mask = photo(), hole_mask()
    r = inpaint(client, model=model, image=png(rgb), mask=png(mask))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and r.headers["cache-control"] == "no-store"
    out, hole = decode(r.content), mask > 0
    assert out.shape == rgb.shape
    assert np.array_equal(out[~hole], rgb[~hole])
    assert np.abs(out[hole].astype(int) - rgb[hole]).mean() > 40  # the red square is gone
    meta = json.loads(Image.open(io.BytesIO(r.content)).info["imgsynth"])
    assert meta["model"] == model and meta["via"] == "imgsynth serve"
    if model == "pconv-photos-256":
        assert meta["ensemble"] == 4  # the card's setting, as `imgsynth inpaint` uses it


@pytest.mark.parametrize("size", [(48, 64), (300, 560)], ids=["small", "beyond-2x-resolution"])
def test_inpaint_matches_imgsynth_inpaint(client, tmp_path, size):
    """The page's fill is the CLI's fill for the same photo, mask and model (card settings included,
    and the strategy `auto` picks for a photo larger than twice the card's resolution)."""
    from typer.testing import CliRunner

    from imgsynth.cli.main import app

    rgb, mask = photo(*size), hole_mask(*size)
    (tmp_path / "p.png").write_bytes(png(rgb))
    (tmp_path / "m.png").write_bytes(png(mask))
    res = CliRunner().invoke(app, ["inpaint", str(tmp_path / "p.png"), "--mask", str(tmp_path / "m.png"),
                                   "-o", str(tmp_path / "out.png"), "-m", "pconv-photos-256"])
    assert res.exit_code == 0, res.output
    r = inpaint(client, model="pconv-photos-256", image=png(rgb), mask=png(mask))
    assert np.array_equal(decode(r.content), decode((tmp_path / "out.png").read_bytes()))
    # ... and says the same about how it was made (a photo filled `sharp` runs one view, not the
    # card's four)
    page = json.loads(Image.open(io.BytesIO(r.content)).info["imgsynth"])
    cli = json.loads(Image.open(tmp_path / "out.png").info["imgsynth"])
    for key in ("strategy", "ensemble"):
        assert page.get(key) == cli.get(key), key
    if size == (300, 560):
        assert page["strategy"] == "sharp" and "ensemble" not in page


def test_inpaint_refuses_bad_masks_in_one_sentence(client):
    r = inpaint(client, mask=png(np.zeros((48, 64), np.uint8)))
    assert r.status_code == 400 and "no hole" in one_line_error(r)
    r = inpaint(client, mask=png(hole_mask(40, 64)))
    assert r.status_code == 400 and "64x40" in one_line_error(r)
    r = client.post("/api/inpaint", headers=AUTH, data={"model": "telea"},
                    files={"image": ("p.png", png(photo()), "image/png")})
    assert r.status_code == 400 and "mask" in one_line_error(r)


def test_a_busy_server_answers_429_with_retry_after(client, app_and_dir):
    worker = app_and_dir[0].worker
    with worker.reserve("inpaint"):
        r = inpaint(client)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert synthesize(client, np.zeros((32, 32))).status_code == 429
        s = client.get("/api/status", headers=AUTH).json()
        assert s["busy"] and s["task"] == "inpaint" and s["elapsed"] is not None
    assert inpaint(client).status_code == 200
    s = client.get("/api/status", headers=AUTH).json()
    assert not s["busy"] and s["last_seconds"] > 0


def test_progress_is_reported_while_a_classical_fill_runs(app_and_dir):
    worker = app_and_dir[0].worker
    seen = []
    stage = worker._stage

    def spy(name, fraction=None):
        seen.append((name, fraction))
        stage(name, fraction)

    worker._stage = spy
    try:
        rgb = np.random.RandomState(0).randint(0, 255, (40, 40, 3), np.uint8)
        hole = np.zeros((40, 40), bool)
        hole[10:30, 10:30] = True
        with worker.reserve("inpaint"):
            worker.inpaint("patchmatch", rgb, hole)
    finally:
        worker._stage = stage
    fractions = [f for name, f in seen if name == "inpainting" and f is not None]
    assert fractions and fractions == sorted(fractions) and 0 < fractions[-1] <= 1


# --- paint a scene -------------------------------------------------------------------------------------
def test_info_lists_the_models_with_palettes(client):
    info = client.get("/api/info", headers=AUTH).json()
    keys = [m["key"] for m in info["models"]]
    assert keys == MODELS
    assert [m["key"] for m in info["models"] if m["default"]] == ["pconv-photos-256", "spade-fashion-mnist"]
    spade = info["models"][3]
    assert spade["palette"] == "fashion_mnist" and spade["width"] == spade["height"] == 32
    assert [c["id"] for c in spade["classes"]] == list(range(11)) and spade["classes"][1]["name"] == "T-shirt/top"
    assert spade["eraser"] == 0 and spade["instances"] is None and spade["style"] is False
    assert info["models"][4]["instances"] == "panoptic"
    assert info["limits"]["max_pixels"] == 250_000


def test_synthesize_two_classes(client):
    labels = np.zeros((32, 32), np.uint8)
    labels[4:28, 3:15] = 2  # trouser
    labels[4:28, 17:29] = 9  # bag
    r = synthesize(client, labels)
    assert r.status_code == 200, r.text
    out = decode(r.content).astype(float)
    assert out.shape == (32, 32, 3)
    a, b = out[labels == 2].mean(0), out[labels == 9].mean(0)
    assert np.abs(a - b).max() > 8, (a, b)
    again = synthesize(client, labels)
    assert again.content == r.content  # same labels, same picture
    meta = json.loads(Image.open(io.BytesIO(r.content)).info["imgsynth"])
    assert meta["model"] == "spade-fashion-mnist" and meta["input_kind"] == "label"


def test_synthesize_matches_imgsynth_translate(client, tmp_path):
    """The page's result is the CLI's result for the same label map."""
    from typer.testing import CliRunner

    from imgsynth.cli.main import app

    labels = np.zeros((32, 32), np.uint8)
    labels[6:26, 8:24] = 4
    src = tmp_path / "labels.png"
    Image.fromarray(labels, "L").save(src)
    res = CliRunner().invoke(app, ["translate", str(src), "-o", str(tmp_path / "out.png"), "-m", "spade-fashion-mnist"])
    assert res.exit_code == 0, res.output
    r = synthesize(client, labels)
    assert np.array_equal(decode(r.content), decode((tmp_path / "out.png").read_bytes()))


def test_painted_objects_reach_a_model_that_reads_instances(client):
    labels = np.zeros((32, 32), np.uint8)
    labels[4:28, 4:28] = 3
    one = np.zeros((32, 32), np.uint16)
    one[4:28, 4:28] = 1
    two = one.copy()
    two[4:28, 16:28] = 2  # the same class, split into two objects
    r1 = synthesize(client, labels, model="panoptic-mosaics", instances=one)
    r2 = synthesize(client, labels, model="panoptic-mosaics", instances=two)
    assert r1.status_code == r2.status_code == 200, r1.text
    assert not np.array_equal(decode(r1.content), decode(r2.content))


def test_synthesize_refuses_bad_label_buffers(client):
    r = synthesize(client, np.full((32, 32), 11))
    assert r.status_code == 400 and "[11]" in one_line_error(r)
    r = client.post("/api/synthesize", headers=AUTH, data={"model": "spade-fashion-mnist", "width": "32", "height": "32"},
                    files={"labels": ("l", b"\0" * 100, "application/octet-stream")})
    assert r.status_code == 400 and "1,024" in one_line_error(r)
    r = synthesize(client, np.zeros((32, 32)), style=png(photo()))
    assert r.status_code == 400 and "style" in one_line_error(r)
    r = synthesize(client, np.zeros((32, 32)), model="telea")
    assert r.status_code == 400 and "unknown model" in one_line_error(r)


def test_label_maps_upload_as_class_ids(client):
    index_png = (ROOT / "examples" / "labels" / "t10k-00002-trouser.png").read_bytes()
    want = np.asarray(Image.open(io.BytesIO(index_png)))
    r = client.post("/api/labels", headers=AUTH, data={"model": "spade-fashion-mnist"},
                    files={"file": ("x.png", index_png, "image/png")})
    assert r.status_code == 200
    body = r.json()
    import base64

    got = np.frombuffer(base64.b64decode(body["labels"]), np.uint8).reshape(body["height"], body["width"])
    assert np.array_equal(got, want)
    # a colour map in the model's palette decodes to the same ids
    from imgsynth.pipelines.labels import colorize, load_palette

    colour = colorize(want, load_palette("fashion_mnist"))
    r = client.post("/api/labels", headers=AUTH, data={"model": "spade-fashion-mnist"},
                    files={"file": ("c.png", png(colour), "image/png")})
    got = np.frombuffer(base64.b64decode(r.json()["labels"]), np.uint8).reshape(32, 32)
    assert np.array_equal(got, want)
    colour[0, 0] = (1, 2, 3)
    r = client.post("/api/labels", headers=AUTH, data={"model": "spade-fashion-mnist"},
                    files={"file": ("c.png", png(colour), "image/png")})
    assert r.status_code == 400 and "palette" in one_line_error(r)


# --- a style encoder --------------------------------------------------------------------------------
def test_style_image_only_where_the_weights_have_an_encoder(tmp_path):
    from safetensors.torch import save_file

    from imgsynth.models.registry import build_model

    cfg = dict(label_nc=11, contain_dontcare=False, use_instance=False, ngf=2, crop_size=32, nhidden=8,
               use_vae=True, z_dim=8)
    import torch

    torch.manual_seed(0)
    net = build_model("spade", cfg)
    folder = tmp_path / "tiny-vae"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({
        "format": "imgsynth-weights", "version": 1, "arch": "spade", "task": "translate", "config": cfg,
        "io": {"input": "label", "palette": "fashion_mnist", "label_offset": 0}}))
    app = create_app(ServeConfig(token=TOKEN, models=[str(folder), "spade-fashion-mnist"]))
    c = TestClient(app, base_url=BASE)
    info = c.get("/api/info", headers=AUTH).json()["models"]
    assert [(m["key"], m["style"]) for m in info] == [("weights:tiny-vae", True), ("spade-fashion-mnist", False)]
    assert str(tmp_path) not in json.dumps(info)
    labels = np.zeros((32, 32), np.uint8)
    labels[8:24, 8:24] = 1
    styles = [png(np.full((40, 40, 3), v, np.uint8)) for v in (0, 255)]
    outs = [synthesize(c, labels, model="weights:tiny-vae", style=s) for s in styles]
    assert all(r.status_code == 200 for r in outs), outs[0].text
    assert outs[0].content != outs[1].content  # the style image steers the picture
