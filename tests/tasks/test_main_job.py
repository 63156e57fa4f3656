"""The README's main job, as it runs: FCN-8s, embedded scale, synthetic data, default config.

Marked slow (about 4 minutes on a 2-core CPU, with the data to generate): `make test-slow`. It
guards the embedded recipe's result: the default run (from the shipped embedded ImageNet, 1,200
iterations) reached mean IU 47.3 / 48.3 / 50.2 on three seeds (docs/embedded.md), so a floor of
35 leaves room for the seed-to-seed spread while failing if the recipe stops learning (before
it, the same job ended at 16.6, with three classes at 0 IU).
"""

import pytest

from fcnlab.tasks.train import train
from conftest import compose_cfg

FLOOR = 0.35


@pytest.mark.slow
def test_default_run_learns_every_class(tmp_path):
    # A fresh data folder, as on a fresh clone.
    cfg = compose_cfg("train", [], tmp_path, data_dir=tmp_path / "data", debug=None)
    assert cfg.model.name == "fcn8s" and cfg.data.name == "synthetic"
    record = train(cfg)
    # The trunk comes from the shipped file, not a 15-minute build.
    assert record["pretrained"]["embedded_imagenet"]["source"] == "shipped"
    final = [e for e in record["evaluations"] if e["split"] == "val"][-1]
    assert final["iteration"] == cfg.trainer.max_steps
    assert final["mean_iou"] >= FLOOR, final["mean_iou"]
    assert final["pixel_acc"] > final["majority_class_pixel_acc"], final
    zero = [name for name, iou in final["iou"].items() if iou is not None and iou == 0]
    assert not zero, f"classes at 0 IU: {zero}"
