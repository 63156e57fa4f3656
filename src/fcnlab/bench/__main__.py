"""``python -m fcnlab.bench [--preset tiny|small|paper|memory] [--out bench.json] [--device auto]
[--rows ...] [--fast ...] [--profile] [--peer MODULE:CALLABLE ...]``; see :mod:`fcnlab.bench`."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from fcnlab.bench import extras, measure, peer, suite
from fcnlab.bench.rows import (
    EXTRAS,
    FAST,
    PRESETS,
    Preset,
    Row,
    preset_dict,
    resolve_row,
    row_names,
    variant,
)
from fcnlab.bench.targets import targets as judge


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fcnlab.bench",
                                description=(sys.modules["fcnlab.bench"].__doc__ or "")
                                .splitlines()[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="small")
    p.add_argument("--out", type=Path, default=Path("bench.json"), help="JSON results file")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--rows", nargs="+", default=None,
                   help="only these rows (by name; the preset's extra rows too, and fast-path "
                        "variants such as fcn8s_caffe+cl)")
    p.add_argument("--iters", type=int, default=None, help="timed steps per row (preset's)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps per row (preset's)")
    p.add_argument("--conf", type=Path, default=suite.default_conf_dir())
    p.add_argument("--data-dir", type=Path, default=suite.default_data_dir(),
                   help="where the synthetic data is (written on first use)")
    p.add_argument("--skip", nargs="+", default=[], choices=("rows",) + EXTRAS,
                   help="leave out these measurements (rows: the model rows)")
    p.add_argument("--fast", nargs="+", default=[], metavar="SETTING",
                   help="also time each row through fcnlab.fastpath with these settings, one "
                        f"variant row each (<row>+cl, ...): {', '.join(FAST)}; join by "
                        "'+' to combine (channels_last+bf16)")
    p.add_argument("--profile", action="store_true",
                   help="profile training steps of each row (and the peer comparison): top ops "
                        "by self time")
    p.add_argument("--profile-steps", type=int, default=2)
    p.add_argument("--profile-top", type=int, default=8)
    p.add_argument("--peer", default=None, metavar="MODULE:CALLABLE",
                   help="a reference implementation to time against --peer-row: "
                        "'package.module:Class' (importable, e.g. torchfcn.models:FCN8s) or "
                        "'path/to/file.py:Class'")
    p.add_argument("--peer-kwargs", default="{}", metavar="JSON",
                   help="keyword arguments for the peer, as JSON (e.g. '{\"n_class\": 21}')")
    p.add_argument("--peer-row", default=None,
                   help="our row to time against the peer (the preset's peer_row by default)")
    p.add_argument("--peer-reps", type=int, default=None,
                   help="interleaved reps of each (default: max(3, the preset's iters))")
    args = p.parse_args(argv)
    try:
        args.peer_kwargs = json.loads(args.peer_kwargs)
    except json.JSONDecodeError as e:
        p.error(f"--peer-kwargs: not JSON: {e}")
    if not isinstance(args.peer_kwargs, dict):
        p.error("--peer-kwargs: expected a JSON object")
    return args


def select_rows(args: argparse.Namespace, preset: Preset) -> list[Row]:
    if "rows" in args.skip:
        return []
    names = row_names(preset)
    if args.rows is None:
        rows = list(preset.rows)
    else:
        rows = []
        for name in args.rows:
            try:
                rows.append(resolve_row(preset, name))
            except KeyError:
                raise SystemExit(f"error: --rows: no row named {name!r}; rows of preset "
                                 f"{args.preset}: {names}") from None
            except ValueError as e:
                raise SystemExit(f"error: --rows {name}: {e}") from None
    out = []
    for row in rows:
        out.append(row)
        for spec in args.fast:
            try:
                out.append(variant(row, spec))
            except ValueError as e:
                raise SystemExit(f"error: {e}") from None
    return out


def run(args: argparse.Namespace) -> dict:
    preset = PRESETS[args.preset]
    if args.iters or args.warmup is not None:
        from dataclasses import replace
        preset = replace(preset, iters=args.iters or preset.iters,
                         warmup=preset.warmup if args.warmup is None else args.warmup)
    rows = select_rows(args, preset)
    peer_row = None
    if args.peer:
        name = args.peer_row or preset.peer_row
        try:
            peer_row = resolve_row(preset, name)
        except (KeyError, ValueError):
            raise SystemExit(f"error: --peer-row: no row named {name!r}; rows of preset "
                             f"{args.preset}: {row_names(preset)}") from None
        try:  # fail on a bad path before minutes of rows
            peer.load_peer(args.peer)
        except peer.PeerError as e:
            raise SystemExit(f"error: {e}") from None
    skip = set(args.skip) | (set(EXTRAS) - set(preset.extras))
    profile = ({"steps": args.profile_steps, "top": args.profile_top} if args.profile else None)
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
        "preset": args.preset, "config": preset_dict(preset), "rows": [],
    }
    dm = num_classes = None
    if not {"data", "metrics"} <= skip:
        dm, num_classes = extras.make_datamodule(args.conf, args.data_dir, preset.data)
    k = num_classes or 11
    for row in rows:
        print(f"[bench] {row.name} {row.hw[0]}x{row.hw[1]} batch {row.batch} width {row.width:g}",
              file=sys.stderr, flush=True)
        if not row.fast:
            result["rows"].append(suite.bench_row(row, args.conf, device, preset, peak["gflops"],
                                                  k, profile))
            continue
        try:  # a fast-path setting this machine lacks (a compiler, bf16) is a row's result
            result["rows"].append(suite.bench_row(row, args.conf, device, preset,
                                                  peak["gflops"], k, profile))
        except Exception as e:  # noqa: BLE001
            print(f"[bench] {row.name} failed: {type(e).__name__}: {e}", file=sys.stderr)
            result["rows"].append({"name": row.name, "model": row.model,
                                   "input_hw": list(row.hw), "batch": row.batch,
                                   "width": row.width, "fast": dict(row.fast),
                                   "error": f"{type(e).__name__}: {e}"})
    ok = [r for r in result["rows"] if "error" not in r]
    by_name = {r["name"]: r for r in ok}
    for r in ok:  # fast-path variants against their plain row
        base = by_name.get(r["name"].split("+")[0])
        if r.get("fast") and base is not None and base is not r:
            r["vs_plain"] = {"row": base["name"],
                             "train_speedup": r["train_iters_per_s"] / base["train_iters_per_s"],
                             "eval_speedup": r["eval_images_per_s"] / base["eval_images_per_s"]}
    if "fcn8s_caffe" in by_name and "fcn8s_aligned" in by_name:
        c, a = by_name["fcn8s_caffe"], by_name["fcn8s_aligned"]
        result["aligned_vs_caffe"] = {
            "input_hw": c["input_hw"], "batch": c["batch"], "width": c["width"],
            "train_speedup": a["train_iters_per_s"] / c["train_iters_per_s"],
            "eval_speedup": a["eval_images_per_s"] / c["eval_images_per_s"],
            "flop_ratio": c["gflop_per_image"] / a["gflop_per_image"]}
    if peer_row is not None:
        print(f"[bench] peer {args.peer} vs {peer_row.name} {peer_row.hw[0]}x{peer_row.hw[1]} "
              f"batch {peer_row.batch} width {peer_row.width:g}", file=sys.stderr, flush=True)
        try:
            result["peer"] = peer.bench_peer(
                args.peer, args.peer_kwargs, peer_row, args.conf, device,
                reps=args.peer_reps or max(3, preset.iters), warmup=preset.warmup,
                profile=profile)
        except peer.PeerError as e:
            raise SystemExit(f"error: {e}") from None
    if "data" not in skip:
        print("[bench] data pipeline", file=sys.stderr, flush=True)
        data = extras.bench_data(dm, batches=max(4, 2 * preset.iters))
        for name in (preset.data_row, "fcn8s_aligned"):
            if name in by_name:
                data[f"ratio_vs_{name}"] = data["images_per_s"] / by_name[name]["train_images_per_s"]
        result["data_pipeline"] = data
    if "metrics" not in skip:
        print("[bench] metric costs", file=sys.stderr, flush=True)
        row = resolve_row(preset, preset.data_row)
        torch.manual_seed(0)
        net = suite.build_net(args.conf, row, k).to(device)
        result["metrics_cost"] = dict(extras.bench_metrics(dm, net, device, k, preset.iters),
                                      model=row.name, width=row.width)
        del net
    if "patchwise" not in skip:
        print("[bench] patch-wise vs dense", file=sys.stderr, flush=True)
        result["patchwise_vs_dense"] = extras.bench_patchwise(
            device, preset.patch_hw, preset.patch_width, k, reps=max(2, preset.iters))
    result["targets"] = judge(result)
    result["wall_s"] = time.perf_counter() - started
    return result


def fmt(x: float, digits: int = 3) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _ops(profile: dict, n: int) -> str:
    return ", ".join(f"{o['op']} {o['share_pct']:.0f}%" for o in profile["top"][:n])


def table(result: dict) -> str:
    m = result["machine"]
    lines = [f"fcnlab.bench preset={result['preset']} on {m['device']} ({m['name']}, "
             f"{m['threads']} threads, torch {m['torch']}); fp32 matmul peak "
             f"{m['matmul_peak']['gflops']:.1f} GFLOP/s ({m['matmul_peak']['n']}^3, best of "
             f"{m['matmul_peak']['reps']})", ""]
    rows = result["rows"]
    if rows:
        head = ("| row | input | batch | width | train it/s | train img/s | eval img/s | "
                "peak MiB | GFLOP/img (f+b) | GFLOP/s | % peak |")
        lines += [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['input_hw'][0]}x{r['input_hw'][1]} | {r['batch']} | "
                         f"{r['width']:g} | failed: {r['error'][:120]} | | | | | | |")
            continue
        lines.append(
            f"| {r['name']} | {r['input_hw'][0]}x{r['input_hw'][1]} | {r['batch']} | "
            f"{r['width']:g} | {fmt(r['train_iters_per_s'])} | {fmt(r['train_images_per_s'])} | "
            f"{fmt(r['eval_images_per_s'])} | {r['peak_mem_mib']:,.0f} | "
            f"{fmt(r['gflop_per_image'])} | {fmt(r['achieved_gflops'])} | "
            f"{r['pct_of_matmul_peak']:.0f} |")
    if rows:
        lines.append("")
    for r in rows:
        if v := r.get("vs_plain"):
            extra = ""
            if c := r.get("compile_s"):
                extra = ("; compilation (first call, not in it/s) "
                         + ", ".join(f"{k} {s:.1f} s" for k, s in c.items()))
            lines.append(f"{r['name']}: {v['train_speedup']:.2f}x the training speed of "
                         f"{v['row']}, {v['eval_speedup']:.2f}x its evaluation speed{extra}")
        elif c := r.get("compile_s"):
            lines.append(f"{r['name']}: compilation (first call, not in it/s) "
                         + ", ".join(f"{k} {s:.1f} s" for k, s in c.items()))
    for r in rows:
        if p := r.get("profile"):
            lines.append(f"profile {r['name']} (training step {p['step_s'] * 1e3:,.0f} ms under "
                         f"the profiler, share of {p['by']} time): {_ops(p, len(p['top']))}")
    if a := result.get("aligned_vs_caffe"):
        lines.append(f"aligned_vs_caffe (fcn8s {a['input_hw'][0]}x{a['input_hw'][1]}, batch "
                     f"{a['batch']}, width {a['width']:g}): training {a['train_speedup']:.2f}x "
                     f"faster, evaluation {a['eval_speedup']:.2f}x, {a['flop_ratio']:.2f}x fewer "
                     f"FLOPs")
    if p := result.get("peer"):
        shape = "x".join(map(str, p["ours_output_shape"]))
        lines.append(
            f"peer {p['spec']} {json.dumps(p['kwargs'])} vs ours {p['row']} ({p['input_hw'][0]}x"
            f"{p['input_hw'][1]}, batch {p['batch']}, width {p['width']:g}, {p['num_classes']} "
            f"classes; output shapes agree: {shape}; params ours {p['ours_params']:,} / peer "
            f"{p['peer_params']:,}{'' if p['params_agree'] else ' DIFFER (not the same width?)'}"
            f"; {p['reps']} reps interleaved):")
        lines.append(
            f"  training step median ours {p['ours_train_step_s_median'] * 1e3:,.0f} ms, peer "
            f"{p['peer_train_step_s_median'] * 1e3:,.0f} ms: ours/peer speed "
            f"{p['train_speed_ratio']:.2f}x (paired {p['train_speed_ratio_paired']:.2f}x)")
        lines.append(
            f"  evaluation median ours {p['ours_eval_batch_s_median'] * 1e3:,.0f} ms, peer "
            f"{p['peer_eval_batch_s_median'] * 1e3:,.0f} ms: ours/peer speed "
            f"{p['eval_speed_ratio']:.2f}x (paired {p['eval_speed_ratio_paired']:.2f}x)")
        if c := p.get("compile_s"):
            lines.append("  compilation of ours (first call, not in the medians) "
                         + ", ".join(f"{k} {s:.1f} s" for k, s in c.items()))
        for who, prof in (p.get("profile") or {}).items():
            name, _, ev = who.partition("_")
            lines.append(f"  profile {name} {'evaluation' if ev else 'training step'} "
                         f"({prof['step_s'] * 1e3:,.0f} ms under the profiler): "
                         f"{_ops(prof, len(prof['top']))}")
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
    if ts := result.get("targets"):
        lines.append("targets:")
        for t in ts:
            if t["unit"] == "MiB":
                value = (f"{t['value']:,.0f} MiB (limit {t['limit']:,.0f} MiB, "
                         f"{t['measured_by']})")
            elif t["unit"] == "%":
                value = f"{t['value']:.1f}% (limit {t['limit']:g}%)"
            else:
                value = f"{t['value']:,.2f}x (limit {t['limit']:g}x)"
            line = f"  {'met   ' if t['met'] else 'MISSED'} {t['target']} [{t['row']}]: {value}"
            if not t["met"]:
                limited = ", ".join(f"{o['op']} {o['share_pct']:.0f}%"
                                    for o in t.get("limited_by", []))
                line += (f"; time goes to: {limited}" if limited
                         else "; run with --profile to see where the time goes"
                         if t["unit"] != "MiB" else "")
            lines.append(line)
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
