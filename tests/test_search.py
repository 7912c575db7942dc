"""The search loop's behaviour: interventions honoured in every mode, and each epoch's random
stream fixed by the seed (run directories: tests/test_history.py)."""
import numpy as np
import pytest
import torch
from conftest import TINY

import nas_core.search as search_module
from nas_core import Intervention, SearchConfig
from nas_core.ops import NONE, OPS, op_index
from nas_core.search import Search
SEP3, SKIP, MAXP = op_index("sep_conv_3x3"), op_index("skip_connect"), op_index("max_pool_3x3")
IV = Intervention(delete_edges=[0, 2], fix={1: "sep_conv_3x3"}, exclude={4: ["skip_connect", "max_pool_3x3"],
                                                                         3: ["none"]})


# ---- interventions --------------------------------------------------------------------

def count_calls(net):
    """Forward calls per (cell, edge, op), and of the whole network."""
    calls = np.zeros((len(net.cells), net.topology.n_edges, len(OPS)), dtype=int)
    passes = [0]
    for c, cell in enumerate(net.cells):
        for e, edge in enumerate(cell.edges):
            for k, op in enumerate(edge.ops):
                op.register_forward_hook(lambda *_, c=c, e=e, k=k: calls.__setitem__((c, e, k), calls[c, e, k] + 1))
    net.register_forward_hook(lambda *_: passes.__setitem__(0, passes[0] + 1))
    return calls, passes


@pytest.mark.parametrize("kw", [
    dict(algorithm="darts", probe_batches=1),
    dict(algorithm="snas"),
    dict(algorithm="dsnas"),
    dict(algorithm="gdas"),
    dict(algorithm="darts", level="bi", order=2),
    dict(random_sample=True),
], ids=["darts-probe", "snas", "dsnas", "gdas", "darts-bi-2nd", "random"])
def test_interventions_are_honoured(kw):
    s = Search(SearchConfig(**{**TINY, "arch_lr": 0.3, "intervention": IV, **kw}))
    calls, passes = count_calls(s.net)
    rec = s.run_epoch()
    assert passes[0] > 3
    # deleted edges never compute
    assert calls[:, [0, 2]].sum() == 0
    # the fixed edge runs its op in every forward pass of every cell, and nothing else
    assert np.all(calls[:, 1, SEP3] == passes[0])
    assert calls[:, 1].sum() == calls[:, 1, SEP3].sum()
    # excluded ops never run; the free edges do compute
    assert calls[:, 4, [SKIP, MAXP]].sum() == 0 and calls[:, 4].sum() > 0 and calls[:, 3].sum() > 0
    # probabilities: exact 1 / 0 where the intervention decides
    p = np.array(rec["probs"]["normal"])
    assert p[0, NONE] == p[2, NONE] == 1.0 and p[1, SEP3] == 1.0
    assert p[[0, 1, 2]].sum() == 3.0
    assert p[4, SKIP] == p[4, MAXP] == p[3, NONE] == 0.0
    assert rec["p_none"]["normal"][0] == rec["p_none"]["normal"][2] == 1.0
    # the derived cells respect it
    for derived in (rec["derived"]["normal"], rec["derived_darts"]["normal"]):
        assert derived[0] == derived[2] == "none" and derived[1] == "sep_conv_3x3"
        assert derived[4] not in ("skip_connect", "max_pool_3x3")
    assert rec["derived"]["normal"][3] != "none"  # none is excluded there
    assert 1 in rec["selected_edges"]["normal"] and 0 not in rec["selected_edges"]["normal"]
    # no cost is recorded for ops that never ran
    for split in rec["cost"]:
        count = np.array(rec["cost"][split]["count"])
        assert count[:, [0, 2], 1:].sum() == 0 and count[:, 4, [SKIP, MAXP]].sum() == 0
        mean = np.array(rec["cost"][split]["mean"], dtype=float)
        assert np.all(np.isnan(mean[:, [0, 2], 1:]))
        assert np.all(np.isfinite(mean[:, 1, SEP3]))


def test_intervention_probabilities_survive_alpha_updates():
    """Many large alpha steps (Adam, weight decay) move the free logits but never the
    intervention's exact 0 / 1 probabilities."""
    s = Search(SearchConfig(**{**TINY, "algorithm": "darts", "arch_lr": 0.5, "epochs": 3, "intervention": IV}))
    before = s.architecture()["probs"]["normal"]
    for _ in range(2):
        rec = s.run_epoch()
    p = np.array(rec["probs"]["normal"])
    assert np.abs(p[3:] - np.array(before)[3:]).max() > 1e-2  # alpha did move
    assert p[0, NONE] == p[2, NONE] == p[1, SEP3] == 1.0 and p[4, SKIP] == p[3, NONE] == 0.0


def test_every_edge_deleted_runs_with_zero_cost():
    """A cell with nothing to compute: zero output, zero cost, empty derived cell."""
    s = Search(SearchConfig(**{**TINY, "intervention": Intervention(delete_edges=range(5))}))
    calls, _ = count_calls(s.net)
    rec = s.run_epoch()
    assert calls.sum() == 0
    assert rec["n_selected"]["normal"] == 0 and (rec["width"]["normal"], rec["depth"]["normal"]) == (0, 0)
    mean = np.array(rec["cost"]["train"]["mean"], dtype=float)
    assert np.all(mean[..., NONE] == 0) and np.all(np.isnan(mean[..., 1:]))
    assert rec["train_loss"] == pytest.approx(np.log(4))  # zero features: uniform prediction over 4 classes


# ---- the random stream -------------------------------------------------------------------

def test_epoch_generator_fixes_the_random_stream():
    a = search_module.epoch_generator(0, 3)
    b = search_module.epoch_generator(0, 3)
    assert torch.equal(torch.rand(5, generator=a), torch.rand(5, generator=b))
    assert not torch.equal(torch.rand(5, generator=search_module.epoch_generator(0, 4)),
                           torch.rand(5, generator=search_module.epoch_generator(0, 3)))
    assert not torch.equal(torch.rand(5, generator=search_module.epoch_generator(1, 3)),
                           torch.rand(5, generator=search_module.epoch_generator(0, 3)))


# ---- measuring changes nothing -----------------------------------------------------------

def test_evaluate_and_probe_leave_every_buffer_as_it_was():
    """The held-out evaluation and the probe run BN with batch statistics; afterwards every
    buffer (running means and variances, and the integer batch counts) is exactly as before,
    and a block that changed the network's buffers is refused."""
    s = Search(SearchConfig(**{**TINY, "algorithm": "darts"}))
    s.run_epoch()
    before = {k: b.clone() for k, b in s.net.named_buffers()}
    s.evaluate(search_module.epoch_generator(0, 9))
    s.probe(2, search_module.epoch_generator(0, 9, stream=1))
    for k, b in s.net.named_buffers():
        assert torch.equal(before[k], b), k
    with search_module.kept_buffers(s.net):
        s.run_epoch()  # moves them
        assert any(not torch.equal(before[k], b) for k, b in s.net.named_buffers())
    assert all(torch.equal(before[k], b) for k, b in s.net.named_buffers())
    with pytest.raises(RuntimeError, match="buffers changed"):
        with search_module.kept_buffers(s.net):
            s.net.register_buffer("extra", torch.zeros(1))
