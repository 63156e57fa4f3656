"""``python -m fcnlab.bench [--preset tiny|small|paper] [--out bench.json] [--device auto]``."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from fcnlab.bench import measure, suite


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fcnlab.bench",
                                description=(sys.modules["fcnlab.bench"].__doc__ or "")
                                .splitlines()[0])
    p.add_argument("--preset", choices=sorted(suite.PRESETS), default="small")
    p.add_argument("--out", type=Path, default=Path("bench.json"), help="JSON results file")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--rows", nargs="+", default=None, help="only these rows (by name)")
    p.add_argument("--iters", type=int, default=None, help="timed steps per row (preset's)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps per row (preset's)")
    p.add_argument("--conf", type=Path, default=suite.default_conf_dir())
    p.add_argument("--data-dir", type=Path, default=suite.default_data_dir(),
                   help="where the synthetic data is (written on first use)")
    p.add_argument("--skip", nargs="+", default=[], choices=("data", "metrics", "patchwise"),
                   help="leave out these extra measurements")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    preset = suite.PRESETS[args.preset]
    if args.iters or args.warmup is not None:
        from dataclasses import replace
        preset = replace(preset, iters=args.iters or preset.iters,
                         warmup=preset.warmup if args.warmup is None else args.warmup)
    rows = [r for r in preset.rows if args.rows is None or r.name in args.rows]
    if args.rows and not rows:
        raise SystemExit(f"error: --rows: no row named {args.rows}; rows of preset "
                         f"{args.preset}: {[r.name for r in preset.rows]}")
    if args.threads:
        torch.set_num_threads(args.threads)
    measure.tune_allocator()
    device = measure.pick_device(args.device)
    started = time.perf_counter()
    peak = measure.matmul_peak_gflops(device, preset.matmul_n, reps=5)
    result = {
        "machine": {"device": device.type, "name": measure.device_name(device),
                    "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "python": platform.python_version(), "matmul_peak": peak},
        "preset": args.preset, "config": suite.preset_dict(preset), "rows": [],
    }
    dm = num_classes = None
    if not {"data", "metrics"} <= set(args.skip):
        dm, num_classes = suite.make_datamodule(args.conf, args.data_dir, preset.data)
    k = num_classes or 11
    for row in rows:
        print(f"[bench] {row.name} {row.hw[0]}x{row.hw[1]} batch {row.batch} width {row.width:g}",
              file=sys.stderr, flush=True)
        result["rows"].append(suite.bench_row(row, args.conf, device, preset, peak["gflops"], k))
    by_name = {r["name"]: r for r in result["rows"]}
    if "fcn8s_caffe" in by_name and "fcn8s_aligned" in by_name:
        c, a = by_name["fcn8s_caffe"], by_name["fcn8s_aligned"]
        result["aligned_vs_caffe"] = {
            "input_hw": c["input_hw"], "batch": c["batch"], "width": c["width"],
            "train_speedup": a["train_iters_per_s"] / c["train_iters_per_s"],
            "eval_speedup": a["eval_images_per_s"] / c["eval_images_per_s"],
            "flop_ratio": c["gflop_per_image"] / a["gflop_per_image"]}
    if "data" not in args.skip:
        print("[bench] data pipeline", file=sys.stderr, flush=True)
        data = suite.bench_data(dm, batches=max(4, 2 * preset.iters))
        for name in (preset.data_row, "fcn8s_aligned"):
            if name in by_name:
                data[f"ratio_vs_{name}"] = data["images_per_s"] / by_name[name]["train_images_per_s"]
        result["data_pipeline"] = data
    if "metrics" not in args.skip:
        print("[bench] metric costs", file=sys.stderr, flush=True)
        row = next(r for r in suite.PRESETS[args.preset].rows if r.name == preset.data_row)
        torch.manual_seed(0)
        net = suite.build_net(args.conf, row, k).to(device)
        result["metrics_cost"] = dict(suite.bench_metrics(dm, net, device, k, preset.iters),
                                      model=row.name, width=row.width)
        del net
    if "patchwise" not in args.skip:
        print("[bench] patch-wise vs dense", file=sys.stderr, flush=True)
        result["patchwise_vs_dense"] = suite.bench_patchwise(
            device, preset.patch_hw, preset.patch_width, k, reps=max(2, preset.iters))
    result["wall_s"] = time.perf_counter() - started
    return result


def fmt(x: float, digits: int = 3) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def table(result: dict) -> str:
    m = result["machine"]
    lines = [f"fcnlab.bench preset={result['preset']} on {m['device']} ({m['name']}, "
             f"{m['threads']} threads, torch {m['torch']}); fp32 matmul peak "
             f"{m['matmul_peak']['gflops']:.1f} GFLOP/s ({m['matmul_peak']['n']}^3, best of "
             f"{m['matmul_peak']['reps']})", ""]
    head = ("| row | input | batch | width | train it/s | train img/s | eval img/s | peak MiB | "
            "GFLOP/img (f+b) | GFLOP/s | % peak |")
    lines += [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(
            f"| {r['name']} | {r['input_hw'][0]}x{r['input_hw'][1]} | {r['batch']} | "
            f"{r['width']:g} | {fmt(r['train_iters_per_s'])} | {fmt(r['train_images_per_s'])} | "
            f"{fmt(r['eval_images_per_s'])} | {r['peak_mem_mib']:,.0f} | "
            f"{fmt(r['gflop_per_image'])} | {fmt(r['achieved_gflops'])} | "
            f"{r['pct_of_matmul_peak']:.0f} |")
    lines.append("")
    if a := result.get("aligned_vs_caffe"):
        lines.append(f"aligned_vs_caffe (fcn8s {a['input_hw'][0]}x{a['input_hw'][1]}, batch "
                     f"{a['batch']}, width {a['width']:g}): training {a['train_speedup']:.2f}x "
                     f"faster, evaluation {a['eval_speedup']:.2f}x, {a['flop_ratio']:.2f}x fewer "
                     f"FLOPs")
    if d := result.get("data_pipeline"):
        ratios = ", ".join(f"{v:.1f}x the {k[len('ratio_vs_'):]} training step"
                           for k, v in d.items() if k.startswith("ratio_vs_"))
        lines.append(f"data_pipeline: {d['images_per_s']:.0f} images/s (decode+augment+collate, "
                     f"{d['num_workers']} workers, batch {d['batch_size']}): {ratios}")
    if c := result.get("metrics_cost"):
        lines.append(f"metrics_cost (eval batch {c['eval_batch']} of {c['image_hw'][0]}x"
                     f"{c['image_hw'][1]}, {c['model']}): confusion matrix "
                     f"{c['confmat_share_pct']:.2f}%, BF {c['bf_share_pct']:.1f}% of the pass "
                     f"(forward {c['forward_s'] * 1e3:.0f} ms, confmat "
                     f"{c['confmat_update_s'] * 1e3:.1f} ms, BF {c['bf_update_s'] * 1e3:.1f} ms)")
    if p := result.get("patchwise_vs_dense"):
        lines.append(f"patchwise_vs_dense ({p['image_hw'][0]}x{p['image_hw'][1]}, width "
                     f"{p['width']:g}): {p['ratio']:,.0f}x (patch-wise {p['patchwise_s_per_image']:.1f}"
                     f" s/image = {p['patch_s'] * 1e3:.1f} ms x {p['image_hw'][0] * p['image_hw'][1]}"
                     f" patches; dense {p['dense_s_per_image'] * 1e3:.0f} ms/image; scores agree to "
                     f"{p['max_rel_diff']:.1e})")
    lines.append(f"wall time {result['wall_s']:.0f} s")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse(argv)
    result = run(args)
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
