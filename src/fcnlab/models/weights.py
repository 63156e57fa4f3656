"""Reading VGG16 weight files, and a fully connected layer turned into a convolution.

**Convolutionalization** (FCN, CVPR 2015 §3.1; docs/reference.md §2): ``fc6`` sees the 7×7×512
``pool5`` map of a 224×224 image, so its 4096×25088 weight matrix *is* a 7×7 convolution kernel
(4096×512×7×7) and ``fc7``'s 4096×4096 matrix is a 1×1 convolution. After the reshape, the trunk
computes on a 224×224 image exactly what the classifier computes, and on a larger image it slides
the classifier's ``fc`` layers over ``pool5`` with stride 32 (one 7×7 window per output position).

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

**Input convention** (docs/reference.md §6). Caffe-converted weights expect BGR, 0–255, the VGG
mean subtracted (``data.datamodule.preprocess: caffe``); torchvision's expect RGB, 0–1, ImageNet
mean/std (``torchvision``). Fed the other convention they still run and train, only worse — a
classic reason FCN numbers do not reproduce — so nothing is assumed: :func:`input_convention`
takes the convention from ``model.pretrained_preprocess`` (declared), else the file's
``<file>.json`` sidecar (the pretraining task and :mod:`fcnlab.models.convert` write one), else
the Caffe layout (``caffe``); a torchvision-layout file with none of these is an error, as is a
convention other than the run's ``preprocess`` unless ``model.allow_preprocess_mismatch``
(:func:`check_preprocess`). ``conv1_1``'s input channels stay in the order the file has them; to
change a file's convention, :mod:`fcnlab.models.convert` folds it into ``conv1_1``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

from fcnlab.errors import ConfigError
from fcnlab.models.vgg import VGG16_BLOCKS, VGG16_FC6_KERNEL, VGG16_FC_CHANNELS

log = logging.getLogger(__name__)


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


# ----------------------------------------------------------------------------- reading a file
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
    """Validate a VGG16 classifier state dict (see :func:`load_vgg16_classifier`)."""
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


# ----------------------------------------------------------------------------- the Caffe layout
LAYOUTS = ("torchvision", "caffe")
CAFFE_CONVS: tuple[str, ...] = tuple(name for name, _, _ in conv_layout(False))  # conv1_1 … conv5_3
CAFFE_FCS = ("fc6", "fc7", "fc8")
# torchvision index of each fully connected layer in ``classifier``
_FC_INDEX = {"fc6": 0, "fc7": 3, "fc8": 6}
# Where a run records what input convention its weights expect (written by the pretraining task).
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


# ----------------------------------------------------------------------------- input convention
# The values of data.datamodule.preprocess (fcnlab.data.transforms.PREPROCESS_MODES, which a
# network module may not import: tests/test_layering.py; tests/models/test_convert.py pins both).
INPUT_CONVENTIONS = ("caffe", "torchvision")
DECLARE_KEY = "model.pretrained_preprocess"
ALLOW_KEY = "model.allow_preprocess_mismatch"


def sidecar_path(path: str | Path) -> Path:
    return Path(str(path) + SIDECAR_SUFFIX)


def read_sidecar(path: str | Path) -> dict | None:
    """The ``<file>.json`` sidecar of the weights at ``path`` as a dict, or None if it has none.

    An unreadable sidecar, or one whose ``preprocess`` is not a known convention, is a ConfigError
    naming it (a broken declaration is not silently ignored).
    """
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return None
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"sidecar {str(sidecar)!r} of model.pretrained could not be read as "
                          f"JSON ({e}); expected an object with \"preprocess\": "
                          f"{' or '.join(INPUT_CONVENTIONS)}") from e
    value = meta.get("preprocess") if isinstance(meta, dict) else None
    if not isinstance(meta, dict) or (value is not None and value not in INPUT_CONVENTIONS):
        raise ConfigError(f"sidecar {str(sidecar)!r}: \"preprocess\" is {value!r}; expected one "
                          f"of {list(INPUT_CONVENTIONS)}")
    return meta


def input_convention(path: str | Path, layout: str | None, declared: str | None = None,
                     sha256: str | None = None) -> tuple[str | None, str]:
    """``(convention, where it comes from)`` for the weights at ``path``; ``(None, ...)`` unknown.

    In order: ``declared`` (``model.pretrained_preprocess``, overriding what the file says), the
    sidecar's ``preprocess``, the Caffe layout (``caffe``). ``layout=None`` (the file not read
    yet) skips the last. With ``sha256`` (of the file), a sidecar that records another file's
    SHA-256 is a ConfigError: the file was replaced after the sidecar was written.
    """
    if declared is not None:
        if declared not in INPUT_CONVENTIONS:
            raise ConfigError(f"{DECLARE_KEY}: expected null or one of {list(INPUT_CONVENTIONS)}, "
                              f"got {declared!r}")
        return declared, DECLARE_KEY
    meta = read_sidecar(path)
    if meta is not None and sha256 is not None and meta.get("sha256") not in (None, sha256):
        raise ConfigError(f"sidecar {str(sidecar_path(path))!r} describes a file with sha256 "
                          f"{meta['sha256']} but {str(path)!r} has sha256 {sha256}: the weights "
                          f"were replaced; declare the new file: python -m fcnlab.models.convert "
                          f"--declare <caffe|torchvision> --force <file>")
    if meta is not None and meta.get("preprocess") is not None:
        return meta["preprocess"], f"sidecar {str(sidecar_path(path))!r}"
    if layout == "caffe":
        return "caffe", "the Caffe layer names"
    return None, "unknown"


def check_preprocess(path: str | Path, layout: str | None, preprocess: str | None, *,
                     declared: str | None = None, allow_mismatch: bool = False,
                     sha256: str | None = None) -> dict:
    """Check the weights' input convention against the run's ``data.datamodule.preprocess``.

    Returns ``{"preprocess": convention or None, "preprocess_from": source, "preprocess_warning":
    None or the message}``. A convention that is unknown (torchvision layout, no sidecar, nothing
    declared) or differs from ``preprocess`` is a one-line ConfigError naming the file and both
    values and saying how to fix it; with ``allow_mismatch`` it is logged as a warning and
    returned instead. ``layout=None`` (file not read yet) leaves an unknown convention to the
    check at load time; ``preprocess=None`` checks nothing.
    """
    expected, source = input_convention(path, layout, declared, sha256)
    out = {"preprocess": expected, "preprocess_from": source, "preprocess_warning": None}
    if preprocess is None or expected == preprocess or (expected is None and layout is None):
        return out
    where = f"model.pretrained {str(path)!r}"
    if expected is None:
        message = (f"{where} is a torchvision-layout VGG16 file whose input convention is unknown "
                   f"(no sidecar {str(sidecar_path(path))!r}, no {DECLARE_KEY}): declare it with "
                   f"{DECLARE_KEY}=torchvision (torchvision's ImageNet weights: RGB, 0-1, ImageNet "
                   f"mean/std) or =caffe (Caffe weights: BGR, 0-255, VGG mean), or write its "
                   f"sidecar once: python -m fcnlab.models.convert --declare torchvision <file> "
                   f"(docs/models.md#weights-files)")
    else:
        message = (f"{where} expects data.datamodule.preprocess={expected} input (from {source}) "
                   f"but the run uses preprocess={preprocess}: the trunk would see the wrong "
                   f"channel order and scale (docs/reference.md §6); set "
                   f"data.datamodule.preprocess={expected}, or convert the weights (python -m "
                   f"fcnlab.models.convert --to {preprocess} <file> <out>), or set "
                   f"{ALLOW_KEY}=true to run anyway")
    if not allow_mismatch:
        raise ConfigError(message)
    out["preprocess_warning"] = f"{message} [allowed by {ALLOW_KEY}=true]"
    log.warning(out["preprocess_warning"])
    return out
