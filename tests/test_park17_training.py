"""Park'17 training: blur kernel, sample extraction, data order, learning-rate policy, training and resume."""
import json

import keras
import numpy as np
import pytest
import scipy.ndimage

from dmenet.files.images import write_png
from dmenet.park17 import training
from dmenet.park17.features import compute_features, matlab_uint8
from dmenet.park17.params import DEFAULT_PARAMS, NUM_CLASSES, SIGMA_CLASSES
from dmenet.park17.training import (
    CaffeInvDecay,
    Park17TrainingError,
    batch_indices,
    blur_like_training,
    extract_training_samples,
    split_images,
    train_park17,
    training_blur_kernel,
)
from dmenet.weights.park17 import load_park17_classifier


def _photo(seed, size=96):
    """Flat rectangles of random colours: strong edges at both Canny scales."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 0.5) + rng.normal(0, 0.01, (size, size, 3))
    for _ in range(12):
        r0, c0 = rng.integers(0, size - 8, 2)
        h, w = rng.integers(6, size // 2, 2)
        image[r0:r0 + h, c0:c0 + w] = rng.uniform(0, 1, 3)
    return np.clip(image, 0, 1)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sharp_photos")
    for seed in range(3):
        write_png(folder / f"photo{seed}.png", np.round(_photo(seed) * 255).astype(np.uint8))
    return folder


def test_inv_policy_matches_caffe_formula():
    schedule = CaffeInvDecay()
    for step in (0, 1, 37, 1000, 10000, 800000):
        np.testing.assert_allclose(float(schedule(step)), 1e-4 * (1 + 1e-4 * step) ** -2.0, rtol=1e-6)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(CaffeInvDecay(1e-3, 2e-4, 0.75)))
    np.testing.assert_allclose(float(restored(500)), 1e-3 * (1 + 2e-4 * 500) ** -0.75, rtol=1e-6)


def test_blur_is_fspecial_gaussian_with_replicate_borders():
    sigma, radius = 1.25, 13
    x = np.arange(-radius, radius + 1)
    fspecial = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma ** 2))
    fspecial[fspecial < np.finfo(float).eps * fspecial.max()] = 0
    fspecial /= fspecial.sum()
    kernel = training_blur_kernel(sigma, radius)
    np.testing.assert_allclose(np.outer(kernel, kernel), fspecial, atol=3e-17)
    image = np.random.default_rng(0).random((30, 35, 3))
    expected = np.stack([scipy.ndimage.correlate(image[..., c], fspecial, mode="nearest") for c in range(3)], axis=2)
    np.testing.assert_allclose(blur_like_training(image, sigma, radius), expected, atol=1e-12)


def test_samples_equal_the_official_per_scale_padding():
    """One padding by 13 for both scales gives the features of the official pad-by-r_s-then-blur."""
    rgb = _photo(0)
    samples = extract_training_samples(rgb, np.random.default_rng(5), max_positions=40)
    n = len(samples["label"]) // NUM_CLASSES
    assert n == 40 and samples["patch"].dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(samples["label"]), [n] * NUM_CLASSES)

    # Recompute class k the official way: per scale, pad by r_s, blur, V, patches at row + r_s.
    from dmenet.park17.edges import balanced_training_edge_map, value_channel
    from dmenet.park17.features import patch_centres

    rng = np.random.default_rng(5)
    positions, scales = patch_centres(balanced_training_edge_map(value_channel(rgb), rng))
    positions, scales = training._cap_positions(positions, scales, 40, rng)
    k = 7
    for scale, radius in zip((1, 2), DEFAULT_PARAMS.patch_radii):
        padded = np.pad(rgb, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
        blurred = blur_like_training(padded, SIGMA_CLASSES[k])
        chosen = scales == scale
        official = compute_features(blurred, value_channel(blurred), positions[chosen] + radius, scales[chosen])
        ours = np.flatnonzero(samples["label"] == k)[chosen]
        for name in ("dct", "grd", "svd"):
            np.testing.assert_array_equal(samples[name][ours], matlab_uint8(255 * getattr(official, name)))
        np.testing.assert_array_equal(samples["patch"][ours], matlab_uint8(255 * official.patches.astype(np.float64)))


def test_more_blur_means_fewer_gradients():
    samples = extract_training_samples(_photo(1), np.random.default_rng(0), max_positions=20)
    high_frequency = [samples["dct"][samples["label"] == k, 12:25].astype(float).mean() for k in (0, 10)]
    assert high_frequency[0] > high_frequency[1]


def test_split_holds_out_whole_photos_deterministically(tmp_path):
    paths = [tmp_path / f"{i}.png" for i in range(10)]
    train, validation = split_images(paths, 0.2, seed=3)
    assert len(validation) == 2 and sorted(train + validation) == sorted(paths)
    assert split_images(paths, 0.2, seed=3) == (train, validation)
    assert split_images(paths[:1], 0.5, seed=0) == (paths[:1], [])
    with pytest.raises(Park17TrainingError):
        split_images(paths, 1.0, seed=0)


def test_batch_order_is_a_pure_function_of_the_step():
    n, batch = 300, 128
    sequence = np.concatenate([batch_indices(n, batch, 7, step) for step in range(8)])  # > 3 passes
    for start in range(0, 2 * n + 1, n):
        assert sorted(sequence[start:start + n]) == list(range(n))  # each pass is a permutation
    np.testing.assert_array_equal(batch_indices(n, batch, 7, 5), sequence[5 * batch:6 * batch])
    assert not np.array_equal(batch_indices(n, batch, 8, 0), sequence[:batch])


def _weights(path):
    return load_park17_classifier(path).get_weights()


def test_training_loss_falls_and_weights_load(photo_dir, tmp_path):
    run = tmp_path / "run"
    summary = train_park17(photo_dir, run, steps=30, checkpoint_every=15, max_patches_per_image=60, seed=1,
                           learning_rate=CaffeInvDecay(base_rate=1e-3), verbose=0)
    history = summary["history"]
    assert [record["step"] for record in history] == [15, 30]
    assert summary["validation_images"] == 1 and summary["validation_samples"] > 0
    assert {"val_accuracy", "val_within_one", "within_one"} <= set(history[-1])
    assert history[-1]["val_within_one"] >= history[-1]["val_accuracy"]
    assert history[-1]["loss"] < history[0]["loss"]
    model, metadata = load_park17_classifier(run / "park17.weights.h5", with_metadata=True)
    assert metadata["method"] == "park17" and metadata["steps"] == 30
    assert json.loads((run / "park17_history.json").read_text())[-1]["step"] == 30


def test_resume_continues_at_the_same_step_and_learning_rate(photo_dir, tmp_path, monkeypatch):
    options = dict(checkpoint_every=2, max_patches_per_image=40, seed=4, verbose=0)
    straight = train_park17(photo_dir, tmp_path / "straight", steps=4, **options)
    first = train_park17(photo_dir, tmp_path / "resumed", steps=2, **options)
    assert first["steps"] == 2

    def no_extraction(*args, **kwargs):
        raise AssertionError("cached samples must be reused")

    monkeypatch.setattr(training, "extract_training_samples", no_extraction)
    resumed = train_park17(photo_dir, tmp_path / "resumed", steps=4, **options)
    assert resumed["resumed_from"] == 2 and resumed["steps"] == 4
    assert [record["step"] for record in resumed["history"]] == [2, 4]
    np.testing.assert_allclose(resumed["history"][-1]["learning_rate"], 1e-4 * (1 + 1e-4 * 4) ** -2.0, rtol=1e-6)
    for a, b in zip(_weights(tmp_path / "straight" / "park17.weights.h5"), _weights(tmp_path / "resumed" / "park17.weights.h5")):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(resumed["history"][-1]["loss"], straight["history"][-1]["loss"], rtol=1e-5)

    with pytest.raises(Park17TrainingError, match="different settings \\(seed"):
        train_park17(photo_dir, tmp_path / "resumed", steps=6, **{**options, "seed": 5})


def test_unusable_folders(tmp_path):
    with pytest.raises(Park17TrainingError, match="no such folder"):
        train_park17(tmp_path / "absent", tmp_path / "run", verbose=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(Park17TrainingError, match="no photos"):
        train_park17(tmp_path / "empty", tmp_path / "run", verbose=0)
    flat = tmp_path / "flat"
    write_png(flat / "grey.png", np.full((40, 40, 3), 128, np.uint8))
    with pytest.raises(Park17TrainingError, match="training samples"):
        train_park17(flat, tmp_path / "run", verbose=0)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "photo.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(Park17TrainingError, match="photo.jpg"):
        train_park17(broken, tmp_path / "run", verbose=0)
