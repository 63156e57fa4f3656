"""Two-process DDP evaluation (gloo, CPU) equals one process, on a split of odd size.

Lightning's default distributed sampler pads an odd split with a repeated sample, which would be
counted twice in the confusion matrix; fcnlab's ShardSampler gives each process its own samples.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from conftest import compose_cfg
from fcnlab.tasks.train import train

ROOT = Path(__file__).resolve().parents[2]


def test_two_process_evaluation_equals_one(tmp_path, data_dir):
    # 7 validation images, evaluated one per batch: rank 0 gets 4, rank 1 gets 3.
    sizes = ["data.datamodule.num_val=7", "data.datamodule.eval_batch_size=1"]
    cfg = compose_cfg("train", sizes + ["trainer.max_steps=2", "trainer.val_check_interval=2"],
                      tmp_path, data_dir=data_dir)
    train(cfg)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    records = {}
    for name, trainer in (("one", ["trainer.devices=1"]), ("two", ["trainer=ddp"])):
        out = tmp_path / name
        subprocess.run([sys.executable, str(ROOT / "eval.py"), f"ckpt_path={ckpt}",
                        "trainer.accelerator=cpu", *trainer, f"hydra.run.dir={out}",
                        f"paths.data_dir={data_dir}", f"paths.log_dir={tmp_path / 'logs'}"],
                       check=True, cwd=ROOT, capture_output=True, timeout=300)
        records[name] = json.loads((out / "results.json").read_text())["evaluations"][0]
    one, two = records["one"], records["two"]
    assert sum(map(sum, one["confmat"])) == sum(map(sum, two["confmat"]))
    assert one["confmat"] == two["confmat"]
    for key in ("pixel_acc", "mean_acc", "mean_iou", "fw_iou", "bf"):
        assert torch.isclose(torch.tensor(one[key]), torch.tensor(two[key]), equal_nan=True), key
