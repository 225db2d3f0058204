"""Stage 1 of Park et al. (CVPR 2017): the V channel and the multi-scale MATLAB-style Canny edge map.

The official code calls MATLAB's ``edge(gray, 'canny', [low high])`` (R2011a–R2016 behaviour, PARK17.md
§2.4) once per patch scale and labels each pixel with the highest scale whose thresholds it passes. Both
scales share the smoothing, the gradients and the non-maximum suppression (only the thresholds differ),
so ``multiscale_edge_map`` computes those once.
"""
import numpy as np

from dmenet.nearest_filters import correlate1d_nearest
from dmenet.park17.errors import Park17Error
from dmenet.park17.params import DEFAULT_PARAMS

CANNY_SIGMA = np.sqrt(2.0)
# Largest gradient magnitude still treated as no gradient at all (see _canny_gradients).
_ROUNDING_NOISE = 1e-12


def value_channel(rgb):
    """V of MATLAB's rgb2hsv: the per-pixel maximum of R, G and B.

    Args:
        rgb: H×W×3 float array in [0, 1] (im2double of the photo).

    Returns:
        H×W float64 array.

    Example:
        >>> value_channel(np.array([[[0.2, 0.7, 0.1]]]))
        array([[0.7]])
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise Park17Error(f"value_channel: expected an H×W×3 RGB array, got shape {rgb.shape}")
    return rgb.max(axis=2).astype(np.float64, copy=False)


def _check_gray(gray):
    gray = np.asarray(gray, dtype=np.float64)
    if gray.ndim != 2 or min(gray.shape) < 3:
        raise Park17Error(
            f"Canny edges need a 2-D gray image of at least 3×3 pixels, got shape {gray.shape}")
    return gray


def _canny_kernels(sigma=CANNY_SIGMA):
    """MATLAB's (pre-R2017) Canny Gaussian and derivative taps: 8·ceil(σ) taps at half-integer offsets."""
    length = 8 * int(np.ceil(sigma))
    half = (length - 1) / 2
    x = np.arange(-half, half + 1)
    gauss = np.exp(-(x ** 2) / (2 * sigma ** 2)) / (np.sqrt(2 * np.pi) * sigma)
    gauss = gauss / gauss.sum()
    deriv = np.gradient(gauss)
    positive, negative = deriv > 0, deriv < 0
    deriv[positive] = deriv[positive] / deriv[positive].sum()
    deriv[negative] = deriv[negative] / abs(deriv[negative].sum())
    return gauss, deriv


def _imfilter_conv_replicate(image, kernel, axis):
    """imfilter(image, kernel, 'conv', 'replicate') along one axis.

    A true convolution whose anchor, for an even-length kernel, sits at 1-based index floor((L+1)/2) of
    the reversed kernel: out[i] = Σ_j kernel[j] · image[i + L/2 − j] (same as conv2 'same').
    """
    length = len(kernel)
    # correlate1d puts tap k on image[i + k − length//2 − origin]; we need image[i + k − (length−1)//2].
    origin = (length - 1) // 2 - length // 2
    return correlate1d_nearest(image, kernel[::-1], axis=axis, origin=origin)


def _canny_gradients(gray, sigma=CANNY_SIGMA):
    """Smoothed gradients GX (along columns), GY (along rows) and the max-normalised magnitude."""
    gauss, deriv = _canny_kernels(sigma)
    gx = _imfilter_conv_replicate(_imfilter_conv_replicate(gray, gauss, axis=0), deriv, axis=1)
    gy = _imfilter_conv_replicate(_imfilter_conv_replicate(gray, gauss, axis=1), deriv, axis=0)
    magnitude = np.hypot(gx, gy)
    peak = magnitude.max()
    if peak <= _ROUNDING_NOISE:
        # A flat image: the filters' rounding residue (~1e-17) would be max-normalised to 1 and turn
        # every pixel into an edge. Real images (8-bit steps) have peaks above 1e-4.
        return gx, gy, np.zeros_like(magnitude)
    return gx, gy, magnitude / peak


def _local_maxima(gx, gy, magnitude):
    """MATLAB's interpolated 4-sector non-maximum suppression; a pixel kept in any sector is kept.

    Only interior pixels are tested (the outermost rows and columns are never edges).
    """
    # Interior views: c = centre, the others are the 8 neighbours (n = row − 1, s = row + 1,
    # w = col − 1, e = col + 1).
    x, y, m = gx[1:-1, 1:-1], gy[1:-1, 1:-1], magnitude[1:-1, 1:-1]
    m_e, m_w = magnitude[1:-1, 2:], magnitude[1:-1, :-2]
    m_n, m_s = magnitude[:-2, 1:-1], magnitude[2:, 1:-1]
    m_ne, m_nw = magnitude[:-2, 2:], magnitude[:-2, :-2]
    m_se, m_sw = magnitude[2:, 2:], magnitude[2:, :-2]

    keep = np.zeros(m.shape, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_yx = np.abs(y / x)
        ratio_xy = np.abs(x / y)
    sectors = (
        ((y <= 0) & (x > -y)) | ((y >= 0) & (x < -y)),
        ((x > 0) & (-y >= x)) | ((x < 0) & (-y <= x)),
        ((x <= 0) & (x > y)) | ((x >= 0) & (x < y)),
        ((y < 0) & (x <= y)) | ((y > 0) & (x >= y)),
    )
    neighbours = (
        (ratio_yx, m_e, m_ne, m_w, m_sw),
        (ratio_xy, m_n, m_ne, m_s, m_sw),
        (ratio_xy, m_n, m_nw, m_s, m_se),
        (ratio_yx, m_w, m_nw, m_e, m_se),
    )
    for in_sector, (d, a1, b1, a2, b2) in zip(sectors, neighbours):
        idx = np.nonzero(in_sector)
        dd, mm = d[idx], m[idx]
        side1 = a1[idx] * (1 - dd) + b1[idx] * dd
        side2 = a2[idx] * (1 - dd) + b2[idx] * dd
        winners = (mm >= side1) & (mm >= side2)
        keep[idx[0][winners], idx[1][winners]] = True

    full = np.zeros(magnitude.shape, dtype=bool)
    full[1:-1, 1:-1] = keep
    return full


def _hysteresis(local_max, magnitude, low, high):
    """8-connected components of weak pixels (local maxima above `low`) that hold a strong pixel (``bwselect(…, 8)``)."""
    weak = local_max & (magnitude > low)
    strong = weak & (magnitude > high)
    if not strong.any():
        return np.zeros_like(weak)
    from dmenet.park17 import hysteresis_kernel  # its kernels load on first use

    kept = np.zeros(weak.shape, bool)
    stack = np.empty(max(int(np.count_nonzero(weak)), 1), np.int64)
    hysteresis_kernel.connected_to_strong(np.ascontiguousarray(weak), np.ascontiguousarray(strong), kept, stack)
    return kept


def _check_thresholds(low, high):
    if not 0 <= low < high < 1:
        raise Park17Error(
            f"Canny thresholds must satisfy 0 ≤ low < high < 1 (fractions of the peak gradient), "
            f"got low={low}, high={high}")


def matlab_canny(gray, low, high, sigma=CANNY_SIGMA):
    """MATLAB's ``edge(gray, 'canny', [low high], sigma)`` as in R2011a–R2016 (8·ceil(σ) taps).

    Args:
        gray: H×W float image (the V channel in [0, 1]); H, W ≥ 3.
        low, high: hysteresis thresholds as fractions of the maximum gradient magnitude.
        sigma: the Gaussian's σ (MATLAB's default √2 gives 16 taps; σ = 1 gives 8).

    Returns:
        H×W bool edge mask.

    Example:
        >>> image = np.zeros((20, 20)); image[:, 10:] = 1.0
        >>> np.nonzero(matlab_canny(image, 0.1, 0.2)[10])[0]  # 16 taps: half a pixel left of the step
        array([9])
    """
    _check_thresholds(low, high)
    if not 0 < sigma <= 64:
        raise Park17Error(f"Canny sigma must be in (0, 64], got {sigma}")
    gx, gy, magnitude = _canny_gradients(_check_gray(gray), sigma)
    return _hysteresis(_local_maxima(gx, gy, magnitude), magnitude, low, high)


def _scale_edges(gray, lows, highs):
    if len(lows) != len(highs):
        raise Park17Error(f"need one low and one high threshold per scale, got {lows} and {highs}")
    for low, high in zip(lows, highs):
        _check_thresholds(low, high)
    gx, gy, magnitude = _canny_gradients(_check_gray(gray))
    local_max = _local_maxima(gx, gy, magnitude)
    return [_hysteresis(local_max, magnitude, low, high) for low, high in zip(lows, highs)]


def _label_scales(edge_masks):
    edge_map = np.zeros(edge_masks[0].shape, dtype=np.uint8)
    for scale, mask in enumerate(edge_masks, start=1):
        edge_map[mask] = scale  # later scales have higher thresholds: max(k·E_k) = the last one set
    return edge_map


def multiscale_edge_map(gray, low=DEFAULT_PARAMS.edge_low_test, high=DEFAULT_PARAMS.edge_high_test):
    """The test-time edge map of EdgeExtractor.m: max over scales k of k·Canny_k(gray).

    Args:
        gray: H×W V channel in [0, 1].
        low, high: per-scale Canny thresholds (defaults: the official test-time values).

    Returns:
        H×W uint8: 0 = no edge, 1 = big (27×27) patch scale, 2 = small (15×15) patch scale.

    Example:
        >>> rgb = np.random.default_rng(0).random((32, 32, 3))
        >>> edge_map = multiscale_edge_map(value_channel(rgb))
        >>> sorted(np.unique(edge_map).tolist()) in ([0, 1, 2], [0, 1], [0])
        True
    """
    return _label_scales(_scale_edges(gray, tuple(low), tuple(high)))


def balanced_training_edge_map(gray, rng, params=DEFAULT_PARAMS):
    """The training-time edge map (EdgeExtractor.m with fBalance = 1).

    Edges come from the training thresholds; every scale then keeps as many pixels as the scale with
    the fewest, a random subset (drawn with `rng`) of the larger ones.

    Args:
        gray: H×W V channel of the sharp image, in [0, 1].
        rng: numpy.random.Generator used for the subsets.
        params: Park17Params (edge_low_train / edge_high_train).

    Returns:
        H×W uint8 map with labels 0 / 1 / 2 and the same number of pixels for each scale.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> edge_map = balanced_training_edge_map(np.random.default_rng(1).random((40, 40)), rng)
        >>> int((edge_map == 1).sum()) == int((edge_map == 2).sum())
        True
    """
    unbalanced = _label_scales(_scale_edges(gray, tuple(params.edge_low_train),
                                            tuple(params.edge_high_train)))
    height, width = unbalanced.shape
    # Column-major (MATLAB find) order, so the draw picks pixels the way randperm indexes `find`.
    members = [np.flatnonzero(unbalanced.T == scale) for scale in range(1, len(params.edge_low_train) + 1)]
    keep = min(len(m) for m in members)
    balanced = np.zeros_like(unbalanced)
    for scale, column_major in enumerate(members, start=1):
        if len(column_major) > keep:
            column_major = column_major[rng.permutation(len(column_major))[:keep]]
        balanced[column_major % height, column_major // height] = scale
    return balanced
