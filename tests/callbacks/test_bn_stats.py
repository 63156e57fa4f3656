"""BatchNorm statistics recomputed over the training set (SegNet protocol, docs/reference.md §3)."""

from __future__ import annotations

import copy
from pathlib import Path

import hydra
import lightning as L
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fcnlab.callbacks.bn_stats import RecomputeBNStats, recompute_bn_stats
from fcnlab.errors import ConfigError


def small_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
        nn.Conv2d(4, 5, 1), nn.BatchNorm2d(5),
    )


def batches(sizes=(4, 4, 2), seed=0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"image": torch.randn(n, 3, 6, 7, generator=g) * 2 + 1, "id": list(range(n))}
            for n in sizes]


def manual_cma(net: nn.Sequential, loader: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per BN: mean over batches of the batch mean and of the unbiased batch variance, with each
    BN normalising by its batch statistics (training mode) and dropout off."""
    conv1, bn1, _, _, conv2, bn2 = net
    sums = [[0, 0], [0, 0]]
    with torch.no_grad():
        for batch in loader:
            x1 = conv1(batch["image"])
            m1, v1 = x1.mean((0, 2, 3)), x1.var((0, 2, 3), unbiased=True)
            h = F.relu(F.batch_norm(x1, None, None, bn1.weight, bn1.bias, training=True,
                                    eps=bn1.eps))
            x2 = conv2(h)
            m2, v2 = x2.mean((0, 2, 3)), x2.var((0, 2, 3), unbiased=True)
            for s, (m, v) in zip(sums, ((m1, v1), (m2, v2))):
                s[0] = s[0] + m
                s[1] = s[1] + v
    n = len(loader)
    return [(m / n, v / n) for m, v in sums]


def trained_net() -> nn.Sequential:
    torch.manual_seed(0)
    net = small_net()
    with torch.no_grad():
        net[1].weight.uniform_(0.5, 1.5)
        net[1].bias.uniform_(-0.3, 0.3)
        net.train()
        for batch in batches(seed=5):  # history with momentum 0.1 that must be forgotten
            net(batch["image"] * 3 - 2)
    return net


def test_recompute_matches_manual_cumulative_average():
    net = trained_net()
    net.eval()
    net[3].train()  # a dropout left in train mode by the caller: restored as such afterwards
    modes = [m.training for m in net.modules()]
    loader = batches()
    expected = manual_cma(net, loader)
    seen = recompute_bn_stats(net, loader)
    assert seen == 10
    for bn, (mean, var) in zip((net[1], net[5]), expected):
        torch.testing.assert_close(bn.running_mean, mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bn.running_var, var, rtol=1e-5, atol=1e-6)
        assert bn.momentum == 0.1 and int(bn.num_batches_tracked) == 3
    assert [m.training for m in net.modules()] == modes

    # Dropout is not applied during the pass: a second run gives the same statistics.
    first = [b.running_mean.clone() for b in (net[1], net[5])]
    recompute_bn_stats(net, loader)
    for bn, mean in zip((net[1], net[5]), first):
        torch.testing.assert_close(bn.running_mean, mean, rtol=0, atol=0)


def test_max_batches_and_bad_values():
    net = trained_net()
    assert recompute_bn_stats(net, batches(), max_batches=2) == 8
    expected = manual_cma(net, batches()[:2])
    torch.testing.assert_close(net[1].running_mean, expected[0][0], rtol=1e-5, atol=1e-6)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="max_batches"):
            recompute_bn_stats(net, batches(), max_batches=bad)
    with pytest.raises(ConfigError, match="'image'"):
        recompute_bn_stats(net, [{"img": torch.zeros(2, 3, 4, 4)}])
    with pytest.raises(ConfigError, match="max_batches"):
        RecomputeBNStats(max_batches=0)


def test_net_without_bn_is_untouched():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Dropout(0.5)).eval()
    before = copy.deepcopy(net.state_dict())
    assert recompute_bn_stats(net, batches()) == 0
    assert not any(m.training for m in net.modules())
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])


# ------------------------------------------------------------------------------ the callback
class Images(Dataset):
    def __init__(self, n=16):
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, 3, 6, 7, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"image": self.x[i], "id": i}


class DM(L.LightningDataModule):
    batch_size = 4

    def __init__(self):
        super().__init__()
        self.train = Images()

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True, drop_last=True,
                          generator=torch.Generator().manual_seed(0))

    def val_dataloader(self):
        return DataLoader(Images(4), batch_size=4)


class Module(L.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = small_net()
        self.train_ids: list[int] = []
        self.val_stats: list[torch.Tensor] = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, i):
        self.train_ids += [int(j) for j in batch["id"]]
        return self(batch["image"]).pow(2).mean()

    def validation_step(self, batch, i):
        self(batch["image"])

    def on_validation_epoch_end(self):
        self.val_stats.append(self.net[5].running_mean.clone())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(callbacks) -> Module:
    module = Module()
    trainer = L.Trainer(max_steps=4, val_check_interval=2, num_sanity_val_steps=1,
                        limit_val_batches=1, callbacks=callbacks, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(module, datamodule=DM())
    module.trainer_metrics = dict(trainer.callback_metrics)
    return module


def test_callback_recomputes_before_each_validation_without_disturbing_training():
    plain = fit([])
    recomputed = fit([RecomputeBNStats()])
    # Same training batches in the same order: the callback used its own loader.
    assert recomputed.train_ids == plain.train_ids and len(plain.train_ids) == 16
    assert float(recomputed.trainer_metrics["bn_recompute/images"]) == 16.0
    # Sanity check + 2 validations; the sanity one was skipped (its stats are the init ones).
    assert len(recomputed.val_stats) == 3
    torch.testing.assert_close(recomputed.val_stats[0], torch.zeros(5))
    # The last validation ran with the statistics of the final weights over the training set.
    reference = copy.deepcopy(recomputed.net)
    loader = DataLoader(DM().train, batch_size=4, shuffle=False)
    recompute_bn_stats(reference, loader)
    torch.testing.assert_close(recomputed.val_stats[-1], reference[5].running_mean)
    assert not torch.allclose(plain.val_stats[-1], reference[5].running_mean)


def test_callbacks_config_composes():
    """conf/callbacks/bn_recompute.yaml is RecomputeBNStats alone, added to the default callbacks
    with `callbacks=[default,bn_recompute]` (tests/callbacks/test_callbacks_config.py)."""
    conf = Path(__file__).resolve().parents[2] / "conf"
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf / "callbacks"), version_base="1.3"):
            callbacks = compose(config_name="bn_recompute")
    finally:
        GlobalHydra.instance().clear()
    assert list(callbacks) == ["bn_recompute"]
    callback = hydra.utils.instantiate(callbacks.bn_recompute)
    assert isinstance(callback, RecomputeBNStats) and callback.max_batches is None
