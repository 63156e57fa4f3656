"""The Hydra config: every group option composes and resolves, and bad input is one clear line."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from conftest import CONF_DIR, ROOT, NetworkAccessError, compose_cfg
from fcnlab.data import SyntheticDataModule
from optional_extras import (HYDRA_PLUGINS, extra_of, hydra_plugins_of, installed,
                             skip_unless_installed)

GROUPS = ("model", "optim", "trainer", "callbacks", "logger", "scale", "experiment", "debug",
          "data", "crf", "launcher", "hparams_search")
GROUP_OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))]
MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))


def _resolve_all(cfg, *, exclude=()) -> dict:
    """Resolve the whole config; a ??? (missing) value or a broken interpolation raises."""
    cfg = cfg.copy()
    for key in exclude:
        OmegaConf.update(cfg, key, "<excluded>", force_add=True)
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


# ----------------------------------------------------------------------------- the guard
def test_network_guard_blocks_remote_and_allows_loopback():
    with pytest.raises(NetworkAccessError):
        socket.create_connection(("192.0.2.1", 80), timeout=0.5)  # TEST-NET-1, never routable
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(NetworkAccessError):
            s.connect_ex(("192.0.2.1", 80))
    finally:
        s.close()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        client = socket.create_connection(server.getsockname(), timeout=2)
        client.close()
    finally:
        server.close()


# ----------------------------------------------------------------------------- composition
def test_group_options_found():
    assert len(GROUP_OPTIONS) >= 20 and {"fcn32s", "fcn16s", "fcn8s"} <= set(MODELS)


@pytest.mark.parametrize("group,option", GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_group_option_composes_and_resolves(group, option, tmp_path):
    # launcher=joblib / slurm, hparams_search=optuna_lr select a Hydra plugin from an extra:
    # without it (`make test EXTRAS=test`) they cannot compose, so they are skipped, saying which.
    skip_unless_installed(group, option)
    # debug=fast shrinks the synthetic data; the real data sets compose without it.
    real_data = group == "data" and option != "synthetic"
    extra = ["data.num_classes=3"] if (group, option) == ("data", "folder") else []
    cfg = compose_cfg("train", [f"{group}={option}", *extra], tmp_path,
                      debug=None if real_data else "fast")
    assert HydraConfig.get().runtime.choices[group] == option
    plain = _resolve_all(cfg)
    for key in ("model", "data", "optim", "trainer", "paths", "loss"):
        assert key in plain, key
    assert plain["trainer"]["max_steps"] > 0
    # every data set is read from (or generated into) paths.data_dir
    assert str(tmp_path / "data") in json.dumps(plain["data"]["datamodule"])


def test_every_hydra_plugin_is_known_and_declared():
    """Every Hydra plugin a config option selects is known to tests/optional_extras.py (so its
    tests skip without it) and installed by an extra of pyproject.toml (so `make` installs it)."""
    selected = {(g, o): hydra_plugins_of(g, o) for g, o in GROUP_OPTIONS}
    assert selected[("launcher", "joblib")] == [("launcher", "joblib")]  # the reader finds them
    assert selected[("hparams_search", "optuna_lr")] == [("sweeper", "optuna")]
    for (group, option), plugins in selected.items():
        for key in plugins:
            assert key in HYDRA_PLUGINS, f"{group}={option}: plugin {key} not in HYDRA_PLUGINS"
            assert extra_of(HYDRA_PLUGINS[key][1]), f"{HYDRA_PLUGINS[key][1]}: in no extra"
    # the Optuna sweeper (optuna 2.x, SQLAlchemy, alembic) is not pulled by the launchers
    assert extra_of("hydra-optuna-sweeper") == "optuna"
    assert extra_of("hydra-submitit-launcher") == extra_of("hydra-joblib-launcher") == "launchers"


def test_an_option_whose_plugin_is_absent_is_skipped(monkeypatch):
    """The skip names the extra (and does not fire when the plugin is there)."""
    import optional_extras

    monkeypatch.setattr(optional_extras, "installed", lambda module: False)
    with pytest.raises(pytest.skip.Exception, match=r'fcnlab\[optuna\]'):
        skip_unless_installed("hparams_search", "optuna_lr")
    with pytest.raises(pytest.skip.Exception, match=r'fcnlab\[launchers\]'):
        optional_extras.skip_unless_overrides_installed(["-m", "launcher=slurm,joblib"])
    skip_unless_installed("model", "fcn8s")  # no plugin: no skip
    monkeypatch.setattr(optional_extras, "installed", lambda module: True)
    skip_unless_installed("hparams_search", "optuna_lr")
    assert not installed("hydra_plugins.no_such_plugin")


def test_eval_config_composes_and_resolves(tmp_path):
    cfg = compose_cfg("eval", [], tmp_path, debug=None)
    assert OmegaConf.is_missing(cfg, "ckpt_path")  # the one value the user must give
    plain = _resolve_all(cfg, exclude=("ckpt_path",))
    assert plain["split"] == "val" and plain["task_name"] == "eval"
    assert plain["paths"]["output_dir"] == str(tmp_path / "run")
    assert "data" not in plain or plain["data"] is None  # rebuilt from the checkpoint


@pytest.mark.parametrize("model", MODELS)
def test_every_model_net_instantiates(model, tmp_path):
    cfg = compose_cfg("train", [f"model={model}"], tmp_path)
    assert cfg.model.name == model
    assert cfg.model.net.width == 0.0625  # debug=fast
    net = hydra.utils.instantiate(cfg.model.net)
    assert net.num_classes == cfg.data.num_classes
    assert sum(p.numel() for p in net.parameters()) > 0


def test_datamodule_instantiates(tmp_path):
    cfg = compose_cfg("train", [], tmp_path)
    dm = hydra.utils.instantiate(cfg.data.datamodule)
    assert isinstance(dm, SyntheticDataModule)
    assert dm.num_classes == cfg.data.num_classes
    assert dm.image_size == (40, 56) and dm.batch_size == 4
    assert Path(dm.root).parent == tmp_path / "data"
    assert not (tmp_path / "data").exists()  # nothing is generated before it is needed


# ----------------------------------------------------------------------------- hydra behaviour
def test_no_chdir_and_unique_run_dir_pattern(tmp_path):
    cfg = compose_cfg("train", [], tmp_path, keep_hydra=True)
    assert cfg.hydra.job.chdir is False
    # Ad-hoc run folders carry microseconds and the process id; the sweep folder too.
    raw = yaml.safe_load((CONF_DIR / "hydra" / "default.yaml").read_text())
    assert "%f" in raw["sweep"]["dir"] and "${pid:}" in raw["sweep"]["dir"]
    assert "${run_name:" in raw["run"]["dir"]
    run_dir = cfg.hydra.run.dir
    assert run_dir.startswith(str(tmp_path / "logs" / "train" / "runs") + os.sep)
    assert re.search(rf"\d{{4}}-\d\d-\d\d_\d\d-\d\d-\d\d_\d{{6}}-{os.getpid()}$", run_dir), run_dir
    assert "model.init_from" in cfg.hydra.job.config.override_dirname.exclude_keys
    # With resume set, the folder is derived from the overrides: the same command, same folder.
    a = compose_cfg("train", ["resume=auto", "seed=3"], tmp_path, keep_hydra=True).hydra.run.dir
    b = compose_cfg("train", ["resume=auto", "seed=3"], tmp_path, keep_hydra=True).hydra.run.dir
    c = compose_cfg("train", ["resume=auto", "seed=4"], tmp_path, keep_hydra=True).hydra.run.dir
    assert a == b != c and "seed=3" in a


# ----------------------------------------------------------------------------- command line
BAD_INPUTS = {
    "unknown_model": ["model=nope"],
    "max_steps_not_int": ["trainer.max_steps=abc"],
    "missing_init_from": ["model.init_from=/nonexistent.ckpt"],
    "width_not_number": ["model.net.width=abc"],
    "unknown_callback_in_a_list": ["callbacks=[default,nope]"],
}


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """Run every command-line case at once (they are independent), each with its own run folder
    holding a pre-existing file; returns {case: (CompletedProcess-like, run_dir)}."""
    root = tmp_path_factory.mktemp("cli")
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore"}
    env.pop("FCNLAB_DATA_DIR", None)
    env.pop("FCNLAB_LOG_DIR", None)
    common = ["debug=fast", f"paths.data_dir={root / 'data'}", f"paths.log_dir={root / 'logs'}"]
    cases = {"cfg_job": ["--cfg", "job", "--resolve"],
             "callbacks_list": ["--cfg", "job", "callbacks=[default,early_stopping]"]}
    cases.update(BAD_INPUTS)
    procs = {}
    for name, args in cases.items():
        run_dir = root / name / "run"
        run_dir.mkdir(parents=True)
        (run_dir / "keep.txt").write_text("keep me\n")
        cmd = [sys.executable, "train.py", *args, *common, f"hydra.run.dir={run_dir}"]
        procs[name] = (subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True), run_dir)
    results = {}
    for name, (proc, run_dir) in procs.items():
        out, err = proc.communicate(timeout=120)
        results[name] = (proc.returncode, out, err, run_dir)
    return results


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_cfg_job_prints_the_config(cli):
    rc, out, err, _ = cli["cfg_job"]
    assert rc == 0, err
    cfg = yaml.safe_load(out)
    assert cfg["model"]["name"] == "fcn8s" and cfg["model"]["net"]["width"] == 0.0625
    assert cfg["trainer"]["max_steps"] == 4


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_keeps_existing_run_folder(cli, case):
    rc, _, err, run_dir = cli[case]
    assert rc != 0, err
    assert (run_dir / "keep.txt").read_text() == "keep me\n"
    assert "Traceback" not in err, err


def test_unknown_model_lists_options(cli):
    rc, _, err, _ = cli["unknown_model"]
    assert rc != 0
    assert err.strip().count("\n") == 0, err  # one line
    assert err.startswith("error: model=nope: no such option"), err
    for model in MODELS:
        assert model in err, err


def test_a_list_of_group_options_is_accepted_and_checked_per_item(cli):
    """``callbacks=[default,early_stopping]`` adds a callback; a bad item is named in one line."""
    from fcnlab.config import check_group_choices

    rc, out, err, _ = cli["callbacks_list"]
    assert rc == 0, err
    callbacks = yaml.safe_load(out)["callbacks"]
    assert {"latest", "best", "early_stopping"} <= set(callbacks), callbacks
    rc, _, err, _ = cli["unknown_callback_in_a_list"]
    assert rc != 0 and err.startswith("error: callbacks=nope: no such option"), err
    assert check_group_choices(CONF_DIR, ["callbacks=[default, early_stopping]"]) is None
    assert check_group_choices(CONF_DIR, ["model=fcn8s,fcn16s"]) is None
    assert "model=fcn9s" in check_group_choices(CONF_DIR, ["model=[fcn8s,fcn9s]"])


def test_max_steps_not_int_is_one_line_error(cli):
    rc, _, err, _ = cli["max_steps_not_int"]
    assert rc != 0
    lines = _error_lines(err)
    assert len(lines) == 1, err
    assert "trainer.max_steps" in lines[0] and "positive int" in lines[0], lines[0]


def test_missing_init_from_is_one_line_error(cli):
    rc, _, err, _ = cli["missing_init_from"]
    assert rc != 0
    lines = _error_lines(err)
    assert len(lines) == 1, err
    assert "/nonexistent.ckpt" in lines[0] and "init_from" in lines[0], lines[0]


def test_bad_width_is_one_line_error(cli):
    # A ConfigError raised inside hydra.utils.instantiate must still reach the user as one
    # "error: ..." line, like every other config error.
    rc, _, err, _ = cli["width_not_number"]
    assert rc != 0
    assert "width" in err
    lines = _error_lines(err)
    assert len(lines) == 1 and "width" in lines[0], err
