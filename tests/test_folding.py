"""Batch normalisation folded into the convolutions for bf16 inference (dmenet.inference.folding)."""
import keras
import numpy as np
import pytest

from dmenet.inference.folding import fold_batch_norms
from dmenet.inference.precision import dtype_policy_scope, keep_output_in_float32
from dmenet.networks.blur_net import build_blur_net


def _tiny_blur_net(precision, seed=0):
    """A small B whose BN layers hold statistics far from the identity, so a wrong fold shows."""
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    with dtype_policy_scope(precision):
        model = build_blur_net(width=0.25)
    if precision != "fp32":
        keep_output_in_float32(model)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.moving_mean.shape[0]
            layer.set_weights([rng.normal(0, 0.3, channels), rng.normal(0, 0.5, channels), rng.uniform(0.2, 3.0, channels)])
    return model


def _batch_norms(model):
    return [layer.name for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def test_folded_blur_net_computes_the_same_outputs_in_fp32():
    model = _tiny_blur_net("fp32")
    folded = fold_batch_norms(model)
    assert _batch_norms(model) and not _batch_norms(folded)
    assert {layer.name for layer in folded.layers} == {layer.name for layer in model.layers} - set(_batch_norms(model))
    images = np.random.default_rng(1).random((2, 48, 64, 3)).astype(np.float32)
    expected, actual = model(images, training=False), folded(images)
    # Float rounding differs (kernel·s rounded once); a random network amplifies it a little, a wrong fold by far more.
    np.testing.assert_allclose(actual["feature"], expected["feature"], rtol=1e-4, atol=1e-4 * float(np.abs(expected["feature"]).max()))
    np.testing.assert_allclose(actual["defocus"], expected["defocus"], atol=1e-3)
    assert np.abs(np.asarray(actual["defocus"]) - np.asarray(expected["defocus"])).mean() < 1e-5
    for ours, theirs in zip(actual["aux"], expected["aux"]):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    # The folded copy is a snapshot: the original keeps its weights and its BN layers.
    assert len(model.get_weights()) > len(folded.get_weights())


def test_bf16_predictor_runs_the_folded_graph_and_keeps_bf16_accuracy():
    from dmenet.inference.tiling import DefocusPredictor
    from dmenet.units import DefocusEncoding

    fp32 = _tiny_blur_net("fp32")
    bf16 = _tiny_blur_net("bf16")
    bf16.set_weights(fp32.get_weights())
    encoding = DefocusEncoding()
    predictors = {p: DefocusPredictor(model, encoding) for p, model in (("fp32", fp32), ("bf16", bf16))}
    assert predictors["bf16"].precision == "bf16" and not _batch_norms(predictors["bf16"].model)
    assert predictors["bf16"].model.get_layer("u3_c1").compute_dtype == "bfloat16"
    assert predictors["bf16"].model.get_layer("uf_c3").compute_dtype == "float32"
    assert _batch_norms(predictors["fp32"].model)  # fp32 runs the original graph
    image = np.random.default_rng(2).random((48, 64, 3)).astype(np.float32)
    reference = predictors["fp32"].predict_map(image)
    unfolded = np.asarray(bf16(image[None], training=False)["defocus"], np.float32)[0, ..., 0]
    folded = predictors["bf16"].predict_map(image)
    # As close to fp32 as the unfolded bf16 graph is (8 significant bits either way).
    assert np.abs(folded - reference).mean() <= 2 * np.abs(unfolded - reference).mean() + 1e-3


def test_only_a_batch_norm_that_alone_reads_a_linear_convolution_is_folded():
    inputs = keras.Input((8, 8, 2))
    shared = keras.layers.Conv2D(3, 1, name="shared")(inputs)
    activated = keras.layers.Conv2D(3, 1, activation="relu", name="activated")(inputs)
    plain = keras.layers.Conv2D(3, 1, use_bias=False, name="plain")(inputs)
    outputs = [
        keras.layers.BatchNormalization(name="bn_shared")(shared),
        shared,  # read twice: folding would change this output
        keras.layers.BatchNormalization(name="bn_activated")(activated),  # after a ReLU: not affine in the conv
        keras.layers.BatchNormalization(scale=True, name="bn_plain")(plain),
    ]
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(3)
    model.get_layer("bn_plain").set_weights([rng.uniform(0.5, 2, 3), rng.normal(size=3), rng.normal(size=3), rng.uniform(0.5, 2, 3)])
    folded = fold_batch_norms(model)
    assert _batch_norms(folded) == ["bn_shared", "bn_activated"]
    assert folded.get_layer("plain").use_bias  # the fold gives it a bias
    x = rng.normal(size=(2, 8, 8, 2)).astype(np.float32)
    for ours, theirs in zip(folded(x), model(x, training=False)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_a_model_without_batch_norms_is_returned_as_it_is():
    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    assert fold_batch_norms(model) is model


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_folding_keeps_each_layers_dtype_policy(precision):
    def computing_layers(model):  # the layers inside nested models; containers and inputs compute nothing
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                yield from computing_layers(layer)
            elif not isinstance(layer, keras.layers.InputLayer):
                yield layer

    model = _tiny_blur_net(precision)
    policies = {layer.name: layer.dtype_policy.name for layer in computing_layers(model)}
    folded = {layer.name: layer.dtype_policy.name for layer in computing_layers(fold_batch_norms(model))}
    assert folded == {name: policy for name, policy in policies.items() if name not in _batch_norms(model)}
    assert "mixed_bfloat16" in folded.values() if precision == "bf16" else set(folded.values()) == {"float32"}
