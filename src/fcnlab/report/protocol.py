"""The runs' protocol: each run's command, commit, machine and wall time, and where the
recorded settings differ from the paper's protocol."""

from __future__ import annotations

import re
from pathlib import Path

from fcnlab.report.paper_tables import PaperTable, reference_table, table_of_model
from fcnlab.report.formatting import DASH, md_table
from fcnlab.report.runs import Run, _get


def _optimizer(cfg: dict) -> str:
    opt = _get(cfg, "optim.optimizer") or {}
    if not opt:
        return DASH
    name = str(opt.get("_target_", "?")).rsplit(".", 1)[-1]
    parts = [name] + [f"{k} {opt[k]}" for k in ("lr", "momentum", "weight_decay") if k in opt]
    if (mult := _get(cfg, "optim.bias_lr_mult")) is not None:
        parts.append(f"bias lr x{mult}")
    sched = _get(cfg, "optim.scheduler")
    if isinstance(sched, dict) and sched.get("_target_"):
        parts.append(f"scheduler {sched['_target_'].rsplit('.', 1)[-1]}")
    return ", ".join(parts)


def _pretrained(run: Run) -> str:
    rec = run.record or {}
    parts = []
    pre = rec.get("pretrained") or _get(run.config, "model.pretrained")
    if isinstance(pre, dict) and pre.get("embedded_imagenet"):
        parts.append(f"embedded ImageNet {pre['embedded_imagenet'].get('key')} (sha256 "
                     f"{str(pre.get('sha256'))[:12]})")
    elif isinstance(pre, dict):
        parts.append(f"VGG16 {Path(str(pre.get('path'))).name} (sha256 "
                     f"{str(pre.get('sha256'))[:12]})")
    elif pre:
        parts.append(str(pre))
    if init := (rec.get("init_from") or _get(run.config, "model.init_from")):
        parts.append(f"init from {init}")
    return "; ".join(parts) or "no (random init)"


def _machine(run: Run) -> str:
    m = (run.record or {}).get("machine") or {}
    if not m:
        return DASH
    dev = m.get("gpu") or f"{m.get('processor', '?')} CPU x{m.get('cpu_count', '?')}"
    return str(dev)


def _wall(run: Run) -> str:
    w = (run.record or {}).get("wall_time_s")
    if w is None:
        return DASH
    return f"{w:.1f} s" if w < 120 else f"{w / 3600:.2f} h" if w >= 7200 else f"{w / 60:.1f} min"


def _commit(run: Run) -> str:
    c = (run.record or {}).get("commit") or {}
    if not c.get("sha"):
        return DASH
    return c["sha"][:10] + ("+dirty" if c.get("dirty") else "")


def _evaluated_split(run: Run, split: str) -> str:
    """The data split the run's ``split`` evaluations scored, as its record names it
    (``evaluations[].data_split``: e.g. CamVid ``test`` scored in the val stage, or the stem of
    a list file such as seg11valid.txt), with the image count; the stage name for older records."""
    evs = [e for e in (run.record or {}).get("evaluations") or [] if e.get("split") == split]
    named = [e for e in evs if e.get("data_split")]
    if not named:
        return split
    e = named[-1]
    name = Path(str(e["data_split"])).stem if "/" in str(e["data_split"]) else str(e["data_split"])
    return f"{name} ({e['images']} images)" if e.get("images") else name


def protocol_items(run: Run, split: str) -> dict[str, str]:
    """What each protocol item was for this run, read from its record."""
    cfg = run.config
    dm = _get(cfg, "data.datamodule") or {}
    budgets = run.budgets()
    iters = str(_get(cfg, "trainer.max_steps", DASH))
    if budgets:
        iters += f" (budgets {budgets})"
    if (v := _get(cfg, "trainer.val_check_interval")) is not None:
        iters += f", evaluated every {v}"
    evs = (run.record or {}).get("evaluations") or []
    if run.status != "finished" and evs:
        iters += f"; last evaluation at {max(e.get('iteration', 0) for e in evs)}"
    elif run.status != "finished":
        iters += "; no evaluation"
    batch = str(dm.get("batch_size", DASH))
    accumulate = _get(cfg, "trainer.accumulate_grad_batches")
    if isinstance(accumulate, int) and accumulate > 1:
        batch += f" x {accumulate} accumulated"
    devices = _get(cfg, "trainer.devices")
    if isinstance(devices, int) and devices > 1:
        batch += f" x {devices} devices"
    size = dm.get("image_size")
    callbacks = _get(cfg, "callbacks") or {}
    optimizer = _optimizer(cfg)
    pre = (run.record or {}).get("pretrain") if run.is_pretrain else None
    if pre:  # the classifier's own schedule and crops (fcnlab.tasks.pretrain), not the FCNs'
        iters = str((run.record or {}).get("iterations", pre.get("max_steps") or iters))
        batch = str(pre.get("batch_size", DASH))
        size = f"{pre.get('crop_size')}x{pre.get('crop_size')} crops"
        if pre.get("lr") is not None:
            optimizer = f"{optimizer.split(',')[0]}, lr {pre['lr']} (pretrain.lr)"
    return {
        "data": str((run.record or {}).get("data", DASH)),
        "split": _evaluated_split(run, split),
        "width": str(_get(cfg, "model.net.width", DASH)),
        "iterations": iters,
        "batch_size": batch,
        "image_size": "x".join(map(str, size)) if isinstance(size, list) else str(size or DASH),
        "optimizer": optimizer,
        "pretrained": _pretrained(run),
        "batch_norm": str(_get(cfg, "model.net.batch_norm", DASH)),
        "bn_recompute": "yes" if "bn_recompute" in callbacks else "no",
        "preprocess": str(dm.get("preprocess", DASH)),
        "loss": str(_get(cfg, "loss.reduction", DASH)),
        "mean_over": str(_get(cfg, "metrics.mean_over", DASH)),
    }


_PROTOCOL_LABELS = {
    "data": "data", "split": "evaluated split", "width": "model width (model.net.width)",
    "iterations": "iterations (trainer.max_steps)", "batch_size": "batch size",
    "image_size": "image size (H x W)", "optimizer": "optimizer", "pretrained": "initialisation",
    "batch_norm": "batch norm (model.net.batch_norm)",
    "bn_recompute": "BN statistics recomputed before evaluation", "preprocess": "input preprocess",
    "loss": "loss reduction", "mean_over": "classes the means count (metrics.mean_over)",
}


def _same_as_paper(key: str, ours: str, paper: str) -> bool:
    """Whether an item plainly matches the paper; anything unsure is listed as a difference."""
    if key == "width":
        try:
            return float(ours) == 1.0
        except ValueError:
            return False
    if key == "batch_size":
        factors = [f for f in ours.replace(" accumulated", "").split(" x ")]
        if all(f.strip().isdigit() for f in factors):
            total = 1
            for f in factors:
                total *= int(f)
            return paper.split(" ")[0] == str(total)  # 1 x 20 accumulated is a batch of 20
        return paper == ours
    if key == "split":  # "test (233 images)" against "test (CamVid test, 233 images)"
        name, _, count = ours.partition(" (")
        count = count.rstrip(")")
        return paper.split(" (")[0] == name and (
            not count or re.search(rf"(?<![\d,]){re.escape(count)}", paper) is not None)
    if key == "image_size":
        return paper == ours or paper.startswith(f"{ours} (")
    if key == "batch_norm":
        return (ours, paper) == ("False", "none") or (ours == "True" and paper.startswith("BN"))
    if key == "bn_recompute":
        return paper.startswith(ours)
    if key == "mean_over":
        return paper.startswith(f"{ours}:") or f"({ours})" in paper
    return False


def protocol_section(runs: list[Run], tables: list[str], split: str) -> str:
    recorded = [r for r in runs if r.record is not None]
    header = ["run", "model", "status", "data", "width", "iterations", "batch", "image size",
              "optimizer", "init", "machine", "wall time", "commit"]
    rows = []
    for r in runs:
        p = protocol_items(r, split) if r.record else {}
        rows.append([r.name, str(r.model), r.status, p.get("data", DASH), p.get("width", DASH),
                     p.get("iterations", DASH), p.get("batch_size", DASH),
                     p.get("image_size", DASH), p.get("optimizer", DASH),
                     p.get("pretrained", DASH), _machine(r), _wall(r), _commit(r)])
    commands = [f"- `{r.name}`: `{(r.record or {}).get('command', DASH)}` in `{r.folder}`"
                for r in runs if r.record is not None]
    parts = ["## Runs", md_table(header, rows), "Commands:", "\n".join(commands) or "(none)"]
    for key in tables:
        if key == "other":
            continue
        members = [r for r in recorded if table_of_model(r.model or "") == key]
        if not members:
            continue
        # FCN runs of the heavy protocol are compared with its own reference, not Table 2.
        by_reference: dict[str, tuple] = {}
        for r in members:
            ref = reference_table(key, r.protocol)
            by_reference.setdefault(ref.title, (ref, []))[1].append(r)
        for table, group in by_reference.values():
            parts += _differences(table, group, split)
    return "\n\n".join(parts)


def _differences(table: PaperTable, members: list[Run], split: str) -> list[str]:
    """The protocol items where ``members`` differ from ``table``'s paper protocol."""
    lines = []
    for item, label in _PROTOCOL_LABELS.items():
        values: dict[str, list[str]] = {}
        for r in members:
            values.setdefault(protocol_items(r, split)[item], []).append(r.name)
        paper = table.protocol.get(item, "not stated")
        if len(values) == 1:
            ours = f"`{next(iter(values))}` (all runs)"
        else:
            ours = "; ".join(f"`{v}` ({', '.join(names)})" for v, names in values.items())
        same = all(_same_as_paper(item, v, paper) for v in values)
        if not same:
            lines.append(f"- **{label}**: ours {ours}; paper: {paper}")
    for item in set(table.protocol) - set(_PROTOCOL_LABELS):
        lines.append(f"- **{item.replace('_', ' ')}**: not recorded by our runs; paper: "
                     f"{table.protocol[item]}")
    lines.append("- **machine and wall time**: per run in the table above; "
                 "**commit**: " + ", ".join(sorted({_commit(r) for r in members})))
    return [f"## Protocol differences ({table.title.split(':')[0]})",
            "Read from the run records (`results.json` config), against the paper's "
            "protocol (docs/reference.md §1, §3):", "\n".join(lines)]

