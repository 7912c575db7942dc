"""The core's maths, checked exactly (float64), and its behaviour on tiny data."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nas_core import Intervention, RunError, SearchConfig, load, run
from nas_core.cli import main as cli_main
from nas_core.cost import output_cost
from nas_core.ops import OPS, op_index
from nas_core.relax import Darts, Dsnas, Snas, probabilities
from nas_core.search import Search, epoch_generator
from nas_core.space import Topology, derive, derive_darts, width_depth

TINY = dict(data="synthetic", cells=3, channels=4, batch_size=16, epochs=2)


def tiny_search(bn_eps=None, **kw):
    """A float64 search; a tiny ``bn_eps`` makes BN (numerically) exactly scale invariant (its eps
    is what keeps the homogeneity identities from holding to the last digit)."""
    s = Search(SearchConfig(**{**TINY, **kw}))
    s.net.double()
    s.splits.train_x, s.splits.heldout_x = s.splits.train_x.double(), s.splits.heldout_x.double()
    if bn_eps is not None:
        for m in s.net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eps = bn_eps
    for a in s.alpha.values():
        a.data = a.data.double() + 0.3 * torch.randn(a.shape, generator=torch.Generator().manual_seed(1)).double()
    return s


def batch(s, n=16):
    return s.splits.train_x[:n].double(), s.splits.train_y[:n]


def loss_at(s, x, y, z, samples):
    return F.cross_entropy(s.net(x, z, {t: sm.active for t, sm in samples.items()}), y)


def forward_backward(s, samples, x, y):
    logits, z = s.forward(x, samples)
    loss = F.cross_entropy(logits, y)
    s.backward(loss, z)
    return logits, z, loss


def test_cost_equals_finite_difference():
    s = tiny_search(algorithm="darts")
    x, y = batch(s)
    samples = s.draw(torch.Generator().manual_seed(0))
    _, z, _ = forward_backward(s, samples, x, y)
    base = {t: v.detach().clone() for t, v in z.items()}
    h = 1e-6
    for cell, edge, op in [(0, 0, 4), (1, 3, 1), (2, 4, 7), (2, 1, 3), (0, 2, 2)]:
        def at(delta):
            zz = {t: v.clone() for t, v in base.items()}
            zz["normal"][cell, edge, op] += delta
            with torch.no_grad():
                return loss_at(s, x, y, zz, samples).item()
        fd = (at(h) - at(-h)) / (2 * h)
        assert z["normal"].grad[cell, edge, op].item() == pytest.approx(fd, rel=1e-5, abs=1e-9)


def alpha_grad_autograd(s, samples, x, y, z_of_alpha):
    """Alpha's gradient with Z built from alpha inside the graph (no cost view)."""
    alpha = s.alpha["normal"]
    alpha.grad = None
    zt = z_of_alpha(alpha).unsqueeze(0).expand(s.net.count("normal"), -1, -1)
    loss = loss_at(s, x, y, {"normal": zt}, samples)
    return torch.autograd.grad(loss, alpha)[0]


def cost_and_rule(s, samples, x, y):
    _, z, _ = forward_backward(s, samples, x, y)
    cost = z["normal"].grad.sum(0)
    alpha = s.alpha["normal"]
    rule = torch.autograd.grad(samples["normal"].alpha_loss(cost), alpha)[0]
    return cost, rule


def test_darts_alpha_gradient_matches_formula():
    s = tiny_search(algorithm="darts")
    x, y = batch(s)
    samples = s.draw(torch.Generator().manual_seed(0))
    cost, rule = cost_and_rule(s, samples, x, y)
    auto = alpha_grad_autograd(s, samples, x, y, lambda a: probabilities(a, s.allowed["normal"]))
    p = probabilities(s.alpha["normal"], s.allowed["normal"]).detach()
    formula = p * (cost - (p * cost).sum(-1, keepdim=True))
    torch.testing.assert_close(rule, auto, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(formula, auto, rtol=1e-7, atol=1e-10)


def test_snas_alpha_gradient_matches_formula():
    tau = 0.7
    s = tiny_search(algorithm="snas", temperature=tau)
    x, y = batch(s)
    g = torch.Generator().manual_seed(3)
    samples = s.draw(g)
    z_soft = samples["normal"].z
    noise = (z_soft.log() * tau - s.alpha["normal"].detach())  # recover alpha + Gumbel up to a constant per edge
    cost, rule = cost_and_rule(s, samples, x, y)
    auto = alpha_grad_autograd(s, samples, x, y, lambda a: F.softmax((a + noise) / tau, dim=-1))
    formula = z_soft * (cost - (z_soft * cost).sum(-1, keepdim=True)) / tau
    torch.testing.assert_close(rule, auto, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(formula, auto, rtol=1e-7, atol=1e-10)


def test_dsnas_gradient_and_only_sampled_ops_run():
    s = tiny_search(algorithm="dsnas")
    x, y = batch(s)
    samples = s.draw(torch.Generator().manual_seed(5))
    sm = samples["normal"]
    assert all(len(a) <= 1 for a in sm.active)
    index = sm.z.argmax(-1)
    assert torch.all(sm.z.sum(-1) == 1)
    cost, rule = cost_and_rule(s, samples, x, y)
    p = probabilities(s.alpha["normal"], s.allowed["normal"]).detach()
    onehot = F.one_hot(index, len(OPS)).double()
    c_s = cost.gather(1, index[:, None])
    torch.testing.assert_close(rule, c_s * (onehot - p), rtol=1e-7, atol=1e-10)
    # ops that did not run have zero cost
    mask = torch.zeros_like(cost, dtype=torch.bool)
    for e, ops in enumerate(sm.active):
        mask[e, ops] = True
    assert torch.all(cost[~mask] == 0)


def test_dsnas_authors_estimator_clamps():
    alpha = torch.randn(5, len(OPS), dtype=torch.float64, generator=torch.Generator().manual_seed(2)).requires_grad_()
    allowed = torch.ones(5, len(OPS), dtype=torch.bool)
    def grad(estimator, cost):
        sm = Dsnas(estimator).sample(alpha, allowed, torch.Generator().manual_seed(0))
        return torch.autograd.grad(sm.alpha_loss(torch.full((5, len(OPS)), cost, dtype=torch.float64)), alpha)[0]

    torch.testing.assert_close(grad("authors", 1e3), grad("authors", 5.0))
    assert not torch.allclose(grad("standard", 1e3), grad("standard", 5.0))
    assert not torch.allclose(grad("standard", 5.0), grad("authors", 5.0))


def node_inputs(s, x, samples, z):
    """Recompute the last cell's states to get each node x_j, with retained grads."""
    net = s.net
    states = {}

    def hook(cell, inputs, output):
        states["inputs"] = inputs

    handle = net.cells[-1].register_forward_hook(hook)
    logits = net(x, z, {t: sm.active for t, sm in samples.items()})
    handle.remove()
    return logits, states


def cell_nodes(cell, s0, s1, z, active):
    """The intermediate nodes of a cell, each a tensor in the graph."""
    states = [cell.pre0(s0), cell.pre1(s1)]
    for j in range(2, 2 + cell.topology.steps):
        node = sum(cell.edges[e](states[i], z[e], active[e]) for e, (i, t) in enumerate(cell.topology.edges)
                   if t == j and active[e])
        states.append(node)
    return states[2:]


def test_node_identity_none_cost_and_output_cost():
    exclude = {4: ["skip_connect"]}  # keep the last cell homogeneous (see the scale test)
    s = tiny_search(algorithm="darts", intervention=Intervention(exclude=exclude), bn_eps=1e-14)
    x, y = batch(s)
    samples = s.draw(torch.Generator().manual_seed(0))
    z = {"normal": samples["normal"].z.detach().unsqueeze(0).expand(3, -1, -1).clone().requires_grad_()}
    active = samples["normal"].active
    # run the network by hand so that the last cell's nodes stay in the graph
    net = s.net
    s0 = s1 = net.stem(x)
    for c in range(2):
        s0, s1 = s1, net.cells[c](s0, s1, z["normal"][c], active)
    nodes = cell_nodes(net.cells[2], s0, s1, z["normal"][2], active)
    for n in nodes:
        n.retain_grad()
    f = net.classifier(torch.cat(nodes, 1).mean(dim=(2, 3)))
    f.retain_grad()
    loss = F.cross_entropy(f, y)
    loss.backward()
    cost = z["normal"].grad
    zc = z["normal"].detach()
    top = s.topology
    for j, node in enumerate(nodes):
        weighted = sum((zc[2, e] * cost[2, e]).sum() for e, (_, t) in enumerate(top.edges) if t == j + 2)
        assert weighted.item() == pytest.approx((node.grad * node).sum().item(), rel=1e-8, abs=1e-12)
    assert torch.all(cost[..., op_index("none")] == 0)
    # output cost: per sample E_p f - f_y = loss - entropy; the batch mean is <dL/df, f>
    oc, l, ent = output_cost(f.detach(), y)
    torch.testing.assert_close(oc, l - ent)
    assert oc.mean().item() == pytest.approx((f.grad * f).sum().item(), rel=1e-8)
    # and it equals the last cell's Z-weighted cost (homogeneity of degree 1)
    assert (zc[2] * cost[2]).sum().item() == pytest.approx(oc.mean().item(), rel=1e-6)


def z_weighted_per_cell(s, x, y, train_mode=True):
    samples = s.draw(torch.Generator().manual_seed(0))
    s.net.train(train_mode)
    _, z, _ = forward_backward(s, samples, x, y)
    s.net.train()
    return (z["normal"].detach() * z["normal"].grad).sum(dim=(1, 2))


def test_scale_invariance_and_when_it_fails():
    no_skip = Intervention(exclude={4: ["skip_connect"]})
    s = tiny_search(algorithm="darts", intervention=no_skip, bn_eps=1e-14)
    x, y = batch(s)
    sums = z_weighted_per_cell(s, x, y)
    last = abs(sums[-1].item())
    assert last > 1e-4
    assert torch.all(sums[:-1].abs() < 1e-6 * last), sums
    # with BN's default eps the inner sums are small but no longer zero
    default_eps = tiny_search(algorithm="darts", intervention=no_skip)
    eps_sums = z_weighted_per_cell(default_eps, x, y)
    assert torch.all(eps_sums[:-1].abs() < 1e-2 * abs(eps_sums[-1].item())), eps_sums
    # BN in eval mode (running statistics) breaks the invariance of inner cells
    s.run_epoch()  # running statistics that differ from this batch's
    eval_sums = z_weighted_per_cell(s, x, y, train_mode=False)
    assert eval_sums[:-1].abs().max() > 1e-4, eval_sums
    # a skip_connect on the deep edge makes a cell's output non-homogeneous in its Z
    forced = tiny_search(algorithm="darts", intervention=Intervention(fix={4: "skip_connect"}), bn_eps=1e-14)
    fsum = z_weighted_per_cell(forced, *batch(forced))
    assert fsum[:-1].abs().max() > 1e-4, fsum


def test_interventions_are_honoured():
    iv = Intervention(delete_edges=[0, 2], fix={1: "sep_conv_3x3"}, exclude={4: ["skip_connect", "none"]})
    s = Search(SearchConfig(**{**TINY, "algorithm": "darts", "intervention": iv}))
    calls = {e: 0 for e in range(5)}
    cell = s.net.cells[0]
    for e in range(5):
        for op in cell.edges[e].ops:
            op.register_forward_hook(lambda *a, e=e: calls.__setitem__(e, calls[e] + 1))
    s.run_epoch()
    assert calls[0] == calls[2] == 0 and calls[1] > 0 and calls[4] > 0
    rec = s.architecture()
    p = np.array(rec["probs"]["normal"])
    assert p[0, 0] == p[2, 0] == 1.0 and p[1, op_index("sep_conv_3x3")] == 1.0
    assert p[4, op_index("skip_connect")] == 0 and p[4, 0] == 0
    d = rec["derived"]["normal"]
    assert d[0] == d[2] == "none" and d[1] == "sep_conv_3x3" and d[4] not in ("skip_connect", "none")
    # under DSNAS too, a fixed edge always runs its op
    ds = Search(SearchConfig(**{**TINY, "algorithm": "dsnas", "intervention": iv}))
    for _ in range(20):
        sm = ds.draw(torch.Generator().manual_seed(_))["normal"]
        assert sm.active[0] == [] and sm.active[2] == [] and sm.active[1] == [op_index("sep_conv_3x3")]


def test_space_derivation_and_wiring():
    top = Topology.named("minimal")
    assert top.n_edges == 5 and top.input_edges == (0, 1, 2, 3) and top.deep_edges == (4,)
    assert Topology.named("full").n_edges == 14
    assert width_depth(["sep_conv_3x3"] * 4 + ["none"], top) == (2, 2)
    assert width_depth(["sep_conv_3x3", "none", "none", "none", "skip_connect"], top) == (1, 3)
    assert width_depth(["none"] * 5, top) == (0, 0)
    p = np.full((5, 8), 0.1)
    p[:, 0] = 0.3
    p[3, 5] = 0.5
    assert derive(p) == ["none", "none", "none", "sep_conv_5x5", "none"]
    darts = derive_darts(p, top)
    assert darts[3] == "sep_conv_5x5" and sum(op != "none" for op in darts) == 4


def records_without_time(h):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in h.records]


def test_runs_are_deterministic_and_resume_exactly(tmp_path):
    c = SearchConfig(**{**TINY, "algorithm": "dsnas", "epochs": 4, "probe_batches": 1})
    a = run(c, tmp_path / "a", progress=False)
    b = run(c, tmp_path / "b", progress=False)
    assert records_without_time(a) == records_without_time(b)

    class Stop(Exception):
        pass

    def stop_after_two(record):
        if record["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        run(c, tmp_path / "c", progress=False, callback=stop_after_two)
    assert len(load(tmp_path / "c")) == 2
    # a torn line from a kill while writing is dropped, the epoch recomputed
    with open(tmp_path / "c" / "history.jsonl", "a") as fh:
        fh.write('{"epoch": 3, "alph')
    resumed = run(c, tmp_path / "c", progress=False)
    assert records_without_time(resumed) == records_without_time(a)


def test_finished_run_is_not_recomputed_nor_overwritten(tmp_path, monkeypatch):
    c = SearchConfig(**TINY)
    first = run(c, tmp_path, progress=False)
    monkeypatch.setattr(Search, "run_epoch", lambda self: pytest.fail("recomputed a finished run"))
    assert records_without_time(run(c, tmp_path, progress=False)) == records_without_time(first)
    with pytest.raises(RunError, match="another config"):
        run(c.replace(seed=1), tmp_path, progress=False)
    monkeypatch.undo()
    assert run(c.replace(seed=1), tmp_path, progress=False, overwrite=True).config.seed == 1


def test_corrupt_history_gives_a_clear_error(tmp_path):
    c = SearchConfig(**{**TINY, "epochs": 3})
    run(c, tmp_path, progress=False)
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    lines[0] = "garbage"
    (tmp_path / "history.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(RunError, match="line 1 is corrupt"):
        load(tmp_path)


@pytest.mark.parametrize("changes, field", [
    (dict(algorithm="enas"), "algorithm"),
    (dict(order=2), "order"),
    (dict(algorithm="dsnas", level="bi", order=2), "order"),
    (dict(epochs=-1), "epochs"),
    (dict(epochs=1.5), "epochs"),
    (dict(lr=0), "lr"),
    (dict(label_noise=1.5), "label_noise"),
    (dict(cell="3x3"), "cell"),
    (dict(network="resnet"), "network"),
    (dict(data="imagenet"), "data"),
    (dict(device="tpu"), "device"),
    (dict(intervention=Intervention(delete_edges=[5])), "edge 5 out of range"),
    (dict(intervention=Intervention(fix={1: "conv_7x7"})), "unknown op"),
    (dict(intervention=Intervention(exclude={0: list(OPS)})), "excludes every op"),
    (dict(intervention=Intervention(delete_edges=[1], fix={1: "sep_conv_3x3"})), "both deleted and fixed"),
])
def test_invalid_parameters_are_rejected(changes, field):
    with pytest.raises(ValueError, match=field):
        SearchConfig(**changes)


def test_unknown_field_and_missing_cifar():
    with pytest.raises(ValueError, match="unknown config field"):
        SearchConfig.from_dict({"epoch": 3})
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        Search(SearchConfig(data="cifar10", data_dir="/nonexistent"))


def test_bilevel_and_second_order_steps_move_alpha():
    for order in (1, 2):
        s = Search(SearchConfig(**{**TINY, "algorithm": "darts", "level": "bi", "order": order, "arch_lr": 0.1}))
        before = s.alpha["normal"].detach().clone()
        rec = s.run_epoch()
        assert not torch.equal(before, s.alpha["normal"].detach())
        assert "heldout" in rec["cost"] and "train" in rec["cost"]


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["search", "--data", "synthetic", "--cells", "2", "--channels", "4", "--epochs", "2", "--batch-size", "16",
            "--delete-edges", "0", "--fix-op", "1=sep_conv_3x3", "--exclude-op", "4=skip_connect+max_pool_3x3",
            "--out", str(out), "--no-progress"]
    assert cli_main(args) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["intervention"]["delete_edges"] == [0] and cfg["cells"] == 2
    assert cli_main(["show", str(out)]) == 0
    assert "derived cell" in capsys.readouterr().out
    assert cli_main(["stats", str(out)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert set(stats) == {"growing", "width", "bilevel"} and all("holds" in v for v in stats.values())
    assert cli_main(["search", "--algorithm", "foo", "--out", str(tmp_path / "x")]) == 2
    assert "choose one of" in capsys.readouterr().err
    assert cli_main(["search", "--preset", "growing", "--epochs", "0", "--out", str(tmp_path / "p"),
                     "--no-progress", "--data", "synthetic"]) == 0
