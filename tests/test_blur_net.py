"""Network B: structure, parameter counts, and agreement with the original graph on official weights."""
import numpy as np
import pytest

from dmenet.networks.blur_net import build_blur_net, encoder_of
from dmenet.units import NORMALIZED, OFFICIAL
from dmenet.weights.checkpoints import load_blur_net, save_blur_net
from dmenet.weights.pretrained import WeightsMismatchError, load_official_npz
from tests import official_graph


@pytest.fixture(scope="module")
def blur_net():
    return build_blur_net()


def test_parameter_counts_match_the_paper(blur_net):
    encoder = encoder_of(blur_net)
    trainable = lambda model: sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert encoder.count_params() == 20_024_384
    assert trainable(blur_net) - trainable(encoder) == 6_915_435


def test_outputs_have_the_documented_shapes(blur_net):
    out = blur_net(np.random.rand(2, 48, 64, 3).astype("float32"), training=False)
    assert out["defocus"].shape == (2, 48, 64, 1)
    assert [tuple(a.shape[1:3]) for a in out["aux"]] == [(3, 4), (6, 8), (12, 16), (24, 32), (48, 64)]
    assert out["feature"].shape == (2, 48, 64, 64)


def test_layer_names_follow_keras_vgg19(blur_net):
    names = {layer.name for layer in encoder_of(blur_net).layers}
    assert {"block1_conv1", "block3_conv4", "block5_conv4"} <= names


@pytest.mark.parametrize("old_names", [False, True], ids=["kernel/bias", "W_conv2d/b_conv2d"])
def test_official_weights_reproduce_the_original_graph(blur_net, tmp_path, old_names):
    tensors = official_graph.random_checkpoint(seed=3, old_names=old_names)
    path = tmp_path / "DMENet_BDCS.npz"
    np.savez(path, **tensors)
    assert load_official_npz(blur_net, path) == OFFICIAL
    for shape in [(1, 32, 32, 3), (2, 48, 80, 3)]:
        rgb = np.random.default_rng(1).random(shape, dtype=np.float32)
        ours = blur_net(rgb, training=False)
        defocus, aux, feature = official_graph.forward(tensors, rgb)
        # the comparison is only meaningful when the sigmoid output is not saturated
        assert 0.01 < float(np.std(defocus)) and 0.02 < float(np.mean(defocus)) < 0.98
        np.testing.assert_allclose(ours["defocus"], defocus, atol=1e-4)
        np.testing.assert_allclose(ours["feature"], feature, atol=1e-4 * max(1.0, np.abs(feature).max()))
        for mine, theirs in zip(ours["aux"], aux):
            np.testing.assert_allclose(mine, theirs, atol=1e-4)


def test_damaged_official_checkpoint_is_rejected_with_a_list(blur_net, tmp_path):
    tensors = official_graph.random_checkpoint(seed=0, training_extras=False)
    del tensors["main_net/defocus_net/decoder/u2/b3/beta:0"]
    tensors["main_net/defocus_net/encoder/conv3_2/kernel:0"] = np.zeros((3, 3, 256, 128), np.float32)
    path = tmp_path / "broken.npz"
    np.savez(path, **tensors)
    with pytest.raises(WeightsMismatchError) as error:
        load_official_npz(blur_net, path)
    message = str(error.value)
    assert "missing main_net/defocus_net/decoder/u2/b3/beta:0" in message
    assert "conv3_2/kernel:0: shape (3, 3, 256, 128)" in message

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes((tmp_path / "broken.npz").read_bytes()[:5000])
    with pytest.raises(WeightsMismatchError, match="not an .npz archive"):
        load_official_npz(blur_net, truncated)


def test_own_checkpoint_round_trip_keeps_weights_and_encoding(blur_net, tmp_path):
    path = save_blur_net(blur_net, tmp_path / "b.weights.h5", NORMALIZED, {"step": 7})
    assert [p.name for p in tmp_path.iterdir()] == ["b.weights.h5"]  # no temporary left behind
    loaded, encoding, metadata = load_blur_net(path)
    assert encoding == NORMALIZED and metadata["step"] == 7
    rgb = np.random.default_rng(0).random((1, 32, 48, 3), dtype=np.float32)
    np.testing.assert_allclose(loaded(rgb)["defocus"], blur_net(rgb)["defocus"], atol=1e-6)
