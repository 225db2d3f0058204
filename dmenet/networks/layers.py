"""Building blocks shared by the networks, with the original's conventions (DESIGN §2).

Keras defaults differ from the original on all of these: BN has no gamma, epsilon 1e-5 and
momentum 0.9; LeakyReLU slopes 0.2; 3×3 convolutions pad one pixel symmetrically, then run VALID.
"""
import keras
from keras import layers, ops

LEAKY_SLOPE = 0.2
# The original's initialisers: He (variance scaling, fan-in, truncated normal) before ReLU-like
# activations, Xavier (glorot uniform, Keras' default) on the layers that end in a sigmoid or logit.
RELU_INIT = "he_normal"
OUTPUT_INIT = "glorot_uniform"


def scaled(filters, width):
    """`filters` × `width`, at least 1: the builders' width argument makes tiny networks for tests."""
    return max(1, int(round(filters * width)))


@keras.saving.register_keras_serializable(package="dmenet")
class SymmetricPadding2D(layers.Layer):
    """Pad H and W by `pad` pixels in tf.pad's SYMMETRIC mode (one pixel = edge replication)."""

    def __init__(self, pad=1, **kwargs):
        super().__init__(**kwargs)
        self.pad = pad

    def call(self, x):
        p = self.pad
        return ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="symmetric")

    def compute_output_shape(self, shape):
        grow = lambda n: None if n is None else n + 2 * self.pad
        return (shape[0], grow(shape[1]), grow(shape[2]), shape[3])

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


def batch_norm(name):
    """The original's BatchNormLayer: beta only, epsilon 1e-5, decay 0.9."""
    return layers.BatchNormalization(scale=False, epsilon=1e-5, momentum=0.9, name=name)


def padded_conv(x, filters, name, activation=None, use_bias=True, kernel_initializer=OUTPUT_INIT):
    """3×3 conv after a symmetric 1-pixel pad, so the map keeps its size without zero borders."""
    x = SymmetricPadding2D(name=f"{name}_pad")(x)
    return layers.Conv2D(filters, 3, padding="valid", activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer, name=name)(x)


def leaky_relu(x, name):
    return layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=name)(x)


def conv_bn_lrelu(x, filters, conv_name, bn_name, kernel_size=3):
    """Conv (with bias) → BN → LeakyReLU(0.2), the decoder's basic unit."""
    if kernel_size == 3:
        x = padded_conv(x, filters, conv_name, kernel_initializer=RELU_INIT)
    else:
        x = layers.Conv2D(filters, kernel_size, padding="valid", kernel_initializer=RELU_INIT, name=conv_name)(x)
    x = batch_norm(bn_name)(x)
    return leaky_relu(x, f"{bn_name}_lrelu")
