"""Video input and output: frame folders, globs and video files in; frame folders, MP4 and GIF out.

Inputs (:func:`open_frames`):

* a folder of images: its images in *natural* order (``f2.png`` before ``f10.png``);
* a glob (``'clip/*_labelIds.png'``), natural order as well;
* a video file (:data:`VIDEO_EXTS`): decoded frame by frame with OpenCV (whose wheels carry FFmpeg),
  or with imageio-ffmpeg's FFmpeg when OpenCV cannot open it; an animated GIF with Pillow.
  Frames are streamed: one decoded frame in memory at a time.

Outputs (:class:`FrameSink`): a folder of PNG frames ``frame00000.png`` ... (each with its metadata
in the ``imgsynth`` text chunk), or one ``.mp4`` / ``.gif`` file. A container output is built from
PNG frames kept in a hidden work folder beside it (``.NAME.mp4.frames/``), then encoded into a temp
file and renamed: the output appears whole or not at all, an interrupted run resumes from the frames
already in the work folder, and memory never holds the clip. MP4 is H.264 (libx264) in yuv420p with
``+faststart``, the form every browser plays, written by the FFmpeg binary that the ``imageio-ffmpeg``
wheel ships (``pip install 'imgsynth[video]'``); yuv420p needs even sides, so an odd side is padded
by one replicated row or column (the metadata says so).
"""

from __future__ import annotations

import glob as globmod
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from imgsynth.engine import io
from imgsynth.errors import InputError, OutputError, UsageError

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".gif")
CONTAINER_EXTS = (".mp4", ".gif")
FRAME_NAME = "frame{:05d}"
INSTALL_HINT = "pip install 'imgsynth[video]' (imageio-ffmpeg, which ships its own FFmpeg)"


def is_video_file(path: str | os.PathLike) -> bool:
    """True for a video container, or an animated (multi-frame) GIF."""
    ext = Path(path).suffix.lower()
    if ext == ".gif":
        return os.path.isfile(path) and _gif_frames(Path(path)) > 1
    return ext in VIDEO_EXTS


def _gif_frames(path: Path) -> int:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(getattr(im, "n_frames", 1))
    except OSError:
        return 1


def natural_key(text: str) -> list[Any]:
    """Sort key putting ``f2`` before ``f10``: digit runs compare as numbers."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


@dataclass
class FrameSource:
    """The frames of one clip: either image files (``items``) or a video file (``video``)."""

    items: list[io.InputItem] | None = None
    video: Path | None = None
    count: int | None = None  # number of frames when known (a video's header may be approximate)
    fps: float | None = None

    @property
    def is_video(self) -> bool:
        return self.video is not None

    @property
    def name(self) -> str:
        return str(self.video) if self.video is not None else str(Path(self.items[0].path).parent)


def open_frames(spec: str) -> FrameSource:
    """Resolve INPUT (a folder, a glob or a video file) into a :class:`FrameSource`."""
    p = Path(spec)
    if p.is_dir():
        files = [f for f in p.iterdir() if f.is_file() and f.suffix.lower() in io.IMAGE_EXTS]
        if not files:
            raise InputError(f"{spec}: no frames ({', '.join(io.IMAGE_EXTS)}) in this folder")
        files.sort(key=lambda f: natural_key(f.name))
        return FrameSource(items=[io.InputItem(str(f), f.stem) for f in files], count=len(files))
    if p.is_file():
        if p.suffix.lower() in VIDEO_EXTS:
            count, fps = probe_video(p)
            return FrameSource(video=p, count=count, fps=fps)
        raise InputError(f"{spec}: not a video file ({', '.join(VIDEO_EXTS)}), a folder of frames or a glob")
    if any(ch in spec for ch in "*?["):
        files = sorted((Path(f) for f in globmod.glob(spec) if os.path.isfile(f)), key=lambda f: natural_key(str(f)))
        files = [f for f in files if f.suffix.lower() in io.IMAGE_EXTS]
        if not files:
            raise InputError(f"{spec}: the pattern matches no image files")
        return FrameSource(items=[io.InputItem(str(f), f.stem) for f in files], count=len(files))
    raise InputError(f"{spec}: file not found")


def probe_video(path: Path) -> tuple[int | None, float | None]:
    """(frame count, fps) from the container header (OpenCV), ``(None, None)`` when unknown."""
    if path.suffix.lower() == ".gif":
        from PIL import Image

        try:
            with Image.open(path) as im:
                dur = im.info.get("duration") or 0
                return int(getattr(im, "n_frames", 1)), (1000.0 / dur if dur else None)
        except OSError as e:
            raise InputError(f"{path}: not a readable GIF ({e})") from None
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return None, None
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0)
        return (n or None), (fps or None)
    finally:
        cap.release()


def iter_video(path: Path, start: int = 0) -> Iterator[np.ndarray]:
    """Decode a video file frame by frame as (H, W, 3) uint8 RGB, skipping the first ``start``."""
    if path.suffix.lower() == ".gif":
        from PIL import Image, ImageSequence

        try:
            with Image.open(path) as im:
                for i, frame in enumerate(ImageSequence.Iterator(im)):
                    if i >= start:
                        yield np.asarray(frame.convert("RGB")).copy()
        except OSError as e:
            raise InputError(f"{path}: corrupt GIF ({e})") from None
        return
    import cv2

    cap = cv2.VideoCapture(str(path))
    if cap.isOpened():
        try:
            i, got_any = 0, False
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                got_any = True
                if i >= start:
                    yield np.ascontiguousarray(bgr[..., ::-1])
                i += 1
            if got_any:
                return
        finally:
            cap.release()
    # OpenCV could not decode it: try imageio-ffmpeg's FFmpeg
    try:
        import imageio_ffmpeg
    except ImportError:
        raise InputError(f"{path}: OpenCV cannot decode this video; {INSTALL_HINT} may") from None
    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(reader)
        w, h = meta["size"]
        for i, raw in enumerate(reader):
            if i >= start:
                yield np.frombuffer(raw, np.uint8).reshape(h, w, 3).copy()
    except (OSError, RuntimeError, StopIteration) as e:
        raise InputError(f"{path}: cannot decode this video ({str(e).strip().splitlines()[-1] if str(e) else e})") from None


# ---------------------------------------------------------------- writing


def ffmpeg_exe() -> str:
    """The FFmpeg binary of the ``imageio-ffmpeg`` wheel (:class:`OutputError` when missing)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise OutputError(f"writing MP4 needs FFmpeg: {INSTALL_HINT}") from None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as e:
        raise OutputError(f"imageio-ffmpeg has no FFmpeg binary here ({e})") from None


def even_pad(frame: np.ndarray) -> np.ndarray:
    """Pad an odd height or width by one replicated row/column (yuv420p needs even sides)."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frame


def _rgb(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.shape[2] == 1:
        frame = np.repeat(frame, 3, axis=2)
    return np.ascontiguousarray(frame[..., :3], dtype=np.uint8)


def write_mp4(frames: Any, path: Path, fps: float, crf: int = 18) -> dict[str, Any]:
    """Encode an iterable of (H, W, 3) uint8 frames into an H.264 yuv420p MP4, atomically.

    Returns what was done (codec, pixel format, padding) for the output's metadata.
    """
    import imageio_ffmpeg  # noqa: F401  (ffmpeg_exe explains a missing install)

    exe = ffmpeg_exe()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".mp4")
    os.close(fd)
    proc = None
    info: dict[str, Any] = {"codec": "h264", "pix_fmt": "yuv420p", "fps": fps, "padded_to_even": False}
    try:
        for frame in frames:
            frame = _rgb(frame)
            h, w = frame.shape[:2]
            if proc is None:
                size = (w + w % 2, h + h % 2)
                info["padded_to_even"] = (w % 2 or h % 2) != 0
                cmd = [exe, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                       "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-", "-an",
                       "-vf", f"pad={size[0]}:{size[1]}:0:0", "-c:v", "libx264", "-preset", "medium",
                       "-crf", str(crf), "-pix_fmt", "yuv420p", "-movflags", "+faststart", tmp]
                if size == (w, h):
                    i = cmd.index("-vf")
                    del cmd[i : i + 2]
                proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
                first = (h, w)
            elif (h, w) != first:
                raise OutputError(f"{path}: frames change size ({first[1]}x{first[0]} then {w}x{h}); write a folder")
            try:
                proc.stdin.write(frame.tobytes())
            except BrokenPipeError:
                break
        if proc is None:
            raise OutputError(f"{path}: no frames to write")
        proc.stdin.close()
        err = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            raise OutputError(f"{path}: FFmpeg failed ({err.strip().splitlines()[-1] if err.strip() else 'no message'})")
        os.chmod(tmp, io.file_mode())
        os.replace(tmp, path)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if os.path.exists(tmp):
            os.unlink(tmp)
    return info


def write_gif(frames: Any, path: Path, fps: float) -> dict[str, Any]:
    """Write an animated GIF (looping, each frame with its own adaptive palette), atomically.

    Pillow needs every frame at save time; frames are kept palettised (1 byte a pixel).
    """
    from PIL import Image

    imgs = [Image.fromarray(_rgb(f)).quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
            for f in frames]
    if not imgs:
        raise OutputError(f"{path}: no frames to write")
    buf = __import__("io").BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:], duration=max(1, round(1000 / fps)),
                 loop=0, optimize=False, disposal=1)
    io.write_atomic(path, buf.getvalue())
    return {"codec": "gif", "fps": fps}


def stream_info(path: Path) -> dict[str, str]:
    """Codec and pixel format of a video's first stream, as FFmpeg reports them (``ffmpeg -i``)."""
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    m = re.search(r"Stream #\S+.*?Video: (\w+)[^,]*, (\w+)", out)
    if not m:
        raise InputError(f"{path}: FFmpeg finds no video stream")
    return {"codec": m.group(1), "pix_fmt": m.group(2)}


class FrameSink:
    """Where the frames of ``translate-video`` go: a folder, or an MP4/GIF built from a work folder.

    ``done()`` lists the frame indices already written (for resume); ``write(i, frame, meta)``
    stores frame ``i`` atomically; ``read(i)`` gives a written frame back (the history a recurrent
    model resumes from: PNG is lossless, so a resumed run continues exactly); ``finish(meta)``
    encodes a container output and removes the work folder.
    """

    def __init__(self, output: str, *, fps: float, overwrite: bool = False, inputs: list[str] = ()) -> None:
        self.target = Path(output)
        self.ext = self.target.suffix.lower()
        self.fps, self.overwrite = fps, overwrite
        if self.ext in io.WRITE_EXTS:
            raise UsageError(f"-o {output}: a clip is written as a folder of frames, NAME.mp4 or NAME.gif")
        if self.ext and self.ext not in CONTAINER_EXTS and not self.target.is_dir():
            raise UsageError(f"-o {output}: use a folder for frames, NAME.mp4 or NAME.gif")
        absin = {os.path.abspath(p) for p in inputs}
        if os.path.abspath(self.target) in absin:
            raise OutputError(f"{self.target}: output would overwrite an input; choose another --output")
        self.container = self.ext in CONTAINER_EXTS
        if self.container:
            if self.target.is_dir():
                raise OutputError(f"{self.target}: is a directory")
            self.folder = self.target.parent / f".{self.target.name}.frames"
            parent = self.target.parent if str(self.target.parent) else Path(".")
            if not parent.is_dir():
                raise OutputError(f"{parent}: output directory does not exist")
            if self.ext == ".mp4":
                ffmpeg_exe()  # fail before any work when FFmpeg is missing
        else:
            if self.target.exists() and not self.target.is_dir():
                raise OutputError(f"{self.target}: exists and is not a directory")
            self.folder = self.target
        self.already_complete = self.container and self.target.exists() and not overwrite
        if overwrite and self.folder.is_dir() and self.container:
            shutil.rmtree(self.folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{self.folder}: cannot create the output folder ({e.strerror})") from None
        if not os.access(self.folder, os.W_OK | os.X_OK):
            raise OutputError(f"{self.folder}: output folder is not writable")

    def path(self, i: int) -> Path:
        return self.folder / (FRAME_NAME.format(i) + ".png")

    def done(self) -> int:
        """How many leading frames are already written (0 with ``overwrite`` on a frame folder)."""
        if self.overwrite and not self.container:
            return 0
        n = 0
        while self.path(n).exists():
            n += 1
        return n

    def write(self, i: int, frame: np.ndarray, meta: dict[str, Any]) -> Path:
        path = self.path(i)
        io.write_atomic(path, io.encode_image(_rgb(frame), "png", meta))
        return path

    def read(self, i: int) -> np.ndarray:
        return io.decode_image(self.path(i).read_bytes(), str(self.path(i))).rgb

    def frames(self, n: int) -> Iterator[np.ndarray]:
        for i in range(n):
            yield self.read(i)

    def finish(self, n: int, meta: dict[str, Any]) -> dict[str, Any]:
        """Encode a container from the ``n`` frames written (a no-op for a folder); returns its info."""
        if not self.container:
            return {"frames": n}
        if self.ext == ".mp4":
            info = write_mp4(self.frames(n), self.target, self.fps)
        else:
            info = write_gif(self.frames(n), self.target, self.fps)
        info["frames"] = n
        io.write_atomic(Path(str(self.target) + ".json"),
                        json.dumps({**meta, **info}, indent=1, sort_keys=True).encode())
        shutil.rmtree(self.folder, ignore_errors=True)
        return info
