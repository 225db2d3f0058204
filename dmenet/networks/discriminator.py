"""D, the domain discriminator: tells B's u0 features of synthetic crops (1) from real ones (0).

A patch discriminator (DESIGN §2): four stride-2 4×4 convolutions without bias, each followed by
BN (no gamma) and LeakyReLU(0.2), then a stride-2 4×4 convolution to one logit per patch.
"""
import keras
from keras import layers

from dmenet.networks.layers import OUTPUT_INIT, RELU_INIT, batch_norm, leaky_relu, scaled

DISCRIMINATOR_FILTERS = (64, 128, 256, 512)


def build_discriminator(feature_channels=64, name="discriminator", width=1.0):
    """(N, H, W, 64) feature → (N, H/32, W/32, 1) logits (not probabilities); `width` scales the
    filters (tiny test networks)."""
    feature = keras.Input((None, None, feature_channels), name="feature")
    x = feature
    for i, filters in enumerate(DISCRIMINATOR_FILTERS, start=1):
        x = layers.Conv2D(scaled(filters, width), 4, strides=2, padding="same", use_bias=False,
                          kernel_initializer=RELU_INIT, name=f"d_conv{i}")(x)
        x = batch_norm(f"d_bn{i}")(x)
        x = leaky_relu(x, f"d_lrelu{i}")
    logits = layers.Conv2D(1, 4, strides=2, padding="same", use_bias=False, kernel_initializer=OUTPUT_INIT,
                           name="d_logits")(x)
    return keras.Model(feature, logits, name=name)
