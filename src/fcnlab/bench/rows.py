"""What the benchmark measures: the model rows (:class:`Row`: network, input size, batch, width,
fast-path settings) and the presets that group them with their settings (:class:`Preset`,
:data:`PRESETS`), the fast-path variants of a row (:data:`FAST`, :func:`variant`), finding a
row by name, and which row the memory targets are checked on (:func:`is_memory_row`).

Plain data: it imports neither torch nor Hydra. How a row is timed: :mod:`fcnlab.bench.suite`;
the measurements beside the rows: :mod:`fcnlab.bench.extras`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

EXTRAS = ("data", "metrics", "patchwise")


@dataclass(frozen=True)
class Row:
    """One model configuration to time: ``model`` is a ``conf/model`` name. ``fast``: settings for
    :mod:`fcnlab.fastpath` (``channels_last``, ``precision``, ``compile``); empty = plain fp32
    eager, the path training takes by default."""

    name: str
    model: str
    hw: tuple[int, int]
    batch: int
    width: float
    overrides: dict = field(default_factory=dict)  # extra model.net keys (e.g. geometry)
    fast: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Preset:
    rows: tuple[Row, ...]
    iters: int  # timed training steps / evaluation batches per row (median reported)
    warmup: int
    matmul_n: int
    # data pipeline: the synthetic data module's settings (the embedded data by default)
    data: dict
    # patch-wise vs dense: image side and width
    patch_hw: int
    patch_width: float
    data_row: str  # the row whose training step consumes what the data pipeline delivers
    # rows that run only when named (--rows, --peer-row), e.g. full width on a CPU preset
    extra_rows: tuple[Row, ...] = ()
    peer_row: str = "fcn8s_caffe"  # --peer-row's default: our row timed against a --peer
    extras: tuple[str, ...] = EXTRAS  # which extra measurements the preset makes (--skip drops)


def _rows(width: float, hw, batch, deconv_batch, segnet_hw=None, deeplab_hw=None,
          deeplab_batch=None) -> tuple[Row, ...]:
    return (
        Row("fcn8s_caffe", "fcn8s", hw, batch, width, {"geometry": "caffe"}),
        Row("fcn8s_aligned", "fcn8s", hw, batch, width, {"geometry": "aligned"}),
        Row("segnet", "segnet", segnet_hw or hw, batch, width),
        Row("deeplab_largefov", "deeplab_largefov", deeplab_hw or hw, deeplab_batch or batch,
            width),
        Row("deconvnet", "deconvnet", (224, 224), deconv_batch, width),
    )


# The embedded recipe's FCN-8s: conf/scale/embedded.yaml's deviations (tests/bench checks that
# they agree), beside fcn8s_caffe, the network the embedded scale trained before it.
EMBEDDED_RECIPE = {"geometry": "aligned", "batch_norm": True, "fc_channels": 1024}


CAFFE = {"geometry": "caffe"}
# The paper's FCN-8s (full width) on a VOC-sized image at batch 1: the memory target's row.
MEMORY_ROW = Row("fcn8s_caffe_500x375_full", "fcn8s", (500, 375), 1, 1.0, CAFFE)
# Full-width FCN-8s at a size a 2-core CPU steps in seconds: the row a reference port (e.g.
# wkentaro/pytorch-fcn's torchfcn.models.FCN8s, full width, 21 classes) is timed against.
PEER_ROW = Row("fcn8s_caffe_full", "fcn8s", (256, 256), 1, 1.0, CAFFE)
EMBEDDED_DATA = dict(image_size=[96, 128], num_train=400, num_val=60, num_test=60,
                     batch_size=8, eval_batch_size=20)
PRESETS: dict[str, Preset] = {
    # seconds: for tests and smoke runs
    "tiny": Preset(_rows(1 / 16, (64, 64), 2, 2), iters=1, warmup=0, matmul_n=512,
                   data=dict(image_size=[40, 56], num_train=16, num_val=6, num_test=6,
                             batch_size=4, eval_batch_size=6),
                   patch_hw=32, patch_width=1 / 16, data_row="fcn8s_caffe",
                   extra_rows=(Row("fcn8s_caffe_b1", "fcn8s", (64, 64), 1, 1 / 16, CAFFE),),
                   peer_row="fcn8s_caffe_b1"),
    # the default: embedded scale (width 1/8, 96×128, batch 8), a few minutes on a 2-core CPU
    "small": Preset(_rows(1 / 8, (96, 128), 8, 8) + (
        Row("fcn8s_embedded", "fcn8s", (96, 128), 8, 1 / 8, EMBEDDED_RECIPE),
        Row("fcn8s_aligned_256_w4", "fcn8s", (256, 256), 8, 1 / 4, {"geometry": "aligned"}),),
        iters=3, warmup=1, matmul_n=2048, data=EMBEDDED_DATA, patch_hw=128, patch_width=1 / 8,
        data_row="fcn8s_caffe", extra_rows=(PEER_ROW, MEMORY_ROW), peer_row=PEER_ROW.name),
    # the papers' networks and sizes: for a GPU
    "paper": Preset(_rows(1.0, (500, 375), 1, 8, segnet_hw=(360, 480), deeplab_hw=(321, 321),
                          deeplab_batch=10) + (
        Row("fcn8s_caffe_500sq_b8", "fcn8s", (500, 500), 8, 1.0, {"geometry": "caffe"}),),
        iters=5, warmup=2, matmul_n=8192, data=EMBEDDED_DATA, patch_hw=128, patch_width=1 / 8,
        data_row="fcn8s_caffe", extra_rows=(PEER_ROW,), peer_row="fcn8s_caffe"),
    # the memory targets only: a full-width FCN-8s training step on 500×375 at batch 1 (the
    # FLOP-counting step, which is also the warm-up, then one timed step) and its evaluation;
    # about a minute on a 2-core CPU. Its own preset so that `small` stays a few minutes.
    "memory": Preset((MEMORY_ROW,), iters=1, warmup=0, matmul_n=1024, data=EMBEDDED_DATA,
                     patch_hw=128, patch_width=1 / 8, data_row=MEMORY_ROW.name,
                     peer_row=MEMORY_ROW.name, extras=()),
}

# --fast names: (row-name suffix, fastpath settings)
FAST = {
    "channels_last": ("cl", {"channels_last": True}),
    "cl": ("cl", {"channels_last": True}),
    "bf16": ("bf16", {"precision": "bf16-mixed"}),
    "fp16": ("fp16", {"precision": "16-mixed"}),
    "compile": ("compile", {"compile": True}),
}


def variant(row: Row, spec: str) -> Row:
    """``row`` through the fast path: ``spec`` is ``+``-joined :data:`FAST` names
    (``channels_last+bf16``); the row is named ``<row>+cl+bf16``."""
    fast, suffixes = dict(row.fast), []
    for part in spec.split("+"):
        if part not in FAST:
            raise ValueError(f"--fast {spec}: unknown setting {part!r}; expected "
                             f"{', '.join(FAST)} (joined by '+' to combine)")
        suffix, settings = FAST[part]
        fast.update(settings)
        suffixes.append(suffix)
    return replace(row, name="+".join([row.name, *suffixes]), fast=fast)


def resolve_row(preset: Preset, name: str) -> Row:
    """A row of the preset (or one of its extra rows) by name, with ``+cl`` / ``+bf16`` /
    ``+compile`` ... suffixes for fast-path variants. ``KeyError`` names what there is."""
    base, *mods = name.split("+")
    for row in preset.rows + preset.extra_rows:
        if row.name == base:
            return variant(row, "+".join(mods)) if mods else row
    raise KeyError(name)


def row_names(preset: Preset) -> list[str]:
    return [r.name for r in preset.rows + preset.extra_rows]


def preset_dict(preset: Preset) -> dict:
    d = asdict(preset)
    d["rows"] = [asdict(r) for r in preset.rows]
    d["extra_rows"] = [asdict(r) for r in preset.extra_rows]
    return d


def is_memory_row(row: Row | dict) -> bool:
    """Full-width caffe-geometry FCN-8s on a 500×375 (or 375×500) image at batch 1, plain path:
    the row the memory targets are checked on (a :class:`Row` or a result row)."""
    if isinstance(row, Row):
        row = {"model": row.model, "net": row.overrides, "width": row.width,
               "batch": row.batch, "fast": row.fast, "input_hw": list(row.hw)}
    return (row.get("model") == "fcn8s" and row.get("net", {}).get("geometry", "caffe") == "caffe"
            and row.get("width") == 1.0 and row.get("batch") == 1 and not row.get("fast")
            and sorted(row.get("input_hw", [])) == [375, 500] and "error" not in row)
