"""Networks built on one VGG16 trunk, and the layers they share."""

from fcnlab.models.checkpoint import load_init_weights, read_state_dict
from fcnlab.models.fcn import FCN
from fcnlab.models.vgg import VGG16

__all__ = ["FCN", "VGG16", "load_init_weights", "read_state_dict"]
