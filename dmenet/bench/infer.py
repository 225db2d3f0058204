"""Inference speed of B in fp32 and bf16, each against this machine's own peak for that precision.

    python -m dmenet.bench infer [--height 480 --width 640 --repeats 3]
    python -m dmenet.bench infer --weights W --margins            # seam error vs tile margin
    python -m dmenet.bench infer --weights W --precision-cost     # |Δσ| bf16 vs fp32 on real photos
    python -m dmenet.bench infer --tiles 6000x4000 [--precision bf16]  # time a large photo from its tiles

Default: seconds per image for B in fp32 (TensorFlow's graph as before streamlining, the streamlined
graph, and XLA-compiled) and bf16 (as before and streamlined), wall and CPU time, B's achieved
GFLOP/s (FLOPs counted by TensorFlow's profiler on B's graph) against the GFLOP/s of one large plain
3×3 convolution in the same precision (the practical peak), and the speed-ups. All cases are timed
in turn, round after round, so that load from other processes affects each alike; times are medians
over rounds, speed-ups medians of the per-round ratios, GFLOP/s from the best round.
"""
import argparse
import statistics
import time

import numpy as np

from dmenet.bench import SHARED_DATA
from dmenet.cli.runtime import quiet_start

SHARED_PHOTOS = SHARED_DATA / "cuhk_train" / "image"


def graph_flops(concrete_function):
    """Floating-point operations of one call, as counted by TensorFlow's profiler (static shapes needed)."""
    from tensorflow.python.profiler import model_analyzer, option_builder

    options = option_builder.ProfileOptionBuilder(option_builder.ProfileOptionBuilder.float_operation())
    options = options.with_empty_output().build()
    return model_analyzer.profile(graph=concrete_function.graph, options=options).total_float_ops


def _time_once(function, argument):
    """(wall, CPU) seconds of one call; CPU time counts every thread of this process."""
    started, cpu = time.perf_counter(), time.process_time()
    np.asarray(function(argument))
    return time.perf_counter() - started, time.process_time() - cpu


def _blur_net(precision, weights=None):
    from dmenet.inference.precision import dtype_policy_scope, keep_output_in_float32
    from dmenet.networks.blur_net import build_blur_net
    from dmenet.weights.checkpoints import load_blur_net

    if weights:
        return load_blur_net(weights, precision=precision)[0]
    with dtype_policy_scope(precision):
        model = build_blur_net()
    return keep_output_in_float32(model) if precision != "fp32" else model


def _inference_predictor(model, xla, streamline=True, **options):
    """B as inference runs it (BN folded in bf16, streamlined unless asked not to, XLA as asked); its `_forward` is the timed call."""
    from dmenet.inference.tiling import DefocusPredictor

    return DefocusPredictor(model, None, xla=xla, streamline=streamline, **options)


# The paths timed for each precision: (key, label, XLA, streamlined). "today" is the graph before streamlining.
PATHS = {
    "fp32": (("today", "graph, as before", "off", False), ("graph", "graph, streamlined", "off", True), ("xla", "XLA", "on", False)),
    "bf16": (("today", "graph, as before", "off", False), ("graph", "graph, streamlined", "off", True)),
}


def _timed_rounds(cases, repeats):
    """Every case timed once per round, round after round (so that load from other processes affects each alike)."""
    times = {key: [] for key in cases}
    for _ in range(repeats):
        for key, (function, argument) in cases.items():
            times[key].append(_time_once(function, argument))
    return times


def _ratio(times, slow, fast):
    """Median over rounds of slow/fast wall time: robust to load that changes between rounds."""
    return statistics.median(a[0] / b[0] for a, b in zip(times[slow], times[fast]))


def speed(args):
    import tensorflow as tf

    from dmenet.cli.runtime import device_description

    image = tf.random.uniform((1, args.height, args.width, 3))
    features = tf.random.normal((1, args.height // 4, args.width // 4, 256))
    kernel = tf.random.normal((3, 3, 256, 256)) * 0.02
    cases, flops = {}, {}
    for precision, dtype in (("fp32", tf.float32), ("bf16", tf.bfloat16)):
        model = _blur_net(precision, args.weights)
        for key, _, xla, streamline in PATHS[precision]:
            predictor = _inference_predictor(model, xla=xla, streamline=streamline)
            cases[precision, key] = (predictor._forward, image)
        # FLOPs from a trace at this image's size: the predictor's call accepts any size, and the profiler needs static shapes.
        plain = _inference_predictor(model, xla="off", streamline=False).model
        flops[precision, "B"] = graph_flops(tf.function(lambda x, m=plain: m(x, training=False)["defocus"]).get_concrete_function(image))
        cast_kernel, cast_features = tf.cast(kernel, dtype), tf.cast(features, dtype)
        conv = tf.function(lambda x, k=cast_kernel: tf.nn.conv2d(x, k, 1, "SAME"))
        cases[precision, "conv"] = (conv, cast_features)
        flops[precision, "conv"] = graph_flops(conv.get_concrete_function(cast_features))
    for function, argument in cases.values():
        function(argument)  # tracing, allocation, oneDNN primitive creation
    times = _timed_rounds(cases, args.repeats)

    print(device_description())
    print(f"B on {args.width}×{args.height}, {args.repeats} interleaved rounds; wall (CPU) seconds, median over rounds; "
          f"GFLOP/s and / peak from the best round")
    for precision in ("fp32", "bf16"):
        conv_rate = flops[precision, "conv"] / min(t[0] for t in times[precision, "conv"]) / 1e9
        print(f"{precision}: plain 3×3 conv 256→256 peak {conv_rate:.1f} GFLOP/s; B = {flops[precision, 'B'] / 1e9:.1f} GFLOP")
        for key, label, _, _ in PATHS[precision]:
            wall = [t[0] for t in times[precision, key]]
            cpu = statistics.median(t[1] for t in times[precision, key])
            rate = flops[precision, "B"] / min(wall) / 1e9
            speedup = "" if key == "today" else f"; × before {_ratio(times, (precision, 'today'), (precision, key)):.2f}"
            print(f"  {label:20s} median {statistics.median(wall):.3f} s ({cpu:.3f} s CPU), best {min(wall):.3f} s = {rate:.1f} GFLOP/s, "
                  f"B / peak {rate / conv_rate:.2f}{speedup}")
    print(f"fp32 XLA / streamlined graph: {_ratio(times, ('fp32', 'xla'), ('fp32', 'graph')):.2f}× the graph's time")
    print(f"bf16 / fp32 speed-up of B (streamlined graphs): {_ratio(times, ('fp32', 'graph'), ('bf16', 'graph')):.2f}×, "
          f"before {_ratio(times, ('fp32', 'today'), ('bf16', 'today')):.2f}×; plain conv {_ratio(times, ('fp32', 'conv'), ('bf16', 'conv')):.2f}×")
    return 0


def _photos(folder, count):
    from dmenet.files.images import list_images

    photos = list_images(folder)
    if not photos:
        raise SystemExit(f"error: no photos in {folder}; pass --photos DIR")
    step = max(1, len(photos) // count)
    return photos[::step][:count]


def precision_cost(args):
    """|Δσ| between bf16 and fp32 on real photos with the given weights."""
    from dmenet.files.images import read_image
    from dmenet.inference.tiling import DefocusPredictor

    predictors = {p: DefocusPredictor.from_weights(args.weights, precision=p) for p in ("fp32", "bf16")}
    means, maxima, relative = [], [], []
    for path in _photos(args.photos, args.count):
        image = read_image(path)
        sigma = {p: predictor.predict_sigma(image) for p, predictor in predictors.items()}
        difference = np.abs(sigma["bf16"] - sigma["fp32"])
        means.append(float(difference.mean()))
        maxima.append(float(difference.max()))
        relative.append(float(difference.mean() / max(sigma["fp32"].mean(), 1e-6)))
        print(f"  {path.name} {image.shape[1]}×{image.shape[0]}: mean σ {sigma['fp32'].mean():.3f} px, "
              f"|Δσ| mean {means[-1]:.4f} px, max {maxima[-1]:.3f} px")
    print(f"bf16 vs fp32 over {len(means)} photos: mean |Δσ| {np.mean(means):.4f} px "
          f"({100 * np.mean(relative):.2f}% of mean σ), largest |Δσ| {max(maxima):.3f} px")
    return 0


def margins(args):
    """Seam error of tiled inference against the whole photo, for each context margin."""
    from dmenet.files.images import read_image
    from dmenet.inference.tiling import DefocusPredictor
    from dmenet.weights.checkpoints import load_blur_net

    model, encoding, _ = load_blur_net(args.weights)
    photos = _photos(args.photos, args.count)
    core = args.core
    print(f"cores of {core} px; |Δσ| of tiled against whole-photo inference, over {len(photos)} photos")
    means, maxima = {m: [] for m in args.margin_list}, {m: [] for m in args.margin_list}
    for path in photos:
        image = read_image(path)
        whole = DefocusPredictor(model, encoding, tile=2048).predict_sigma(image)
        for margin in args.margin_list:
            tiled = DefocusPredictor(model, encoding, tile=core + 2 * margin, margin=margin).predict_sigma(image)
            difference = np.abs(tiled - whole)
            means[margin].append(float(difference.mean()))
            maxima[margin].append(float(difference.max()))
    for margin in args.margin_list:
        print(f"  margin {margin:3d} px: mean |Δσ| {np.mean(means[margin]):.4f} px, max {max(maxima[margin]):.3f} px "
              f"(compute {((core + 2 * margin) / core) ** 2:.2f}× per core)")
    return 0


def tiles(args):
    """Time a large photo by timing its window (today's path and the new one, interleaved) and multiplying by their count."""
    import tensorflow as tf

    model = _blur_net(args.precision, args.weights)
    predictors = {streamline: _inference_predictor(model, args.xla, streamline, tile=args.tile, margin=args.margin) for streamline in (False, True)}
    new = predictors[True]
    width, height = (int(v) for v in args.tiles.lower().split("x"))
    plan = new.tile_plan(height, width)
    window = tf.random.uniform((1, *plan.window_shape, 3))
    cases = {}
    for streamline, predictor in predictors.items():
        started = time.perf_counter()
        predictor._forward(window)
        label = "streamlined" if predictor.streamlined else "as before"
        print(f"  first call ({label}; tracing, oneDNN primitives and one window): {time.perf_counter() - started:.1f} s")
        cases[streamline] = (predictor._forward, window)
    times = _timed_rounds(cases, args.repeats)
    overhead = plan.computed_pixels / (height * width)
    print(f"{width}×{height} in {args.precision}{' with XLA' if new.xla else ''}: {plan.count} windows of {plan.window_shape[1]}×{plan.window_shape[0]} "
          f"(margin {args.margin}; {overhead:.2f}× the photo's pixels computed)")
    for streamline in (False, True):
        wall = [t[0] for t in times[streamline]]
        cpu = statistics.median(t[1] for t in times[streamline])
        label = "streamlined" if predictors[streamline].streamlined else "as before"
        print(f"  {label:11s} per window: median {statistics.median(wall):.2f} s ({cpu:.2f} s CPU), best {min(wall):.2f} s over {len(wall)}; "
              f"whole photo ≈ {plan.count * statistics.median(wall) / 60:.2f} min (median) / {plan.count * min(wall) / 60:.2f} min (best)")
    print(f"  streamlined / before: {_ratio(times, False, True):.2f}× faster (median of per-round ratios)")
    return 0


def main(argv=None):
    from dmenet.inference.tiling import DEFAULT_MARGIN, DEFAULT_TILE
    from dmenet.inference.xla import XLA_CHOICES

    parser = argparse.ArgumentParser(prog="python -m dmenet.bench infer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (default: %(default)s)")
    parser.add_argument("--weights", help="a checkpoint of B (needed for --margins and --precision-cost)")
    parser.add_argument("--photos", default=str(SHARED_PHOTOS), help="real photos (default: ../shared/data/cuhk_train/image)")
    parser.add_argument("--count", type=int, default=8, help="photos for --margins / --precision-cost")
    parser.add_argument("--margins", action="store_true", help="measure seam error against the tile margin")
    parser.add_argument("--margin-list", type=lambda s: [int(v) for v in s.split(",")], default=[0, 16, 32, 64])
    parser.add_argument("--core", type=int, default=256, help="core size for --margins (default: %(default)s)")
    parser.add_argument("--precision-cost", action="store_true", help="measure |Δσ| of bf16 against fp32")
    parser.add_argument("--tiles", metavar="WxH", help="time the windows of a WxH photo and extrapolate")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="for --tiles")
    parser.add_argument("--xla", choices=XLA_CHOICES, default="auto", help="for --tiles (default: auto, as infer.py)")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE)
    parser.add_argument("--margin", type=int, default=DEFAULT_MARGIN)
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines")
    args = parser.parse_args(argv)
    quiet_start(args.verbose)
    if (args.margins or args.precision_cost) and not args.weights:
        parser.error("--margins and --precision-cost need --weights (a trained B; `python train.py --demo` makes one)")
    if args.margins:
        return margins(args)
    if args.precision_cost:
        return precision_cost(args)
    if args.tiles:
        return tiles(args)
    return speed(args)
