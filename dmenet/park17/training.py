"""Training Park et al.'s patch classifier from any folder of sharp photos (PARK17.md §13).

Samples: for every sharp photo, balanced training edges (both scales equally often); for each of the
11 σ classes the photo is blurred with the 27×27 sampled Gaussian of that σ (replicate borders), and
the features and CNN patch of every edge position are taken from the blurred photo with label k.
They are stored as uint8(255·x), like the official HDF5 DB, in one cache file per photo in the run
folder, so a resumed run does not extract them again.

Optimisation follows DHDE_solver.prototxt: SGD with momentum 0.9, learning rate 1e-4 with Caffe's
"inv" policy lr = base·(1 + γ·iter)^−power (γ = 1e-4, power = 2), weight decay 0.01 on every weight
and bias (decay_mult 1), batch 128, softmax cross-entropy on ReLU(fc3).

Differences from the official training, on purpose: validation holds out whole photos (the official
example validated on a third image too, but on only 128 samples); batches are shuffled (the official
HDF5 layers read the files in order); the number of edge positions per photo can be capped.
"""
import dataclasses
import hashlib
import json
import pathlib
import time
import zlib

import keras
import numpy as np
import scipy.ndimage

from dmenet.files.images import ImageReadError, atomic_path, list_images, read_image
from dmenet.park17.edges import balanced_training_edge_map, value_channel
from dmenet.park17.errors import Park17Error
from dmenet.park17.features import compute_features, matlab_uint8, patch_centres
from dmenet.park17.network import CAFFE_WEIGHT_DECAY, FEATURE_INPUTS, PATCH_INPUT, build_patch_classifier, logits_model
from dmenet.park17.params import DEFAULT_PARAMS, NUM_CLASSES, SIGMA_CLASSES
from dmenet.weights.park17 import sha256_of

WEIGHTS_NAME = "park17.weights.h5"
STATE_NAME = "park17_training_state.npz"
HISTORY_NAME = "park17_history.json"
SAMPLES_DIR = "park17_samples"
SAMPLE_FORMAT = 1  # bump when the cached sample layout or extraction changes

# The official solver.
CAFFE_BASE_LR, CAFFE_LR_GAMMA, CAFFE_LR_POWER, CAFFE_MOMENTUM = 1e-4, 1e-4, 2.0, 0.9


class Park17TrainingError(Park17Error):
    """Unusable training input or a run folder that holds a different run; the message says what to do."""


@keras.saving.register_keras_serializable(package="dmenet")
class CaffeInvDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Caffe's "inv" learning-rate policy: lr(step) = base_rate·(1 + gamma·step)^(−power).

    Example:
        >>> float(CaffeInvDecay()(10000))  # 1e-4 · 2^-2
        2.5e-05
    """

    def __init__(self, base_rate=CAFFE_BASE_LR, gamma=CAFFE_LR_GAMMA, power=CAFFE_LR_POWER):
        self.base_rate, self.gamma, self.power = float(base_rate), float(gamma), float(power)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        return self.base_rate * keras.ops.power(1.0 + self.gamma * step, -self.power)

    def get_config(self):
        return {"base_rate": self.base_rate, "gamma": self.gamma, "power": self.power}


def within_one_class(y_true, y_pred):
    """1 where the predicted class is at most one σ step (0.15 px) from the true one, else 0."""
    predicted = keras.ops.argmax(y_pred, axis=-1)
    truth = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), predicted.dtype)
    return keras.ops.cast(keras.ops.abs(predicted - truth) <= 1, "float32")


# A short run on a few photos: 10× the official base learning rate (same inv policy), because the
# official 1e-4 needs far more than a few thousand steps. Measured on 20 sharp photos (16 train, 4
# validation, 200 positions each, CPU): 3000 steps reach validation accuracy 0.28 (0.63 within one σ
# class); with lr 1e-4, 2000 steps reach 0.18. The official model scores 0.44 (0.86) on the same samples.
DEMO_SETTINGS = {"steps": 3000, "max_patches_per_image": 200, "checkpoint_every": 500, "validation_fraction": 0.2,
                 "learning_rate": CaffeInvDecay(base_rate=1e-3)}


# ---------------------------------------------------------------- samples


def training_blur_kernel(sigma, radius=DEFAULT_PARAMS.training_kernel_radius):
    """1-D factor of fspecial('gaussian', [2r+1, 2r+1], σ): the sampled Gaussian, normalised to sum 1.

    fspecial's 2-D kernel is the outer product of this, except that it zeroes entries below eps·max
    (corner values under 3e-17 of a kernel summing to 1: a difference below float64 rounding of the result).
    """
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return kernel / kernel.sum()


def blur_like_training(image, sigma, radius=DEFAULT_PARAMS.training_kernel_radius):
    """imfilter(image, fspecial('gaussian', [27 27], σ), 'replicate', 'same'), separably, in float64."""
    kernel = training_blur_kernel(sigma, radius)
    blurred = scipy.ndimage.correlate1d(np.asarray(image, np.float64), kernel, axis=0, mode="nearest")
    return scipy.ndimage.correlate1d(blurred, kernel, axis=1, mode="nearest")


def _cap_positions(positions, scales, max_positions, rng):
    """At most `max_positions` edge positions, split evenly over the scales, in their original order."""
    if max_positions is None or len(positions) <= max_positions:
        return positions, scales
    levels = np.unique(scales)
    keep = []
    for level in levels:
        members = np.flatnonzero(scales == level)
        quota = max_positions // len(levels)
        keep.append(members[rng.permutation(len(members))[:quota]] if len(members) > quota else members)
    keep = np.sort(np.concatenate(keep))
    return positions[keep], scales[keep]


def _empty_samples(params):
    width = 2 * params.cnn_patch_radius + 1
    samples = {name: np.zeros((0, params.feature_length), np.uint8) for name in FEATURE_INPUTS}
    samples[PATCH_INPUT] = np.zeros((0, width, width, 3), np.uint8)
    samples["label"] = np.zeros(0, np.uint8)
    return samples


def extract_training_samples(rgb, rng, params=DEFAULT_PARAMS, max_positions=None):
    """Training samples of one sharp photo, as DHDE_feature_extraction.m makes them (stored as uint8(255·x)).

    Args:
        rgb: H×W×3 sharp photo, floats in [0, 1].
        rng: numpy Generator (edge balancing and the cap on positions).
        params: Park17Params.
        max_positions: at most this many edge positions (half per scale); None keeps all.

    Returns:
        dict of uint8 arrays: "dct", "grd", "svd" (N×40), "patch" (N×27×27×3, natural orientation) and
        "label" (N, class k = σ_k); N = 11 × number of positions, one sample per position and σ class.

    Example:
        >>> samples = extract_training_samples(read_image("sharp.jpg"), np.random.default_rng(0), max_positions=200)
    """
    rgb = np.asarray(rgb, np.float64)
    positions, scales = patch_centres(balanced_training_edge_map(value_channel(rgb), rng, params))
    positions, scales = _cap_positions(positions, scales, max_positions, rng)
    if not len(positions):
        return _empty_samples(params)
    # One replicate padding by the largest radius serves both scales: blurring a replicate-padded image
    # with replicate borders equals blurring the image's infinite replicate extension, so the crops
    # equal the official per-scale padding (by r_s) followed by the blur.
    margin = max(params.patch_radii)
    padded = np.pad(rgb, ((margin, margin), (margin, margin), (0, 0)), mode="edge")
    shifted = positions + margin
    parts = []
    for k, sigma in enumerate(SIGMA_CLASSES):
        blurred = blur_like_training(padded, sigma, params.training_kernel_radius)
        gray = np.maximum(np.maximum(blurred[..., 0], blurred[..., 1]), blurred[..., 2])  # = value_channel, faster
        features = compute_features(blurred, gray, shifted, scales, params)
        part = {name: matlab_uint8(params.input_scale * getattr(features, name)) for name in FEATURE_INPUTS}
        part[PATCH_INPUT] = matlab_uint8(params.input_scale * features.patches.astype(np.float64))
        part["label"] = np.full(len(positions), k, np.uint8)
        parts.append(part)
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _image_rng(seed, path):
    """A generator per photo that does not depend on which other photos are in the folder."""
    return np.random.default_rng([seed, zlib.crc32(path.name.encode())])


def cached_image_samples(path, cache_dir, seed, max_positions, params=DEFAULT_PARAMS):
    """`extract_training_samples` of one photo, read from / written to `cache_dir` (atomically).

    The cache file is keyed by the photo's content (sha256), the seed, the cap and the parameters, so
    a changed photo or setting is extracted again.
    """
    path = pathlib.Path(path)
    key = json.dumps({"format": SAMPLE_FORMAT, "sha256": sha256_of(path), "seed": seed,
                      "max_positions": max_positions, "params": dataclasses.asdict(params)}, sort_keys=True)
    cache = pathlib.Path(cache_dir) / f"{path.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as stored:
                if str(stored["key"]) == key:
                    return {name: stored[name] for name in (*FEATURE_INPUTS, PATCH_INPUT, "label")}
        except (OSError, ValueError, KeyError, EOFError):
            pass  # a damaged cache file is simply extracted again
    try:
        rgb = read_image(path)
    except ImageReadError as error:
        raise Park17TrainingError(f"{error}; remove it from the training folder or replace it") from None
    samples = extract_training_samples(rgb, _image_rng(seed, path), params, max_positions)
    with atomic_path(cache) as temporary:
        with open(temporary, "wb") as f:
            np.savez(f, key=np.array(key), **samples)
    return samples


# ---------------------------------------------------------------- data pipeline


def split_images(paths, validation_fraction, seed):
    """(training photos, validation photos): whole photos are held out, chosen by `seed`."""
    paths = list(paths)
    if not 0 <= validation_fraction < 1:
        raise Park17TrainingError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    if validation_fraction == 0 or len(paths) < 2:
        return paths, []
    count = min(len(paths) - 1, max(1, round(validation_fraction * len(paths))))
    order = np.random.default_rng(seed).permutation(len(paths))
    validation = sorted(order[:count].tolist())
    return [p for i, p in enumerate(paths) if i not in validation], [paths[i] for i in validation]


def _concatenate_samples(sample_list, params):
    sample_list = [s for s in sample_list if len(s["label"])] or [_empty_samples(params)]
    return {name: np.concatenate([s[name] for s in sample_list]) for name in sample_list[0]}


def batch_indices(n_samples, batch_size, seed, step):
    """Sample indices of batch number `step`: passes over a fresh permutation each, in one long sequence.

    A pure function of (n, batch size, seed, step), so a resumed run sees exactly the batches that an
    uninterrupted run would have seen.
    """
    start = step * batch_size
    indices = []
    while len(indices) < batch_size:
        epoch, offset = divmod(start + len(indices), n_samples)
        order = np.random.default_rng([seed, epoch]).permutation(n_samples)
        indices.extend(order[offset:offset + batch_size - len(indices)].tolist())
    return np.asarray(indices)


def _to_network_input(batch):
    """uint8 samples → the float 0…255 inputs Caffe's HDF5 layer produced."""
    import tensorflow as tf

    inputs = {name: tf.cast(batch[name], tf.float32) for name in (*FEATURE_INPUTS, PATCH_INPUT)}
    return inputs, tf.cast(batch["label"], tf.int32)


def training_dataset(samples, batch_size, seed, first_step, n_steps):
    """tf.data batches number first_step … first_step + n_steps − 1 of the shuffled sample sequence."""
    import tensorflow as tf

    n = len(samples["label"])
    names = (*FEATURE_INPUTS, PATCH_INPUT, "label")

    def batches():
        for step in range(first_step, first_step + n_steps):
            chosen = batch_indices(n, batch_size, seed, step)
            yield {name: samples[name][chosen] for name in names}

    signature = {name: tf.TensorSpec((batch_size,) + samples[name].shape[1:], tf.uint8) for name in names}
    dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
    return dataset.map(_to_network_input).prefetch(2)


def validation_dataset(samples, batch_size):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(samples).batch(batch_size).map(_to_network_input)


# ---------------------------------------------------------------- training state


def _run_identity(train_paths, validation_paths, seed, max_positions, batch_size, weight_decay, schedule_config, params):
    """What must not change when a run is resumed (the number of steps may grow), as stored in JSON."""
    return json.loads(json.dumps({
        "train_images": [p.name for p in train_paths],
        "validation_images": [p.name for p in validation_paths],
        "seed": seed, "max_patches_per_image": max_positions, "batch_size": batch_size,
        "weight_decay": weight_decay, "learning_rate": schedule_config, "momentum": CAFFE_MOMENTUM,
        "params": dataclasses.asdict(params),
    }))


def _save_state(path, model, optimizer, step, identity, history):
    arrays = {f"model_{i}": np.asarray(v) for i, v in enumerate(model.variables)}
    arrays.update({f"optimizer_{i}": np.asarray(v) for i, v in enumerate(optimizer.variables)})
    meta = {"step": int(step), "identity": identity, "history": history}
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)


def _read_state(path):
    """The stored arrays and metadata of a training state file."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            return json.loads(str(stored["meta"])), {name: stored[name] for name in stored.files if name != "meta"}
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise Park17TrainingError(f"{path}: damaged training state ({error}); delete it to start the run again") from None


def _check_same_run(path, identity):
    """Refuse to resume a run whose settings differ (before any samples are extracted)."""
    meta, _ = _read_state(path)
    changed = sorted(key for key in identity if meta["identity"].get(key) != identity[key])
    if changed:
        raise Park17TrainingError(
            f"{path.parent} holds a Park'17 run with different settings ({', '.join(changed)}); "
            "use a new run folder, or the settings of that run to resume it"
        )


def _load_state(path, model, optimizer):
    """Restore weights, optimizer slots, step counter and dropout seeds; returns (step, history)."""
    meta, arrays = _read_state(path)
    model_values = [arrays.get(f"model_{i}") for i in range(len(model.variables))]
    optimizer_values = [arrays.get(f"optimizer_{i}") for i in range(len(optimizer.variables))]
    if any(value is None for value in model_values + optimizer_values):
        raise Park17TrainingError(f"{path}: training state of a different network; delete it to start the run again")
    for variable, value in zip(model.variables + optimizer.variables, model_values + optimizer_values):
        variable.assign(value)
    return meta["step"], meta["history"]


class Park17Checkpoint(keras.callbacks.Callback):
    """After each segment of steps (one Keras epoch): log, then write state and weights atomically."""

    def __init__(self, run_dir, classifier, identity, history, total_steps, verbose):
        super().__init__()
        self.run_dir, self.classifier, self.identity = pathlib.Path(run_dir), classifier, identity
        self.history, self.total_steps, self.verbose = history, total_steps, verbose
        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        from dmenet.weights.park17 import save_park17_classifier

        optimizer = self.model.optimizer
        step = int(optimizer.iterations.numpy())
        record = {"step": step, "learning_rate": float(optimizer.learning_rate.numpy()),
                  "seconds": round(time.monotonic() - self.started, 1)}
        record.update({key: float(value) for key, value in (logs or {}).items()})
        self.history.append(record)
        _save_state(self.run_dir / STATE_NAME, self.model, optimizer, step, self.identity, self.history)
        save_park17_classifier(self.classifier, self.run_dir / WEIGHTS_NAME,
                               {"source": "train_park17", "steps": step, "run": self.identity})
        with atomic_path(self.run_dir / HISTORY_NAME) as temporary:
            temporary.write_text(json.dumps(self.history, indent=1))
        if self.verbose:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in ("step", "seconds"))
            print(f"park17 step {step}/{self.total_steps}: {shown}", flush=True)


# ---------------------------------------------------------------- entry point


def train_park17(image_dir, run_dir, steps=20000, validation_fraction=0.1, seed=0, max_patches_per_image=500,
                 checkpoint_every=1000, batch_size=DEFAULT_PARAMS.batch_size, max_validation_samples=12800,
                 learning_rate=None, weight_decay=CAFFE_WEIGHT_DECAY, params=DEFAULT_PARAMS, verbose=1):
    """Train Park et al.'s classifier on sharp photos; resumes from `run_dir` when it holds the same run.

    Args:
        image_dir: folder of sharp photos (any format image_io reads); whole photos are held out for validation.
        run_dir: output folder: park17.weights.h5 (loadable by `load_park17_classifier`), the training
            state for resuming, park17_history.json and the per-photo sample cache.
        steps: total SGD steps (a resumed run continues up to this; raise it to train longer).
        validation_fraction: share of photos held out (at least one when there are two or more photos).
        seed: photo split, edge subsets, batch order, initial weights and dropout.
        max_patches_per_image: at most this many edge positions per photo (half per scale); each gives
            11 samples, one per σ class. None keeps every balanced edge, as the official code.
        checkpoint_every: steps between checkpoints, validations and log lines.
        batch_size: 128 as the official solver.
        max_validation_samples: validation uses a fixed random subset of at most this many samples.
        learning_rate: a Keras schedule/float; default Caffe's inv policy from 1e-4 (CaffeInvDecay()).
        weight_decay: Caffe's weight_decay (L2 on every weight and bias).
        params: Park17Params.
        verbose: 0 silent, 1 progress bars and a line per checkpoint.

    Returns:
        dict with "steps", "resumed_from", "weights" (path), "history" (one record per checkpoint with
        loss, accuracy, within_one (share predicted within one σ class), their val_ versions and
        learning_rate), photo and sample counts, "seconds".

    Raises:
        Park17TrainingError: no photos, no edges, an unreadable photo, or a run folder holding another run.

    Example:
        >>> summary = train_park17("photos/", "runs/park17", **DEMO_SETTINGS)
        >>> summary["history"][-1]["val_accuracy"]
    """
    started = time.monotonic()
    image_dir, run_dir = pathlib.Path(image_dir), pathlib.Path(run_dir)
    if not image_dir.is_dir():
        raise Park17TrainingError(f"{image_dir}: no such folder of training photos")
    paths = list_images(image_dir)
    if not paths:
        raise Park17TrainingError(f"{image_dir}: no photos (.jpg, .png, …) to train on")
    if steps < 1 or checkpoint_every < 1 or batch_size < 1:
        raise Park17TrainingError("steps, checkpoint_every and batch_size must be positive")
    train_paths, validation_paths = split_images(paths, validation_fraction, seed)
    schedule = learning_rate if learning_rate is not None else CaffeInvDecay()
    schedule_config = schedule.get_config() if hasattr(schedule, "get_config") else {"constant": float(schedule)}
    identity = _run_identity(train_paths, validation_paths, seed, max_patches_per_image, batch_size, weight_decay,
                             schedule_config, params)
    state_path = run_dir / STATE_NAME
    if state_path.is_file():
        _check_same_run(state_path, identity)

    def load(group, label):
        iterator = group
        if verbose:
            from tqdm import tqdm

            iterator = tqdm(group, desc=f"park17 samples ({label})", unit="photo")
        return _concatenate_samples(
            [cached_image_samples(p, run_dir / SAMPLES_DIR, seed, max_patches_per_image, params) for p in iterator], params)

    train_samples = load(train_paths, "training")
    if len(train_samples["label"]) < batch_size:
        raise Park17TrainingError(
            f"{image_dir}: only {len(train_samples['label'])} training samples from {len(train_paths)} photo(s); "
            f"need at least one batch of {batch_size}: add sharper or more textured photos")
    validation_samples = load(validation_paths, "validation") if validation_paths else None
    if validation_samples is not None:
        n_val = len(validation_samples["label"])
        if n_val == 0:
            validation_samples = None
        elif n_val > max_validation_samples:
            keep = np.sort(np.random.default_rng([seed, 1]).permutation(n_val)[:max_validation_samples])
            validation_samples = {name: value[keep] for name, value in validation_samples.items()}

    keras.utils.set_random_seed(seed)
    classifier = build_patch_classifier(params, weight_decay=weight_decay)
    trainer = logits_model(classifier)
    optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=CAFFE_MOMENTUM)
    trainer.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                             keras.metrics.MeanMetricWrapper(within_one_class, name="within_one")])
    optimizer.build(trainer.trainable_variables)

    step, history = _load_state(state_path, trainer, optimizer) if state_path.is_file() else (0, [])
    resumed_from = step
    callback = Park17Checkpoint(run_dir, classifier, identity, history, steps, verbose)
    validation = validation_dataset(validation_samples, batch_size) if validation_samples is not None else None
    # One Keras epoch = one checkpoint segment; Keras keeps the dataset iterator across epochs when
    # steps_per_epoch is given, so whole segments run in one fit() (traced once), a shorter last one in another.
    while step < steps:
        segment = min(checkpoint_every, steps - step)
        segments = (steps - step) // segment
        first_epoch = step // checkpoint_every
        trainer.fit(training_dataset(train_samples, batch_size, seed, step, segment * segments), steps_per_epoch=segment,
                    initial_epoch=first_epoch, epochs=first_epoch + segments, validation_data=validation,
                    callbacks=[callback], shuffle=False, verbose=verbose)
        step = int(optimizer.iterations.numpy())
    if not (run_dir / WEIGHTS_NAME).is_file():  # e.g. resumed a finished run whose weights were deleted
        from dmenet.weights.park17 import save_park17_classifier

        save_park17_classifier(classifier, run_dir / WEIGHTS_NAME, {"source": "train_park17", "steps": step, "run": identity})
    return {
        "steps": step, "resumed_from": resumed_from, "weights": str(run_dir / WEIGHTS_NAME), "history": history,
        "train_images": len(train_paths), "validation_images": len(validation_paths),
        "train_samples": int(len(train_samples["label"])),
        "validation_samples": 0 if validation_samples is None else int(len(validation_samples["label"])),
        "classes": NUM_CLASSES, "seconds": round(time.monotonic() - started, 1),
    }
