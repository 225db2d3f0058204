"""TensorBoard scalars and images written with TensorFlow's core `tf.summary.write`.

tf.summary.scalar/image live in the separate `tensorboard` package, which TensorFlow no longer
installs; the event files below are the same ones those functions write (plugin "scalars" and
"images"), so `pip install tensorboard && tensorboard --logdir RUN_DIR/tensorboard` shows them,
while training itself needs nothing beyond TensorFlow.
"""
import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def _metadata(plugin):
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin)
    ).SerializeToString()


def scalar(name, value, step):
    tf.summary.write(name, tf.constant(float(value), tf.float32), step=step, metadata=_metadata("scalars"))


def images(name, batch, step, max_outputs=3):
    """(N, H, W, C) floats in [0, 1] → PNGs in TensorBoard's image format."""
    batch = tf.convert_to_tensor(batch)[:max_outputs]
    encoded = [tf.io.encode_png(tf.image.convert_image_dtype(image, tf.uint8, saturate=True)) for image in batch]
    shape = tf.shape(batch)
    dims = [tf.as_string(shape[2]), tf.as_string(shape[1])]
    tf.summary.write(name, tf.stack(dims + encoded), step=step, metadata=_metadata("images"))
