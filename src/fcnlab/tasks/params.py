"""``parameter_table(cfg)``: every model config's parameter count (``params.py``).

``python params.py [width=1] [classes=[21,11]]`` builds the network of each ``conf/model/*.yaml``
from the real training config (``train.yaml`` composed with ``model=<name>``, so the table can
never drift from what ``train.py model=…`` builds) at the given width and number of classes K,
on the meta device (shapes only: full-width networks cost no memory or time), and prints one
Markdown table: learnable and fixed parameters per K (BN running statistics are buffers, not
parameters). Runs inside a Hydra app (``@hydra.main`` or ``initialize_config_dir``), whose config
search path has the ``model`` group.
"""

from __future__ import annotations

import torch
from hydra import compose
from hydra.core.global_hydra import GlobalHydra
from hydra.core.object_type import ObjectType
from omegaconf import DictConfig, OmegaConf

from fcnlab.callbacks.records import parameter_counts
from fcnlab.config import instantiate
from fcnlab.errors import ConfigError


def _classes(cfg: DictConfig) -> list[int]:
    value = cfg.classes
    values = OmegaConf.to_container(value) if OmegaConf.is_list(value) else [value]
    if not values or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 2
                             for k in values):
        shown = values if OmegaConf.is_list(value) else value
        raise ConfigError(f"classes: expected an int >= 2 or a list of them (e.g. [21,11]), "
                          f"got {shown!r}")
    return values


def _width(cfg: DictConfig) -> float:
    width = cfg.width
    if isinstance(width, bool) or not isinstance(width, (int, float)) or width <= 0:
        raise ConfigError(f"width: expected a positive number (1 = the papers' networks), "
                          f"got {width!r}")
    return float(width)


def model_names() -> list[str]:
    """The options of the ``model`` config group, as Hydra's search path has them."""
    loader = GlobalHydra.instance().config_loader()
    return sorted(loader.get_group_options("model", results_filter=ObjectType.CONFIG))


def count_models(width: float, classes: int) -> dict[str, dict]:
    """``{model: {"learnable", "fixed", "total"}}`` for every model config at ``width`` and K."""
    counts = {}
    for name in model_names():
        cfg = compose("train", overrides=[f"model={name}"])
        net_cfg = OmegaConf.to_container(cfg.model.net, resolve=False)
        net_cfg.update(num_classes=classes, width=width)
        with torch.device("meta"):
            counts[name] = parameter_counts(instantiate(net_cfg))
    return counts


def format_table(width: float, tables: dict[int, dict[str, dict]]) -> str:
    ks = list(tables)
    head = " | ".join(f"learnable (K={k}) | fixed (K={k})" for k in ks)
    lines = [f"Parameters at width {width:g}:", "", f"| model | {head} |",
             "|---|" + "---:|---:|" * len(ks)]
    for name in tables[ks[0]]:
        cells = " | ".join(f"{tables[k][name]['learnable']:,} | {tables[k][name]['fixed']:,}"
                           for k in ks)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


def parameter_table(cfg: DictConfig) -> dict:
    """Print the table for ``cfg.width`` and ``cfg.classes``; return ``{K: {model: counts}}``."""
    width, classes = _width(cfg), _classes(cfg)
    tables = {k: count_models(width, k) for k in classes}
    print(format_table(width, tables))
    return tables
