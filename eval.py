"""Evaluate a checkpoint: `python eval.py ckpt_path=<run>/checkpoints/last.ckpt [split=test]`."""

import hydra
from omegaconf import DictConfig

from fcnlab.cli import check_argv, run_task
from fcnlab.tasks.evaluate import evaluate


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    return run_task(evaluate, cfg)


if __name__ == "__main__":
    check_argv(__file__)
    main()
