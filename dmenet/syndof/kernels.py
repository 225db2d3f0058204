"""Gaussian defocus kernels as MATLAB's fspecial builds them, and their exact separable form.

fspecial('gaussian', [s s], σ) zeroes entries below eps·max, normalises, and SYNDOF crops it to its
nonzero support. The entries it zeroes are < 2.2e-16 of the peak, so the outer product of the
normalised 1-D Gaussian over the same support differs from it by < 1e-13 in every output: the blur
can run as two 1-D passes.
"""
import functools

import numpy as np

EPS = np.finfo(np.float64).eps


def sigma_for_coc(coc):
    """Gaussian σ (px) for a CoC diameter (px): σ = (coc − 1)/4; no blur for coc ≤ 1."""
    return max(float(coc) - 1.0, 0.0) / 4.0


def fspecial_gaussian(size, sigma):
    """MATLAB fspecial('gaussian', [size size], sigma), cropped to its nonzero support as SYNDOF does."""
    half = (size - 1) / 2.0
    x = np.arange(size) - half
    kernel = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2.0 * sigma * sigma))
    kernel[kernel < EPS * kernel.max()] = 0
    kernel /= kernel.sum()
    rows, cols = np.nonzero(kernel)
    return kernel[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


@functools.lru_cache(maxsize=256)
def separable_gaussian(coc, max_coc):
    """1-D taps (normalised) whose outer product is the cropped fspecial kernel for this CoC."""
    sigma = sigma_for_coc(coc)
    half = (max_coc - 1) / 2.0
    x = np.arange(max_coc) - half
    taps = np.exp(-(x**2) / (2.0 * sigma * sigma))
    # The 2-D support's bounding box: the axis entries that survive the eps·max cut (peak 1·1).
    peak = taps.max()
    keep = taps * peak >= EPS * peak * peak
    taps = taps[np.flatnonzero(keep)[0] : np.flatnonzero(keep)[-1] + 1]
    taps = taps / taps.sum()
    taps.setflags(write=False)
    return taps


@functools.lru_cache(maxsize=64)
def tap_offsets(length):
    """Input offset of each tap in imfilter(…, 'same', 'conv'): the flipped kernel is anchored at its
    element floor((L+1)/2) (1-based), so tap m (0-based) reads the input at i + L − floor((L+1)/2) − m.
    (Read-only and cached: it is asked for once per layer.)"""
    offsets = length - (length + 1) // 2 - np.arange(length)
    offsets.setflags(write=False)
    return offsets


def tap_reach(length):
    """(lowest, highest) input offset of `tap_offsets(length)`, as ints."""
    high = length - (length + 1) // 2
    return high - length + 1, high


def symmetric_index(index, size):
    """MATLAB/NumPy 'symmetric' padding: …, 1, 0 | 0, 1, …, n−1 | n−1, n−2, …"""
    period = 2 * size
    index = np.mod(index, period)
    return np.where(index < size, index, period - 1 - index)
