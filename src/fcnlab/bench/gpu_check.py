"""``python -m fcnlab.bench.gpu_check``: the paper-scale speed rows and a short full-width training
run on one GPU, in bounded time, into ``docs/bench/gpu-<tag>.json`` and ``.txt``.

Phases, each a child process with its own time limit (a hung compile or a CUDA error ends that
phase alone; it is recorded and the next phase runs):

1. one per model row (:data:`SPECS`): full-width FCN-8s at 500×375 and 500×500, SegNet at
   360×480, each plain fp32 and through the fast paths (:data:`VARIANTS`), timed by the
   benchmark's own :func:`fcnlab.bench.suite.bench_row` (training step = forward, loss, backward,
   SGD step; iterations/s, images/s, peak memory = ``torch.cuda.max_memory_allocated``);
2. ``train``: ``python train.py trainer=gpu`` on synthetic images of the paper's size with
   the width set back to 1 (scale=embedded shrinks it to 1/8), 300 iterations, timed by
   :class:`fcnlab.bench.step_timer.StepTimer`, with the evaluation its ``results.json`` records.

``--dry-run`` takes the same path on the CPU at tiny width, sizes and iteration counts (about
40 s of CPU time), for the tests; torch.compile rows are recorded as skipped there (minutes of
compiling on a CPU). Without a GPU and without ``--dry-run`` it exits 2 with a message. Exit 0
when every phase passed, 1 otherwise. ``scripts/gpu_check.sh`` wraps it (and installs missing
packages from carried wheels). The train phase's lr and its reason: :mod:`fcnlab.bench.gpu_train`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from fcnlab.bench import gpu_report
from fcnlab.bench.gpu_rows import (DRY, GPU, SPECS, VARIANTS, add_speedups, bench_worker,
                                   variant_suffix, write_json)
from fcnlab.bench.gpu_train import train_overrides, train_passed, train_result

ROOT = Path(__file__).resolve().parents[3]


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fcnlab.bench.gpu_check",
                                description="The GPU check: paper-scale speed rows and a short "
                                "full-width training run, each phase under a time limit.")
    p.add_argument("--dry-run", action="store_true",
                   help="the same phases on the CPU at tiny sizes (for tests)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for gpu-<tag>.json/.txt/.log (docs/bench; dry run: a temp folder)")
    p.add_argument("--tag", default=None, help="file name tag (default: today's UTC date)")
    p.add_argument("--commit", default=None, help="the code's commit (default: git, if here)")
    p.add_argument("--work", type=Path, default=None,
                   help="synthetic data and training run (default: a temp folder, removed)")
    p.add_argument("--keep-work", action="store_true", help="keep the default temp --work")
    p.add_argument("--only", nargs="+", default=None, metavar="PHASE",
                   choices=[s.name for s in SPECS] + ["train"], help="run only these phases")
    p.add_argument("--iters", type=int, default=None, help="timed steps per row (10; dry: 2)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps per row (3; dry: 0)")
    p.add_argument("--train-steps", type=int, default=None, help="training iterations (300)")
    p.add_argument("--bench-timeout", type=float, default=None, help="seconds per model row")
    p.add_argument("--train-timeout", type=float, default=None, help="seconds for training")
    p.add_argument("--budget", type=float, default=None, help="seconds for all phases")
    p.add_argument("--train-arg", action="append", default=[], metavar="OVERRIDE",
                   help="one more train.py override (e.g. trainer.precision=bf16-mixed)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # a model-row phase
    p.add_argument("--partial", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.tag is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", args.tag):
        p.error(f"--tag {args.tag!r}: letters, digits, '.', '_' and '-' only (a file name)")
    base = DRY if args.dry_run else GPU
    args.mode = replace(base, iters=args.iters or base.iters,
                        warmup=base.warmup if args.warmup is None else args.warmup,
                        bench_timeout=args.bench_timeout or base.bench_timeout,
                        train_timeout=args.train_timeout or base.train_timeout,
                        budget=args.budget or base.budget,
                        train={**base.train, "steps": args.train_steps or base.train["steps"]})
    return args


# ----------------------------------------------------------------------------- phases
def run_child(name: str, argv: list[str], timeout: float, log: Path, env: dict) -> dict:
    """Run one phase's process (its own session, so a timeout ends its workers too) with its
    output appended to ``log``; the phase record: status ok / failed / timeout."""
    started, rc = time.perf_counter(), None
    with log.open("a") as f:
        f.write(f"\n===== {name} (limit {timeout:.0f} s): {shlex.join(argv)}\n")
        f.flush()
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                start_new_session=True)
        try:
            rc, status = proc.wait(timeout), None
        except subprocess.TimeoutExpired:
            status = "timeout"
            for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
                try:
                    os.killpg(proc.pid, sig)
                    rc = proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
                except ProcessLookupError:
                    rc = proc.wait()
                    break
    seconds = time.perf_counter() - started
    record = {"name": name, "status": status or ("ok" if rc == 0 else "failed"),
              "seconds": round(seconds, 1), "timeout_s": timeout, "returncode": rc}
    if status == "timeout":
        record["error"] = f"timed out after {timeout:.0f} s"
    elif rc != 0:
        record["error"] = f"exit status {rc}"
    if rc != 0 or status:  # the phase's own last lines, so the JSON says what went wrong
        text = log.read_text(errors="replace")
        record["log_tail"] = text[text.rindex(f"===== {name} "):].splitlines()[-20:]
    return record


def child_env(dry: bool) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if dry:
        # The dry run checks the path, not the speed: one thread per process, as two torch
        # threads on a shared, loaded 2-core machine spun against each other (seen: a tiny
        # training step 30x slower than with one).
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH"))
                                        if p)
    return env


# ----------------------------------------------------------------------------- all phases
def run_all(args: argparse.Namespace, out: Path, info: dict, commit: dict) -> int:
    mode, started = args.mode, time.perf_counter()
    tag = args.tag or ("dry-run" if mode.dry else
                       datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"))
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"gpu-{tag}"
    log = stem.with_suffix(".log")
    log.write_text("")
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-check-work-"))
    work.mkdir(parents=True, exist_ok=True)
    env = child_env(mode.dry)
    result = {"tool": "fcnlab.bench.gpu_check", "tag": tag, "dry_run": mode.dry,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "commit": commit, "machine": info,
              "settings": {"mode": dict(vars(mode)),
                           "variants": list(VARIANTS),
                           "rows": [vars(s) for s in SPECS], "train_args": args.train_arg},
              "phases": [gpu_report.preflight()], "rows": [], "train": None}

    def save() -> None:
        result["wall_s"] = round(time.perf_counter() - started, 1)
        result["ok"] = all(p["status"] in ("ok", "left out") for p in result["phases"])
        write_json(stem.with_suffix(".json"), result)
        stem.with_suffix(".txt").write_text(gpu_report.table(result) + "\n")

    def phase(name: str, argv: list[str], cap: float) -> dict:
        left = mode.budget - (time.perf_counter() - started)
        if result["phases"][0]["status"] != "ok":
            rec = {"name": name, "status": "skipped", "error": "preflight failed"}
        elif args.only and name not in args.only:
            rec = {"name": name, "status": "left out", "skipped": "not in --only"}
        elif left < 10:
            rec = {"name": name, "status": "skipped",
                   "error": f"the check's time budget ({mode.budget:.0f} s) is spent"}
        else:
            print(f"[gpu-check] {name}: up to {min(cap, left):.0f} s", flush=True)
            rec = run_child(name, argv, min(cap, left), log, env)
        result["phases"].append(rec)
        return rec

    save()
    worker = [sys.executable, "-m", "fcnlab.bench.gpu_check", "--worker"]
    for spec in SPECS:
        partial = work / f"{spec.name}.json"
        partial.unlink(missing_ok=True)  # a reused --work folder's old rows are not this run's
        flags = ["--dry-run"] if mode.dry else []
        rec = phase(spec.name, [*worker, spec.name, "--partial", str(partial), *flags,
                                "--iters", str(mode.iters), "--warmup", str(mode.warmup)],
                    mode.bench_timeout)
        done = json.loads(partial.read_text()) if partial.is_file() else {"rows": []}
        rec["matmul_peak"] = done.get("matmul_peak")
        for key, value in done.get("machine", {}).items():
            info.setdefault(key, value)
        rows = {r["name"]: r for r in done["rows"]}
        why = (f"skipped: {rec['skipped']}" if rec.get("skipped") else
               f"not run: phase {rec['status']}{': ' + rec['error'] if rec.get('error') else ''}")
        for variant in VARIANTS:
            name = spec.name if variant == "fp32" else f"{spec.name}+{variant_suffix(variant)}"
            result["rows"].append(rows.get(name) or {"name": name, "group": spec.name,
                                                     "variant": variant, "status": why})
        missing = [r["name"] for r in result["rows"] if r["group"] == spec.name
                   and r["status"].startswith(("error", "not run"))]
        if rec["status"] == "ok" and missing:
            rec.update(status="failed", error=f"rows without numbers: {', '.join(missing)}")
        add_speedups(result["rows"])
        save()
    overrides = train_overrides(mode, work, args.train_arg)
    (work / "steps.json").unlink(missing_ok=True)  # the data folder is kept: it is reusable
    shutil.rmtree(work / "train-run", ignore_errors=True)
    rec = phase("train", [sys.executable, str(ROOT / "train.py"), *overrides],
                mode.train_timeout)
    if "skipped" not in rec and rec["status"] != "skipped":  # it ran (perhaps partly)
        result["train"] = train_result(mode, work, overrides)
        why = train_passed(result["train"])
        if rec["status"] == "ok" and why:
            rec.update(status="failed", error=why)
    result["targets"] = gpu_report.targets(result)
    save()
    for p in result["phases"]:
        if p.get("log_tail"):
            print(f"[gpu-check] {p['name']} {p['status']}; its last lines in {log}:\n  "
                  + "\n  ".join(p["log_tail"]), file=sys.stderr)
    if not args.keep_work and args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    print(stem.with_suffix(".txt").read_text())
    print(f"results: {stem}.json, {stem}.txt, {log}")
    return 0 if result["ok"] else 1


def main(argv=None) -> int:
    args = parse(argv)
    if args.worker:
        return bench_worker(args)
    mode = args.mode
    if not mode.dry:
        import torch

        if not torch.cuda.is_available():
            print(f"error: no CUDA GPU is visible to torch {torch.__version__} (CUDA build "
                  f"{torch.version.cuda}); this check measures a GPU. Run it on a GPU machine, "
                  f"or with --dry-run for the same phases on the CPU at tiny sizes.",
                  file=sys.stderr)
            return 2
    out = args.out or (Path(tempfile.mkdtemp(prefix="gpu-check-dry-")) if mode.dry
                       else ROOT / "docs" / "bench")
    if mode.dry and out.resolve() == (ROOT / "docs" / "bench").resolve():
        print("error: --dry-run numbers are not GPU numbers; give --out outside docs/bench",
              file=sys.stderr)
        return 2
    return run_all(args, out, gpu_report.machine(mode.dry), gpu_report.git_commit(args.commit))


if __name__ == "__main__":
    sys.exit(main())
