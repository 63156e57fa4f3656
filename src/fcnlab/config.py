"""Config helpers: OmegaConf resolvers and the checks that turn a wrong value into one clear line.

Hydra already rejects an unknown group option (``model=foo`` lists the available ones). What it
cannot know is that ``trainer.max_steps`` must be a positive int or that ``init_from`` must name an
existing file; :func:`check_train_config` says so before anything is written or trained.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import datetime
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict

from fcnlab.errors import ConfigError, FcnlabError


def run_name(resume, overrides: str | None) -> str:
    """The name of a run folder.

    Ad-hoc runs get a microsecond stamp and the process id, so jobs started together never share
    a folder. With ``resume`` set the folder is derived from the command line's overrides (a
    readable prefix and a hash), so re-running the same command finds the same folder.
    """
    if resume in (None, False, "", "null"):
        return f"{datetime.now():%Y-%m-%d_%H-%M-%S_%f}-{os.getpid()}"
    text = overrides or "defaults"
    digest = hashlib.sha1(text.encode()).hexdigest()[:10]
    readable = re.sub(r"[^A-Za-z0-9=,._+-]+", "_", text)[:80]
    return f"{readable}-{digest}"


def _register_resolvers() -> None:
    # ``${pid:}`` makes run folders unique even for jobs started in the same microsecond.
    if not OmegaConf.has_resolver("pid"):
        OmegaConf.register_new_resolver("pid", lambda: os.getpid())
    # ``${cwd:}``: where the command was started (Hydra does not change it here). Unlike
    # ``${hydra:runtime.cwd}`` it also resolves while Hydra makes a sweep's folder.
    if not OmegaConf.has_resolver("cwd"):
        OmegaConf.register_new_resolver("cwd", os.getcwd)
    if not OmegaConf.has_resolver("run_name"):
        OmegaConf.register_new_resolver("run_name", run_name)


_register_resolvers()


def _expect(cfg: DictConfig, key: str, ok, expected: str) -> None:
    value = OmegaConf.select(cfg, key, throw_on_missing=False)
    if not ok(value):
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")


def _is_pos_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_train_config(cfg: DictConfig) -> None:
    """Validate the values train(cfg) relies on; raise ConfigError naming the first bad one."""
    for group in ("model", "data", "optim", "trainer"):
        if not isinstance(cfg.get(group), DictConfig):
            raise ConfigError(f"{group}: expected a config group (e.g. {group}=...), got nothing")
    _expect(cfg, "seed", _is_int, "an int")
    _expect(cfg, "model.name", lambda v: isinstance(v, str) and v, "a model name")
    _expect(cfg, "data.name", lambda v: isinstance(v, str) and v, "a data set name")
    _expect(cfg, "data.num_classes", lambda v: _is_pos_int(v) and v >= 2, "an int >= 2")
    _expect(cfg, "trainer.max_steps", _is_pos_int,
            "a positive int (training is counted in iterations)")
    _expect(cfg, "trainer.val_check_interval", lambda v: v is None or _is_pos_int(v),
            "a positive int: validate every N iterations")
    _expect(cfg, "loss.reduction", lambda v: v in ("mean", "sum"), "'mean' or 'sum'")
    _expect(cfg, "optim.optimizer.lr", lambda v: isinstance(v, (int, float))
            and not isinstance(v, bool) and v > 0, "a positive number")
    pretrained = OmegaConf.select(cfg, "model.pretrained")
    if pretrained == "embedded_imagenet":  # fcnlab.tasks.features: built with the run's preprocess
        pretrained = None
    elif pretrained is not None and not (isinstance(pretrained, str)
                                         and Path(pretrained).is_file()):
        raise ConfigError(f"model.pretrained: {pretrained!r} is not a file; expected a local VGG16 "
                          f"classifier state dict (torchvision or Caffe layout) or "
                          f"embedded_imagenet (the embedded scale's cached classifier)")
    from fcnlab.data.transforms import PREPROCESS_MODES

    _expect(cfg, "model.pretrained_preprocess", lambda v: v is None or v in PREPROCESS_MODES,
            f"null (detected) or the preprocess the weights expect: {list(PREPROCESS_MODES)}")
    _expect(cfg, "model.allow_preprocess_mismatch", lambda v: v is None or isinstance(v, bool),
            "true or false")
    if pretrained is not None and not OmegaConf.select(cfg, "model.allow_preprocess_mismatch"):
        # Weights fed the other input convention train, only worse (docs/reference.md §6): when
        # the convention is declared or in the file's sidecar (no tensor read), a mismatch stops
        # the run here; the Caffe layout and an undeclared file are checked when it is loaded.
        from fcnlab.models.sidecar import check_preprocess

        check_preprocess(pretrained, None, OmegaConf.select(cfg, "data.datamodule.preprocess"),
                         declared=OmegaConf.select(cfg, "model.pretrained_preprocess"))
    init_from = OmegaConf.select(cfg, "model.init_from")
    if init_from is not None:
        if not isinstance(init_from, str):
            raise ConfigError(f"model.init_from: expected a checkpoint path, got {init_from!r}")
        if not Path(init_from).is_file():
            raise ConfigError(
                f"model.init_from: checkpoint {init_from!r} does not exist; expected the .ckpt of "
                f"the previous stage (e.g. an FCN-32s run's checkpoints/last.ckpt)"
            )


def to_plain(cfg) -> dict | list | None:
    """A resolved, plain-python copy of a config node (safe to store in checkpoints)."""
    if cfg is None:
        return None
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def instantiate(node, **kwargs):
    """``hydra.utils.instantiate`` that lets our own one-line errors through unwrapped.

    Hydra wraps any exception raised by a ``_target_`` in an InstantiationException with its own
    multi-line message; a ConfigError from our constructors should reach the user as it is.
    """
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while cause is not None and not isinstance(cause, FcnlabError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise


def check_group_choices(conf_dir: str | Path, argv: list[str]) -> str | None:
    """One line naming an unknown group option on the command line (``model=nope``), or None.

    Hydra reports the same thing over several lines with its search path; this runs first so the
    user sees what was asked for and what exists. Sweeps (``model=a,b``) and lists of options
    (``callbacks=[default,early_stopping]``) are checked per item.
    """
    conf_dir = Path(conf_dir)
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        group = conf_dir / key
        if not sep or not group.is_dir() or "(" in value or value in ("null", ""):
            continue
        options = sorted(p.stem for p in group.glob("*.yaml"))
        for choice in (c.strip() for c in re.split(r"[\[\],]", value)):
            if choice and choice not in options:
                return f"{key}={choice}: no such option; expected one of {', '.join(options)}"
    return None


# conf/ of the checkout this package is installed from (train.py's config_path).
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose_job(overrides: list[str], output_dir: Path, *, config_name: str = "train",
                conf_dir: Path = CONF_DIR, keep_hydra: bool = False,
                job_id: str = "job") -> DictConfig:
    """``conf/<config_name>.yaml`` with ``overrides``, as its entry script composes it
    (HydraConfig set, so ``${hydra:...}`` resolves; the run folder is ``output_dir``). Unless
    ``keep_hydra``, the ``hydra`` node is then dropped, as ``@hydra.main`` does before calling
    the task. The ship command and the tests (tests/conftest.py) compose their jobs this way."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            cfg = compose(config_name=config_name, return_hydra_config=True, overrides=overrides)
    finally:
        GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.id = job_id
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    if not keep_hydra:
        with open_dict(cfg):
            del cfg["hydra"]
    return cfg
