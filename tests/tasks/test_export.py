"""ONNX export with a dynamic input size: FCN-8s, DeepLab-LargeFOV and SegNet (tiny width) pass
``onnx.checker`` and match PyTorch within 1e-4 (max |logit difference|) at two input sizes, one
different from the export size (the FCN crops must stay aligned at every size)."""

from __future__ import annotations


import pytest
import torch

pytest.importorskip("onnx", reason='needs the export extra: pip install "fcnlab[export]"')
pytest.importorskip("onnxscript", reason='needs the export extra: pip install "fcnlab[export]"')
ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime to compare numerically")

import onnx  # noqa: E402

from fcnlab.tasks.export import compare_onnx, export_onnx, main  # noqa: E402
from fcnlab.module import SegmentationModule  # noqa: E402

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


@pytest.mark.parametrize("name", ["fcn8s", "segnet"])
def test_export_matches_pytorch_at_two_sizes(name, tmp_path):
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


def test_cli_exports_a_deeplab_checkpoint(tmp_path, capsys):
    """``python -m fcnlab.tasks.export ckpt_path=… format=onnx``, DeepLab-LargeFOV: same checks."""
    module = _module("deeplab_largefov")
    ckpt = tmp_path / "last.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict(),
                "global_step": 2}, ckpt)
    assert main([f"ckpt_path={ckpt}", "format=onnx", "height=40", "width=56"]) == 0
    out = capsys.readouterr().out
    assert "onnx.checker: passed" in out and out.count("onnxruntime vs PyTorch") == 2
    path = tmp_path / "last.onnx"
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "height", "width"]
    for r in compare_onnx(module.net, path, [EXPORT_SIZE, OTHER_SIZE]):
        assert r["max_abs_logit"] > 1e-3 and r["max_abs_diff"] <= 1e-4, r
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["fcnlab.preprocess"] == "torchvision" and meta["fcnlab.num_classes"] == "5"


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main([f"ckpt_path={tmp_path / 'missing.ckpt'}"]) == 1
    assert main(["ckpt_path=x.ckpt", "format=tflite"]) == 1
    assert main(["nonsense"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert "does not exist" in err[0] and "'onnx'" in err[1]
