"""Print every model config's parameter count: ``python -m fcnlab.models [--width 1] [--classes 21 11]``.

Builds each ``conf/model/*.yaml`` network from the real Hydra config (so the table can never
drift from what ``train.py model=…`` builds) and counts learnable and fixed parameters
(BN running statistics are buffers, not parameters).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from fcnlab.config import instantiate
from fcnlab.callbacks.records import parameter_counts


def count_models(conf_dir: Path, width: float, classes: int) -> dict[str, dict]:
    counts = {}
    names = sorted(p.stem for p in (conf_dir / "model").glob("*.yaml"))
    with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base="1.3"):
        for name in names:
            cfg = compose("train", overrides=[f"model={name}"])
            net_cfg = OmegaConf.to_container(cfg.model.net, resolve=False)
            net_cfg.update(num_classes=classes, width=width)
            with torch.device("meta"):  # shapes only: full-width nets cost no memory or time
                counts[name] = parameter_counts(instantiate(net_cfg))
    return counts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=1.0, help="1 = the papers' networks")
    parser.add_argument("--classes", type=int, nargs="+", default=[21, 11],
                        help="K values (21: VOC, 11: CamVid)")
    parser.add_argument("--conf", type=Path, default=Path("conf"), help="the Hydra config folder")
    args = parser.parse_args(argv)
    tables = {k: count_models(args.conf, args.width, k) for k in args.classes}
    head = " | ".join(f"learnable (K={k}) | fixed (K={k})" for k in args.classes)
    print(f"Parameters at width {args.width:g}:\n")
    print(f"| model | {head} |")
    print("|---|" + "---:|---:|" * len(args.classes))
    for name in tables[args.classes[0]]:
        cells = " | ".join(f"{tables[k][name]['learnable']:,} | {tables[k][name]['fixed']:,}"
                           for k in args.classes)
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
