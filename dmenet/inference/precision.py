"""Which floating-point precision the networks run in: fp32, or bfloat16 where the hardware computes it natively.

The rule for ``auto`` is the same for both methods: bf16 exactly where the device TensorFlow runs on
computes it natively (CPUs with AVX512-BF16/AMX, GPUs of compute capability 8.0 and later), fp32
everywhere else. Elsewhere TensorFlow emulates bf16 and gains nothing. Where it is native, bf16 halves
the bytes moved and doubles the dot-product rate, and its measured accuracy cost is negligible for
both networks (``python -m dmenet.bench precision-cost``; numbers in docs/inference.md, "Precision"):
  * DMENet's B (two trained checkpoints, 50 CUHK photos): mean |Δσ| 1.2–1.4 % of the mean σ, largest
    0.9 px on any pixel; CUHK AP and accuracy change by at most 0.0003.
  * Park'17's patch classifier (official weights, the same photos): about 99 % of the edge patches
    keep their class and σ moves by about 0.3 % of its mean. Only the classifier runs in bf16 (the
    hand-crafted stages stay float64), so Park'17 gains less than B, but loses nothing measurable either.

Weights stay float32 (Keras' ``mixed_bfloat16`` policy); only the computation is rounded. The layers
that produce the output stay in float32: B's final 1-channel convolution and sigmoid (so the σ map
keeps its full resolution), Park'17's last dense layer and softmax (so class scores do not tie).
"""
import contextlib
import pathlib

PRECISIONS = ("auto", "fp32", "bf16")
KERAS_POLICY = {"fp32": "float32", "bf16": "mixed_bfloat16"}
# Cheap layers whose output is the σ map itself: rounding them to 8 significant bits would show.
FLOAT32_OUTPUT_LAYERS = ("uf_c3_pad", "uf_c3", "defocus")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
GPU_BF16_CAPABILITY = (8, 0)


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The instruction-set flags this CPU reports in /proc/cpuinfo (an empty set where unknown)."""
    try:
        text = pathlib.Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_bf16_flags(cpuinfo="/proc/cpuinfo"):
    """The native-bfloat16 instruction flags this CPU reports (empty where unknown or absent)."""
    flags = cpu_flags(cpuinfo)
    return [flag for flag in CPU_BF16_FLAGS if flag in flags]


def gpu_compute_capabilities():
    """(major, minor) for each GPU TensorFlow sees; empty on CPU-only machines."""
    import tensorflow as tf

    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        capabilities.append(tuple(capability) if capability else (0, 0))
    return capabilities


def native_bf16():
    """(True/False, why): does the device TensorFlow will use compute bfloat16 natively?"""
    capabilities = gpu_compute_capabilities()
    if capabilities:  # TensorFlow places B on the GPU, so the CPU does not matter
        if all(c >= GPU_BF16_CAPABILITY for c in capabilities):
            return True, f"GPU compute capability {min(capabilities)[0]}.{min(capabilities)[1]} has bfloat16 tensor cores"
        return False, "GPU compute capability below 8.0 has no native bfloat16"
    flags = cpu_bf16_flags()
    if flags:
        return True, f"this CPU computes bfloat16 natively ({', '.join(flags)})"
    return False, "this CPU has no native bfloat16 (no avx512_bf16 or amx_bf16)"


def resolve_precision(requested="auto"):
    """The precision to run and why, e.g. ``("fp32", "auto: this CPU has no native bfloat16 …")``.

    One rule for DMENet's B and Park'17's classifier alike: ``auto`` is bf16 where the device computes
    it natively (``native_bf16``), else fp32 (the module docstring gives the measured costs).

    Args:
        requested: "auto", "fp32" or "bf16".

    Returns:
        (precision, reason): precision is "fp32" or "bf16".

    Example:
        >>> resolve_precision("fp32")
        ('fp32', 'requested')
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {requested!r}")
    if requested != "auto":
        return requested, "requested"
    native, why = native_bf16()
    return ("bf16" if native else "fp32"), f"auto: {why}"


@contextlib.contextmanager
def dtype_policy_scope(precision):
    """Build Keras layers in `precision` inside the block; the global policy is restored after.

    Example:
        >>> with dtype_policy_scope("bf16"):
        ...     model = build_blur_net()
    """
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(KERAS_POLICY[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def keep_output_in_float32(model):
    """Run the final σ layers of a bf16-built B in float32 (their weights are float32 already)."""
    import keras

    for name in FLOAT32_OUTPUT_LAYERS:
        try:
            layer = model.get_layer(name)
        except ValueError:
            continue
        layer.dtype_policy = keras.dtype_policies.DTypePolicy("float32")
    return model


def model_precision(model):
    """"bf16" or "fp32": the precision B's convolutions compute in."""
    return "bf16" if "bfloat16" in str(model.get_layer("encoder").get_layer("block1_conv1").compute_dtype) else "fp32"
