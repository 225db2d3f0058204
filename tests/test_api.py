"""The public API: cheap import, one-call defocus maps, SYNDOF synthesis, scoring, and B saved whole."""
import subprocess
import sys

import numpy as np
import pytest


def test_import_is_cheap_and_changes_no_global_state():
    code = ("import os, sys; before = dict(os.environ); import dmenet; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules and 'matplotlib' not in sys.modules; "
            "assert dict(os.environ) == before; print(sorted(dmenet.__all__))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "estimate_defocus" in run.stdout and "synthesize_defocus" in run.stdout


def test_estimate_defocus_with_park17_weights_from_a_file(tmp_path):
    import dmenet
    from dmenet.park17.network import build_patch_classifier
    from dmenet.weights.park17 import save_park17_classifier

    weights = tmp_path / "random_park17.weights.h5"
    save_park17_classifier(build_patch_classifier(), weights)
    from skimage.data import astronaut

    photo = astronaut()[::4, ::4]
    sigma = dmenet.estimate_defocus(photo, weights=weights, method="park17")
    assert sigma.shape == photo.shape[:2] and sigma.dtype == np.float32
    assert np.isfinite(sigma).all() and 0.3 < sigma.mean() < 2.5  # propagated class σ's (0.5…2 px)
    with pytest.raises(ValueError, match="unknown method"):
        dmenet.load_predictor("nope")


def test_synthesize_defocus_fixed_camera_is_deterministic():
    import dmenet

    rng = np.random.default_rng(0)
    rgb = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
    depth = np.where(np.arange(48)[None, :] < 24, 1500.0, 6000.0) * np.ones((40, 1))
    first = dmenet.synthesize_defocus(rgb, depth, f_mm=50.0, z_focal=1500.0)
    again = dmenet.synthesize_defocus(rgb, depth, f_mm=50.0, z_focal=1500.0)
    assert np.array_equal(first.blurred, again.blurred)
    sigma = first.labels.sigma
    assert sigma[:, :20].max() < sigma[:, 30:].min()  # in focus near, blurred far
    assert first.blurred_uint8.shape == (40, 48, 3)


def test_evaluate_scores_a_folder_of_maps(tmp_path):
    import dmenet
    from dmenet.files.images import write_png

    for stem, blurred_left in (("a", True), ("b", False)):
        mask = np.zeros((32, 40), np.uint8)
        mask[:, :20] = 255 if blurred_left else 0
        mask[:, 20:] = 0 if blurred_left else 255
        (tmp_path / "gt").mkdir(exist_ok=True)
        (tmp_path / "image").mkdir(exist_ok=True)
        (tmp_path / "maps").mkdir(exist_ok=True)
        write_png(tmp_path / "gt" / f"{stem}.png", mask)
        write_png(tmp_path / "image" / f"{stem}.png", np.zeros((32, 40, 3), np.uint8))
        np.save(tmp_path / "maps" / f"{stem}.npy", (mask / 255.0 * 3.0).astype(np.float32))  # σ 3 px where blurred
    result = dmenet.evaluate(tmp_path / "maps", "cuhk", tmp_path, split="all")
    assert result["metrics"]["average_precision"] == pytest.approx(1.0)
    assert result["metrics"]["accuracy_at_best_threshold"] == pytest.approx(1.0)


def test_blur_net_saved_whole_and_reloaded_gives_identical_outputs(tmp_path):
    import keras

    from dmenet.networks.blur_net import build_blur_net

    model = build_blur_net(width=0.125)
    path = tmp_path / "b.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    image = np.random.default_rng(1).random((1, 32, 48, 3)).astype(np.float32)
    expected, actual = model(image, training=False), reloaded(image, training=False)
    np.testing.assert_array_equal(np.asarray(expected["defocus"]), np.asarray(actual["defocus"]))
    for a, b in zip(expected["aux"], actual["aux"]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
