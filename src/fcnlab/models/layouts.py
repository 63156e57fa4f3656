"""The two key layouts of a VGG16 classifier file, and the check that a state dict is one.

**Two file layouts** are read, told apart by :func:`detect_layout`:

* torchvision (``vgg16`` / ``vgg16_bn``, and :class:`~fcnlab.models.vgg.VGG16Classifier`):
  ``features.{0,2,5,7,10,12,14,17,19,21,24,26,28}`` are the 13 convolutions (``vgg16_bn`` puts a
  BatchNorm after each, so its convs are at ``0,3,7,10,14,17,20,24,27,30,34,37,40`` and its BNs one
  index later); ``classifier.0`` (fc6, 4096×25088), ``classifier.3`` (fc7), ``classifier.6`` (fc8,
  optional and unused: FCN replaces it with a zero-initialised scorer);
* Caffe layer names (wkentaro/pytorch-fcn and most Caffe→PyTorch converters): ``conv1_1`` …
  ``conv5_3``, ``fc6`` (4096×25088 or already 4096×512×7×7), ``fc7``, ``fc8``.
  :func:`caffe_to_torchvision` renames and reshapes them (``fc6`` flattened channel-major, which is
  how both Caffe's InnerProduct and ``torch.flatten`` order pool5, so the reshapes are inverses).

:func:`check_classifier_state` checks a torchvision-layout state dict against the shapes its own
channel counts imply (:func:`expected_classifier_shapes`). Only names and shapes change here:
``conv1_1``'s input channels stay in the order the file has them, so Caffe-converted weights
still expect BGR, 0–255, the VGG mean subtracted (``data.datamodule.preprocess: caffe``;
docs/reference.md §6). Which convention a file expects is :mod:`fcnlab.models.sidecar`'s to say,
and :mod:`fcnlab.models.weights` copies a file's tensors into a trunk.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from fcnlab.errors import ConfigError
from fcnlab.models.vgg import VGG16_BLOCKS, VGG16_FC6_KERNEL, VGG16_FC_CHANNELS

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- torchvision layout
def conv_layout(batch_norm: bool = False) -> list[tuple[str, int, int | None]]:
    """``(trunk name, features index of the conv, features index of its BN or None)`` in order.

    Follows how :class:`VGG16Classifier` (and torchvision) fills ``features``: conv, [BN,] ReLU per
    convolution and one MaxPool per block, each taking one index.
    """
    out, i = [], 0
    for b, (_, n_convs) in enumerate(VGG16_BLOCKS, 1):
        for c in range(1, n_convs + 1):
            out.append((f"conv{b}_{c}", i, i + 1 if batch_norm else None))
            i += 3 if batch_norm else 2
        i += 1  # the block's max pool
    return out


def _is_bn_layout(state: dict) -> bool:
    # In the plain layout index 1 is a ReLU (no parameters); in vgg16_bn it is conv1_1's BN.
    return "features.1.weight" in state or "features.1.running_mean" in state


def expected_classifier_shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """The shape every required key must have for ``state`` to be one consistent VGG16 classifier.

    Channel counts are read from the file (the first conv of each block, the rows of fc6), not
    assumed, so a classifier of any width passes; everything else must agree with them: 3×3
    kernels, each conv's input = the previous output, fc6 = fc × (C5·7·7), fc7 = fc × fc.
    """
    bn = _is_bn_layout(state)
    layout = conv_layout(bn)

    def rows(key: str, default: int) -> int:
        t = state.get(key)
        return int(t.shape[0]) if isinstance(t, torch.Tensor) and t.dim() >= 1 else default

    shapes: dict[str, tuple[int, ...]] = {}
    in_ch, n = 3, 0
    for b, (channels, n_convs) in enumerate(VGG16_BLOCKS, 1):
        first = layout[n][1]
        out_ch = rows(f"features.{first}.weight", channels)
        for _ in range(n_convs):
            _, ci, bi = layout[n]
            shapes[f"features.{ci}.weight"] = (out_ch, in_ch, 3, 3)
            shapes[f"features.{ci}.bias"] = (out_ch,)
            if bi is not None:
                for p in ("weight", "bias", "running_mean", "running_var"):
                    shapes[f"features.{bi}.{p}"] = (out_ch,)
            in_ch, n = out_ch, n + 1
    fc = rows("classifier.0.weight", VGG16_FC_CHANNELS)
    shapes["classifier.0.weight"] = (fc, in_ch * VGG16_FC6_KERNEL ** 2)
    shapes["classifier.0.bias"] = (fc,)
    shapes["classifier.3.weight"] = (fc, fc)
    shapes["classifier.3.bias"] = (fc,)
    return shapes


def check_classifier_state(state: dict, source: str) -> dict[str, torch.Tensor]:
    """Validate a VGG16 classifier state dict (see
    :func:`~fcnlab.models.weights.load_vgg16_classifier`)."""
    if not isinstance(state, dict) or not state:
        raise ConfigError(f"{source}: expected a VGG16 classifier state dict (torchvision key "
                          f"layout), got {type(state).__name__}")
    keys = list(state)
    if all(isinstance(k, str) and k.startswith("module.") for k in keys):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    for key, shape in expected_classifier_shapes(state).items():
        value = state.get(key)
        if value is None:
            layout = "vgg16_bn" if _is_bn_layout(state) else "vgg16"
            raise ConfigError(f"{source}: key {key!r} is missing; expected a VGG16 classifier "
                              f"state dict in the torchvision {layout} layout (features.*, "
                              f"classifier.0, classifier.3)")
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            found = str(value.dtype) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ConfigError(f"{source}: key {key!r} is {found}; expected a floating-point "
                              f"tensor of shape {shape}")
        if tuple(value.shape) != shape:
            raise ConfigError(f"{source}: key {key!r} has shape {tuple(value.shape)}, expected "
                              f"{shape}")
    fc8 = state.get("classifier.6.weight")
    if fc8 is not None and (not isinstance(fc8, torch.Tensor) or fc8.dim() != 2
                            or fc8.shape[1] != state["classifier.3.weight"].shape[0]):
        found = tuple(fc8.shape) if isinstance(fc8, torch.Tensor) else type(fc8).__name__
        raise ConfigError(f"{source}: key 'classifier.6.weight' has shape {found}, expected "
                          f"(classes, {state['classifier.3.weight'].shape[0]})")
    return state


# ----------------------------------------------------------------------------- the Caffe layout
LAYOUTS = ("torchvision", "caffe")
CAFFE_CONVS: tuple[str, ...] = tuple(name for name, _, _ in conv_layout(False))  # conv1_1 … conv5_3
CAFFE_FCS = ("fc6", "fc7", "fc8")
# torchvision index of each fully connected layer in ``classifier``
_FC_INDEX = {"fc6": 0, "fc7": 3, "fc8": 6}


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
