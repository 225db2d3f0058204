"""Compiled (numba) kernels on the 25-point stencil of the propagation system, without a sparse matrix.

The fine level of the propagation system is a 5×5 stencil: every pixel meets the pixels at most 2 rows
and 2 columns away. Stored per pixel as its 25 coefficients (H×W×25, no column indices), a product or a
Gauss–Seidel sweep reads about half the bytes of the CSR matrix, and vectors padded by 2 zero pixels on
every side need no bounds checks (a coefficient pointing off the image meets a zero). ``solver`` runs
its fine-level multigrid smoothing and CG products with these kernels.
"""
import numba
import numpy as np

from dmenet.propagation.laplacian import OFFSETS

PAD = 2


def padded_shape(height, width):
    """Shape of a padded vector: 2 zero pixels on every side of the H×W image."""
    return height + 2 * PAD, width + 2 * PAD


def offset_steps(width):
    """Flat steps of the 25 offsets in a padded vector of an image `width` pixels wide."""
    return np.array([dy * (width + 2 * PAD) + dx for dy, dx in OFFSETS], np.int64)


def to_padded(values, height, width, out=None):
    """H·W (or H×W) values → a flat padded vector (zeros around the image)."""
    if out is None:
        out = np.zeros(padded_shape(height, width))
    out.reshape(padded_shape(height, width))[PAD:-PAD, PAD:-PAD] = np.reshape(values, (height, width))
    return out.reshape(-1)


def from_padded(padded, height, width):
    """The H·W image values of a flat padded vector (a copy)."""
    return padded.reshape(padded_shape(height, width))[PAD:-PAD, PAD:-PAD].ravel()


@numba.njit(cache=True, nogil=True, fastmath=True)
def _stencil_product(coefficients, steps, vector, out):
    height, taps, width = coefficients.shape
    padded_width = width + 2 * PAD
    row = np.empty(width)
    for y in range(height):
        base = (y + PAD) * padded_width + PAD
        row[:] = 0.0
        # tap outer, pixel inner over row views (indices provably ≥ 0): contiguous, so the loop vectorises
        for tap in range(taps):
            weights = coefficients[y, tap]
            source = vector[base + steps[tap]:base + steps[tap] + width]
            for x in range(width):
                row[x] += weights[x] * source[x]
        target = out[base:base + width]
        for x in range(width):
            target[x] = row[x]


def stencil_product(coefficients, steps, vector, out):
    """out = A·vector on padded vectors (out's padding is left untouched: keep it zero).

    Args:
        coefficients: H×25×W stencil coefficients, A[p, p + offset] per pixel (``pixel_rows`` of the ``laplacian_stencil``).
        steps: ``offset_steps(W)``.
        vector, out: flat padded float64 vectors (``to_padded``).
    """
    _stencil_product(coefficients, steps, vector, out)
    return out


@numba.njit(cache=True, nogil=True, fastmath=True)
def _gauss_seidel(coefficients, inverse_diagonal, steps, offsets_x, offsets_y, rhs, solution, backward, from_zero):
    height, taps, width = coefficients.shape
    padded_width = width + 2 * PAD
    direction = -1 if backward else 1
    row = np.empty(width)
    for index in range(height):
        y = height - 1 - index if backward else index
        base = (y + PAD) * padded_width + PAD
        given = rhs[base:base + width]
        for x in range(width):
            row[x] = given[x]
        # every tap but the two behind the sweep in this row reads values already final for this row's
        # update (rows above/below, pixels ahead), so they are summed vectorised before the serial part
        for tap in range(taps):
            if offsets_y[tap] == 0 and (offsets_x[tap] == 0 or offsets_x[tap] * direction < 0):
                continue
            if from_zero and (offsets_y[tap] * direction > 0 or (offsets_y[tap] == 0 and offsets_x[tap] * direction > 0)):
                continue  # pixels ahead of a sweep that started from zero are still zero
            weights = coefficients[y, tap]
            source = solution[base + steps[tap]:base + steps[tap] + width]
            for x in range(width):
                row[x] -= weights[x] * source[x]
        near = 12 - direction
        far = 12 - 2 * direction
        # the serial part: the two values just written stay in registers (no store-to-load round trip)
        start = base + width - 1 if backward else base
        latest, earlier = solution[start - direction], solution[start - 2 * direction]
        for column in range(width):
            x = width - 1 - column if backward else column
            value = (row[x] - coefficients[y, far, x] * earlier - coefficients[y, near, x] * latest) * inverse_diagonal[y, x]
            solution[base + x] = value
            earlier, latest = latest, value


def symmetric_gauss_seidel(coefficients, inverse_diagonal, steps, rhs, solution, from_zero=False):
    """One forward then one backward Gauss–Seidel sweep of A·solution = rhs in place (row-major pixel order).

    Args:
        coefficients: H×25×W stencil coefficients.
        inverse_diagonal: H×W float64, 1 / A[p, p].
        steps: ``offset_steps(W)``.
        rhs, solution: flat padded float64 vectors; solution is updated in place.
        from_zero: solution is all zero on entry (the forward sweep then skips the taps ahead of it).
    """
    _gauss_seidel(coefficients, inverse_diagonal, steps, _OFFSETS_X, _OFFSETS_Y, rhs, solution, False, from_zero)
    _gauss_seidel(coefficients, inverse_diagonal, steps, _OFFSETS_X, _OFFSETS_Y, rhs, solution, True, False)
    return solution


_OFFSETS_Y = np.array([dy for dy, _ in OFFSETS], np.int64)
_OFFSETS_X = np.array([dx for _, dx in OFFSETS], np.int64)
assert OFFSETS[12] == (0, 0) and OFFSETS[11] == (0, -1) and OFFSETS[10] == (0, -2)
