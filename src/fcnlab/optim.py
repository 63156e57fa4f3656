"""Optimizer parameter groups built on purpose (docs/reference.md §3).

The FCN and DeepLab solvers give biases twice the base learning rate and no weight decay
(Caffe ``lr_mult: 2, decay_mult: 0``); frozen layers (the fixed upsamplers, the FCN-32s-fixed
trunk) are left out entirely. The builder knows which layer types it expects and raises on any
other, so a new kind of layer can never land silently in the wrong group.
"""

from __future__ import annotations

from torch import nn

from fcnlab.errors import ConfigError

# Layer types whose parameters the builder knows how to place.
CONV_TYPES = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
NORM_TYPES = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)


def param_groups(
    net: nn.Module,
    lr: float,
    weight_decay: float,
    *,
    bias_lr_mult: float = 2.0,
    bias_decay_mult: float = 0.0,
    norm_decay_mult: float = 0.0,
) -> list[dict]:
    """Split trainable parameters into weight / bias / normalisation groups.

    Returns a list of param-group dicts with their own ``lr`` and ``weight_decay`` (and a ``name``
    that schedulers ignore but logs and tests can read). Empty groups are dropped.
    """
    groups = {
        "weight": {"params": [], "lr": lr, "weight_decay": weight_decay},
        "bias": {"params": [], "lr": lr * bias_lr_mult, "weight_decay": weight_decay * bias_decay_mult},
        "norm": {"params": [], "lr": lr, "weight_decay": weight_decay * norm_decay_mult},
    }
    seen: set[int] = set()  # a parameter shared by two modules goes in one group, once
    for mod_name, module in net.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue  # frozen: fixed upsampling, a fixed trunk
            seen.add(id(p))
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if isinstance(module, CONV_TYPES) and p_name in ("weight", "bias"):
                groups[p_name]["params"].append(p)
            elif isinstance(module, NORM_TYPES) and p_name in ("weight", "bias"):
                groups["norm"]["params"].append(p)
            else:
                raise ConfigError(
                    f"param_groups: unexpected trainable parameter {full!r} in a "
                    f"{type(module).__name__}; expected weights/biases of "
                    f"{[t.__name__ for t in CONV_TYPES + NORM_TYPES]} — add its rule to fcnlab.optim"
                )
    return [dict(g, name=name) for name, g in groups.items() if g["params"]]
