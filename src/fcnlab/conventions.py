"""The two input conventions pretrained VGG16 weights expect, as numbers.

Kept at the top of the package because both the data package (which preprocesses images) and the
models package (which folds one convention into another in ``conv1_1``) need them, and neither may
import the other (tests/test_layering.py). Imports nothing. docs/reference.md §3, §6.
"""

# Caffe-converted VGG-16 (and the FCN heavy protocol, docs/reference.md §3): BGR order, 0-255 scale,
# per-channel mean subtracted, no std division. Mean in B, G, R order, from the FCN reference code.
CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)

# torchvision ImageNet weights: RGB order, scaled to [0, 1], then normalised with these statistics
# (the values quoted in the torchvision model documentation).
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)

PREPROCESS_MODES = ("caffe", "torchvision")
