"""Reading a VGG16 weights file into a trunk: a fully connected layer turned into a convolution.

**Convolutionalization** (FCN, CVPR 2015 §3.1; docs/reference.md §2): ``fc6`` sees the 7×7×512
``pool5`` map of a 224×224 image, so its 4096×25088 weight matrix *is* a 7×7 convolution kernel
(4096×512×7×7) and ``fc7``'s 4096×4096 matrix is a 1×1 convolution. After the reshape, the trunk
computes on a 224×224 image exactly what the classifier computes, and on a larger image it slides
the classifier's ``fc`` layers over ``pool5`` with stride 32 (one 7×7 window per output position).

A file may be in the torchvision or the Caffe layer-name layout (:mod:`fcnlab.models.layouts`
reads both); before anything is copied, the input convention it expects is checked against the
run's ``preprocess`` (:mod:`fcnlab.models.sidecar`; docs/reference.md §6).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from fcnlab.errors import ConfigError
from fcnlab.models.layouts import (
    _is_bn_layout,
    caffe_to_torchvision,
    check_classifier_state,
    conv_layout,
    detect_layout,
    read_state_file,
)
from fcnlab.models.sidecar import check_preprocess
from fcnlab.models.vgg import VGG16_FC6_KERNEL

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- reading a file
def read_vgg16_classifier(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """``(state dict in the torchvision layout, layout of the file)`` for the VGG16 at ``path``.

    The file may be in the torchvision layout (``vgg16`` or ``vgg16_bn``) or in the Caffe
    layer-name layout of Caffe-converted weights (``conv1_1`` … ``fc7``; converted by
    :func:`caffe_to_torchvision`, and those weights expect ``preprocess: caffe``).
    """
    state, source = read_state_file(path)
    layout = detect_layout(state, source)
    if layout == "caffe":
        state = caffe_to_torchvision(state, source)
    return check_classifier_state(state, source), layout


def load_vgg16_classifier(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a VGG16 classifier saved at ``path``, in the torchvision layout.

    The file may hold the torchvision ``vgg16`` / ``vgg16_bn`` layout or the Caffe layer-name
    layout (``conv1_1.weight`` … ``fc7.weight``, fc6 as 4096×25088 or 4096×512×7×7), which is
    converted (:func:`caffe_to_torchvision`; Caffe weights expect ``preprocess: caffe``).
    Loading is ``weights_only=True`` (a file that would run code when unpickled is refused); a
    ``{"state_dict": ...}`` wrapper and a DataParallel ``module.`` prefix are accepted. A missing
    key or a misshapen tensor is a one-line :class:`ConfigError` naming the file, the key, the shape
    found and the shape expected.
    """
    return read_vgg16_classifier(path)[0]


# ----------------------------------------------------------------------------- the surgery
def convolutionalize(state: dict[str, torch.Tensor], trunk: nn.Module) -> dict[str, list[str]]:
    """Copy a VGG16 classifier's weights into a :class:`~fcnlab.models.vgg.VGG16` trunk.

    ``features`` convs go to ``conv1_1`` … ``conv5_3`` in order (and, from a ``vgg16_bn`` file,
    their BNs to ``conv*_bn``); ``classifier.0`` (fc × C5·7·7) is reshaped into ``fc6``
    (fc × C5 × 7 × 7) and ``classifier.3`` (fc × fc) into ``fc7`` (fc × fc × 1 × 1). A trunk without
    ``fc6``/``fc7`` (SegNet's encoder) takes only the convs.

    Shapes are compared, not assumed: the trunk must have been built at the classifier's width
    (width 1 for torchvision's weights) with the 7×7 ``fc6`` of VGG16; any mismatch is a
    ConfigError naming the key and both shapes. A plain ``vgg16`` file into a BN trunk (SegNet's
    encoder initialised from VGG16) leaves the BN layers at their initialisation; a ``vgg16_bn``
    file into a trunk without BN is refused (its BNs would be dropped). DeepLab-LargeFOV's 3×3,
    1/4-wide ``fc6``/``fc7`` take VGG16's decimated as the DeepLab authors did.

    Returns ``{"copied": [trunk keys], "kept": [trunk keys left at their initialisation]}``.
    """
    state = check_classifier_state(state, "convolutionalize")
    bn_file = _is_bn_layout(state)
    trunk_bn = bool(getattr(trunk, "batch_norm", False))
    if bn_file and not trunk_bn:
        raise ConfigError("convolutionalize: the weights are vgg16_bn (BatchNorm after every conv) "
                          "but the trunk has batch_norm=false; build it with batch_norm=true or "
                          "use plain vgg16 weights")
    target = trunk.state_dict()
    pairs: list[tuple[str, torch.Tensor]] = []  # (trunk key, value in the trunk's shape)
    for name, ci, bi in conv_layout(bn_file):
        pairs += [(f"{name}.weight", state[f"features.{ci}.weight"]),
                  (f"{name}.bias", state[f"features.{ci}.bias"])]
        if bi is not None:
            for p in ("weight", "bias", "running_mean", "running_var"):
                pairs.append((f"{name}_bn.{p}", state[f"features.{bi}.{p}"]))
    if "fc6.weight" in target:
        fc6, fc7 = state["classifier.0.weight"], state["classifier.3.weight"]
        c5 = state["features.%d.weight" % conv_layout(bn_file)[-1][1]].shape[0]
        # fc × (C5·7·7) -> fc × C5 × 7 × 7: torch.flatten of pool5 is channel-major, so this
        # is exactly the conv kernel that computes the same dot product at every position.
        fc6 = fc6.reshape(fc6.shape[0], c5, VGG16_FC6_KERNEL, VGG16_FC6_KERNEL)
        fc7 = fc7.reshape(fc7.shape[0], fc7.shape[1], 1, 1)  # fc × fc × 1 × 1
        fc6_b, fc7_b = state["classifier.0.bias"], state["classifier.3.bias"]
        want = tuple(target["fc6.weight"].shape)
        if want[-1] == 3 and fc6.shape[0] % want[0] == 0:
            # DeepLab-LargeFOV's fc6 is 3×3 with 1/4 of the filters: the authors decimated
            # VGG16's fc6 spatially (every 3rd tap of the 7×7 kernel, the dilation making up
            # for it) and by filter (every 4th), and fc7 alike (DeepLab v1, §4.1). A file whose
            # fc layers are already DeepLab's width (the embedded recipe's fc 1024) is only
            # decimated spatially.
            step = fc6.shape[0] // want[0]
            fc6, fc6_b = fc6[::step, :, ::3, ::3], fc6_b[::step]
            fc7, fc7_b = fc7[::step, ::step], fc7_b[::step]
        pairs += [("fc6.weight", fc6), ("fc6.bias", fc6_b),
                  ("fc7.weight", fc7), ("fc7.bias", fc7_b)]
    for key, value in pairs:
        if key not in target:
            raise ConfigError(f"convolutionalize: the trunk has no {key!r}; expected a VGG16 trunk "
                              f"(conv1_1 … conv5_3, fc6, fc7)")
        if tuple(value.shape) != tuple(target[key].shape):
            # Only fc6's output width differs: the file's fc layers are not the trunk's
            # (model.net.fc_channels, which the embedded scale sets to 1024: conf/scale/).
            fc_hint = (f"; the fc layers differ: the trunk's fc6/fc7 are {target[key].shape[0]} "
                       f"wide, the file's {value.shape[0]} (model.net.fc_channels, "
                       f"deviations.fc_channels)"
                       if key == "fc6.weight" and value.shape[1:] == target[key].shape[1:] else "")
            raise ConfigError(
                f"convolutionalize: {key} is {tuple(value.shape)} in the VGG16 weights but "
                f"{tuple(target[key].shape)} in the trunk; expected a trunk of the same width "
                f"(1 for torchvision weights) with VGG16's 7×7 fc6{fc_hint}"
            )
    with torch.no_grad():
        for key, value in pairs:
            target[key].copy_(value)
    copied = [k for k, _ in pairs]
    done = set(copied)
    kept = [k for k in target if k not in done and not k.endswith("num_batches_tracked")]
    kept_layers = ", ".join(sorted({k.rsplit(".", 1)[0] for k in kept})) or "none"
    log.info("convolutionalize: copied %d tensors into the trunk, kept %d at initialisation (%s)",
             len(copied), len(kept), kept_layers)
    return {"copied": copied, "kept": kept}


def file_sha256(path: str | Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_pretrained_trunk(net: nn.Module, path: str | Path, preprocess: str | None = None, *,
                          declared: str | None = None, allow_mismatch: bool = False) -> dict:
    """Initialise ``net.trunk`` from a local VGG16 classifier file (torchvision or Caffe layout).

    The file's SHA-256 is logged and returned, so a run's record names the exact weights. Before
    anything is copied, the input convention the weights expect is checked against the data's
    ``preprocess`` (:func:`check_preprocess`; ``declared`` is ``model.pretrained_preprocess``,
    ``allow_mismatch`` ``model.allow_preprocess_mismatch``): a ConfigError, or with
    ``allow_mismatch`` a warning returned as ``preprocess_warning`` (docs/reference.md §6).
    ``preprocess=None`` (a caller without a data set) checks nothing.
    """
    trunk = getattr(net, "trunk", None)
    if trunk is None:
        raise ConfigError(f"model.pretrained: {type(net).__name__} has no VGG16 trunk to load into")
    state, layout = read_vgg16_classifier(path)
    sha = file_sha256(path)
    convention = check_preprocess(path, layout, preprocess, declared=declared,
                                  allow_mismatch=allow_mismatch, sha256=sha)
    report = convolutionalize(state, trunk)
    log.info("pretrained %s (%s layout, expects preprocess=%s from %s, sha256 %s): copied %d "
             "tensors", path, layout, convention["preprocess"], convention["preprocess_from"],
             sha, len(report["copied"]))
    return {"path": str(path), "sha256": sha, "copied": len(report["copied"]), "layout": layout,
            **convention}
