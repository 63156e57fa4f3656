"""The README's main job, as it runs: FCN-8s, embedded scale, synthetic data, default config.

Marked slow (about 4 minutes on a 2-core CPU): `make test-slow`. It checks the README's claim
that the default run clearly beats always predicting the most frequent class.
"""

import pytest

from fcnlab.tasks.train import train
from conftest import compose_cfg


@pytest.mark.slow
def test_default_run_beats_the_majority_class(tmp_path, data_dir):
    cfg = compose_cfg("train", [], tmp_path, data_dir=data_dir, debug=None)
    assert cfg.model.name == "fcn8s" and cfg.data.name == "synthetic"
    record = train(cfg)
    final = [e for e in record["evaluations"] if e["split"] == "val"][-1]
    assert final["iteration"] == cfg.trainer.max_steps
    assert final["mean_iou"] > 1.5 * final["majority_class_mean_iou"], final
    assert final["pixel_acc"] > final["majority_class_pixel_acc"], final
