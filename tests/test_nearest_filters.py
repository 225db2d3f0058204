"""SciPy-free 1-D filters and Canny hysteresis: bit for bit what scipy.ndimage gives.

The Canny of Park'17 and Zhuo & Sim and Zhuo & Sim's gradient ratio were checked against the official
code through scipy.ndimage.correlate1d / convolve1d / label; these tests pin their replacements to
SciPy's exact results (assert_array_equal, not a tolerance).
"""
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import scipy.ndimage

from dmenet.nearest_filters import convolve1d_nearest, correlate1d_nearest
from dmenet.park17 import edges
from dmenet.park17.hysteresis_kernel import connected_to_strong
from dmenet.zhuo11 import blur_ratio

# Tiny and one-line images, next to kernels up to 17 taps: the border replicates past the image's far end.
SHAPES = [(3, 3), (1, 9), (9, 1), (2, 5), (17, 23)]
LENGTHS = range(1, 18)


def _weights(rng, length, kind):
    weights = rng.standard_normal(length)
    if kind == "symmetric":
        return (weights + weights[::-1]) / 2
    if kind == "antisymmetric":
        return (weights - weights[::-1]) / 2
    return weights


@pytest.mark.parametrize("kind", ["general", "symmetric", "antisymmetric"])
@pytest.mark.parametrize("shape", SHAPES)
def test_correlate_and_convolve_equal_scipy_for_every_origin_and_axis(shape, kind):
    rng = np.random.default_rng([*shape, len(kind)])
    image = rng.random(shape)
    for length in LENGTHS:
        weights = _weights(rng, length, kind)
        for axis in (0, 1, -1):
            for origin in range(-(length // 2), (length - 1) // 2 + 1):
                np.testing.assert_array_equal(
                    correlate1d_nearest(image, weights, axis=axis, origin=origin),
                    scipy.ndimage.correlate1d(image, weights, axis=axis, mode="nearest", origin=origin))
                np.testing.assert_array_equal(
                    convolve1d_nearest(image, weights, axis=axis, origin=origin),
                    scipy.ndimage.convolve1d(image, weights, axis=axis, mode="nearest", origin=origin))


def test_symmetry_is_decided_to_scipy_epsilon():
    """Taps one ulp off symmetric are summed pairwise (as SciPy does), 1e-15 off tap by tap: both exact."""
    rng = np.random.default_rng(1)
    image = rng.random((30, 40)) * 1e3
    base = _weights(rng, 9, "symmetric")
    one_ulp = base.copy()
    one_ulp[-1] = np.nextafter(one_ulp[-1], np.inf)
    beyond = base.copy()
    beyond[-1] += 1e-15
    anti_one_ulp = _weights(rng, 9, "antisymmetric")
    anti_one_ulp[0] = np.nextafter(anti_one_ulp[0], -np.inf)
    for weights in (one_ulp, beyond, anti_one_ulp):
        for axis in (0, 1):
            np.testing.assert_array_equal(correlate1d_nearest(image, weights, axis=axis),
                                          scipy.ndimage.correlate1d(image, weights, axis=axis, mode="nearest"))


def test_three_dimensional_and_non_contiguous_images_equal_scipy():
    rng = np.random.default_rng(2)
    volume = rng.random((4, 7, 6))
    for weights in (rng.random(5), _weights(rng, 7, "symmetric"), rng.random(4)):
        for axis in range(3):
            np.testing.assert_array_equal(correlate1d_nearest(volume, weights, axis=axis, origin=1),
                                          scipy.ndimage.correlate1d(volume, weights, axis=axis, mode="nearest", origin=1))
    transposed = rng.random((40, 30)).T  # Fortran-ordered: the kernel must still see C-ordered lines
    weights = rng.random(6)
    for axis in (0, 1):
        np.testing.assert_array_equal(convolve1d_nearest(transposed, weights, axis=axis),
                                      scipy.ndimage.convolve1d(transposed, weights, axis=axis, mode="nearest"))


def test_bad_arguments_raise_value_errors():
    image = np.zeros((5, 5))
    with pytest.raises(ValueError, match="origin"):
        correlate1d_nearest(image, np.ones(3), origin=2)
    with pytest.raises(ValueError, match="origin"):
        convolve1d_nearest(image, np.ones(4), origin=-3)
    with pytest.raises(ValueError, match="weights"):
        correlate1d_nearest(image, [])
    with pytest.raises(ValueError, match="axis"):
        correlate1d_nearest(image, np.ones(3), axis=2)


def test_the_code_s_own_kernels_equal_scipy():
    """The Canny taps (16 and 8, even, through imfilter's anchor) and Zhuo & Sim's (11 and 15, odd)."""
    rng = np.random.default_rng(3)
    grey = scipy.ndimage.gaussian_filter(rng.random((37, 53)), 1.0)
    for sigma in (math.sqrt(2.0), 1.0):
        gauss, deriv = edges._canny_kernels(sigma)
        for kernel in (gauss, deriv):
            length = len(kernel)
            origin = (length - 1) // 2 - length // 2
            for axis in (0, 1):
                np.testing.assert_array_equal(
                    edges._imfilter_conv_replicate(grey, kernel, axis),
                    scipy.ndimage.correlate1d(grey, kernel[::-1], axis=axis, mode="nearest", origin=origin))
    for scale in (1.0, 1.5):
        derivative, gaussian = blur_ratio._derivative_of_gaussian_taps(scale)
        along_x = scipy.ndimage.convolve1d(scipy.ndimage.convolve1d(grey, gaussian, axis=0, mode="nearest"),
                                           derivative, axis=1, mode="nearest")
        along_y = scipy.ndimage.convolve1d(scipy.ndimage.convolve1d(grey, gaussian, axis=1, mode="nearest"),
                                           derivative, axis=0, mode="nearest")
        np.testing.assert_array_equal(blur_ratio.gradient_magnitude(grey, scale), np.sqrt(along_x ** 2 + along_y ** 2))


# ---------------------------------------------------------------- hysteresis


def _scipy_selection(weak, strong):
    labels, count = scipy.ndimage.label(weak, structure=np.ones((3, 3), dtype=bool))
    selected = np.zeros(count + 1, dtype=bool)
    selected[labels[strong]] = True
    selected[0] = False
    return selected[labels]


def _spiral(size):
    grid = np.zeros((size, size), dtype=bool)
    top, left, bottom, right = 0, 0, size - 1, size - 1
    while top <= bottom and left <= right:
        grid[top, left:right + 1] = True
        grid[top:bottom + 1, right] = True
        grid[bottom, left:right + 1] = True
        grid[top + 2:bottom + 1, left] = True
        top, left, bottom, right = top + 2, left + 2, bottom - 2, right - 2
    return grid


def _masks():
    rng = np.random.default_rng(4)
    yield "dense", rng.random((60, 70)) < 0.5
    yield "sparse", rng.random((60, 70)) < 0.08
    yield "spiral", _spiral(41)
    checker = (np.add.outer(np.arange(30), np.arange(30)) % 2 == 0)  # connected through corners only
    yield "diagonal only", checker
    staircase = np.zeros((50, 50), dtype=bool)
    staircase[np.arange(50), np.arange(50)] = True
    staircase[np.arange(49), 49 - np.arange(49)] = True
    yield "long diagonal chains", staircase
    yield "one row", rng.random((1, 40)) < 0.6
    yield "empty", np.zeros((8, 9), dtype=bool)


@pytest.mark.parametrize("name, weak", list(_masks()), ids=[name for name, _ in _masks()])
def test_hysteresis_selects_what_scipy_label_selects(name, weak):
    rng = np.random.default_rng(5)
    magnitude = rng.random(weak.shape)
    for low, high in ((0.0, 0.999), (0.1, 0.9), (0.3, 0.5), (0.0, 0.0)):
        expected = _scipy_selection(weak & (magnitude > low), weak & (magnitude > low) & (magnitude > high))
        np.testing.assert_array_equal(edges._hysteresis(weak, magnitude, low, high), expected)
    # A single strong seed reaches exactly the component it sits in.
    if weak.any():
        seed = np.zeros_like(weak)
        seed.flat[np.flatnonzero(weak)[len(np.flatnonzero(weak)) // 2]] = True
        kept = np.zeros(weak.shape, bool)
        connected_to_strong(np.ascontiguousarray(weak), seed, kept, np.empty(int(weak.sum()), np.int64))
        np.testing.assert_array_equal(kept, _scipy_selection(weak, seed))


def test_zhuo11_edge_stages_never_import_scipy_ndimage():
    """Importing the stages loads neither SciPy nor numba; running them loads no scipy.ndimage (~0.15–0.4 s)."""
    code = ("import sys, numpy as np, dmenet.zhuo11.edges as e, dmenet.zhuo11.blur_ratio as b, dmenet.zhuo11.bilateral; "
            "print(sorted(m for m in ('scipy', 'numba') if m in sys.modules)); "
            "grey = np.random.default_rng(0).random((20, 24)); b.edge_blur(grey, e.edge_map(grey)); "
            "print('scipy.ndimage' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=pathlib.Path(__file__).resolve().parents[1])  # this checkout's dmenet
    assert result.stdout.split("\n")[:2] == ["[]", "False"]
