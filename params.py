"""Parameter counts of every model config: `python params.py [width=1] [classes=[21,11]]`."""

import hydra
from omegaconf import DictConfig

from fcnlab.cli import check_argv, run_task
from fcnlab.tasks.params import parameter_table


@hydra.main(version_base="1.3", config_path="conf", config_name="params")
def main(cfg: DictConfig) -> None:
    run_task(parameter_table, cfg)


if __name__ == "__main__":
    check_argv(__file__)
    main()
