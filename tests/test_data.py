"""Per-batch augmentation, the faithful presets' settings, and the fields that
make them data."""
from __future__ import annotations

import pytest
import torch
from conftest import TINY, Stop, stop_after, without_time

from nas_core import SearchConfig, run
from nas_core.data import augment, load
from nas_core.presets import DEPARTURES, preset
from nas_core.search import Search, epoch_generator

def test_shift_moves_each_image_by_at_most_k_pixels():
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 3, 4] = 1.0  # one bright pixel
    out = augment(x, 2, False, torch.Generator().manual_seed(0))
    pos = out.flatten(1).argmax(1)
    dy, dx = pos // 8 - 3, pos % 8 - 4
    assert out.shape == x.shape and torch.all(out.sum((1, 2, 3)) == 1)
    assert dy.abs().max() <= 2 and dx.abs().max() <= 2
    assert len(set(zip(dy.tolist(), dx.tolist()))) > 10  # drawn per image, not one shift for the batch


def test_shift_equals_the_plain_slicing_definition():
    x = torch.randn(5, 3, 6, 7)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    out = augment(x, 1, False, g1)
    dy = torch.randint(0, 3, (5,), generator=g2)
    dx = torch.randint(0, 3, (5,), generator=g2)
    padded = torch.nn.functional.pad(x, (1,) * 4)
    plain = torch.stack([padded[i, :, dy[i]:dy[i] + 6, dx[i]:dx[i] + 7] for i in range(5)])
    assert torch.equal(out, plain)


def test_flip_only_where_the_data_allows_it():
    assert load(SearchConfig(data="synthetic")).flip_ok is False
    assert load(SearchConfig(data="digits")).flip_ok is False  # digits are not mirror-symmetric
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(200, 1, 1, 1)
    out = augment(x, 0, True, torch.Generator().manual_seed(0))
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert torch.all(flipped | (out == x).flatten(1).all(1)) and 60 < flipped.sum() < 140


def test_training_sees_a_fresh_view_of_every_batch_and_a_resume_the_same():
    s = Search(SearchConfig(**TINY, augment_shift=1))
    x = s.splits.train_x[:8]
    a, b = s.view(x, epoch_generator(0, 0)), s.view(x, epoch_generator(0, 1))
    assert not torch.equal(a, b) and torch.equal(a, s.view(x, epoch_generator(0, 0)))
    assert torch.equal(Search(SearchConfig(**TINY)).view(x, epoch_generator(0, 0)), x)  # off by default


def test_augmented_run_resumes_identically(tmp_path):
    config = SearchConfig(**{**TINY, "epochs": 3}, augment_shift=1)
    whole = run(config, tmp_path / "a", progress=False)
    with pytest.raises(Stop):
        run(config, tmp_path / "b", progress=False, callback=stop_after(1))
    resumed = run(config, tmp_path / "b", progress=False)
    assert without_time(resumed.records) == without_time(whole.records)
    # and the augmentation changed the run
    plain = run(config.replace(augment_shift=0), tmp_path / "c", progress=False)
    assert plain.records[-1]["alpha"] != whole.records[-1]["alpha"]


def test_alpha_starts_around_its_mean_and_its_gradient_is_clipped():
    s = Search(SearchConfig(**TINY, alpha_mean=1.0, alpha_init=0.01))
    a = s.alpha["normal"].detach()
    assert abs(a.mean().item() - 1.0) < 0.01 and a.std().item() < 0.02
    s = Search(SearchConfig(**TINY, algorithm="darts", arch_grad_clip=1e-6, arch_lr=0.1))
    x, y = s.splits.train_x[:16], s.splits.train_y[:16]
    s.train_step(x, y, torch.Generator().manual_seed(0), update_weights=False)
    assert s.alpha["normal"].grad.norm() <= 1e-6 * (1 + 1e-6)


def test_eval_size_evaluates_a_fixed_subset():
    s = Search(SearchConfig(**TINY, eval_size=10))
    sums = s.evaluate(torch.Generator().manual_seed(0)).sums
    assert sums["correct"][0] + sums["wrong"][0] == 10
    # the key of a config without the new field is what it was before the field existed
    assert SearchConfig(**TINY).key() == SearchConfig(**TINY, eval_size=None).key()
    assert SearchConfig(**TINY).key() != SearchConfig(**TINY, eval_size=10).key()


def test_faithful_presets_keep_the_papers_ratios():
    for name in ("growing", "width", "bilevel", "bilevel-control"):
        c = preset(name)
        assert c.arch_lr / c.lr == 3e-4 / 0.025 and c.logit_scale == 1.0 and c.augment_shift >= 1
        assert c.label_noise == 0
    g = preset("growing")
    assert (g.level, g.train_size, g.dsnas_reward_clamp, g.arch_grad_clip, g.alpha_mean) == \
        ("single", None, 5.0, 10.0, 1.0)
    assert preset("bilevel").level == "bi" and preset("bilevel").train_size == preset("bilevel-control").train_size
    # the ablation puts back one departure at a time
    for name, change in DEPARTURES.items():
        diff = {k for k, v in preset("growing", **change).to_dict().items() if g.to_dict()[k] != v}
        assert diff == set(change)


def test_fashion_mnist_from_idx_files_single_and_bilevel(tmp_path, monkeypatch):
    """data="fashion_mnist" reads the idx files (here small ones the test writes):
    single-level runs train on the training images and report the test images;
    bi-level runs split the training images in halves; ``resolution`` area-downsamples."""
    from test_idx import N_TEST, N_TRAIN, make_set

    monkeypatch.delenv("NAS_DATA_DIR", raising=False)
    make_set(tmp_path / "fm", seed=0)
    base = dict(data="fashion_mnist", data_dir=str(tmp_path / "fm"), batch_size=4)
    single = load(SearchConfig(**base))
    assert single.train_x.shape == (N_TRAIN, 1, 28, 28) and len(single.heldout_y) == N_TEST
    assert single.flip_ok  # clothes are mirror-symmetric; the authors flip
    bi = load(SearchConfig(**base, algorithm="darts", level="bi"))
    assert (len(bi.train_y), len(bi.heldout_y)) == (N_TRAIN // 2, N_TRAIN - N_TRAIN // 2)
    small = load(SearchConfig(**base, resolution=14))
    assert small.train_x.shape == (N_TRAIN, 1, 14, 14)
    assert abs(float(small.train_x.mean())) < 1e-5  # normalised with the training images' statistics


def test_fashion_mnist_without_its_files_is_a_clear_error(tmp_path, monkeypatch):
    from nas_core import idx

    monkeypatch.delenv("NAS_DATA_DIR", raising=False)
    monkeypatch.setattr(idx, "DEBIAN_DIR", str(tmp_path / "debian"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        Search(SearchConfig(data="fashion_mnist", data_dir=str(tmp_path / "nowhere")))
