"""Whether B's inference call is compiled with XLA (``tf.function(jit_compile=True)``).

On a CPU, TensorFlow's graph used to run each of B's 3×3 convolutions as a symmetric pad (a full
copy of the feature map) followed by a oneDNN convolution, and XLA, which fuses the padding, bias
and activations into its convolution loops, was faster on an AVX2 CPU: 5.1 s instead of 7.0 s for
B in fp32 on a 640×480 photo (README "Inference"). The graph inference runs now is streamlined
(dmenet.inference.streamline: the padding is one plain gather, the rest fused by oneDNN), and on
CPUs with AVX-512 it beats XLA: 2.40 s against 3.04 s in fp32 on an Intel Xeon with AMX (issue 20),
and about 1.1× less CPU time than XLA on this project's AMD Zen 4 (docs/performance.md, "The streamlined inference graph").
XLA compiles once per input shape (about 3 s for B): the windows of a large photo share one shape,
and a photo collection repeats a few (504 CUHK photos have 39 sizes after padding to multiples of 16).

``auto`` therefore uses XLA only for fp32 on CPUs without AVX-512 (where it was measured faster;
the streamlined graph was not measured on such a CPU). bf16 stays on the graph, whose oneDNN kernels
compute bfloat16 natively where the CPU can (XLA was 3× slower there); on GPUs the graph runs cuDNN.
"""
XLA_CHOICES = ("auto", "on", "off")
GRAPH_FASTER_WITH = "avx512f"  # the CPU flag under which the streamlined graph was measured faster than XLA


def resolve_xla(requested, precision):
    """(use XLA?, why) for B's inference call.

    Args:
        requested: "auto", "on" or "off" (also True/False).
        precision: the precision B runs in, "fp32" or "bf16".

    Returns:
        (bool, reason): the reason is recorded in summary.json.

    Example:
        >>> resolve_xla("auto", "fp32")  # on an AVX-512 CPU
        (False, 'auto: on an AVX-512 CPU the streamlined graph is faster than XLA')
    """
    if requested in (True, "on"):
        return True, "requested"
    if requested in (False, "off"):
        return False, "requested"
    if requested != "auto":
        raise ValueError(f"--xla must be one of {', '.join(XLA_CHOICES)}, not {requested!r}")
    if precision != "fp32":
        return False, "auto: bf16 runs through TensorFlow's oneDNN kernels"
    from dmenet.inference.precision import cpu_flags, gpu_compute_capabilities

    if gpu_compute_capabilities():
        return False, "auto: on a GPU the graph runs cuDNN"
    if GRAPH_FASTER_WITH in cpu_flags():
        return False, "auto: on an AVX-512 CPU the streamlined graph is faster than XLA"
    return True, "auto: fp32 on a CPU without AVX-512, where XLA fuses the padding and activations into the convolutions"
