"""ImageNet VGG19 weights: loading from Keras' file layout, and a clear error when there is none."""
import h5py
import keras
import numpy as np
import pytest

from dmenet.networks.blur_net import build_vgg19_encoder
from dmenet.weights.pretrained import WeightsMismatchError, WeightsUnavailableError, load_imagenet_vgg19


def _write_legacy_vgg19_h5(path, encoder, rng, skip=None):
    """The layout of Keras' vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 (one group per layer)."""
    expected = {}
    with h5py.File(path, "w") as f:
        for layer in encoder.layers:
            if not isinstance(layer, keras.layers.Conv2D) or layer.name == skip:
                continue
            group = f.create_group(layer.name)
            kernel = rng.normal(size=layer.kernel.shape).astype("float32")
            bias = rng.normal(size=layer.bias.shape).astype("float32")
            group.create_dataset(f"{layer.name}_W_1:0", data=kernel)
            group.create_dataset(f"{layer.name}_b_1:0", data=bias)
            expected[layer.name] = (kernel, bias)
    return expected


def test_loads_keras_legacy_layout_by_name(tmp_path):
    encoder = build_vgg19_encoder("content", last_block=4)
    expected = _write_legacy_vgg19_h5(tmp_path / "vgg19.h5", build_vgg19_encoder(), np.random.default_rng(0))
    load_imagenet_vgg19(encoder, tmp_path / "vgg19.h5")
    kernel, bias = expected["block4_conv4"]
    np.testing.assert_array_equal(encoder.get_layer("block4_conv4").kernel.numpy(), kernel)
    np.testing.assert_array_equal(encoder.get_layer("block4_conv4").bias.numpy(), bias)


def test_file_missing_a_layer_is_reported(tmp_path):
    encoder = build_vgg19_encoder()
    _write_legacy_vgg19_h5(tmp_path / "vgg19.h5", encoder, np.random.default_rng(0), skip="block2_conv1")
    with pytest.raises(WeightsMismatchError, match="block2_conv1: missing"):
        load_imagenet_vgg19(encoder, tmp_path / "vgg19.h5")


def test_offline_without_a_file_says_what_to_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty cache
    monkeypatch.delenv("DMENET_VGG19_WEIGHTS", raising=False)

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(WeightsUnavailableError, match="--vgg19-weights PATH"):
        load_imagenet_vgg19(build_vgg19_encoder(), None)


def test_random_bytes_npz_names_the_file_and_the_fix(tmp_path):
    from dmenet.weights.pretrained import read_npz

    path = tmp_path / "DMENet_BDCS.npz"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(WeightsMismatchError) as raised:
        read_npz(path)
    message = str(raised.value)
    assert str(path) in message and "download" in message and "--weights" in message
    assert "pickle" not in message and "\n" not in message
