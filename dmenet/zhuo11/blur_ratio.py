"""Stages 3–5 of Zhuo & Sim: re-blur gradients at two scales, their ratio, and σ at edge pixels (ZHUO11.md §3–5).

A step edge blurred by σ and re-blurred by Gaussians of σ1 and σ2 has gradient maxima in the ratio
R² = (σ² + σ2²)/(σ² + σ1²), so σ = sqrt((R²σ1² − σ2²)/(1 − R²)). The official code measures both
gradients with sampled derivative-of-Gaussian kernels (σ1 = std, σ2 = 1.5·std), not the paper's
un-smoothed original; the paper's formula is the limit σ1 → 0.
"""
import math

import numpy as np

from dmenet.nearest_filters import convolve1d_nearest
from dmenet.zhuo11.errors import Zhuo11Error
from dmenet.zhuo11.params import DEFAULT_PARAMS


def _derivative_of_gaussian_taps(scale):
    """1-D factors of the official kernels: K_x(dy, dx) = derivative(dx) · gaussian(dy), not normalised.

    The half-width is 2·ceil(2s) + 1 (5 for s = 1, 7 for s = 1.5); the sampled values are used as they
    are, because their exact sum sets the ratio.
    """
    half = 2 * math.ceil(2 * scale) + 1
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    gaussian = np.exp(-offsets ** 2 / (2 * scale ** 2))
    derivative = -offsets / (2 * math.pi * scale ** 4) * gaussian
    return derivative, gaussian


def gradient_magnitude(grey, scale):
    """|∇(g ∗ G_s)| by true convolution with the sampled derivative-of-Gaussian kernels, border replicated.

    Args:
        grey: H×W float image.
        scale: the Gaussian's σ.

    Returns:
        H×W float64 sqrt(Gx² + Gy²).

    Example:
        >>> step = np.zeros((40, 40)); step[:, 20:] = 1.0
        >>> int(np.argmax(gradient_magnitude(step, 1.0)[20]))  # largest beside the step
        19
    """
    derivative, gaussian = _derivative_of_gaussian_taps(scale)
    grey = np.asarray(grey, dtype=np.float64)
    along_x = convolve1d_nearest(convolve1d_nearest(grey, gaussian, axis=0), derivative, axis=1)
    along_y = convolve1d_nearest(convolve1d_nearest(grey, gaussian, axis=1), derivative, axis=0)
    return np.sqrt(along_x ** 2 + along_y ** 2)


def edge_blur(grey, edges, params=DEFAULT_PARAMS):
    """σ at edge pixels from the two re-blur gradients, clamped to max_blur; 0 elsewhere.

    Args:
        grey: H×W grey image in [0, 1].
        edges: H×W bool edge map.
        params: Zhuo11Params (reblur_std, max_blur).

    Returns:
        H×W float64 sparse map (σ in pixels; 0 = no estimate).

    Example:
        >>> step = np.zeros((40, 40)); step[:, 20:] = 1.0
        >>> from dmenet.nearest_filters import correlate1d_nearest
        >>> taps = np.exp(-0.125 * np.arange(-8.0, 9.0) ** 2)  # a σ = 2 Gaussian, 4σ each side
        >>> blurred = correlate1d_nearest(step, taps / taps.sum(), axis=1)
        >>> edges = np.zeros((40, 40), bool); edges[:, 19] = True
        >>> round(float(edge_blur(blurred, edges)[20, 19]), 2)  # sampled kernels: near, not at, 2
        2.04
    """
    grey = np.asarray(grey, dtype=np.float64)
    edges = np.asarray(edges, dtype=bool)
    if edges.shape != grey.shape:
        raise Zhuo11Error(f"edge_blur: edge map {edges.shape} and grey image {grey.shape} differ in size")
    first, second = params.reblur_std, params.second_std
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = gradient_magnitude(grey, first) / gradient_magnitude(grey, second)
    # NaN (0/0) and Inf (x/0) fail the comparisons, like the official code's
    measured = edges & (ratio > params.RATIO_MIN) & (ratio <= params.RATIO_SCALE)
    sparse = np.zeros(grey.shape)
    r2 = ratio[measured] ** 2
    sparse[measured] = np.sqrt((r2 * first ** 2 - second ** 2) / (1 - r2))
    np.minimum(sparse, params.max_blur, out=sparse)
    return sparse
