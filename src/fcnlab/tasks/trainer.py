"""What every task shares: the trainer with its callbacks, loggers and plugins, progress output,
the CRF switch, and the summary a finished run prints."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
from omegaconf import DictConfig

from fcnlab.callbacks.progress import PlainProgress, is_interactive
from fcnlab.callbacks.records import RunRecord
from fcnlab.config import instantiate, to_plain
from fcnlab.metrics import format_scores_table

if TYPE_CHECKING:
    from fcnlab.module import SegmentationModule

log = logging.getLogger(__name__)
# Lightning 2.6 calls a torch pytree API that torch 2.13 deprecates; nothing a user can act on.
warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.", category=FutureWarning)


def instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every entry of a dict-shaped group (callbacks, loggers); ``None`` entries skip."""
    if not group:
        return []
    return [instantiate(c) for c in group.values() if c is not None and "_target_" in c]


CRF_SWITCHES = ("enabled", "at_end")


def progress_settings(cfg: DictConfig) -> tuple[dict, list]:
    """Trainer keyword arguments and callbacks for progress: Rich's bar on a terminal, plain
    periodic lines when the output is a log file (clusters, CI)."""
    if is_interactive():
        return {}, []
    return ({"enable_progress_bar": False},
            [PlainProgress(every=cfg.trainer.get("log_every_n_steps") or 50)])


def crf_params(cfg: DictConfig, force: bool = False) -> dict | None:
    """The dense-CRF parameters when ``crf.enabled`` (or ``force``), else None."""
    crf = to_plain(cfg.get("crf")) or {}
    if not (crf.get("enabled") or force):
        return None
    return {k: v for k, v in crf.items() if k not in CRF_SWITCHES}


def record_compile_time(recorder: RunRecord, module: SegmentationModule) -> None:
    """With ``fast.compile``, results.json gets ``compile_s``: the wall seconds of the first
    training step and the first evaluation forward (``{"train": …, "eval": …}``), which compile.

    The record holds the module's own dict, so every later save writes what has been measured.
    """
    if module.compiled:
        recorder.record["compile_s"] = module.compile_s


def print_summary(record: dict, class_names: list[str], output_dir: Path) -> None:
    last = {}
    for e in record["evaluations"]:
        last[e["split"]] = e
    for split, e in last.items():
        scores = dict(e, iou=[e["iou"][n] if e["iou"][n] is not None else float("nan")
                              for n in class_names])
        print(f"\n{record['model']} on {record['data']} / {split} at iteration {e['iteration']}:")
        print(format_scores_table(scores, class_names))
        if "majority_class_mean_iou" in e:
            print(f"(always predicting the most frequent class: pixel acc "
                  f"{100 * e['majority_class_pixel_acc']:.2f}, mean IU "
                  f"{100 * e['majority_class_mean_iou']:.2f})")
    evals = [e for e in record["evaluations"] if e["split"] == "val" and not e.get("crf")]
    if len(evals) > 1:
        print("\nval mean IU by iteration: " + ", ".join(
            f"{e['iteration']}: {100 * e['mean_iou']:.2f}" for e in evals))
    print(f"\nrun folder: {output_dir}\nresults:    {output_dir / 'results.json'}")
    ckpts = record.get("checkpoints") or {}
    if ckpts.get("last"):
        print(f"checkpoint: {ckpts['last']}")


def save_last_checkpoint(trainer: L.Trainer) -> dict:
    """Make ``last.ckpt`` hold the final weights; return the checkpoint paths.

    The ``latest`` callback refreshes it at every evaluation during fit; this covers a final
    evaluation run after fit (max_steps not on an evaluation) and configs without that callback.
    """
    ckpts = [c for c in trainer.checkpoint_callbacks if c.dirpath]
    if not ckpts:
        return {"last": None, "best": None}
    saver = next((c for c in ckpts if c.save_last), ckpts[0])
    last = Path(saver.dirpath) / f"{saver.CHECKPOINT_NAME_LAST}{saver.FILE_EXTENSION}"
    trainer.save_checkpoint(last, weights_only=False)  # full state: resumable
    saver.last_model_path = str(last)
    best = next((c.best_model_path for c in ckpts if c.monitor and c.best_model_path), None)
    return {"last": str(last), "best": best}
