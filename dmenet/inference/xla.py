"""Whether B's inference call is compiled with XLA (``tf.function(jit_compile=True)``).

On a CPU in fp32, TensorFlow's graph runs each of B's 3×3 convolutions as a symmetric pad (a full
copy of the feature map: 17 % of B's time on a 640×480 photo) followed by a oneDNN convolution. XLA
fuses the padding, bias and activations into the convolution loops: B took 5.1 s instead of 7.0 s on
a 640×480 photo and 15.1 s instead of 20.5 s on a 992×928 tile window, with the same peak memory
(1.84 against 1.79 GB), on this project's 2-core CPU; σ differs from the graph's by float rounding.
XLA compiles once per input shape (about 3 s for B): the windows of a large photo share one shape,
and a photo collection repeats a few (504 CUHK photos have 39 sizes after padding to multiples of 16).

``auto`` therefore uses XLA for fp32 on CPUs only. bf16 stays on the graph, whose oneDNN kernels
compute bfloat16 natively where the CPU can; on GPUs the graph runs cuDNN. Neither was compared with
XLA here.
"""
XLA_CHOICES = ("auto", "on", "off")


def resolve_xla(requested, precision):
    """(use XLA?, why) for B's inference call.

    Args:
        requested: "auto", "on" or "off" (also True/False).
        precision: the precision B runs in, "fp32" or "bf16".

    Returns:
        (bool, reason): the reason is recorded in summary.json.

    Example:
        >>> resolve_xla("auto", "fp32")
        (True, 'auto: fp32 on a CPU, where XLA fuses the padding and activations into the convolutions')
    """
    if requested in (True, "on"):
        return True, "requested"
    if requested in (False, "off"):
        return False, "requested"
    if requested != "auto":
        raise ValueError(f"--xla must be one of {', '.join(XLA_CHOICES)}, not {requested!r}")
    if precision != "fp32":
        return False, "auto: bf16 runs through TensorFlow's oneDNN kernels"
    from dmenet.inference.precision import gpu_compute_capabilities

    if gpu_compute_capabilities():
        return False, "auto: on a GPU the graph runs cuDNN"
    return True, "auto: fp32 on a CPU, where XLA fuses the padding and activations into the convolutions"
