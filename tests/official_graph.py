"""An independent re-statement of the original DMENet inference graph, in raw TensorFlow ops.

It works on the official checkpoint's variable names directly (no Keras layers, no name mapping
shared with dmenet), and uses the original's own resize op (nearest, align_corners=True), so it
can judge whether dmenet's Keras B reproduces the original.
"""
import numpy as np
import tensorflow as tf

ENC = "main_net/defocus_net/encoder"
DEC = "main_net/defocus_net/decoder"
VGG = [(1, 1, 3, 64), (1, 2, 64, 64), (2, 1, 64, 128), (2, 2, 128, 128)]
VGG += [(3, i, 128 if i == 1 else 256, 256) for i in range(1, 5)]
VGG += [(4, i, 256 if i == 1 else 512, 512) for i in range(1, 5)]
VGG += [(5, i, 512, 512) for i in range(1, 5)]


def _decoder_convs():
    """(block, conv, k, in, out, bn) for every decoder conv, in the original's order."""
    convs = [("u4_aux", "1", 3, 512, 256, True), ("u4_aux", "2", 3, 256, 1, True)]
    for block, skip_in, width, aux_width in (("u3", 1024, 256, 128), ("u2", 512, 128, 64), ("u1", 256, 64, 32)):
        convs += [(block, "1", 3, skip_in, width, True), (block, "2", 3, width, width, True), (block, "3", 3, width, width, True)]
        convs += [(f"{block}_aux", "1", 3, width, aux_width, True), (f"{block}_aux", "2", 3, aux_width, 1, True)]
    convs += [("u0", "_init", 3, 128, 64, True)]
    convs += [("u0_aux", "1", 3, 64, 32, True), ("u0_aux", "2", 3, 32, 1, True)]
    for i in range(7):
        convs += [("u0", f"_res{i}", 1, 64, 64, True), ("u0", f"{i}_1", 3, 64, 64, True), ("u0", f"{i}_2", 3, 64, 64, True)]
    convs += [("uf", "1", 3, 64, 64, True), ("uf", "2", 3, 64, 32, True), ("uf", "3", 3, 32, 1, False)]
    return convs


def inference_shapes():
    """Every tensor the original's inference graph reads, new-style names, with its shape."""
    shapes = {}
    for block, conv, cin, cout in VGG:
        shapes[f"{ENC}/conv{block}_{conv}/kernel:0"] = (3, 3, cin, cout)
        shapes[f"{ENC}/conv{block}_{conv}/bias:0"] = (cout,)
    for block, tag, k, cin, cout, bn in _decoder_convs():
        shapes[f"{DEC}/{block}/c{tag}/kernel:0"] = (k, k, cin, cout)
        shapes[f"{DEC}/{block}/c{tag}/bias:0"] = (cout,)
        if bn:
            for name in ("beta", "moving_mean", "moving_variance"):
                shapes[f"{DEC}/{block}/b{tag}/{name}:0"] = (cout,)
    return shapes


def random_checkpoint(seed=0, old_names=False, training_extras=True):
    """A random checkpoint in the official layout, scaled so activations neither vanish nor saturate."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for key, shape in inference_shapes().items():
        if key.endswith("kernel:0"):
            fan_in = np.prod(shape[:3])
            gain = 2.0 if key.startswith(ENC) else 1.5  # the decoder's residual sums grow otherwise
            value = rng.normal(0, np.sqrt(gain / fan_in), shape)
            if "conv1_1" in key:  # the input arrives in [-124, 152]; bring activations to unit scale
                value /= 128.0
        elif key.endswith("moving_variance:0"):
            value = rng.uniform(0.5, 2.0, shape)
        else:
            value = rng.normal(0, 0.1, shape)
        if old_names:
            key = key.replace("/kernel:0", "/W_conv2d:0").replace("/bias:0", "/b_conv2d:0")
        tensors[key] = value.astype(np.float32)
    if training_extras:
        tensors[f"{ENC}/conv6_1/kernel:0"] = rng.normal(size=(3, 3, 512, 64)).astype(np.float32)
        tensors[f"{ENC}/c_logits_1/kernel:0"] = rng.normal(size=(4, 4)).astype(np.float32)
        tensors["main_net/binary_net/l1/c1/kernel:0"] = rng.normal(size=(1, 1, 1, 64)).astype(np.float32)
        tensors["discriminator/feature/h0/c1/kernel:0"] = rng.normal(size=(4, 4, 64, 64)).astype(np.float32)
        tensors[f"{DEC}/u3/c1/kernel:0/Adam"] = np.zeros((3, 3, 1024, 256), np.float32)
    return tensors


def forward(tensors, rgb):
    """The original graph: returns (defocus, [u4, u3, u2, u1, u0 aux], gan_feat) for an NHWC batch."""

    def get(name):
        for candidate in (name, name.replace("/kernel:0", "/W_conv2d:0").replace("/bias:0", "/b_conv2d:0")):
            if candidate in tensors:
                return tf.constant(tensors[candidate])
        raise KeyError(name)

    def conv(x, scope, pad=True):
        if pad:
            x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], "SYMMETRIC")
        return tf.nn.conv2d(x, get(f"{scope}/kernel:0"), 1, "VALID") + get(f"{scope}/bias:0")

    def bn(x, scope, act):
        mean, var, beta = get(f"{scope}/moving_mean:0"), get(f"{scope}/moving_variance:0"), get(f"{scope}/beta:0")
        return act(tf.nn.batch_normalization(x, mean, var, beta, None, 1e-5))

    lrelu = lambda x: tf.nn.leaky_relu(x, 0.2)

    def up(x):
        size = tf.shape(x)[1:3] * 2
        return tf.compat.v1.image.resize_nearest_neighbor(x, size, align_corners=True)

    x = tf.constant(rgb, tf.float32) * 255.0
    red, green, blue = tf.split(x, 3, axis=3)
    x = tf.concat([blue - 103.939, green - 116.779, red - 123.68], axis=3)
    feats = []
    for block, idx, _, _ in VGG:
        if idx == 1 and block > 1:
            x = tf.nn.max_pool2d(x, 2, 2, "SAME")
        x = tf.nn.relu(conv(x, f"{ENC}/conv{block}_{idx}"))
        if (block, idx) in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4)):
            feats.append(x)
    d0, d1, d2, d3, d4 = feats

    def aux(x, block):
        x = bn(conv(x, f"{DEC}/{block}/c1"), f"{DEC}/{block}/b1", lrelu)
        return bn(conv(x, f"{DEC}/{block}/c2"), f"{DEC}/{block}/b2", tf.nn.sigmoid)

    def stage(x, skip, block):
        x = tf.concat([up(x), skip], axis=3)
        for i in (1, 2, 3):
            x = bn(conv(x, f"{DEC}/{block}/c{i}"), f"{DEC}/{block}/b{i}", lrelu)
        return x

    aux_maps = [aux(d4, "u4_aux")]
    n = stage(d4, d3, "u3")
    aux_maps.append(aux(n, "u3_aux"))
    n = stage(n, d2, "u2")
    aux_maps.append(aux(n, "u2_aux"))
    n = stage(n, d1, "u1")
    aux_maps.append(aux(n, "u1_aux"))
    n = tf.concat([up(n), d0], axis=3)
    n = bn(conv(n, f"{DEC}/u0/c_init"), f"{DEC}/u0/b_init", lrelu)
    feature = n
    aux_maps.append(aux(n, "u0_aux"))
    for i in range(7):
        res = bn(conv(n, f"{DEC}/u0/c_res{i}", pad=False), f"{DEC}/u0/b_res{i}", lrelu)
        n = bn(conv(n, f"{DEC}/u0/c{i}_1"), f"{DEC}/u0/b{i}_1", lrelu)
        n = bn(conv(n, f"{DEC}/u0/c{i}_2"), f"{DEC}/u0/b{i}_2", lrelu)
        n = n + res
    n = bn(conv(n, f"{DEC}/uf/c1"), f"{DEC}/uf/b1", lrelu)
    n = bn(conv(n, f"{DEC}/uf/c2"), f"{DEC}/uf/b2", lrelu)
    defocus = tf.nn.sigmoid(conv(n, f"{DEC}/uf/c3"))
    return defocus.numpy(), [a.numpy() for a in aux_maps], feature.numpy()
