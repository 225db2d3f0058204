"""Classifying patches with Park et al.'s network, with the official input scaling (PARK17.md §5).

The official code feeds the network in batches of 128: full batches as MATLAB `uint8(255·x)`
(round half away from zero, saturating), the final partial batch as plain 255·x. Which rows are
cast depends only on their index in the whole patch sequence, so the network itself can run on
larger blocks (the forward pass has no interaction between rows).
"""
import weakref

import numpy as np

from dmenet.park17.network import FEATURE_INPUTS, PATCH_INPUT
from dmenet.park17.params import DEFAULT_PARAMS

# Rows per forward call: large enough to keep the CPU busy, small enough that conv1's activations
# (rows × 25×25×25 float32) stay around 100 MB.
FORWARD_BLOCK = 1024

_forward_functions = weakref.WeakKeyDictionary()


class Park17ClassifyError(ValueError):
    """Features that do not fit the network (wrong shapes); the message says what was given."""


def matlab_uint8(values):
    """MATLAB's uint8(): round half away from zero, saturate to 0…255, NaN → 0 (as float32).

    Example:
        >>> matlab_uint8(np.array([-3.0, 0.5, 1.5, 2.4999, 254.5, 300.0, np.nan])).tolist()
        [0.0, 1.0, 2.0, 2.0, 255.0, 255.0, 0.0]
    """
    values = np.nan_to_num(np.asarray(values, np.float64), nan=0.0)
    # For v ≥ 0 floor(v + 0.5) is rounding half away from zero; negative values saturate to 0 anyway.
    return np.clip(np.floor(values + 0.5), 0.0, 255.0).astype(np.float32)


def _forward_function(model):
    """model(inputs, training=False) compiled once per model for any number of rows."""
    function = _forward_functions.get(model)
    if function is None:
        import tensorflow as tf

        feature_length = int(model.get_layer(FEATURE_INPUTS[0]).output.shape[-1])
        patch_shape = tuple(model.get_layer(PATCH_INPUT).output.shape[1:])
        signature = {name: tf.TensorSpec((None, feature_length), tf.float32) for name in FEATURE_INPUTS}
        signature[PATCH_INPUT] = tf.TensorSpec((None,) + patch_shape, tf.float32)
        function = tf.function(lambda inputs: model(inputs, training=False), input_signature=[signature])
        _forward_functions[model] = function
    return function


def _chunk_arrays(chunk):
    """{dct, grd, svd, patch} float arrays of one PatchFeatures chunk (or a dict with those keys)."""
    if isinstance(chunk, dict):
        arrays = {name: chunk[name] for name in FEATURE_INPUTS}
        arrays[PATCH_INPUT] = chunk.get(PATCH_INPUT, chunk.get("patches"))
    else:
        arrays = {name: getattr(chunk, name) for name in FEATURE_INPUTS}
        arrays[PATCH_INPUT] = chunk.patches
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    rows = {name: len(value) for name, value in arrays.items()}
    if len(set(rows.values())) != 1:
        raise Park17ClassifyError(f"feature chunk with different row counts per input: {rows}")
    return arrays


def _check_shapes(arrays, model):
    expected = {name: tuple(model.get_layer(name).output.shape[1:]) for name in FEATURE_INPUTS + (PATCH_INPUT,)}
    wrong = [f"{name} {arrays[name].shape[1:]} (expected {shape})" for name, shape in expected.items()
             if tuple(arrays[name].shape[1:]) != shape]
    if wrong:
        raise Park17ClassifyError("features do not fit the Park'17 network: " + ", ".join(wrong))


def _take(arrays, start, stop):
    return {name: value[start:stop] for name, value in arrays.items()}


def _concatenate(parts):
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


class _Classifier:
    """Accumulates network outputs; rows arrive in sequence order, each block cast or not as a whole."""

    def __init__(self, model, scale):
        self.forward = _forward_function(model)
        self.scale = scale
        self.probabilities = []

    def run(self, arrays, cast):
        import tensorflow as tf

        for start in range(0, len(arrays[PATCH_INPUT]), FORWARD_BLOCK):
            block = _take(arrays, start, start + FORWARD_BLOCK)
            if cast:
                inputs = {name: matlab_uint8(self.scale * value.astype(np.float64)) for name, value in block.items()}
            else:
                inputs = {name: (self.scale * value.astype(np.float64)).astype(np.float32) for name, value in block.items()}
            output = self.forward({name: tf.constant(value) for name, value in inputs.items()})
            self.probabilities.append(np.asarray(output, np.float32))


def classify_patches(model, feature_chunks, batch_size=128, input_scale=DEFAULT_PARAMS.input_scale):
    """Blur class of every patch, as the official DHDE_defocus_estimation.m computes it.

    Rows are numbered over the whole sequence of chunks; rows in complete batches of `batch_size`
    are fed as uint8(input_scale·x), the rows of the final incomplete batch as input_scale·x.

    Args:
        model: the classifier from `build_patch_classifier` / `load_park17_classifier`.
        feature_chunks: an iterable of `features.PatchFeatures` (values in [0, 1], natural patch
            orientation), e.g. `features.iter_feature_chunks(...)`; a single PatchFeatures works too.
        batch_size: the official batch size (128) that decides which rows are cast.
        input_scale: 255 (the training DB's scale).

    Returns:
        (labels uint8 N in 0…10, confidence float32 N = max probability, probabilities float32 N×11);
        label = first index of the maximum.

    Example:
        >>> chunks = features.iter_feature_chunks(rgb, gray, positions, scales)
        >>> labels, confidence, prob = classify_patches(model, chunks)
    """
    if batch_size < 1:
        raise Park17ClassifyError(f"batch_size must be ≥ 1, got {batch_size}")
    if hasattr(feature_chunks, "patches") or isinstance(feature_chunks, dict):
        feature_chunks = [feature_chunks]
    classifier = _Classifier(model, input_scale)
    pending = None  # rows (< batch_size) not yet known to be part of a full batch
    for chunk in feature_chunks:
        arrays = _chunk_arrays(chunk)
        _check_shapes(arrays, model)
        rows = len(arrays[PATCH_INPUT])
        start = 0
        if pending is not None:
            start = min(batch_size - len(pending[PATCH_INPUT]), rows)
            pending = _concatenate([pending, _take(arrays, 0, start)])
            if len(pending[PATCH_INPUT]) < batch_size:
                continue
            classifier.run(pending, cast=True)
            pending = None
        full_end = start + (rows - start) // batch_size * batch_size
        if full_end > start:
            classifier.run(_take(arrays, start, full_end), cast=True)
        if full_end < rows:
            pending = {name: value[full_end:].copy() for name, value in arrays.items()}
    if pending is not None:
        classifier.run(pending, cast=False)
    if not classifier.probabilities:
        n_classes = int(model.output_shape[-1])
        return np.zeros(0, np.uint8), np.zeros(0, np.float32), np.zeros((0, n_classes), np.float32)
    probabilities = np.concatenate(classifier.probabilities)
    labels = np.argmax(probabilities, axis=1).astype(np.uint8)
    confidence = probabilities[np.arange(len(labels)), labels]
    return labels, confidence, probabilities
