"""Built-in plugin: the restoration networks `cnn` (the coursework CNN) and `unet`."""

from diffkit import hookimpl
from diffkit_networks.cnn import CNN
from diffkit_networks.unet import UNet


@hookimpl
def register_networks(register):
    register(CNN, name="cnn")
    register(UNet, name="unet")
