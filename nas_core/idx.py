"""Fashion-MNIST read from its IDX files, plain or gzipped, wherever they already are.

The files are looked for in ``--data-dir``, then ``$NAS_DATA_DIR``, then where the
Debian package ``dataset-fashion-mnist`` installs them (gzipped, in
:data:`DEBIAN_DIR`), then torchvision's download folders; nothing is downloaded.
"""
from __future__ import annotations

import gzip
import os
import zlib
from math import prod
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# What `dpkg -c dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb` lists:
# the four files below, each gzipped (NAME.gz), in this directory.
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"

FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# Where torchvision.datasets.FashionMNIST(root) and the upstream repository put them under a root.
_SUBDIRS = ("FashionMNIST/raw", "fashion-mnist")
_UINT8 = 0x08
_SIDE = 28

CORRUPT_FIX = (
    "Fix: sudo apt-get install --reinstall dataset-fashion-mnist, or delete it and let torchvision "
    "download it again (torchvision.datasets.FashionMNIST(root, download=True))."
)
MISSING_FIX = (
    "Fix: sudo apt-get install dataset-fashion-mnist (Debian/Ubuntu; it installs them into "
    f"{DEBIAN_DIR}), or pass --data-dir pointing at torchvision's download "
    "(torchvision.datasets.FashionMNIST(root, download=True), then --data-dir root)."
)


def _corrupt(path: Path, why: str) -> ValueError:
    """One wording for every damaged file, so the fix is always named."""
    return ValueError(f"{path} is corrupt ({why}). {CORRUPT_FIX}")


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with gzip's magic (whatever its name says)."""
    data = path.read_bytes()
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as e:   # truncated stream, bad header, bad deflate data
        raise _corrupt(path, f"gzip cannot decompress it: {e}") from e


def read_idx(path) -> np.ndarray:
    """An IDX file (MNIST's format) as a uint8 array, checked against its header so damage is caught here."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise _corrupt(path, f"wrong magic {data[:4].hex()}, an IDX file starts with 0000")
    if data[2] != _UINT8:
        raise _corrupt(path, f"type code 0x{data[2]:02x}, only 0x08 (uint8) is read")
    header = 4 + 4 * data[3]
    if len(data) < header:
        raise _corrupt(path, f"truncated: {len(data)} bytes, shorter than its {header}-byte header")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", data[3], 4))
    if len(data) - header != prod(dims):
        raise _corrupt(path, f"{len(data) - header} data bytes, its header {dims} says {prod(dims)}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims).copy()


def _with_subdirs(root: str) -> list[Path]:
    """A root and the folders under it where torchvision or the upstream repository put the files."""
    root = Path(root).expanduser()
    return [root] + [root / s for s in _SUBDIRS]


def fashion_mnist_dirs(data_dir: str | None) -> list[Path]:
    """The directories searched, first match wins: explicit choices before system and download copies."""
    dirs = _with_subdirs(data_dir) if data_dir else []
    if os.environ.get("NAS_DATA_DIR"):
        dirs += _with_subdirs(os.environ["NAS_DATA_DIR"])
    dirs += [Path(DEBIAN_DIR), Path.home() / ".torch/datasets/FashionMNIST/raw", Path.cwd() / "data/FashionMNIST/raw"]
    return list(dict.fromkeys(dirs))


def _find(directory: Path, name: str) -> Path | None:
    """NAME or NAME.gz in ``directory`` (plain first: torchvision keeps both and plain reads faster)."""
    return next((p for p in (directory / name, directory / f"{name}.gz") if p.is_file()), None)


def _describe(directory: Path) -> str:
    """One line of the not-found message: why this directory did not do."""
    if not directory.is_dir():
        return f"  {directory} (no such directory)"
    missing = [n for n in FASHION_FILES.values() if _find(directory, n) is None]
    return f"  {directory} (missing {', '.join(missing)})"


def _locate(data_dir: str | None) -> dict[str, Path]:
    """The four files from the first directory that holds all of them (never a mix of two copies)."""
    dirs = fashion_mnist_dirs(data_dir)
    for d in dirs:
        found = {key: _find(d, name) for key, name in FASHION_FILES.items()}
        if all(found.values()):
            return found
    raise FileNotFoundError(
        "Fashion-MNIST not found: no directory holds all four files "
        f"({', '.join(FASHION_FILES.values())}, each plain or .gz). Looked in:\n"
        + "\n".join(_describe(d) for d in dirs) + f"\n{MISSING_FIX}"
    )


def _pair(images: Path, labels: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0, 1] and int64 labels, refused when they cannot belong together."""
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or x.shape[1:] != (_SIDE, _SIDE):
        raise _corrupt(images, f"shape {x.shape}, Fashion-MNIST images are (n, 28, 28)")
    if y.ndim != 1 or len(y) != len(x):
        raise _corrupt(labels, f"shape {y.shape}, expected ({len(x)},) to match the images in {images}")
    if y.size and y.max() > 9:
        raise _corrupt(labels, f"label {y.max()} outside 0..9")
    return torch.from_numpy(x).unsqueeze(1).float().div_(255), torch.from_numpy(y.astype(np.int64))


def load_fashion_mnist(data_dir: str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_x, train_y, test_x, test_y) from local files, so a search never waits on a download."""
    f = _locate(data_dir)
    train_x, train_y = _pair(f["train_images"], f["train_labels"])
    test_x, test_y = _pair(f["test_images"], f["test_labels"])
    return train_x, train_y, test_x, test_y


def downsample(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Area-averaged ``resolution`` x ``resolution`` images: cheaper searches that keep every pixel's mass."""
    height, width = x.shape[-2:]
    if resolution < 4 or resolution > min(height, width):
        raise ValueError(f"resolution {resolution} must be between 4 and the input's {height}x{width}")
    if (height, width) == (resolution, resolution):
        return x
    return F.adaptive_avg_pool2d(x, resolution)
