"""Print every model config's parameter count: ``python -m fcnlab.models [--width 1] [--classes 21]``.

Builds each ``conf/model/*.yaml`` network from the real Hydra config (so the table can never
drift from what ``train.py model=…`` builds) and counts learnable and fixed parameters.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from fcnlab.records import parameter_counts


def count_models(conf_dir: Path, width: float, classes: int) -> list[tuple[str, dict]]:
    rows = []
    names = sorted(p.stem for p in (conf_dir / "model").glob("*.yaml"))
    with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base="1.3"):
        for name in names:
            cfg = compose("train", overrides=[f"model={name}"])
            net_cfg = OmegaConf.to_container(cfg.model.net, resolve=False)
            net_cfg.update(num_classes=classes, width=width)
            rows.append((name, parameter_counts(hydra.utils.instantiate(net_cfg))))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=1.0, help="1 = the papers' networks")
    parser.add_argument("--classes", type=int, default=21, help="K (21: VOC, 11: CamVid)")
    parser.add_argument("--conf", type=Path, default=Path("conf"), help="the Hydra config folder")
    args = parser.parse_args(argv)
    print(f"Parameters at width {args.width:g}, K = {args.classes}:\n")
    print("| model | learnable | fixed | total |")
    print("|---|---:|---:|---:|")
    for name, c in count_models(args.conf, args.width, args.classes):
        print(f"| {name} | {c['learnable']:,} | {c['fixed']:,} | {c['total']:,} |")


if __name__ == "__main__":
    main()
