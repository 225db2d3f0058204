"""The paper's loss terms (DESIGN §3), per example, then averaged over the global batch.

Every term is first reduced to one value per example (mean over pixels) and then summed and divided
by the *global* batch size with tf.nn.compute_average_loss: under tf.distribute each replica holds
part of the batch and the optimiser sums the replicas' gradients, so this makes the gradient equal
to that of the whole batch on one device.
"""
import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """The λ of each loss term; the values (the paper's by default) live in TrainConfig."""

    aux: float
    content: float
    sharpness: float
    adversarial: float

    @classmethod
    def from_config(cls, config):
        return cls(config.lambda_aux, config.lambda_content, config.lambda_sharpness, config.lambda_adversarial)


def global_mean(per_example):
    """Sum over this replica's examples / global batch size."""
    return tf.nn.compute_average_loss(per_example)


def _per_example_mean(values):
    return tf.reduce_mean(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)


def mse(prediction, target):
    prediction = tf.cast(prediction, tf.float32)
    target = tf.cast(target, tf.float32)
    return global_mean(_per_example_mean(tf.square(prediction - target)))


def bce_with_logits(logits, labels):
    """Sigmoid cross-entropy of logits against labels (a scalar label broadcasts)."""
    logits = tf.cast(logits, tf.float32)
    labels = tf.broadcast_to(tf.cast(labels, tf.float32), tf.shape(logits))
    return global_mean(_per_example_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)))


def nearest_downsample(label, size):
    """Label (N, H, W, 1) → (N, h, w, 1) by nearest neighbour with aligned corners, as the
    original's auxiliary targets: source index round(i · (H − 1) / (h − 1))."""

    def indices(source, target):
        scale = tf.cast(source - 1, tf.float32) / tf.cast(tf.maximum(target - 1, 1), tf.float32)
        return tf.cast(tf.round(tf.cast(tf.range(target), tf.float32) * scale), tf.int32)

    height, width = tf.shape(label)[1], tf.shape(label)[2]
    label = tf.gather(label, indices(height, size[0]), axis=1)
    return tf.gather(label, indices(width, size[1]), axis=2)


def auxiliary_loss(aux_outputs, label):
    """Σ over the five auxiliary heads of MSE against the label at the head's resolution."""
    total = 0.0
    for aux in aux_outputs:
        target = nearest_downsample(label, tf.shape(aux)[1:3])
        total += mse(aux, target)
    return total


def discriminator_accuracy(logits_synthetic, logits_real):
    """Fraction of D's patch decisions that are right (synthetic → 1, real → 0), this replica's
    share of the global mean."""
    right_s = tf.cast(logits_synthetic > 0, tf.float32)
    right_r = tf.cast(logits_real <= 0, tf.float32)
    return 0.5 * (global_mean(_per_example_mean(right_s)) + global_mean(_per_example_mean(right_r)))
