"""End to end in a real browser: ``python -m imgsynth serve --port 0`` on loopback, Debian's chromium
headless through chromium-driver and selenium, pointer events painting on the page.

Without chromium, chromium-driver or selenium these tests skip with the reason, except under
``CI=true`` where they fail (``.ci/run`` installs the Debian packages). Each test saves a 1280x720
screenshot of its mode into ``$IMGSYNTH_SCREENSHOTS`` (the README's are made with
``IMGSYNTH_SCREENSHOTS=docs python -m pytest tests/serve/test_browser.py``), else into its tmp folder.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
PHOTO = ROOT / "examples" / "inpaint" / "coffee.png"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
VIEWPORT = (1280, 720)


def _require(ok: bool, reason: str) -> None:
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (required under CI=true; .ci/run installs chromium and chromium-driver)")
        pytest.skip(reason)


def _deps() -> None:
    _require(CHROMIUM is not None, "chromium is not installed (apt-get install chromium)")
    _require(DRIVER is not None, "chromedriver is not installed (apt-get install chromium-driver)")
    for mod, extra in (("selenium", "test"), ("starlette", "serve"), ("uvicorn", "serve")):
        try:
            __import__(mod)
        except ImportError:
            _require(False, f"{mod} is not installed (pip install -e '.[{extra}]')")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `imgsynth serve` process on a free loopback port; stopped with Ctrl-C (SIGINT) after."""
    yield from _serve(tmp_path_factory, "pconv-photos-256,telea,spade-fashion-mnist")


def _serve(tmp_path_factory, models: str):
    _deps()
    env = {**os.environ, "HF_HOME": str(tmp_path_factory.mktemp("hf")), "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    proc = subprocess.Popen([sys.executable, "-m", "imgsynth", "serve", "--port", "0", "--models", models],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(60)
    if not line or not line[0].startswith("http://127.0.0.1:"):
        proc.kill()
        pytest.fail(f"imgsynth serve printed no URL: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}")
    yield line[0].strip()
    proc.send_signal(signal.SIGINT)
    try:
        rc = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 130, f"Ctrl-C should end imgsynth serve with 130, got {rc}: {proc.stderr.read()[-500:]}"


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-extensions", "--disable-background-networking", f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 1, "mobile": False})
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        driver.downloads = downloads
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("IMGSYNTH_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_for(driver, script: str, timeout: float = 60.0):
    """Poll a JS expression until it is truthy; fail with the page's error line otherwise."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = driver.execute_script(f"return {script}")
        if value:
            return value
        time.sleep(0.1)
    err = driver.execute_script("const e = document.getElementById('error'); return e.hidden ? '' : e.textContent")
    pytest.fail(f"timed out waiting for {script!r}; page error: {err!r}")


def open_page(driver, url: str) -> None:
    driver.get("about:blank")
    driver.get(url)
    wait_for(driver, "document.body.dataset.ready === '1'")
    assert "token" not in driver.current_url  # the key left the address bar


def downloaded(driver, name: str, timeout: float = 30.0) -> np.ndarray:
    path = driver.downloads / name
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.stat().st_size > 0 and not list(driver.downloads.glob("*.crdownload")):
            data = path.read_bytes()
            path.unlink()
            return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        time.sleep(0.1)
    pytest.fail(f"no download {name} in {sorted(p.name for p in driver.downloads.iterdir())}")


def client_point(driver, canvas_id: str, x: float, y: float) -> tuple[float, float]:
    """Client coordinates of image pixel (x, y) of a canvas on the page (after zoom and pan)."""
    r = driver.execute_script(
        "const c = document.getElementById(arguments[0]); const r = c.getBoundingClientRect();"
        "return [r.left, r.top, r.width / c.width, r.height / c.height];", canvas_id)
    return r[0] + x * r[2], r[1] + y * r[3]


def stroke(driver, stage_id: str, canvas_id: str, points: list[tuple[float, float]]) -> None:
    """Drag the mouse (pointer events) through image points of a canvas."""
    from selenium.webdriver.common.action_chains import ActionChains

    stage = driver.find_element("id", stage_id)
    rect = stage.rect
    cx, cy = rect["x"] + rect["width"] / 2, rect["y"] + rect["height"] / 2

    def offset(p):
        x, y = client_point(driver, canvas_id, *p)
        return round(x - cx), round(y - cy)

    chain = ActionChains(driver, duration=20).move_to_element_with_offset(stage, *offset(points[0])).click_and_hold()
    for p in points[1:]:
        chain = chain.move_to_element_with_offset(stage, *offset(p))
    chain.release().perform()


def page_error(driver) -> str:
    return driver.execute_script("const e = document.getElementById('error'); return e.hidden ? '' : e.textContent")


def severe_logs(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_inpaint_a_photo_in_the_browser(server, browser, shots):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    d = browser
    open_page(d, server)
    assert d.execute_script("return document.getElementById('inpaint-model').value") == "pconv-photos-256"
    d.find_element("id", "inpaint-file").send_keys(str(PHOTO))
    wait_for(d, "document.getElementById('inpaint-info').textContent.includes('300 × 200')")
    # Enter before painting: the page says what to do, in one sentence
    d.find_element("id", "inpaint-stage").send_keys("\n")
    wait_for(d, "!document.getElementById('error').hidden")
    assert "paint over" in page_error(d)
    # a stroke along the spoon, brush at the default size (300 / 24 -> 13 px)
    size = int(d.execute_script("return document.getElementById('inpaint-size').value"))
    path = [(182.0, 150.0), (190.0, 110.0), (198.0, 70.0), (203.0, 45.0)]
    stage = d.find_element("id", "inpaint-stage")
    stage.send_keys("++")  # zoom in: the stroke must still land on the photo's pixels
    scale = d.execute_script("const c = document.getElementById('inpaint-photo');"
                             "return c.getBoundingClientRect().width / c.width")
    stroke(d, "inpaint-stage", "inpaint-photo", path)
    assert page_error(d) == ""  # painting cleared the hint
    stage.send_keys("f")  # fit the photo back into the window
    assert d.execute_script("const c = document.getElementById('inpaint-photo');"
                            "return c.getBoundingClientRect().width / c.width") < scale
    # undo and redo the stroke from the keyboard
    fill_enabled = "!document.getElementById('inpaint-fill').disabled"
    ActionChains(d).key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL).perform()
    assert not d.execute_script(f"return {fill_enabled}")
    ActionChains(d).key_down(Keys.CONTROL).key_down(Keys.SHIFT).send_keys("z").key_up(Keys.SHIFT).key_up(Keys.CONTROL).perform()
    assert d.execute_script(f"return {fill_enabled}")
    d.save_screenshot(str(shots / "serve-inpaint.png"))
    d.execute_script(  # record whether the progress bar showed while the fill ran
        "window.progressSeen = false; const p = document.getElementById('progress');"
        "new MutationObserver(() => { if (!p.hidden) window.progressSeen = true; })"
        ".observe(p, {attributes: true, subtree: true, childList: true, characterData: true});")
    d.find_element("id", "inpaint-fill").click()
    wait_for(d, "document.getElementById('inpaint-stage').dataset.result === '1'", timeout=120)
    assert d.execute_script("return window.progressSeen")
    assert d.execute_script("return document.getElementById('progress').hidden")
    assert page_error(d) == ""
    # before / after toggles the original back on
    d.find_element("id", "inpaint-compare").click()
    assert d.execute_script("return document.getElementById('inpaint-stage').classList.contains('before')")
    d.find_element("id", "inpaint-compare").click()
    d.find_element("id", "inpaint-download").click()
    out = downloaded(d, "coffee-inpainted.png")
    src = np.asarray(Image.open(PHOTO).convert("RGB"))
    assert out.shape == src.shape  # full resolution
    # distance of every pixel centre to the painted polyline
    yy, xx = np.mgrid[0:src.shape[0], 0:src.shape[1]] + 0.5
    dist = np.full(src.shape[:2], np.inf)
    for (x0, y0), (x1, y1) in zip(path, path[1:]):
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / (dx * dx + dy * dy), 0, 1)
        dist = np.minimum(dist, np.hypot(xx - (x0 + t * dx), yy - (y0 + t * dy)))
    far, inside = dist > size / 2 + 3, dist < size / 2 - 2
    changed = np.argwhere((out != src).any(-1) & far)
    assert not changed.size, f"{len(changed)} known pixels changed, e.g. (row, col) {changed[:3].tolist()}"
    assert np.abs(out[inside].astype(int) - src[inside]).mean() > 8  # the hole was filled
    assert not severe_logs(d)


def test_paint_a_scene_in_the_browser(server, browser, shots):
    d = browser
    open_page(d, server)
    d.find_element("id", "tab-scene").click()
    wait_for(d, "!document.getElementById('scene').hidden")
    assert d.execute_script("return document.getElementById('scene-model').value") == "spade-fashion-mnist"
    w, h = (int(d.execute_script(f"return document.getElementById('scene-labels').{k}")) for k in ("width", "height"))
    assert (w, h) == (32, 32)
    stage = d.find_element("id", "scene-stage")
    # a 10 px brush: the slider is set the way a person drags it
    d.execute_script("const s = document.getElementById('scene-size'); s.value = '10';"
                     "s.dispatchEvent(new Event('input'));")
    stage.send_keys("3")  # key 3: the third class, Trouser (id 2)
    stroke(d, "scene-stage", "scene-labels", [(9.5, 7.0), (9.5, 16.0), (9.5, 25.0)])
    d.find_element("css selector", "#scene-classes button[data-id='9']").click()  # Bag
    stroke(d, "scene-stage", "scene-labels", [(23.5, 7.0), (23.5, 16.0), (23.5, 25.0)])
    stage.send_keys("\n")  # Enter: synthesize
    wait_for(d, "document.getElementById('scene-result-stage').dataset.results === '1'", timeout=120)
    assert page_error(d) == ""
    d.find_element("id", "scene-download").click()
    out = downloaded(d, "spade-fashion-mnist-scene.png").astype(float)
    assert out.shape == (32, 32, 3)
    left, right = out[8:24, 6:13].reshape(-1, 3).mean(0), out[8:24, 20:27].reshape(-1, 3).mean(0)
    assert np.abs(left - right).max() > 8, (left, right)  # two classes, two different garments
    # a held-out Fashion-MNIST label map, opened and synthesized: the screenshot of this mode
    d.find_element("id", "scene-file").send_keys(str(ROOT / "examples" / "labels" / "t10k-00000-ankle_boot.png"))
    wait_for(d, "document.getElementById('scene-result-stage').querySelector('.empty').hidden === false")
    stage.send_keys("\n")
    wait_for(d, "document.getElementById('scene-result-stage').dataset.results === '2'", timeout=120)
    d.execute_script("document.querySelector('#scene-stage .cursor').hidden = true")
    d.save_screenshot(str(shots / "serve-scene.png"))
    assert not severe_logs(d)


def test_drop_and_paste_open_a_photo_and_a_label_map_upload_paints_its_classes(server, browser):
    d = browser
    open_page(d, server)
    make = ("const c = new OffscreenCanvas(arguments[0], arguments[1]); const g = c.getContext('2d');"
            "g.fillStyle = '#3a7'; g.fillRect(0, 0, arguments[0], arguments[1]);"
            "return c.convertToBlob({type: 'image/png'}).then(b => { const dt = new DataTransfer();"
            "dt.items.add(new File([b], arguments[2], {type: 'image/png'})); window.dt = dt; return true; });")
    d.execute_script(make, 40, 30, "dropped.png")
    d.execute_script("const s = document.getElementById('inpaint-stage');"
                     "s.dispatchEvent(new DragEvent('drop', {dataTransfer: window.dt, bubbles: true, cancelable: true}));")
    wait_for(d, "document.getElementById('inpaint-info').textContent.includes('dropped.png: 40 × 30')")
    d.execute_script(make, 24, 18, "clip.png")
    d.execute_script("document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: window.dt, bubbles: true}));")
    wait_for(d, "document.getElementById('inpaint-info').textContent.includes('pasted.png: 24 × 18')")
    # an index-PNG label map opens into the scene's label buffer: the preview shows its classes' colours
    d.find_element("id", "tab-scene").click()
    label_png = ROOT / "examples" / "labels" / "t10k-00002-trouser.png"
    draws = d.execute_script("return Number(document.getElementById('scene-stage').dataset.draws || 0)")
    d.find_element("id", "scene-file").send_keys(str(label_png))
    ids = np.asarray(Image.open(label_png))
    wait_for(d, f"Number(document.getElementById('scene-stage').dataset.draws) > {draws}"
                " && document.getElementById('scene-undo').disabled === false")
    rgba = d.execute_script("const c = document.getElementById('scene-labels');"
                            "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);")
    from imgsynth.pipelines.labels import colorize, load_palette

    want = colorize(ids, load_palette("fashion_mnist"))
    got = np.asarray(rgba, np.uint8).reshape(ids.shape[0], ids.shape[1], 4)[..., :3]
    assert np.array_equal(got, want)
    assert page_error(d) == "" and not severe_logs(d)


def test_a_server_without_inpainting_models_opens_on_the_scene(browser, tmp_path_factory):
    gen = _serve(tmp_path_factory, "spade-fashion-mnist")
    url = next(gen)
    try:
        open_page(browser, url)
        d = browser
        assert d.execute_script("return document.body.dataset.mode") == "scene"
        assert d.execute_script("return document.getElementById('tab-inpaint').disabled")
        d.find_element("tag name", "body").send_keys("m")  # no inpaint mode to switch to
        assert d.execute_script("return document.body.dataset.mode") == "scene"
        assert page_error(d) == "" and not severe_logs(d)
    finally:
        next(gen, None)  # Ctrl-C, exit 130 checked
