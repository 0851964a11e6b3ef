"""IDX files (the MNIST format) and where Fashion-MNIST keeps them.

Both :mod:`imgsynth.training.data` and :mod:`imgsynth.training.mosaics` read these files; this
module needs neither, so the two do not import each other.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from imgsynth.errors import InputError


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format; gzip-compressed or not) into a numpy array.

    Header: two zero bytes, a type code (0x08 = uint8), the number of dimensions, then each
    dimension as a big-endian uint32 (LeCun et al., MNIST database file formats).
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise InputError(f"IDX file {str(path)!r} does not exist") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read IDX file {str(path)!r}: {exc}") from None
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in dtypes:
        raise InputError(f"{str(path)!r} is not an IDX file (bad magic number)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise InputError(f"{str(path)!r} is truncated (header)")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(dtypes[raw[2]])
    count = int(np.prod(shape)) if shape else 1
    body = raw[4 + 4 * ndim :]
    if len(body) != count * dtype.itemsize:
        raise InputError(
            f"{str(path)!r} is truncated or padded: {len(body)} data bytes for shape {tuple(shape)}"
        )
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def fashion_mnist_files(root: str | Path, split: str) -> Path:
    """Path of the Fashion-MNIST image file of ``split`` (``train``/``test``) in ``root``."""
    stem = {"train": "train", "test": "t10k"}[split]
    root = Path(root)
    for name in (f"{stem}-images-idx3-ubyte.gz", f"{stem}-images-idx3-ubyte"):
        if (root / name).is_file():
            return root / name
    raise InputError(
        f"no Fashion-MNIST {split} images in {str(root)!r} (expected {stem}-images-idx3-ubyte.gz); "
        "on Debian: apt-get install dataset-fashion-mnist (files in /usr/share/datasets/fashion-mnist)"
    )
