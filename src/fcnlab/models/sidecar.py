"""The input convention a VGG16 weights file expects, and its ``<file>.json`` sidecar.

**Input convention** (docs/reference.md §6). Caffe-converted weights expect BGR, 0–255, the VGG
mean subtracted (``data.datamodule.preprocess: caffe``); torchvision's expect RGB, 0–1, ImageNet
mean/std (``torchvision``). Fed the other convention they still run and train, only worse — a
classic reason FCN numbers do not reproduce — so nothing is assumed: :func:`input_convention`
takes the convention from ``model.pretrained_preprocess`` (declared), else the file's
``<file>.json`` sidecar (the pretraining task and :mod:`fcnlab.models.convert` write one), else
the Caffe layout (``caffe``; :mod:`fcnlab.models.layouts`); a torchvision-layout file with none of
these is an error, as is a convention other than the run's ``preprocess`` unless
``model.allow_preprocess_mismatch`` (:func:`check_preprocess`). ``conv1_1``'s input channels stay
in the order the file has them; to change a file's convention, :mod:`fcnlab.models.convert` folds
it into ``conv1_1``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from fcnlab.errors import ConfigError

log = logging.getLogger(__name__)

# Where a run records what input convention its weights expect (written by the pretraining task).
SIDECAR_SUFFIX = ".json"

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
