"""The performance targets (docs/benchmark.md, "Targets") judged from a benchmark result: each with its value, its limit,
whether it is met, and for a missed one the top ops of the row's profile."""

from __future__ import annotations

from fcnlab.bench.rows import is_memory_row

TRAIN_MEMORY_LIMIT_MIB = 6 * 1024  # GiB of host memory for a full-width FCN-8s step on 500×375


def _limited_by(profile: dict | None, n: int = 3) -> list[dict]:
    if not profile:
        return []
    return [{"op": o["op"], "share_pct": o["share_pct"]} for o in profile["top"][:n]]


# The speed targets for the CPU rows: (row, minimum % of the measured matmul peak).
PEAK_TARGETS = {"fcn8s_aligned_256_w4": 60.0}


def _speed_targets(result: dict) -> list[dict]:
    """The throughput and share targets a run measured: aligned vs caffe >= 4x,
    a conv-dominated training step >= 60% of the matmul peak, the data pipeline >= 3x what the
    training step consumes, metric updates <= 2% (BF <= 20%) of an evaluation pass, patch-wise
    vs dense >= 1000x."""
    out = []

    def add(target, row, value, limit, met, unit="x"):
        out.append({"target": target, "row": row, "value": value, "unit": unit, "limit": limit,
                    "met": met})

    if a := result.get("aligned_vs_caffe"):
        add("aligned geometry trains >= 4x faster than caffe", "fcn8s_aligned",
            a["train_speedup"], 4.0, a["train_speedup"] >= 4.0)
    for r in result.get("rows", []):
        if r.get("name") in PEAK_TARGETS and "pct_of_matmul_peak" in r:
            want = PEAK_TARGETS[r["name"]]
            add(f"training step >= {want:g}% of the matmul peak", r["name"],
                r["pct_of_matmul_peak"], want, r["pct_of_matmul_peak"] >= want, unit="%")
    for key, ratio in (result.get("data_pipeline") or {}).items():
        if key.startswith("ratio_vs_"):
            add("data pipeline >= 3x the training step's rate", key[len("ratio_vs_"):], ratio,
                3.0, ratio >= 3.0)
    if c := result.get("metrics_cost"):
        add("confusion-matrix update <= 2% of an evaluation pass", c["model"],
            c["confmat_share_pct"], 2.0, c["confmat_share_pct"] <= 2.0, unit="%")
        add("BF update <= 20% of an evaluation pass", c["model"], c["bf_share_pct"], 20.0,
            c["bf_share_pct"] <= 20.0, unit="%")
    if pw := result.get("patchwise_vs_dense"):
        add("patch-wise vs dense >= 1000x, same scores", "patchwise", pw["ratio"], 1000.0,
            pw["ratio"] >= 1000.0 and pw["max_rel_diff"] < 1e-4)
    return out


def targets(result: dict) -> list[dict]:
    """The performance targets that this run measured, each with its value, limit and whether it is
    met; ``limited_by``: the top ops of the row's profile (with ``--profile``)."""
    out = []
    for r in result.get("rows", []):
        if not is_memory_row(r):
            continue
        host = r["peak_mem_method"] != "cuda.max_memory_allocated"
        out.append({"target": f"training step peak {'host' if host else 'GPU'} memory <= 6 GiB",
                    "row": r["name"], "value": r["peak_mem_mib"], "unit": "MiB",
                    "limit": TRAIN_MEMORY_LIMIT_MIB,
                    "met": r["peak_mem_mib"] <= TRAIN_MEMORY_LIMIT_MIB,
                    "measured_by": r["peak_mem_method"]})
        if r.get("eval_peak_mem_mib_extra_image") is None:
            continue
        extra = r["eval_peak_mem_mib_extra_image"]
        out.append({"target": "evaluation holds <= one image's activations per batch element "
                              "(peak added per image, batch 2 -> 4)",
                    "row": r["name"], "value": extra, "unit": "MiB",
                    "limit": r["activation_mib_per_image"],
                    "met": extra <= r["activation_mib_per_image"],
                    "measured_by": r["peak_mem_method"]})
    out += _speed_targets(result)
    if p := result.get("peer"):
        prof = p.get("profile") or {}
        for what, key in (("train", "ours"), ("eval", "ours_eval")):
            ratio = p[f"{what}_speed_ratio"]
            out.append({"target": f"ours at least as fast as the peer ({what})", "row": p["row"],
                        "value": ratio, "unit": "x", "limit": 1.0, "met": ratio >= 1.0,
                        "limited_by": _limited_by(prof.get(key))})
    for t in out:
        if not t["met"] and "limited_by" not in t:
            row = next((r for r in result.get("rows", []) if r.get("name") == t["row"]), {})
            t["limited_by"] = _limited_by(row.get("profile"))
    return out
