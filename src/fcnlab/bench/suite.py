"""How a model row is timed: the network ``train.py`` builds for a row (:func:`build_net`, from
the configs in :func:`default_conf_dir`), its training step and evaluation forward
(:class:`Steps`, through :mod:`fcnlab.fastpath` for a fast-path row), the activations a forward
keeps (:class:`ActivationMeter`), and one row's speed, FLOPs and memory (:func:`bench_row`).
Which rows there are: :mod:`fcnlab.bench.rows`."""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Mapping
from functools import lru_cache, partial
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from fcnlab.bench.measure import MIB, PeakMemory, count_flops, median, profile_ops, timed
from fcnlab.bench.rows import Preset, Row, is_memory_row
from fcnlab.config import instantiate

IGNORE = 255


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
