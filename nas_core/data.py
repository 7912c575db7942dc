"""Datasets and deterministic train / held-out splits, held as tensors in memory.

``digits`` (scikit-learn's 8x8 digits, shipped inside the package) is the
default; ``cifar10`` reads the python pickle batches from a local directory (or
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


@dataclass
class Splits:
    train_x: torch.Tensor
    train_y: torch.Tensor
    heldout_x: torch.Tensor
    heldout_y: torch.Tensor
    n_classes: int
    flip_ok: bool = False   # may images be mirrored left-right (CIFAR-10 yes, digits no)

    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]

    def to(self, device, dtype: torch.dtype | None = None):
        """The splits on ``device``, images in ``dtype`` if given (labels stay integers)."""
        x = [t.to(device, dtype) if dtype is not None else t.to(device) for t in (self.train_x, self.heldout_x)]
        y = [t.to(device) for t in (self.train_y, self.heldout_y)]
        return Splits(x[0], y[0], x[1], y[1], self.n_classes, self.flip_ok)


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


def _cifar10(data_dir: str | None):
    root = Path(data_dir or os.environ.get("NAS_DATA_DIR", "data")).expanduser()
    folder = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    files = [folder / f"data_batch_{i}" for i in range(1, 6)]
    if not all(f.is_file() for f in files):
        raise FileNotFoundError(f"{CIFAR_HELP} Looked in {folder}.")
    xs, ys = [], []
    for f in files:
        with open(f, "rb") as fh:
            batch = pickle.load(fh, encoding="latin1")
        xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.extend(batch["labels"])
    x = torch.tensor(np.concatenate(xs), dtype=torch.float32) / 255.0
    return x, torch.tensor(ys, dtype=torch.long), 10


def _shift(x, max_shift, g):
    """Translate each image by up to ``max_shift`` pixels, padding with zeros."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=g)
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def augment(x: torch.Tensor, max_shift: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """A fresh random view of a batch, as the authors' random crop (pad 4) and
    flip: each image translated by up to ``max_shift`` pixels (zero padding) and,
    if ``flip``, mirrored with probability 1/2. The draws come from
    ``generator`` (the epoch's stream), so a resumed run sees the same views."""
    n, _, h, w = x.shape
    if max_shift:
        k = max_shift
        dy = torch.randint(0, 2 * k + 1, (n,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * k + 1, (n,), generator=generator).to(x.device)
        padded = torch.nn.functional.pad(x, (k,) * 4)
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
    """Load and split ``config.data`` deterministically: half train, half held-out
    (as DARTS does), shuffled with a fixed seed; then apply the difficulty knobs
    from ``config.seed``."""
    if config.data == "digits":
        x, y, classes = _digits()
    elif config.data == "synthetic":
        x, y, classes = _synthetic()
    else:
        x, y, classes = _cifar10(config.data_dir)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True)
    x = (x - mean) / std
    half = len(y) // 2
    tx, ty, hx, hy = x[:half], y[:half], x[half:], y[half:]
    g = torch.Generator().manual_seed(10_007 * config.seed + 1)
    if config.train_size is not None:
        if config.train_size > len(ty):
            raise ValueError(f"train_size={config.train_size} exceeds the train split ({len(ty)} samples)")
        keep = torch.randperm(len(ty), generator=g)[: config.train_size]
        tx, ty = tx[keep], ty[keep]
    if config.shift:
        tx, hx = _shift(tx, config.shift, g), _shift(hx, config.shift, g)
    if config.noise:
        tx = tx + config.noise * torch.randn(tx.shape, generator=g)
        hx = hx + config.noise * torch.randn(hx.shape, generator=g)
    if config.label_noise:
        flip = torch.rand(len(ty), generator=g) < config.label_noise
        ty = torch.where(flip, torch.randint(0, classes, ty.shape, generator=g), ty)
    return Splits(tx.contiguous(), ty, hx.contiguous(), hy, classes, flip_ok=config.data == "cifar10")


def batches(x, y, batch_size, generator):
    """Shuffled mini-batches covering the split once; the last partial batch is
    dropped unless it is the only one (BN needs more than one sample)."""
    n = len(y)
    order = torch.randperm(n, generator=generator).to(x.device)
    stop = max(n - n % batch_size, min(n, batch_size)) if n >= 2 else n
    for i in range(0, stop, batch_size):
        idx = order[i:i + batch_size]
        if len(idx) > 1:
            yield x[idx], y[idx]
