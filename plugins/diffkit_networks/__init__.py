"""Built-in plugin: the restoration networks `cnn` (the coursework CNN) and `unet`."""

from diffkit import hookimpl


@hookimpl
def register_networks(register):
    from diffkit_networks.cnn import CNN
    from diffkit_networks.unet import UNet

    register(CNN, name="cnn")
    register(UNet, name="unet")
