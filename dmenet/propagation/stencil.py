"""Compiled (numba) kernels on the 25-point stencil of the propagation system, without a sparse matrix.

The fine level of the propagation system is a 5×5 stencil: every pixel meets the pixels at most 2 rows
and 2 columns away. Stored per pixel as its 25 coefficients (H×W×25, no column indices), a product or a
Gauss–Seidel sweep reads about half the bytes of the CSR matrix, and vectors padded by 2 zero pixels on
every side need no bounds checks (a coefficient pointing off the image meets a zero). ``solver`` runs
its fine-level multigrid smoothing and CG products with these kernels, and ``laplacian`` builds the
stencil and its CSR matrix with the last two. Importing this module imports numba (~0.2 s), so the
other modules import it where they first need it.
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
def _row_taps(coefficients, steps, solution, y, base, first_tap, last_tap, out):
    """out = Σ coefficient·value over the taps first_tap … last_tap − 1 of image row y (vectorised over x)."""
    width = out.shape[0]
    out[:] = 0.0
    # tap outer, pixel inner over row views (indices provably ≥ 0): contiguous, so the loop vectorises
    for tap in range(first_tap, last_tap):
        weights = coefficients[y, tap]
        source = solution[base + steps[tap]:base + steps[tap] + width]
        for x in range(width):
            out[x] += weights[x] * source[x]


@numba.njit(cache=True, nogil=True, fastmath=True)
def _stencil_product(coefficients, steps, vector, out, first_row, last_row):
    _, taps, width = coefficients.shape
    padded_width = width + 2 * PAD
    row = np.empty(width)
    for y in range(first_row, last_row):
        base = (y + PAD) * padded_width + PAD
        _row_taps(coefficients, steps, vector, y, base, 0, taps, row)
        out[base:base + width] = row


@numba.njit(cache=True, nogil=True, fastmath=True)
def _stencil_residual(coefficients, steps, rhs, vector, out, first_row, last_row):
    _, taps, width = coefficients.shape
    padded_width = width + 2 * PAD
    row = np.empty(width)
    for y in range(first_row, last_row):
        base = (y + PAD) * padded_width + PAD
        _row_taps(coefficients, steps, vector, y, base, 0, taps, row)
        for x in range(width):
            out[base + x] = rhs[base + x] - row[x]


def stencil_product(coefficients, steps, vector, out, run_rows=None):
    """out = A·vector on padded vectors (out's padding is left untouched: keep it zero).

    Args:
        coefficients: H×25×W stencil coefficients, A[p, p + offset] per pixel (as ``laplacian_stencil`` gives them).
        steps: ``offset_steps(W)``.
        vector, out: flat padded float64 vectors (``to_padded``).
        run_rows: ``dmenet.propagation.rows.RowRunner`` to share the rows between threads (None: this thread).
    """
    height = coefficients.shape[0]
    (run_rows or _one_thread)(lambda first, last: _stencil_product(coefficients, steps, vector, out, first, last), height)
    return out


def stencil_residual(coefficients, steps, rhs, vector, out, run_rows=None):
    """out = rhs − A·vector on padded vectors (as ``stencil_product``; out's padding stays untouched)."""
    height = coefficients.shape[0]
    (run_rows or _one_thread)(lambda first, last: _stencil_residual(coefficients, steps, rhs, vector, out, first, last), height)
    return out


def _one_thread(function, count):
    function(0, count)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _gauss_seidel_from_zero(coefficients, inverse_diagonal, steps, rhs, solution, behind, first_row, last_row):
    # taps 0–4: row y − 2, 5–9: row y − 1, 10/11: two pixels left, 12: centre, 13/14: two pixels right,
    # 15–19: row y + 1, 20–24: row y + 2
    _, _, width = coefficients.shape
    padded_width = width + 2 * PAD
    above = np.empty(width)
    ahead = np.empty(width)
    for y in range(first_row, last_row):  # forward sweep: the pixels ahead of it are still zero
        base = (y + PAD) * padded_width + PAD
        # rows before the block belong to another block: their taps are left out
        first_tap = 0 if y - 2 >= first_row else (5 if y - 1 >= first_row else 10)
        _row_taps(coefficients, steps, solution, y, base, first_tap, 10, above)
        # the serial part: the two values just written stay in registers (no store-to-load round trip)
        earlier, latest = 0.0, 0.0
        for x in range(width):
            lower = above[x] + coefficients[y, 10, x] * earlier + coefficients[y, 11, x] * latest
            # the backward sweep meets the same values before each pixel: it reuses this sum
            behind[y, x] = lower
            value = (rhs[base + x] - lower) * inverse_diagonal[y, x]
            solution[base + x] = value
            earlier, latest = latest, value
    for index in range(last_row - first_row):  # backward sweep
        y = last_row - 1 - index
        base = (y + PAD) * padded_width + PAD
        last_tap = 25 if y + 2 < last_row else (20 if y + 1 < last_row else 15)
        _row_taps(coefficients, steps, solution, y, base, 15, last_tap, ahead)
        earlier, latest = 0.0, 0.0
        for column in range(width):
            x = width - 1 - column
            value = (rhs[base + x] - behind[y, x] - ahead[x] - coefficients[y, 14, x] * earlier
                     - coefficients[y, 13, x] * latest) * inverse_diagonal[y, x]
            solution[base + x] = value
            earlier, latest = latest, value


SMOOTHING_BLOCKS = 2


def smoothing_blocks(height):
    """The row ranges the smoother treats as independent blocks: always two halves (one when too
    short), whatever the thread count, so that the result is the same on every machine."""
    parts = SMOOTHING_BLOCKS if height >= 2 * SMOOTHING_BLOCKS else 1
    return [(height * part // parts, height * (part + 1) // parts) for part in range(parts)]


def block_gauss_seidel(coefficients, inverse_diagonal, steps, rhs, out, work=None, run_rows=None):
    """out = S·rhs: one forward then one backward Gauss–Seidel sweep from zero, in each of two halves of
    the rows on its own (block Jacobi between the halves, Gauss–Seidel inside), the halves in parallel.

    S is symmetric, so as the multigrid's pre- and post-smoother (applied to residuals) it keeps the
    preconditioner symmetric. Within a half, the backward sweep reuses the forward sweep's sums over
    the pixels before each pixel (they have not changed in between), so it reads only the taps after
    it: 1.5 sweeps' work instead of 2. Only pixels written in the same call are read: `out` needs no
    clearing, only zero padding.

    Args:
        coefficients: H×25×W stencil coefficients.
        inverse_diagonal: H×W float64, 1 / A[p, p].
        steps: ``offset_steps(W)``.
        rhs, out: flat padded float64 vectors.
        work: H×W float64 scratch (allocated when None).
        run_rows: ``dmenet.propagation.rows.RowRunner`` (None: both halves in this thread).
    """
    height, _, width = coefficients.shape
    behind = np.empty((height, width)) if work is None else work
    blocks = smoothing_blocks(height)

    def sweep(first, last):
        for block_first, block_last in blocks[first:last]:
            _gauss_seidel_from_zero(coefficients, inverse_diagonal, steps, rhs, out, behind, block_first, block_last)

    (run_rows or _one_thread)(sweep, len(blocks))
    return out


assert OFFSETS[5:20:5] == [(-1, -2), (0, -2), (1, -2)] and OFFSETS[10:15] == [(0, -2), (0, -1), (0, 0), (0, 1), (0, 2)]  # the sweeps' tap numbers


@numba.njit(cache=True, nogil=True)
def add_window_affinities(guide, epsilon, rows):
    """Adds every interior 3×3 window's pair terms of non-negative offset into the H×25×W stencil rows.

    One pass over the windows with the window's 9 colours, its inverse covariance (symmetric adjugate)
    and its 45 pair terms in registers: the vectorised NumPy version held 27 + 9 image-sized temporaries
    and took 4× longer.
    """
    height, width, _ = guide.shape
    centred = np.empty((3, 9))
    projected = np.empty((3, 9))
    for cy in range(1, height - 1):
        for cx in range(1, width - 1):
            for c in range(3):
                mean = 0.0
                for k in range(9):
                    centred[c, k] = guide[cy - 1 + k // 3, cx - 1 + k % 3, c]
                    mean += centred[c, k]
                mean /= 9.0
                for k in range(9):
                    centred[c, k] -= mean
            a = b = c_ = d = e = f = 0.0
            for k in range(9):
                red, green, blue = centred[0, k], centred[1, k], centred[2, k]
                a += red * red
                b += red * green
                c_ += red * blue
                d += green * green
                e += green * blue
                f += blue * blue
            a, b, c_, d, e, f = a / 9.0 + epsilon, b / 9.0, c_ / 9.0, d / 9.0 + epsilon, e / 9.0, f / 9.0 + epsilon
            c11, c12, c13 = d * f - e * e, c_ * e - b * f, b * e - c_ * d
            c22, c23, c33 = a * f - c_ * c_, b * c_ - a * e, a * d - b * b
            inverse_det = 1.0 / (a * c11 + b * c12 + c_ * c13)
            i11, i12, i13 = c11 * inverse_det, c12 * inverse_det, c13 * inverse_det
            i22, i23, i33 = c22 * inverse_det, c23 * inverse_det, c33 * inverse_det
            for k in range(9):
                red, green, blue = centred[0, k], centred[1, k], centred[2, k]
                # 1/9 of the pair terms folded into the projection once
                projected[0, k] = (i11 * red + i12 * green + i13 * blue) / 9.0
                projected[1, k] = (i12 * red + i22 * green + i23 * blue) / 9.0
                projected[2, k] = (i13 * red + i23 * green + i33 * blue) / 9.0
            for first in range(9):
                ay, ax = first // 3 - 1, first % 3 - 1
                for second in range(first, 9):
                    # window pixels in raster order: second ≥ first is exactly offset ≥ (0, 0)
                    by, bx = second // 3 - 1, second % 3 - 1
                    affinity = (centred[0, first] * projected[0, second] + centred[1, first] * projected[1, second]
                                + centred[2, first] * projected[2, second] + 1.0 / 9.0)
                    tap = (by - ay + 2) * 5 + bx - ax + 2
                    rows[cy + ay, tap, cx + ax] += affinity


@numba.njit(cache=True, nogil=True)
def affinities_to_laplacian(rows):
    """In place: the affinity taps of non-negative offset (``add_window_affinities``) → L = diag(Σ A) − A.

    A is symmetric, so a negative-offset tap is the matching positive one of the pixel it points to:
    A[p, p + o] = A[p + o, p].
    """
    height, taps, width = rows.shape
    centre = taps // 2
    for y in range(height):
        for tap in range(centre):  # negative offsets: read from the rows above or pixels to the left
            dy, dx = tap // 5 - 2, tap % 5 - 2
            if 0 <= y + dy:
                for x in range(max(0, -dx), min(width, width - dx)):
                    rows[y, tap, x] = rows[y + dy, taps - 1 - tap, x + dx]
    for y in range(height):
        for x in range(width):
            total = 0.0
            for tap in range(taps):
                total += rows[y, tap, x]
            for tap in range(taps):
                rows[y, tap, x] = -rows[y, tap, x]
            rows[y, centre, x] += total


@numba.njit(cache=True, nogil=True)
def smoothing_rows(coefficients, first_row, last_row, smoothing_coefficients, inverse_diagonal, absolute_sum):
    """For image rows first_row … last_row − 1: the coefficients in float32 (the smoother's), 1 / diagonal,
    and each row's absolute sum (the prolongator's Jacobi weights)."""
    _, taps, width = coefficients.shape
    centre = taps // 2
    for y in range(first_row, last_row):
        for tap in range(taps):
            for x in range(width):
                smoothing_coefficients[y, tap, x] = coefficients[y, tap, x]
        for x in range(width):
            inverse_diagonal[y, x] = 1.0 / coefficients[y, centre, x]
            total = 0.0
            for tap in range(taps):
                total += abs(coefficients[y, tap, x])
            absolute_sum[y, x] = total


@numba.njit(cache=True, nogil=True)
def fill_csr(rows, extra, data, columns):
    """CSR data and column indices of the H×25×W stencil rows (+ extra on the diagonal), row by row (``laplacian.stencil_to_csr``)."""
    height, _, width = rows.shape
    entry = 0
    for y in range(height):
        for x in range(width):
            for dy in range(-2, 3):
                if 0 <= y + dy < height:
                    for dx in range(-2, 3):
                        if 0 <= x + dx < width:
                            tap = (dy + 2) * 5 + dx + 2
                            data[entry] = rows[y, tap, x] + (extra[y * width + x] if tap == 12 else 0.0)
                            columns[entry] = (y + dy) * width + x + dx
                            entry += 1
