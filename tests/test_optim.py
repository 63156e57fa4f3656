"""Optimizer parameter groups (docs/reference.md §3: biases at 2x lr and no decay; frozen layers out)."""

import pytest
import torch
from torch import nn

from fcnlab.errors import ConfigError
from fcnlab.models import FCN
from fcnlab.optim import param_groups

W = 1 / 16
LR, WD = 1e-4, 5e-4


def by_name(groups):
    names = [g["name"] for g in groups]
    assert len(names) == len(set(names))
    return {g["name"]: g for g in groups}


def ids(params):
    return {id(p) for p in params}


def test_fcn8s_groups():
    net = FCN(21, "8s", W, upsample_learn="cvpr")
    groups = param_groups(net, LR, WD)
    g = by_name(groups)
    assert set(g) == {"weight", "bias"}
    assert g["weight"]["lr"] == LR and g["weight"]["weight_decay"] == WD
    assert g["bias"]["lr"] == 2 * LR and g["bias"]["weight_decay"] == 0

    named = dict(net.named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    # every trainable parameter in exactly one group, nothing else in any group
    seen = [id(p) for grp in groups for p in grp["params"]]
    assert len(seen) == len(set(seen))
    assert set(seen) == ids(p for n, p in named.items() if n in trainable)
    # weights in "weight", biases in "bias"
    assert ids(g["weight"]["params"]) == ids(named[n] for n in trainable if n.endswith(".weight"))
    assert ids(g["bias"]["params"]) == ids(named[n] for n in trainable if n.endswith(".bias"))
    # cvpr: the 2x upsamplers learn (weight group), the final 8x one is frozen and in no group
    assert id(net.upscore2.weight) in ids(g["weight"]["params"])
    assert id(net.upscore_pool4.weight) in ids(g["weight"]["params"])
    assert not net.upscore8.weight.requires_grad
    assert id(net.upscore8.weight) not in set(seen)
    # the optimizer accepts the groups and gives each its own lr / decay
    opt = torch.optim.SGD(groups, lr=LR, momentum=0.9)
    assert sorted((pg["lr"], pg["weight_decay"]) for pg in opt.param_groups) == [
        (LR, WD), (2 * LR, 0.0)]


def test_multipliers_are_respected():
    net = FCN(21, "16s", W)
    g = by_name(param_groups(net, 1e-3, 1e-2, bias_lr_mult=3.0, bias_decay_mult=0.5))
    assert g["bias"]["lr"] == pytest.approx(3e-3)
    assert g["bias"]["weight_decay"] == pytest.approx(5e-3)


def test_fcn32s_fixed_only_score_fr():
    net = FCN(21, "32s", W, freeze_trunk=True)
    groups = param_groups(net, LR, WD)
    g = by_name(groups)
    assert set(g) == {"weight", "bias"}
    assert [id(p) for p in g["weight"]["params"]] == [id(net.score_fr.weight)]
    assert [id(p) for p in g["bias"]["params"]] == [id(net.score_fr.bias)]


def test_upsample_learn_none_all():
    none = FCN(21, "8s", W, upsample_learn="none")
    in_groups = {id(p) for grp in param_groups(none, LR, WD) for p in grp["params"]}
    for up in ("upscore2", "upscore_pool4", "upscore8"):
        assert id(getattr(none, up).weight) not in in_groups
    every = FCN(21, "8s", W, upsample_learn="all")
    in_groups = {id(p) for grp in param_groups(every, LR, WD) for p in grp["params"]}
    for up in ("upscore2", "upscore_pool4", "upscore8"):
        assert id(getattr(every, up).weight) in in_groups


class WithPReLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.PReLU())


class WithBareParam(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.gain = nn.Parameter(torch.ones(1))


@pytest.mark.parametrize("module, name", [(WithPReLU, "body.1.weight"), (WithBareParam, "gain")])
def test_unexpected_parameter_raises(module, name):
    with pytest.raises(ConfigError) as e:
        param_groups(module(), LR, WD)
    assert repr(name) in str(e.value)


def test_frozen_unexpected_parameter_is_ignored():
    m = WithBareParam()
    m.gain.requires_grad_(False)
    g = by_name(param_groups(m, LR, WD))
    assert ids(g["weight"]["params"]) == {id(m.conv.weight)}


def test_batch_norm_params_in_norm_group():
    net = FCN(21, "16s", W, batch_norm=True)
    groups = param_groups(net, LR, WD)
    g = by_name(groups)
    assert set(g) == {"weight", "bias", "norm"}
    assert g["norm"]["weight_decay"] == 0 and g["norm"]["lr"] == LR
    bn = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bn) == 15  # 13 convs + fc6 + fc7
    assert ids(g["norm"]["params"]) == ids(p for m in bn for p in m.parameters())
    norm_ids = ids(g["norm"]["params"])
    assert not norm_ids & ids(g["weight"]["params"])
    assert not norm_ids & ids(g["bias"]["params"])
    total = sum(len(grp["params"]) for grp in groups)
    assert total == sum(1 for p in net.parameters() if p.requires_grad)
