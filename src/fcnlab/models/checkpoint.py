"""Weight transfer between networks: staged FCN training and restoring a network from a checkpoint.

FCN-16s starts from a trained FCN-32s and FCN-8s from a trained FCN-16s (CVPR 2015 §4.2; the
reference ``solve.py`` copies every layer whose name and shape match). Because layer names here
are the paper's, that is a key copy: shared layers (the trunk, ``score_fr``, ``upscore2``,
``score_pool4``) carry over, new ones (``score_pool3``, ``upscore8``) keep their initialisation —
zero scorers, so the finer net starts out predicting exactly what the coarser one learnt to.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from fcnlab.errors import ConfigError

log = logging.getLogger(__name__)
NET_PREFIX = "net."  # how SegmentationModule stores its network in a Lightning checkpoint


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The network weights in a Lightning checkpoint or a plain state-dict file.

    Loading is ``weights_only=True``: a file that tries to run code when unpickled is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {str(path)!r} does not exist; expected a .ckpt or .pt file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure here is a bad file for the user
        raise ConfigError(f"checkpoint {str(path)!r} could not be read safely: {e}") from e
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"checkpoint {str(path)!r}: expected a state dict of tensors")
    if any(k.startswith(NET_PREFIX) for k in obj):
        obj = {k[len(NET_PREFIX):]: v for k, v in obj.items() if k.startswith(NET_PREFIX)}
    return obj


def load_init_weights(net: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Copy every weight whose name and shape match from ``path`` into ``net``.

    Returns ``{"copied": [...], "kept": [...]}`` (``kept`` = layers of ``net`` the file did not
    have, which keep their initialisation). A matching name with a different shape is an error,
    since it means the two networks differ (width, classes) and the copy would be meaningless.
    """
    source = read_state_dict(path)
    target = net.state_dict()
    copied, kept = [], []
    for key, value in target.items():
        if key not in source:
            kept.append(key)
            continue
        if source[key].shape != value.shape:
            raise ConfigError(
                f"init_from {str(path)!r}: {key} has shape {tuple(source[key].shape)} in the file but "
                f"{tuple(value.shape)} in the model; expected the same width and number of classes"
            )
        copied.append(key)
    if not copied:
        raise ConfigError(
            f"init_from {str(path)!r}: no layer of the file matches the model; expected a checkpoint "
            f"of a related network (e.g. FCN-32s for FCN-16s)"
        )
    with torch.no_grad():
        for key in copied:
            target[key].copy_(source[key])
    log.info("init_from %s: copied %d tensors, kept %d (%s)", path, len(copied), len(kept),
             ", ".join(sorted({k.rsplit('.', 1)[0] for k in kept})) or "none")
    return {"copied": copied, "kept": kept}
