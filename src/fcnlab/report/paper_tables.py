"""The papers' numbers as data: the two tables fcnlab reproduces, each with its source.

Values are percent, as printed in the papers (docs/reference.md §1). ``fcnlab.report`` puts them
beside our runs; nothing here is measured by us.

Metric keys follow the run records (``results.json``): ``pixel_acc`` (SegNet's G), ``mean_acc``
(C), ``mean_iou`` (mIoU / mean IU), ``fw_iou`` (f.w. IU) and ``bf`` (boundary F1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

METRIC_LABELS = {
    "pixel_acc": "pixel acc",
    "mean_acc": "mean acc",
    "mean_iou": "mean IU",
    "fw_iou": "f.w. IU",
    "bf": "BF",
}


@dataclass(frozen=True)
class PaperRow:
    """One row of a paper's table.

    ``scores``: metric -> percent for a single-column table (FCN). ``budgets``: iterations ->
    metric -> percent, or None where the paper says "not computed" (SegNet's budget columns).
    ``best``: the paper's last column (SegNet's ">80K": the best point after the last budget) and
    ``max_iter`` its iteration.
    """

    label: str
    scores: dict[str, float] = field(default_factory=dict)
    budgets: dict[int, dict[str, float] | None] = field(default_factory=dict)
    best: dict[str, float] | None = None
    max_iter: int | None = None


@dataclass(frozen=True)
class PaperTable:
    key: str
    title: str
    source: str
    metrics: tuple[str, ...]
    rows: dict[str, PaperRow]  # fcnlab model name (or row key) -> row, in the paper's order
    decimals: int  # as the paper prints them
    protocol: dict[str, str]  # what the paper did, by the keys fcnlab.report compares
    notes: tuple[str, ...] = ()


# ----------------------------------------------------------------------------------------- FCN
FCN_TABLE2 = PaperTable(
    key="fcn",
    title="FCN, CVPR 2015, Table 2: skip architectures on PASCAL VOC2011 seg11valid",
    source="Long, Shelhamer, Darrell, 'Fully Convolutional Networks for Semantic Segmentation', "
           "CVPR 2015, Table 2 (docs/reference.md §1)",
    metrics=("pixel_acc", "mean_acc", "mean_iou", "fw_iou"),
    rows={
        "fcn32s_fixed": PaperRow("FCN-32s-fixed", scores=dict(
            pixel_acc=83.0, mean_acc=59.7, mean_iou=45.4, fw_iou=72.0)),
        "fcn32s": PaperRow("FCN-32s", scores=dict(
            pixel_acc=89.1, mean_acc=73.3, mean_iou=59.4, fw_iou=81.4)),
        "fcn16s": PaperRow("FCN-16s", scores=dict(
            pixel_acc=90.0, mean_acc=75.7, mean_iou=62.4, fw_iou=83.0)),
        "fcn8s": PaperRow("FCN-8s", scores=dict(
            pixel_acc=90.3, mean_acc=75.9, mean_iou=62.7, fw_iou=83.2)),
    },
    decimals=1,
    protocol={
        "data": "SBD train (8,498 images), evaluated on VOC2011 seg11valid (736 images)",
        "split": "seg11valid (736 images)",
        "width": "1 (full VGG16)",
        "iterations": "not stated per net in Table 2 (the later heavy reference protocol: "
                      "100K per stage, 300K at-once)",
        "batch_size": "20",
        "image_size": "whole VOC images (up to 500x500), not resized",
        "optimizer": "SGD lr 1e-4, momentum 0.9, weight decay 5e-4 (or 2e-4), biases 2x lr",
        "pretrained": "ImageNet VGG16; FCN-16s from FCN-32s and FCN-8s from FCN-16s (lr /100)",
        "batch_norm": "none",
        "bn_recompute": "no (no BN)",
        "preprocess": "Caffe: BGR, 0-255, mean subtracted",
        "loss": "not stated for Table 2 (the heavy reference protocol sums over pixels)",
        "mean_over": "FCN's score.py: nanmean over classes (union_present); all three "
                     "choices agree when every class occurs in the ground truth",
    },
    notes=(),
)

# Not in Table 2: the authors' later "heavy" reference training (released models), mean IU on
# seg11valid. Source: shelhamer/fcn.berkeleyvision.org, as quoted in docs/reference.md §1.
FCN_HEAVY_MEAN_IU = {"fcn32s": 63.6, "fcn16s": 65.0, "fcn8s": 65.5, "fcn8s_atonce": 65.4}
FCN_HEAVY_SOURCE = ("the authors' later 'heavy' reference training (shelhamer/"
                    "fcn.berkeleyvision.org), mean IU on seg11valid, as quoted in docs/reference.md §1")

# What runs made with experiment=fcn_heavy_paper (protocol: fcn_heavy) are compared with: the
# released models of that protocol, which print mean IU only (fcn-code README.md).
FCN_HEAVY = PaperTable(
    key="fcn",
    title="FCN heavy reference models (fcn-code README.md): mean IU on PASCAL VOC2011 seg11valid",
    source=FCN_HEAVY_SOURCE,
    metrics=("pixel_acc", "mean_acc", "mean_iou", "fw_iou"),
    rows={m: PaperRow(label, scores={"mean_iou": FCN_HEAVY_MEAN_IU[m]}) for m, label in (
        ("fcn32s", "FCN-32s"), ("fcn16s", "FCN-16s"), ("fcn8s", "FCN-8s"),
        ("fcn8s_atonce", "FCN-8s at-once"))},
    decimals=1,
    protocol={
        "data": "SBD train (8,498 images), evaluated on VOC2011 seg11valid (736 images)",
        "split": "seg11valid (736 images)",
        "width": "1 (full VGG16)",
        "iterations": "100K per stage (300K at-once), evaluated every 4,000",
        "batch_size": "1",
        "image_size": "whole VOC images (up to 500x500), not resized",
        "optimizer": "SGD momentum 0.99, lr 1e-10 / 1e-12 / 1e-14 (32s / 16s / 8s; 1e-10 "
                     "at-once), weight decay 5e-4, biases 2x lr without decay",
        "pretrained": "ImageNet VGG16 (Caffe); FCN-16s from FCN-32s, FCN-8s from FCN-16s",
        "batch_norm": "none",
        "bn_recompute": "no (no BN)",
        "preprocess": "Caffe: BGR, 0-255, mean subtracted",
        "loss": "sum over pixels",
        "mean_over": "FCN's score.py: nanmean over classes (union_present)",
    },
)
# wkentaro/pytorch-fcn's PyTorch port of the heavy protocol, mean IU (docs/reference.md §1).
PYTORCH_FCN_MEAN_IU = {"fcn32s": 62.84, "fcn16s": 64.91, "fcn8s": 65.49, "fcn8s_atonce": 64.74}

# Rows we can run that the table lacks: labelled, with no paper numbers beside them.
FCN_EXTRA_ROWS = {"fcn8s_atonce": "FCN-8s at-once"}


# -------------------------------------------------------------------------------------- SegNet
def _gcmb(g: float, c: float, miou: float, bf: float) -> dict[str, float]:
    return {"pixel_acc": g, "mean_acc": c, "mean_iou": miou, "bf": bf}


SEGNET_BUDGETS = (40_000, 80_000)
SEGNET_TABLE3 = PaperTable(
    key="segnet",
    title="SegNet, TPAMI 2017, Table 3: CamVid test, budgets of 40K / 80K / >80K iterations",
    source="Badrinarayanan, Kendall, Cipolla, 'SegNet: A Deep Convolutional Encoder-Decoder "
           "Architecture for Image Segmentation', TPAMI 2017, Table 3 (docs/reference.md §1)",
    metrics=("pixel_acc", "mean_acc", "mean_iou", "bf"),
    rows={
        "segnet": PaperRow(
            "SegNet",
            budgets={40_000: _gcmb(88.81, 59.93, 50.02, 35.78),
                     80_000: _gcmb(89.68, 69.82, 57.18, 42.08)},
            best=_gcmb(90.40, 71.20, 60.10, 46.84), max_iter=140_000),
        "deeplab_largefov": PaperRow(
            "DeepLab-LargeFOV",
            budgets={40_000: _gcmb(85.95, 60.41, 50.18, 26.25),
                     80_000: _gcmb(87.76, 62.57, 53.34, 32.04)},
            best=_gcmb(88.20, 62.53, 53.88, 32.77), max_iter=140_000),
        "deeplab_largefov_crf": PaperRow(
            "DeepLab-LargeFOV-denseCRF",
            budgets={40_000: None, 80_000: None},  # "not computed" in the paper
            best=_gcmb(89.71, 60.67, 54.74, 40.79), max_iter=140_000),
        "fcn_bilinear": PaperRow(
            "FCN",
            budgets={40_000: _gcmb(81.97, 54.38, 46.59, 22.86),
                     80_000: _gcmb(82.71, 56.22, 47.95, 24.76)},
            best=_gcmb(83.27, 59.56, 49.83, 27.99), max_iter=200_000),
        "fcn_learnt_deconv": PaperRow(
            "FCN (learnt deconv)",
            budgets={40_000: _gcmb(83.21, 56.05, 48.68, 27.40),
                     80_000: _gcmb(83.71, 59.64, 50.80, 31.01)},
            best=_gcmb(83.14, 64.21, 51.96, 33.18), max_iter=160_000),
        "deconvnet": PaperRow(
            "DeconvNet",
            budgets={40_000: _gcmb(85.26, 46.40, 39.69, 27.36),
                     80_000: _gcmb(85.19, 54.08, 43.74, 29.33)},
            best=_gcmb(89.58, 70.24, 59.77, 52.23), max_iter=260_000),
    },
    decimals=2,
    protocol={
        "data": "CamVid: trained on a 3,433-image road-scene corpus (never released), "
                "tested on CamVid test (233 images, 11 classes)",
        "split": "test (CamVid test, 233 images)",
        "width": "1 (full VGG16 trunk)",
        "iterations": "budgets 40K and 80K, then the best point after 80K (max iter "
                      "140K-260K per network)",
        "batch_size": "5",
        "image_size": "360x480",
        "optimizer": "SGD lr 1e-3 fixed, momentum 0.9",
        "pretrained": "VGG16 encoder (paper)",
        "batch_norm": "BN after every conv in all networks",
        "bn_recompute": "yes: over the training set before every evaluation",
        "loss": "summed over pixels (paper); the released code averages over non-void pixels",
        "mean_over": "all: divide by the number of classes (SegNet's script)",
        "class_balancing": "none",
    },
    notes=('"FCN" has fixed bilinear upsampling, "FCN (learnt deconv)" learns it; the paper '
           "does not say which skip variant (fcnlab: FCN-8s).",),
)

TABLES: dict[str, PaperTable] = {"fcn": FCN_TABLE2, "segnet": SEGNET_TABLE3}
# The experiments' ``protocol`` key -> the reference their FCN runs are compared with; anything
# else (the CVPR protocol, the embedded tables, no key) is compared with Table 2.
FCN_REFERENCES: dict[str, PaperTable] = {"fcn_heavy": FCN_HEAVY}


def reference_table(key: str, protocol: str | None) -> PaperTable:
    """The paper table a run of table ``key`` made with ``protocol`` is compared with."""
    if key == "fcn":
        return FCN_REFERENCES.get(str(protocol), FCN_TABLE2)
    return TABLES[key]


def table_of_model(model: str) -> str | None:
    """The key of the paper table a model name belongs to ("fcn", "segnet"), or None."""
    if model in FCN_TABLE2.rows or model in FCN_EXTRA_ROWS:
        return "fcn"
    if model in SEGNET_TABLE3.rows:
        return "segnet"
    return None
