"""Converting a VGG16 weights file to the other input convention, and declaring a file's convention.

``python -m fcnlab.models.convert --to caffe in.pth out.pth`` writes weights that expect Caffe
input (BGR, 0–255, VGG mean subtracted: ``data.datamodule.preprocess=caffe``) from weights that
expect torchvision input (RGB, 0–1, ImageNet mean/std), or the reverse with ``--to torchvision``
(docs/reference.md §6). Only ``conv1_1`` changes: each convention is a per-channel affine map of
the raw 0–255 RGB pixel (``x[k] = scale[k] · raw[order[k]] + shift[k]``), so the source's map is
rewritten in the target's and folded into ``conv1_1``'s weight (channel order and scale) and bias
(the offsets, summed over the kernel) by :func:`fold_input_convention`. The output gets a
``<out>.json`` sidecar (``preprocess``, its SHA-256 and the source file's), which
:func:`fcnlab.models.sidecar.input_convention` reads; a plain ``vgg16`` converted to ``caffe`` is
written in the Caffe layer-name layout, which says ``caffe`` by itself if the sidecar is lost.

**Equal away from the border only.** ``conv1_1`` zero-pads its input. In the source convention a
padded 0 is one raw colour (the ImageNet mean), in the target another (the VGG mean), and the
folded bias assumes every tap sees an image pixel; so the converted network computes exactly what
the source computes (to float rounding) wherever the receptive field stays inside the image, and
slightly different values within the receptive field of the border (at pool3, the first 3 cells
of each side). ``tests/models/test_convert.py`` checks both.

``python -m fcnlab.models.convert --declare torchvision in.pth`` writes only the sidecar: what a
file expects, e.g. torchvision's own ImageNet ``vgg16`` saved as a state dict, so that
``model.pretrained=in.pth`` needs no ``model.pretrained_preprocess``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from fcnlab.conventions import CAFFE_MEAN_BGR, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB
from fcnlab.errors import FcnlabError
from fcnlab.models.layouts import _is_bn_layout, torchvision_to_caffe
from fcnlab.models.sidecar import input_convention, read_sidecar, sidecar_path
from fcnlab.models.weights import file_sha256, read_vgg16_classifier

log = logging.getLogger(__name__)

# name -> (order, scale, shift): input channel k = scale[k] · raw[order[k]] + shift[k], where raw
# is the 0-255 pixel and order[k] the RGB channel that input channel k carries.
CONVENTIONS: dict[str, tuple[tuple[int, ...], tuple[float, ...], tuple[float, ...]]] = {
    "caffe": ((2, 1, 0), (1.0, 1.0, 1.0), tuple(-m for m in CAFFE_MEAN_BGR)),
    "torchvision": ((0, 1, 2), tuple(1 / (255 * s) for s in IMAGENET_STD_RGB),
                    tuple(-m / s for m, s in zip(IMAGENET_MEAN_RGB, IMAGENET_STD_RGB))),
}


def apply_convention(raw_rgb: torch.Tensor, name: str) -> torch.Tensor:
    """A ``3×H×W`` raw 0–255 RGB image in the convention ``name`` (what the data pipeline gives)."""
    order, scale, shift = CONVENTIONS[name]
    return torch.stack([scale[k] * raw_rgb[order[k]] + shift[k] for k in range(3)])


def fold_input_convention(weight: torch.Tensor, bias: torch.Tensor, source: str,
                          target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``conv1_1``'s ``(weight, bias)`` for ``target`` input, from those for ``source`` input.

    Source channel k sees ``a_s·raw[c] + b_s`` (c = its RGB channel); the target's channel j of
    that colour is ``a_t·raw[c] + b_t``, so ``x_s[k] = (a_s/a_t)·x_t[j] + (b_s - a_s·b_t/a_t)``:
    the weight moves to channel j times ``a_s/a_t`` and the constant, times the weight summed
    over the kernel, joins the bias. Exact away from the zero padding (module docstring).
    Computed in float64, returned in the input dtype.
    """
    if weight.dim() != 4 or weight.shape[1] != 3:
        raise FcnlabError(f"conv1_1.weight: expected shape (C, 3, k, k), got {tuple(weight.shape)}")
    src_order, src_scale, src_shift = CONVENTIONS[source]
    dst_order, dst_scale, dst_shift = CONVENTIONS[target]
    w64, b64 = weight.double(), bias.double()
    new_w = torch.empty_like(w64)
    new_b = b64.clone()
    for k in range(3):
        j = dst_order.index(src_order[k])
        ratio = src_scale[k] / dst_scale[j]
        offset = src_shift[k] - ratio * dst_shift[j]
        new_w[:, j] = w64[:, k] * ratio
        new_b += offset * w64[:, k].sum(dim=(1, 2))
    return new_w.to(weight.dtype), new_b.to(bias.dtype)


def convert_state(state: dict[str, torch.Tensor], source: str,
                  target: str) -> tuple[dict[str, torch.Tensor], str]:
    """``(state dict, layout)``: a torchvision-layout VGG16 state dict for ``target`` input.

    ``features.0`` (``conv1_1``) is folded; everything else is the same tensor. For ``caffe`` a
    plain (no BN) ``vgg16`` is returned in the Caffe layer-name layout (the layout says ``caffe``
    even without the sidecar); ``vgg16_bn`` has no Caffe names and stays in the torchvision one.
    """
    out = dict(state)
    out["features.0.weight"], out["features.0.bias"] = fold_input_convention(
        state["features.0.weight"], state["features.0.bias"], source, target)
    if target == "caffe" and not _is_bn_layout(out):
        return torchvision_to_caffe(out), "caffe"
    return out, "torchvision"


def convert_file(src: str | Path, dst: str | Path, target: str, source: str | None = None,
                 force: bool = False) -> dict:
    """Write ``dst`` (weights for ``target`` input) and its sidecar from the weights at ``src``.

    The source convention is ``source`` if given, else what :func:`input_convention` finds
    (sidecar, Caffe layout), else the other one (converting says the file holds it). Returns the
    sidecar written.
    """
    src, dst = Path(src), Path(dst)
    if target not in CONVENTIONS or (source is not None and source not in CONVENTIONS):
        raise FcnlabError(f"convert: expected conventions among {list(CONVENTIONS)}, got "
                          f"--to {target!r} --from {source!r}")
    if src.resolve() == dst.resolve():
        raise FcnlabError(f"convert: the output {str(dst)!r} is the input; expected another file")
    if dst.exists() and not force:
        raise FcnlabError(f"convert: {str(dst)!r} exists; expected a new file (or --force)")
    state, layout = read_vgg16_classifier(src)
    src_sha = file_sha256(src)
    if source is not None:
        found = "--from"
    else:
        source, found = input_convention(src, layout, sha256=src_sha)
        if source is None:
            source, found = next(c for c in CONVENTIONS if c != target), f"assumed (--to {target})"
    if source == target:
        raise FcnlabError(f"convert: {str(src)!r} already expects preprocess={target} (from "
                          f"{found}); nothing to convert (--from to say otherwise)")
    out, out_layout = convert_state(state, source, target)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, dst)
    meta = {
        "preprocess": target, "layout": out_layout, "sha256": file_sha256(dst),
        "converted_from": {"path": str(src.resolve()), "sha256": src_sha, "preprocess": source,
                           "preprocess_from": found, "layout": layout},
        "written_by": "python -m fcnlab.models.convert",
        "note": "conv1_1 folded: same features as the source away from the zero-padded border",
    }
    sidecar_path(dst).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def declare_file(path: str | Path, convention: str, force: bool = False) -> dict:
    """Write (or, with ``force``, change) the sidecar saying ``path`` expects ``convention``.

    Keys an existing sidecar has (a pretraining run's record) are kept; only ``preprocess``,
    ``sha256`` and ``declared_by`` are set. Returns the sidecar.
    """
    if convention not in CONVENTIONS:
        raise FcnlabError(f"declare: expected one of {list(CONVENTIONS)}, got {convention!r}")
    _, layout = read_vgg16_classifier(path)  # a VGG16 classifier file, or a one-line error
    meta = read_sidecar(path) or {}
    old = meta.get("preprocess")
    if old not in (None, convention) and not force:
        raise FcnlabError(f"declare: {str(sidecar_path(path))!r} already says preprocess={old}; "
                          f"expected --force to change it to {convention}")
    if layout == "caffe" and convention != "caffe":
        log.warning("%s has Caffe layer names but is declared %s: the sidecar wins", path,
                    convention)
    meta.update({"preprocess": convention, "layout": meta.get("layout", layout),
                 "sha256": file_sha256(path),
                 "declared_by": "python -m fcnlab.models.convert --declare"})
    sidecar_path(path).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line's arguments (argparse exits with status 2 on a bad one)."""
    parser = argparse.ArgumentParser(
        prog="python -m fcnlab.models.convert",
        description="Convert a VGG16 weights file to the other input convention (conv1_1 folded; "
                    "equal features away from the zero-padded border), or declare which "
                    "convention a file expects. Both write a <file>.json sidecar that "
                    "model.pretrained reads (docs/models.md).")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--to", choices=sorted(CONVENTIONS),
                      help="convert INPUT into OUTPUT for this data.datamodule.preprocess")
    mode.add_argument("--declare", choices=sorted(CONVENTIONS),
                      help="write INPUT's sidecar saying it expects this preprocess")
    parser.add_argument("--from", dest="source", choices=sorted(CONVENTIONS), default=None,
                        help="with --to: the convention INPUT expects (default: its sidecar or "
                             "Caffe layout, else the other one)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite OUTPUT / change an existing declaration")
    parser.add_argument("input", type=Path, help="a VGG16 classifier state dict (.pth/.pt)")
    parser.add_argument("output", type=Path, nargs="?", help="with --to: the file to write")
    args = parser.parse_args(argv)
    if (args.to is not None) != (args.output is not None):
        parser.error("--to needs INPUT and OUTPUT; --declare needs INPUT only")
    if args.declare is not None and args.source is not None:
        parser.error("--from goes with --to")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        if args.to is not None:
            meta = convert_file(args.input, args.output, args.to, args.source, args.force)
            src = meta["converted_from"]
            print(f"written: {args.output} (expects preprocess={args.to}, {meta['layout']} "
                  f"layout, sha256 {meta['sha256']})\nfrom:    {args.input} (preprocess="
                  f"{src['preprocess']}, {src['preprocess_from']})\nsidecar: "
                  f"{sidecar_path(args.output)}")
        else:
            meta = declare_file(args.input, args.declare, args.force)
            print(f"written: {sidecar_path(args.input)} (preprocess={meta['preprocess']}, "
                  f"sha256 {meta['sha256']})")
    except FcnlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
