"""The embedded ImageNet: one VGG16 classifier per recipe, built on first use and then reused.

The papers start FCN, SegNet's encoder and DeepLab from one ImageNet VGG16; FCN-32s-fixed fixes
its features (CVPR 2015, Table 2). At embedded scale ``model.pretrained: embedded_imagenet``
(:data:`KEYWORD`) stands for that model: the classifier of :mod:`fcnlab.tasks.pretrain`, trained
with the ``embedded_imagenet`` recipe of the scale (conf/scale/embedded.yaml) on its own synthetic
images (their own data seed, so it never sees a segmentation split's pictures, as ImageNet is not
VOC). It is built once per recipe and machine and cached under

    ${paths.data_dir}/embedded_imagenet/<key>/vgg16_classifier.pt   (+ .json sidecar, results.json)

where ``<key>`` is the SHA-256 of the recipe (:func:`recipe`) — not of a run's seed: every seed
of a table starts from the same features, as the papers' runs all start from one ImageNet model.
A cached file is used only if its SHA-256 is the one its build recorded (``results.json``);
otherwise the run stops with a :class:`~fcnlab.errors.DataError` naming the file and both hashes.

A recipe whose file is shipped with fcnlab (:data:`SHIPPED_DIR`, written by
``python -m fcnlab.tasks.ship``) is copied from there instead of built, hash checked the same
way: a fresh clone's main job starts in seconds, not after a 15-minute build.
``embedded_imagenet.shipped: false`` builds it anyway (the test that the command reproduces the
shipped file does).

A build runs in a temporary folder beside the cache and is renamed into place when finished, so a
half-built classifier is never used; concurrent runs (a parallel sweep) wait for one builder on a
lock file, at most ``embedded_imagenet.wait_s`` seconds. The build is one process on one device
whatever the run's trainer is: under DDP the other ranks are started from the same command, and
would otherwise try to join the build.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from fcnlab.config import to_plain
from fcnlab.errors import ConfigError, DataError
from fcnlab.models.weights import file_sha256

log = logging.getLogger(__name__)

KEYWORD = "embedded_imagenet"
# Bump when what a recipe builds changes for the same recipe values (the key changes with it).
FORMAT = 2  # 2: fc6 of one-cell crops saved as its centre tap
# The shipped builds, one folder per recipe key, laid out as the cache; their records write the
# folder as PLACEHOLDER, replaced by the cache folder when copied there.
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "assets" / KEYWORD
PLACEHOLDER = "{folder}"


def recipe(cfg: DictConfig) -> dict:
    """Everything that decides the classifier: the recipe block, the model width and fc width,
    the input convention, the data generator, and :data:`FORMAT`."""
    block = OmegaConf.select(cfg, KEYWORD)
    if not isinstance(block, DictConfig):
        raise ConfigError(f"model.pretrained={KEYWORD}: the config has no `{KEYWORD}` block "
                          f"(conf/scale/embedded.yaml sets it; scale=embedded)")
    plain = to_plain(block)
    for key in ("wait_s", "shipped"):  # how long to wait, where from: not what is built
        plain.pop(key, None)
    return {
        "format": FORMAT,
        "recipe": plain,
        "width": float(cfg.model.net.width),
        "fc_channels": int(OmegaConf.select(cfg, "pretrain.fc_channels") or 4096),
        "preprocess": cfg.data.datamodule.get("preprocess"),
        "data_target": OmegaConf.select(cfg, "data.datamodule._target_"),
    }


def recipe_key(spec: dict) -> str:
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.data_dir) / KEYWORD


def _verified(folder: Path, remedy: str | None = None) -> dict | None:
    """The build record of a finished build in ``folder``, its file's hash checked; None when
    there is no finished build. A file whose hash differs is an error, not a rebuild: something
    changed it, and a silent rebuild would hide that. ``remedy`` ends the error's message
    (default: delete the folder to rebuild)."""
    remedy = remedy or f"delete {folder} to rebuild"
    results = folder / "results.json"
    if not results.is_file():
        return None
    try:
        record = json.loads(results.read_text())
    except ValueError as e:
        raise DataError(f"{results}: not valid JSON ({e}); {remedy}") from None
    classifier = record.get("classifier") or {}
    if record.get("status") != "finished" or not classifier.get("path"):
        return None
    path = folder / Path(classifier["path"]).name
    if not path.is_file():
        raise DataError(f"{path}: missing, but {results} says the build finished; {remedy}")
    got = file_sha256(path)
    if got != classifier.get("sha256"):
        raise DataError(f"{path}: SHA-256 {got}, expected {classifier.get('sha256')} (recorded "
                        f"by its build in {results}); {remedy}")
    return {**record, "classifier": {**classifier, "path": str(path)}}


@contextmanager
def _own_random_state():
    """Run the build with its own seed and give the caller its RNG states back."""
    import random

    import numpy as np
    import torch

    py, npy = random.getstate(), np.random.get_state()
    # lightning.seed_everything also leaves the seed in the environment, where Lightning's
    # worker_init_fn reads it for the data loader workers.
    env = {k: os.environ.get(k) for k in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")}
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)
            for key, value in env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@contextmanager
def _locked(lock: Path, wait_s: float):
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DataError(f"{lock}: another process has been building the embedded "
                                    f"ImageNet for more than embedded_imagenet.wait_s={wait_s:g} "
                                    f"s; raise it, or remove the lock if no build is running") \
                        from None
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_config(cfg: DictConfig, spec: dict, output_dir: Path) -> DictConfig:
    """The pretraining job of the recipe: the run's config with the recipe's data, pretrain
    block, solver, schedule and seed; one process, no loggers but the record, plain progress."""
    block = spec["recipe"]
    build = OmegaConf.create(to_plain(cfg))
    with open_dict(build):
        build.task = "pretrain"
        build.seed = int(block.get("seed", 0))
        build.resume = None
        build.paths.output_dir = str(output_dir)
        for key, value in (block.get("data") or {}).items():
            build.data.datamodule[key] = value
        build.pretrain = {**(block.get("pretrain") or {}), "width": spec["width"],
                          "fc_channels": spec["fc_channels"]}
        if block.get("optim"):
            build.optim = block["optim"]
        for key in ("max_steps", "val_check_interval"):
            build.trainer[key] = block["trainer"][key]
        build.trainer.devices = 1
        build.trainer.num_nodes = 1
        build.trainer.pop("strategy", None)
        build.logger = {}
        progress = OmegaConf.select(cfg, "callbacks.plain_progress")
        build.callbacks = {"plain_progress": progress} if progress is not None else {}
        build.pop("hydra", None)
    return build


def ensure(cfg: DictConfig) -> dict:
    """The cached classifier of ``cfg``'s recipe, built first if missing.

    Returns ``{"path", "sha256", "key", "accuracy", "iterations", "built_s", "built_now",
    "source"}``; source is cache (found there), shipped (copied from :data:`SHIPPED_DIR`) or
    built (trained now).
    """
    from fcnlab.tasks.pretrain import pretrain

    spec = recipe(cfg)
    key = recipe_key(spec)
    root = cache_dir(cfg)
    folder = root / key
    wait_s = float(OmegaConf.select(cfg, f"{KEYWORD}.wait_s") or 3600)
    use_shipped = OmegaConf.select(cfg, f"{KEYWORD}.shipped", default=True) is not False
    built_now, source = False, "cache"
    record = _verified(folder)
    if record is None:
        with _locked(root / f"{key}.lock", wait_s):
            record = _verified(folder)  # another process may have finished it meanwhile
            if record is None:
                if folder.exists():  # an unfinished build's leftovers
                    shutil.rmtree(folder)
                staging = root / f".{key}.{uuid.uuid4().hex[:8]}"
                staging.mkdir(parents=True)
                try:
                    if use_shipped and _copy_shipped(key, staging):
                        source = "shipped"
                        print(f"{KEYWORD}: recipe {key} copied from the file shipped with "
                              f"fcnlab ({SHIPPED_DIR / key}) into {folder}", flush=True)
                    else:
                        source = "built"
                        log.info("%s: building the embedded ImageNet classifier (recipe %s) "
                                 "in %s", KEYWORD, key, staging)
                        print(f"{KEYWORD}: building the VGG16 classifier for recipe {key} once "
                              f"(cached in {folder})", flush=True)
                        (staging / "recipe.json").write_text(json.dumps(spec, indent=2) + "\n")
                        with _own_random_state():  # the run goes on as if the cache had been
                            pretrain(_build_config(cfg, spec, staging))
                    _rewrite_paths(staging, folder)
                    os.replace(staging, folder)
                except BaseException:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise
                record = _verified(folder)
                built_now = source == "built"
                if record is None:
                    raise DataError(f"{folder}: the build did not finish")
    classifier = record["classifier"]
    last = next((e for e in reversed(record.get("evaluations") or [])
                 if e.get("split", "val") == "val"), {})
    return {"path": classifier["path"], "sha256": classifier["sha256"], "key": key,
            "accuracy": last.get("accuracy"), "iterations": record.get("iterations"),
            "built_s": record.get("wall_time_s"), "built_now": built_now, "source": source}


def _record_files(folder: Path) -> list[Path]:
    """The files of a build that name its folder: its record and the weights' sidecars."""
    return [folder / "results.json", *sorted(folder.glob("*.pt.json"))]


def _replace_in_strings(value, old: str, new: str):
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [_replace_in_strings(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _replace_in_strings(v, old, new) for k, v in value.items()}
    return value


def rewrite_folder(folder: Path, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in every string of the build's JSON files in ``folder``."""
    for path in _record_files(folder):
        if path.is_file():
            data = json.loads(path.read_text())
            path.write_text(json.dumps(_replace_in_strings(data, old, new), indent=2) + "\n")


def _copy_shipped(key: str, staging: Path) -> bool:
    """Copy the shipped build of ``key`` into ``staging``, its records pointed there; False when
    fcnlab ships none. The caller's hash check (:func:`_verified`) covers the copy."""
    shipped = SHIPPED_DIR / key
    remedy = (f"the file shipped with fcnlab is damaged; restore it (git checkout {shipped}), "
              f"or build the recipe with {KEYWORD}.shipped=false")
    if _verified(shipped, remedy) is None:
        return False
    for path in sorted(shipped.iterdir()):
        if path.is_file():
            shutil.copy2(path, staging / path.name)
    rewrite_folder(staging, PLACEHOLDER, str(staging))
    return True


def _rewrite_paths(staging: Path, folder: Path) -> None:
    """Point the build's record and sidecar at the final folder (the staging name goes away)."""
    rewrite_folder(staging, str(staging), str(folder))


def resolve_pretrained(cfg: DictConfig) -> tuple[str | None, dict | None]:
    """``model.pretrained`` as a file path, building the embedded ImageNet for :data:`KEYWORD`;
    with the cache's description (or None)."""
    value = OmegaConf.select(cfg, "model.pretrained")
    if value != KEYWORD:
        return value, None
    info = ensure(cfg)
    return info["path"], info
