"""End to end on CPU: train(cfg) -> results.json, checkpoints, CSV; evaluate(cfg) reproduces it.

Every run composes the real config with ``debug=fast`` (width 1/16, 40x56 images, 4 iterations,
validation every 2), so the whole file takes well under a minute on two cores.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from conftest import compose_cfg
from fcnlab.errors import ConfigError
from fcnlab.module import SegmentationModule
from fcnlab.tasks.evaluate import evaluate
from fcnlab.tasks.train import train

SHORT = ["trainer.max_steps=2", "trainer.val_check_interval=2"]
RECORD_KEYS = ("model", "data", "evaluations", "parameters", "commit", "versions", "config",
               "wall_time_s", "status")
SCORE_KEYS = ("pixel_acc", "mean_acc", "mean_iou", "fw_iou", "iou", "confmat")


def _train(tmp_path: Path, data_dir: Path, overrides: list[str]) -> tuple[dict, Path]:
    cfg = compose_cfg("train", overrides, tmp_path, data_dir=data_dir)
    record = train(cfg)
    run = Path(cfg.paths.output_dir)
    assert run == tmp_path / "run"
    on_disk = json.loads((run / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(record))  # what train() returns is what it wrote
    return on_disk, run


def _val(record: dict) -> list[dict]:
    return [e for e in record["evaluations"] if e["split"] == "val"]


def _is_plain(obj) -> bool:
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return True
    if isinstance(obj, (list, tuple)):
        return all(_is_plain(v) for v in obj)
    if type(obj) is dict:
        return all(isinstance(k, str) and _is_plain(v) for k, v in obj.items())
    return False


def _check_checkpoints(run: Path) -> list[Path]:
    ckpts = sorted((run / "checkpoints").glob("*.ckpt"))
    assert ckpts, f"no checkpoint in {run}"
    for path in ckpts:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        hp = ckpt["hyper_parameters"]
        assert _is_plain(hp), f"{path.name}: hyper_parameters hold non-plain objects: {hp!r}"
        assert {"net", "optim", "loss", "num_classes", "class_names", "data"} <= set(hp)
    return ckpts


# ----------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def fcn8s_run(tmp_path_factory, data_dir):
    return _train(tmp_path_factory.mktemp("fcn8s"), data_dir, ["model=fcn8s"])


@pytest.fixture(scope="module")
def chain(tmp_path_factory, data_dir):
    """Staged training 32s -> 16s -> 8s, each stage starting from the previous last.ckpt."""
    runs = {}
    init = None
    for model in ("fcn32s", "fcn16s", "fcn8s"):
        overrides = [f"model={model}", *SHORT]
        if init is not None:
            overrides.append(f"model.init_from={init}")
        record, run = _train(tmp_path_factory.mktemp(f"chain_{model}"), data_dir, overrides)
        runs[model] = (record, run)
        init = run / "checkpoints" / "last.ckpt"
    return runs


# ----------------------------------------------------------------------------- train -> eval
def test_train_writes_record_checkpoints_and_csv(fcn8s_run):
    record, run = fcn8s_run
    for key in RECORD_KEYS:
        assert key in record, key
    assert record["status"] == "finished"
    assert record["model"] == "fcn8s" and record["data"] == "synthetic"
    assert record["iterations"] == 4
    assert [e["iteration"] for e in _val(record)] == [2, 4]
    for e in _val(record):
        for key in SCORE_KEYS:
            assert key in e, key
        assert 0.0 <= e["pixel_acc"] <= 1.0 and 0.0 <= e["mean_iou"] <= 1.0
        assert len(e["confmat"]) == 11 and all(len(row) == 11 for row in e["confmat"])
    p = record["parameters"]
    assert p["total"] == p["learnable"] + p["fixed"] and p["learnable"] > 0
    assert record["config"]["model"]["net"]["width"] == 0.0625
    assert record["wall_time_s"] > 0
    # Training time, evaluations excluded: grows between evaluations, less than the wall time.
    first, second = (e["train_s"] for e in _val(record))
    assert 0 < first < second <= record["train_time_s"] < record["wall_time_s"]
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert record["checkpoints"]["last"] == str(run / "checkpoints" / "last.ckpt")
    metrics = run / "csv" / "metrics.csv"
    assert metrics.is_file()
    with metrics.open() as f:
        rows = list(csv.DictReader(f))
    assert "val/mean_iou" in rows[0].keys()
    assert sum(1 for r in rows if r["val/mean_iou"]) == 2


def test_last_checkpoint_holds_the_final_weights(fcn8s_run):
    # last.ckpt must be the weights after the last iteration, even when the last evaluation
    # did not improve on the best one (it is what eval.py and model.init_from are given).
    record, run = fcn8s_run
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == record["iterations"] == 4


def test_eval_reproduces_the_final_validation(fcn8s_run, cfg_eval):
    record, run = fcn8s_run
    cfg_eval.ckpt_path = str(run / "checkpoints" / "last.ckpt")
    result = evaluate(cfg_eval)
    out = Path(cfg_eval.paths.output_dir)
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(result))
    assert result["status"] == "finished" and result["task"] == "eval"
    assert result["model"] == "fcn8s" and result["data"] == "synthetic"
    (evaluation,) = result["evaluations"]
    final = _val(record)[-1]
    assert evaluation["split"] == "val"
    for key in SCORE_KEYS:
        assert evaluation[key] == final[key], key  # exactly, not approximately
    assert evaluation["iteration"] == final["iteration"]


def test_eval_accepts_debug_fast(fcn8s_run, tmp_path, data_dir):
    # conf/eval.yaml offers the debug group, so `eval.py ckpt_path=... debug=fast` must run.
    _, run = fcn8s_run
    cfg = compose_cfg("eval", [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"], tmp_path,
                      data_dir=data_dir, debug="fast")
    result = evaluate(cfg)
    assert result["status"] == "finished" and len(result["evaluations"]) == 1


def test_eval_scores_with_other_metric_settings_when_asked(fcn8s_run, tmp_path, data_dir):
    """eval.py metrics.boundary.preset=fcnlab_v1: the run's checkpoint scored with the older BF
    rule (and an older mean IU rule), the network and everything else as trained."""
    from fcnlab.metrics.boundary import resolve_options

    _, run = fcn8s_run
    ckpt = run / "checkpoints" / "last.ckpt"
    module, _ = SegmentationModule.from_checkpoint(ckpt)
    assert module.val_bf.options == resolve_options("segnet_script")  # as trained (default)
    cfg = compose_cfg("eval", [f"ckpt_path={ckpt}", "metrics.boundary.preset=fcnlab_v1",
                               "metrics.mean_over=gt_present"], tmp_path, data_dir=data_dir,
                      debug=None)
    result = evaluate(cfg)
    (evaluation,) = result["evaluations"]
    legacy, _ = SegmentationModule.from_checkpoint(
        ckpt, metrics={"mean_over": "gt_present", "boundary": {"preset": "fcnlab_v1"}})
    assert legacy.val_bf.options == resolve_options("fcnlab_v1")
    assert legacy.val_scores.mean_over == "gt_present"
    # The override reached the scores: gt_present leaves out the classes predicted but absent
    # from the ground truth, which union_present (the run's) counts as 0, so it cannot be lower;
    # what does not depend on the rule is unchanged.
    final = _val(fcn8s_run[0])[-1]
    assert evaluation["pixel_acc"] == final["pixel_acc"]
    assert evaluation["mean_iou"] >= final["mean_iou"]
    assert result["config"]["metrics"]["boundary"]["preset"] == "fcnlab_v1"


def test_load_module_rebuilds_the_network(fcn8s_run):
    _, run = fcn8s_run
    module, ckpt = SegmentationModule.from_checkpoint(run / "checkpoints" / "last.ckpt")
    assert isinstance(module, SegmentationModule)
    assert module.hparams.name == "fcn8s" and module.num_classes == 11
    state = module.state_dict()
    for key, value in ckpt["state_dict"].items():
        assert torch.equal(state[key], value), key


# ----------------------------------------------------------------------------- staged / variants
def test_staged_chain_copies_weights(chain):
    assert chain["fcn32s"][0]["init_copied"] is None
    for model, previous in (("fcn16s", "fcn32s"), ("fcn8s", "fcn16s")):
        record, _ = chain[model]
        assert record["status"] == "finished" and record["model"] == model
        assert record["init_from"] == str(chain[previous][1] / "checkpoints" / "last.ckpt")
        assert record["init_copied"] > 0
    for record, _ in chain.values():
        assert [e["iteration"] for e in _val(record)] == [2]


@pytest.mark.parametrize("overrides,model", [
    (["model=fcn8s_atonce"], "fcn8s_atonce"),
    (["model=fcn32s_fixed"], "fcn32s_fixed"),
    (["model=fcn32s", "loss.reduction=sum", "optim.optimizer.lr=1e-8"], "fcn32s"),
], ids=["fcn8s_atonce", "fcn32s_fixed", "loss_sum"])
def test_variants_run(overrides, model, tmp_path, data_dir):
    record, run = _train(tmp_path, data_dir, [*overrides, *SHORT])
    assert record["status"] == "finished" and record["model"] == model
    assert [e["iteration"] for e in _val(record)] == [2]
    if model == "fcn32s_fixed":
        assert 0 < record["parameters"]["learnable"] < record["parameters"]["fixed"]
    if "loss.reduction=sum" in overrides:
        assert record["config"]["loss"]["reduction"] == "sum"
    _check_checkpoints(run)


def test_every_checkpoint_loads_safely_with_plain_hparams(fcn8s_run, chain):
    runs = [fcn8s_run[1]] + [run for _, run in chain.values()]
    assert sum(len(_check_checkpoints(run)) for run in runs) >= 4


# ----------------------------------------------------------------------------- bad config
@pytest.mark.parametrize("override,key", [
    ("trainer.max_steps=abc", "trainer.max_steps"),
    ("trainer.max_steps=0", "trainer.max_steps"),
    ("trainer.val_check_interval=1.5", "trainer.val_check_interval"),
    ("optim.optimizer.lr=fast", "optim.optimizer.lr"),
    ("seed=x", "seed"),
    ("loss.reduction=median", "loss.reduction"),
    ("model.net.width=abc", "width"),
])
def test_wrong_value_raises_config_error_before_any_checkpoint(override, key, tmp_path, data_dir):
    cfg = compose_cfg("train", [override], tmp_path, data_dir=data_dir)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        train(cfg)
    assert not list(tmp_path.rglob("*.ckpt"))


def test_module_rejects_unknown_loss_reduction(tmp_path):
    cfg = compose_cfg("train", [], tmp_path)
    from fcnlab.config import to_plain

    with pytest.raises(ConfigError, match="loss.reduction"):
        SegmentationModule(net=to_plain(cfg.model.net), optim=to_plain(cfg.optim),
                           loss={"reduction": "median"}, num_classes=11,
                           class_names=[str(i) for i in range(11)])


@pytest.mark.parametrize("task", [[], ["model=vgg16_classifier"]], ids=["train", "pretrain"])
def test_plain_progress_lines_when_not_a_terminal(tmp_path, data_dir, task):
    # Under pytest stdout is captured, not a terminal: no bar, one plain line per N iterations.
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(root / "train.py"), "debug=fast", *task,
                          "trainer.max_steps=4", "trainer.log_every_n_steps=2",
                          f"paths.log_dir={tmp_path}", f"paths.data_dir={data_dir}"],
                         cwd=root, capture_output=True, text=True, timeout=300, check=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("iter ")]
    assert [ln.split()[1] for ln in lines] == ["2/4", "4/4"]
    assert "\r" not in out.stdout and "━" not in out.stdout + out.stderr


# ----------------------------------------------------------------------------- ckpt_path alias
def test_ckpt_path_resumes_as_resume_does(fcn8s_run, tmp_path, data_dir):
    # A lightning-hydra-template user types `train.py ckpt_path=<file>`: it is resume=<file>.
    _, run = fcn8s_run
    last = run / "checkpoints" / "last.ckpt"  # iteration 4 of 4
    more = ["trainer.max_steps=6", "trainer.val_check_interval=2"]
    records, weights = {}, {}
    for key in ("ckpt_path", "resume"):
        record, out = _train(tmp_path / key, data_dir, [*more, f"{key}={last}"])
        records[key] = record
        weights[key] = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu",
                                  weights_only=True)["state_dict"]
    alias, resume = records["ckpt_path"], records["resume"]
    assert alias["resumed_from"] == resume["resumed_from"] == {"checkpoint": str(last),
                                                                "iteration": 4}
    assert [e["iteration"] for e in _val(alias)] == [2, 4, 6]  # the file's run's, then its own
    def scores(record):  # what each evaluation measured; train_s is each process's own time
        return [{k: v for k, v in e.items() if k != "train_s"} for e in record["evaluations"]]

    assert scores(alias) == scores(resume)
    assert weights["ckpt_path"].keys() == weights["resume"].keys()
    for name, tensor in weights["ckpt_path"].items():
        assert torch.equal(tensor, weights["resume"][name]), name


@pytest.mark.parametrize("overrides, match", [
    (["ckpt_path=/no/such.ckpt"], "/no/such.ckpt"),  # resume's own check, same words
    (["resume=auto", "ckpt_path=/some/last.ckpt"], r"resume=auto and ckpt_path=/some/last\.ckpt"),
])
def test_ckpt_path_bad_input_is_one_line(overrides, match, tmp_path, data_dir):
    cfg = compose_cfg("train", overrides, tmp_path, data_dir=data_dir)
    with pytest.raises(ConfigError, match=match) as info:
        train(cfg)
    assert "\n" not in str(info.value)
    assert not list(tmp_path.rglob("*.ckpt"))
