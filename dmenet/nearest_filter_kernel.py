"""Compiled (numba) loop of ``dmenet.nearest_filters``: SciPy's NI_Correlate1D sums, in its order.

numba is not asked for fast-math, so nothing is reassociated or fused into multiply-adds: each output
rounds exactly as SciPy's C loop does. The loops run over neighbouring outputs innermost (each output
keeps its own sum, so that vectorises without reordering any sum).
The kernels run from their cached machine code (``dmenet.native_kernels``), so they make no array:
the caller passes lines along the last axis as 2-D views.
"""
from dmenet.native_kernels import kernel


@kernel("f8[:, ::1], f8[::1], i8, f8[:, ::1]")
def correlate_contiguous_lines(padded, weights, symmetry, out):
    """Filter along the last axis of padded (lines × (length + taps − 1)) into out (lines × length),
    C-contiguous float64, with the taps and symmetry of ``correlate_lines``."""
    taps = weights.shape[0]
    centre = taps // 2
    lines, length = out.shape
    for line in range(lines):
        source = padded[line]
        target = out[line]
        if symmetry != 0:
            for i in range(length):
                target[i] = source[i + centre] * weights[centre]
            for k in range(centre):
                weight = weights[k]
                mirror = taps - 1 - k
                if symmetry > 0:
                    for i in range(length):
                        target[i] += (source[i + k] + source[i + mirror]) * weight
                else:
                    for i in range(length):
                        target[i] += (source[i + k] - source[i + mirror]) * weight
        else:
            for i in range(length):
                target[i] = source[i + taps - 1] * weights[taps - 1]
            for k in range(taps - 1):
                weight = weights[k]
                for i in range(length):
                    target[i] += source[i + k] * weight


@kernel("f8[:, :, ::1], f8[::1], i8, f8[:, :, ::1]")
def correlate_lines(padded, weights, symmetry, out):
    """SciPy's correlation of every line of padded (outer × (length + taps − 1) × inner) along axis 1
    (with inner = 1, ``correlate_contiguous_lines`` on the 2-D views is faster).

    Args:
        padded: C-contiguous float64, the lines with len(weights)//2 + origin replicated samples before
            and the rest of the taps after.
        weights: C-contiguous float64 taps.
        symmetry: +1 / −1 for (anti)symmetric odd-length taps, summed pairwise; 0 for tap by tap.
        out: C-contiguous float64 outer × length × inner, overwritten.
    """
    taps = weights.shape[0]
    centre = taps // 2
    outer, length, inner = out.shape
    for o in range(outer):
        for i in range(length):
            target = out[o, i]
            if symmetry != 0:
                centre_row = padded[o, i + centre]
                for j in range(inner):
                    target[j] = centre_row[j] * weights[centre]
                for k in range(centre):
                    weight = weights[k]
                    low, high = padded[o, i + k], padded[o, i + taps - 1 - k]
                    if symmetry > 0:
                        for j in range(inner):
                            target[j] += (low[j] + high[j]) * weight
                    else:
                        for j in range(inner):
                            target[j] += (low[j] - high[j]) * weight
            else:
                last = padded[o, i + taps - 1]
                for j in range(inner):
                    target[j] = last[j] * weights[taps - 1]
                for k in range(taps - 1):
                    weight = weights[k]
                    row = padded[o, i + k]
                    for j in range(inner):
                        target[j] += row[j] * weight
