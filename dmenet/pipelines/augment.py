"""The paper's augmentation as TensorFlow ops, applied jointly to an image and its label.

Resize rules (DESIGN §3): a short side ≤ the crop size is scaled up to just above it, a short side
> 800 is scaled down to 800; then a random square crop, a random flip and a random rotation by a
multiple of 90°. Images are resized bilinearly, labels by nearest neighbour (so binary masks stay
binary and σ labels keep values that exist in the data). Randomness is stateless and seeded per
element, so a pipeline is reproducible whatever its parallelism.
"""
import tensorflow as tf

MAX_SHORT_SIDE = 800


def resized_shape(height, width, crop_size, max_short_side=MAX_SHORT_SIDE):
    """The shape the resize rules give (the original: floor(side·ratio) + 1 when resizing)."""
    short = tf.minimum(height, width)
    short_f = tf.cast(short, tf.float32)
    ratio = tf.where(
        short <= crop_size,
        tf.cast(crop_size, tf.float32) / short_f,
        tf.where(short > max_short_side, tf.cast(max_short_side, tf.float32) / short_f, 1.0),
    )
    resize = tf.logical_or(short <= crop_size, short > max_short_side)
    new_h = tf.where(resize, tf.cast(tf.floor(tf.cast(height, tf.float32) * ratio), tf.int32) + 1, height)
    new_w = tf.where(resize, tf.cast(tf.floor(tf.cast(width, tf.float32) * ratio), tf.int32) + 1, width)
    return new_h, new_w


def augment_pair(image, label, seed, crop_size, max_short_side=MAX_SHORT_SIDE):
    """(H, W, 3) image and (H, W, 1) label (or None) → crop_size² crops, equally transformed.

    `seed` is a shape-(2,) int tensor; the same seed gives the same crop, flip and rotation.
    """
    shape = tf.shape(image)
    new_h, new_w = resized_shape(shape[0], shape[1], crop_size, max_short_side)
    image = tf.image.resize(image, tf.stack([new_h, new_w]), method="bilinear")
    image = tf.clip_by_value(image, 0.0, 1.0)
    channels = [image]
    if label is not None:
        channels.append(tf.image.resize(label, tf.stack([new_h, new_w]), method="nearest"))
    stacked = tf.concat(channels, axis=-1)
    seeds = tf.random.experimental.stateless_split(seed, 4)
    top = tf.random.stateless_uniform([], seeds[0], 0, new_h - crop_size + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], seeds[1], 0, new_w - crop_size + 1, dtype=tf.int32)
    crop = stacked[top : top + crop_size, left : left + crop_size, :]
    flip = tf.random.stateless_uniform([], seeds[2], 0, 2, dtype=tf.int32)
    crop = tf.cond(flip > 0, lambda: tf.reverse(crop, axis=[0]), lambda: crop)
    quarter_turns = tf.random.stateless_uniform([], seeds[3], 0, 4, dtype=tf.int32)
    crop = tf.image.rot90(crop, quarter_turns)
    crop = tf.ensure_shape(crop, [crop_size, crop_size, stacked.shape[-1]])
    if label is None:
        return crop, None
    return crop[..., :3], crop[..., 3:]
