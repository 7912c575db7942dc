"""Named run settings: the CPU defaults chosen by the calibration study (see
the book's chapter on scale and calibration, and ``sweeps/``), and the paper's
CIFAR-10 settings. Any explicitly given field overrides a preset."""
from __future__ import annotations

from .config import SearchConfig

_CPU = dict(data="digits", cells=4, channels=8, batch_size=32)

# The authors' alpha (their DSNAS and SNAS): alpha ~ N(1, 0.01^2), its
# gradient clipped to norm 10 (temperature 1 for SNAS).
_AUTHORS_ALPHA = dict(alpha_mean=1.0, alpha_init=0.01, arch_grad_clip=10.0, temperature=1.0)

# The faithful presets keep the paper's dimensionless quantities (see the book's
# chapter on the study): arch lr / weight lr = 3e-4 / 0.025, PyTorch's default
# classifier initialisation, a fresh augmented view of every batch (a shift of
# up to 1 pixel on 8x8 digits, as a 4-pixel crop on 32x32 CIFAR-10), and the
# authors' DSNAS options (reward clamp 5, alpha gradient clipped to norm 10,
# alpha ~ N(1, 0.01^2)). Single-level runs train weights and alpha on the
# same batch of the whole training set (898 images: 29 steps per epoch at batch
# 32, the last partial batch kept as the authors' DataLoader keeps it).
_FAITHFUL_DSNAS = dict(_CPU, algorithm="dsnas", level="single", arch_lr=3e-4, logit_scale=1.0, augment_shift=1,
                       dsnas_estimator="authors", dsnas_reward_clamp=5.0, epochs=300, **_AUTHORS_ALPHA)
# The authors' SNAS (Analysis/snas, --snas): their alpha, Z = softmax((alpha + Gumbel) / 1).
_FAITHFUL_SNAS = dict(_CPU, algorithm="snas", level="single", arch_lr=3e-4, logit_scale=1.0, augment_shift=1,
                      epochs=300, **_AUTHORS_ALPHA)

# Bi-level needs a real generalisation gap: a small clean train split (128
# images of the training set's first half, 4 steps per epoch) against its second
# half, alpha's (449 images, as the authors split CIFAR-10's training set); the
# gap is measured on every run. Three cells keep a DARTS run affordable on a CPU,
# and so does held-out accuracy on a fixed 256 of the held-out images (it took
# half of an epoch of 4 steps; alpha's held-out batches still come from the whole
# split). The single-level control trains on 128 images of the whole training set.
_FAITHFUL_DARTS = dict(_CPU, algorithm="darts", cells=3, arch_lr=3e-4, logit_scale=1.0, augment_shift=1,
                       train_size=128, eval_size=256, epochs=400)

# The first calibration's presets, kept for the ablation (each departure from
# the faithful presets is put back one at a time) and the calibration tables.
_LEVERS_DSNAS = dict(_CPU, algorithm="dsnas", logit_scale=20.0, arch_lr=1e-2, epochs=100)
_LEVERS_BILEVEL = dict(_CPU, algorithm="darts", cells=3, train_size=128, label_noise=0.5, logit_scale=10.0,
                       arch_lr=3e-2, epochs=60)

PRESETS: dict[str, dict] = {
    "growing": _FAITHFUL_DSNAS,
    "width": _FAITHFUL_DSNAS,
    "bilevel": dict(_FAITHFUL_DARTS, level="bi"),
    "bilevel-control": dict(_FAITHFUL_DARTS, level="single"),
    "snas": _FAITHFUL_SNAS,
    "levers-dsnas": _LEVERS_DSNAS,
    "levers-bilevel": dict(_LEVERS_BILEVEL, level="bi"),
    "levers-bilevel-control": dict(_LEVERS_BILEVEL, level="single"),
}

# The ablation: each departure of the first calibration, put back alone on the
# faithful preset.
DEPARTURES: dict[str, dict] = {
    "faithful": {},
    "arch lr x33": {"arch_lr": 1e-2},
    "logit scale x20": {"logit_scale": 20.0},
    "no augmentation": {"augment_shift": 0},
    "128 images, half the labels replaced": {"train_size": 128, "label_noise": 0.5},
}

# The paper's analysis settings (CIFAR-10, GPU), from the authors' code: 8
# all-normal cells of 16 channels, batch 96, random crop (pad 4) and flip of
# every batch, the whole train half for single-level runs; DSNAS with the
# authors' options.
_PAPER_NET = dict(data="cifar10", cells=8, channels=16, batch_size=96, arch_lr=3e-4, augment_shift=4)
_PAPER_DSNAS = dict(_PAPER_NET, algorithm="dsnas", epochs=150, dsnas_estimator="authors", dsnas_reward_clamp=5.0,
                    **_AUTHORS_ALPHA)
PAPER = {
    "growing": _PAPER_DSNAS,
    "width": _PAPER_DSNAS,
    "bilevel": dict(_PAPER_NET, algorithm="darts", level="bi", epochs=50),
    "bilevel-control": dict(_PAPER_NET, algorithm="darts", level="single", epochs=50),
    "snas": dict(_PAPER_NET, algorithm="snas", epochs=150, **_AUTHORS_ALPHA),
}


# Fashion-MNIST (Debian's dataset-fashion-mnist), the study's second rung of data:
# the faithful presets at batch 96 on the 60k training images (625 steps per
# epoch; the bi-level halves 313), area-downsampled to 14x14 so that the paper's
# 78k DSNAS steps fit one core (about 45 minutes alone, 78 beside another run,
# measured: `study.still_to_run` estimates from the study's runs); the crop's 4 pixels of 32
# become 2 of 14. Held-out accuracy on 2,000 fixed held-out images per epoch.
_FASHION = dict(data="fashion_mnist", resolution=14, batch_size=96, augment_shift=2, eval_size=2000)
FASHION = {
    "growing": dict(_FAITHFUL_DSNAS, **_FASHION, epochs=125),
    "width": dict(_FAITHFUL_DSNAS, **_FASHION, epochs=125),
    "bilevel": dict(_FAITHFUL_DARTS, **_FASHION, level="bi", train_size=None, epochs=42),
    "bilevel-control": dict(_FAITHFUL_DARTS, **_FASHION, level="single", train_size=30_000, epochs=42),
}
PROFILES = {"cpu": PRESETS, "paper": PAPER, "fashion": FASHION}


def preset(name: str, profile: str = "cpu", **overrides) -> SearchConfig:
    """The config of a named preset (``profile`` cpu: digits; fashion: Fashion-MNIST;
    paper: CIFAR-10 at the paper's size), with overrides."""
    table = PROFILES.get(profile)
    if table is None:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if name not in table:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(table)}")
    return SearchConfig.from_dict({**table[name], **overrides})


def seed_configs(name: str, profile: str, seeds, **fields) -> list[SearchConfig]:
    """One config per seed for a pattern notebook's parameters: the preset,
    with every field that is not None overriding it. Bad seeds or fields fail
    here, in the notebook's first cell after its parameters."""
    if isinstance(seeds, (int, str)) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of integers such as [0, 1, 2], got {seeds!r}")
    overrides = {k: v for k, v in fields.items() if v is not None}
    return [preset(name, profile, seed=seed, **overrides) for seed in seeds]
