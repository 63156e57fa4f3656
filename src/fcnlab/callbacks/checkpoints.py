"""Crash-safe training: atomic checkpoints, ``resume=auto|<path>``, SIGTERM, RNG state.

A budget run at paper scale lasts days; a kill, a pre-emption or a full disk must cost minutes.

* Checkpoints are written to a temporary file, flushed and renamed, so a crash mid-write never
  leaves a truncated file under a checkpoint name (:class:`AtomicCheckpointIO`).
* ``resume=auto`` continues from the newest checkpoint that reads back completely, skipping a
  damaged one with a warning; with none it starts fresh and says so. ``resume=<path>`` names one.
  On a run that already finished it has nothing to do (:func:`finished_record`).
* SIGTERM (what a cluster sends before pre-emption) makes Lightning stop after the current
  iteration; :class:`SaveOnSigterm` then writes ``interrupted.ckpt`` and the run exits cleanly.
* The RNG states (torch, numpy, python) travel in the checkpoint as plain data, so dropout after a
  resume draws what it would have drawn without the interruption.
"""

from __future__ import annotations

import json
import logging
import os
import random
import zipfile
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from fcnlab.errors import ConfigError

log = logging.getLogger(__name__)
INTERRUPTED = "interrupted.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to ``<name>.tmp``, fsync, then rename over ``<name>``; load safely.

    Loading (``resume``) is always ``weights_only=True``: everything fcnlab saves is plain data,
    and a checkpoint crafted to run code when unpickled is refused.
    """

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        except Exception as e:  # noqa: BLE001 - an unsafe or unreadable file is a user error
            if isinstance(e, (OSError, RuntimeError)) and "weights_only" not in str(e):
                raise
            raise ConfigError(f"checkpoint {str(path)!r} cannot be loaded safely "
                              f"(weights_only=True): {str(e).splitlines()[0]}") from e

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def is_readable_checkpoint(path: Path) -> bool:
    """Whether the file is a complete torch zip archive (every member's CRC checks out)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError):
        return False


def newest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The most recently written checkpoint in ``ckpt_dir`` that reads back completely."""
    candidates = sorted(Path(ckpt_dir).glob("*.ckpt"), key=lambda p: p.stat().st_mtime,
                        reverse=True)
    for path in candidates:
        if is_readable_checkpoint(path):
            return path
        log.warning("resume: skipping %s: the file is truncated or damaged", path)
    return None


def checkpoint_iteration(path: str | os.PathLike) -> int:
    """The ``global_step`` stored in a Lightning checkpoint (read with ``weights_only=True``)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return int(ckpt["global_step"])


def resolve_resume(resume, ckpt_dir: Path) -> str | None:
    """The checkpoint to resume from for ``resume`` = None | "auto" | a path.

    The line it logs also marks, in the run's ``train.log`` (appended by every attempt,
    conf/hydra/default.yaml), where an attempt starts: what an earlier attempt logged above that
    line after the named iteration was undone by the interruption and is replayed below it.
    """
    if resume in (None, False):
        return None
    if resume == "auto":
        found = newest_checkpoint(ckpt_dir)
        if found is None:
            log.info("resume=auto: ---- no checkpoint in %s: starting fresh, at iteration 0 ----",
                     ckpt_dir)
            return None
        it = checkpoint_iteration(found)
        log.info("resume=auto: ---- continuing from %s at iteration %d: anything logged above "
                 "after iteration %d is replayed below ----", found, it, it)
        return str(found)
    path = Path(str(resume))
    if not path.is_file():
        raise ConfigError(f"resume: checkpoint {str(path)!r} does not exist; expected 'auto' or "
                          f"the path of a .ckpt file")
    if not is_readable_checkpoint(path):
        raise ConfigError(f"resume: checkpoint {str(path)!r} is truncated or damaged")
    log.info("resume: ---- continuing from %s at iteration %d ----", path,
             checkpoint_iteration(path))
    return str(path)


def finished_record(output_dir: Path, max_steps: int) -> dict | None:
    """The record of the run in ``output_dir`` if it finished ``max_steps`` iterations and its last
    checkpoint reads back completely; else None (nothing there, or more to do).

    ``resume=auto`` on such a run has nothing to do: the train task returns this record without
    starting a trainer, so a re-run of a table sweep leaves finished runs' files untouched.
    """
    try:
        record = json.loads((Path(output_dir) / "results.json").read_text())
    except (OSError, ValueError):
        return None
    last = (record.get("checkpoints") or {}).get("last")
    if (record.get("status") != "finished" or record.get("iterations") != max_steps
            or not last):
        return None
    if not is_readable_checkpoint(Path(output_dir) / "checkpoints" / Path(last).name):
        return None
    return record


class SaveOnSigterm(L.Callback):
    """After SIGTERM, keep the state of the last finished iteration in ``interrupted.ckpt``."""

    def __init__(self, dirpath: str | Path):
        self.dirpath = Path(dirpath)
        self.saved: str | None = None

    def on_exception(self, trainer: L.Trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit":
            path = self.dirpath / INTERRUPTED
            trainer.save_checkpoint(path, weights_only=False)
            self.saved = str(path)
            log.warning("SIGTERM: saved %s at iteration %d", path, trainer.global_step)


def rng_state() -> dict:
    """The global RNG states as plain data (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(x):
    return [_to_lists(v) for v in x] if isinstance(x, tuple) else x


def _to_tuples(x):
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x
