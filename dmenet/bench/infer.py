"""Inference speed of B against this machine's own convolution peak, measured in the same run.

    python -m dmenet.bench infer [--height 480 --width 640 --repeats 5]

Prints ms per image, B's achieved GFLOP/s (FLOPs counted by TensorFlow's profiler on B's graph),
the GFLOP/s of one large plain 3×3 convolution (the practical peak), and their ratio. The two are
timed alternately so that load from other processes affects both alike.
"""
import argparse
import statistics
import time

import numpy as np


def graph_flops(concrete_function):
    """Floating-point operations of one call, as counted by TensorFlow's profiler."""
    from tensorflow.python.profiler import model_analyzer, option_builder

    options = option_builder.ProfileOptionBuilder(option_builder.ProfileOptionBuilder.float_operation())
    options = options.with_empty_output().build()
    return model_analyzer.profile(graph=concrete_function.graph, options=options).total_float_ops


def _best_of(function, argument, repeats):
    function(argument)  # warm-up: tracing, allocation, oneDNN primitive creation
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        np.asarray(function(argument))
        times.append(time.perf_counter() - started)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each (default: %(default)s)")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from dmenet.networks.blur_net import build_blur_net

    model = build_blur_net()
    image = tf.random.uniform((1, args.height, args.width, 3))
    blur_net = tf.function(lambda x: model(x, training=False)["defocus"])
    blur_flops = graph_flops(blur_net.get_concrete_function(image))

    features = tf.random.normal((1, args.height // 4, args.width // 4, 256))
    kernel = tf.random.normal((3, 3, 256, 256)) * 0.02
    plain_conv = tf.function(lambda x: tf.nn.conv2d(x, kernel, 1, "SAME"))
    conv_flops = graph_flops(plain_conv.get_concrete_function(features))

    blur_times, conv_times = [], []
    for _ in range(args.repeats):  # alternate, so both see the same machine load
        blur_times += _best_of(blur_net, image, 1)
        conv_times += _best_of(plain_conv, features, 3)
    blur_best, conv_best = min(blur_times), min(conv_times)
    blur_rate, conv_rate = blur_flops / blur_best / 1e9, conv_flops / conv_best / 1e9

    print(f"B on {args.width}×{args.height}: {blur_flops / 1e9:.1f} GFLOP per image")
    print(f"  time per image: best {blur_best * 1e3:.0f} ms, median {statistics.median(blur_times) * 1e3:.0f} ms")
    print(f"  achieved: {blur_rate:.1f} GFLOP/s")
    print(f"plain 3×3 conv 256→256 on {features.shape[2]}×{features.shape[1]}: {conv_flops / 1e9:.2f} GFLOP, "
          f"best {conv_best * 1e3:.1f} ms = {conv_rate:.1f} GFLOP/s (measured peak)")
    print(f"ratio B / peak: {blur_rate / conv_rate:.2f}  (target ≥ 0.5)")
    return 0
