"""Search's parts share one state, and its small public methods for the chapters
(nas_core.search.search) change only what they say they change."""
import ast
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY

from nas_core import SearchConfig
from nas_core.search import Search

ROOT = Path(__file__).resolve().parents[1]


def test_the_parts_share_one_state():
    s = Search(SearchConfig(**TINY))
    assert s.passes.state is s.train_step.state is s.heldout_alpha_step.state is s.epochs.state is s.state
    s.params = list(s.params)  # written through to the state the steps read
    assert s.state.params is s.params


def test_examples_are_the_named_split():
    s = Search(SearchConfig(**TINY))
    x, y = s.examples("heldout", start=3, n=5)
    assert torch.equal(x, s.splits.heldout_x[3:8]) and torch.equal(y, s.splits.heldout_y[3:8])
    assert len(s.examples("train")[1]) == len(s.splits.train_y)
    with pytest.raises(KeyError):
        s.examples("test")


def test_set_alpha_and_batch_norm_eps():
    s = Search(SearchConfig(**TINY))
    leaf = s.alpha["normal"]
    s.set_alpha({"normal": torch.ones_like(leaf)})
    assert s.alpha["normal"] is leaf and torch.equal(leaf.detach(), torch.ones_like(leaf))  # Adam keeps its leaf
    s.set_batch_norm_eps(1e-14)
    assert {m.eps for m in s.net.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-14}


def test_measuring_with_chosen_z_changes_nothing():
    """logits at the leaves' Z equal the pass's; inside ``measuring`` BN's running
    statistics and the mode are restored, eval mode included."""
    s = Search(SearchConfig(**TINY))
    x, y = s.examples("train", n=16)
    samples = s.draw(torch.Generator().manual_seed(0))
    active = {t: sm.active for t, sm in samples.items()}
    before = {k: v.clone() for k, v in s.net.state_dict().items()}
    for train in (True, False):
        with s.measuring(train):
            assert s.net.training is train
            logits, z = s.forward(x, samples)
            again = s.logits(x, z, active)
            F.cross_entropy(again, y).backward()
        assert torch.equal(logits, again) and s.net.training
    assert all(torch.equal(before[k], v) for k, v in s.net.state_dict().items())
    assert torch.equal(s.z_for_cells({"normal": samples["normal"].z})["normal"], z["normal"].detach())


def test_estimate_bn_statistics_replaces_the_running_statistics_only():
    s = Search(SearchConfig(**TINY))
    samples = s.draw(torch.Generator().manual_seed(0))
    z, active = s.z_for_cells({t: sm.z for t, sm in samples.items()}), {t: sm.active for t, sm in samples.items()}
    bns = [m for m in s.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    momenta, before = [m.momentum for m in bns], [m.running_var.clone() for m in bns]
    weights = [p.detach().clone() for p in s.params]
    s.net.eval()
    s.estimate_bn_statistics([s.examples("train", 16 * i, 16)[0] for i in range(2)], z, active)
    assert not s.net.training and [m.momentum for m in bns] == momenta
    assert any(not torch.equal(m.running_var, b) for m, b in zip(bns, before))  # (the ops that ran)
    assert all(torch.equal(p, w) for p, w in zip(s.params, weights))


@pytest.mark.parametrize("chapter", ["unified_view", "mechanisms"])
def test_chapters_use_only_searchs_public_names(chapter):
    """No ``s.net``, ``s.splits`` or ``s._x`` in the chapters: what they need is a method of Search."""
    tree = ast.parse((ROOT / "nas_core" / "chapters" / f"{chapter}.py").read_text())
    reached = {n.attr for n in ast.walk(tree)
               if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in ("s", "trained")}
    assert not reached & {"net", "splits", "state", "passes", "epochs"}
    assert not [a for a in reached if a.startswith("_")]
