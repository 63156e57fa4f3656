"""Check a data set before training: `python verify.py data=voc paths.data_dir=/data [key=value ...]`.

Exit status 0 all well, 1 bad files (all listed), 2 a wrong configuration (see fcnlab.tasks.verify).
"""

import hydra
from omegaconf import DictConfig

from fcnlab.cli import check_argv, run_task
from fcnlab.tasks.verify import BAD_CONFIG, verify


@hydra.main(version_base="1.3", config_path="conf", config_name="verify")
def main(cfg: DictConfig) -> None:
    run_task(verify, cfg)


if __name__ == "__main__":
    check_argv(__file__, status=BAD_CONFIG)
    main()
