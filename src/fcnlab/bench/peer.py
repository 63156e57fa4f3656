"""Peer comparison: time a reference implementation of the same network against ours.

The peer is named by an import path, never copied into this repository:

* ``package.module:Callable`` (``torchfcn.models:FCN8s``): imported with :mod:`importlib` from
  ``sys.path`` (set ``PYTHONPATH`` to a checkout);
* ``path/to/file.py:Callable``: that file. If it lies in a package (its folder has an
  ``__init__.py``, and so on up), it is imported *as part of that package*, so its relative
  imports (``from .fcn32s import ...``) work, but the packages' ``__init__.py`` files are not run
  (they often import dataset and trainer code, and its dependencies, that the model does not
  need): the packages are registered as bare packages over their folders. A name the file takes
  from a package ``__init__`` itself then fails to import, with that error.

``Callable`` may be dotted (``module:Outer.build``) and is called with ``--peer-kwargs``.

Both networks get the same input batch and the same target, are trained by the same step
(forward, cross-entropy with ignore index 255, backward, SGD step with momentum) and evaluated by
the same forward under ``no_grad``; their reps are interleaved (A B, B A, ...) so machine noise
hits both alike. Our network is built at the peer's class count (the channels of its output) and
the row's width, input and batch; the output shapes must agree.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from fcnlab.bench.measure import interleaved, median, profile_ops, timed
from fcnlab.bench.rows import Row
from fcnlab.bench.suite import Steps, build_net, logits


class PeerError(Exception):
    """A --peer that cannot be loaded, built or compared; the message names it."""


def _bare_package(name: str, folder: Path):
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [str(folder)]
    module = importlib.util.module_from_spec(spec)
    module.__path__ = [str(folder)]
    return module


def import_file(path: Path, spec: str):
    """The module of ``path``, imported within its package (without running the packages'
    ``__init__``), or standalone when it is not in a package."""
    path = path.resolve()
    parts, folder = [path.stem], path.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))  # its absolute imports of siblings / the package
    if len(parts) == 1:
        name = f"_fcnlab_peer_{path.stem}"
        if name in sys.modules:
            return sys.modules[name]
        mspec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(mspec)
        sys.modules[name] = module
        try:
            mspec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module
    pkg_folder = folder
    for i in range(len(parts) - 1):
        name = ".".join(parts[: i + 1])
        pkg_folder = pkg_folder / parts[i]
        have = sys.modules.get(name)
        if have is None:
            sys.modules[name] = _bare_package(name, pkg_folder)
        elif str(pkg_folder) not in [str(Path(p).resolve()) for p in getattr(have, "__path__", [])]:
            raise PeerError(f"--peer {spec}: a different package {name!r} is already imported "
                            f"(from {getattr(have, '__path__', have)}), not {pkg_folder}")
    return importlib.import_module(".".join(parts))


def load_peer(spec: str) -> Callable[..., torch.nn.Module]:
    """The callable that ``spec`` (``module.path:Name`` or ``path/to/file.py:Name``) names."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise PeerError(f"--peer {spec!r}: expected 'package.module:Callable' or "
                        f"'path/to/file.py:Callable'")
    is_file = target.endswith(".py") or "/" in target or "\\" in target
    try:
        if is_file:
            path = Path(target)
            if not path.is_file():
                raise PeerError(f"--peer {spec}: no file {path}")
            module = import_file(path, spec)
        else:
            module = importlib.import_module(target)
    except PeerError:
        raise
    except Exception as e:  # any import failure is the peer's, reported as such
        what = "file" if is_file else "module"
        raise PeerError(f"--peer {spec}: cannot import {what} {target!r}: "
                        f"{type(e).__name__}: {e}") from e
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PeerError(f"--peer {spec}: {target!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise PeerError(f"--peer {spec}: {attr!r} in {target!r} is not callable")
    return obj


def _n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def bench_peer(spec: str, kwargs: dict, row: Row, conf_dir: Path, device: torch.device,
               reps: int, warmup: int, profile: dict | None = None) -> dict:
    """Our ``row`` against the peer ``spec(**kwargs)``: training step and evaluation, interleaved,
    ``reps`` each after one step plus ``warmup`` of each. Ratios are ours / peer in speed
    (>= 1: ours is at least as fast). ``profile``: also profile both training steps (``ours``,
    ``peer``) and evaluation forwards (``ours_eval``, ``peer_eval``)."""
    factory = load_peer(spec)
    torch.manual_seed(0)
    try:
        peer = factory(**kwargs).to(device)
    except Exception as e:
        raise PeerError(f"--peer {spec}: building it with {kwargs} failed: "
                        f"{type(e).__name__}: {e}") from e
    if not isinstance(peer, torch.nn.Module):
        raise PeerError(f"--peer {spec}: returned {type(peer).__name__}, not a torch.nn.Module")
    x = torch.randn(row.batch, 3, *row.hw, device=device)
    peer.eval()
    try:
        with torch.no_grad():
            peer_shape = list(logits(peer(x)).shape)
    except Exception as e:
        raise PeerError(f"--peer {spec}: its forward on a {list(x.shape)} input failed: "
                        f"{type(e).__name__}: {e}") from e
    if len(peer_shape) != 4:
        raise PeerError(f"--peer {spec}: output shape {peer_shape} is not N×K×H×W")
    k = peer_shape[1]
    torch.manual_seed(0)
    ours = build_net(conf_dir, row, k).to(device)
    y = torch.randint(0, k, (row.batch, *row.hw), device=device)
    ours.eval()
    with torch.no_grad():
        ours_shape = list(logits(ours(x)).shape)
    if ours_shape != peer_shape:
        raise PeerError(f"--peer {spec}: output shapes differ on input {list(x.shape)}: ours "
                        f"({row.name}) {ours_shape}, peer {peer_shape}; not the same network "
                        f"at this input")
    a = Steps(ours, x, y, device, row.fast)
    b = Steps(peer, x, y, device)
    compile_s, prof, times = {}, {}, {}
    # The training step, then the evaluation forward: the same protocol for each mode.
    for mode, suffix in (("train", ""), ("eval", "_eval")):
        for net in (ours, peer):
            net.train(mode == "train")
        step_a, step_b = getattr(a, mode), getattr(b, mode)
        if row.fast.get("compile"):  # the first call compiles: timed apart
            compile_s[mode] = timed(step_a, device, 1)[0]
        for _ in range(1 + warmup):
            step_a()
            step_b()
        times[mode] = interleaved(step_a, step_b, device, reps)
        if profile:
            prof["ours" + suffix] = profile_ops(step_a, device, **profile)
            prof["peer" + suffix] = profile_ops(step_b, device, **profile)
        if mode == "train":
            for s in (a, b):
                s.opt.zero_grad(set_to_none=True)
    (a_train, b_train), (a_eval, b_eval) = times["train"], times["eval"]
    out = {
        "spec": spec, "kwargs": kwargs, "row": row.name, "model": row.model,
        "net": dict(row.overrides), "fast": dict(row.fast), "input_hw": list(row.hw),
        "batch": row.batch, "width": row.width, "num_classes": k,
        "ours_output_shape": ours_shape, "peer_output_shape": peer_shape,
        "output_shapes_agree": True,
        "ours_params": _n_params(ours), "peer_params": _n_params(peer),
        "params_agree": _n_params(ours) == _n_params(peer),
        "reps": reps, "order": "interleaved, alternating AB / BA",
        "ours_train_step_s": a_train, "peer_train_step_s": b_train,
        "ours_train_step_s_median": median(a_train), "peer_train_step_s_median": median(b_train),
        "ours_eval_batch_s": a_eval, "peer_eval_batch_s": b_eval,
        "ours_eval_batch_s_median": median(a_eval), "peer_eval_batch_s_median": median(b_eval),
        "train_speed_ratio": median(b_train) / median(a_train),
        "eval_speed_ratio": median(b_eval) / median(a_eval),
        "train_speed_ratio_paired": median([q / p for p, q in zip(a_train, b_train)]),
        "eval_speed_ratio_paired": median([q / p for p, q in zip(a_eval, b_eval)]),
    }
    if compile_s:
        out["compile_s"] = compile_s
    if prof:
        out["profile"] = prof
    del a, b, ours, peer, net
    return out
