"""SegmentationScores against an independent NumPy reference (docs/reference.md §5, STYLE.md)."""

import math

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from fcnlab.metrics import MEAN_OVER, SegmentationScores, format_scores_table, scores_from_confmat

K = 6  # classes 0-3 occur in the ground truth, 4 is only predicted, 5 is absent from both
MODES = ["gt_present", "union_present", "all"]


# --- independent NumPy reference: FCN's score.py histogram, then the §5 formulas by hand ---------
def np_hist(gt: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    k = (gt >= 0) & (gt < n)  # drops 255 exactly as FCN's fast_hist does
    return np.bincount(n * gt[k].astype(int) + pred[k], minlength=n**2).reshape(n, n)


def np_scores(hist: np.ndarray, mean_over: str) -> dict:
    n = hist.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.diag(hist) / hist.sum(1)
        iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
        freq = hist.sum(1) / hist.sum()
    if mean_over == "gt_present":
        mean_acc, mean_iu = np.nanmean(acc), np.mean(iu[hist.sum(1) > 0])
    elif mean_over == "union_present":
        mean_acc, mean_iu = np.nanmean(acc), np.nanmean(iu)
    else:
        mean_acc, mean_iu = np.nansum(acc) / n, np.nansum(iu) / n
    return {
        "pixel_acc": np.diag(hist).sum() / hist.sum(),
        "mean_acc": mean_acc,
        "mean_iou": mean_iu,
        "fw_iou": (freq[freq > 0] * iu[freq > 0]).sum(),
        "acc": acc,
        "iou": iu,
    }


def make_batches(seed: int = 0):
    """Batches of different sizes; skewed class mix per batch; ~10% void (255) pixels."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for i, (n, h, w) in enumerate([(2, 7, 9), (1, 13, 5), (3, 4, 11), (2, 6, 6)]):
        weights = torch.ones(4)
        weights[i % 4] = 8.0  # each batch dominated by a different class
        target = torch.multinomial(weights, n * h * w, replacement=True, generator=g).view(n, h, w)
        noise = torch.randint(0, 5, (n, h, w), generator=g)  # predicts class 4, never 5
        pred = torch.where(torch.rand(n, h, w, generator=g) < 0.6, target, noise)
        target[torch.rand(n, h, w, generator=g) < 0.1] = 255
        batches.append((pred, target))
    return batches


def cat(batches):
    preds, targets = zip(*batches)
    return torch.cat([p.flatten() for p in preds]), torch.cat([t.flatten() for t in targets])


@pytest.fixture(scope="module")
def batches():
    b = make_batches()
    pred, target = cat(b)
    valid = target != 255
    # the case the brief asks for must really be in the data
    assert set(target[valid].unique().tolist()) == {0, 1, 2, 3}
    assert 4 in pred[valid].tolist() and 5 not in pred.tolist()
    assert (~valid).sum() > 0
    return b


def assert_matches_reference(ours: dict, ref: dict):
    for key in ["pixel_acc", "mean_acc", "mean_iou", "fw_iou"]:
        assert float(ours[key]) == pytest.approx(float(ref[key]), abs=1e-12), key
    for key in ["acc", "iou"]:
        np.testing.assert_allclose(ours[key].numpy(), ref[key], atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("mean_over", MODES)
def test_matches_numpy_reference(batches, mean_over):
    metric = SegmentationScores(K, mean_over=mean_over)
    hist = np.zeros((K, K), dtype=np.int64)
    for pred, target in batches:
        metric.update(pred, target)
        hist += np_hist(target.numpy().ravel(), pred.numpy().ravel(), K)
    ours, ref = metric.compute(), np_scores(hist, mean_over)
    np.testing.assert_array_equal(ours["confmat"].numpy(), hist)
    assert_matches_reference(ours, ref)
    assert math.isnan(ours["iou"][5]) and ours["iou"][4] == 0  # absent from both / only predicted
    assert math.isnan(ours["acc"][4]) and math.isnan(ours["acc"][5])
    for key in ["pixel_acc", "mean_acc", "mean_iou", "fw_iou"]:
        assert 0.0 <= float(ours[key]) <= 1.0


def test_modes_differ_when_classes_are_absent(batches):
    scores = {}
    for mode in MODES:
        m = SegmentationScores(K, mean_over=mode)
        for pred, target in batches:
            m.update(pred, target)
        scores[mode] = m.compute()
    iou = scores["gt_present"]["iou"]
    assert float(scores["gt_present"]["mean_iou"]) == pytest.approx(float(iou[:4].mean()))
    assert float(scores["union_present"]["mean_iou"]) == pytest.approx(float(iou[:5].sum() / 5))
    assert float(scores["all"]["mean_iou"]) == pytest.approx(float(iou[:5].sum() / 6))
    assert float(scores["all"]["mean_acc"]) < float(scores["gt_present"]["mean_acc"])


def test_split_accumulation_vs_per_batch_average(batches):
    by_batch = SegmentationScores(K)
    per_batch_miou = []
    for pred, target in batches:
        by_batch.update(pred, target)
        per_batch_miou.append(float(scores_from_confmat(_confmat(pred, target))["mean_iou"]))
    once = SegmentationScores(K)
    once.update(*cat(batches))
    assert torch.equal(by_batch.confmat, once.confmat)
    split_miou = float(by_batch.compute()["mean_iou"])
    assert split_miou == float(once.compute()["mean_iou"])
    # REFERENCE §6: averaging per-batch mIoU is a different (wrong) number
    assert abs(np.mean(per_batch_miou) - split_miou) > 1e-3


def _confmat(pred, target):
    m = SegmentationScores(K)
    m.update(pred, target)
    return m.confmat


def test_logits_equal_labels(batches):
    g = torch.Generator().manual_seed(1)
    from_logits, from_labels = SegmentationScores(K), SegmentationScores(K)
    for _, target in batches:
        logits = torch.randn(target.shape[0], K, *target.shape[1:], generator=g)
        from_logits.update(logits, target)
        from_labels.update(logits.argmax(1), target)
    assert from_logits.confmat.sum() > 0
    assert torch.equal(from_logits.confmat, from_labels.confmat)


def test_ignored_pixels_do_not_count(batches):
    a, b = SegmentationScores(K), SegmentationScores(K)
    for pred, target in batches:
        a.update(pred, target)
        changed = torch.where(target == 255, (pred + 1) % K, pred)
        assert not torch.equal(changed, pred)
        b.update(changed, target)
    assert torch.equal(a.confmat, b.confmat)
    assert int(a.confmat.sum()) == sum(int((t != 255).sum()) for _, t in batches)


@pytest.mark.parametrize("bad", [7, -1, 254])
def test_out_of_range_target_raises(bad):
    target = torch.tensor([[0, 1, bad, 255]])
    with pytest.raises(ValueError, match=rf"target has values \[{bad}\].*\[0, {K - 1}\]"):
        SegmentationScores(K).update(torch.zeros_like(target), target)


def test_out_of_range_label_prediction_raises():
    target = torch.tensor([[0, 1, 2]])
    with pytest.raises(ValueError, match=r"preds has values \[6\]"):
        SegmentationScores(K).update(torch.tensor([[0, 6, 2]]), target)


def test_shape_mismatch_and_unknown_mode_raise():
    with pytest.raises(ValueError, match="do not match"):
        SegmentationScores(K).update(torch.zeros(1, 3, 3).long(), torch.zeros(1, 3, 4).long())
    with pytest.raises(ValueError, match="all.*gt_present.*union_present"):
        SegmentationScores(K, mean_over="macro")
    assert set(MEAN_OVER) == set(MODES)


def test_empty_confmat_gives_nan():
    for mode in MODES:
        m = SegmentationScores(K, mean_over=mode)
        m.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 255))
        scores = m.compute()
        for key in ["pixel_acc", "mean_acc", "mean_iou", "fw_iou"]:
            assert math.isnan(float(scores[key])), (mode, key)


def test_torchmetrics_macro_jaccard_difference():
    """torchmetrics 1.9 macro Jaccard skips classes absent from both, counts predicted-only as 0."""

    def both(pred, target, mode):
        ours = SegmentationScores(4, mean_over=mode)
        ours.update(pred, target)
        tm = MulticlassJaccardIndex(4, average="macro", ignore_index=255)
        tm.update(pred, target)
        return float(ours.compute()["mean_iou"]), float(tm.compute())

    target = torch.tensor([[0, 0, 1, 1, 2, 255]])
    # class 3 absent from both: torchmetrics skips it (like gt_present), SegNet's "all" does not
    pred = torch.tensor([[0, 1, 1, 1, 2, 3]])
    ours, tm = both(pred, target, "gt_present")
    assert ours == pytest.approx(tm) == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    ours, tm = both(pred, target, "all")
    assert ours == pytest.approx((0.5 + 2 / 3 + 1) / 4) and ours != pytest.approx(tm)
    # class 3 predicted but absent from GT: torchmetrics counts 0 (= FCN's nanmean), we skip it
    pred = torch.tensor([[0, 3, 1, 1, 2, 3]])
    ours, tm = both(pred, target, "gt_present")
    assert ours == pytest.approx((0.5 + 1 + 1) / 3) and tm == pytest.approx((0.5 + 1 + 1 + 0) / 4)
    assert both(pred, target, "union_present")[0] == pytest.approx(tm)
    # every class present: all agree
    target, pred = torch.tensor([[0, 1, 2, 3, 3, 255]]), torch.tensor([[0, 1, 3, 3, 2, 0]])
    for mode in MODES:
        ours, tm = both(pred, target, mode)
        assert ours == pytest.approx(tm) == pytest.approx((1 + 1 + 0 + 1 / 3) / 4)


def test_merge_state_equals_single_instance(batches):
    whole, first, second = SegmentationScores(K), SegmentationScores(K), SegmentationScores(K)
    for i, (pred, target) in enumerate(batches):
        whole.update(pred, target)
        (first if i % 2 else second).update(pred, target)
    first.merge_state(second)
    assert torch.equal(first.confmat, whole.confmat)
    assert_matches_reference(first.compute(), {k: v.numpy() for k, v in whole.compute().items()})


def test_sync_sums_confmat_across_fake_ranks(batches):
    """torchmetrics' real sync path with a fake all-gather standing in for two ranks."""
    whole, rank0, rank1 = SegmentationScores(K), SegmentationScores(K), SegmentationScores(K)
    for i, (pred, target) in enumerate(batches):
        whole.update(pred, target)
        (rank0 if i < 2 else rank1).update(pred, target)
    rank0.sync(
        dist_sync_fn=lambda t, group=None: [t, rank1.confmat], distributed_available=lambda: True
    )
    assert torch.equal(rank0.confmat, whole.confmat)
    rank0.unsync()
    assert not torch.equal(rank0.confmat, whole.confmat)


def test_deterministic_mode_uses_plain_bincount(batches):
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        m = SegmentationScores(K)
        for pred, target in batches:
            m.update(pred, target)
    finally:
        torch.use_deterministic_algorithms(prev)
    pred, target = cat(batches)
    assert torch.equal(m.confmat, torch.as_tensor(np_hist(target.numpy(), pred.numpy(), K)))


def test_format_scores_table():
    confmat = torch.tensor([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    scores = scores_from_confmat(confmat)
    table = format_scores_table(scores, ["road", "sky", "cyclist"])
    for name in ["road", "sky", "cyclist"]:
        assert name in table
    for key in ["pixel_acc", "mean_acc", "mean_iou", "fw_iou"]:
        assert f"{100 * float(scores[key]):.2f}" in table
    assert "78.57" in table  # pixel acc 11/14
    assert "nan" in table.lower()  # cyclist absent everywhere
    assert "class 2" in format_scores_table(scores, None)
    with pytest.raises(ValueError):
        format_scores_table(scores, ["road"])
