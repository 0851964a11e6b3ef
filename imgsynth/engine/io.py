"""Image input and output for every command: expansion, decoding, naming and atomic writing.

Inputs: files, directories (their images, sorted, not recursive), globs, ``@list.txt`` (one path
per line, relative to the list file; blank lines and ``#`` comments skipped) and ``-`` (one image
on stdin). Readable formats: PNG, JPEG, WebP, BMP, TIFF (whatever Pillow decodes, minus animated
images). Every image becomes 8-bit RGB plus an optional 8-bit alpha plane:

==========  ============================================================================
mode        conversion
==========  ============================================================================
1           0 -> 0, 1 -> 255, replicated to RGB
L           replicated to RGB
LA          L replicated to RGB, A kept as alpha
P / PA      palette expanded; RGBA if the palette has transparency, else RGB
RGB         as is
RGBA        RGB, A kept as alpha
CMYK        Pillow's CMYK -> RGB conversion (inverted JPEGs from Photoshop are handled)
I;16, I     16-bit range: value / 257, rounded, clipped to 0..255
F           values in [0, 1] scaled by 255, otherwise clipped to 0..255
==========  ============================================================================

EXIF orientation is applied. Images above ``IMGSYNTH_MAX_PIXELS`` (default Pillow's 89.5 M) are
refused before decoding (a decompression-bomb guard that is an error, not a warning).

Outputs: a file, a directory (named by input stem, or ``seed0042.png`` for samples) or ``-`` for
stdout (PNG, refused when stdout is a terminal). Writes are atomic (temp file + rename), never
replace an input, and in directory mode skip outputs that already exist unless ``overwrite``.
PNG outputs carry their metadata (model id, revision, seed, options) in an ``imgsynth`` text
chunk; other formats get a ``.json`` sidecar.
"""

from __future__ import annotations

import glob as globmod
import io
import json
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from imgsynth.errors import ImgsynthError, InputError, OutputError, UsageError

if TYPE_CHECKING:
    from PIL import Image

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
WRITE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
STDIN = "-"
PNG_LEVEL = 1  # zlib level of written PNGs (see encode_image)


def max_pixels() -> int:
    """The decompression-bomb limit in pixels (``IMGSYNTH_MAX_PIXELS`` overrides)."""
    return int(os.environ.get("IMGSYNTH_MAX_PIXELS", 89_478_485))


@dataclass(frozen=True)
class InputItem:
    """One input: a path (or ``-``) and the stem that names its output."""

    path: str
    stem: str
    error: str | None = None  # set when the item is already known to be unusable

    @property
    def is_stdin(self) -> bool:
        return self.path == STDIN


@dataclass
class Decoded:
    """A decoded image: RGB uint8 (H, W, 3) and an optional alpha plane (H, W) uint8."""

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    mode: str = "RGB"

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.rgb.shape[0], self.rgb.shape[1]


def _is_glob(spec: str) -> bool:
    return any(ch in spec for ch in "*?[")


def _dir_images(directory: Path) -> list[Path]:
    try:
        entries = sorted(directory.iterdir())
    except PermissionError:
        raise InputError(f"{directory}: directory is not readable (permission denied)") from None
    return [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_EXTS]


def expand_inputs(specs: list[str], *, exclude_suffix: str | None = None) -> list[InputItem]:
    """Expand command-line inputs into items, in order, duplicates removed.

    A missing file becomes an item with ``error`` set (the batch reports it and goes on); a
    directory or glob with no images, or nothing at all, raises :class:`InputError`.
    ``exclude_suffix`` drops files whose stem ends with it (e.g. ``_mask`` beside photos).
    """
    if not specs:
        raise UsageError("no inputs given")
    if specs.count(STDIN) > 1 or (STDIN in specs and len(specs) > 1):
        raise UsageError("'-' (stdin) must be the only input")
    items: list[InputItem] = []
    seen: set[str] = set()

    def add(path: str, error: str | None = None) -> None:
        key = path if path == STDIN else os.path.abspath(path)
        if key in seen:
            return
        seen.add(key)
        stem = "stdin" if path == STDIN else Path(path).stem
        if error is None and exclude_suffix and stem.endswith(exclude_suffix):
            return
        items.append(InputItem(path, stem, error))

    for spec in specs:
        if spec == STDIN:
            add(STDIN)
        elif spec.startswith("@"):
            listfile = Path(spec[1:])
            try:
                lines = listfile.read_text().splitlines()
            except OSError as e:
                raise InputError(f"{listfile}: cannot read list file ({e.strerror})") from None
            for line in lines:
                line = line.strip()
                if line and not line.startswith("#"):
                    p = Path(line)
                    p = p if p.is_absolute() else listfile.parent / p
                    add(str(p), None if p.exists() else "file not found")
        elif os.path.isdir(spec):
            found = _dir_images(Path(spec))
            if not found:
                raise InputError(f"{spec}: no images ({', '.join(IMAGE_EXTS)}) in this directory")
            for p in found:
                add(str(p))
        elif os.path.exists(spec):
            add(spec)
        elif _is_glob(spec):
            found = sorted(p for p in globmod.glob(spec) if os.path.isfile(p))
            if not found:
                raise InputError(f"{spec}: the pattern matches no files")
            for p in found:
                add(p)
        else:
            add(spec, "file not found")
    if not items:
        raise InputError("no input images left to process")
    return items


def read_bytes(item: InputItem, stdin: BinaryIO | None = None) -> bytes:
    """The raw bytes of an input (stdin for ``-``)."""
    if item.is_stdin:
        stream = stdin or sys.stdin.buffer
        if hasattr(stream, "isatty") and stream.isatty():
            raise InputError("-: stdin is a terminal; pipe an image in (e.g. `cat photo.png | imgsynth ...`)")
        return stream.read()
    try:
        return Path(item.path).read_bytes()
    except IsADirectoryError:
        raise InputError(f"{item.path}: is a directory") from None
    except PermissionError:
        raise InputError(f"{item.path}: not readable (permission denied)") from None
    except FileNotFoundError:
        raise InputError(f"{item.path}: file not found") from None
    except OSError as e:  # EIO, ENAMETOOLONG, ELOOP, ...
        raise InputError(f"{item.path}: cannot read ({e.strerror or e})") from None
    except MemoryError:
        raise InputError(f"{item.path}: too large to read into memory") from None


def _to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    if mode == "F":
        arr = arr.astype(np.float64)
        finite = arr[np.isfinite(arr)]
        if finite.size and finite.max() <= 1.0 and finite.min() >= 0.0:
            arr = arr * 255.0
        return np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
    # I;16 and I: 16-bit range
    return np.clip(np.round(arr.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)


def _open_image(data: bytes, name: str, *, single_frame: bool) -> "Image.Image":
    """Open and fully load image bytes, turning every failure into one :class:`InputError`.

    The pixel limit (:func:`max_pixels`) is checked on the declared size before decoding;
    ``single_frame`` refuses animated images.
    """
    from PIL import Image

    if not data:
        raise InputError(f"{name}: empty file")
    Image.MAX_IMAGE_PIXELS = None  # our own check below is the guard, and it is an error
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels():
                raise InputError(
                    f"{name}: declared size {w}x{h} exceeds the {max_pixels():,}-pixel limit "
                    f"(set IMGSYNTH_MAX_PIXELS to allow it)"
                )
            if single_frame and getattr(img, "n_frames", 1) > 1:
                raise InputError(f"{name}: animated image with {img.n_frames} frames; extract one frame first")
            img.load()
    except InputError:
        raise
    except Image.UnidentifiedImageError:
        raise InputError(f"{name}: not a recognised image file (PNG, JPEG, WebP, BMP, TIFF)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"{name}: corrupt or truncated image data ({e})") from None
    return img


def decode_image(data: bytes, name: str) -> Decoded:
    """Decode image bytes into :class:`Decoded`, with the conversions in the module docs.

    Raises :class:`InputError` naming ``name`` for empty, non-image, truncated, animated or
    oversized inputs.
    """
    from PIL import ImageOps

    img = _open_image(data, name, single_frame=True)
    w, h = img.size
    try:
        img = ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{name}: corrupt or truncated image data ({e})") from None
    mode = img.mode
    if w == 0 or h == 0:
        raise InputError(f"{name}: image has zero size")
    alpha = None
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = _to_uint8(np.asarray(img), "F" if mode == "F" else "I")
        rgb = np.repeat(arr[..., None], 3, axis=2)
    else:
        if mode == "P":
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        elif mode == "PA":
            img = img.convert("RGBA")
        elif mode == "LA":
            la = np.asarray(img)
            alpha = la[..., 1].copy()
            img = img.getchannel(0)
        if img.mode == "RGBA":
            arr = np.asarray(img)
            alpha = arr[..., 3].copy()
            rgb = arr[..., :3].copy()
        else:
            rgb = np.asarray(img.convert("RGB")).copy()
    return Decoded(np.ascontiguousarray(rgb), alpha, mode)


def decode_mask(data: bytes, name: str, *, invert: bool = False) -> np.ndarray:
    """Decode a mask image into a (H, W) bool array, True = hole (white, value >= 128)."""
    img = _open_image(data, name, single_frame=True)
    if img.mode in ("L", "1") and not img.getexif().get(0x0112, 1) > 1:  # the usual mask: no RGB detour
        gray = np.asarray(img.convert("L") if img.mode == "1" else img)
        if gray.size == 0:
            raise InputError(f"{name}: image has zero size")
        hole = gray >= 128
        return ~hole if invert else hole
    dec = decode_image(data, name)
    gray = dec.rgb.astype(np.uint16).sum(axis=2) // 3
    if dec.alpha is not None:  # transparent mask pixels count as black (keep)
        gray = np.where(dec.alpha >= 128, gray, 0)
    hole = gray >= 128
    return ~hole if invert else hole


def encode_image(rgb: np.ndarray, fmt: str = "png", metadata: dict[str, Any] | None = None) -> bytes:
    """Encode (H, W, 3|1) uint8 into image bytes; PNG gets an ``imgsynth`` text chunk."""
    from PIL import Image, PngImagePlugin

    arr = rgb[..., 0] if rgb.ndim == 3 and rgb.shape[2] == 1 else rgb
    img = Image.fromarray(np.ascontiguousarray(arr))
    buf = io.BytesIO()
    fmt = fmt.lower().lstrip(".")
    fmt = {"jpg": "jpeg", "tif": "tiff"}.get(fmt, fmt)
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        if metadata:
            info.add_text("imgsynth", json.dumps(metadata, sort_keys=True))
        # zlib level 1: 3-4x faster than Pillow's default 6 for ~10% larger files (still smaller than
        # OpenCV's default PNG); on a batch of classical fills the encoder was half the time
        img.save(buf, format="PNG", pnginfo=info, compress_level=PNG_LEVEL)
    elif fmt == "jpeg":
        img.save(buf, format="JPEG", quality=95)
    elif fmt == "webp":
        img.save(buf, format="WEBP", lossless=True)
    else:
        img.save(buf, format=fmt.upper())
    return buf.getvalue()


def file_mode() -> int:
    """Permissions a plain ``open()`` would give a new file (0o666 minus the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _write_file(f: BinaryIO, data: bytes) -> None:
    """The one write of :func:`write_atomic` (tests replace it to simulate a full disk or an I/O error)."""
    f.write(data)
    f.flush()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename.

    Any OS error (full disk, I/O error, permission, name too long) becomes one
    :class:`OutputError` naming ``path``; the temp file is removed and ``path`` is left as it was.
    """
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a short temp name: a target name near NAME_MAX must fail on the target, not on the temp file
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".imgsynth-", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            _write_file(f, data)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None
    finally:
        if tmp is not None and os.path.lexists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass


def read_metadata(path: Path) -> dict[str, Any] | None:
    """The metadata imgsynth stored with an output (PNG text chunk or ``.json`` sidecar)."""
    from PIL import Image

    side = Path(str(path) + ".json")
    if side.exists():
        return json.loads(side.read_text())
    with Image.open(path) as img:
        text = getattr(img, "text", {}) or img.info
        return json.loads(text["imgsynth"]) if "imgsynth" in text else None


def _identity(path: str | os.PathLike) -> tuple[str, tuple[int, int] | None]:
    """(real path, (device, inode) when it exists): what makes two names the same file."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
        return real, (st.st_dev, st.st_ino)
    except (OSError, ValueError):
        return real, None


class Protected:
    """Files that must never be written over: compared by real path (symlinks, ``..``) and by
    device + inode (hard links), not by the spelling of their names."""

    def __init__(self, paths: Any = ()) -> None:
        self.real: set[str] = set()
        self.inodes: set[tuple[int, int]] = set()
        for p in paths:
            self.add(p)

    def add(self, path: str | os.PathLike) -> None:
        real, inode = _identity(path)
        self.real.add(real)
        if inode is not None:
            self.inodes.add(inode)

    def __contains__(self, path: object) -> bool:
        real, inode = _identity(path)  # type: ignore[arg-type]
        return real in self.real or (inode is not None and inode in self.inodes)

    def __bool__(self) -> bool:
        return bool(self.real)


@dataclass
class OutputPlan:
    """Where each result goes: ``mode`` is ``file``, ``dir`` or ``stdout``."""

    mode: str
    target: Path | None
    ext: str = ".png"
    overwrite: bool = False
    inputs: Protected = field(default_factory=Protected)

    def path_for(self, name: str) -> Path | None:
        """Output path for a result named ``name`` (a stem or ``seed0042``); None for stdout."""
        if self.mode == "stdout":
            return None
        if self.mode == "file":
            return self.target
        return self.target / f"{name}{self.ext}"

    def check(self, path: Path | None) -> str | None:
        """None if ``path`` may be written now, ``"skip"`` if done already; raises if forbidden."""
        if path is None:
            return None
        if path in self.inputs:
            raise OutputError(f"{path}: output would overwrite an input; choose another --output")
        try:
            exists = path.exists()
        except OSError as e:  # ENAMETOOLONG, EACCES on a parent, ...
            raise OutputError(f"{path}: cannot use this output path ({e.strerror or e})") from None
        if self.mode == "dir" and exists and not self.overwrite:
            return "skip"
        return None

    def all_done(self, names: list[str]) -> list[str] | None:
        """The outputs of ``names`` when every one of them exists already (a rerun of a finished
        batch: nothing to load or compute), else None. Only folders skip; duplicate names never do."""
        if self.mode != "dir" or self.overwrite or not names or len(set(names)) != len(names):
            return None
        paths = []
        for n in names:
            path = self.path_for(n)
            try:
                if self.check(path) != "skip":
                    return None
            except ImgsynthError:
                return None
            paths.append(str(path))
        return paths

    def write(self, name: str, rgb: np.ndarray, metadata: dict[str, Any], stdout: BinaryIO | None = None) -> Path | None:
        """Encode and write one result atomically (or to stdout); returns the path written."""
        path = self.path_for(name)
        if path is None:
            stream = stdout or sys.stdout.buffer
            stream.write(encode_image(rgb, "png", metadata))
            stream.flush()
            return None
        self.check(path)
        ext = path.suffix.lower()
        write_atomic(path, encode_image(rgb, ext, metadata))
        if ext != ".png":
            write_atomic(Path(str(path) + ".json"), json.dumps(metadata, indent=1, sort_keys=True).encode())
        return path


def plan_output(
    output: str | None,
    *,
    n_results: int,
    default: str,
    inputs: list[InputItem] = (),
    overwrite: bool = False,
    force_dir: bool = False,
    stdout: BinaryIO | None = None,
    protect: Any = (),
) -> OutputPlan:
    """Decide how results are written.

    ``-`` means stdout (one result only, refused on a terminal). A path with an image extension
    means one file (one result only). Anything else is a directory, created if needed.
    ``default`` is used when ``output`` is None. ``protect`` names more files that must never be
    written over (masks, instance maps): with the inputs, they are compared by real path and inode.
    """
    output = output if output is not None else default
    input_paths = Protected([i.path for i in inputs if not i.is_stdin and not i.error] + list(protect))
    if output == STDIN:
        stream = stdout or sys.stdout
        if n_results != 1:
            raise UsageError(f"-o - writes one PNG to stdout, but there are {n_results} results; use a directory")
        if hasattr(stream, "isatty") and stream.isatty():
            raise UsageError("refusing to write PNG bytes to a terminal; redirect stdout or use -o FILE")
        return OutputPlan("stdout", None, ".png", overwrite, input_paths)
    path = Path(output)
    ext = path.suffix.lower()
    if ext in WRITE_EXTS and not force_dir and not path.is_dir():
        if n_results != 1:
            raise UsageError(f"-o {output} is one file but there are {n_results} results; give a directory")
        if path in input_paths:
            raise OutputError(f"{path}: output would overwrite an input; choose another --output")
        _check_writable_dir(path.parent if str(path.parent) else Path("."))
        return OutputPlan("file", path, ext, True, input_paths)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: exists and is not a directory")
    _check_writable_dir(path, create=True)
    return OutputPlan("dir", path, ".png", overwrite, input_paths)


def mask_files(mask: str | None) -> list[str]:
    """The files a ``--mask FILE|DIR`` (or ``--instance FILE|DIR``) option may read: protected from
    being written over like the inputs."""
    if not mask or mask == STDIN:
        return []
    try:
        if os.path.isdir(mask):
            return [str(p) for p in Path(mask).iterdir() if p.suffix.lower() in IMAGE_EXTS]
    except OSError:
        return []
    return [mask]


def _check_writable_dir(path: Path, create: bool = False) -> None:
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise OutputError(f"{path}: output directory does not exist")
    except PermissionError:
        raise OutputError(f"{path}: cannot create the output directory (permission denied)") from None
    except OSError as e:
        raise OutputError(f"{path}: cannot create the output directory ({e.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: output directory is not writable")


def decode_label_map(data: bytes, name: str) -> tuple[np.ndarray | None, Decoded | None]:
    """Decode a label or instance map without colour conversion.

    Single-channel images (modes 1, L, P, I;16, I) give their raw values as (H, W) int32 (for a
    palette image, the palette *indices*). Colour images give ``(None, decoded)`` so the caller
    can map colours through a dataset palette.
    """
    img = _open_image(data, name, single_frame=False)
    if img.mode in ("1", "L", "P", "I;16", "I;16B", "I;16L", "I"):
        return np.asarray(img).astype(np.int32), None
    if img.mode == "F":
        raise InputError(f"{name}: float images cannot be label maps (use an integer PNG)")
    return None, decode_image(data, name)
