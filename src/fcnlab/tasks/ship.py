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

from omegaconf import DictConfig

from fcnlab.config import compose_job
from fcnlab.tasks.features import KEYWORD, PLACEHOLDER, SHIPPED_DIR, ensure, rewrite_folder

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
        cfg = compose_job(overrides, Path(tmp), job_id="ship")
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
