"""Ship the embedded ImageNet classifier of the current recipe with fcnlab.

    python -m fcnlab.tasks.ship [train.py overrides]

takes the classifier of the recipe those overrides compose (conf/scale/embedded.yaml's
``embedded_imagenet`` block; none: the main job's) from the cache under ``paths.data_dir``,
building it first if it is not there (about 12 min on a 2-core CPU, docs/embedded.md), and copies
it to ``src/fcnlab/assets/embedded_imagenet/<key>/`` (:data:`fcnlab.tasks.features.SHIPPED_DIR`),
where a run whose cache lacks that recipe finds it (fcnlab.tasks.features). Shipped folders of
other recipes are removed: the repository carries the current recipe's file only. The records
name the folder as ``{folder}``. The slow test ``tests/tasks/test_ship.py`` rebuilds the shipped
recipe from scratch and compares the result with the shipped file.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from fcnlab.tasks.features import KEYWORD, PLACEHOLDER, SHIPPED_DIR, ensure, rewrite_folder

# conf/ of the checkout this package is installed from (train.py's config_path).
CONF_DIR = Path(__file__).resolve().parents[3] / "conf"


def compose_train(overrides: list[str], output_dir: Path, *, config_name: str = "train",
                  conf_dir: Path = CONF_DIR, keep_hydra: bool = False,
                  job_id: str = "ship") -> DictConfig:
    """``conf/<config_name>.yaml`` with ``overrides``, as its entry script composes it
    (HydraConfig set, so ``${hydra:...}`` resolves; the run folder is ``output_dir``). Unless
    ``keep_hydra``, the ``hydra`` node is then dropped, as ``@hydra.main`` does before calling
    the task. The tests compose every config this way (tests/conftest.py)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            cfg = compose(config_name=config_name, return_hydra_config=True, overrides=overrides)
    finally:
        GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.id = job_id
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    if not keep_hydra:
        with open_dict(cfg):
            del cfg["hydra"]
    return cfg


def ship(cfg: DictConfig, dest_root: Path = SHIPPED_DIR) -> tuple[Path, dict]:
    """Copy the cached classifier of ``cfg``'s recipe (built if missing) to ``dest_root/<key>``;
    returns that folder and :func:`~fcnlab.tasks.features.ensure`'s description."""
    info = ensure(cfg)
    source = Path(info["path"]).parent
    dest = dest_root / info["key"]
    staging = dest_root / f".{info['key']}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for path in sorted(source.iterdir()):
        if path.is_file():
            shutil.copy2(path, staging / path.name)
    rewrite_folder(staging, str(source), PLACEHOLDER)
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    for other in dest_root.iterdir():
        if other.is_dir() and other != dest:
            shutil.rmtree(other)
            print(f"removed {other} (another recipe)")
    return dest, info


def main(argv: list[str] | None = None) -> int:
    overrides = list(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="fcnlab-ship-") as tmp:
        cfg = compose_train(overrides, Path(tmp))
        if not cfg.get(KEYWORD):
            print(f"error: the composed config has no `{KEYWORD}` block (scale=embedded sets it)",
                  file=sys.stderr)
            return 1
        dest, info = ship(cfg)
    print(f"{KEYWORD} recipe {info['key']}: val crop accuracy {100 * info['accuracy']:.1f} at "
          f"{info['iterations']} iterations, SHA-256 {info['sha256']}")
    print(f"shipped: {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
