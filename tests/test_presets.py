"""The named presets and their profiles (nas_core.presets)."""
from __future__ import annotations

import pytest

from nas_core.data import steps_per_epoch, weight_steps
from nas_core.presets import FASHION, PROFILES, preset, seed_configs


def test_the_fashion_profile_keeps_the_faithful_ratios_at_the_papers_batch():
    g, b, c = (preset(n, "fashion") for n in ("growing", "bilevel", "bilevel-control"))
    assert (g.data, g.resolution, g.batch_size, g.augment_shift) == ("fashion_mnist", 14, 96, 2)
    assert (g.arch_lr, g.lr, g.logit_scale) == (3e-4, 0.025, 1.0)
    assert steps_per_epoch(g) == 625 and g.epochs * 625 == 78_125       # the paper's 78k DSNAS steps
    assert steps_per_epoch(b) == steps_per_epoch(c) == 313              # 30k images: the halves, and the control's
    assert b.epochs * 313 >= 13_000 and (b.level, c.level) == ("bi", "single")
    assert (weight_steps(g), weight_steps(b)) == (78_125, 42 * 313)   # a whole run's weight steps
    assert set(FASHION) == set(PROFILES["cpu"]) & set(FASHION)


def test_an_unknown_profile_or_preset_names_the_choices():
    with pytest.raises(ValueError, match="cpu, paper, fashion"):
        preset("growing", "gpu")
    with pytest.raises(ValueError, match="unknown preset"):
        preset("snas", "fashion")
    with pytest.raises(ValueError, match="seeds must be"):
        seed_configs("growing", "cpu", 3)


def test_the_cli_takes_a_profile():
    from nas_core.cli import config_from_args

    import argparse
    ns = argparse.Namespace(preset="growing", profile="fashion", delete_edges=None, fix_op=None, exclude_op=None,
                            seed=3)
    c = config_from_args(ns)
    assert (c.data, c.seed, c.batch_size) == ("fashion_mnist", 3, 96)
    with pytest.raises(SystemExit, match="no 'fashion' profile"):
        config_from_args(argparse.Namespace(preset="snas", profile="fashion", delete_edges=None, fix_op=None,
                                            exclude_op=None))
