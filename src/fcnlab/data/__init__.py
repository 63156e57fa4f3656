"""Datasets and LightningDataModules: synthetic data, user folders, VOC/SBD, CamVid.

Names are imported lazily (PEP 562), so ``python -m fcnlab.data.synthetic`` runs without a
double-import warning and the generator does not pull in Lightning.
"""

from importlib import import_module

_EXPORTS = {
    "FolderDataModule": "fcnlab.data.datamodule",
    "SyntheticDataModule": "fcnlab.data.datamodule",
    "SegmentationFolderDataset": "fcnlab.data.dataset",
    "generate_synthetic": "fcnlab.data.synthetic",
    "SYNTHETIC_CLASSES": "fcnlab.data.synthetic",
    "SYNTHETIC_PALETTE": "fcnlab.data.synthetic",
    "SegmentationDataModule": "fcnlab.data.datamodule",
    "SegmentationDataset": "fcnlab.data.dataset",
    "VOCDataModule": "fcnlab.data.voc",
    "VOC_CLASSES": "fcnlab.data.voc",
    "CamVidDataModule": "fcnlab.data.camvid",
    "CAMVID_CLASSES": "fcnlab.data.camvid",
    "build_augment": "fcnlab.data.augment",
    "median_frequency_weights": "fcnlab.data.class_weights",
    "verify_datamodule": "fcnlab.data.verify",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fcnlab.data' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
