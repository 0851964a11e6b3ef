import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from imgsynth.errors import ConfigError, InputError
from imgsynth.training.config import DataConfig
from imgsynth.training.data import (
    BatchStream,
    FashionMNIST,
    FolderImages,
    PairedFolders,
    ResumableBatchSampler,
    build_dataset,
    draw_augment,
)


def write_idx(path, array, compress=True):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def fashion(tmp_path, n=10):
    imgs = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", imgs)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", imgs[:3], compress=False)
    return imgs


def test_fashion_mnist_padded_to_32(tmp_path):
    imgs = fashion(tmp_path)
    ds = FashionMNIST(DataConfig(source="fashion-mnist", path=str(tmp_path), resolution=32, fit="pad"))
    assert len(ds) == 10 and ds.channels == 1
    x = ds[3]["image"]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32
    expected = torch.from_numpy(imgs[3]).float() / 127.5 - 1
    torch.testing.assert_close(x[0, 2:30, 2:30], expected)
    assert (x[0, :2] == -1).all() and (x[0, :, 30:] == -1).all()


def test_fashion_mnist_test_split_and_rgb(tmp_path):
    fashion(tmp_path)
    ds = FashionMNIST(DataConfig(source="fashion-mnist", path=str(tmp_path), split="test",
                                 resolution=16, channels=3))
    assert len(ds) == 3 and ds[0]["image"].shape == (3, 16, 16)


def test_fashion_mnist_missing_files(tmp_path):
    with pytest.raises(InputError, match="apt-get install dataset-fashion-mnist"):
        FashionMNIST(DataConfig(source="fashion-mnist", path=str(tmp_path)))


def save(path, mode, size=(12, 10), value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], len(mode))
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="holds no images"):
        FolderImages(DataConfig(path=str(tmp_path / "empty")))
    with pytest.raises(InputError, match="does not exist"):
        FolderImages(DataConfig(path=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="needs data.path"):
        build_dataset(DataConfig(source="folder"))


def test_mixed_channels_error_and_conversion(tmp_path):
    save(tmp_path / "a.png", "L")
    save(tmp_path / "sub" / "b.png", "RGB")
    with pytest.raises(InputError, match=r"mixes channel counts \(1 channel\(s\): a.png, 3 channel\(s\): b.png\)"):
        FolderImages(DataConfig(path=str(tmp_path)))
    ds = FolderImages(DataConfig(path=str(tmp_path), channels=3, resolution=8))
    assert [tuple(ds[i]["image"].shape) for i in range(2)] == [(3, 8, 8), (3, 8, 8)]


def test_folder_resize_centre_crop(tmp_path):
    save(tmp_path / "wide.png", "RGB", size=(20, 10))
    ds = FolderImages(DataConfig(path=str(tmp_path), resolution=8))
    x = ds[0]["image"]
    assert x.shape == (3, 8, 8) and x.min() >= -1 and x.max() <= 1


def test_paired_folders_match_by_stem(tmp_path):
    for stem in ("x", "y"):
        save(tmp_path / "A" / f"{stem}.png", "RGB", value=1)
        save(tmp_path / "B" / f"{stem}.jpg", "RGB", value=1)
    save(tmp_path / "A" / "lonely.png", "RGB")
    cfg = DataConfig(source="paired", path=str(tmp_path / "A"), path_b=str(tmp_path / "B"))
    with pytest.raises(InputError, match=r"1 input\(s\) without a target \(e.g. 'lonely'\)"):
        PairedFolders(cfg)
    (tmp_path / "A" / "lonely.png").unlink()
    save(tmp_path / "B" / "extra.png", "RGB")
    with pytest.raises(InputError, match=r"1 target\(s\) without an input"):
        PairedFolders(cfg)


def test_paired_items_share_crop_and_flip(tmp_path):
    for stem in ("p", "q", "r"):
        save(tmp_path / "A" / f"{stem}.png", "RGB", size=(16, 16), value=ord(stem))
        save(tmp_path / "B" / f"{stem}.png", "RGB", size=(16, 16), value=ord(stem))
    cfg = DataConfig(source="paired", path=str(tmp_path / "A"), path_b=str(tmp_path / "B"),
                     resolution=8, load_size=12, hflip=True)
    ds = PairedFolders(cfg, seed=5)
    for key in [(0, 0), (1, 3), (2, 7)]:
        item = ds[key]
        assert item["a"].shape == (3, 8, 8)
        torch.testing.assert_close(item["a"], item["b"])


def test_augmentation_is_a_function_of_seed_epoch_index():
    cfg = DataConfig(resolution=8, load_size=12, hflip=True)
    draws = {draw_augment(cfg, 0, e, i) for e in range(4) for i in range(8)}
    assert len(draws) > 8  # crops and flips vary
    assert draw_augment(cfg, 0, 2, 3) == draw_augment(cfg, 0, 2, 3)
    assert draw_augment(DataConfig(resolution=8), 0, 1, 1).flip is False


def test_sampler_shards_and_resumes():
    full = ResumableBatchSampler(10, 2, shuffle=True, seed=3)
    epoch0 = list(full)
    assert len(epoch0) == 5 and sorted(i for b in epoch0 for i, _ in b) == list(range(10))
    full.load_state_dict({"epoch": 0, "batch": 3})
    assert list(full) == epoch0[3:]
    full.load_state_dict({"epoch": 1, "batch": 0})
    epoch1 = list(full)
    assert [i for b in epoch1 for i, _ in b] != [i for b in epoch0 for i, _ in b]
    assert all(e == 1 for b in epoch1 for _, e in b)
    r0 = ResumableBatchSampler(10, 2, rank=0, world_size=2, seed=3)
    r1 = ResumableBatchSampler(10, 2, rank=1, world_size=2, seed=3)
    i0 = {i for b in r0 for i, _ in b}
    i1 = {i for b in r1 for i, _ in b}
    assert not (i0 & i1) and len(i0 | i1) == 8  # 5 per rank, whole batches of 2 only
    with pytest.raises(ConfigError, match="fewer than one batch"):
        ResumableBatchSampler(3, 4)


def test_stream_crosses_epochs_and_restores(tmp_path):
    fashion(tmp_path)
    cfg = DataConfig(source="fashion-mnist", path=str(tmp_path), resolution=8, load_size=10, hflip=True,
                     batch_size=4)
    ds = FashionMNIST(cfg, seed=1)
    stream = BatchStream(ds, ResumableBatchSampler(len(ds), 4, seed=1))
    batches = [stream.next()["image"] for _ in range(5)]  # 2 batches per epoch
    assert stream.state_dict() == {"epoch": 2, "batch": 1}
    again = BatchStream(ds, ResumableBatchSampler(len(ds), 4, seed=1))
    again.load_state_dict({"epoch": 1, "batch": 1})
    torch.testing.assert_close(again.next()["image"], batches[3], rtol=0, atol=0)
    torch.testing.assert_close(again.next()["image"], batches[4], rtol=0, atol=0)


def test_workers_give_the_same_batches(tmp_path):
    fashion(tmp_path)
    cfg = DataConfig(source="fashion-mnist", path=str(tmp_path), resolution=8, load_size=12, hflip=True)
    ds = FashionMNIST(cfg, seed=2)
    a = BatchStream(ds, ResumableBatchSampler(len(ds), 3, seed=2), workers=0)
    b = BatchStream(ds, ResumableBatchSampler(len(ds), 3, seed=2), workers=2)
    for _ in range(4):
        torch.testing.assert_close(a.next()["image"], b.next()["image"], rtol=0, atol=0)


def test_masked_images_have_seeded_free_form_holes(tmp_path):
    for i in range(3):
        save(tmp_path / f"{i}.png", "RGB", size=(40, 40), value=i)
    cfg = DataConfig(source="masked", path=str(tmp_path), resolution=64)
    ds = build_dataset(cfg, seed=4)
    item = ds[(1, 0)]
    assert item["image"].shape == (3, 64, 64) and item["hole"].shape == (1, 64, 64)
    hole = item["hole"]
    assert set(hole.unique().tolist()) == {0.0, 1.0}
    assert 0.005 < hole.mean().item() < 0.9  # a hole, not the whole image
    torch.testing.assert_close(ds[(1, 0)]["hole"], hole, rtol=0, atol=0)
    assert not torch.equal(ds[(1, 1)]["hole"], hole)  # another epoch, another hole
    assert not torch.equal(ds[(2, 0)]["hole"], hole)


def test_label_maps_keep_their_ids(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(2):
        label = np.repeat(np.repeat(rng.integers(0, 5, (5, 5), dtype=np.uint8), 4, 0), 4, 1)  # 20x20 blocks
        (tmp_path / "A").mkdir(exist_ok=True)
        Image.fromarray(label, "L").save(tmp_path / "A" / f"{i}.png")
        inst = label.astype(np.uint16) * 1000 + i  # 16-bit PNG, like Cityscapes instance ids
        (tmp_path / "I").mkdir(exist_ok=True)
        Image.fromarray(inst).save(tmp_path / "I" / f"{i}.png")
        save(tmp_path / "B" / f"{i}.png", "RGB", size=(20, 20), value=i)
    cfg = DataConfig(source="paired", path=str(tmp_path / "A"), path_b=str(tmp_path / "B"),
                     path_inst=str(tmp_path / "I"), label_nc=5, resolution=16, load_size=18, hflip=True)
    ds = PairedFolders(cfg, seed=1)
    assert ds.channels_b == 3
    item = ds[(1, 2)]
    assert set(item) == {"label", "inst", "b"}
    assert item["label"].dtype == torch.int64 and item["label"].shape == (1, 16, 16)
    assert set(item["label"].unique().tolist()) <= set(range(5))  # nearest: no blended ids
    assert set((item["inst"] % 1000).unique().tolist()) == {1}
    torch.testing.assert_close(item["inst"] // 1000, item["label"])  # same crop and flip
    with pytest.raises(ConfigError, match="path_inst .* needs label-map inputs"):
        PairedFolders(DataConfig(source="paired", path=str(tmp_path / "A"), path_b=str(tmp_path / "B"),
                                 path_inst=str(tmp_path / "I")))
