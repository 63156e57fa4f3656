"""What the benchmark measures: model rows (optionally through the fast path), the data pipeline,
metric costs, patch-wise vs dense, and the targets they are checked against."""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache, partial
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from fcnlab.bench.measure import MIB, PeakMemory, count_flops, median, profile_ops, timed
from fcnlab.config import instantiate

IGNORE = 255
EXTRAS = ("data", "metrics", "patchwise")


@dataclass(frozen=True)
class Row:
    """One model configuration to time: ``model`` is a ``conf/model`` name. ``fast``: settings for
    :mod:`fcnlab.fastpath` (``channels_last``, ``precision``, ``compile``); empty = plain fp32
    eager, the path training takes by default."""

    name: str
    model: str
    hw: tuple[int, int]
    batch: int
    width: float
    overrides: dict = field(default_factory=dict)  # extra model.net keys (e.g. geometry)
    fast: dict = field(default_factory=dict)


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
    # rows that run only when named (--rows, --peer-row), e.g. full width on a CPU preset
    extra_rows: tuple[Row, ...] = ()
    peer_row: str = "fcn8s_caffe"  # --peer-row's default: our row timed against a --peer
    extras: tuple[str, ...] = EXTRAS  # which extra measurements the preset makes (--skip drops)


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


# The embedded recipe's FCN-8s: conf/scale/embedded.yaml's deviations (tests/bench checks that
# they agree), beside fcn8s_caffe, the network the embedded scale trained before it.
EMBEDDED_RECIPE = {"geometry": "aligned", "batch_norm": True, "fc_channels": 1024}


CAFFE = {"geometry": "caffe"}
# The paper's FCN-8s (full width) on a VOC-sized image at batch 1: the memory target's row.
MEMORY_ROW = Row("fcn8s_caffe_500x375_full", "fcn8s", (500, 375), 1, 1.0, CAFFE)
# Full-width FCN-8s at a size a 2-core CPU steps in seconds: the row a reference port (e.g.
# wkentaro/pytorch-fcn's torchfcn.models.FCN8s, full width, 21 classes) is timed against.
PEER_ROW = Row("fcn8s_caffe_full", "fcn8s", (256, 256), 1, 1.0, CAFFE)
EMBEDDED_DATA = dict(image_size=[96, 128], num_train=400, num_val=60, num_test=60,
                     batch_size=8, eval_batch_size=20)
PRESETS: dict[str, Preset] = {
    # seconds: for tests and smoke runs
    "tiny": Preset(_rows(1 / 16, (64, 64), 2, 2), iters=1, warmup=0, matmul_n=512,
                   data=dict(image_size=[40, 56], num_train=16, num_val=6, num_test=6,
                             batch_size=4, eval_batch_size=6),
                   patch_hw=32, patch_width=1 / 16, data_row="fcn8s_caffe",
                   extra_rows=(Row("fcn8s_caffe_b1", "fcn8s", (64, 64), 1, 1 / 16, CAFFE),),
                   peer_row="fcn8s_caffe_b1"),
    # the default: embedded scale (width 1/8, 96×128, batch 8), a few minutes on a 2-core CPU
    "small": Preset(_rows(1 / 8, (96, 128), 8, 8) + (
        Row("fcn8s_embedded", "fcn8s", (96, 128), 8, 1 / 8, EMBEDDED_RECIPE),
        Row("fcn8s_aligned_256_w4", "fcn8s", (256, 256), 8, 1 / 4, {"geometry": "aligned"}),),
        iters=3, warmup=1, matmul_n=2048, data=EMBEDDED_DATA, patch_hw=128, patch_width=1 / 8,
        data_row="fcn8s_caffe", extra_rows=(PEER_ROW, MEMORY_ROW), peer_row=PEER_ROW.name),
    # the papers' networks and sizes: for a GPU
    "paper": Preset(_rows(1.0, (500, 375), 1, 8, segnet_hw=(360, 480), deeplab_hw=(321, 321),
                          deeplab_batch=10) + (
        Row("fcn8s_caffe_500sq_b8", "fcn8s", (500, 500), 8, 1.0, {"geometry": "caffe"}),),
        iters=5, warmup=2, matmul_n=8192, data=EMBEDDED_DATA, patch_hw=128, patch_width=1 / 8,
        data_row="fcn8s_caffe", extra_rows=(PEER_ROW,), peer_row="fcn8s_caffe"),
    # the memory targets only: a full-width FCN-8s training step on 500×375 at batch 1 (the
    # FLOP-counting step, which is also the warm-up, then one timed step) and its evaluation;
    # about a minute on a 2-core CPU. Its own preset so that `small` stays a few minutes.
    "memory": Preset((MEMORY_ROW,), iters=1, warmup=0, matmul_n=1024, data=EMBEDDED_DATA,
                     patch_hw=128, patch_width=1 / 8, data_row=MEMORY_ROW.name,
                     peer_row=MEMORY_ROW.name, extras=()),
}

# --fast names: (row-name suffix, fastpath settings)
FAST = {
    "channels_last": ("cl", {"channels_last": True}),
    "cl": ("cl", {"channels_last": True}),
    "bf16": ("bf16", {"precision": "bf16-mixed"}),
    "fp16": ("fp16", {"precision": "16-mixed"}),
    "compile": ("compile", {"compile": True}),
}


def variant(row: Row, spec: str) -> Row:
    """``row`` through the fast path: ``spec`` is ``+``-joined :data:`FAST` names
    (``channels_last+bf16``); the row is named ``<row>+cl+bf16``."""
    fast, suffixes = dict(row.fast), []
    for part in spec.split("+"):
        if part not in FAST:
            raise ValueError(f"--fast {spec}: unknown setting {part!r}; expected "
                             f"{', '.join(FAST)} (joined by '+' to combine)")
        suffix, settings = FAST[part]
        fast.update(settings)
        suffixes.append(suffix)
    return replace(row, name="+".join([row.name, *suffixes]), fast=fast)


def resolve_row(preset: Preset, name: str) -> Row:
    """A row of the preset (or one of its extra rows) by name, with ``+cl`` / ``+bf16`` /
    ``+compile`` ... suffixes for fast-path variants. ``KeyError`` names what there is."""
    base, *mods = name.split("+")
    for row in preset.rows + preset.extra_rows:
        if row.name == base:
            return variant(row, "+".join(mods)) if mods else row
    raise KeyError(name)


def row_names(preset: Preset) -> list[str]:
    return [r.name for r in preset.rows + preset.extra_rows]


def default_conf_dir() -> Path:
    here = Path(__file__).resolve().parents[3] / "conf"
    return here if here.is_dir() else Path("conf")


def default_data_dir() -> Path:
    env = os.environ.get("FCNLAB_DATA_DIR")
    return Path(env) if env else default_conf_dir().parent / "data"


@lru_cache(maxsize=None)
def _net_config(conf_dir: str, model: str) -> dict:
    # Composed once per model and process: a compose costs about a second of CPU, which the
    # fast-path variants of one model (and the GPU check's dry run) would pay per row.
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            cfg = compose("train", overrides=[f"model={model}"])
    finally:
        GlobalHydra.instance().clear()
    return OmegaConf.to_container(cfg.model.net, resolve=False)


def build_net(conf_dir: Path, row: Row, num_classes: int) -> torch.nn.Module:
    """The network ``train.py model=<row.model>`` builds, at the row's width and classes."""
    net_cfg = copy.deepcopy(_net_config(str(conf_dir.resolve()), row.model))
    net_cfg.update(num_classes=num_classes, width=row.width, **row.overrides)
    return instantiate(net_cfg)


def _fastpath():
    try:
        from fcnlab import fastpath
    except ImportError as e:
        raise RuntimeError(f"fast-path rows need fcnlab.fastpath: {e}") from e
    return fastpath


def logits(out) -> torch.Tensor:
    """The score map of a network's output: the tensor itself, ``out["out"]`` (torchvision's
    segmentation models) or the first element of a tuple."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping):
        return out["out"]
    if isinstance(out, (tuple, list)):
        return out[0]
    raise TypeError(f"network output: expected a tensor, mapping or tuple, got {type(out)}")


class Steps:
    """One network's training step (forward, cross-entropy, backward, SGD step) and evaluation
    forward on a fixed batch ``x`` / target ``y``; with ``fast`` settings, through
    :mod:`fcnlab.fastpath` (``prepare`` the network, in place, ``to_input`` the batch, forward
    and loss under its ``autocast``). Count FLOPs on a plain ``Steps`` made before a fast one:
    a compiled module compiles on its first call."""

    def __init__(self, net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                 device: torch.device, fast: dict | None = None):
        self.y = y
        self.fast = dict(fast or {})
        if self.fast:
            fp = _fastpath()
            cl = bool(self.fast.get("channels_last"))
            self.net = fp.prepare(net, channels_last=cl, compile=bool(self.fast.get("compile")))
            self.x = fp.to_input(x, cl)
            precision = self.fast.get("precision", "32-true")
            self.autocast = lambda: fp.autocast(device.type, precision)
        else:
            self.net, self.x = net, x
            self.autocast = contextlib.nullcontext
        params = [p for p in self.net.parameters() if p.requires_grad]
        self.opt = torch.optim.SGD(params, lr=1e-6, momentum=0.9)

    def fwd_bwd(self) -> None:
        with self.autocast():
            loss = F.cross_entropy(logits(self.net(self.x)), self.y, ignore_index=IGNORE)
        loss.backward()

    def train(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        self.fwd_bwd()
        self.opt.step()

    def eval(self) -> torch.Tensor:
        with torch.no_grad(), self.autocast():
            return logits(self.net(self.x))


class ActivationMeter:
    """Bytes of the outputs of a network's leaf modules over the forward passes run inside the
    ``with`` block (a module that writes in place into its input, like ``ReLU(inplace=True)``,
    adds nothing): about what a training forward keeps for its backward."""

    def __init__(self, net: torch.nn.Module):
        self.net, self.bytes, self._handles = net, 0, []

    def _hook(self, module, inputs, out):
        ptrs = {t.data_ptr() for t in inputs if isinstance(t, torch.Tensor)}
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.data_ptr() not in ptrs:
                self.bytes += t.numel() * t.element_size()

    def __enter__(self):
        self._handles = [m.register_forward_hook(self._hook) for m in self.net.modules()
                         if next(m.children(), None) is None]
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []


def bench_row(row: Row, conf_dir: Path, device: torch.device, preset: Preset, peak: float,
              num_classes: int, profile: dict | None = None) -> dict:
    """Training step (forward, loss, backward, SGD step) and evaluation forward of one row.

    ``profile`` (``{"steps": 2, "top": 8}``): also profile that many training steps and list the
    top ops by self time. A ``compile`` row's first call (compilation) of each step is timed
    apart (``compile_s``) and not part of the it/s.
    """
    mem = PeakMemory(device)
    mem.start()
    torch.manual_seed(0)
    net = build_net(conf_dir, row, num_classes).to(device)
    x = torch.randn(row.batch, 3, *row.hw, device=device)
    y = torch.randint(0, num_classes, (row.batch, *row.hw), device=device)
    plain = Steps(net, x, y, device)
    net.eval()
    with torch.no_grad(), ActivationMeter(net) as acts:
        eval_flops = count_flops(partial(net, x))
    net.train()
    flops = count_flops(plain.fwd_bwd)  # also the first warm-up step (allocates the gradients)
    steps = Steps(net, x, y, device, row.fast) if row.fast else plain
    del plain
    compiled = bool(row.fast.get("compile"))
    compile_s = {}
    if compiled:
        compile_s["train"] = timed(steps.train, device, 1)[0]
    timed(steps.train, device, preset.warmup)
    train_s = timed(steps.train, device, preset.iters)
    train_peak = mem.peak_mib()
    prof = profile_ops(steps.train, device, **profile) if profile else None
    steps.opt.zero_grad(set_to_none=True)
    net.eval()
    eval_mem = PeakMemory(device)
    eval_mem.start()
    if compiled:
        compile_s["eval"] = timed(steps.eval, device, 1)[0]
    timed(steps.eval, device, 1)
    eval_s = timed(steps.eval, device, preset.iters)
    eval_peak = eval_mem.peak_mib()
    extra_image_mib = None
    if is_memory_row(row):
        # What each image in the batch adds to evaluation's peak: the slope between batches 2
        # and 4 (at batch 1 the peak can be the weights' transient copies, not activations).
        peaks = []
        for n in (2, 4):
            xn = x[:1].expand(n, *x.shape[1:]).contiguous()
            eval_mem.start()
            with torch.no_grad():
                net(xn)
            peaks.append(eval_mem.peak_mib())
            del xn
        extra_image_mib = max(0.0, (peaks[1] - peaks[0]) / 2)
    step_s = median(train_s)
    gflops = flops / step_s / 1e9
    out = {
        "name": row.name, "model": row.model, "input_hw": list(row.hw), "batch": row.batch,
        "width": row.width, "net": dict(row.overrides), "fast": dict(row.fast),
        "train_step_s_median": step_s, "train_step_s": train_s,
        "train_iters_per_s": 1 / step_s, "train_images_per_s": row.batch / step_s,
        "eval_images_per_s": row.batch / median(eval_s), "eval_batch_s": eval_s,
        "peak_mem_mib": train_peak, "peak_mem_method": mem.method,
        "eval_peak_mem_mib": eval_peak, "eval_peak_mem_mib_per_image": eval_peak / row.batch,
        "activation_mib_per_image": acts.bytes / MIB / row.batch,
        "eval_peak_mem_mib_extra_image": extra_image_mib,
        "gflop_per_image": flops / row.batch / 1e9,
        "eval_gflop_per_image": eval_flops / row.batch / 1e9,
        "achieved_gflops": gflops, "pct_of_matmul_peak": 100 * gflops / peak,
    }
    if compiled:
        out["compile_s"] = compile_s
    if prof:
        out["profile"] = prof
    del net, steps, x, y
    return out


# ----------------------------------------------------------------------------- targets
TRAIN_MEMORY_LIMIT_MIB = 6 * 1024  # GiB of host memory for a full-width FCN-8s step on 500×375


def is_memory_row(row: Row | dict) -> bool:
    """Full-width caffe-geometry FCN-8s on a 500×375 (or 375×500) image at batch 1, plain path:
    the row the memory targets are checked on (a :class:`Row` or a result row)."""
    if isinstance(row, Row):
        row = {"model": row.model, "net": row.overrides, "width": row.width,
               "batch": row.batch, "fast": row.fast, "input_hw": list(row.hw)}
    return (row.get("model") == "fcn8s" and row.get("net", {}).get("geometry", "caffe") == "caffe"
            and row.get("width") == 1.0 and row.get("batch") == 1 and not row.get("fast")
            and sorted(row.get("input_hw", [])) == [375, 500] and "error" not in row)


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


def preset_dict(preset: Preset) -> dict:
    d = asdict(preset)
    d["rows"] = [asdict(r) for r in preset.rows]
    d["extra_rows"] = [asdict(r) for r in preset.extra_rows]
    return d
