"""S, sharpness calibration ("Binary_Net" in the original): B's defocus map → blurred/sharp logit.

Only 1×1 convolutions, so S adds no receptive field: it can only learn a per-pixel calibration of
B's output to CUHK's binary masks, which pushes B to be right on real photos pixel by pixel.
"""
import keras
from keras import layers

from dmenet.networks.layers import OUTPUT_INIT, RELU_INIT, batch_norm, leaky_relu, scaled

SHARPNESS_FILTERS = (64, 64, 64, 32, 32, 32, 16, 16, 16)


def build_sharpness_net(name="sharpness_net", width=1.0):
    """(N, H, W, 1) defocus map → (N, H, W, 1) logits of "blurred" (1 = blurred, 0 = sharp);
    `width` scales the filters (tiny test networks)."""
    defocus = keras.Input((None, None, 1), name="defocus")
    x = defocus
    for i, filters in enumerate(SHARPNESS_FILTERS, start=1):
        x = layers.Conv2D(scaled(filters, width), 1, kernel_initializer=RELU_INIT, name=f"s_conv{i}")(x)
        x = batch_norm(f"s_bn{i}")(x)
        x = leaky_relu(x, f"s_lrelu{i}")
    logits = layers.Conv2D(1, 1, kernel_initializer=OUTPUT_INIT, name="s_logits")(x)
    return keras.Model(defocus, logits, name=name)
