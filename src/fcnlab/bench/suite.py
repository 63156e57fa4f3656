"""What the benchmark measures: model rows, the data pipeline, metric costs, patch-wise vs dense."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from fcnlab.bench.measure import PeakMemory, count_flops, median, timed
from fcnlab.config import instantiate

IGNORE = 255


@dataclass(frozen=True)
class Row:
    """One model configuration to time: ``model`` is a ``conf/model`` name."""

    name: str
    model: str
    hw: tuple[int, int]
    batch: int
    width: float
    overrides: dict = field(default_factory=dict)  # extra model.net keys (e.g. geometry)


@dataclass(frozen=True)
class Preset:
    rows: tuple[Row, ...]
    iters: int  # timed training steps / evaluation batches per row (median reported)
    warmup: int
    matmul_n: int
    # data pipeline: the synthetic data module's settings (the embedded data by default)
    data: dict
    # patch-wise vs dense: image side and width
    patch_hw: int
    patch_width: float
    data_row: str  # the row whose training step consumes what the data pipeline delivers


def _rows(width: float, hw, batch, deconv_batch, segnet_hw=None, deeplab_hw=None,
          deeplab_batch=None) -> tuple[Row, ...]:
    return (
        Row("fcn8s_caffe", "fcn8s", hw, batch, width, {"geometry": "caffe"}),
        Row("fcn8s_aligned", "fcn8s", hw, batch, width, {"geometry": "aligned"}),
        Row("segnet", "segnet", segnet_hw or hw, batch, width),
        Row("deeplab_largefov", "deeplab_largefov", deeplab_hw or hw, deeplab_batch or batch,
            width),
        Row("deconvnet", "deconvnet", (224, 224), deconv_batch, width),
    )


EMBEDDED_DATA = dict(image_size=[96, 128], num_train=400, num_val=60, num_test=60,
                     batch_size=8, eval_batch_size=20)
PRESETS: dict[str, Preset] = {
    # seconds: for tests and smoke runs
    "tiny": Preset(_rows(1 / 16, (64, 64), 2, 2), iters=1, warmup=0, matmul_n=512,
                   data=dict(image_size=[40, 56], num_train=16, num_val=6, num_test=6,
                             batch_size=4, eval_batch_size=6),
                   patch_hw=32, patch_width=1 / 16, data_row="fcn8s_caffe"),
    # the default: embedded scale (width 1/8, 96×128, batch 8), a few minutes on a 2-core CPU
    "small": Preset(_rows(1 / 8, (96, 128), 8, 8) + (
        Row("fcn8s_aligned_256_w4", "fcn8s", (256, 256), 8, 1 / 4, {"geometry": "aligned"}),),
        iters=3, warmup=1, matmul_n=2048, data=EMBEDDED_DATA, patch_hw=128, patch_width=1 / 8,
        data_row="fcn8s_caffe"),
    # the papers' networks and sizes: for a GPU
    "paper": Preset(_rows(1.0, (500, 375), 1, 8, segnet_hw=(360, 480), deeplab_hw=(321, 321),
                          deeplab_batch=10) + (
        Row("fcn8s_caffe_500sq_b8", "fcn8s", (500, 500), 8, 1.0, {"geometry": "caffe"}),),
        iters=5, warmup=2, matmul_n=8192, data=EMBEDDED_DATA, patch_hw=128, patch_width=1 / 8,
        data_row="fcn8s_caffe"),
}


def default_conf_dir() -> Path:
    here = Path(__file__).resolve().parents[3] / "conf"
    return here if here.is_dir() else Path("conf")


def default_data_dir() -> Path:
    env = os.environ.get("FCNLAB_DATA_DIR")
    return Path(env) if env else default_conf_dir().parent / "data"


def build_net(conf_dir: Path, row: Row, num_classes: int) -> torch.nn.Module:
    """The network ``train.py model=<row.model>`` builds, at the row's width and classes."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base="1.3"):
            cfg = compose("train", overrides=[f"model={row.model}"])
    finally:
        GlobalHydra.instance().clear()
    net_cfg = OmegaConf.to_container(cfg.model.net, resolve=False)
    net_cfg.update(num_classes=num_classes, width=row.width, **row.overrides)
    return instantiate(net_cfg)


def bench_row(row: Row, conf_dir: Path, device: torch.device, preset: Preset, peak: float,
              num_classes: int) -> dict:
    """Training step (forward, loss, backward, SGD step) and evaluation forward of one row."""
    mem = PeakMemory(device)
    mem.start()
    torch.manual_seed(0)
    net = build_net(conf_dir, row, num_classes).to(device)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-6, momentum=0.9)
    x = torch.randn(row.batch, 3, *row.hw, device=device)
    y = torch.randint(0, num_classes, (row.batch, *row.hw), device=device)

    def fwd_bwd():
        loss = F.cross_entropy(net(x), y, ignore_index=IGNORE)
        loss.backward()
        return loss

    def step():
        opt.zero_grad(set_to_none=True)
        fwd_bwd()
        opt.step()

    net.train()
    flops = count_flops(fwd_bwd)  # also the first warm-up step (allocates the gradients)
    opt.zero_grad(set_to_none=True)
    timed(step, device, preset.warmup)
    train_s = timed(step, device, preset.iters)
    train_peak = mem.peak_mib()
    net.eval()
    with torch.no_grad():
        eval_flops = count_flops(lambda: net(x))
        timed(lambda: net(x), device, 1)
        eval_s = timed(lambda: net(x), device, preset.iters)
    step_s = median(train_s)
    gflops = flops / step_s / 1e9
    out = {
        "name": row.name, "model": row.model, "input_hw": list(row.hw), "batch": row.batch,
        "width": row.width, "net": dict(row.overrides),
        "train_step_s_median": step_s, "train_step_s": train_s,
        "train_iters_per_s": 1 / step_s, "train_images_per_s": row.batch / step_s,
        "eval_images_per_s": row.batch / median(eval_s), "eval_batch_s": eval_s,
        "peak_mem_mib": train_peak, "peak_mem_method": mem.method,
        "gflop_per_image": flops / row.batch / 1e9,
        "eval_gflop_per_image": eval_flops / row.batch / 1e9,
        "achieved_gflops": gflops, "pct_of_matmul_peak": 100 * gflops / peak,
    }
    del net, opt, params, x, y
    return out


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
    from fcnlab.boundary import BoundaryF1
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
    from fcnlab.models.convert import VGG16Classifier
    from fcnlab.models.patchwise import DenseClassifier, PatchClassifier, patchwise_per_pixel

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


def preset_dict(preset: Preset) -> dict:
    d = asdict(preset)
    d["rows"] = [asdict(r) for r in preset.rows]
    return d
