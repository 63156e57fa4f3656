"""The GPU check's model rows (:mod:`fcnlab.bench.gpu_check`): which networks, sizes, batches and
fast-path variants it times, at paper scale and in the dry run, and the child process that times
one row's variants with the benchmark's :func:`fcnlab.bench.suite.bench_row`."""

from __future__ import annotations

import argparse
import gc
import json
import os
from dataclasses import dataclass
from pathlib import Path

CAFFE = {"geometry": "caffe"}


@dataclass(frozen=True)
class Spec:
    """One model row at the papers' size and batch, and the dry run's tiny stand-in (same name)."""
    name: str
    model: str
    hw: tuple[int, int]
    batch: int
    classes: int
    net: dict
    dry_hw: tuple[int, int]
    dry_batch: int


SPECS = (
    # FCN-8s as the FCN paper trains it, one whole VOC image per step; also the memory target's row.
    Spec("fcn8s_500x375", "fcn8s", (500, 375), 1, 21, CAFFE, (32, 32), 1),
    # The throughput target's row (docs/benchmark.md: full width, 500×500, bf16, >= 100 img/s).
    Spec("fcn8s_500x500", "fcn8s", (500, 500), 8, 21, CAFFE, (32, 32), 2),
    # SegNet on CamVid's 360×480 at the paper's batch of 5 (docs/reference.md).
    Spec("segnet_360x480", "segnet", (360, 480), 5, 11, {}, (32, 32), 2),
)
SPEC_BY_NAME = {s.name: s for s in SPECS}
# fp32 is the plain row; the others are --fast settings of the benchmark (rows.FAST). Compile
# goes last: it takes the longest, so a phase that runs out of time loses only that row.
VARIANTS = ("fp32", "channels_last", "bf16", "channels_last+bf16", "compile")


@dataclass(frozen=True)
class Mode:
    dry: bool
    width: float
    iters: int  # timed steps per row (median reported)
    warmup: int
    matmul_n: int
    bench_timeout: float  # seconds per model-row phase
    train_timeout: float
    budget: float  # seconds for all phases together
    train: dict  # the synthetic data and schedule of the training phase


# GPU: three row phases of at most 110 s and training of at most 120 s fill the 450 s budget;
# with the start (imports, wheels) the check stays under 8 minutes.
GPU = Mode(False, 1.0, iters=10, warmup=3, matmul_n=8192, bench_timeout=110, train_timeout=120,
           budget=450, train=dict(image_size=[500, 375], num_train=32, num_val=8, num_test=1,
                                  batch_size=8, eval_batch_size=8, num_workers=8, steps=300))
DRY = Mode(True, 1 / 16, iters=2, warmup=0, matmul_n=256, bench_timeout=120, train_timeout=150,
           budget=420, train=dict(image_size=[40, 56], num_train=8, num_val=4, num_test=1,
                                  batch_size=2, eval_batch_size=4, num_workers=0, steps=3))


def write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- a model-row phase
def bench_worker(args: argparse.Namespace) -> int:
    """Child process: every variant of one model row, through the benchmark's ``bench_row``; the
    partial JSON is rewritten after each, so a timeout keeps the rows already measured."""
    import traceback

    import torch

    from fcnlab.bench import measure, rows, suite

    mode, spec = args.mode, SPEC_BY_NAME[args.worker]
    # What the imports made lives as long as the process: out of the collector's way, so each
    # peak-memory start's gc.collect() (two per row) scans the row's objects only (it took a
    # third of a second each on a loaded CPU, more than a dry-run row's steps).
    gc.freeze()
    device = torch.device("cpu") if mode.dry else measure.pick_device("cuda")
    measure.tune_allocator()
    preset = rows.Preset(rows=(), iters=mode.iters, warmup=mode.warmup, matmul_n=mode.matmul_n,
                         data={}, patch_hw=0, patch_width=0.0, data_row="")
    peak = measure.matmul_peak_gflops(device, mode.matmul_n, reps=5)
    out = {"row": spec.name, "device": device.type, "matmul_peak": peak, "rows": [],
           "machine": {"name": measure.device_name(device), "threads": torch.get_num_threads()}}
    hw, batch = (spec.dry_hw, spec.dry_batch) if mode.dry else (spec.hw, spec.batch)
    base = rows.Row(spec.name, spec.model, hw, batch, mode.width, dict(spec.net))
    for variant in VARIANTS:
        row = base if variant == "fp32" else rows.variant(base, variant)
        info = {"name": row.name, "group": spec.name, "variant": variant, "model": row.model,
                "input_hw": list(row.hw), "paper_hw": list(spec.hw), "batch": row.batch,
                "width": row.width, "num_classes": spec.classes, "fast": dict(row.fast)}
        if mode.dry and row.fast.get("compile"):
            info["status"] = ("skipped: dry run on the CPU; torch.compile takes minutes to "
                              "compile there (it runs on the GPU)")
        else:
            print(f"[gpu-check] {row.name} {hw[0]}x{hw[1]} batch {batch}", flush=True)
            try:
                res = suite.bench_row(row, suite.default_conf_dir(), device, preset,
                                      peak["gflops"], spec.classes)
                info.update(res, status="ok", ms_per_iter=res["train_step_s_median"] * 1e3)
            except Exception as e:  # noqa: BLE001  (a variant's failure is its row's result)
                traceback.print_exc()
                info["error"] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"
                info["status"] = f"error: {info['error']}"  # "error" keeps targets off the row
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        out["rows"].append(info)
        write_json(args.partial, out)
    return 0


def variant_suffix(variant: str) -> str:
    """``channels_last+bf16`` -> ``cl+bf16``: the suffix :func:`fcnlab.bench.rows.variant` gives
    the row's name (known here without importing the rows, for rows that never ran)."""
    return "+".join("cl" if part == "channels_last" else part for part in variant.split("+"))


def add_speedups(rows: list[dict]) -> None:
    """Each measured fast-path row's training and evaluation speed against its plain fp32 row."""
    plain = {r["group"]: r for r in rows if r.get("variant") == "fp32" and r["status"] == "ok"}
    for r in rows:
        base = plain.get(r.get("group"))
        if r.get("variant") != "fp32" and r["status"] == "ok" and base is not None:
            r["vs_fp32"] = {"train_speedup": r["train_iters_per_s"] / base["train_iters_per_s"],
                            "eval_speedup": r["eval_images_per_s"] / base["eval_images_per_s"]}
