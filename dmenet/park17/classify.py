"""Classifying patches with Park et al.'s network, with the official input scaling (PARK17.md §5).

The official code feeds the network in batches of 128: full batches as MATLAB `uint8(255·x)`
(round half away from zero, saturating), the final partial batch as plain 255·x. Which rows are
cast depends only on their index in the whole patch sequence, so the network itself can run on
larger blocks (the forward pass has no interaction between rows).

`classify_patches` takes any feature chunks (training, tests); `classify_photo_patches` takes the photo
and patch centres and gives the same result several times faster by sharing conv1 between overlapping
patches (`shared_convolution`); the pipeline uses it.
"""
import concurrent.futures
import weakref

import numpy as np

from dmenet.park17.errors import Park17Error
from dmenet.park17.features import PatchFeatureExtractor
from dmenet.park17.features import matlab_uint8 as features_matlab_uint8
from dmenet.park17.network import FEATURE_INPUTS, PATCH_INPUT
from dmenet.park17.params import DEFAULT_PARAMS
from dmenet.park17.shared_convolution import SharedFirstLayers, compressed_crop_index

# Rows per forward call: large enough to keep the CPU busy, small enough that conv1's activations
# (rows × 25×25×25 float32) stay around 100 MB.
FORWARD_BLOCK = 1024

# Threads computing a chunk's hand-crafted features (the machine this is tuned for has 2 cores).
FEATURE_WORKERS = 2

_forward_functions = weakref.WeakKeyDictionary()


class Park17ClassifyError(Park17Error):
    """Features that do not fit the network (wrong shapes); the message says what was given."""


def matlab_uint8(values):
    """MATLAB's uint8() as the network's float32 input (``features.matlab_uint8``).

    Example:
        >>> matlab_uint8(np.array([-3.0, 0.5, 1.5, 2.4999, 254.5, 300.0, np.nan])).tolist()
        [0.0, 1.0, 2.0, 2.0, 255.0, 255.0, 0.0]
    """
    return features_matlab_uint8(values).astype(np.float32)


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


# Largest padded-photo region whose conv1 maps are held at once (4 maps × 25 float32 channels ≈ 100 MB
# per million pixels): bounds memory on 24-megapixel photos.
SHARED_TILE_PIXELS = 1 << 18
# A region is convolved as a whole only if its patches would convolve at least this many times as many
# conv1 positions on their own (else its few patches go through the per-patch network).
SHARED_MIN_GAIN = 1.0


def _photo_u8_padded(rgb, radius):
    """uint8(255·x) of the float32 photo (what the per-patch path casts), replicate-padded by `radius`."""
    rgb = np.asarray(rgb)
    quantised = np.empty(rgb.shape, np.uint8)
    for top in range(0, rgb.shape[0], 256):  # row blocks: no float64 copy of a 24-megapixel photo
        block = rgb[top:top + 256].astype(np.float32).astype(np.float64)
        quantised[top:top + 256] = matlab_uint8(255.0 * block)
    return np.pad(quantised, ((radius, radius), (radius, radius), (0, 0)), mode="edge")


def _network_features(chunk, rows, cast, scale):
    """N×3×40 float32 DCT/GRD/SVD inputs of chunk rows `rows`, cast like `classify_patches`."""
    values = np.stack([getattr(chunk, name)[rows] for name in FEATURE_INPUTS], axis=1).astype(np.float64)
    return matlab_uint8(scale * values) if cast else (scale * values).astype(np.float32)


def _shared_tiles(origins, patch_width):
    """Split patch origins (row, col) into regions of at most SHARED_TILE_PIXELS padded pixels.

    Yields (members, top, left, bottom, right): indices into `origins` and the region's bounds.
    """
    order = np.argsort(origins[:, 0], kind="stable")
    left, right = int(origins[:, 1].min()), int(origins[:, 1].max()) + patch_width
    band = max(1, SHARED_TILE_PIXELS // (right - left) - patch_width + 1)
    sorted_rows = origins[order, 0]
    start = 0
    while start < len(order):
        stop = int(np.searchsorted(sorted_rows, sorted_rows[start] + band, side="left"))
        members = order[start:stop]
        top = int(sorted_rows[start])
        bottom = int(sorted_rows[stop - 1]) + patch_width
        columns = origins[members, 1]
        yield members, top, int(columns.min()), bottom, int(columns.max()) + patch_width
        start = stop


def classify_photo_patches(model, rgb, gray, positions, scales, params=DEFAULT_PARAMS, chunk_size=8192):
    """`classify_patches(model, iter_feature_chunks(rgb, gray, positions, scales))`, faster.

    Computes the hand-crafted features as `iter_feature_chunks` does, but shares conv1 and pool1
    between overlapping patches (see `shared_convolution`): scale-1 patches use conv1 maps of whole
    photo regions, scale-2 patches a 19×19 instead of a 27×27 convolution. Rows of the final
    partial batch (fed unrounded, PARK17.md §5) and patches in sparse regions take the per-patch path.
    Labels equal `classify_patches`'s; probabilities agree to float32 rounding (≈1e-6).

    Args:
        model: the classifier (`build_patch_classifier` / `load_park17_classifier`).
        rgb: H×W×3 float photo in [0, 1].
        gray: H×W V channel of `rgb`.
        positions: N×2 int (row, col) patch centres in the official order (`patch_centres`).
        scales: N ints in {1, 2}.
        params: Park17Params (patch radii, batch size, input scale).
        chunk_size: patches per feature chunk (bounds memory).

    Returns:
        (labels uint8 N, confidence float32 N, probabilities float32 N×11), as `classify_patches`.

    Example:
        >>> labels, confidence, prob = classify_photo_patches(model, rgb, rgb.max(axis=2), positions, scales)
    """
    if chunk_size < 1:
        raise Park17ClassifyError(f"chunk_size must be ≥ 1, got {chunk_size}")
    extractor = PatchFeatureExtractor(rgb, gray, params)
    positions, scales = extractor.check_positions(positions, scales)
    n_classes = int(model.output_shape[-1])
    n = len(positions)
    if n == 0:
        return np.zeros(0, np.uint8), np.zeros(0, np.float32), np.zeros((0, n_classes), np.float32)
    batch_size, scale = params.batch_size, params.input_scale
    n_cast = n // batch_size * batch_size  # rows of complete batches: fed as uint8(255·x)
    radius = params.cnn_patch_radius
    width = 2 * radius + 1
    shared = SharedFirstLayers.for_model(model)
    forward = _forward_function(model)
    probabilities = np.empty((n, n_classes), np.float32)

    def per_patch(chunk, rows, cast, start):
        import tensorflow as tf

        for first in range(0, len(rows), FORWARD_BLOCK):
            block = rows[first:first + FORWARD_BLOCK]
            inputs = {name: getattr(chunk, name)[block] for name in FEATURE_INPUTS}
            inputs[PATCH_INPUT] = extractor.cnn_patches(positions[start + block], scales[start + block])
            _check_shapes(inputs, model)
            for name, value in inputs.items():
                value = scale * value.astype(np.float64)
                inputs[name] = tf.constant(matlab_uint8(value) if cast else value.astype(np.float32))
            probabilities[start + block] = np.asarray(forward(inputs), np.float32)

    def features(start):
        # The CNN patches are cropped only for the rows that take the per-patch path (few).
        return extractor.features(positions[start:start + chunk_size], scales[start:start + chunk_size],
                                  cnn_patches=False, rounded=False, pool=batch_pool)

    padded = _photo_u8_padded(rgb, radius)
    starts = range(0, n, chunk_size)
    # Each chunk's batches of features are spread over two threads, one chunk ahead of the network.
    with concurrent.futures.ThreadPoolExecutor(max_workers=FEATURE_WORKERS) as batch_pool:
        for start, chunk in zip(starts, _computed_ahead(features, starts)):
            shapes = {name: getattr(chunk, name) for name in FEATURE_INPUTS}
            shapes[PATCH_INPUT] = np.empty((0, width, width, 3))
            _check_shapes(shapes, model)
            rows = np.arange(len(chunk))
            where = positions[start:start + len(chunk)].astype(np.int64)
            kinds = scales[start:start + len(chunk)]
            cast = start + rows < n_cast
            per_patch(chunk, rows[~cast], False, start)
            leftover = [rows[cast & ~np.isin(kinds, (1, 2))]]
            for s, patch_radius in enumerate(params.patch_radii, start=1):
                members = rows[cast & (kinds == s)]
                if not len(members):
                    continue
                inset = radius - patch_radius
                if inset == 0:
                    leftover.append(_classify_shared(shared, chunk, members, where[members], padded, width,
                                                     probabilities[start:], scale))
                elif inset >= 2:
                    _classify_compressed(shared, chunk, members, where[members], padded, 2 * patch_radius + 1,
                                         inset, probabilities[start:], scale)
                else:
                    leftover.append(members)
            per_patch(chunk, np.sort(np.concatenate(leftover)), True, start)
    labels = np.argmax(probabilities, axis=1).astype(np.uint8)
    confidence = probabilities[np.arange(n), labels]
    return labels, confidence, probabilities


def _computed_ahead(function, items):
    """function(item) for each item, in order, the next one computed in a thread while the caller uses this one.

    The features (NumPy/LAPACK) and the network (TensorFlow) both release the GIL, so the next chunk's
    features overlap the classification of this one on a second core.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        upcoming = pool.submit(function, items[0]) if len(items) else None
        for index in range(len(items)):
            result = upcoming.result()
            if index + 1 < len(items):
                upcoming = pool.submit(function, items[index + 1])
            yield result


def _classify_shared(shared, chunk, members, origins, padded, width, out, scale):
    """Scale-1 rows through region-wide conv1 maps; returns the rows left for the per-patch path."""
    import tensorflow as tf

    leftover = []
    for tile_members, top, left, bottom, right in _shared_tiles(origins, width):
        rows = members[tile_members]
        conv_positions = (width - 2) ** 2 * len(rows)
        if conv_positions < SHARED_MIN_GAIN * (bottom - top) * (right - left):
            leftover.append(rows)
            continue
        tile = padded[top:bottom, left:right].astype(np.float32)
        local = (origins[tile_members] - [top, left]).astype(np.int32)
        features = _network_features(chunk, rows, True, scale)
        out[rows] = np.asarray(shared.scale1(tf.constant(tile), tf.constant(local), tf.constant(features)))
    return np.concatenate(leftover) if leftover else np.zeros(0, np.int64)


def _classify_compressed(shared, chunk, members, centres, padded, crop_width, inset, out, scale):
    """Smaller-scale rows through conv1 on compressed crops (see `compressed_crop_index`)."""
    crop_rows, expand = compressed_crop_index(crop_width, inset)
    for first in range(0, len(members), FORWARD_BLOCK):
        block = slice(first, first + FORWARD_BLOCK)
        rows = members[block]
        # Crop of centre (y, x): padded rows y + inset … y + inset + crop_width − 1.
        r = centres[block, 0, None] + inset + crop_rows[None, :]
        c = centres[block, 1, None] + inset + crop_rows[None, :]
        crops = padded[r[:, :, None], c[:, None, :]].astype(np.float32)
        features = _network_features(chunk, rows, True, scale)
        out[rows] = shared.compressed(crops, expand, features)
