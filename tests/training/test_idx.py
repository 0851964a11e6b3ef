"""IDX files: reading them (gzip or not) and refusing bad ones."""

import gzip
import struct

import numpy as np
import pytest

from imgsynth.errors import InputError
from imgsynth.training.idx import fashion_mnist_files, read_idx


def write_idx(path, array, compress=True):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def test_read_idx_round_trip(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", a)
    write_idx(tmp_path / "x", a, compress=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), a)
    np.testing.assert_array_equal(read_idx(tmp_path / "x"), a)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(InputError, match="bad magic"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 3)
    with pytest.raises(InputError, match="truncated"):
        read_idx(tmp_path / "short")
    with pytest.raises(InputError, match="does not exist"):
        read_idx(tmp_path / "missing.gz")


def test_fashion_mnist_files_prefers_gzip_and_names_the_package(tmp_path):
    a = np.zeros((1, 2, 2), np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", a, compress=False)
    assert fashion_mnist_files(tmp_path, "test") == tmp_path / "t10k-images-idx3-ubyte"
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", a)
    assert fashion_mnist_files(tmp_path, "test") == tmp_path / "t10k-images-idx3-ubyte.gz"
    with pytest.raises(InputError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist_files(tmp_path, "train")
