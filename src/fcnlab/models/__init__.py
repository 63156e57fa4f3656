"""Networks built on one VGG16 trunk, and the layers they share."""

from fcnlab.models.checkpoint import load_init_weights, read_state_dict
from fcnlab.models.deconvnet import DeconvNet
from fcnlab.models.deeplab import DeepLabLargeFOV
from fcnlab.models.fcn import FCN
from fcnlab.models.segnet import SegNet
from fcnlab.models.vgg import VGG16, VGG16Classifier
from fcnlab.models.weights import convolutionalize, load_vgg16_classifier

__all__ = ["FCN", "DeconvNet", "DeepLabLargeFOV", "SegNet", "VGG16", "VGG16Classifier",
           "convolutionalize", "load_init_weights", "load_vgg16_classifier", "read_state_dict"]
