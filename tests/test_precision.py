"""Choosing bf16 only where the hardware computes it natively."""
import pytest

from dmenet.inference import precision


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    zen4 = tmp_path / "zen4"
    zen4.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 vaes\n\nprocessor\t: 1\n")
    zen3 = tmp_path / "zen3"
    zen3.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma vaes\n")
    assert precision.cpu_bf16_flags(zen4) == ["avx512_bf16"]
    assert precision.cpu_bf16_flags(zen3) == []
    assert precision.cpu_bf16_flags(tmp_path / "missing") == []
    assert {"avx512f", "avx2"} <= precision.cpu_flags(zen4) and precision.cpu_flags(tmp_path / "missing") == set()


def test_auto_follows_native_support(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda: (True, "this CPU computes bfloat16 natively (amx_bf16)"))
    assert precision.resolve_precision("auto") == ("bf16", "auto: this CPU computes bfloat16 natively (amx_bf16)")
    monkeypatch.setattr(precision, "native_bf16", lambda: (False, "no native bfloat16"))
    assert precision.resolve_precision("auto")[0] == "fp32"
    assert precision.resolve_precision("bf16") == ("bf16", "requested")


def test_gpu_capability_decides_when_a_gpu_is_present(monkeypatch):
    monkeypatch.setattr(precision, "gpu_compute_capabilities", lambda: [(8, 0)])
    assert precision.native_bf16()[0]
    monkeypatch.setattr(precision, "gpu_compute_capabilities", lambda: [(7, 5)])
    assert not precision.native_bf16()[0]


def test_policy_scope_restores_the_global_policy():
    import keras

    before = keras.config.dtype_policy().name
    with precision.dtype_policy_scope("bf16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == before
    with pytest.raises(RuntimeError), precision.dtype_policy_scope("bf16"):
        raise RuntimeError("build failed")
    assert keras.config.dtype_policy().name == before


# ---------------------------------------------------------------- Park'17's classifier in bf16


def test_park17_classifier_in_bf16_keeps_float32_weights_and_outputs():
    import numpy as np

    from dmenet.park17.network import build_patch_classifier, classifier_in_precision, classifier_precision

    model = build_patch_classifier()
    fast = classifier_in_precision(model, "bf16")
    assert classifier_precision(model) == "fp32" and classifier_precision(fast) == "bf16"
    assert fast.get_layer("fc2").compute_dtype == "bfloat16"
    assert all(fast.get_layer(name).compute_dtype == "float32" for name in ("fc3", "relu3", "prob"))
    for ours, theirs in zip(model.get_weights(), fast.get_weights()):
        assert theirs.dtype == np.float32
        np.testing.assert_array_equal(ours, theirs)
    assert classifier_in_precision(model, "fp32") is model
    assert classifier_precision(classifier_in_precision(fast, "fp32")) == "fp32"
    with pytest.raises(ValueError, match="fp32 or bf16"):
        classifier_in_precision(model, "auto")

    rng = np.random.default_rng(0)
    inputs = {name: np.round(rng.uniform(0, 255, (6, 40))).astype(np.float32) for name in ("dct", "grd", "svd")}
    inputs["patch"] = np.round(rng.uniform(0, 255, (6, 27, 27, 3))).astype(np.float32)
    reference, rounded = np.asarray(model(inputs)), np.asarray(fast(inputs))
    assert rounded.dtype == np.float32
    assert np.abs(rounded - reference).max() < 0.02  # bf16 keeps 8 significant bits; a wrong layer would be far off


def test_park17_classifies_photo_patches_alike_in_both_precisions(shared_data):
    """Official weights on the edge patches of a 64×96 crop of the official sample photo, through the
    pipeline's classifier call (shared conv1 for full batches, per-patch network for the last one)."""
    import numpy as np

    from dmenet.files.images import read_image
    from dmenet.park17.classify import classify_photo_patches
    from dmenet.park17.edges import multiscale_edge_map, value_channel
    from dmenet.park17.features import patch_centres
    from dmenet.park17.params import DEFAULT_PARAMS
    from dmenet.park17.predictor import Park17Predictor
    from dmenet.weights.park17 import load_park17_classifier

    rgb = read_image(shared_data / "park17" / "sample_0001.jpg")[100:164, 150:246].astype(np.float64)
    gray = value_channel(rgb)
    positions, scales = patch_centres(multiscale_edge_map(gray, DEFAULT_PARAMS.edge_low_test, DEFAULT_PARAMS.edge_high_test))
    assert len(positions) > 2 * DEFAULT_PARAMS.batch_size  # full batches (shared path) and a partial one
    classifier = load_park17_classifier(shared_data / "park17" / "DHDE_model.caffemodel")
    results = {p: classify_photo_patches(Park17Predictor(classifier, precision=p).classifier, rgb, gray, positions, scales)
               for p in ("fp32", "bf16")}
    (labels, _, probabilities), (labels_bf16, _, probabilities_bf16) = results["fp32"], results["bf16"]
    assert probabilities_bf16.dtype == np.float32
    assert np.mean(labels_bf16 == labels) >= 0.95
    assert np.abs(probabilities_bf16 - probabilities).max() < 0.1
    assert np.abs(probabilities_bf16 - probabilities).mean() < 0.005


def test_park17_from_weights_follows_the_precision_rule(shared_data, monkeypatch):
    from dmenet.park17.predictor import Park17Predictor

    path = shared_data / "park17" / "DHDE_model.caffemodel"
    predictor = Park17Predictor.from_weights(path, precision="bf16")
    assert (predictor.precision, predictor.precision_reason) == ("bf16", "requested")
    monkeypatch.setattr(precision, "native_bf16", lambda: (False, "no native bfloat16"))
    assert Park17Predictor.from_weights(path).precision == "fp32"


def test_precision_cost_table_weights_photos_by_pixels_and_counts_labels():
    from dmenet.bench.precision_cost import PhotoCost, format_table, summarise

    costs = [PhotoCost("a", (10, 10), 1.0, 0.01, 0.1, 0.05, {"fp32": 2.0, "bf16": 3.0}, 99, 100),
             PhotoCost("b", (10, 30), 2.0, 0.05, 0.4, 0.2, {"fp32": None, "bf16": None}, 50, 100)]
    metrics = {p: {"average_precision": ap, "accuracy_at_best_threshold": 0.8, "best_threshold": 0.2, "max_f_measure": 0.7,
                   "accuracy_at_fixed_threshold": 0.6, "fixed_threshold": 0.5, "blurred_fraction": 0.4}
               for p, ap in (("fp32", 0.9), ("bf16", 0.89))}
    summary = summarise(costs, metrics)
    assert summary["mean_abs_difference_px"] == pytest.approx((100 * 0.01 + 300 * 0.05) / 400)
    assert summary["max_abs_difference_px"] == 0.4
    assert summary["label_agreement"] == pytest.approx(149 / 200) and summary["worst_photo_label_agreement"] == 0.5
    assert summary["seconds_per_photo_fp32"] == 2.0  # resumed photos are not timed
    table = format_table(summary, "park17")
    assert "74.500%" in table and "Δ -0.0100" in table
