"""Shared test fixtures: a network guard and the real Hydra config, composed and shrunk.

Tests compose ``conf/train.yaml`` / ``conf/eval.yaml`` with Hydra's compose API (as the
lightning-hydra-template does), point every path into a temporary folder and apply
``debug=fast`` (tiny width, 40x56 images, 4 iterations), then call ``train(cfg)`` /
``evaluate(cfg)`` directly.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

import fcnlab.config  # noqa: F401  (registers the ${pid:} resolver used by conf/hydra)
from fcnlab.config import compose_job

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"

# `make test` runs the suite on pytest-xdist workers, one per core (`-n auto`). Each worker gets
# its share of the cores for torch's thread pool, and so do the training processes a test starts
# (OMP_NUM_THREADS is inherited), so that the workers do not oversubscribe the machine: on the
# 2-core development CPU two workers of one thread ran the suite in 9.4 min.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
if _WORKERS > 1:
    _THREADS = max(1, (os.cpu_count() or 1) // _WORKERS)
    os.environ["OMP_NUM_THREADS"] = str(_THREADS)
    torch.set_num_threads(_THREADS)


# --------------------------------------------------------------------------- network guard
class NetworkAccessError(RuntimeError):
    """A test tried to open a network connection."""


_LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost", "0:0:0:0:0:0:0:1"}


def _is_local(sock: socket.socket, address) -> bool:
    family = getattr(sock, "family", None)
    if hasattr(socket, "AF_UNIX") and family == socket.AF_UNIX:
        return True
    if isinstance(address, (str, bytes)):  # a unix socket path
        return True
    if isinstance(address, tuple) and address:
        host = address[0]
        if isinstance(host, bytes):
            host = host.decode(errors="replace")
        return str(host) in _LOOPBACK_HOSTS or str(host).startswith("127.")
    return False


def _guarded(original):
    def connect(self, address, *args, **kwargs):
        if not _is_local(self, address):
            raise NetworkAccessError(f"a test tried to open a network connection to {address!r}")
        return original(self, address, *args, **kwargs)

    connect.__name__ = original.__name__
    return connect


@pytest.fixture(scope="session", autouse=True)
def no_network():
    """Fail any test that opens a non-loopback network connection (AF_UNIX and loopback pass)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(socket.socket, "connect", _guarded(socket.socket.connect))
    mp.setattr(socket.socket, "connect_ex", _guarded(socket.socket.connect_ex))
    yield
    mp.undo()


# --------------------------------------------------------------------------- configs
@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One data folder for the whole session, so the synthetic data is generated once."""
    return tmp_path_factory.mktemp("data")


def compose_cfg(config_name: str, overrides: list[str] | None, tmp_path: Path, *,
                data_dir: Path | None = None, keep_hydra: bool = False,
                debug: str | None = "fast") -> DictConfig:
    """Compose the real ``conf/<config_name>.yaml`` with all paths under ``tmp_path``.

    ``HydraConfig`` is set, so ``${hydra:...}`` interpolations resolve as in a real run. Unless
    ``keep_hydra``, the ``hydra`` node is then dropped, as ``@hydra.main`` does before calling the
    task (so ``to_plain(cfg)`` resolves only the app config).
    """
    tmp_path = Path(tmp_path)
    output_dir = tmp_path / "run"
    base = [
        f"paths.data_dir={data_dir or tmp_path / 'data'}",
        f"paths.log_dir={tmp_path / 'logs'}",
        f"paths.output_dir={output_dir}",
    ]
    if debug:
        base.append(f"debug={debug}")
    return compose_job(base + list(overrides or []), output_dir, config_name=config_name,
                         conf_dir=CONF_DIR, keep_hydra=keep_hydra, job_id="test")


@pytest.fixture
def cfg_train(tmp_path, data_dir) -> DictConfig:
    cfg = compose_cfg("train", [], tmp_path, data_dir=data_dir)
    yield cfg
    GlobalHydra.instance().clear()


@pytest.fixture
def cfg_eval(tmp_path, data_dir) -> DictConfig:
    # ckpt_path stays ??? until the test sets it. No debug=fast here: eval rebuilds the network
    # and the data from the checkpoint, which already is a debug-size run.
    cfg = compose_cfg("eval", [], tmp_path / "eval", data_dir=data_dir, debug=None)
    yield cfg
    GlobalHydra.instance().clear()


def run_scripts(script: str, runs: dict[str, list[str]], cwd: Path,
                timeout: float = 180) -> dict[str, tuple[int, str, str]]:
    """Run the top-level ``script`` (e.g. ``"export.py"``) once per case, all at once, from
    ``cwd`` (another folder: the script must find conf/ next to itself); return
    ``{case: (exit code, stdout, stderr)}``. Each case is bounded by ``timeout`` seconds."""
    import subprocess
    import sys

    procs = {name: subprocess.Popen([sys.executable, str(ROOT / script), *args], cwd=cwd,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, args in runs.items()}
    done = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs.values():
                p.kill()
            raise
        done[name] = (proc.returncode, out, err)
    return done
