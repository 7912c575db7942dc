"""Datasets and deterministic train / held-out splits, held as tensors in memory.

``digits`` (scikit-learn's 8x8 digits, shipped inside the package) is the
default; ``fashion_mnist`` reads the four idx files (Debian's
``dataset-fashion-mnist``, or torchvision's download; :mod:`nas_core.idx`);
``cifar10`` reads the python pickle batches from a local directory (or
torchvision's copy); ``synthetic`` is a tiny made-up set for tests. The
difficulty knobs are applied deterministically from the seed.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .idx import downsample, load_fashion_mnist


@dataclass
class Splits:
    train_x: torch.Tensor
    train_y: torch.Tensor
    heldout_x: torch.Tensor
    heldout_y: torch.Tensor
    n_classes: int
    flip_ok: bool = False   # may images be mirrored left-right (CIFAR-10 yes, digits no)
    black: torch.Tensor | None = None  # per channel, a raw pixel of 0 after normalising: the crop's border

    @property
    def border(self) -> torch.Tensor | float:
        """The value a padded crop's border takes: black in raw pixels, as the authors
        pad before normalising (0 where the splits carry no ``black``)."""
        return 0.0 if self.black is None else self.black

    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]

    def to(self, device, dtype: torch.dtype | None = None):
        """The splits on ``device``, images in ``dtype`` if given (labels stay integers)."""
        x = [t.to(device, dtype) if dtype is not None else t.to(device) for t in (self.train_x, self.heldout_x)]
        y = [t.to(device) for t in (self.train_y, self.heldout_y)]
        black = None if self.black is None else (self.black.to(device, dtype) if dtype else self.black.to(device))
        return Splits(x[0], y[0], x[1], y[1], self.n_classes, self.flip_ok, black)


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(d.target, dtype=torch.long), 10


def _synthetic(n=192, classes=4, size=6, seed=1234):
    """Class templates plus noise: learnable in a few steps, for tests."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(classes, 1, size, size, generator=g)
    y = torch.arange(n) % classes
    x = templates[y] + 0.5 * torch.randn(n, 1, size, size, generator=g)
    return x, y, classes


CIFAR_HELP = (
    "CIFAR-10 not found. Download the python version (cifar-10-python.tar.gz) and extract it so that "
    "DATA_DIR/cifar-10-batches-py/data_batch_1 exists, then pass --data-dir DATA_DIR "
    "(or set NAS_DATA_DIR)."
)


def _cifar_batches(files):
    xs, ys = [], []
    for f in files:
        with open(f, "rb") as fh:
            batch = pickle.load(fh, encoding="latin1")
        xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.extend(batch["labels"])
    return torch.tensor(np.concatenate(xs), dtype=torch.float32) / 255.0, torch.tensor(ys, dtype=torch.long)


def _cifar10(data_dir: str | None):
    """CIFAR-10's 50k training images and its 10k test images."""
    root = Path(data_dir or os.environ.get("NAS_DATA_DIR", "data")).expanduser()
    folder = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    train = [folder / f"data_batch_{i}" for i in range(1, 6)]
    test = [folder / "test_batch"]
    if not all(f.is_file() for f in train + test):
        raise FileNotFoundError(f"{CIFAR_HELP} Looked in {folder}.")
    return (*_cifar_batches(train), *_cifar_batches(test), 10)


def _halves(x, y, classes):
    """A dataset without an official test set (digits, synthetic): a fixed shuffle,
    the first half its training images, the second half its test images."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    half = len(y) // 2
    return x[:half], y[:half], x[half:], y[half:], classes


def _pad(x, k, value):
    """``x`` padded by ``k`` pixels on each side with ``value`` (a number, or one per channel)."""
    if isinstance(value, torch.Tensor):
        padded = torch.nn.functional.pad(x - value, (k,) * 4)
        return padded + value
    return torch.nn.functional.pad(x, (k,) * 4, value=value)


def _shift(x, max_shift, g, border=0.0):
    """Translate each image by up to ``max_shift`` pixels, padding with ``border``."""
    n, _, h, w = x.shape
    padded = _pad(x, max_shift, border)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=g)
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def augment(x: torch.Tensor, max_shift: int, flip: bool, generator: torch.Generator,
            border: torch.Tensor | float = 0.0) -> torch.Tensor:
    """A fresh random view of a batch, as the authors' random crop (pad 4) and
    flip: each image translated by up to ``max_shift`` pixels and, if ``flip``,
    mirrored with probability 1/2. The border is ``border`` (per channel): the
    authors pad raw images with zeros before normalising, so pass the
    normalised black (:attr:`Splits.border`). The draws come from
    ``generator`` (the epoch's stream), so a resumed run sees the same views."""
    n, _, h, w = x.shape
    if max_shift:
        k = max_shift
        dy = torch.randint(0, 2 * k + 1, (n,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * k + 1, (n,), generator=generator).to(x.device)
        padded = _pad(x, k, border.to(x) if isinstance(border, torch.Tensor) else border)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chan, rows, cols]
    if flip:
        mirror = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
    return x


def load(config) -> Splits:
    """The run's two splits, as the authors' code makes them.

    Single-level runs (DSNAS, SNAS) train on the dataset's whole training set and
    report held-out accuracy on its test set; bi-level runs (DARTS) split the
    training set in two fixed halves, the weights' and alpha's. ``train_size``
    keeps a random subset of the weights' split. Images are normalised with the
    training set's mean and std; the difficulty knobs come from ``config.seed``."""
    if config.data == "digits":
        tx, ty, vx, vy, classes = _halves(*_digits())
    elif config.data == "synthetic":
        tx, ty, vx, vy, classes = _halves(*_synthetic())
    elif config.data == "fashion_mnist":
        tx, ty, vx, vy, classes = (*load_fashion_mnist(config.data_dir), 10)
    else:
        tx, ty, vx, vy, classes = _cifar10(config.data_dir)
    if config.resolution is not None:
        tx, vx = downsample(tx, config.resolution), downsample(vx, config.resolution)
    mean = tx.mean(dim=(0, 2, 3), keepdim=True)
    std = tx.std(dim=(0, 2, 3), keepdim=True)
    black = (-mean / std)[0]  # a raw 0 (black) after normalising, per channel: (C, 1, 1)
    tx, vx = (tx - mean) / std, (vx - mean) / std
    if config.level == "bi":
        order = torch.randperm(len(ty), generator=torch.Generator().manual_seed(0))
        half = len(ty) // 2
        tx, ty, hx, hy = tx[order[:half]], ty[order[:half]], tx[order[half:]], ty[order[half:]]
    else:
        hx, hy = vx, vy
    g = torch.Generator().manual_seed(10_007 * config.seed + 1)
    if config.train_size is not None:
        if config.train_size > len(ty):
            raise ValueError(f"train_size={config.train_size} exceeds the train split ({len(ty)} samples)")
        keep = torch.randperm(len(ty), generator=g)[: config.train_size]
        tx, ty = tx[keep], ty[keep]
    if config.shift:
        tx, hx = _shift(tx, config.shift, g, black), _shift(hx, config.shift, g, black)
    if config.noise:
        tx = tx + config.noise * torch.randn(tx.shape, generator=g)
        hx = hx + config.noise * torch.randn(hx.shape, generator=g)
    if config.label_noise:
        flip = torch.rand(len(ty), generator=g) < config.label_noise
        ty = torch.where(flip, torch.randint(0, classes, ty.shape, generator=g), ty)
    # CIFAR-10's and Fashion-MNIST's classes are mirror-symmetric (the authors flip); digits' are not
    return Splits(tx.contiguous(), ty, hx.contiguous(), hy, classes, flip_ok=config.data in FLIPPED,
                  black=black.contiguous())


FLIPPED = ("cifar10", "fashion_mnist")

#: Training images of each dataset (digits and synthetic: the first half of a fixed shuffle).
TRAIN_IMAGES = {"digits": 898, "synthetic": 96, "cifar10": 50_000, "fashion_mnist": 60_000}


def weight_split_size(config) -> int:
    """How many images the weights train on in a run of ``config`` (see :func:`load`):
    the training set, its first half under bi-level, at most ``train_size``."""
    n = TRAIN_IMAGES[config.data] // (2 if config.level == "bi" else 1)
    return min(n, config.train_size or n)


def steps_per_epoch(config) -> int:
    """Weight steps in one epoch of ``config``."""
    return n_batches(weight_split_size(config), config.batch_size)


def weight_steps(config) -> int:
    """Weight steps in a whole run of ``config``."""
    return config.epochs * steps_per_epoch(config)


def n_batches(n: int, batch_size: int) -> int:
    """How many batches :func:`batches` makes of ``n`` samples: the last partial
    batch is kept, as PyTorch's DataLoader keeps it in the authors' code, unless it
    holds a single sample (BN needs two)."""
    full, rest = divmod(n, batch_size)
    return full + (rest > 1)


def batches(x, y, batch_size, generator):
    """Shuffled mini-batches covering the split once (see :func:`n_batches`)."""
    n = len(y)
    order = torch.randperm(n, generator=generator).to(x.device)
    for i in range(n_batches(n, batch_size)):
        idx = order[i * batch_size:(i + 1) * batch_size]
        yield x[idx], y[idx]


def random_batch(x, y, batch_size, generator):
    """A fresh random batch drawn without replacement, as the authors' bi-level step
    takes ``next(iter(valid_queue))`` from a shuffling loader at every step."""
    idx = torch.randperm(len(y), generator=generator)[:batch_size].to(x.device)
    return x[idx], y[idx]
