"""VGG16 weights in the Caffe layer-name layout → the torchvision layout ``convolutionalize`` reads.

The popular PyTorch port of FCN (wkentaro/pytorch-fcn) and most Caffe→PyTorch converters save
VGG16 under Caffe's layer names instead of torchvision's ``features.N`` / ``classifier.N``:

* ``conv1_1.weight`` / ``conv1_1.bias`` … ``conv5_3.*``: the 13 3×3 convolutions;
* ``fc6.weight``: ``4096×25088`` (an InnerProduct / ``nn.Linear``) or ``4096×512×7×7`` (already
  a convolution, as in an FCN net's own state dict); ``fc7.weight``: ``4096×4096`` or
  ``4096×4096×1×1``; ``fc8.weight`` (optional, unused by FCN): ``1000×4096`` or ``1000×4096×1×1``;
  each with its ``.bias``.

:func:`caffe_to_torchvision` renames and reshapes those keys into the torchvision ``vgg16``
layout (``fc6`` flattened channel-major, which is how both Caffe's InnerProduct and
``torch.flatten`` order pool5, so the two reshapes are exact inverses); :func:`load_caffe_vgg16`
does it for a file, and :func:`detect_layout` tells the two layouts apart so ``model.pretrained``
accepts either (``fcnlab.models.convert.load_vgg16_classifier``).

**Input convention.** Caffe-converted weights expect Caffe input: BGR channel order, 0–255
scale, the VGG mean subtracted (``data.datamodule.preprocess: caffe``). The conversion keeps
``conv1_1``'s input channels in BGR order on purpose: flipping them to RGB would give weights that
expect RGB at 0–255 scale, which neither preprocessing mode produces. Feeding Caffe weights
``preprocess: torchvision`` input (or torchvision's ImageNet weights Caffe input) is a classic
reason FCN numbers do not reproduce (REFERENCE.md §6): the network runs and trains, just worse.
:func:`expected_preprocess` says what a file expects when that is known, so the loader can warn.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from fcnlab.errors import ConfigError
from fcnlab.models.convert import check_classifier_state, conv_layout
from fcnlab.models.vgg import VGG16_FC6_KERNEL

log = logging.getLogger(__name__)

LAYOUTS = ("torchvision", "caffe")
CAFFE_CONVS: tuple[str, ...] = tuple(name for name, _, _ in conv_layout(False))  # conv1_1 … conv5_3
CAFFE_FCS = ("fc6", "fc7", "fc8")
# torchvision index of each fully connected layer in ``classifier``
_FC_INDEX = {"fc6": 0, "fc7": 3, "fc8": 6}
# Where a run records what input convention its weights expect (written by fcnlab.pretrain).
SIDECAR_SUFFIX = ".json"


def _strip_wrappers(state):
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if isinstance(state, dict) and state and all(
            isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def detect_layout(state: dict, source: str = "VGG16 weights") -> str:
    """``"torchvision"`` (``features.*`` / ``classifier.*``) or ``"caffe"`` (``conv1_1.*`` …).

    Anything else is a ConfigError that names the keys each layout needs and shows a few of the
    keys the file has.
    """
    state = _strip_wrappers(state)
    if not isinstance(state, dict) or not state:
        raise ConfigError(f"{source}: expected a VGG16 classifier state dict, got "
                          f"{type(state).__name__}")
    keys = [k for k in state if isinstance(k, str)]
    if any(k.startswith(("features.", "classifier.")) for k in keys):
        return "torchvision"
    if any(k.split(".", 1)[0] in CAFFE_CONVS + CAFFE_FCS for k in keys):
        return "caffe"
    shown = ", ".join(repr(k) for k in keys[:6]) + (", ..." if len(keys) > 6 else "")
    raise ConfigError(f"{source}: key 'features.0.weight' (torchvision layout) or 'conv1_1.weight' "
                      f"(Caffe layout) is missing; the file has {shown}")


def _tensor(state: dict, key: str, source: str) -> torch.Tensor:
    value = state.get(key)
    if value is None:
        raise ConfigError(f"{source}: key {key!r} is missing; expected a VGG16 state dict in the "
                          f"Caffe layout (conv1_1 … conv5_3, fc6, fc7 weights and biases)")
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        found = str(value.dtype) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ConfigError(f"{source}: key {key!r} is {found}; expected a floating-point tensor")
    return value


def _shape_error(source: str, key: str, value: torch.Tensor, *expected: tuple) -> ConfigError:
    shown = " or ".join(str(tuple(e)) for e in expected)
    return ConfigError(f"{source}: key {key!r} has shape {tuple(value.shape)}, expected {shown}")


def caffe_to_torchvision(state: dict, source: str = "VGG16 weights") -> dict[str, torch.Tensor]:
    """Rename and reshape a Caffe-layout VGG16 state dict into the torchvision ``vgg16`` layout.

    Channel counts are read from the file (any ``width``); every shape must agree with them, and a
    missing or misshapen key is a one-line ConfigError naming the Caffe key. Tensors are reshaped
    views (no copy); ``conv1_1`` keeps its BGR input order (see the module docstring).
    """
    state = _strip_wrappers(state)
    out: dict[str, torch.Tensor] = {}
    in_ch = 3
    for name, ci, _ in conv_layout(False):
        w = _tensor(state, f"{name}.weight", source)
        out_ch = int(w.shape[0]) if w.dim() >= 1 else 0
        if tuple(w.shape) != (out_ch, in_ch, 3, 3) or out_ch == 0:
            raise _shape_error(source, f"{name}.weight", w, (out_ch or "C", in_ch, 3, 3))
        b = _tensor(state, f"{name}.bias", source)
        if tuple(b.shape) != (out_ch,):
            raise _shape_error(source, f"{name}.bias", b, (out_ch,))
        out[f"features.{ci}.weight"], out[f"features.{ci}.bias"] = w, b
        in_ch = out_ch
    k = VGG16_FC6_KERNEL
    fc6 = _tensor(state, "fc6.weight", source)
    fc = int(fc6.shape[0]) if fc6.dim() >= 1 else 0
    if fc6.dim() == 4 and tuple(fc6.shape) == (fc, in_ch, k, k):
        fc6 = fc6.reshape(fc, in_ch * k * k)  # conv kernel -> InnerProduct, channel-major
    elif tuple(fc6.shape) != (fc, in_ch * k * k) or fc == 0:
        raise _shape_error(source, "fc6.weight", fc6, (fc, in_ch * k * k), (fc, in_ch, k, k))
    out["classifier.0.weight"] = fc6
    expected_in = {"fc7": fc, "fc8": fc}
    for name in ("fc6", "fc7", "fc8"):
        if name == "fc8" and "fc8.weight" not in state and "fc8.bias" not in state:
            break  # optional: FCN replaces the ImageNet scorer
        if name != "fc6":
            w = _tensor(state, f"{name}.weight", source)
            rows = int(w.shape[0]) if w.dim() >= 1 else 0
            n_in = expected_in[name]
            want = (fc if name == "fc7" else rows, n_in)
            if w.dim() == 4 and tuple(w.shape) == (*want, 1, 1):
                w = w.reshape(want)
            elif tuple(w.shape) != want or rows == 0:
                raise _shape_error(source, f"{name}.weight", w, want, (*want, 1, 1))
            out[f"classifier.{_FC_INDEX[name]}.weight"] = w
        rows = out[f"classifier.{_FC_INDEX[name]}.weight"].shape[0]
        b = _tensor(state, f"{name}.bias", source)
        if tuple(b.shape) != (rows,):
            raise _shape_error(source, f"{name}.bias", b, (rows,))
        out[f"classifier.{_FC_INDEX[name]}.bias"] = b
    known = {f"{n}.{p}" for n in CAFFE_CONVS + CAFFE_FCS for p in ("weight", "bias")}
    extra = sorted(k for k in state if k not in known)
    if extra:
        log.info("%s: ignoring %d keys that are not VGG16 layers (%s)", source, len(extra),
                 ", ".join(extra[:5]) + (", ..." if len(extra) > 5 else ""))
    return out


def torchvision_to_caffe(state: dict, *, fc_as_conv: bool = False) -> dict[str, torch.Tensor]:
    """The inverse of :func:`caffe_to_torchvision` for a plain (no BN) torchvision ``vgg16``.

    ``fc_as_conv`` writes fc6/fc7/fc8 as convolution kernels (``fc×C5×7×7``, ``fc×fc×1×1``), the
    form an FCN net's own state dict uses. For tests and for exporting to Caffe-layout tools.
    """
    state = check_classifier_state(dict(state), "torchvision_to_caffe")
    out: dict[str, torch.Tensor] = {}
    for name, ci, bi in conv_layout(False):
        out[f"{name}.weight"] = state[f"features.{ci}.weight"]
        out[f"{name}.bias"] = state[f"features.{ci}.bias"]
    c5 = out["conv5_3.weight"].shape[0]
    k = VGG16_FC6_KERNEL
    for name, index in _FC_INDEX.items():
        w = state.get(f"classifier.{index}.weight")
        if w is None:
            continue
        if fc_as_conv:
            w = w.reshape(w.shape[0], c5, k, k) if name == "fc6" else w.reshape(*w.shape, 1, 1)
        out[f"{name}.weight"] = w
        out[f"{name}.bias"] = state[f"classifier.{index}.bias"]
    return out


def read_state_file(path: str | Path, what: str = "VGG16 weights") -> tuple[dict, str]:
    """``(state dict, source text for errors)`` of a file, loaded with ``weights_only=True``."""
    path = Path(path)
    source = f"{what} {str(path)!r}"
    if not path.is_file():
        raise ConfigError(f"{source} do not exist; expected a .pt/.pth file holding a VGG16 "
                          f"classifier state dict")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure here is a bad file for the user
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{source} could not be read safely (torch.load weights_only=True): "
                          f"{first}") from e
    return _strip_wrappers(obj), source


def load_caffe_vgg16(path: str | Path) -> dict[str, torch.Tensor]:
    """A Caffe-layout VGG16 file as a checked torchvision-layout state dict.

    Use the result with ``data.datamodule.preprocess: caffe`` (module docstring).
    """
    state, source = read_state_file(path)
    layout = detect_layout(state, source)
    if layout != "caffe":
        raise ConfigError(f"{source}: expected the Caffe layout (conv1_1.weight, …), found the "
                          f"torchvision layout; load it with load_vgg16_classifier")
    return check_classifier_state(caffe_to_torchvision(state, source), source)


def expected_preprocess(path: str | Path, layout: str) -> str | None:
    """The input convention the weights at ``path`` expect, when it is known.

    ``caffe`` for the Caffe layout; for a file written by ``experiment=pretrain_vgg`` the value in
    its sidecar ``<file>.json``; otherwise None (a torchvision-layout file may hold torchvision's
    ImageNet weights, which expect ``torchvision``, or Caffe weights saved in that layout).
    """
    if layout == "caffe":
        return "caffe"
    sidecar = Path(str(path) + SIDECAR_SUFFIX)
    try:
        value = json.loads(sidecar.read_text()).get("preprocess")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def check_preprocess(path: str | Path, layout: str, preprocess: str | None) -> str | None:
    """Warn (and return the message) when the data's preprocessing differs from the weights'."""
    expected = expected_preprocess(path, layout)
    if expected is None or preprocess is None or expected == preprocess:
        return None
    message = (f"model.pretrained {str(path)!r} expects data.datamodule.preprocess={expected} "
               f"input but the data uses preprocess={preprocess}: the trunk will see inputs in "
               f"the wrong channel order/scale (REFERENCE.md §6); set "
               f"data.datamodule.preprocess={expected}")
    log.warning(message)
    return message
