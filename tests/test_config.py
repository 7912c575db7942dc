"""Config validation (every invalid parameter is refused before any compute, with a ValueError
that names the field) and config identity (keys, coercion, round trips). The cell space is
tested in test_space.py."""
import dataclasses
import re

import numpy as np
import pytest
import torch

from nas_core import Intervention, SearchConfig
from nas_core.config import parse_cell
from nas_core.ops import NONE, OPS, op_index
from nas_core.search import Search
from nas_core.space import Topology

torch.set_num_threads(1)


# ---- 9. validation -----------------------------------------------------------------------

INVALID = [
    (dict(algorithm="enas"), r"algorithm"),
    (dict(level="tri"), r"level"),
    (dict(order=3), r"order"),
    (dict(order=2), r"order"),  # dsnas
    (dict(algorithm="dsnas", level="bi", order=2), r"order"),
    (dict(algorithm="darts", level="single", order=2), r"order"),
    (dict(network="resnet"), r"network"),
    (dict(cells=0), r"cells"),
    (dict(network="standard", cells=2), r"cells"),
    (dict(channels=0), r"channels"),
    (dict(stem_multiplier=0), r"stem_multiplier"),
    (dict(batch_size=0), r"batch_size"),
    (dict(batch_size=1), r"batch_size"),  # BN needs 2 samples: such a run would train on nothing
    (dict(epochs=-1), r"epochs"),
    (dict(epochs=1.5), r"epochs"),
    (dict(epochs="many"), r"epochs"),
    (dict(epochs=True), r"epochs"),
    (dict(seed=0.5), r"seed"),
    (dict(lr=0), r"\blr\b"),
    (dict(lr=-0.1), r"\blr\b"),
    (dict(lr_min=-1), r"lr_min"),
    (dict(momentum=-0.5), r"momentum"),
    (dict(weight_decay=-1), r"weight_decay"),
    (dict(grad_clip=-1), r"grad_clip"),
    (dict(arch_lr=-1), r"arch_lr"),
    (dict(arch_weight_decay=-1), r"arch_weight_decay"),
    (dict(arch_beta1=1.0), r"arch_beta1"),
    (dict(alpha_init=-1), r"alpha_init"),
    (dict(logit_scale=-2), r"logit_scale"),
    (dict(temperature=0), r"temperature"),
    (dict(temperature_min=0), r"temperature_min"),
    (dict(temperature_min=2.0), r"temperature_min"),
    (dict(dsnas_estimator="reinforce"), r"dsnas_estimator"),
    (dict(probe_batches=-1), r"probe_batches"),
    (dict(data="imagenet"), r"data"),
    (dict(noise=-0.1), r"noise"),
    (dict(shift=-1), r"shift"),
    (dict(label_noise=1.5), r"label_noise"),
    (dict(label_noise=-0.1), r"label_noise"),
    (dict(train_size=0), r"train_size"),
    (dict(train_size=1), r"train_size"),
    (dict(device="tpu"), r"device"),
    (dict(record_costs="no"), r"record_costs"),  # a truthy string would silently mean True
    (dict(random_sample=1), r"random_sample"),
    (dict(cell="3x3"), r"cell"),
    (dict(cell="2/2/2"), r"cell"),
    (dict(cell="5/6"), r"cell"),
    (dict(cell="0/1"), r"cell"),
    (dict(intervention=Intervention(delete_edges=[5])), r"delete_edges.*edge 5 out of range"),
    (dict(intervention=Intervention(delete_edges=[-1])), r"delete_edges.*out of range"),
    (dict(cell="full", intervention=Intervention(delete_edges=[14])), r"delete_edges.*edge 14"),
    (dict(intervention=Intervention(fix={7: "sep_conv_3x3"})), r"fix.*edge 7"),
    (dict(intervention=Intervention(fix={1: "conv_7x7"})), r"fix.*conv_7x7"),
    (dict(intervention=Intervention(exclude={4: ["conv"]})), r"exclude.*'conv'"),
    (dict(intervention=Intervention(exclude={9: ["none"]})), r"exclude.*edge 9"),
    (dict(intervention=Intervention(exclude={0: list(OPS)})), r"exclude.*every op"),
    (dict(intervention=Intervention(delete_edges=[1], fix={1: "sep_conv_3x3"})), r"both deleted and fixed"),
    (dict(intervention=Intervention(fix={1: "none"}, exclude={1: ["none"]})), r"fixed to an op it also excludes"),
    (dict(intervention=dict(fix=[(1, "sep_conv_3x3"), (1, "skip_connect")])), r"fix.*edge 1"),
    (dict(intervention=dict(delet_edges=[0])), r"delet_edges"),
    (dict(intervention=dict(delete_edges=["a"])), r"delete_edges"),
    (dict(intervention=dict(fix="1")), r"fix"),
    (dict(intervention=[0, 2]), r"intervention"),
]


@pytest.mark.parametrize("changes, field", INVALID, ids=[f"{i:02d}-" + re.sub(r"\W+", "_", f)[:32] for i, (_, f)
                                                          in enumerate(INVALID)])
def test_invalid_parameter_is_rejected_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        SearchConfig(**changes)
    # the same through from_dict (CLI, YAML, papermill) and replace
    base = SearchConfig()
    with pytest.raises(ValueError, match=field):
        base.replace(**changes)


def test_unknown_field_in_from_dict_is_named():
    with pytest.raises(ValueError, match=r"unknown config field\(s\) epoch\b.*valid fields"):
        SearchConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="bogus"):
        SearchConfig().replace(bogus=1)
    with pytest.raises(ValueError, match=r"unknown intervention field\(s\) delete\b.*valid fields are "
                                         r"delete_edges, exclude, fix"):
        SearchConfig(intervention={"delete": [1]})


def test_valid_configs_are_accepted():
    for kw in [dict(), dict(algorithm="darts", level="bi", order=2), dict(cell="3/2"), dict(cell="full"),
               dict(network="standard", cells=3), dict(algorithm="snas", temperature=2, temperature_min=0.5),
               dict(train_size=2, batch_size=2), dict(device="cuda:1"), dict(label_noise=1.0),
               dict(intervention=dict(delete_edges=[0, 2], fix={1: "sep_conv_3x3"}, exclude={4: ["skip_connect"]})),
               dict(intervention=Intervention(exclude={0: list(OPS[1:])})),  # only none left: fine
               dict(cell="full", intervention=Intervention(delete_edges=[13]))]:
        c = SearchConfig(**kw)
        # each field given is kept (numbers as numbers), and the config round-trips through its dict
        for k, v in kw.items():
            if k == "intervention":
                assert c.intervention == (v if isinstance(v, Intervention) else Intervention(**v)), kw
            else:
                assert getattr(c, k) == v, (k, v)
        assert SearchConfig.from_dict(c.to_dict()) == c and (c == SearchConfig()) == (not kw), kw


def test_search_time_errors_name_their_cause():
    with pytest.raises(ValueError, match="train_size"):
        Search(SearchConfig(data="synthetic", train_size=10_000))
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        Search(SearchConfig(data="cifar10", data_dir="/nonexistent"))


# ---- config identity ---------------------------------------------------------------------

def test_config_is_frozen_and_replace_validates():
    c = SearchConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.epochs = 3
    assert c.replace() is c
    d = c.replace(epochs=3, algorithm="darts")
    assert (d.epochs, d.algorithm, c.epochs) == (3, "darts", 30)


def test_numbers_are_coerced_so_equal_configs_share_a_key():
    a = SearchConfig(lr=1, epochs=3.0, temperature=2)
    b = SearchConfig(lr=1.0, epochs=3, temperature=2.0)
    assert isinstance(a.lr, float) and isinstance(a.epochs, int)
    assert a == b and a.key() == b.key()
    assert a.key() != a.replace(seed=1).key()
    assert a.key() != a.replace(intervention=Intervention(delete_edges=[0])).key()
    assert a.key() == a.replace(device="cpu").key()  # device does not change results


def test_intervention_forms_are_equivalent():
    forms = [
        Intervention(delete_edges=[2, 0], fix={1: "sep_conv_3x3"}, exclude={4: ["skip_connect", "max_pool_3x3"]}),
        Intervention(delete_edges=(0, 2), fix=[(1, "sep_conv_3x3")], exclude=[(4, ("max_pool_3x3", "skip_connect"))]),
        Intervention(delete_edges=[0, 2], fix="1=sep_conv_3x3", exclude={"4": ["max_pool_3x3", "skip_connect"]}),
    ]
    assert all(f == forms[0] for f in forms)
    configs = [SearchConfig(intervention=f) for f in forms]
    configs.append(SearchConfig.from_dict({"intervention": dataclasses.asdict(forms[0])}))
    configs.append(SearchConfig.from_dict(SearchConfig(intervention=forms[0]).to_dict()))
    assert len({c.key() for c in configs}) == 1
    mask = forms[0].allowed(5)
    assert mask.shape == (5, len(OPS)) and mask.dtype == torch.bool
    assert mask[0].tolist() == mask[2].tolist() == [True] + [False] * 7
    assert mask[1].nonzero().flatten().tolist() == [op_index("sep_conv_3x3")]
    assert not mask[4, op_index("skip_connect")] and not mask[4, op_index("max_pool_3x3")] and mask[4].sum() == 6
    assert mask[3].all()


def test_parse_cell_names_a_topology():
    assert parse_cell("minimal") == Topology.named("minimal") and parse_cell("4/4") == Topology.named("full")
    t = parse_cell("3/2")
    assert (t.steps, t.multiplier, t.n_edges, t.output_nodes) == (3, 2, 2 + 3 + 4, (3, 4))
    assert SearchConfig(cell="3/2").topology == t
