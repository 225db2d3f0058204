"""Probability-joint bilateral filter of the official code (ProbJBF.m, PARK17.md §9).

At every sparse point p (sps(p) ≠ 0) the official code takes the 27×27 window (zero padding) and
returns Σ w·sps / Σ w with
    w(q) = exp(−|q−p|²/2σs²) · exp(−(G(q)−G(p))²/2σr²) · exp(−(1−conf(q))²/2σp²) · [sps(q) ≠ 0],
G being the red channel of the rolling-guidance output. Other pixels stay 0.

Fast path: the spatial term is separable and the range term factorises as
    exp(−(Gq−Gp)²/2σr²) = exp(−Gp²/2σr²) · exp(−Gq²/2σr²) · Σ_n (Gp·Gq/σr²)^n / n!,
where the first factor cancels in the ratio. With σr = 100 and G centred on its mid-range,
|Gp·Gq/σr²| ≤ 2.5e-5, so four terms of the series are exact to double rounding and the filter
becomes a handful of separable 27-tap convolutions of the whole image. When the series would need
too many terms (a small σr relative to the guide's range), the direct windowed sum is used instead,
vectorised over chunks of points.
"""
import math

import numpy as np
from scipy import ndimage

from dmenet.park17.errors import Park17Error

_SERIES_TOLERANCE = 1e-17
_MAX_SERIES_TERMS = 12
_POINTS_PER_CHUNK = 2048


def _series_terms(bound):
    """Smallest N with bound^N / N! below the tolerance (the first omitted term), or None."""
    term = 1.0
    for order in range(1, _MAX_SERIES_TERMS + 1):
        term *= bound / order
        if term < _SERIES_TOLERANCE:
            return order
    return None


def _point_weights(sps, prb, sigma_probability):
    """Per-neighbour factor that does not depend on the centre: confidence term times [sps ≠ 0]."""
    known = sps != 0
    confidence = prb.astype(np.float64)
    return np.where(known, np.exp(-((1.0 - confidence) ** 2) / (2.0 * sigma_probability ** 2)), 0.0)


def _series_filter(sps, neighbour_weight, guide, radius, sigma_spatial, sigma_range, terms):
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    spatial_taps = np.exp(-(offsets ** 2) / (2.0 * sigma_spatial ** 2))
    scaled = guide / sigma_range
    base = neighbour_weight * np.exp(-0.5 * scaled ** 2)
    # stack [weight·Gq^n, weight·Gq^n·sps] for n < terms and blur them all with the separable window
    stack = np.empty((2 * terms,) + guide.shape)
    power = base
    for order in range(terms):
        stack[2 * order] = power
        stack[2 * order + 1] = power * sps
        power = power * scaled
    for axis in (1, 2):
        stack = ndimage.correlate1d(stack, spatial_taps, axis=axis, mode="constant", cval=0.0)
    numerator = np.zeros(guide.shape)
    denominator = np.zeros(guide.shape)
    centre_power = np.ones(guide.shape)
    for order in range(terms):
        coefficient = centre_power / math.factorial(order)
        denominator += coefficient * stack[2 * order]
        numerator += coefficient * stack[2 * order + 1]
        centre_power = centre_power * scaled
    return numerator, denominator


def _direct_filter(sps, neighbour_weight, guide, radius, sigma_spatial, sigma_range, rows, cols):
    """The windowed sum as written in ProbJBF.m, over chunks of points (bounded memory)."""
    width = 2 * radius + 1
    padded_shape = (guide.shape[0] + 2 * radius, guide.shape[1] + 2 * radius)
    pad = ((radius, radius), (radius, radius))
    padded_guide = np.pad(guide, pad).ravel()
    padded_value = np.pad(neighbour_weight * sps, pad).ravel()
    padded_weight = np.pad(neighbour_weight, pad).ravel()
    dy, dx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    spatial = np.exp(-(dy ** 2 + dx ** 2) / (2.0 * sigma_spatial ** 2)).ravel()
    window = (dy * padded_shape[1] + dx).ravel()
    centres = (rows + radius) * padded_shape[1] + (cols + radius)
    numerator = np.empty(len(rows))
    denominator = np.empty(len(rows))
    chunk = max(1, _POINTS_PER_CHUNK * 729 // (width * width))
    for start in range(0, len(rows), chunk):
        centre = centres[start:start + chunk]
        neighbours = centre[:, None] + window[None, :]
        difference = padded_guide[neighbours] - padded_guide[centre][:, None]
        weight = spatial * np.exp(-(difference ** 2) / (2.0 * sigma_range ** 2))
        numerator[start:start + chunk] = np.einsum("ij,ij->i", weight, padded_value[neighbours])
        denominator[start:start + chunk] = np.einsum("ij,ij->i", weight, padded_weight[neighbours])
    return numerator, denominator


def probability_joint_bilateral(sps, prb, guide_red, radius=13, sigma_spatial=100.0, sigma_range=100.0,
                                sigma_probability=1.0, method="auto"):
    """ProbJBF.m: confidence-weighted joint bilateral average of the sparse σ map, at the sparse points.

    Args:
        sps: H×W sparse σ map (0 = no estimate).
        prb: H×W confidence of each estimate.
        guide_red: H×W guide; the official code uses the red channel of the rolling-guidance output.
        radius: window radius (27×27 window for 13); outside the image counts as no estimate.
        sigma_spatial, sigma_range, sigma_probability: σ of the three Gaussian weights.
        method: "auto" (series when exact to double rounding, else direct), "series" or "direct".

    Returns:
        H×W float64, the filtered σ at the sparse points and 0 elsewhere.

    Example:
        >>> sps = np.zeros((5, 5)); sps[1, 1] = sps[3, 4] = 1.25
        >>> out = probability_joint_bilateral(sps, (sps != 0) * 0.7, np.zeros((5, 5)))
        >>> float(out[1, 1]), float(out[0, 0])
        (1.25, 0.0)
    """
    sps = np.asarray(sps, dtype=np.float64)
    prb = np.asarray(prb)
    guide = np.asarray(guide_red, dtype=np.float64)
    if sps.ndim != 2 or prb.shape != sps.shape or guide.shape != sps.shape:
        raise Park17Error(
            "probability_joint_bilateral: sps, prb and guide_red must be H×W maps of one size, got "
            f"{sps.shape}, {prb.shape}, {np.shape(guide_red)} (pass the red channel of the RGF output)")
    if method not in ("auto", "series", "direct"):
        raise Park17Error(f"probability_joint_bilateral: method must be auto, series or direct, not {method!r}")
    radius = int(radius)
    output = np.zeros(sps.shape)
    rows, cols = np.nonzero(sps)
    if rows.size == 0:
        return output
    neighbour_weight = _point_weights(sps, prb, sigma_probability)
    # range differences are shift-invariant; centring G halves the series' argument
    centred = guide - 0.5 * (float(guide.max()) + float(guide.min()))
    half_range = float(np.abs(centred).max()) / sigma_range
    terms = _series_terms(half_range ** 2)
    if method == "series" and terms is None:
        raise Park17Error(
            "probability_joint_bilateral: sigma_range is too small for the series method; use method='direct'")
    if method == "direct" or (method == "auto" and terms is None):
        numerator, denominator = _direct_filter(
            sps, neighbour_weight, centred, radius, sigma_spatial, sigma_range, rows, cols)
    else:
        numerator, denominator = _series_filter(
            sps, neighbour_weight, centred, radius, sigma_spatial, sigma_range, terms)
        numerator, denominator = numerator[rows, cols], denominator[rows, cols]
    # the centre itself is always a neighbour, so the denominator is positive
    output[rows, cols] = numerator / denominator
    return output
