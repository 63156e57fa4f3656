"""``export(cfg)``: a trained network to ONNX with a dynamic input size (``export.py``):
``python export.py ckpt_path=<run>/checkpoints/last.ckpt [format=onnx] [output=<file>.onnx]
[opset=18] [verify=true] [height=<px> width=<px>]`` (``conf/export.yaml`` has every key).

The ONNX graph takes the *preprocessed* image (``N × 3 × H × W`` float32 in the checkpoint's
``preprocess`` convention, see :mod:`fcnlab.data.transforms`) and returns the logits
``N × K × H × W``; batch, height and width are dynamic axes (``batch``, ``height``,
``width``). The preprocessing mode, class names, model name and minimum input size are stored
in the model's metadata (``metadata_props``).

How, and why so:

* The exporter is ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` + onnxscript), the
  supported path of torch 2.13, with ``dynamic_shapes``. The FCN crops are Python slices whose
  *offsets* are fixed at construction while their *lengths* come from the input's shape, so they
  trace symbolically and stay right at every size (checked at a second size after export).
* ``torch.export`` may silently specialise a dimension to the example's value; the exported
  graph's input is therefore checked to have symbolic height and width, and a specialised export
  is refused with one line instead of writing a model that only accepts one size.
* Max-unpooling (SegNet, DeconvNet): ``F.max_unpool2d`` makes ``torch.export`` specialise the
  input size, and the TorchScript exporter has no ONNX symbolic for it. For export only, each
  :class:`~fcnlab.models.unpool.MaxUnpool` of a *copy* of the network is replaced by the same
  operation written as a scatter (``zeros(N, C, H·W).scatter(2, indices, x)``: ONNX
  ``ScatterElements``), which is exactly what max-unpooling with non-overlapping windows does.
  DeconvNet's input-size check is skipped in the copy and becomes the ONNX minimum (193×193).
* Verification: ``onnx.checker.check_model``, then (with ``onnxruntime`` installed) ONNX Runtime
  against PyTorch at two sizes, the export size and a different one; the largest absolute logit
  difference must be at most ``atol`` (1e-4) × max(1, largest |logit|). Without onnxruntime the
  comparison is skipped and says so.

Needs the ``export`` extra (``onnx``, ``onnxscript``; ``onnxruntime`` for verification).
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from fcnlab.errors import ConfigError, FcnlabError
from fcnlab.models.unpool import MaxUnpool
from fcnlab.module import SegmentationModule, min_input_size

FORMATS = ("onnx",)
DEFAULT_OPSET = 18
DEFAULT_ATOL = 1e-4
MISSING_MESSAGE = 'ONNX export needs the optional extra: pip install "fcnlab[export]" ' \
                  "(onnx, onnxscript; onnxruntime to verify)"


def require_onnx():
    try:
        import onnx
        import onnxscript  # noqa: F401  (the dynamo exporter's translator)
    except ImportError as e:
        raise ConfigError(MISSING_MESSAGE) from e
    return onnx


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class ScatterMaxUnpool(nn.Module):
    """``F.max_unpool2d`` as a scatter into the flattened pre-pool map (export only).

    ``indices`` (from the matching max pool) index each plane's flattened ``H × W`` map, so
    unpooling is ``zeros(N, C, H·W).scatter(2, indices, x)``; with non-overlapping windows the
    indices are unique and this equals max-unpooling exactly.
    """

    def forward(self, x, indices=None, output_size=None):
        if indices is None or output_size is None:
            raise ValueError("ScatterMaxUnpool needs the pool's indices and the pre-pool size")
        n, c = x.shape[0], x.shape[1]
        h, w = output_size[-2], output_size[-1]
        out = x.new_zeros((n, c, h * w)).scatter(2, indices.flatten(2), x.flatten(2))
        return out.view(n, c, h, w)


def exportable_copy(net: nn.Module) -> nn.Module:
    """An eval-mode copy of ``net`` whose max-unpooling and input-size check export cleanly."""
    net = copy.deepcopy(net).eval()
    for name, module in list(net.named_modules()):
        if isinstance(module, MaxUnpool):
            parent_name, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent_name) if parent_name else net, child,
                    ScatterMaxUnpool())
    if hasattr(net, "check_input_size"):  # DeconvNet: the minimum becomes the Dim's min instead
        net.check_input_size = lambda hw: None
    return net


def _symbolic_dims(model) -> list[bool]:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return [bool(d.dim_param) for d in dims]


def export_onnx(net: nn.Module, path: str | Path, *, size: tuple[int, int] | None = None,
                opset: int = DEFAULT_OPSET, metadata: dict[str, str] | None = None) -> Path:
    """Export ``net`` (input N×3×H×W, output N×K×H×W logits) with dynamic batch, H and W.

    ``size`` is the example's H × W (default: 64×80, or the network's minimum + 16 when larger).
    Raises ConfigError when the exporter cannot keep H and W dynamic.
    """
    onnx = require_onnx()
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 11:
        raise ConfigError(f"opset: expected an int >= 11, got {opset!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lo = min_input_size(net)
    if size is None:
        size = (max(64, lo + 16), max(80, lo + 24))
    size = tuple(int(s) for s in size)
    if min(size) < lo:
        raise ConfigError(f"export size {size[0]}×{size[1]} is below the network's minimum "
                          f"input {lo}×{lo}")
    model = exportable_copy(net)
    example = torch.zeros(2, 3, *size)  # batch 2: torch.export specialises sizes 0 and 1
    dims = {0: torch.export.Dim("batch", min=1),
            2: torch.export.Dim("height", min=lo), 3: torch.export.Dim("width", min=lo)}
    name = next(iter(_forward_arg_names(model)))
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(path), dynamo=True, opset_version=opset,
                              input_names=["image"], output_names=["logits"],
                              dynamic_shapes={name: dims}, verbose=False)
    except Exception as e:  # the exporter's errors are long; keep the first line
        raise ConfigError(f"ONNX export of {type(net).__name__} failed: {type(e).__name__}: "
                          f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e
    proto = onnx.load(str(path))
    symbolic = _symbolic_dims(proto)
    if not (symbolic[2] and symbolic[3]):
        path.unlink(missing_ok=True)
        raise ConfigError(f"{type(net).__name__} cannot be exported to ONNX with a dynamic input "
                          "size: torch.export specialised height/width to the example's "
                          f"{size[0]}×{size[1]}")
    if metadata:
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = str(key), str(value)
        onnx.save(proto, str(path))
    onnx.checker.check_model(str(path))
    return path


def _forward_arg_names(model: nn.Module):
    import inspect

    return [p for p in inspect.signature(model.forward).parameters]


def compare_onnx(net: nn.Module, path: str | Path, sizes, *, seed: int = 0,
                 atol: float = DEFAULT_ATOL) -> list[dict]:
    """ONNX Runtime against PyTorch on random inputs of each H × W in ``sizes``.

    Returns per size ``{"size", "max_abs_diff", "max_abs_logit", "ok"}``, ``ok`` meaning
    ``max_abs_diff <= atol * max(1, max_abs_logit)``. Needs ``onnxruntime``.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    net = net.eval()
    gen = torch.Generator().manual_seed(seed)
    results = []
    for h, w in sizes:
        x = torch.randn(1, 3, int(h), int(w), generator=gen)
        with torch.inference_mode():
            ref = net(x).numpy()
        out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        if out.shape != ref.shape:
            results.append({"size": [h, w], "max_abs_diff": float("inf"), "max_abs_logit":
                            float(np.abs(ref).max()), "ok": False,
                            "error": f"shape {out.shape} != PyTorch {ref.shape}"})
            continue
        diff = float(np.abs(out - ref).max())
        scale = float(np.abs(ref).max())
        results.append({"size": [int(h), int(w)], "max_abs_diff": diff, "max_abs_logit": scale,
                        "ok": diff <= atol * max(1.0, scale)})
    return results


def export_checkpoint(ckpt_path: str | Path, *, format: str = "onnx",
                      output: str | Path | None = None, opset: int = DEFAULT_OPSET,
                      verify: bool = True, size: tuple[int, int] | None = None) -> dict:
    """Export the network of an fcnlab checkpoint; returns a summary (also printed by the CLI)."""
    if format not in FORMATS:
        raise ConfigError(f"format: expected one of {list(FORMATS)}, got {format!r}")
    require_onnx()
    module, ckpt = SegmentationModule.from_checkpoint(ckpt_path)
    net = module.net.eval()
    out = Path(output) if output else Path(ckpt_path).with_suffix(".onnx")
    lo = min_input_size(net)
    metadata = {
        "fcnlab.model": module.hparams.get("name", ""),
        "fcnlab.num_classes": str(module.num_classes),
        "fcnlab.class_names": json.dumps(module.class_names),
        "fcnlab.preprocess": module.preprocess,
        "fcnlab.min_input_size": str(lo),
        "fcnlab.input": "image: N x 3 x H x W float32, preprocessed (fcnlab.data.transforms)",
        "fcnlab.output": "logits: N x K x H x W float32",
        "fcnlab.iteration": str(int(ckpt.get("global_step", 0))),
    }
    export_onnx(net, out, size=size, opset=opset, metadata=metadata)
    summary = {"output": str(out), "format": format, "opset": opset,
               "model": metadata["fcnlab.model"], "preprocess": module.preprocess,
               "min_input_size": lo, "dynamic_axes": ["batch", "height", "width"],
               "checker": "passed", "comparison": None}
    if verify:
        if onnxruntime_available():
            h, w = size or (max(64, lo + 16), max(80, lo + 24))
            summary["comparison"] = compare_onnx(net, out, [(h, w), (h + 13, w - 7)])
            bad = [r for r in summary["comparison"] if not r["ok"]]
            if bad:
                raise FcnlabError(f"ONNX Runtime and PyTorch disagree: {bad[0]}")
        else:
            summary["comparison"] = "skipped: onnxruntime is not installed"
    return summary


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def export_arguments(cfg: DictConfig) -> dict:
    """The keyword arguments of :func:`export_checkpoint` from ``conf/export.yaml``'s keys,
    each checked (ConfigError naming the key, the value and what was expected)."""
    if not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path: expected the path of a checkpoint to export")
    if cfg.format not in FORMATS:
        raise ConfigError(f"format: expected one of {list(FORMATS)}, got {cfg.format!r}")
    if not _is_int(cfg.opset) or cfg.opset < 11:
        raise ConfigError(f"opset: expected an int >= 11, got {cfg.opset!r}")
    if not isinstance(cfg.verify, bool):
        raise ConfigError(f"verify: expected true or false, got {cfg.verify!r}")
    size = None
    if cfg.height is not None or cfg.width is not None:
        if not (_is_int(cfg.height) and _is_int(cfg.width) and cfg.height > 0 and cfg.width > 0):
            raise ConfigError(f"height, width: expected both, as positive ints (the example's "
                              f"size), got height={cfg.height!r} width={cfg.width!r}")
        size = (cfg.height, cfg.width)
    return {"ckpt_path": str(cfg.ckpt_path), "format": cfg.format,
            "output": str(cfg.output) if cfg.output else None, "opset": cfg.opset,
            "verify": cfg.verify, "size": size}


def export(cfg: DictConfig) -> dict:
    """Export the checkpoint ``cfg.ckpt_path`` names; print and return the summary."""
    summary = export_checkpoint(**export_arguments(cfg))
    lo = summary["min_input_size"]
    print(f"wrote {summary['output']} (ONNX opset {summary['opset']}, model "
          f"{summary['model']}, dynamic batch/height/width, min input {lo}×{lo}; input "
          f"preprocessed with '{summary['preprocess']}'); onnx.checker: passed")
    comparison = summary["comparison"]
    if isinstance(comparison, list):
        for r in comparison:
            print(f"onnxruntime vs PyTorch at {r['size'][0]}×{r['size'][1]}: max |diff| "
                  f"{r['max_abs_diff']:.2e} (max |logit| {r['max_abs_logit']:.2f})")
    elif comparison:
        print(f"numerical comparison {comparison} (pip install onnxruntime, then re-run)")
    return summary


if __name__ == "__main__":  # the command line is the top-level export.py (a Hydra app)
    raise SystemExit("error: export with `python export.py ckpt_path=<file.ckpt> [format=onnx]` "
                     "(export.py is at the repository root, next to conf/)")
