"""Park'17 classifier: Caffe reader, network and weight mapping, classification batching, weight files."""
import json
import struct

import numpy as np
import pytest

from dmenet.park17.classify import Park17ClassifyError, classify_patches, matlab_uint8
from dmenet.park17.features import PatchFeatures
from dmenet.park17.network import build_patch_classifier, logits_model, set_caffe_weights
from dmenet.park17.params import NUM_CLASSES
from dmenet.weights import park17 as park17_weights
from dmenet.weights.caffemodel import (
    PARK17_BLOB_SHAPES,
    CaffeModelError,
    read_caffemodel,
    read_caffemodel_layers,
    read_park17_blobs,
)
from dmenet.weights.pretrained import WeightsMismatchError, WeightsUnavailableError

# ---------------------------------------------------------------- a minimal protobuf writer for test files


def _varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _key(number, wire):
    return _varint(number << 3 | wire)


def _bytes_field(number, payload):
    return _key(number, 2) + _varint(len(payload)) + payload


def _varint_field(number, value):
    return _key(number, 0) + _varint(value)


def _blob_new(array):
    """BlobProto with a packed BlobShape and packed float data."""
    shape = _bytes_field(1, b"".join(_varint(d) for d in array.shape))
    return _bytes_field(7, shape) + _bytes_field(5, np.asarray(array, "<f4").tobytes())


def _blob_legacy(array, doubles=False):
    """BlobProto with num/channels/height/width and unpacked floats (or packed doubles)."""
    dims = (1,) * (4 - array.ndim) + array.shape
    out = b"".join(_varint_field(n, d) for n, d in zip((1, 2, 3, 4), dims))
    if doubles:
        return out + _bytes_field(8, np.asarray(array, "<f8").tobytes())
    return out + b"".join(_key(5, 5) + struct.pack("<f", v) for v in np.ravel(array))


def _layer_new(name, type_name, blobs):
    body = _bytes_field(1, name.encode()) + _bytes_field(2, type_name.encode())
    body += _bytes_field(3, b"bottom") + _varint_field(10, 1)  # fields the reader must skip
    return _bytes_field(100, body + b"".join(_bytes_field(7, blob) for blob in blobs))


def _layer_v1(name, type_enum, blobs):
    body = _bytes_field(4, name.encode()) + _varint_field(5, type_enum)
    return _bytes_field(2, body + b"".join(_bytes_field(6, blob) for blob in blobs))


def _random_park17_blobs(seed=0):
    rng = np.random.default_rng(seed)
    blobs = {name: tuple(rng.normal(0, 0.1, shape).astype(np.float32) for shape in shapes)
             for name, shapes in PARK17_BLOB_SHAPES.items()}
    blobs["fc1"] = (blobs["fc1"][0], np.zeros(300, np.float32))
    return blobs


# ---------------------------------------------------------------- caffemodel reader


def test_reader_new_style_layers(tmp_path):
    weights = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    bias = np.array([0.5, -1.5], np.float32)
    data = _bytes_field(1, b"net") + _layer_new("data", "HDF5Data", []) + _layer_new("conv", "Convolution", [_blob_new(weights), _blob_new(bias)])
    path = tmp_path / "new.caffemodel"
    path.write_bytes(data)
    blobs = read_caffemodel(path)
    assert list(blobs) == ["data", "conv"]
    assert blobs["data"] == []
    np.testing.assert_array_equal(blobs["conv"][0], weights)
    np.testing.assert_array_equal(blobs["conv"][1], bias)
    assert [layer.type for layer in read_caffemodel_layers(path)] == ["HDF5Data", "Convolution"]


def test_reader_v1_layers_legacy_dims_unpacked_and_double_data(tmp_path):
    """Old-style `layers` = 2: name = 4, enum type = 5, blobs = 6; legacy 4-D dims fit (out, in) and (out,)."""
    expected = {"fc": ((3, 4), (3,))}
    weights = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    bias = np.array([1.0, 2.0, 3.0])
    path = tmp_path / "v1.caffemodel"
    path.write_bytes(_layer_v1("fc", 14, [_blob_legacy(weights), _blob_legacy(bias, doubles=True)]))
    layers = read_caffemodel_layers(path)
    assert (layers[0].name, layers[0].type) == ("fc", "InnerProduct")
    assert layers[0].blobs[0].shape == (1, 1, 3, 4)
    fitted = read_park17_blobs(path, expected)
    np.testing.assert_array_equal(fitted["fc"][0], weights)
    np.testing.assert_array_equal(fitted["fc"][1], bias.astype(np.float32))


def test_reader_blob_with_unpacked_dims(tmp_path):
    shape = _varint_field(1, 2) + _varint_field(1, 3)
    blob = _bytes_field(7, shape) + _bytes_field(5, np.ones(6, "<f4").tobytes())
    path = tmp_path / "dims.caffemodel"
    path.write_bytes(_layer_new("x", "InnerProduct", [blob]))
    assert read_caffemodel(path)["x"][0].shape == (2, 3)


def test_reader_reports_every_problem_at_once(tmp_path):
    blobs = _random_park17_blobs()
    data = b"".join(_layer_new(name, "Convolution" if name.startswith("conv") else "InnerProduct", [_blob_new(w), _blob_new(b)])
                    for name, (w, b) in blobs.items() if name not in ("conv3", "fc2"))
    data += _layer_new("fc2", "InnerProduct", [_blob_new(np.zeros((150, 299), np.float32)), _blob_new(blobs["fc2"][1])])
    path = tmp_path / "wrong.caffemodel"
    path.write_bytes(data)
    with pytest.raises(CaffeModelError) as error:
        read_park17_blobs(path)
    message = str(error.value)
    assert str(path) in message and "conv3: missing" in message and "fc2 weights: shape (150, 299), expected (150, 300)" in message


def test_reader_blob_size_disagreeing_with_shape(tmp_path):
    blob = _bytes_field(7, _bytes_field(1, _varint(2) + _varint(3))) + _bytes_field(5, np.ones(5, "<f4").tobytes())
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(_layer_new("conv1", "Convolution", [blob]))
    with pytest.raises(CaffeModelError, match="shape \\(2, 3\\) but holds 5 values"):
        read_caffemodel(path)


def test_official_caffemodel_blobs(shared_data):
    path = shared_data / "park17" / "DHDE_model.caffemodel"
    layers = read_caffemodel_layers(path)
    assert len(layers) == 28 and layers[0].name == "dbDCT" and layers[-1].name == "loss"
    blobs = read_park17_blobs(path)
    assert sum(w.size + b.size for w, b in blobs.values()) == 126436
    assert not np.any(blobs["fc1"][1])


def test_truncated_and_foreign_files_give_one_clear_error(shared_data, tmp_path):
    data = (shared_data / "park17" / "DHDE_model.caffemodel").read_bytes()
    truncated = tmp_path / "truncated.caffemodel"
    truncated.write_bytes(data[:300_000])
    with pytest.raises(CaffeModelError) as error:
        read_park17_blobs(truncated)
    message = str(error.value)
    assert str(truncated) in message and "truncated" in message
    assert all(f"{name}: missing" in message for name in ("fc1", "fc2", "fc3"))
    assert "conv1" not in message  # read before the damage
    with pytest.raises(CaffeModelError, match="truncated"):
        read_caffemodel(truncated)

    jpeg = tmp_path / "photo.caffemodel"
    jpeg.write_bytes((shared_data / "park17" / "sample_0001.jpg").read_bytes())
    with pytest.raises(CaffeModelError) as error:
        read_park17_blobs(jpeg)
    message = str(error.value)  # what the file is and what to pass, in one line, no protobuf details
    assert "not a Caffe model (it looks like a JPEG image)" in message and "DHDE_model.caffemodel" in message
    assert "\n" not in message and "wire type" not in message
    unknown = tmp_path / "notes.caffemodel"
    unknown.write_text("neither protobuf nor an image")
    with pytest.raises(CaffeModelError, match="is not a Caffe model;"):
        read_park17_blobs(unknown)
    with pytest.raises(WeightsUnavailableError, match="no such file"):
        read_park17_blobs(tmp_path / "absent.caffemodel")


# ---------------------------------------------------------------- network and the Caffe mapping


def _caffe_forward(blobs, dct, grd, svd, patch_natural):
    """Caffe's forward in NumPy: NCHW with the patch TRANSPOSED, cross-correlation, ceil-mode pooling."""
    x = patch_natural.transpose(0, 3, 2, 1).astype(np.float64)  # blob[n, c, h, w] = patch[row=w, col=h, c]

    def conv(x, weights, bias):
        out_c, _, kh, kw = weights.shape
        h, w = x.shape[2] - kh + 1, x.shape[3] - kw + 1
        out = np.zeros((x.shape[0], out_c, h, w))
        for i in range(kh):
            for j in range(kw):
                out += np.einsum("nchw,oc->nohw", x[:, :, i:i + h, j:j + w], weights[:, :, i, j])
        return np.maximum(out + bias[None, :, None, None], 0)

    def pool(x):
        h, w = -(-(x.shape[2] - 3) // 3) + 1, -(-(x.shape[3] - 3) // 3) + 1
        out = np.empty(x.shape[:2] + (h, w))
        for i in range(h):
            for j in range(w):
                out[:, :, i, j] = x[:, :, 3 * i:3 * i + 3, 3 * j:3 * j + 3].max(axis=(2, 3))
        return out

    x = pool(conv(x, *blobs["conv1"]))
    x = pool(conv(x, *blobs["conv2"]))
    x = conv(conv(x, *blobs["conv3"]), *blobs["conv4"]).reshape(len(x), -1)
    x = np.concatenate([dct, grd, svd, x], axis=1)
    for name in ("fc1", "fc2", "fc3"):
        weights, bias = blobs[name]
        x = np.maximum(x @ weights.T.astype(np.float64) + bias, 0)
    return x, _softmax(x)


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_architecture_shapes_and_parameter_count():
    model = build_patch_classifier()
    assert model.get_layer("pool1").output.shape[1:] == (9, 9, 25)  # Caffe ceil mode: 25 → 9
    assert model.get_layer("pool2").output.shape[1:] == (3, 3, 50)  # 7 → 3
    assert model.get_layer("concat").output.shape[-1] == 145
    assert model.output_shape == (None, NUM_CLASSES)
    assert model.count_params() == 126436 - 300  # fc1's (zero) bias is not a parameter
    assert not model.get_layer("fc1").use_bias


def test_keras_forward_equals_caffe_forward_of_transposed_patches():
    """Asymmetric random kernels: a wrong kh/kw mapping or pooling alignment would show here."""
    blobs = _random_park17_blobs(seed=1)
    model = set_caffe_weights(build_patch_classifier(), blobs)
    rng = np.random.default_rng(2)
    dct, grd, svd = (rng.uniform(0, 2, (6, 40)).astype(np.float32) for _ in range(3))
    patches = rng.uniform(0, 2, (6, 27, 27, 3)).astype(np.float32)
    inputs = {"dct": dct, "grd": grd, "svd": svd, "patch": patches}
    ours = np.asarray(model(inputs, training=False))
    logits = np.asarray(logits_model(model)(inputs, training=False))
    caffe_logits, caffe_prob = _caffe_forward(blobs, dct, grd, svd, patches)
    assert caffe_logits.std() > 0.1  # informative scores, not all zero
    np.testing.assert_allclose(logits, caffe_logits, rtol=1e-4, atol=1e-4 * np.abs(caffe_logits).max())
    np.testing.assert_allclose(ours, caffe_prob, atol=2e-5)
    np.testing.assert_allclose(_softmax(logits), ours, atol=1e-6)
    transposed = np.asarray(logits_model(model)({**inputs, "patch": patches.transpose(0, 2, 1, 3)}, training=False))
    assert np.abs(transposed - caffe_logits).max() > 1e-2 * np.abs(caffe_logits).max()  # orientation matters


def test_fc1_bias_must_be_zero():
    blobs = _random_park17_blobs()
    blobs["fc1"] = (blobs["fc1"][0], np.ones(300, np.float32))
    with pytest.raises(CaffeModelError, match="fc1 has a non-zero bias"):
        set_caffe_weights(build_patch_classifier(), blobs)


def test_training_build_has_caffe_weight_decay():
    model = build_patch_classifier(weight_decay=0.01)
    model({"dct": np.zeros((1, 40)), "grd": np.zeros((1, 40)), "svd": np.zeros((1, 40)), "patch": np.zeros((1, 27, 27, 3))})
    total = sum(float(np.sum(np.square(w))) for w in model.trainable_weights)
    np.testing.assert_allclose(float(sum(model.losses)), 0.005 * total, rtol=1e-4)


# ---------------------------------------------------------------- classification


def test_matlab_uint8_rounds_half_away_and_saturates():
    values = np.array([-0.7, 0.49999, 0.5, 1.5, 2.5, 254.5, 255.4, 1e9, np.nan, -np.inf, np.inf])
    np.testing.assert_array_equal(matlab_uint8(values), [0, 0, 1, 2, 3, 255, 255, 255, 0, 0, 255])


def _random_features(n, seed):
    rng = np.random.default_rng(seed)
    return PatchFeatures(*(rng.random((n, 40), dtype=np.float32) / 3 for _ in range(3)),
                         patches=rng.random((n, 27, 27, 3), dtype=np.float32))


def _slice(features, start, stop):
    return PatchFeatures(features.dct[start:stop], features.grd[start:stop], features.svd[start:stop], features.patches[start:stop])


def test_batches_are_counted_over_the_whole_sequence():
    """300 rows = 2 full batches (cast) + 44 rows (not cast), whatever the chunking."""
    model = set_caffe_weights(build_patch_classifier(), _random_park17_blobs(seed=3))
    features = _random_features(300, seed=4)
    bounds = [0, 50, 150, 157, 300]
    chunks = [_slice(features, a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    labels, confidence, prob = classify_patches(model, iter(chunks))

    def inputs(start, stop, cast):
        scale = matlab_uint8 if cast else (lambda v: v.astype(np.float32))
        part = _slice(features, start, stop)
        return {"dct": scale(255.0 * part.dct), "grd": scale(255.0 * part.grd), "svd": scale(255.0 * part.svd),
                "patch": scale(255.0 * part.patches.astype(np.float64))}

    expected = np.concatenate([np.asarray(model(inputs(0, 256, True), training=False)),
                               np.asarray(model(inputs(256, 300, False), training=False))])
    np.testing.assert_allclose(prob, expected, atol=1e-6)
    uncast_everywhere = np.asarray(model(inputs(0, 256, False), training=False))
    assert np.abs(uncast_everywhere - expected[:256]).max() > 1e-4  # the cast matters for these inputs
    np.testing.assert_array_equal(labels, np.argmax(prob, axis=1))
    np.testing.assert_array_equal(confidence, prob.max(axis=1))
    assert labels.dtype == np.uint8 and prob.dtype == np.float32

    whole = classify_patches(model, features)[2]
    np.testing.assert_allclose(whole, prob, atol=1e-6)


def test_classify_empty_and_wrong_shapes():
    model = build_patch_classifier()
    labels, confidence, prob = classify_patches(model, [])
    assert labels.shape == (0,) and prob.shape == (0, NUM_CLASSES)
    bad = PatchFeatures(np.zeros((2, 39), np.float32), np.zeros((2, 40), np.float32), np.zeros((2, 40), np.float32),
                        np.zeros((2, 27, 27, 3), np.float32))
    with pytest.raises(Park17ClassifyError, match="dct"):
        classify_patches(model, [bad])


def _reference_crops(image, positions, n_scale1):
    """§3: scale 1 = 27×27 crop of the replicate-padded image; scale 2 = 15×15 crop replicate-padded by 6."""
    padded = np.pad(image, ((13, 13), (13, 13), (0, 0)), mode="edge")
    rows, cols = positions[:, 0], positions[:, 1]
    offsets = np.where(np.arange(len(positions))[:, None] < n_scale1, np.arange(27)[None, :],
                       np.clip(np.arange(-13, 14), -7, 7)[None, :] + 13)
    return padded[(rows[:, None] + offsets)[:, :, None], (cols[:, None] + offsets)[:, None, :]]


def test_official_weights_reproduce_reference_probabilities(shared_data):
    """Full batches from the uint8 network inputs, the last partial batch from the unquantised features.

    A subset of the 30 388 patches keeps the test short: 20 full batches of scale-1, 20 that span
    the scale-1/scale-2 boundary, the last full batch and the 52-row partial batch, in that order,
    so each row keeps its role (cast or not) of the official run.
    """
    reference = np.load(shared_data / "park17_reference" / "sample_0001.npz")
    model = load_official(shared_data)
    positions = reference["pos"].astype(np.int64)
    n, n_scale1 = len(positions), int(reference["nEdges"][0])
    crops = _reference_crops(reference["image_rgb_u8"], positions, n_scale1)
    subset = reference["fIMG_subset_idx"]
    np.testing.assert_array_equal(crops[subset], reference["fIMG_subset_u8"])

    full_end = n // 128 * 128
    rows = np.concatenate([np.arange(0, 2560), np.arange(n_scale1 - 1280, n_scale1 + 1280),
                           np.arange(full_end - 128, full_end), np.arange(full_end, n)])
    cast = rows < full_end

    def feature(name):
        quantised = reference[f"net_in_{name}_u8"][rows] / np.float32(255)
        return np.where(cast[:, None], quantised, reference[f"f{name.upper()}"][rows]).astype(np.float32)

    features = PatchFeatures(feature("dct"), feature("grd"), feature("svd"), (crops[rows] / np.float32(255)).astype(np.float32))
    chunks = [_slice(features, start, start + 1000) for start in range(0, len(rows), 1000)]
    labels, confidence, prob = classify_patches(model, chunks)
    expected = reference["prob"][rows]
    assert np.abs(prob[cast] - expected[cast]).max() < 1e-5
    assert np.abs(prob[~cast] - expected[~cast]).max() < 1e-5
    assert np.mean(labels == reference["label"][rows]) >= 0.999
    np.testing.assert_allclose(confidence, reference["confidence"][rows], atol=1e-5)


def load_official(shared_data):
    return park17_weights.load_park17_classifier(shared_data / "park17" / "DHDE_model.caffemodel")


# ---------------------------------------------------------------- weight files


def test_convert_and_load_our_weights(shared_data, tmp_path):
    source = shared_data / "park17" / "DHDE_model.caffemodel"
    target = park17_weights.convert_caffemodel(source, tmp_path / "park17.weights.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["park17.weights.h5"]  # no temporary left behind
    official, official_metadata = park17_weights.load_park17_classifier(source, with_metadata=True)
    converted, metadata = park17_weights.load_park17_classifier(target, with_metadata=True)
    for a, b in zip(official.get_weights(), converted.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert metadata["method"] == "park17" and metadata["source_sha256"] == park17_weights.OFFICIAL_SHA256
    assert official_metadata["official"] and len(metadata["sigma_classes"]) == NUM_CLASSES
    np.testing.assert_allclose(metadata["sigma_classes"][-1], 2.0)


def test_foreign_h5_is_refused(tmp_path):
    import h5py

    path = tmp_path / "other.weights.h5"
    with h5py.File(path, "w") as f:
        f.attrs["dmenet_metadata"] = json.dumps({"network": "DMENet-B"})
    with pytest.raises(WeightsMismatchError, match="not of Park et al."):
        park17_weights.load_park17_classifier(path)
    with h5py.File(path, "w") as f:
        pass
    with pytest.raises(WeightsMismatchError, match="without metadata"):
        park17_weights.load_park17_classifier(path)


def test_weights_from_environment(shared_data, monkeypatch):
    monkeypatch.setenv(park17_weights.WEIGHTS_ENV, str(shared_data / "park17" / "DHDE_model.caffemodel"))
    _, metadata = park17_weights.load_park17_classifier(with_metadata=True)
    assert metadata["official"]


def test_offline_download_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv(park17_weights.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(park17_weights, "OFFICIAL_URL", (tmp_path / "nowhere" / "DHDE_model.caffemodel").as_uri())
    with pytest.raises(WeightsUnavailableError) as error:
        park17_weights.load_park17_classifier(cache_dir=tmp_path / "cache")
    message = str(error.value)
    assert park17_weights.WEIGHTS_ENV in message
    assert str(tmp_path / "cache" / "models" / "DHDE_model.caffemodel") in message


def test_wrong_checksum_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(park17_weights.WEIGHTS_ENV, raising=False)
    impostor = tmp_path / "served" / "DHDE_model.caffemodel"
    impostor.parent.mkdir()
    impostor.write_bytes(b"not the model")
    monkeypatch.setattr(park17_weights, "OFFICIAL_URL", impostor.as_uri())
    cache = tmp_path / "cache"
    with pytest.raises(WeightsMismatchError, match="sha256"):
        park17_weights.load_park17_classifier(cache_dir=cache)
    assert not (cache / "models" / "DHDE_model.caffemodel").exists()  # no bad copy kept

    (cache / "models" / "DHDE_model.caffemodel").write_bytes(b"damaged")
    with pytest.raises(WeightsMismatchError, match="Delete it"):
        park17_weights.load_park17_classifier(cache_dir=cache)


def test_missing_explicit_file(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="no such file"):
        park17_weights.load_park17_classifier(tmp_path / "absent.weights.h5")
