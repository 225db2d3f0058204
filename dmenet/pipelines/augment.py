"""The paper's augmentation as TensorFlow ops, applied jointly to an image and its label.

Resize rules (DESIGN §3): a short side ≤ the crop size is scaled up to just above it, a short side
> 800 is scaled down to 800; then a random square crop, a random flip and a random rotation by a
multiple of 90°. Images are resized bilinearly, labels by nearest neighbour (so binary masks stay
binary and σ labels keep values that exist in the data). Randomness is stateless and seeded per
element, so a pipeline is reproducible whatever its parallelism.
"""
import tensorflow as tf

MAX_SHORT_SIDE = 800
# The original's optional noise (utils.add_gaussian_noise): 0.75·image + 0.25·(0.25·n) + 0.25 with
# n ~ N(0, v) grey (the same in R, G, B) and the variance v ~ U(0, 0.1) drawn per image; no clipping.
NOISE_IMAGE_WEIGHT, NOISE_WEIGHT, NOISE_OFFSET, NOISE_MAX_VARIANCE = 0.75, 0.25 * 0.25, 0.25, 0.1


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


def add_gaussian_noise(image, seed):
    """The original's noise augmentation (see NOISE_*), reproducible from a shape-(2,) seed."""
    variance_seed, noise_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    sigma = tf.sqrt(tf.random.stateless_uniform([], variance_seed, 0.0, NOISE_MAX_VARIANCE))
    grey = sigma * tf.random.stateless_normal(tf.concat([tf.shape(image)[:2], [1]], 0), noise_seed)
    return NOISE_IMAGE_WEIGHT * image + NOISE_WEIGHT * grey + NOISE_OFFSET


def augment_pair(image, label, seed, crop_size, max_short_side=MAX_SHORT_SIDE, noise=False):
    """(H, W, 3) image and (H, W, 1) label (or None) → crop_size² crops, equally transformed.

    `seed` is a shape-(2,) int tensor; the same seed gives the same crop, flip and rotation (and
    noise, when `noise` asks for the original's noise augmentation of the image).
    """
    shape = tf.shape(image)
    new_h, new_w = resized_shape(shape[0], shape[1], crop_size, max_short_side)
    image = tf.image.resize(image, tf.stack([new_h, new_w]), method="bilinear")
    image = tf.clip_by_value(image, 0.0, 1.0)
    if noise:  # after resizing and before cropping, as the original
        image = add_gaussian_noise(image, tf.random.experimental.stateless_fold_in(seed, 1))
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
