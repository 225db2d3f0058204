"""1-D correlation and convolution with the border replicated, bit-identical to SciPy's, without importing SciPy.

``scipy.ndimage.correlate1d(image, weights, axis, mode="nearest", origin=o)`` and ``convolve1d`` are what
MATLAB's ``imfilter(…, 'replicate')`` ports here were written against; importing scipy.ndimage for them
costs 0.15–0.4 s of a fresh process, more than a small photo's whole Canny. SciPy's C loop
(``NI_Correlate1D``) rounds in an order of its own, and matching it to the last bit keeps the Canny
edges and the Zhuo & Sim ratios identical:

- odd-length weights symmetric within DBL_EPSILON (w[c + j] ≈ w[c − j]) are summed as the centre tap,
  then (x[−j] + x[+j])·w[c − j] pairs from the outermost pair inwards; antisymmetric ones the same with
  (x[−j] − x[+j]);
- any other weights start from the last tap and then add taps first to second-to-last.

Every product and sum is a plain multiply and add, so the compiled loop
(``dmenet.nearest_filter_kernel``, numba without fast-math: no reassociation, no fused multiply-add)
rounds exactly as SciPy's wheels do.
"""
import numpy as np

# SciPy's symmetry test compares mirrored taps to DBL_EPSILON in absolute terms.
_DBL_EPSILON = np.finfo(np.float64).eps


def _symmetry(weights):
    """+1 symmetric, −1 antisymmetric, 0 neither: SciPy's test, only for odd lengths.

    Written as ``not any(|…| > ε)`` rather than ``all(|…| ≤ ε)`` so that NaN taps pass, as in C.
    """
    if len(weights) % 2 == 0:
        return 0
    centre = len(weights) // 2
    after, before = weights[centre + 1:], weights[centre - 1::-1]
    if not np.any(np.abs(after - before) > _DBL_EPSILON):
        return 1
    if not np.any(np.abs(after + before) > _DBL_EPSILON):
        return -1
    return 0


def _checked_weights(caller, weights, origin):
    """The weights as contiguous float64 once they and the origin are valid; else one ValueError naming the caller."""
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    if weights.ndim != 1 or len(weights) == 0:
        raise ValueError(f"{caller}: weights must be a non-empty 1-D sequence, got shape {weights.shape}")
    length = len(weights)
    # The same range for both functions: convolve1d's mirrored origin maps it onto itself.
    if not -(length // 2) <= origin <= (length - 1) // 2:
        raise ValueError(f"{caller}: origin must lie in [{-(length // 2)}, {(length - 1) // 2}] for {length} weights, got {origin}")
    return weights


def correlate1d_nearest(image, weights, axis=-1, origin=0):
    """``scipy.ndimage.correlate1d(image, weights, axis, mode="nearest", origin=origin)``, bit for bit.

    out[i] = Σ_k weights[k] · image[i + k − len(weights)//2 − origin] along `axis`, indices outside the
    image clamped to its first or last sample.

    Args:
        image: float array (computed and returned in float64), any number of dimensions ≥ 1.
        weights: 1-D taps, at least one.
        axis: the axis to filter along.
        origin: shift of the taps, −(len(weights)//2) ≤ origin ≤ (len(weights)−1)//2, as in SciPy.

    Returns:
        float64 array of the image's shape.

    Example:
        >>> correlate1d_nearest(np.array([2.0, 8.0, 0.0, 4.0]), [1.0, 3.0])
        array([ 8., 26.,  8., 12.])
    """
    image = np.asarray(image, dtype=np.float64)
    weights = _checked_weights("correlate1d_nearest", weights, origin)
    if image.ndim == 0:
        raise ValueError("correlate1d_nearest: the image must have at least one dimension")
    if not -image.ndim <= axis < image.ndim:
        raise ValueError(f"correlate1d_nearest: axis {axis} is out of range for a {image.ndim}-D image")
    before = len(weights) // 2 + origin
    after = len(weights) - 1 - before
    axis = axis % image.ndim
    # As (outer, along, inner) lines: the kernel then needs one signature for every shape and axis.
    along = image.shape[axis]
    lines = image.reshape(int(np.prod(image.shape[:axis])), along, int(np.prod(image.shape[axis + 1:])))
    out = np.empty(lines.shape)
    if out.size == 0:
        return out.reshape(image.shape)
    # np.pad(mode="edge") by hand: always C-ordered, as the compiled kernel's one signature expects.
    padded = np.empty((lines.shape[0], before + along + after, lines.shape[2]))
    padded[:, before:before + along] = lines
    padded[:, :before] = lines[:, :1]
    padded[:, before + along:] = lines[:, -1:]
    from dmenet import nearest_filter_kernel  # its kernels load on first use

    if lines.shape[2] == 1:  # along the last axis: each line contiguous, so its loop vectorises
        nearest_filter_kernel.correlate_contiguous_lines(padded.reshape(padded.shape[:2]), weights, _symmetry(weights),
                                                         out.reshape(out.shape[:2]))
    else:
        nearest_filter_kernel.correlate_lines(padded, weights, _symmetry(weights), out)
    return out.reshape(image.shape)


def convolve1d_nearest(image, weights, axis=-1, origin=0):
    """``scipy.ndimage.convolve1d(image, weights, axis, mode="nearest", origin=origin)``, bit for bit.

    The correlation with the reversed weights, its origin mirrored (and moved one tap for even lengths)
    the way SciPy does it.

    Args:
        image, weights, axis, origin: as for ``correlate1d_nearest`` (the same range of origins).

    Returns:
        float64 array of the image's shape.

    Example:
        >>> convolve1d_nearest(np.array([2.0, 8.0, 0.0, 4.0]), [1.0, 3.0])
        array([14., 24.,  4., 16.])
    """
    weights = _checked_weights("convolve1d_nearest", weights, origin)
    origin = -origin - (1 if len(weights) % 2 == 0 else 0)
    return correlate1d_nearest(image, weights[::-1], axis=axis, origin=origin)
