"""Train a segmentation network: `python train.py [model=fcn8s] [data=synthetic] [key=value ...]`."""

import hydra
from omegaconf import DictConfig

from fcnlab.cli import check_argv, run_task
from fcnlab.tasks.train import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run_task(train, cfg)


if __name__ == "__main__":
    check_argv(__file__)
    main()
