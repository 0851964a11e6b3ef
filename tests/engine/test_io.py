"""Image I/O: input expansion, decoding of every mode, bad inputs, output planning, atomic writes."""

from __future__ import annotations

import io as pyio
import os

import numpy as np
import pytest
from PIL import Image

from imgsynth.engine import io
from imgsynth.errors import InputError, OutputError, UsageError


def png_bytes(img: Image.Image, **kw) -> bytes:
    buf = pyio.BytesIO()
    img.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


def rgb_img(w=8, h=6):
    arr = (np.arange(w * h * 3) % 251).astype(np.uint8).reshape(h, w, 3)
    return Image.fromarray(arr)


# --- decoding: every documented mode -------------------------------------------------------------

def test_rgb_roundtrip():
    img = rgb_img()
    dec = io.decode_image(png_bytes(img), "x.png")
    assert dec.rgb.shape == (6, 8, 3) and dec.rgb.dtype == np.uint8 and dec.alpha is None
    assert np.array_equal(dec.rgb, np.asarray(img))


def test_mode_1_and_L_replicate():
    bw = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).convert("1")
    dec = io.decode_image(png_bytes(bw), "bw.png")
    assert dec.rgb[0, 1].tolist() == [255, 255, 255] and dec.rgb[0, 0].tolist() == [0, 0, 0]
    gray = Image.fromarray(np.array([[10, 20]], np.uint8), "L")
    assert io.decode_image(png_bytes(gray), "g.png").rgb[0, 1].tolist() == [20, 20, 20]


def test_LA_keeps_alpha():
    la = Image.fromarray(np.array([[[10, 0], [20, 255]]], np.uint8), "LA")
    dec = io.decode_image(png_bytes(la), "la.png")
    assert dec.alpha.tolist() == [[0, 255]] and dec.rgb[0, 1].tolist() == [20, 20, 20]


def test_rgba_keeps_alpha():
    arr = np.zeros((2, 2, 4), np.uint8)
    arr[..., 3] = [[0, 255], [255, 0]]
    dec = io.decode_image(png_bytes(Image.fromarray(arr, "RGBA")), "a.png")
    assert dec.alpha.tolist() == [[0, 255], [255, 0]]


def test_palette_with_transparency():
    p = Image.new("P", (3, 1))
    p.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    p.info["transparency"] = 0
    dec = io.decode_image(png_bytes(p, transparency=0), "p.png")
    assert dec.alpha is not None and dec.alpha[0, 0] == 0 and dec.alpha[0, 1] == 255
    assert dec.rgb[0, 1].tolist() == [0, 255, 0]


def test_16bit_png_scaled():
    arr = np.array([[0, 257 * 100, 65535]], np.uint16)
    dec = io.decode_image(png_bytes(Image.fromarray(arr)), "16.png")
    assert dec.rgb[0, :, 0].tolist() == [0, 100, 255]


def test_float_tiff_scaled():
    arr = np.array([[0.0, 0.5, 1.0]], np.float32)
    dec = io.decode_image(png_bytes(Image.fromarray(arr, "F"), format="TIFF"), "f.tif")
    assert dec.rgb[0, :, 0].tolist() == [0, 128, 255]


def test_cmyk_jpeg_converted():
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # red
    dec = io.decode_image(png_bytes(cmyk, format="JPEG"), "c.jpg")
    r, g, b = dec.rgb[2, 2].tolist()
    assert r > 200 and g < 60 and b < 60


def test_exif_orientation_applied():
    img = rgb_img(8, 4)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    dec = io.decode_image(png_bytes(img, format="JPEG", exif=exif), "o.jpg")
    assert dec.size == (8, 4)


@pytest.mark.parametrize("fmt", ["WEBP", "BMP", "TIFF", "JPEG"])
def test_other_formats(fmt):
    dec = io.decode_image(png_bytes(rgb_img(), format=fmt), f"x.{fmt.lower()}")
    assert dec.size == (6, 8)


# --- bad inputs -----------------------------------------------------------------------------------

def test_empty_file():
    with pytest.raises(InputError, match="e.png: empty file"):
        io.decode_image(b"", "e.png")


def test_text_named_png():
    with pytest.raises(InputError, match="t.png: not a recognised image"):
        io.decode_image(b"hello, I am text\n", "t.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated(fmt):
    data = png_bytes(rgb_img(64, 64), format=fmt)
    with pytest.raises(InputError, match="corrupt or truncated"):
        io.decode_image(data[: len(data) // 2], "cut")


def test_animated_gif():
    frames = [Image.new("RGB", (4, 4), c) for c in ("red", "blue")]
    buf = pyio.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(InputError, match="animated image with 2 frames"):
        io.decode_image(buf.getvalue(), "a.gif")


def test_huge_declared_size_is_an_error(monkeypatch):
    monkeypatch.setenv("IMGSYNTH_MAX_PIXELS", "100")
    with pytest.raises(InputError, match="exceeds the 100-pixel limit"):
        io.decode_image(png_bytes(rgb_img(20, 20)), "big.png")


def test_one_by_one_image_decodes():
    assert io.decode_image(png_bytes(rgb_img(1, 1)), "1.png").size == (1, 1)


def test_mask_threshold_and_invert():
    m = Image.fromarray(np.array([[0, 127, 128, 255]], np.uint8))
    assert io.decode_mask(png_bytes(m), "m.png").tolist() == [[False, False, True, True]]
    assert io.decode_mask(png_bytes(m), "m.png", invert=True).tolist() == [[True, True, False, False]]


# --- input expansion -------------------------------------------------------------------------------

def test_expand_dir_glob_list_and_missing(tmp_path):
    for n in ("b.png", "a.jpg", "c_mask.png", "notes.txt"):
        (tmp_path / n).write_bytes(b"x")
    items = io.expand_inputs([str(tmp_path)], exclude_suffix="_mask")
    assert [i.stem for i in items] == ["a", "b"]
    assert [i.stem for i in io.expand_inputs([str(tmp_path / "*.png")])] == ["b", "c_mask"]
    lst = tmp_path / "list.txt"
    lst.write_text("# comment\nb.png\n\nmissing.png\n")
    got = io.expand_inputs([f"@{lst}"])
    assert [(i.stem, i.error) for i in got] == [("b", None), ("missing", "file not found")]
    assert io.expand_inputs([str(tmp_path / "b.png"), str(tmp_path / "b.png")])[0].stem == "b"


def test_expand_errors(tmp_path):
    with pytest.raises(InputError, match="no images"):
        io.expand_inputs([str(tmp_path)])
    with pytest.raises(InputError, match="matches no files"):
        io.expand_inputs([str(tmp_path / "*.png")])
    with pytest.raises(UsageError, match="stdin"):
        io.expand_inputs(["-", "x.png"])
    with pytest.raises(InputError, match="cannot read list file"):
        io.expand_inputs([f"@{tmp_path / 'nope.txt'}"])


def test_unreadable_directory(tmp_path, monkeypatch):
    d = tmp_path / "locked"
    d.mkdir()

    def deny(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(d), "iterdir", deny)
    with pytest.raises(InputError, match="locked: directory is not readable"):
        io.expand_inputs([str(d)])


def test_stdin_terminal_refused():
    class Tty(pyio.BytesIO):
        def isatty(self):
            return True

    with pytest.raises(InputError, match="stdin is a terminal"):
        io.read_bytes(io.InputItem("-", "stdin"), stdin=Tty())


# --- output planning and writing ------------------------------------------------------------------

def test_plan_file_dir_stdout(tmp_path):
    assert io.plan_output(str(tmp_path / "o.png"), n_results=1, default="out").mode == "file"
    assert io.plan_output(str(tmp_path / "d"), n_results=3, default="out").mode == "dir"
    assert (tmp_path / "d").is_dir()
    with pytest.raises(UsageError, match="one file but there are 2"):
        io.plan_output(str(tmp_path / "o.png"), n_results=2, default="out")

    class NotTty(pyio.BytesIO):
        def isatty(self):
            return False

    assert io.plan_output("-", n_results=1, default="out", stdout=NotTty()).mode == "stdout"
    with pytest.raises(UsageError, match="one PNG to stdout"):
        io.plan_output("-", n_results=2, default="out", stdout=NotTty())


def test_stdout_terminal_refused():
    class Tty(pyio.BytesIO):
        def isatty(self):
            return True

    with pytest.raises(UsageError, match="terminal"):
        io.plan_output("-", n_results=1, default="out", stdout=Tty())


def test_output_equal_to_input_refused(tmp_path):
    src = tmp_path / "photo.png"
    src.write_bytes(png_bytes(rgb_img()))
    items = io.expand_inputs([str(src)])
    with pytest.raises(OutputError, match="would overwrite an input"):
        io.plan_output(str(src), n_results=1, default="out", inputs=items)
    plan = io.plan_output(str(tmp_path), n_results=1, default="out", inputs=items, overwrite=True)
    with pytest.raises(OutputError, match="would overwrite an input"):
        plan.check(plan.path_for("photo"))


def test_output_dir_not_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot create the output directory"):
        io.plan_output(str(blocker / "sub"), n_results=2, default="out")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        io.plan_output(str(blocker), n_results=2, default="out")


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "o.png"

    def boom(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        io.write_atomic(target, b"data")
    assert list(tmp_path.iterdir()) == []


def test_metadata_png_chunk_and_sidecar(tmp_path):
    plan = io.plan_output(str(tmp_path / "d"), n_results=2, default="out")
    arr = np.asarray(rgb_img())
    p = plan.write("seed0001", arr, {"model": "m", "seed": 1})
    assert p.name == "seed0001.png" and io.read_metadata(p) == {"model": "m", "seed": 1}
    assert plan.check(p) == "skip"
    jplan = io.plan_output(str(tmp_path / "o.jpg"), n_results=1, default="out")
    jp = jplan.write("x", arr, {"seed": 2})
    assert io.read_metadata(jp) == {"seed": 2} and (tmp_path / "o.jpg.json").exists()
