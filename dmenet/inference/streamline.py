"""B's inference graph with the same arithmetic and less data movement (TensorFlow, CPUs and GPUs).

Profiled on CPUs, B's TensorFlow graph spends as much time moving feature maps as convolving them:
  * every 3×3 convolution reads its input through a 1-pixel SYMMETRIC ``tf.pad`` (MirrorPad), a full
    copy of the map that oneDNN cannot fuse, and MirrorPad in bf16 costs about twice a plain copy.
    For one pixel SYMMETRIC is edge replication, so the padded map is one ``tf.gather`` of the
    flattened pixels with fixed indices (`EdgePadding2D`): the same values, one plain copy.
  * under ``mixed_bfloat16`` every call casts every float32 kernel to bf16 again; here the
    convolutions hold their weights in bf16 already (the same values: the cast rounds alike).
  * ``UpSampling2D`` (nearest, 2×) becomes a broadcast and a reshape (`NearestUpsampling2D`).
Each of these moves the same numbers: the streamlined model's outputs equal the model's bit for bit
(tests/test_streamline.py checks it in fp32 and bf16).

The trained network, training and the weight files keep B as it is; only inference runs the copy.
"""
import numpy as np
import tensorflow as tf
from keras import layers


class EdgePadding2D(layers.Layer):
    """Pad H and W by one pixel, repeating the edge pixels (= SYMMETRIC mode for one pixel), as one
    gather of the flattened pixels. Indices are constants where the shape is known when traced."""

    def call(self, x):
        height, width = x.shape[1], x.shape[2]
        if height is None or width is None:  # traced for any size: the indices are computed per call
            height, width = tf.shape(x)[1], tf.shape(x)[2]
            rows = tf.clip_by_value(tf.range(-1, height + 1), 0, height - 1)
            cols = tf.clip_by_value(tf.range(-1, width + 1), 0, width - 1)
        else:
            rows = np.clip(np.arange(-1, height + 1), 0, height - 1)
            cols = np.clip(np.arange(-1, width + 1), 0, width - 1)
        index = tf.reshape(rows[:, None] * width + cols[None, :], [-1])  # flat pixel of each padded pixel
        batch, channels = tf.shape(x)[0], x.shape[3]
        flat = tf.reshape(x, [batch, -1, channels])
        return tf.reshape(tf.gather(flat, index, axis=1), [batch, height + 2, width + 2, channels])

    def compute_output_shape(self, shape):
        grow = lambda n: None if n is None else n + 2  # noqa: E731
        return (shape[0], grow(shape[1]), grow(shape[2]), shape[3])


class NearestUpsampling2D(layers.Layer):
    """Nearest-neighbour 2× upsampling as a broadcast and a reshape (UpSampling2D's values)."""

    def call(self, x):
        shape = tf.shape(x)
        n, height, width = shape[0], shape[1], shape[2]
        channels = x.shape[3]
        grown = tf.broadcast_to(x[:, :, None, :, None, :], [n, height, 2, width, 2, channels])
        return tf.reshape(grown, [n, 2 * height, 2 * width, channels])

    def compute_output_shape(self, shape):
        grow = lambda n: None if n is None else 2 * n  # noqa: E731
        return (shape[0], grow(shape[1]), grow(shape[2]), shape[3])


def _streamlined_layer(layer):
    config = layer.get_config()
    if isinstance(layer, layers.Conv2D) and layer.dtype_policy.name == "mixed_bfloat16":
        config["dtype"] = "bfloat16"  # weights stored in bf16: no cast of every kernel on every call
    kind = type(layer).__name__
    if kind == "SymmetricPadding2D" and layer.pad == 1:
        return EdgePadding2D(name=layer.name, dtype=config["dtype"])
    if kind == "UpSampling2D" and layer.interpolation == "nearest" and tuple(layer.size) == (2, 2) and layer.data_format == "channels_last":
        return NearestUpsampling2D(name=layer.name, dtype=config["dtype"])
    return type(layer).from_config(config)


def streamlined(model):
    """A copy of B (or any functional model of its layers) that computes the same outputs, bit for
    bit, with less data movement (see the module docstring). For inference only.

    Args:
        model: a functional keras.Model with its weights (B in fp32 or bf16, BN folded or not).

    Returns:
        keras.Model with the same inputs, outputs, layer names and weights.

    Example:
        >>> fast = streamlined(fold_batch_norms(model))
        >>> fast(images)["defocus"]  # == fold_batch_norms(model)(images)["defocus"]
    """
    import keras

    copy = keras.models.clone_model(model, clone_function=_streamlined_layer, recursive=True)
    originals = dict(_named_layers(model))
    for name, layer in _named_layers(copy):
        weights = originals[name].get_weights()
        if weights:
            layer.set_weights(weights)
    return copy


def _named_layers(model):
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _named_layers(layer)
        else:
            yield layer.name, layer
