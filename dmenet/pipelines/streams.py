"""tf.data streams for the three inputs of a training step, and their zip into one batch dict.

Files are decoded by dmenet.files.images (EXIF orientation, grey/RGBA photos, 16-bit σ maps) in
parallel map calls; augmentation runs as TF ops (dmenet.pipelines.augment). Every stream repeats
forever and is shuffled with a seed; an "epoch" is counted by the trainer in SYNDOF batches, as in
the original. A file that fails to decode despite the start-up check (e.g. truncated mid-way) is
skipped with a warning naming it instead of ending the run; so is a decoded file holding NaN or
infinite values (possible in float TIFFs) or an image whose label has another size, so that bad
data never reaches the model.
"""
import numpy as np
import tensorflow as tf

from dmenet.datasets import SIGMA_STORAGE_SCALE, DatasetError, read_binary_mask
from dmenet.files.images import read_image
from dmenet.pipelines.augment import MAX_SHORT_SIDE, augment_pair
from dmenet.units import NORMALIZED, OFFICIAL, DefocusEncoding

AUTOTUNE = tf.data.AUTOTUNE


def label_encoding(label_format, sigma_max=NORMALIZED.sigma_max):
    """The DefocusEncoding a network trained on this label format produces (DESIGN §5)."""
    if label_format == "coc15":
        return OFFICIAL
    return DefocusEncoding("normalized", sigma_max)


def stored_to_target(stored, label_format="sigma10", sigma_max=NORMALIZED.sigma_max):
    """Stored map values (σ·10, or the older CoC·10) → the training target in [0, 1]."""
    value = tf.cast(stored, tf.float32) / SIGMA_STORAGE_SCALE
    if label_format == "coc15":
        return value / 15.0
    return value / tf.cast(label_encoding(label_format, sigma_max).sigma_max, tf.float32)


def decode_syndof_map(path, bit_depth, label_format="sigma10", sigma_max=NORMALIZED.sigma_max):
    """A SYNDOF blur_map PNG → (H, W, 1) target. Decoded natively by TF (pypng would take ~0.5 s
    per 16-bit map); the bit depth comes from the start-up check so 8-bit files are not rescaled.
    A target above 1 means the set was made with a larger max_coc than configured: an error."""
    target = stored_to_target(_read_stored_map(path, bit_depth), label_format, sigma_max)
    check = tf.debugging.assert_less_equal(
        tf.reduce_max(target), 1.0 + 1e-6,
        message=f"a SYNDOF map exceeds the label range (σ_max {sigma_max:g}); was it generated with a larger max_coc?",
    )
    with tf.control_dependencies([check]):
        return tf.identity(target)


def read_mask_target(path, mask_polarity="blurred-white"):
    """A mask file → (H, W, 1) float32 with 1 = blurred, 0 = sharp, whatever the file's polarity."""
    return read_binary_mask(path, mask_polarity).astype(np.float32)[..., None]


def read_finite_image(path):
    """read_image, refusing NaN or infinite pixels (float TIFFs) with the file named."""
    image = read_image(path)
    if not np.all(np.isfinite(image)):
        raise DatasetError(f"{path}: holds NaN or infinite pixel values; it is skipped")
    return image


def check_label_range(syndof, sigma_max=NORMALIZED.sigma_max, sample=16):
    """Decode up to `sample` maps spread over the set and fail if any exceeds the label range: a
    set made with a larger max_coc than configured would otherwise be skipped file by file."""
    depths = syndof.map_bit_depths or (16,) * len(syndof.maps)
    picks = np.unique(np.linspace(0, len(syndof.maps) - 1, min(sample, len(syndof.maps))).astype(int))
    problems = []
    for i in picks:
        target = stored_to_target(
            _read_stored_map(str(syndof.maps[i]), depths[i]), syndof.label_format, sigma_max
        )
        peak = float(tf.reduce_max(target))
        if peak > 1.0 + 1e-6:
            problems.append(f"{syndof.maps[i]}: label {peak:.3f} > 1 (σ_max {sigma_max:g}); set --max-coc to the one the set was made with")
    if problems:
        raise DatasetError("SYNDOF labels", problems)


def _read_stored_map(path, bit_depth):
    data = tf.io.read_file(path)
    stored = tf.cond(
        tf.equal(bit_depth, 16),
        lambda: tf.cast(tf.io.decode_png(data, dtype=tf.uint16), tf.int32),
        lambda: tf.cast(tf.io.decode_png(data, dtype=tf.uint8), tf.int32),
    )
    channel = tf.minimum(1, tf.shape(stored)[-1] - 1)  # the original reads channel 1 of 3 equal ones
    return stored[..., channel : channel + 1]


def _decode(function, *args, channels):
    """Wrap a numpy reader as a TF op with a known rank and channel count."""

    def call(*tensors):
        values = [t.decode() if isinstance(t, bytes) else t for t in tensors]
        try:
            return function(*values)
        except ValueError as error:  # the message names the file; tf.data logs it and skips the element
            raise ValueError(str(error)) from None

    out = tf.numpy_function(call, list(args), tf.float32, stateful=False)
    return tf.ensure_shape(out, [None, None, channels])


def _same_size(label, image, label_path):
    """The label, after asserting it has the image's height and width as read: augmentation would
    otherwise stretch it onto the image (the start-up check makes this a last line of defence)."""
    same = tf.reduce_all(tf.equal(tf.shape(label)[:2], tf.shape(image)[:2]))
    check = tf.debugging.Assert(same, [label_path, "label size differs from its image as read (EXIF rotation?)"])
    with tf.control_dependencies([check]):
        return tf.identity(label)


def _element_seeds(dataset, seed):
    """Attach a distinct stateless seed (seed, index) to each element of an infinite stream."""
    return dataset.enumerate().map(lambda i, x: (tf.stack([tf.cast(seed, tf.int64), i]), x))


def _repeat_shuffled(tensors, seed):
    count = len(tensors[0])
    dataset = tf.data.Dataset.from_tensor_slices(tuple(np.array([str(p) for p in t]) for t in tensors))
    return dataset.shuffle(count, seed=seed, reshuffle_each_iteration=True).repeat()


def syndof_stream(syndof, crop_size, seed=0, sigma_max=NORMALIZED.sigma_max, max_short_side=MAX_SHORT_SIDE, noise=False):
    """Infinite (image, defocus) crops from a SyndofSet."""
    label_format = syndof.label_format
    depths = syndof.map_bit_depths or (16,) * len(syndof.maps)

    def load(seed_pair, paths):
        image = _decode(read_finite_image, paths[0], channels=3)
        depth = tf.strings.to_number(paths[2], tf.int32)
        label = decode_syndof_map(paths[1], depth, label_format, sigma_max)
        return augment_pair(image, _same_size(label, image, paths[1]), seed_pair, crop_size, max_short_side, noise)

    dataset = _element_seeds(_repeat_shuffled((syndof.images, syndof.maps, depths), seed), seed)
    dataset = dataset.map(lambda s, paths: load(s, paths), num_parallel_calls=AUTOTUNE)
    return dataset.ignore_errors(log_warning=True)


def real_labelled_stream(real, crop_size, seed=0, max_short_side=MAX_SHORT_SIDE, noise=False):
    """Infinite (image, mask) crops from a RealLabelledSet; mask 1 = blurred."""
    polarity = real.mask_polarity

    def load(seed_pair, paths):
        image = _decode(read_finite_image, paths[0], channels=3)
        mask = _decode(lambda p: read_mask_target(p, polarity), paths[1], channels=1)
        return augment_pair(image, _same_size(mask, image, paths[1]), seed_pair, crop_size, max_short_side, noise)

    dataset = _element_seeds(_repeat_shuffled((real.images, real.masks), seed + 1), seed + 1)
    dataset = dataset.map(lambda s, paths: load(s, paths), num_parallel_calls=AUTOTUNE)
    return dataset.ignore_errors(log_warning=True)


def real_unlabelled_stream(unlabelled, crop_size, seed=0, max_short_side=MAX_SHORT_SIDE, noise=False):
    """Infinite image crops from a RealUnlabelledSet."""

    def load(seed_pair, paths):
        image = _decode(read_finite_image, paths[0], channels=3)
        return augment_pair(image, None, seed_pair, crop_size, max_short_side, noise)[0]

    dataset = _element_seeds(_repeat_shuffled((unlabelled.images,), seed + 2), seed + 2)
    dataset = dataset.map(lambda s, paths: load(s, paths), num_parallel_calls=AUTOTUNE)
    return dataset.ignore_errors(log_warning=True)


def training_dataset(
    syndof,
    batch_size,
    crop_size,
    real=None,
    unlabelled=None,
    seed=0,
    sigma_max=NORMALIZED.sigma_max,
    max_short_side=MAX_SHORT_SIDE,
    noise=False,
):
    """Batches as dicts: synthetic_image, synthetic_defocus and, when given, real_image, real_mask,
    unlabelled_image. Each stream is batched on its own (drop_remainder, so shapes are static).
    `noise` adds the original's optional noise augmentation to every photo stream."""
    batch = lambda d: d.batch(batch_size, drop_remainder=True)
    syn = batch(syndof_stream(syndof, crop_size, seed, sigma_max, max_short_side, noise))
    parts = {"synthetic": syn}
    if real is not None:
        parts["real"] = batch(real_labelled_stream(real, crop_size, seed, max_short_side, noise))
    if unlabelled is not None:
        parts["unlabelled"] = batch(real_unlabelled_stream(unlabelled, crop_size, seed, max_short_side, noise))

    def to_dict(streams):
        out = {"synthetic_image": streams["synthetic"][0], "synthetic_defocus": streams["synthetic"][1]}
        if "real" in streams:
            out["real_image"], out["real_mask"] = streams["real"]
        if "unlabelled" in streams:
            out["unlabelled_image"] = streams["unlabelled"]
        return out

    dataset = tf.data.Dataset.zip(parts).map(to_dict)
    return dataset.prefetch(AUTOTUNE)
