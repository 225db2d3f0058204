"""B's speed, bf16 accuracy cost and training memory on any Keras backend, written for GPUs without TensorFlow.

    # here (TensorFlow backend): pack the weights (float16) and a few real photos into one small file
    python -m dmenet.bench.gpu_portable pack --weights RUN/blur_net.weights.h5 --output .gpucarry/pack.npz
    # on the GPU machine (JAX backend), with the pack carried there
    KERAS_BACKEND=jax python -m dmenet.bench.gpu_portable run --pack .gpucarry/pack.npz --json OUT/results.json
    # tiny smoke check on any machine
    python -m dmenet.bench.gpu_portable pack --width 0.125 --count 2 --size 64x64 --output /tmp/tiny.npz
    python -m dmenet.bench.gpu_portable run --pack /tmp/tiny.npz --size 64x64 --tile 64 --peak-shape 1x16x16x16

`run` reports, for each precision (fp32; under JAX also fp32 with 'highest' matmul/conv precision,
since JAX's default lets Hopper/Ampere GPUs compute float32 convolutions in TF32; and Keras'
"mixed_bfloat16" with B's last σ layers in float32, as the product runs it):
  * ms per photo (batch 1) and per batch of tiles, best and median of the timed calls;
  * B's achieved GFLOP/s, with FLOPs counted analytically (2·H·W·Cin·Cout·kh·kw per convolution,
    shapes from Keras' symbolic shape inference; BN, activations and padding not counted);
  * the practical peak: one large plain 3×3 convolution (keras.ops.conv) in the same precision;
  * the bf16/fp32 speed-up; with a pack, |Δσ| of bf16 (and of fp32-default) against fp32-highest
    on the packed photos with the same float16-rounded weights; under JAX, the compiled memory of
    one training-step gradient of B in fp32 and bf16.
Imports only keras and numpy (and jax when Keras runs on it).

Seen on one H100 80GB HBM3 (JAX 0.11.2, Keras 3.15.1, 2026-11-22; demo-trained weights): 480x640 photo
fp32-highest 34.0 ms, fp32-default (TF32) 7.8 ms, bf16 5.6 ms; 4 tiles 512² 101.6 / 22.5 / 16.4 ms;
bf16 against fp32-highest: mean |Δσ| 0.027 px, max 0.45 px; gradient of batch 3×240² 2.9 GiB fp32, 1.6 GiB bf16.
"""
import argparse
import json
import math
import pathlib
import statistics
import sys
import time

import numpy as np

from dmenet.bench import SHARED_DATA

SHARED_PHOTOS = SHARED_DATA / "cuhk_train" / "image"
FLOAT16_LIMIT = 60000.0  # tensors with larger magnitudes stay float32 in the pack (float16 overflows at 65504)


class GpuBenchError(ValueError):
    """A bad argument or pack file; the message names the file and the fix."""


def _parse_size(text):
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, e.g. 480x640, not {text!r}") from None
    if height % 16 or width % 16 or height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"{text}: height and width must be positive multiples of 16 (B pools 4×)")
    return height, width


def _parse_shape(text):
    try:
        shape = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NxHxWxC, e.g. 8x256x256x256, not {text!r}") from None
    if len(shape) != 4 or min(shape) <= 0:
        raise argparse.ArgumentTypeError(f"{text}: expected four positive sizes NxHxWxC")
    return shape


def _backend():
    import keras

    return keras.backend.backend()


def build_b(precision, width=1.0):
    """B in "fp32" or "bf16" (mixed_bfloat16, final σ layers float32), as the product builds it."""
    from dmenet.inference.precision import dtype_policy_scope, keep_output_in_float32
    from dmenet.networks.blur_net import build_blur_net

    with dtype_policy_scope(precision):
        model = build_blur_net(width=width)
    return keep_output_in_float32(model) if precision == "bf16" else model


def defocus_only(model):
    """The part of B that inference needs: image → defocus (the auxiliary heads are training-only)."""
    import keras

    return keras.Model(model.input, model.get_layer("defocus").output, name=f"{model.name}_defocus")


def conv_flops(model, input_shape):
    """Analytic FLOPs of every Conv2D in `model` (nested models included) for one call on `input_shape`.

    Args:
        model: a functional Keras model.
        input_shape: (N, H, W, C) of its input.

    Returns:
        list of (layer name, FLOPs), FLOPs = 2·N·Ho·Wo·Cout·Cin·kh·kw / groups.

    Example:
        >>> sum(f for _, f in conv_flops(defocus_only(build_b("fp32")), (1, 480, 640, 3)))
    """
    import keras

    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if not convs and not nested:
        return []
    # A nested model's `.input` is its own Input; the tensor the outer graph feeds it is on its call node.
    fed = [layer._inbound_nodes[0].input_tensors[0] for layer in nested]
    probe = keras.Model(model.input, [layer.output for layer in convs] + fed)
    shapes = probe(keras.KerasTensor(input_shape))
    shapes = shapes if isinstance(shapes, (list, tuple)) else [shapes]
    counted = []
    for layer, out in zip(convs, shapes[:len(convs)]):
        n, h, w, cout = out.shape
        kh, kw = layer.kernel_size
        cin = layer.kernel.shape[2]  # per group
        counted.append((layer.name, 2 * n * h * w * cout * cin * kh * kw))
    for layer, inp in zip(nested, shapes[len(convs):]):
        counted += [(f"{layer.name}/{name}", flops) for name, flops in conv_flops(layer, tuple(inp.shape))]
    return counted


# --- packing (runs where the full checkpoint is) -------------------------------------------------

def _center_crop(array, height, width):
    top, left = (array.shape[0] - height) // 2, (array.shape[1] - width) // 2
    return array[top:top + height, left:left + width]


def pack(args):
    """Weights as float16 (same order as model.get_weights()), their encoding and real photos in one .npz."""
    from dmenet.units import NORMALIZED

    if args.weights:
        from dmenet.weights.checkpoints import load_blur_net

        model, encoding, metadata = load_blur_net(args.weights)
        width = 1.0
    else:  # random weights: only for smoke checks of the machinery
        model, encoding, metadata, width = build_b("fp32", args.width), NORMALIZED, {"source": "random init"}, args.width
    arrays, kept32 = {}, []
    for i, value in enumerate(model.get_weights()):
        value = np.asarray(value, np.float32)
        if np.abs(value).max(initial=0.0) > FLOAT16_LIMIT:
            kept32.append(i)
            arrays[f"w{i:04d}"] = value
        else:
            arrays[f"w{i:04d}"] = value.astype(np.float16)
    photos, names = _pick_photos(pathlib.Path(args.photos), args.count, *args.size)
    info = {"encoding": encoding.to_dict(), "metadata": metadata, "width": width, "float32_tensors": kept32,
            "photos": names, "weights_file": str(args.weights or "")}
    output = pathlib.Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    from dmenet.files.images import atomic_path

    with atomic_path(output) as temporary:
        with open(temporary, "wb") as f:
            np.savez_compressed(f, info=np.array(json.dumps(info)), photos=photos, **arrays)
    size = output.stat().st_size / 2**20
    print(f"wrote {output} ({size:.1f} MiB): {len(arrays)} weight tensors ({len(kept32)} kept float32), "
          f"{len(names)} photos {args.size[0]}x{args.size[1]}, encoding {encoding.description}")
    return 0


def _pick_photos(folder, count, height, width):
    """`count` real photos at least height×width, centre-cropped to it (no resampling), spread over the folder."""
    from dmenet.files.images import ImageReadError, list_images, read_image

    if count == 0:
        return np.zeros((0, height, width, 3), np.uint8), []
    if not folder.is_dir():
        raise GpuBenchError(f"{folder}: no such photo folder; pass --photos DIR (or --count 0)")
    chosen, names = [], []
    candidates = list_images(folder)
    step = max(1, len(candidates) // max(count, 1))
    for path in candidates[::step] + candidates:
        if len(chosen) == count:
            break
        if path.name in names:
            continue
        try:
            image = read_image(path)
        except ImageReadError:
            continue
        if image.shape[0] >= height and image.shape[1] >= width:
            chosen.append(np.round(_center_crop(image, height, width) * 255).astype(np.uint8))
            names.append(path.name)
    if len(chosen) < count:
        raise GpuBenchError(f"{folder}: only {len(chosen)} photos of at least {height}x{width}; pass a smaller --size or --count")
    return np.stack(chosen), names


def read_pack(path):
    """(weights list in float32, info dict, photos uint8 N×H×W×3) from a file written by `pack`."""
    path = pathlib.Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            info = json.loads(str(data["info"]))
            keys = sorted(k for k in data.files if k.startswith("w"))
            weights = [data[k].astype(np.float32) for k in keys]
            photos = data["photos"]
    except (OSError, KeyError, ValueError) as error:
        raise GpuBenchError(f"{path}: not a pack written by `gpu_portable pack` ({error}); write one with that command") from None
    return weights, info, photos


def _set_weights(model, weights, source):
    shapes = [tuple(v.shape) for v in model.weights]
    if len(shapes) != len(weights) or any(s != w.shape for s, w in zip(shapes, weights)):
        raise GpuBenchError(f"{source}: its weights do not fit this B (width differs?); pack again with the same --width")
    model.set_weights(weights)


# --- timing -----------------------------------------------------------------------------------

class Runner:
    """Compiled callables per backend: jax.jit over stateless calls under JAX, Keras' own elsewhere."""

    def __init__(self):
        self.backend = _backend()
        self.compiled_inference = {}
        if self.backend == "jax":
            import jax

            self.jax = jax

    def matmul_precision(self, variant):
        """Context for JAX's default matmul/conv precision: 'highest' = true fp32, 'default' may use TF32."""
        import contextlib

        if self.backend != "jax" or variant == "default":
            return contextlib.nullcontext()
        return self.jax.default_matmul_precision(variant)

    def inference_for(self, label, model):
        """The compiled defocus-only B of one variant, made once so speed and accuracy share compilations."""
        if label not in self.compiled_inference:
            self.compiled_inference[label] = self.inference(defocus_only(model))
        return self.compiled_inference[label]

    def inference(self, model):
        """f(x) → defocus, compiled once per input shape."""
        if self.backend == "jax":
            trainable = [v.value for v in model.trainable_variables]
            frozen = [v.value for v in model.non_trainable_variables]
            jitted = self.jax.jit(lambda t, n, x: model.stateless_call(t, n, x, training=False)[0])
            return lambda x: jitted(trainable, frozen, x)
        return lambda x: model(x, training=False)

    def plain_conv(self):
        import keras

        if self.backend == "jax":
            return self.jax.jit(lambda x, k: keras.ops.conv(x, k, padding="same"))
        return lambda x, k: keras.ops.conv(x, k, padding="same")

    def sync(self, value):
        import keras

        if self.backend == "jax":
            return self.jax.block_until_ready(value)
        return keras.ops.convert_to_numpy(keras.ops.cast(value[(0,) * len(value.shape)], "float32"))  # forces the computation

    def to_device(self, array, dtype="float32"):
        import keras

        return keras.ops.convert_to_tensor(array, dtype=dtype)


def time_calls(runner, function, arguments, repeats):
    """(first call incl. compilation, best, median) in seconds."""
    started = time.perf_counter()
    runner.sync(function(*arguments))
    first = time.perf_counter() - started
    runner.sync(function(*arguments))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        runner.sync(function(*arguments))
        times.append(time.perf_counter() - started)
    return first, min(times), statistics.median(times)


def _variants(runner):
    """(label, model precision, matmul precision) for each way of running B that is measured."""
    if runner.backend == "jax":
        return [("fp32-highest", "fp32", "highest"), ("fp32-default", "fp32", "default"), ("bf16", "bf16", "default")]
    return [("fp32", "fp32", "default"), ("bf16", "bf16", "default")]


def speed(args, runner, models, results):
    rng = np.random.default_rng(0)
    peak_shape = args.peak_shape
    features = rng.standard_normal(peak_shape).astype(np.float32)
    kernel = (rng.standard_normal((3, 3, peak_shape[3], peak_shape[3])) * 0.02).astype(np.float32)
    peak_flops = 2 * math.prod(peak_shape) * peak_shape[3] * 9
    photo = rng.uniform(size=(1, *args.size, 3)).astype(np.float32)
    tiles = rng.uniform(size=(args.tile_batch, args.tile, args.tile, 3)).astype(np.float32)
    infer_fp32 = defocus_only(models["fp32"])
    flops = {"photo": sum(f for _, f in conv_flops(infer_fp32, photo.shape)),
             "tiles": sum(f for _, f in conv_flops(infer_fp32, tiles.shape)),
             "photo_with_aux_heads": sum(f for _, f in conv_flops(models["fp32"], photo.shape))}
    results["flops"] = flops
    results["peak_conv"] = {"shape": list(peak_shape), "kernel": [3, 3, peak_shape[3], peak_shape[3]], "flops": peak_flops}
    conv = runner.plain_conv()
    rows = {}
    for label, precision, matmul in _variants(runner):
        dtype = "bfloat16" if precision == "bf16" else "float32"
        row = {}
        with runner.matmul_precision(matmul):
            x, k = runner.to_device(features, dtype), runner.to_device(kernel, dtype)
            first, best, median = time_calls(runner, conv, (x, k), args.repeats)
            row["peak_gflops"] = peak_flops / best / 1e9
            row["peak_ms"] = best * 1e3
            del x, k
            infer = runner.inference_for(label, models[precision])
            for case, array in (("photo", photo), ("tiles", tiles)):
                first, best, median = time_calls(runner, infer, (runner.to_device(array),), args.repeats)
                row[case] = {"first_s": first, "best_ms": best * 1e3, "median_ms": median * 1e3,
                             "gflops": flops[case] / best / 1e9}
                row[case]["of_peak"] = row[case]["gflops"] / row["peak_gflops"]
        rows[label] = row
        print(f"{label:13s} peak conv {row['peak_gflops']:9.0f} GFLOP/s | "
              + " | ".join(f"{case}: best {row[case]['best_ms']:7.2f} ms median {row[case]['median_ms']:7.2f} ms "
                           f"{row[case]['gflops']:8.0f} GFLOP/s = {100 * row[case]['of_peak']:4.1f}% of peak"
                           for case in ("photo", "tiles")), flush=True)
    speedups = {}
    for base in [b for b in ("fp32-highest", "fp32-default", "fp32") if b in rows]:
        speedups[f"bf16_vs_{base}"] = {case: rows[base][case]["best_ms"] / rows["bf16"][case]["best_ms"]
                                       for case in ("photo", "tiles")}
        speedups[f"bf16_vs_{base}"]["peak_conv"] = rows["bf16"]["peak_gflops"] / rows[base]["peak_gflops"]
    results["speed"] = rows
    results["speedups"] = speedups
    print(f"B FLOPs: photo {args.size[0]}x{args.size[1]} {flops['photo'] / 1e9:.1f} GFLOP (with the training-only aux heads "
          f"{flops['photo_with_aux_heads'] / 1e9:.1f}), {args.tile_batch} tiles {args.tile}² {flops['tiles'] / 1e9:.1f} GFLOP")
    for name, values in speedups.items():
        print(f"speed-up {name}: photo {values['photo']:.2f}×, tiles {values['tiles']:.2f}×, plain conv {values['peak_conv']:.2f}×")


def accuracy(args, runner, models, encoding, photos, names, results):
    """|Δσ| of each variant against the first (fp32, highest precision under JAX), photo by photo."""
    if len(photos) == 0:
        return
    variants = _variants(runner)
    sigmas = {}
    for label, precision, matmul in variants:
        with runner.matmul_precision(matmul):
            infer = runner.inference_for(label, models[precision])
            sigmas[label] = [encoding.to_sigma(np.asarray(infer(runner.to_device(p[None].astype(np.float32) / 255.0)),
                                                          np.float32)[0, ..., 0]) for p in photos]
    reference = variants[0][0]
    report = {"reference": reference, "sigma_unit": encoding.description, "photos": names,
              "mean_sigma_px": [float(s.mean()) for s in sigmas[reference]]}
    for label, _, _ in variants[1:]:
        differences = [np.abs(a - b) for a, b in zip(sigmas[label], sigmas[reference])]
        report[label] = {"mean_abs_dsigma_px": float(np.mean([d.mean() for d in differences])),
                         "max_abs_dsigma_px": float(max(d.max() for d in differences)),
                         "p99_abs_dsigma_px": float(np.percentile(np.concatenate([d.ravel() for d in differences]), 99)),
                         "per_photo_mean": [float(d.mean()) for d in differences],
                         "per_photo_max": [float(d.max()) for d in differences]}
        print(f"{label} vs {reference} over {len(photos)} photos {photos.shape[1]}x{photos.shape[2]} "
              f"(mean σ {np.mean(report['mean_sigma_px']):.3f} px): mean |Δσ| {report[label]['mean_abs_dsigma_px']:.5f} px, "
              f"99th pct {report[label]['p99_abs_dsigma_px']:.4f} px, max {report[label]['max_abs_dsigma_px']:.4f} px", flush=True)
    results["accuracy"] = report


def training_memory(args, runner, models, results):
    """Compiled memory and time of one gradient of an L2 loss on B's defocus output (JAX only)."""
    if runner.backend != "jax":
        print("training memory: measured only under the JAX backend (compiled memory_analysis); skipped")
        return
    import keras

    jax = runner.jax
    n, size = args.train_batch, args.train_size
    rng = np.random.default_rng(1)
    x = jax.numpy.asarray(rng.uniform(size=(n, size, size, 3)).astype(np.float32))
    y = jax.numpy.asarray(rng.uniform(size=(n, size, size, 1)).astype(np.float32))
    report = {"batch": n, "crop": size}
    for label, precision, matmul in _variants(runner):
        model = models[precision]

        def loss(trainable, frozen, x, y, model=model):
            outputs, frozen = model.stateless_call(trainable, frozen, x, training=True)
            defocus = keras.ops.cast(outputs["defocus"], "float32")
            return keras.ops.mean(keras.ops.square(defocus - y)), frozen

        with runner.matmul_precision(matmul):
            step = jax.jit(jax.value_and_grad(loss, has_aux=True))
            trainable = [v.value for v in model.trainable_variables]
            frozen = [v.value for v in model.non_trainable_variables]
            compiled = step.lower(trainable, frozen, x, y).compile()
            memory = compiled.memory_analysis()
            first, best, median = time_calls(runner, compiled, (trainable, frozen, x, y), max(3, args.repeats // 2))
        parts = {k: int(getattr(memory, k)) for k in ("argument_size_in_bytes", "output_size_in_bytes",
                                                      "temp_size_in_bytes", "alias_size_in_bytes")}
        parts["total_gib"] = (parts["argument_size_in_bytes"] + parts["output_size_in_bytes"]
                              + parts["temp_size_in_bytes"] - parts["alias_size_in_bytes"]) / 2**30
        parts["step_best_ms"], parts["step_median_ms"] = best * 1e3, median * 1e3
        report[label] = parts
        print(f"gradient step {label} batch {n}×{size}²: arguments {parts['argument_size_in_bytes'] / 2**30:.2f} GiB, "
              f"outputs {parts['output_size_in_bytes'] / 2**30:.2f} GiB, temporaries {parts['temp_size_in_bytes'] / 2**30:.2f} GiB, "
              f"total {parts['total_gib']:.2f} GiB; best {best * 1e3:.1f} ms, median {median * 1e3:.1f} ms", flush=True)
    results["training_memory"] = report


def run(args):
    import keras

    from dmenet.units import NORMALIZED, DefocusEncoding

    runner = Runner()
    results = {"backend": runner.backend, "keras": keras.__version__, "args": {k: v for k, v in vars(args).items() if k != "func"}}
    if runner.backend == "jax":
        results["jax"] = runner.jax.__version__
        results["devices"] = [str(d) + " " + getattr(d, "device_kind", "") for d in runner.jax.devices()]
    print(f"Keras {keras.__version__} on {runner.backend}; devices: {results.get('devices', 'backend default')}", flush=True)
    weights, info, photos = (read_pack(args.pack) if args.pack else (None, {"width": args.width}, np.zeros((0, 1, 1, 3), np.uint8)))
    width = info["width"]
    models = {p: build_b(p, width) for p in ("fp32", "bf16")}
    if weights is not None:
        for model in models.values():
            _set_weights(model, weights, args.pack)
    encoding = DefocusEncoding.from_dict(info["encoding"]) if "encoding" in info else NORMALIZED
    results["width"], results["weights"] = width, info.get("weights_file", "random init")
    if not args.skip_speed:
        speed(args, runner, models, results)
    if photos.shape[1:3] != tuple(args.size) and len(photos):
        print(f"note: packed photos are {photos.shape[1]}x{photos.shape[2]}, used as packed")
    accuracy(args, runner, models, encoding, photos, info.get("photos", []), results)
    if not args.skip_training:
        training_memory(args, runner, models, results)
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1))
        print(f"wrote {path}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dmenet.bench.gpu_portable", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="float16 weights + real photos in one .npz (run where the checkpoint is)")
    p.add_argument("--weights", help="a .weights.h5 of B (omitted: random weights of --width, for smoke checks)")
    p.add_argument("--width", type=float, default=1.0, help="network width without --weights (default: %(default)s)")
    p.add_argument("--photos", default=str(SHARED_PHOTOS), help="folder of real photos (default: %(default)s)")
    p.add_argument("--count", type=int, default=8, help="photos to pack (default: %(default)s)")
    p.add_argument("--size", type=_parse_size, default=(480, 640), help="HxW crop of each photo (default: 480x640)")
    p.add_argument("--output", required=True, help="the .npz to write")
    p.set_defaults(func=pack)
    r = sub.add_parser("run", help="measure speed, bf16 accuracy cost and training memory")
    r.add_argument("--pack", help="a pack from `pack` (weights and photos); omitted: random weights, no accuracy")
    r.add_argument("--width", type=float, default=1.0, help="network width without --pack (default: %(default)s)")
    r.add_argument("--size", type=_parse_size, default=(480, 640), help="HxW of the timed photo (default: 480x640)")
    r.add_argument("--tile", type=int, default=512, help="side of the timed tiles (default: %(default)s)")
    r.add_argument("--tile-batch", type=int, default=4, help="tiles per timed call (default: %(default)s)")
    r.add_argument("--peak-shape", type=_parse_shape, default=(8, 256, 256, 256),
                   help="NxHxWxC of the plain 3×3 C→C convolution timed as the peak (default: 8x256x256x256)")
    r.add_argument("--repeats", type=int, default=20, help="timed calls per case (default: %(default)s)")
    r.add_argument("--train-batch", type=int, default=3, help="batch of the gradient step (default: %(default)s)")
    r.add_argument("--train-size", type=int, default=240, help="crop side of the gradient step (default: %(default)s)")
    r.add_argument("--skip-speed", action="store_true")
    r.add_argument("--skip-training", action="store_true")
    r.add_argument("--json", help="also write all numbers to this JSON file")
    r.set_defaults(func=run)
    args = parser.parse_args(argv)
    if args.func is run and (args.tile % 16 or args.tile <= 0 or args.tile_batch < 1 or args.repeats < 1):
        parser.error("--tile must be a positive multiple of 16; --tile-batch and --repeats at least 1")
    try:
        return args.func(args)
    except GpuBenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
