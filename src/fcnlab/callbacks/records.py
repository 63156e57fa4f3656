"""Runs are records: every train or eval run writes ``results.json`` in its own folder.

The record holds what the run did (model, data, resolved config, commit, library versions,
parameter counts, wall time) and what it measured (every evaluation with its iteration and all
metrics incl. per-class IU and the confusion matrix). It is rewritten atomically after every
evaluation, so a run that dies later still leaves what it measured; reports are built only from
these files.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import lightning as L
from lightning.fabric.utilities.rank_zero import rank_zero_only

RESULTS_FILE = "results.json"
LIBRARIES = ("torch", "lightning", "hydra-core", "torchmetrics", "albumentations", "numpy", "fcnlab")


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(path: Path | None = None) -> dict[str, object]:
    """The commit of the code that ran, and whether the tree had uncommitted changes."""
    cwd = path or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}
    return {"sha": sha or None, "dirty": bool(dirty) if sha else None}


def machine() -> dict[str, object]:
    import torch

    info: dict[str, object] = {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def parameter_counts(net) -> dict[str, int]:
    total = sum(p.numel() for p in net.parameters())
    learnable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return {"learnable": learnable, "fixed": total - learnable, "total": total}


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write to a temporary file and rename, so a reader never sees half a record."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def evaluated_on(trainer: L.Trainer, stage: str) -> dict:
    """Which data an evaluation scored: the data set's own name of the split and its image count.

    The stage (``val``: every interval during training; ``test``: ``test=true``) says *when* a
    split is scored, not *which* one: SegNet's Table 3 is scored on CamVid **test** at every
    budget (docs/reference.md §1), so its preset evaluates that split in the val stage, and the
    record says so (``data_split: test``, ``images: 233``) for the report to check.
    """
    out: dict = {}
    names = getattr(trainer.datamodule, "split_names", None) if trainer.datamodule else None
    if callable(names):
        out["data_split"] = names().get(stage)
    loaders = trainer.val_dataloaders if stage == "val" else trainer.test_dataloaders
    loader = loaders[0] if isinstance(loaders, (list, tuple)) and loaders else loaders
    dataset = getattr(loader, "dataset", None)
    if dataset is not None and hasattr(dataset, "__len__"):
        out["images"] = len(dataset)  # the whole split, on every DDP rank
    return out


class RunRecord(L.Callback):
    """Collects every evaluation of a run and keeps ``results.json`` up to date.

    Under DDP every process keeps the same record and only global rank 0 writes the file. The
    scores are the same on every rank (computed from the confusion matrix summed over ranks), and
    the task decides from the record whether to run one more evaluation, a collective call: a
    record kept on rank 0 alone made rank 1 call ``trainer.validate`` by itself and hang.
    """

    def __init__(self, output_dir: str | Path, header: dict):
        self.path = Path(output_dir) / RESULTS_FILE
        self.started = time.time()
        # Seconds spent training, evaluations excluded ("FCN-8s in 3 minutes of training"): the
        # spans from a training batch to the next evaluation (or the end of fit).
        self.train_s = 0.0
        self._span: float | None = None
        self.record: dict = {
            **header,
            "status": "running",
            "command": " ".join(sys.argv),
            "commit": git_commit(),
            "versions": library_versions(),
            "machine": machine(),
            "evaluations": [],
        }

    def continue_from(self, previous: Path, step: int, checkpoint: str) -> None:
        """Carry over what a resumed run measured up to the checkpoint's iteration."""
        self.record["resumed_from"] = {"checkpoint": checkpoint, "iteration": step}
        if Path(previous).is_file():
            old = json.loads(Path(previous).read_text())
            self.record["evaluations"] = [
                e for e in old.get("evaluations", []) if e["iteration"] <= step
            ]
            self.started -= old.get("wall_time_s", 0.0)  # wall time counts every attempt
            # Training time up to the checkpoint: what the last kept evaluation had counted.
            kept = [e.get("train_s") for e in self.record["evaluations"] if e.get("train_s")]
            self.train_s = float(kept[-1]) if kept else 0.0

    def add_evaluation(self, split: str, iteration: int, scores: dict) -> None:
        self.record["evaluations"].append({"split": split, "iteration": iteration, **scores,
                                           "train_s": round(self._train_time(), 3)})
        self.save()

    def _train_time(self) -> float:
        return self.train_s + (time.time() - self._span if self._span is not None else 0.0)

    def _close_span(self) -> None:
        if self._span is not None:
            self.train_s += time.time() - self._span
            self._span = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx) -> None:
        if self._span is None:
            self._span = time.time()

    def on_validation_start(self, trainer: L.Trainer, pl_module) -> None:
        self._close_span()

    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        self._close_span()

    def save(self, **updates) -> None:
        """Update the record; global rank 0 writes it (``rank_zero_only.rank`` is set by
        Lightning from the launcher's environment before the trainer exists, then by the
        strategy: https://lightning.ai/docs/pytorch/stable/common/trainer.html#global-rank)."""
        self.record.update(updates)
        self.record["wall_time_s"] = round(time.time() - self.started, 3)
        self.record["train_time_s"] = round(self._train_time(), 3)
        if rank_zero_only.rank != 0:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, self.record)

    def on_validation_end(self, trainer: L.Trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        if "val" in pl_module.last_scores:  # on every rank: the scores are synced
            scores = pl_module.last_scores.pop("val")
            self.add_evaluation("val", trainer.global_step,
                                {**scores, **evaluated_on(trainer, "val")})

    def on_test_end(self, trainer: L.Trainer, pl_module) -> None:
        if "test" in pl_module.last_scores:
            scores = pl_module.last_scores.pop("test")
            self.add_evaluation("test", trainer.global_step,
                                {**scores, **evaluated_on(trainer, "test")})

    def last(self, split: str) -> dict | None:
        evals = [e for e in self.record["evaluations"] if e["split"] == split]
        return evals[-1] if evals else None
