"""C, content preservation: frozen ImageNet VGG19 features (block4_conv4, after ReLU) of a map.

The defocus map (in [0, 1], like an image) is replicated to three channels and goes through the
same VGG preprocessing as a photo. L_C compares these features of B's output and of the label, so
B keeps the label's edges and structure instead of merely its mean level.
"""
import keras
from keras import layers, ops

from dmenet.networks.blur_net import build_vgg19_encoder

CONTENT_LAST_BLOCK = 4  # conv4_4


@keras.saving.register_keras_serializable(package="dmenet")
class ReplicateToRGB(layers.Layer):
    """(N, H, W, 1) → (N, H, W, 3): a grey map seen as an image."""

    def call(self, x):
        return ops.concatenate([x, x, x], axis=-1)

    def compute_output_shape(self, shape):
        return (*shape[:-1], 3)


def build_content_net(weights_path=None, imagenet=True, name="content_net", width=1.0):
    """Frozen C. With `imagenet=True` the ImageNet VGG19 weights are required (see
    dmenet.weights.pretrained.load_imagenet_vgg19: a local file, $DMENET_VGG19_WEIGHTS, Keras' cache or a
    download); `imagenet=False` keeps random weights, which only makes sense for tests and demos
    (where `width` < 1 makes it tiny)."""
    defocus = keras.Input((None, None, 1), name="defocus")
    encoder = build_vgg19_encoder(f"{name}_vgg19", last_block=CONTENT_LAST_BLOCK, width=width)
    features = encoder(ReplicateToRGB(name="replicate_rgb")(defocus))
    model = keras.Model(defocus, features[-1], name=name)
    if imagenet:
        from dmenet.weights.pretrained import load_imagenet_vgg19

        load_imagenet_vgg19(model, weights_path)
    model.trainable = False
    return model
