"""Export a checkpoint to ONNX: `python export.py ckpt_path=<run>/checkpoints/last.ckpt [format=onnx]`."""

import hydra
from omegaconf import DictConfig

from fcnlab.cli import check_argv, run_task
from fcnlab.tasks.export import export


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    run_task(export, cfg)


if __name__ == "__main__":
    check_argv(__file__)
    main()
