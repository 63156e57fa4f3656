"""Fast paths that keep the answers (fcnlab.fastpath): channels-last, bf16 autocast, torch.compile.

Each path is compared with the plain fp32 path on the same weights and batch, for the FCN-8s
(both geometries), SegNet and DeepLab-LargeFOV at debug=fast size (width 1/16, 40x56 images,
random initialisation), built from the real model configs through SegmentationModule.
Tolerances are stated per test, next to what the development CPU gave, and each test also
checks that a wrong input (the batch's NHWC buffer read as NCHW) falls outside them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from torch import nn

from conftest import compose_cfg
from fcnlab.config import to_plain
from fcnlab.errors import ConfigError
from fcnlab.fastpath import autocast, prepare, to_input
from fcnlab.module import SegmentationModule
from fcnlab.tasks.evaluate import evaluate
from fcnlab.tasks.train import train

# The FCNs as in the paper (no BN, fc 4096; the tolerances below were measured on them): the
# embedded scale's BN and fc 1024 (conf/scale/embedded.yaml) are switched off.
PAPER_FCN = ["model.net.batch_norm=false", "model.net.fc_channels=4096"]
MODELS = {
    "fcn8s-caffe": ["model=fcn8s", "model.net.geometry=caffe", *PAPER_FCN],
    "fcn8s-aligned": ["model=fcn8s", "model.net.geometry=aligned", *PAPER_FCN],
    "segnet": ["model=segnet"],
    "deeplab_largefov": ["model=deeplab_largefov"],
}
# SegNet with nearest-neighbour unpooling: to tell its max-unpooling apart in bf16 (below).
VARIANTS = {**MODELS, "segnet-nearest": ["model=segnet", "model.net.unpool=nearest"]}
K = 11  # the synthetic data's classes
HW = (40, 56)


def _hparams(tmp_path: Path, model: str) -> dict:
    """SegmentationModule arguments from the real composed config (debug=fast: width 1/16)."""
    cfg = compose_cfg("train", VARIANTS[model], tmp_path)
    GlobalHydra.instance().clear()
    return dict(net=to_plain(cfg.model.net), optim=to_plain(cfg.optim), loss=to_plain(cfg.loss),
                num_classes=K, class_names=[f"c{i}" for i in range(K)],
                metrics=to_plain(cfg.metrics), name=cfg.model.name)


def _pair(tmp_path: Path, model: str, fast: dict) -> tuple[SegmentationModule, SegmentationModule]:
    """A plain module and one with ``fast``, holding the same weights; dropout off in both (a
    channels-last tensor draws its dropout mask in another order: a different sample, not an
    error), so training mode compares BN's batch statistics and every other layer exactly."""
    hp = _hparams(tmp_path, model)
    torch.manual_seed(0)
    plain = SegmentationModule(**hp)
    with torch.no_grad():  # the FCN's score layers start at zero (zero logits): He-init them
        for p in plain.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0.0, (2.0 / p[0].numel()) ** 0.5)
    fast_module = SegmentationModule(**hp, fast=fast)
    fast_module.load_state_dict(plain.state_dict())
    for module in (plain, fast_module):
        for m in module.modules():
            if isinstance(m, nn.modules.dropout._DropoutNd):
                m.p = 0.0
    return plain, fast_module


def _scrambled(image: torch.Tensor) -> torch.Tensor:
    """The batch's NHWC buffer read as NCHW: what a channels-last bug would feed the network."""
    return image.permute(0, 2, 3, 1).reshape(image.shape)


def _batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(2, 3, *HW, generator=g)
    target = torch.randint(0, K, (2, *HW), generator=g)
    target[:, :3] = 255  # some void pixels
    return image, target


def _loss_and_grads(module: SegmentationModule, image, target, ctx=None, train: bool = True):
    """Logits, loss and parameter gradients of one step; ``train`` uses BN batch statistics."""
    module.train(train)
    module.zero_grad()
    with ctx or torch.enable_grad():
        logits = module(image)
        loss = module.loss(logits, module._labels_like(target, logits))
    loss.backward()
    return logits.detach(), loss.detach(), {n: p.grad.clone() for n, p in module.named_parameters()
                                            if p.grad is not None}


def _grad_errors(grads: dict, ref: dict) -> tuple[float, float]:
    """Relative 2-norm error of all gradients together, and the worst one per tensor among the
    tensors that carry gradient (norm above 1e-4 of the total: a conv bias feeding a BN in training
    mode has zero gradient in exact arithmetic, and only rounding noise to compare)."""
    assert grads.keys() == ref.keys() and ref
    flat = torch.cat([g.flatten() for g in ref.values()])
    total = _rel(torch.cat([grads[n].flatten() for n in ref]), flat)
    worst = max(_rel(grads[n], g) for n, g in ref.items() if g.norm() > 1e-4 * flat.norm())
    return total, worst


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative error in the 2-norm: ||a - b|| / ||b||."""
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


# --- the API ----------------------------------------------------------------------------------
def test_autocast_names_the_allowed_precisions():
    with autocast("cpu", "bf16-mixed"):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    for plain in ("32", "32-true", 32):
        with autocast("cpu", plain):
            assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match=r"'bf16'.*") as e:
        autocast("cpu", "bf16")
    assert "'bf16-mixed'" in str(e.value) and "'32-true'" in str(e.value)


def test_to_input_and_prepare():
    x = torch.randn(2, 3, 5, 7)
    assert to_input(x, False) is x
    y = to_input(x, True)
    assert y.is_contiguous(memory_format=torch.channels_last) and torch.equal(x, y)
    with pytest.raises(ValueError, match="4-D"):
        to_input(torch.randn(3, 5, 7), True)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    keys = list(net.state_dict())
    assert prepare(net, channels_last=True) is net
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="compile"):
        prepare(net, compile="yes")
    assert prepare(net, compile={"backend": "eager"}) is net and list(net.state_dict()) == keys


def test_fast_setting_is_checked(tmp_path):
    hp = _hparams(tmp_path, "fcn8s-aligned")
    with pytest.raises(ConfigError, match="fast: unknown key"):
        SegmentationModule(**hp, fast={"channel_last": True})
    with pytest.raises(ConfigError, match="fast.compile"):
        SegmentationModule(**hp, fast={"compile": "yes"})


# --- channels-last -------------------------------------------------------------------------
# Tolerances (observed on the development CPU in brackets, worst of the four networks):
# - evaluation mode: logits |a - b| <= 1e-5 + 1e-5 |b| element-wise [max 9e-6 at |logit| ~ 20 for
#   the FCN-8s; 1.1e-6 relative 2-norm]; loss within 1e-5 relative [2e-7]; every gradient tensor
#   within 1e-5 relative 2-norm [1.8e-6];
# - training mode (BN batch statistics): SegNet's 26 BNs over 4-32 channels at width 1/16 amplify
#   the rounding of the other kernels, so logits and all gradients together within 1e-4 relative
#   2-norm [1.6e-5, 1.4e-5], each gradient tensor within 5e-4 [7.4e-5]; loss within 1e-5 [1.3e-7].
CL_TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model", list(MODELS))
def test_channels_last_matches_fp32(tmp_path, model):
    plain, fast = _pair(tmp_path, model, {"channels_last": True})
    seen = []
    fast.net.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    convs = [m for m in fast.net.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last)
                         for c in convs)
    image, target = _batch()

    # Evaluation mode first: training mode updates the BN running statistics.
    logits_p, loss_p, grads_p = _loss_and_grads(plain, image, target, train=False)
    logits_f, loss_f, grads_f = _loss_and_grads(fast, image, target, train=False)
    assert seen == [True]  # the switch reached the network's input
    torch.testing.assert_close(logits_f, logits_p, **CL_TOL)
    torch.testing.assert_close(loss_f, loss_p, rtol=1e-5, atol=0.0)
    assert max(_rel(grads_f[n], g) for n, g in grads_p.items()) <= 1e-5
    # The check can fail: the same batch with its NHWC buffer read as NCHW is far off.
    with torch.no_grad():
        assert _rel(plain(_scrambled(image)), logits_p) > 1e-2

    logits_p, loss_p, grads_p = _loss_and_grads(plain, image, target, train=True)
    logits_f, loss_f, grads_f = _loss_and_grads(fast, image, target, train=True)
    assert _rel(logits_f, logits_p) <= 1e-4
    torch.testing.assert_close(loss_f, loss_p, rtol=1e-5, atol=0.0)
    total, worst = _grad_errors(grads_f, grads_p)
    assert total <= 1e-4 and worst <= 5e-4, (total, worst)
    assert list(fast.state_dict()) == list(plain.state_dict())


# --- bf16 autocast on the CPU ------------------------------------------------------------------
# bf16 keeps 8 bits of mantissa (2^-9 relative per rounding), compounded over ~15-26 layers.
# Per network: (logits relative 2-norm error in evaluation mode, least share of pixels with the
# same argmax, loss relative error in training mode, all gradients' relative 2-norm error or None)
# and, in brackets, what the development CPU gave.
BF16_TOL = {
    "fcn8s-caffe": (3e-2, 0.98, 2e-2, 0.15),       # [7.3e-3, 0.9998, 5.4e-3, 4.0e-2]
    "fcn8s-aligned": (3e-2, 0.98, 2e-2, 0.15),     # [7.7e-3, 0.9987, 6.1e-3, 5.0e-2]
    "deeplab_largefov": (3e-2, 0.98, 2e-2, 0.15),  # [1.0e-2, 0.9969, 2.5e-6, 5.1e-2]
    # SegNet at initialisation is far more sensitive: a rounding flips which of two near-equal
    # values wins a 2x2 max pool, and max-unpooling then puts it at another pixel (with
    # unpool=nearest, below, the logits agree to 2.2e-2); in training mode 26 BNs normalising
    # 4-32 near-constant channels amplify the rest, so the gradients are only checked finite.
    # [1.7e-1, 0.856, 7.0e-4, (1.06)]. A trained SegNet (the embedded segnet_table run, 500
    # iterations, 200x200 images) gave logits 3.5e-2, argmax 0.997, loss 2e-3.
    "segnet": (0.35, 0.75, 2e-2, None),
    "segnet-nearest": (5e-2, 0.93, 2e-2, None),    # [2.2e-2, 0.9717, 7.9e-5, (0.97)]
}


@pytest.mark.parametrize("model", list(BF16_TOL))
def test_bf16_autocast_matches_fp32(tmp_path, model):
    logits_tol, argmax_min, loss_tol, grad_tol = BF16_TOL[model]
    plain, _ = _pair(tmp_path, model, {})
    image, target = _batch()
    plain.eval()
    with torch.no_grad():
        ref = plain(image)
        with autocast("cpu", "bf16-mixed"):
            low = plain(image)
        wrong = plain(_scrambled(image))
    assert low.dtype == torch.bfloat16  # autocast really ran the network in bf16
    assert _rel(low, ref) <= logits_tol
    assert float((low.argmax(1) == ref.argmax(1)).float().mean()) >= argmax_min
    assert _rel(wrong, ref) > logits_tol  # the check can fail: a scrambled input is outside it

    _, loss_p, grads_p = _loss_and_grads(plain, image, target)
    logits_b, loss_b, grads_b = _loss_and_grads(plain, image, target,
                                                autocast("cpu", "bf16-mixed"))
    assert logits_b.dtype == torch.bfloat16 and loss_b.dtype == torch.float32
    assert abs(float(loss_b) - float(loss_p)) <= loss_tol * abs(float(loss_p))
    assert all(torch.isfinite(g).all() for g in grads_b.values())
    if grad_tol is not None:
        assert _grad_errors(grads_b, grads_p)[0] <= grad_tol


# --- torch.compile -------------------------------------------------------------------------
# Tolerance 1e-4 (rtol and atol, element-wise) for inductor, which fuses and reorders float
# operations [SegNet: 2.3e-7 at |logit| ~ 0.2]; the eager backend (default suite: TorchDynamo's
# capture without code generation, seconds instead of a minute) runs the same kernels: 1e-5.
def _check_compiled(tmp_path, model, options, tol):
    plain, fast = _pair(tmp_path, model, {"compile": options})
    assert list(fast.state_dict()) == list(plain.state_dict())
    assert fast.net._compiled_call_impl is not None and plain.net._compiled_call_impl is None
    image, _ = _batch()
    fast.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(image), plain(image), rtol=tol, atol=tol)
    assert set(fast.compile_s) == {"eval"} and fast.compile_s["eval"] > 0
    # The compiled module's weights load into a plain one and back: the keys are unchanged.
    again = SegmentationModule(**{**fast.hparams, "fast": None})
    again.load_state_dict(fast.state_dict())
    assert again.net._compiled_call_impl is None and not again.compiled
    fast.load_state_dict(again.state_dict())
    fast.set_fast(None)  # and the switch goes off again
    assert fast.net._compiled_call_impl is None and not fast.compiled


@pytest.mark.parametrize("model", ["fcn8s-caffe", "segnet"])
def test_compile_wiring_with_eager_backend(tmp_path, model):
    _check_compiled(tmp_path, model, {"backend": "eager"}, 1e-5)


@pytest.mark.slow  # inductor: about a minute of compilation per network on two cores
@pytest.mark.parametrize("model", list(MODELS))
def test_compile_matches_fp32(tmp_path, model):
    _check_compiled(tmp_path, model, True, 1e-4)


# --- the config switches, end to end ------------------------------------------------------------
def test_train_with_channels_last_and_bf16(tmp_path, data_dir, monkeypatch):
    """The switches reach the module: a short run with both, then evaluation of its checkpoint
    with evaluation's own switches (channels-last, compile with the eager backend)."""
    seen = set()
    # _loss_terms: where the logits meet the loss, in training (loss) and evaluation (_eval_loss)
    loss_terms = SegmentationModule._loss_terms

    def spy(self, logits, target):
        conv = next(m for m in self.net.modules() if isinstance(m, nn.Conv2d))
        seen.add((logits.dtype, conv.weight.is_contiguous(memory_format=torch.channels_last)
                  and self.channels_last, torch.is_autocast_enabled("cpu")))
        return loss_terms(self, logits, target)

    monkeypatch.setattr(SegmentationModule, "_loss_terms", spy)
    cfg = compose_cfg("train", ["trainer.max_steps=2", "trainer.val_check_interval=2",
                                "fast.channels_last=true", "trainer.precision=bf16-mixed"],
                      tmp_path, data_dir=data_dir)
    record = train(cfg)
    assert seen == {(torch.bfloat16, True, True)}  # every training and validation step
    assert record["status"] == "finished"
    assert record["config"]["fast"] == {"channels_last": True, "compile": False}
    assert "compile_s" not in record
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    (last,) = [e for e in on_disk["evaluations"] if e["split"] == "val"]
    for key in ("pixel_acc", "mean_acc", "mean_iou", "fw_iou", "bf"):
        assert math.isfinite(last[key]), key
    assert sum(map(sum, last["confmat"])) > 0

    ckpt_path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["fast"] == {"channels_last": True, "compile": False}
    module, _ = SegmentationModule.from_checkpoint(ckpt_path)  # weights_only, back on the plain path
    assert not module.channels_last and not module.compiled
    conv = next(m for m in module.net.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous()
    assert module.state_dict().keys() == ckpt["state_dict"].keys()
    module.eval()
    with torch.no_grad():
        logits = module(torch.randn(1, 3, *HW))
    assert logits.shape == (1, K, *HW) and torch.isfinite(logits).all()

    seen.clear()
    cfg = compose_cfg("eval", [f"ckpt_path={ckpt_path}", "fast.channels_last=true",
                               "fast.compile={backend: eager}"],
                      tmp_path / "eval", data_dir=data_dir, debug=None)
    record = evaluate(cfg)
    assert record["status"] == "finished" and seen == {(torch.float32, True, False)}
    assert set(record["compile_s"]) == {"eval"}
    scores = record["evaluations"][0]  # fp32 now, bf16 in training: close, not equal
    assert math.isfinite(scores["mean_iou"])
    assert sum(map(sum, scores["confmat"])) == sum(map(sum, last["confmat"]))


def test_old_checkpoint_without_fast_loads(tmp_path):
    hp = _hparams(tmp_path, "fcn8s-aligned")  # no "fast": what checkpoints before it hold
    module = SegmentationModule(**hp)
    assert not module.channels_last and not module.compiled and module.hparams.fast is None
    path = tmp_path / "old.ckpt"
    torch.save({"hyper_parameters": hp, "state_dict": module.state_dict()}, path)
    loaded, _ = SegmentationModule.from_checkpoint(path)
    assert loaded.state_dict().keys() == module.state_dict().keys()
