"""B's streamlined inference graph (dmenet.inference.streamline): the same numbers, bit for bit."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from dmenet.inference.folding import fold_batch_norms
from dmenet.inference.precision import dtype_policy_scope, keep_output_in_float32
from dmenet.inference.streamline import EdgePadding2D, NearestUpsampling2D, streamlined
from dmenet.networks.blur_net import build_blur_net
from dmenet.networks.layers import SymmetricPadding2D
from tests import official_graph


def _outputs(model, images):
    """B's outputs through a tf.function traced for any shape, as the predictor calls it."""
    call = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
    out = call(tf.constant(images))
    return [np.asarray(tf.cast(t, tf.float32)) for t in [out["defocus"], out["feature"], *out["aux"]]]


@pytest.mark.parametrize("shape", [(1, 5, 7, 3), (2, 1, 4, 2)])
def test_edge_padding_and_upsampling_equal_the_layers_they_replace(shape):
    x = tf.constant(np.random.default_rng(0).normal(size=shape), tf.bfloat16)
    for dynamic in (False, True):  # traced for this shape (index constants) and for any shape
        signature = [tf.TensorSpec((None, None, None, shape[3]), tf.bfloat16)] if dynamic else None
        run = lambda layer: tf.function(layer.__call__, input_signature=signature)(x)  # noqa: E731, B023
        np.testing.assert_array_equal(run(EdgePadding2D()), run(SymmetricPadding2D()))
        np.testing.assert_array_equal(run(NearestUpsampling2D()), run(keras.layers.UpSampling2D(2)))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_streamlined_blur_net_is_bit_identical(precision):
    keras.utils.set_random_seed(4)
    with dtype_policy_scope(precision):
        model = build_blur_net(width=0.125)
    if precision == "bf16":
        model = fold_batch_norms(keep_output_in_float32(model))  # as the bf16 predictor runs it
    fast = streamlined(model)
    kinds = {type(layer).__name__ for layer in fast.get_layer("encoder").layers + fast.layers}
    assert {"EdgePadding2D", "NearestUpsampling2D"} <= kinds and not {"SymmetricPadding2D", "UpSampling2D"} & kinds
    if precision == "bf16":  # weights held in bf16 (no cast per call); the σ layers stay float32
        assert fast.get_layer("u3_c1").kernel.dtype == "bfloat16" and fast.get_layer("uf_c3").kernel.dtype == "float32"
    images = np.random.default_rng(5).random((2, 48, 80, 3), dtype=np.float32)
    for ours, theirs in zip(_outputs(fast, images), _outputs(model, images)):
        np.testing.assert_array_equal(ours, theirs)


@pytest.fixture(scope="module")
def official_checkpoint(tmp_path_factory):
    tensors = official_graph.random_checkpoint(seed=7)
    path = tmp_path_factory.mktemp("official") / "DMENet_BDCS.npz"
    np.savez(path, **tensors)
    return tensors, path


@pytest.mark.parametrize("precision, largest, mean", [("fp32", 1e-3, 1e-4), ("bf16", 0.25, 0.04)])
def test_predictor_on_an_official_checkpoint_matches_the_original_graph(official_checkpoint, precision, largest, mean):
    import dmenet

    tensors, path = official_checkpoint
    predictor = dmenet.load_predictor("dmenet", path, precision=precision, xla="off")
    assert predictor.streamlined and predictor.precision == precision
    image = np.random.default_rng(8).random((48, 80, 3), dtype=np.float32)
    defocus = official_graph.forward(tensors, image[None])[0][0, ..., 0]
    assert 0.01 < float(np.std(defocus))  # not saturated: the comparison means something
    difference = np.abs(predictor.predict_sigma(image) - predictor.encoding.to_sigma(defocus))
    assert difference.max() <= largest and difference.mean() <= mean
