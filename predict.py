"""Segment images with a checkpoint: `python predict.py ckpt_path=<run>/checkpoints/last.ckpt
input=<image or folder> output=<folder> [crf.enabled=true]`."""

import hydra
from omegaconf import DictConfig

from fcnlab.cli import check_argv, run_task
from fcnlab.tasks.predict import predict


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    run_task(predict, cfg)


if __name__ == "__main__":
    check_argv(__file__)
    main()
