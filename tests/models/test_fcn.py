"""FCN-32s / 16s / 8s: output size, crop alignment, parameter counts, zero-initialised scorers,
at-once scaling, staged weight transfer and config validation (docs/reference.md §2).
"""

import pytest
import torch

from fcn_probes import (ALIGN_CASES, class0_centroid, make_identity_like,
                        square_image)
from fcnlab.errors import ConfigError
from fcnlab.models import FCN, load_init_weights

W = 1 / 16
K = 21
VARIANTS = {
    "32s": dict(variant="32s"),
    "16s": dict(variant="16s"),
    "8s": dict(variant="8s"),
    "8s-atonce": dict(variant="8s", at_once=True),
    "32s-fixed": dict(variant="32s", freeze_trunk=True),
}


# --- output size --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_nets():
    torch.manual_seed(0)
    return {name: FCN(K, width=W, **kw).eval() for name, kw in VARIANTS.items()}


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("hw", [(37, 53), (97, 131), (500, 375)])
def test_output_size_equals_input_size(small_nets, name, hw):
    net = small_nets[name]
    with torch.no_grad():
        y = net(torch.randn(1, 3, *hw))
    assert y.shape == (1, K, *hw)


# --- zero-initialised scorers ------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(VARIANTS))
def test_fresh_fcn_outputs_exact_zeros(small_nets, name):
    net = small_nets[name]
    with torch.no_grad():
        y = net(torch.randn(1, 3, 45, 61) * 50)
    assert torch.count_nonzero(y) == 0
    for scorer in ("score_fr", "score_pool4", "score_pool3"):
        if hasattr(net, scorer):
            assert torch.count_nonzero(getattr(net, scorer).weight) == 0
            assert torch.count_nonzero(getattr(net, scorer).bias) == 0


# --- crop alignment -----------------------------------------------------------------------------------
# Square centres: conv1_1 (pad 100, k3) puts image x at x + 99 before pool1; a 2x2/2 pool keeps a
# symmetric blob exactly symmetric when its centre is a half-integer on that pool's grid, which holds
# for pool1..pool5 when centre + 99 = 15.5 (mod 16), i.e. centre = 12.5 (mod 16). Elsewhere average
# pooling itself biases the centroid by up to ~3 px, which would blur what this test checks.
CENTRES = [(76.5, 92.5), (44.5, 140.5)]




@pytest.fixture(scope="module")
def aligned_nets():
    # width 1/64: only channel 0 matters here, and this keeps the many forward passes cheap
    return {name: make_identity_like(FCN(3, width=1 / 64, **kw), gain)
            for name, (kw, gain) in ALIGN_CASES.items()}


@pytest.mark.parametrize("name", list(ALIGN_CASES))
def test_crop_alignment_keeps_centroid(aligned_nets, name):
    net = aligned_nets[name]
    for cy, cx in CENTRES:
        gy, gx = class0_centroid(net, square_image(cy, cx))
        assert abs(gy - cy) < 0.75 and abs(gx - cx) < 0.75, (name, (cy, cx), (gy, gx))


@pytest.mark.parametrize("name", list(ALIGN_CASES))
def test_crop_alignment_detects_wrong_offsets(aligned_nets, name):
    net = aligned_nets[name]
    cy, cx = CENTRES[0]
    x = square_image(cy, cx)
    good = dict(net.offsets)
    try:
        for key in good:
            net.offsets = dict(good)
            net.offsets[key] += 4
            gy, gx = class0_centroid(net, x)
            # cropping 4 later on a 1/s grid moves that path by -4*s px (s = 1 for the final score)
            assert gy - cy < -2 and gx - cx < -2, (name, key, (gy, gx))
    finally:
        net.offsets = good
    assert class0_centroid(net, x) == pytest.approx((cy, cx), abs=0.75)


# --- parameter counts at full width (docs/reference.md §2) -------------------------------------------------
VGG16_CONVS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
               (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
CONV_PARAMS = sum(cin * 3 * 3 * cout + cout for cin, cout in VGG16_CONVS)
FC6 = 512 * 7 * 7 * 4096 + 4096
FC7 = 4096 * 4096 + 4096
SCORE_FR = 4096 * K + K
SCORE_POOL4 = 512 * K + K
SCORE_POOL3 = 256 * K + K


def up(k):  # a bias-free K->K transposed conv with a k x k kernel
    return k * k * K * K


def counts(net):
    learn = sum(p.numel() for p in net.parameters() if p.requires_grad)
    fixed = sum(p.numel() for p in net.parameters() if not p.requires_grad)
    return learn, fixed


def build_meta(**kw):
    # shapes and requires_grad flags only: no need to allocate or initialise 134M floats
    with torch.device("meta"):
        return FCN(K, width=1.0, **kw)


def test_vgg16_conv_count_is_the_known_number():
    assert CONV_PARAMS == 14_714_688  # torchvision vgg16().features


def test_fcn32s_param_count():
    net = FCN(K, "32s", 1.0)  # once on a real device, to be sure meta counting is not the trick
    learn, fixed = counts(net)
    assert learn == CONV_PARAMS + FC6 + FC7 + SCORE_FR
    assert round(learn / 1e6, 1) == 134.3
    assert fixed == up(64) == 64 * 64 * 21 * 21
    assert counts(build_meta(variant="32s")) == (learn, fixed)


BASE = CONV_PARAMS + FC6 + FC7 + SCORE_FR


@pytest.mark.parametrize(
    "kw, learn, fixed",
    [
        (dict(variant="32s", upsample_learn="cvpr"), BASE, up(64)),
        (dict(variant="32s", upsample_learn="none"), BASE, up(64)),
        (dict(variant="32s", upsample_learn="all"), BASE + up(64), 0),
        (dict(variant="16s", upsample_learn="cvpr"), BASE + SCORE_POOL4 + up(4), up(32)),
        (dict(variant="16s", upsample_learn="none"), BASE + SCORE_POOL4, up(4) + up(32)),
        (dict(variant="16s", upsample_learn="all"), BASE + SCORE_POOL4 + up(4) + up(32), 0),
        (dict(variant="8s", upsample_learn="cvpr"),
         BASE + SCORE_POOL4 + SCORE_POOL3 + 2 * up(4), up(16)),
        (dict(variant="8s", upsample_learn="none"),
         BASE + SCORE_POOL4 + SCORE_POOL3, 2 * up(4) + up(16)),
        (dict(variant="8s", upsample_learn="all"),
         BASE + SCORE_POOL4 + SCORE_POOL3 + 2 * up(4) + up(16), 0),
        (dict(variant="8s", at_once=True), BASE + SCORE_POOL4 + SCORE_POOL3 + 2 * up(4), up(16)),
        (dict(variant="32s", freeze_trunk=True), SCORE_FR, CONV_PARAMS + FC6 + FC7 + up(64)),
    ],
)
def test_param_counts(kw, learn, fixed):
    assert counts(build_meta(**kw)) == (learn, fixed)


@pytest.mark.parametrize(
    "variant, learnable_ups",
    [
        ("32s", {"cvpr": set(), "none": set(), "all": {"upscore"}}),
        ("16s", {"cvpr": {"upscore2"}, "none": set(), "all": {"upscore2", "upscore16"}}),
        ("8s", {"cvpr": {"upscore2", "upscore_pool4"}, "none": set(),
                "all": {"upscore2", "upscore_pool4", "upscore8"}}),
    ],
)
def test_which_upsamplers_learn(variant, learnable_ups):
    for mode, expect in learnable_ups.items():
        net = FCN(K, variant, W, upsample_learn=mode)
        ups = {n for n, m in net.named_children() if n.startswith("upscore")}
        got = {n for n in ups if getattr(net, n).weight.requires_grad}
        assert got == expect, (variant, mode)


def test_fcn32s_fixed_trains_only_score_fr():
    net = FCN(K, "32s", W, freeze_trunk=True)
    names = [n for n, p in net.named_parameters() if p.requires_grad]
    assert names == ["score_fr.weight", "score_fr.bias"]
    learn, _ = counts(net)
    assert learn == 256 * K + K  # fc7 is 4096/16 wide


def test_a_frozen_bn_trunk_keeps_its_statistics_and_computes_the_loaded_features():
    """FCN-32s-fixed with the embedded recipe's BN trunk: in training the trunk's BNs stay in
    eval mode, so a training step moves no running statistic and the features are those of the
    loaded convs (fresh BNs in eval mode: the identity); an unfrozen trunk's BNs train."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    fixed = FCN(K, "32s", W, freeze_trunk=True, geometry="aligned", batch_norm=True,
                dropout=0.0).train()
    plain = FCN(K, "32s", W, freeze_trunk=True, geometry="aligned", dropout=0.0).eval()
    fixed.score_fr.weight.data.normal_()
    plain.load_state_dict({k: v for k, v in fixed.state_dict().items() if "_bn." not in k})
    assert fixed.training and not fixed.trunk.conv1_1_bn.training
    before = fixed.trunk.conv3_1_bn.running_mean.clone()
    with torch.no_grad():
        torch.testing.assert_close(fixed(x), plain(x), rtol=1e-3, atol=1e-4)
    assert torch.equal(fixed.trunk.conv3_1_bn.running_mean, before)
    tuned = FCN(K, "32s", W, geometry="aligned", batch_norm=True).train()
    assert tuned.trunk.conv1_1_bn.training


# --- at-once scaling ----------------------------------------------------------------------------------
def test_at_once_scales_skip_inputs():
    torch.manual_seed(1)
    normal = FCN(K, "8s", W).eval()
    atonce = FCN(K, "8s", W, at_once=True).eval()
    atonce.load_state_dict(normal.state_dict())
    w4 = torch.randn_like(normal.score_pool4.weight)
    with torch.no_grad():
        for net in (normal, atonce):
            net.score_fr.weight.zero_()
            net.score_pool3.weight.zero_()
            net.score_pool4.weight.copy_(w4)
    inputs = {}

    def grab(tag):
        def f(_m, args):
            inputs[tag] = args[0].detach().clone()
        return f

    hooks = [normal.score_pool4.register_forward_pre_hook(grab("p4")),
             normal.score_pool3.register_forward_pre_hook(grab("p3"))]
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        y_normal = normal(x)
        p4, p3 = inputs["p4"], inputs["p3"]
        hooks += [atonce.score_pool4.register_forward_pre_hook(grab("p4")),
                  atonce.score_pool3.register_forward_pre_hook(grab("p3"))]
        y_atonce = atonce(x)
    for h in hooks:
        h.remove()
    assert p4.abs().max() > 0 and p3.abs().max() > 0
    torch.testing.assert_close(inputs["p4"], 0.01 * p4, rtol=1e-6, atol=0)
    torch.testing.assert_close(inputs["p3"], 1e-4 * p3, rtol=1e-6, atol=0)
    # only the pool4 path is non-zero, so the whole output scales by 0.01
    assert y_normal.abs().max() > 0
    expect = 0.01 * y_normal
    torch.testing.assert_close(y_atonce, expect, rtol=1e-4, atol=1e-5 * expect.abs().max().item())


# --- staged initialisation (checkpoint.load_init_weights) ---------------------------------------------
def randomized(net):
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p))
    return net


def save_as_lightning(net, path):
    torch.save({"state_dict": {"net." + k: v for k, v in net.state_dict().items()},
                "epoch": 3}, path)


def test_staged_init_32s_to_16s_to_8s(tmp_path):
    torch.manual_seed(2)
    fcn32 = randomized(FCN(K, "32s", W))
    p32 = tmp_path / "fcn32s.ckpt"
    save_as_lightning(fcn32, p32)

    fcn16 = FCN(K, "16s", W)
    report = load_init_weights(fcn16, p32)
    src = fcn32.state_dict()
    dst = fcn16.state_dict()
    trunk_keys = [k for k in src if k.startswith("trunk.")]
    assert len(trunk_keys) == 2 * 15  # 13 convs + fc6 + fc7
    for key in trunk_keys + ["score_fr.weight", "score_fr.bias"]:
        assert torch.equal(dst[key], src[key]), key
        assert key in report["copied"]
    assert torch.count_nonzero(fcn16.score_pool4.weight) == 0
    assert torch.count_nonzero(fcn16.score_pool4.bias) == 0
    assert "score_pool4.weight" in report["kept"]
    assert set(report["kept"]) == {"upscore2.weight", "score_pool4.weight", "score_pool4.bias",
                                   "upscore16.weight"}
    # the fresh 16s upsamplers keep their bilinear initialisation
    fresh = FCN(K, "16s", W)
    assert torch.equal(fcn16.upscore16.weight, fresh.upscore16.weight)
    # with score_pool4 still zero, the 16s coarse score is the 32s one: same trunk, same score_fr
    fcn32.eval()
    fcn16.eval()
    x = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        assert torch.equal(fcn16.score_fr(fcn16.trunk(x)["fc7"]), fcn32.score_fr(fcn32.trunk(x)["fc7"]))

    randomized(fcn16)
    p16 = tmp_path / "fcn16s.ckpt"
    save_as_lightning(fcn16, p16)
    fcn8 = FCN(K, "8s", W)
    report = load_init_weights(fcn8, p16)
    for key in ("upscore2.weight", "score_pool4.weight", "score_pool4.bias", "trunk.fc7.weight"):
        assert torch.equal(fcn8.state_dict()[key], fcn16.state_dict()[key]), key
    assert set(report["kept"]) == {"upscore_pool4.weight", "score_pool3.weight",
                                   "score_pool3.bias", "upscore8.weight"}
    assert torch.count_nonzero(fcn8.score_pool3.weight) == 0


def test_init_width_mismatch_names_key_and_shapes(tmp_path):
    path = tmp_path / "narrow.ckpt"
    save_as_lightning(FCN(K, "32s", W), path)
    wide = FCN(K, "16s", 1 / 8)
    with pytest.raises(ConfigError) as e:
        load_init_weights(wide, path)
    msg = str(e.value)
    assert "trunk.conv1_1.weight" in msg
    assert "(4, 3, 3, 3)" in msg and "(8, 3, 3, 3)" in msg
    assert str(path) in msg


def test_init_class_mismatch_raises(tmp_path):
    path = tmp_path / "k21.pt"
    torch.save(FCN(K, "32s", W).state_dict(), path)  # a plain state dict works too ...
    load_init_weights(FCN(K, "16s", W), path)
    with pytest.raises(ConfigError, match=r"score_fr\.weight"):  # ... but not with other classes
        load_init_weights(FCN(11, "16s", W), path)


def test_init_missing_file(tmp_path):
    path = tmp_path / "nope" / "fcn32s.ckpt"
    with pytest.raises(ConfigError) as e:
        load_init_weights(FCN(K, "16s", W), path)
    assert str(path) in str(e.value)


def test_init_unrelated_checkpoint(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"net.encoder.weight": torch.zeros(3)}}, path)
    with pytest.raises(ConfigError, match="no layer"):
        load_init_weights(FCN(K, "16s", W), path)


EXECUTED = []


def _side_effect():
    EXECUTED.append("ran")
    return {}


class Payload:
    """Unpickling this calls _side_effect: weights_only loading must refuse it without running it."""

    def __reduce__(self):
        return (_side_effect, ())


@pytest.mark.parametrize("obj", [lambda: {"state_dict": Payload()}, lambda: Payload()])
def test_init_refuses_pickled_objects(tmp_path, obj):
    path = tmp_path / "evil.ckpt"
    torch.save(obj(), path)
    EXECUTED.clear()
    with pytest.raises(ConfigError) as e:
        load_init_weights(FCN(K, "16s", W), path)
    assert str(path) in str(e.value)
    assert EXECUTED == []


# --- config validation --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(variant="4s"), ["variant", "'4s'", "32s"]),
        (dict(width=0), ["width", "0"]),
        (dict(width=2), ["width", "2"]),
        (dict(width="abc"), ["width", "'abc'"]),
        (dict(width=-0.5), ["width", "-0.5"]),
        (dict(upsample_learn="maybe"), ["upsample_learn", "'maybe'", "cvpr"]),
        (dict(dropout_kind="spatial"), ["dropout_kind", "'spatial'", "element"]),
        (dict(num_classes=1), ["num_classes", "1"]),
        (dict(num_classes="21"), ["num_classes", "'21'"]),
        (dict(num_classes=True), ["num_classes", "True"]),
    ],
)
def test_bad_config_values(kw, words):
    args = dict(num_classes=K, variant="8s", width=W)
    args.update(kw)
    with pytest.raises(ConfigError) as e:
        FCN(**args)
    msg = str(e.value)
    for w in words:
        assert w in msg, (w, msg)
    assert "\n" not in msg
