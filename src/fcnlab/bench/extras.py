"""The benchmark's measurements beside the model rows: the data pipeline's rate (the synthetic
data module as ``train.py`` configures it), the cost of the metric updates within an evaluation
batch, and the patch-wise classifier against the dense network (:mod:`fcnlab.bench.patchwise`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from fcnlab.bench.measure import median, timed
from fcnlab.bench.suite import IGNORE
from fcnlab.config import instantiate


# ----------------------------------------------------------------------------- data pipeline
def make_datamodule(conf_dir: Path, data_dir: Path, settings: dict):
    """The synthetic data module as ``train.py`` (scale=embedded) configures it, with ``settings``
    (image size, counts, batch sizes) on top; ``num_workers`` stays the configured one."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base="1.3"):
            cfg = compose("train", overrides=["data=synthetic"])
    finally:
        GlobalHydra.instance().clear()
    dm_cfg = OmegaConf.to_container(cfg.data.datamodule, resolve=False)
    dm_cfg.update(settings, data_dir=str(data_dir))
    dm = instantiate(dm_cfg)
    dm.setup("fit")
    return dm, int(cfg.data.num_classes)


def bench_data(dm, batches: int) -> dict:
    """Decode + augment + collate rate of the training loader, after its first batch."""
    import time

    it = iter(dm.train_dataloader())
    next(it)  # starts workers, if any
    n = 0
    t = time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(dm.train_dataloader())
            batch = next(it)
        n += batch["image"].shape[0]
    s = time.perf_counter() - t
    return {"images_per_s": n / s, "images": n, "seconds": s, "num_workers": dm.num_workers,
            "batch_size": dm.batch_size, "image_size": list(dm.image_size)}


# ----------------------------------------------------------------------------- metric costs
def bench_metrics(dm, net: torch.nn.Module, device: torch.device, num_classes: int,
                  reps: int) -> dict:
    """One evaluation batch: the forward pass, argmax, confusion-matrix update and BF update, as in
    ``module._eval_step``. The prediction given to the metrics is the ground truth shifted by 3 px
    (an untrained net predicts one class, which would make BF trivially cheap)."""
    from fcnlab.metrics.boundary import BoundaryF1
    from fcnlab.metrics import SegmentationScores

    batch = next(iter(dm.val_dataloader()))
    image, target = batch["image"].to(device), batch["mask"].to(device)
    pred = torch.roll(target, shifts=(3, 3), dims=(-2, -1)).clone()
    pred[pred == IGNORE] = 0
    scores = SegmentationScores(num_classes, ignore_index=IGNORE).to(device)
    bf = BoundaryF1(num_classes, ignore_index=IGNORE).to(device)
    net.eval()
    with torch.no_grad():
        timed(lambda: net(image), device, 1)
        fwd = median(timed(lambda: net(image), device, reps))
        logits = net(image)
        argmax = median(timed(lambda: logits.argmax(1), device, reps))
    cm = median(timed(lambda: scores.update(pred, target), device, reps))
    bfs = median(timed(lambda: bf.update(pred, target), device, reps))
    total = fwd + argmax + cm + bfs
    return {"eval_batch": int(image.shape[0]), "image_hw": list(image.shape[-2:]),
            "forward_s": fwd, "argmax_s": argmax, "confmat_update_s": cm, "bf_update_s": bfs,
            "confmat_share_pct": 100 * cm / total, "bf_share_pct": 100 * bfs / total}


# ----------------------------------------------------------------------------- patch-wise
def bench_patchwise(device: torch.device, side: int, width: float, num_classes: int,
                    reps: int) -> dict:
    """Per-pixel patch classification of a side×side image against the dense pass.

    The patch-wise time per image is the measured time per patch (over the patches of the image's
    stride-32 grid pixels, a batch of 8 at a time) times side² patches: every pixel's patch is
    the same work, and running all of them would take minutes to hours. The same patches check
    that both give the same scores (``max_rel_diff``).
    """
    from fcnlab.models.vgg import VGG16Classifier
    from fcnlab.bench.patchwise import DenseClassifier, PatchClassifier, patchwise_per_pixel

    torch.manual_seed(0)
    clf = VGG16Classifier(width, num_classes=num_classes).eval()
    patch_net = PatchClassifier(clf).to(device).eval()
    dense = DenseClassifier(clf, width).to(device).eval()
    image = torch.randn(1, 3, side, side, device=device)
    pixels = [(y, x) for y in range(0, side, 32) for x in range(0, side, 32)]
    with torch.no_grad():
        timed(lambda: dense.per_pixel(image), device, 1)
        dense_s = median(timed(lambda: dense.per_pixel(image), device, reps))
        grid = dense.pixel_grid(image)[0].permute(1, 2, 0).reshape(-1, num_classes)
        out = {}
        patch_s = timed(lambda: out.__setitem__(
            "p", patchwise_per_pixel(patch_net, image, pixels, batch=8)), device, 1)[0]
    per_patch = patch_s / len(pixels)
    per_image = per_patch * side * side
    diff = float((out["p"] - grid).abs().max() / grid.abs().max().clamp_min(1e-30))
    return {"image_hw": [side, side], "width": width, "patch": 404,
            "patches_timed": len(pixels), "patch_s": per_patch,
            "patchwise_s_per_image": per_image, "dense_s_per_image": dense_s,
            "ratio": per_image / dense_s, "max_rel_diff": diff}
