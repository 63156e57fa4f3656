"""Evaluate a checkpoint: `python eval.py ckpt_path=<run>/checkpoints/last.ckpt [split=test]`."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from fcnlab.config import check_group_choices
from fcnlab.errors import FcnlabError
from fcnlab.tasks import evaluate


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    except FcnlabError as e:  # a user error: one line, no traceback
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    if problem := check_group_choices(Path(__file__).parent / "conf", sys.argv[1:]):
        sys.exit(f"error: {problem}")
    main()
