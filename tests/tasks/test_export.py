"""ONNX export with a dynamic input size: FCN-8s, DeepLab-LargeFOV and SegNet (tiny width) pass
``onnx.checker`` and match PyTorch within 1e-4 (max |logit difference|) at two input sizes, one
different from the export size (the FCN crops must stay aligned at every size); and
``python export.py``, whose user errors are one line each."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from conftest import CONF_DIR, run_scripts
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from fcnlab.errors import ConfigError
from fcnlab.module import SegmentationModule
from fcnlab.tasks.export import compare_onnx, export, export_arguments, export_onnx

needs_export = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime")),
    reason='needs the export extra (onnx, onnxscript, onnxruntime): pip install "fcnlab[export]"')

TINY = 0.0625
NETS = {
    "fcn8s": {"_target_": "fcnlab.models.FCN", "variant": "8s"},
    "deeplab_largefov": {"_target_": "fcnlab.models.deeplab.DeepLabLargeFOV"},
    "segnet": {"_target_": "fcnlab.models.segnet.SegNet"},
}
EXPORT_SIZE = (40, 56)
OTHER_SIZE = (53, 37)  # different H, W and aspect from the export size


def _module(name: str, seed: int = 0) -> SegmentationModule:
    torch.manual_seed(seed)
    module = SegmentationModule(
        net={**NETS[name], "num_classes": 5, "width": TINY}, optim={}, loss={}, num_classes=5,
        class_names=["bg", "a", "b", "c", "d"], name=name,
        data={"datamodule": {"preprocess": "torchvision"}})
    with torch.no_grad():  # FCN scorers start at zero: make every path carry signal
        for p in module.net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return module.eval()


def _export_cfg(*overrides: str):
    """conf/export.yaml composed with ``overrides``, as ``python export.py`` composes it."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="export", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


@needs_export
@pytest.mark.parametrize("name", ["fcn8s", "segnet"])
def test_export_matches_pytorch_at_two_sizes(name, tmp_path):
    import onnx

    net = _module(name).net
    path = export_onnx(net, tmp_path / f"{name}.onnx", size=EXPORT_SIZE)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "height", "width"]
    results = compare_onnx(net, path, [EXPORT_SIZE, OTHER_SIZE])
    for r in results:
        assert r["max_abs_logit"] > 1e-3, "the comparison must not be of all-zero logits"
        assert r["max_abs_diff"] <= 1e-4, r


@needs_export
def test_export_task_on_a_deeplab_checkpoint(tmp_path, capsys):
    """``python export.py ckpt_path=… format=onnx height=40 width=56``, DeepLab-LargeFOV: the
    task the script runs, on the config it composes; same checks."""
    import onnx

    module = _module("deeplab_largefov")
    ckpt = tmp_path / "last.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict(),
                "global_step": 2}, ckpt)
    summary = export(_export_cfg(f"ckpt_path={ckpt}", "format=onnx", "height=40", "width=56"))
    out = capsys.readouterr().out
    assert "onnx.checker: passed" in out and out.count("onnxruntime vs PyTorch") == 2
    path = tmp_path / "last.onnx"
    assert summary["output"] == str(path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "height", "width"]
    for r in compare_onnx(module.net, path, [EXPORT_SIZE, OTHER_SIZE]):
        assert r["max_abs_logit"] > 1e-3 and r["max_abs_diff"] <= 1e-4, r
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["fcnlab.preprocess"] == "torchvision" and meta["fcnlab.num_classes"] == "5"


def test_export_config_defaults_and_checks():
    """conf/export.yaml's defaults reach export_checkpoint; a wrong value names its key."""
    kwargs = export_arguments(_export_cfg("ckpt_path=a/last.ckpt"))
    assert kwargs == {"ckpt_path": "a/last.ckpt", "format": "onnx", "output": None, "opset": 18,
                      "verify": True, "size": None}
    assert export_arguments(_export_cfg("ckpt_path=x", "height=40", "width=56",
                                        "verify=false", "output=m.onnx"))["size"] == (40, 56)
    for overrides, key in [(["format=tflite"], "format"), (["opset=abc"], "opset"),
                           (["opset=9"], "opset"), (["verify=yes"], "verify"),
                           (["height=40"], "height, width"),
                           (["height=0", "width=8"], "height, width")]:
        with pytest.raises(ConfigError, match=f"^{key}: expected"):
            export_arguments(_export_cfg("ckpt_path=x", *overrides))
    with pytest.raises(ConfigError, match="^ckpt_path: expected"):
        export_arguments(_export_cfg())


@pytest.mark.slow  # ~30 s of subprocesses; the export errors themselves are tested in-process above
def test_script_errors_are_one_line(tmp_path):
    """``python export.py``: a missing checkpoint, an unknown format, an argument that is not an
    override and no ckpt_path each end with one ``error:`` line and exit 1; --help exits 0."""
    runs = {
        "missing": [f"ckpt_path={tmp_path / 'missing.ckpt'}"],
        "format": ["ckpt_path=x.ckpt", "format=tflite"],
        "nonsense": ["nonsense"],
        "no_ckpt": [],
        "help": ["--help"],
    }
    done = run_scripts("export.py", runs, tmp_path)
    expected = {"format": "error: format: expected one of ['onnx'], got 'tflite'",
                "nonsense": "error: nonsense: not a valid override (missing EQUAL",
                "no_ckpt": "error: ckpt_path: expected the path of a checkpoint to export"}
    if importlib.util.find_spec("onnx") and importlib.util.find_spec("onnxscript"):
        expected["missing"] = f"error: ckpt_path: '{tmp_path / 'missing.ckpt'}' does not exist"
    for name, start in expected.items():
        code, _, err = done[name]
        assert code == 1 and err.strip().count("\n") == 0, (name, err)
        assert err.startswith(start), (name, err)
    code, out, err = done["help"]
    assert code == 0 and "usage: python export.py ckpt_path=<file.ckpt>" in out, err
    assert "opset: 18" in out  # the config, with its defaults
    assert [p.name for p in tmp_path.iterdir()] == [], "export.py wrote files on an error"
