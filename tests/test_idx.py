"""nas_core.idx: IDX files written here (plain and gzipped) read back exactly, the
search order, and the errors that name the damaged file and the fix."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from nas_core import idx

N_TRAIN, N_TEST = 12, 6


def write_idx(path: Path, arr: np.ndarray) -> Path:
    """An IDX uint8 file, gzipped when its name ends in .gz (written independently of the reader)."""
    raw = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes() + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def make_set(directory: Path, seed: int, gz: bool = False) -> dict[str, np.ndarray]:
    """The four Fashion-MNIST files with random content in ``directory``; returns the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for key, name in idx.FASHION_FILES.items():
        write_idx(directory / (name + (".gz" if gz else "")), arrays[key])
    return arrays


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    """No $NAS_DATA_DIR, an empty Debian folder, home and cwd: only what a test writes is found."""
    monkeypatch.delenv("NAS_DATA_DIR", raising=False)
    monkeypatch.setattr(idx, "DEBIAN_DIR", str(tmp_path / "debian"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path


def test_read_idx_parses_header_big_endian(tmp_path):
    raw = b"\x00\x00\x08\x02" + b"\x00\x00\x00\x02" + b"\x00\x00\x00\x03" + bytes(range(6))
    (tmp_path / "f").write_bytes(raw)
    out = idx.read_idx(tmp_path / "f")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[0, 1, 2], [3, 4, 5]])


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_read_idx_round_trip(tmp_path, name):
    arr = np.random.default_rng(0).integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8)
    out = idx.read_idx(write_idx(tmp_path / name, arr))
    assert out.dtype == np.uint8 and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("gz", [False, True])
def test_load_round_trip(isolated, gz):
    arrays = make_set(isolated / "d", seed=1, gz=gz)
    train_x, train_y, test_x, test_y = idx.load_fashion_mnist(str(isolated / "d"))
    assert train_x.shape == (N_TRAIN, 1, 28, 28) and test_x.shape == (N_TEST, 1, 28, 28)
    assert train_x.dtype == torch.float32 and train_y.dtype == torch.int64
    assert torch.equal(train_x, torch.from_numpy(arrays["train_images"]).float().unsqueeze(1) / 255)
    assert torch.equal(test_x, torch.from_numpy(arrays["test_images"]).float().unsqueeze(1) / 255)
    assert torch.equal(train_y, torch.from_numpy(arrays["train_labels"]).long())
    assert torch.equal(test_y, torch.from_numpy(arrays["test_labels"]).long())


def test_dirs_order(isolated, monkeypatch):
    monkeypatch.setenv("NAS_DATA_DIR", str(isolated / "env"))
    dirs = idx.fashion_mnist_dirs(str(isolated / "given"))
    expected = [
        isolated / "given", isolated / "given/FashionMNIST/raw", isolated / "given/fashion-mnist",
        isolated / "env", isolated / "env/FashionMNIST/raw", isolated / "env/fashion-mnist",
        isolated / "debian", isolated / "home/.torch/datasets/FashionMNIST/raw", isolated / "cwd/data/FashionMNIST/raw",
    ]
    assert dirs == expected


def test_data_dir_before_env_before_debian(isolated, monkeypatch):
    given = make_set(isolated / "given", seed=1)
    env = make_set(isolated / "env", seed=2, gz=True)
    debian = make_set(isolated / "debian", seed=3, gz=True)
    monkeypatch.setenv("NAS_DATA_DIR", str(isolated / "env"))
    labels = lambda data_dir: idx.load_fashion_mnist(data_dir)[1].numpy()  # noqa: E731
    np.testing.assert_array_equal(labels(str(isolated / "given")), given["train_labels"])
    np.testing.assert_array_equal(labels(None), env["train_labels"])
    monkeypatch.delenv("NAS_DATA_DIR")
    np.testing.assert_array_equal(labels(None), debian["train_labels"])


def test_torchvision_layout_and_incomplete_dir_skipped(isolated, monkeypatch):
    partial = make_set(isolated / "root", seed=1)
    (isolated / "root" / idx.FASHION_FILES["test_labels"]).unlink()
    full = make_set(isolated / "root/FashionMNIST/raw", seed=2)
    assert not np.array_equal(partial["train_labels"], full["train_labels"])
    np.testing.assert_array_equal(idx.load_fashion_mnist(str(isolated / "root"))[1].numpy(), full["train_labels"])


def test_missing_names_dirs_and_fix(isolated):
    make_set(isolated / "d", seed=1)
    (isolated / "d" / idx.FASHION_FILES["train_images"]).unlink()
    with pytest.raises(FileNotFoundError) as err:
        idx.load_fashion_mnist(str(isolated / "d"))
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert str(isolated / "d") in msg and str(isolated / "debian") in msg
    assert "missing train-images-idx3-ubyte)" in msg


def _one_set_with(isolated: Path, key: str, content: bytes) -> Path:
    """A full set in isolated/d whose ``key`` file is replaced by ``content``; returns that file."""
    make_set(isolated / "d", seed=1)
    path = isolated / "d" / idx.FASHION_FILES[key]
    path.write_bytes(content)
    return path


def _assert_corrupt(isolated: Path, path: Path):
    with pytest.raises(ValueError) as err:
        idx.load_fashion_mnist(str(isolated / "d"))
    msg = str(err.value)
    assert str(path) in msg and "corrupt" in msg and "apt-get install --reinstall dataset-fashion-mnist" in msg


def test_truncated_plain(isolated):
    good = write_idx(isolated / "good", np.zeros((N_TRAIN, 28, 28), np.uint8)).read_bytes()
    _assert_corrupt(isolated, _one_set_with(isolated, "train_images", good[:-1]))


def test_truncated_gzip(isolated):
    gz = write_idx(isolated / "good.gz", np.zeros((N_TEST, 28, 28), np.uint8)).read_bytes()
    _assert_corrupt(isolated, _one_set_with(isolated, "test_images", gz[: len(gz) // 2]))


def test_truncated_header(isolated):
    _assert_corrupt(isolated, _one_set_with(isolated, "train_labels", b"\x00\x00\x08\x01\x00\x00"))


def test_extra_bytes(isolated):
    good = write_idx(isolated / "good", np.zeros(N_TEST, np.uint8)).read_bytes()
    _assert_corrupt(isolated, _one_set_with(isolated, "test_labels", good + b"\x00"))


def test_wrong_magic(isolated):
    good = write_idx(isolated / "good", np.zeros(N_TRAIN, np.uint8)).read_bytes()
    _assert_corrupt(isolated, _one_set_with(isolated, "train_labels", b"\x01" + good[1:]))


def test_label_count_mismatch(isolated):
    fewer = write_idx(isolated / "fewer", np.zeros(N_TRAIN - 1, np.uint8)).read_bytes()
    _assert_corrupt(isolated, _one_set_with(isolated, "train_labels", fewer))


def test_label_out_of_range(isolated):
    bad = write_idx(isolated / "bad", np.full(N_TEST, 10, np.uint8)).read_bytes()
    _assert_corrupt(isolated, _one_set_with(isolated, "test_labels", bad))


def test_downsample_is_2x2_block_mean():
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    blocks = x.reshape(5, 1, 14, 2, 14, 2).mean(dim=(3, 5))
    out = idx.downsample(x, 14)
    assert out.shape == (5, 1, 14, 14)
    torch.testing.assert_close(out, blocks, atol=1e-6, rtol=0)


def test_downsample_same_size_and_bounds():
    x = torch.rand(2, 1, 28, 28)
    assert idx.downsample(x, 28) is x
    for bad in (29, 3):
        with pytest.raises(ValueError, match=f"resolution {bad}"):
            idx.downsample(x, bad)
    assert idx.downsample(x, 4).shape == (2, 1, 4, 4)


DEBIAN_PRESENT = all(
    any((Path(idx.DEBIAN_DIR) / (n + s)).is_file() for s in ("", ".gz")) for n in idx.FASHION_FILES.values()
)


@pytest.mark.skipif(
    not DEBIAN_PRESENT,
    reason=f"real Fashion-MNIST not installed in {idx.DEBIAN_DIR} (sudo apt-get install dataset-fashion-mnist)",
)
def test_real_debian_files():
    train_x, train_y, test_x, test_y = idx.load_fashion_mnist(idx.DEBIAN_DIR)
    assert train_x.shape == (60000, 1, 28, 28) and test_x.shape == (10000, 1, 28, 28)
    assert torch.equal(torch.bincount(train_y), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(test_y), torch.full((10,), 1000))
    assert 0.0 <= float(train_x.min()) and float(train_x.max()) <= 1.0
