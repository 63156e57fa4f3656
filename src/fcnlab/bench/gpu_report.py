"""What the GPU check (:mod:`fcnlab.bench.gpu_check`) records about where it ran (packages,
device, commit), the targets it judges and its readable table (``docs/bench/gpu-<tag>.txt``)."""

from __future__ import annotations

import os
import subprocess
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
# Import name -> distribution: what the phases import (train.py's data needs albumentations).
NEEDS = {"hydra": "hydra-core", "omegaconf": "omegaconf", "lightning": "lightning",
         "torchmetrics": "torchmetrics", "albumentations": "albumentations",
         "cv2": "opencv-python-headless", "scipy": "scipy", "yaml": "PyYAML", "PIL": "pillow",
         "rich": "rich", "matplotlib": "matplotlib"}


def preflight() -> dict:
    missing = [f"{mod} ({dist})" for mod, dist in NEEDS.items()
               if find_spec(mod) is None]
    versions = {}
    for dist in ("torch", *NEEDS.values()):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    record = {"name": "preflight", "status": "failed" if missing else "ok", "versions": versions}
    if missing:
        record["error"] = ("missing Python packages: " + ", ".join(missing) + "; carry them as "
                           "wheels (scripts/gpu_check.sh --fetch-wheels, docs/benchmark.md)")
    return record


def machine(dry: bool) -> dict:
    """The device and library versions. The dry run's parent does not import torch (seconds of
    a loaded CPU): its row phases add the CPU's name and thread count."""
    import platform

    info = {"device": "cpu" if dry else "cuda", "torch": metadata.version("torch"),
            "python": platform.python_version(), "cpu_count": os.cpu_count()}
    if dry:
        return info
    import torch

    props = torch.cuda.get_device_properties(0)
    info.update(torch=torch.__version__, cuda=torch.version.cuda, name=props.name,
                memory_gib=round(props.total_memory / 2 ** 30, 1),
                capability=f"{props.major}.{props.minor}", cudnn=torch.backends.cudnn.version(),
                cudnn_benchmark=torch.backends.cudnn.benchmark,
                cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                float32_matmul_precision=torch.get_float32_matmul_precision())
    try:
        info["driver"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["driver"] = None
    return info


def git_commit(given: str | None) -> dict:
    """``--commit``, else this checkout's HEAD, else $FCNLAB_COMMIT: a GPU machine's copy of
    the repository may have no ``.git``."""
    if given:
        return {"sha": given, "dirty": None, "from": "--commit"}

    def git(*words: str) -> str:
        return subprocess.run(["git", *words], cwd=ROOT, capture_output=True, text=True,
                              timeout=20).stdout.strip()

    try:
        if sha := git("rev-parse", "HEAD"):
            return {"sha": sha, "from": "git",
                    "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        pass
    return {"sha": os.environ.get("FCNLAB_COMMIT"), "dirty": None, "from": "FCNLAB_COMMIT"}


# docs/benchmark.md, "Targets": stated for an H100; an H200 has the same arithmetic rates.
THROUGHPUT_TARGET = ("FCN-8s full width, 500x500, bf16: >= 100 training images/s (stated for "
                     "an H100)", "fcn8s_500x500", 100.0)


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return ""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.{digits}g}"


def targets(result: dict) -> list[dict]:
    """The benchmark's targets that the paper-scale rows measure (the training step's peak GPU
    memory, evaluation's memory per image: :func:`fcnlab.bench.targets.targets` on the
    fcn8s_500x375 row) and the bf16 throughput target. None in a dry run: its sizes are tiny."""
    if result["dry_run"]:
        return []
    ok = [r for r in result["rows"] if r["status"] == "ok"]
    try:
        from fcnlab.bench.targets import targets as judge
    except ImportError:  # the check's preflight says what is missing
        out = []
    else:
        out = judge({"rows": ok})
    text, group, limit = THROUGHPUT_TARGET
    bf16 = [r for r in ok if r["group"] == group and "bf16" in r["variant"]]
    if bf16:
        best = max(bf16, key=lambda r: r["train_images_per_s"])
        out.append({"target": text, "row": best["name"], "value": best["train_images_per_s"],
                    "unit": "img/s", "limit": limit, "met": best["train_images_per_s"] >= limit,
                    "measured_on": result["machine"].get("name")})
    return out


def _header(result: dict) -> list[str]:
    m, c = result["machine"], result["commit"]
    dirty = {True: " (uncommitted changes)", False: "", None: ""}[c.get("dirty")]
    lines = [f"fcnlab GPU check '{result['tag']}', {result['date']}, commit "
             f"{c.get('sha') or 'unknown'}{dirty}"]
    if result["dry_run"]:
        lines.append("DRY RUN: on the CPU at tiny width, sizes and iterations; these are not GPU "
                     "numbers (the row names give the sizes the GPU run uses)")
    dev = f"{m['device']}: {m.get('name')}"
    if m["device"] == "cuda":
        dev += (f", {m.get('memory_gib')} GiB, capability {m.get('capability')}, driver "
                f"{m.get('driver')}, CUDA {m.get('cuda')}, cuDNN {m.get('cudnn')}")
    threads = f", {m['threads']} torch threads" if m.get("threads") else ""
    lines.append(f"{dev}; torch {m['torch']}, Python {m['python']}{threads}")
    peaks = [p["matmul_peak"] for p in result["phases"] if p.get("matmul_peak")]
    if peaks:
        best = max(p["gflops"] for p in peaks)
        lines.append(f"fp32 matmul peak {fmt(best / 1e3)} TFLOP/s ({peaks[0]['n']}^3, best of "
                     f"{peaks[0]['reps']}, per row phase)")
    return lines


def _rows(result: dict) -> list[str]:
    mode = result["settings"]["mode"]
    lines = [f"Training step = forward, loss, backward, SGD step on one fixed batch; median of "
             f"{mode['iters']} steps after {mode['warmup']} warm-up (compile rows: compilation "
             "timed apart). peak MiB = torch.cuda.max_memory_allocated over the row (on the CPU "
             "the resident set). fp32 = plain eager float32 (cuDNN's own TF32 setting as "
             "recorded in machine).", "",
             "| row | variant | input | batch | width | ms/iter | train it/s | train img/s | "
             "eval img/s | peak MiB | vs fp32 | status |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {r['name']} | {r.get('variant', '')} | | | | | | | | | | "
                         f"{r['status'][:160]} |")
            continue
        v = r.get("vs_fp32")
        speedup = f"{v['train_speedup']:.2f}x" if v else ""
        comp = r.get("compile_s")
        status = "ok" + (f" (compile {comp.get('train', 0):.0f} s + {comp.get('eval', 0):.0f} s)"
                         if comp else "")
        lines.append(
            f"| {r['name']} | {r['variant']} | {r['input_hw'][0]}x{r['input_hw'][1]} | "
            f"{r['batch']} | {r['width']:g} | {fmt(r['ms_per_iter'])} | "
            f"{fmt(r['train_iters_per_s'])} | {fmt(r['train_images_per_s'])} | "
            f"{fmt(r['eval_images_per_s'])} | {r['peak_mem_mib']:,.0f} | "
            f"{speedup} | {status} |")
    return lines


def _train(result: dict) -> list[str]:
    t = result.get("train")
    if not t:
        return ["training: not run"]
    lines = [f"training: {t['command']}",
             f"  {t.get('iterations')} of {t['steps_asked']} iterations (run record status "
             f"{t.get('status')}), {t['image_size'][0]}x{t['image_size'][1]}, batch "
             f"{t['batch_size']}, width {t['width']:g}, lr {t.get('lr')}, precision "
             f"{t.get('precision')}"]
    if "iters_per_s" in t:
        lines.append(f"  {fmt(t['iters_per_s'])} it/s = {fmt(t.get('images_per_s'))} img/s "
                     f"(median iteration {fmt(t['step_s_median'] * 1e3)} ms; mean over the run "
                     f"{fmt(t['iters_per_s_mean'])} it/s; first iteration "
                     f"{fmt(t.get('first_iteration_s'))} s)")
    if "final_loss" in t:
        lines.append(f"  train loss {fmt(t['first_loss'])} at the first iteration, "
                     f"{fmt(t['final_loss'])} at the last (mean of the last 10: "
                     f"{fmt(t['final_loss_mean_last_10'])})")
    if t.get("val"):
        keys = [k for k in ("mean_iou", "pixel_acc", "mean_acc", "fw_iou", "bf", "loss")
                if k in t["val"]]
        keys += [k for k in t["val"] if k not in keys and k != "iteration"]
        lines.append(f"  validation at iteration {t['val'].get('iteration')}: "
                     + ", ".join(f"{k} {fmt(t['val'][k])}" for k in keys))
    return lines


def table(result: dict) -> str:
    lines = _header(result) + [""] + _rows(result) + [""] + _train(result) + ["", "phases:"]
    for p in result["phases"]:
        extra = (f" ({p['seconds']:.0f} s of {p['timeout_s']:.0f})" if "seconds" in p else "")
        note = p.get("error") or p.get("skipped") or ""
        lines.append(f"  {p['status']:8} {p['name']}{extra}{': ' + note if note else ''}")
    if result.get("targets"):
        lines.append("targets:")
        for t in result["targets"]:
            lines.append(f"  {'met   ' if t['met'] else 'MISSED'} {t['target']} [{t['row']}]: "
                         f"{fmt(t['value'])} {t['unit']} (limit {fmt(t['limit'])})")
    lines.append(f"{'all phases passed' if result.get('ok') else 'NOT all phases passed'}; "
                 f"wall time {result.get('wall_s', 0):.0f} s")
    return "\n".join(lines)
