"""Compiled (numba) kernels on the 25-point stencil of the propagation system, without a sparse matrix.

The fine level of the propagation system is a 5×5 stencil: every pixel meets the pixels at most 2 rows
and 2 columns away. The system is symmetric, A[p, p − o] = A[p − o, p], so only the 13 taps of
non-negative offset ("upper" taps: the centre, two to the right, the two rows below) are stored, per
pixel row as H×13×(W + 4) with 2 zero columns on either side; a tap of negative offset is the
matching upper tap of the pixel it points to. Every fine-level kernel is bound by memory bandwidth,
so this halves their time against storing all 25. Vectors are padded by 2 zero pixels on every
side, so a coefficient row lines up with a vector row and nothing needs a bounds check (a coefficient
pointing off the image is zero, or meets a zero). ``solver`` runs its fine-level multigrid smoothing
and CG products with these kernels, and ``laplacian`` builds the stencil and its CSR matrix with the
last ones. The kernels here and in ``aggregation`` and ``coarse`` run from their cached machine code
without numba (``dmenet.native_kernels``), so they take their scratch arrays from their callers: a
kernel that made an array could not run without numba's runtime.
"""
import numpy as np

from dmenet.native_kernels import kernel
from dmenet.propagation.laplacian import UPPER_OFFSETS

PAD = 2
UPPER_TAPS = len(UPPER_OFFSETS)
# upper tap u ↔ offset (dy, dx): u = 0, 1, 2 are (0, 0), (0, 1), (0, 2); u = 3 … 7 row +1, u = 8 … 12 row +2, dx = −2 … 2
_DY = np.array([dy for dy, _ in UPPER_OFFSETS], np.int64)
_DX = np.array([dx for _, dx in UPPER_OFFSETS], np.int64)
ROW_BELOW = 3  # the first upper tap in a row below


def padded_shape(height, width):
    """Shape of a padded vector: 2 zero pixels on every side of the H×W image."""
    return height + 2 * PAD, width + 2 * PAD


def stencil_shape(height, width):
    """Shape of the upper stencil rows of an H×W image: H×13×(W + 4)."""
    return height, UPPER_TAPS, width + 2 * PAD


def to_padded(values, height, width, out=None):
    """H·W (or H×W) values → a flat padded vector (zeros around the image)."""
    if out is None:
        out = np.zeros(padded_shape(height, width))
    out.reshape(padded_shape(height, width))[PAD:-PAD, PAD:-PAD] = np.reshape(values, (height, width))
    return out.reshape(-1)


def from_padded(padded, height, width):
    """The H·W image values of a flat padded vector (a copy)."""
    return padded.reshape(padded_shape(height, width))[PAD:-PAD, PAD:-PAD].ravel()


@kernel(inline="always")
def upper_tap(dy, dx):
    """The upper tap of offset (dy, dx) ≥ (0, 0)."""
    return dx if dy == 0 else ROW_BELOW + (dy - 1) * 5 + dx + 2


@kernel(inline="always")
def entry(rows, y, x, dy, dx):
    """A[(y, x), (y + dy, x + dx)] for any offset within 2 (0 where the neighbour is off the image's sides)."""
    if dy > 0 or (dy == 0 and dx >= 0):
        return rows[y, upper_tap(dy, dx), x + PAD]
    return rows[y + dy, upper_tap(-dy, -dx), x + dx + PAD]


@kernel(fastmath=True)
def _add_upper(rows, vector, y, first_tap, last_tap, width, out):
    """out[x] += Σ A[p, p + o]·v[p + o] over the upper taps first_tap … last_tap − 1 of image row y."""
    padded_width = width + 2 * PAD
    # tap outer, pixel inner over row views (indices provably ≥ 0): contiguous, so the loop vectorises
    for tap in range(first_tap, last_tap):
        weights = rows[y, tap, PAD:PAD + width]
        start = (y + PAD + _DY[tap]) * padded_width + PAD + _DX[tap]
        source = vector[start:start + width]
        for x in range(width):
            out[x] += weights[x] * source[x]


@kernel(fastmath=True)
def _add_lower(rows, vector, y, first_tap, last_tap, first_row, width, out):
    """out[x] += Σ A[p, p − o]·v[p − o] = Σ A[p − o, p]·v[p − o] over the mirrors of upper taps first_tap … last_tap − 1
    whose source row y − dy is at least first_row."""
    padded_width = width + 2 * PAD
    for tap in range(first_tap, last_tap):
        dy, dx = _DY[tap], _DX[tap]
        if y - dy < first_row:
            continue
        weights = rows[y - dy, tap, PAD - dx:PAD - dx + width]
        start = (y - dy + PAD) * padded_width + PAD - dx
        source = vector[start:start + width]
        for x in range(width):
            out[x] += weights[x] * source[x]


@kernel(
    "f4[:, :, ::1], f8[::1], f8[::1], i8, i8, f8[::1], f8[::1]",
    "f8[:, :, ::1], f8[::1], f8[::1], i8, i8, f8[::1], f8[::1]",
    fastmath=True,
)
def _stencil_product(rows, vector, out, first_row, last_row, subtract_from, row):
    """out = A·vector (or subtract_from − A·vector when it has any elements) on rows first_row … last_row − 1
    (row: scratch of one image row)."""
    _, _, padded_width = rows.shape
    width = padded_width - 2 * PAD
    for y in range(first_row, last_row):
        row[:] = 0.0
        _add_upper(rows, vector, y, 0, UPPER_TAPS, width, row)
        _add_lower(rows, vector, y, 1, UPPER_TAPS, 0, width, row)
        base = (y + PAD) * padded_width + PAD
        target = out[base:base + width]
        if subtract_from.shape[0] > 0:
            given = subtract_from[base:base + width]
            for x in range(width):
                target[x] = given[x] - row[x]
        else:
            for x in range(width):
                target[x] = row[x]


_NOTHING = np.zeros(0)


def stencil_product(rows, vector, out, run_rows=None):
    """out = A·vector on padded vectors (out's padding is left untouched: keep it zero).

    Args:
        rows: upper stencil rows H×13×(W + 4) (``laplacian_stencil``), float64 or float32.
        vector, out: flat padded float64 vectors (``to_padded``).
        run_rows: ``dmenet.propagation.rows.RowRunner`` to share the rows between threads (None: this thread).
    """
    height = rows.shape[0]
    (run_rows or _one_thread)(lambda first, last: _stencil_product(rows, vector, out, first, last, _NOTHING, _row_scratch(rows)), height)
    return out


def stencil_residual(rows, rhs, vector, out, run_rows=None):
    """out = rhs − A·vector on padded vectors (as ``stencil_product``; out's padding stays untouched)."""
    height = rows.shape[0]
    (run_rows or _one_thread)(lambda first, last: _stencil_product(rows, vector, out, first, last, rhs, _row_scratch(rows)), height)
    return out


def _one_thread(function, count):
    function(0, count)


def _row_scratch(rows, count=None):
    """Scratch for a kernel on the stencil rows `rows`, one per thread: an image row, or `count` of them."""
    width = rows.shape[2] - 2 * PAD
    return np.empty(width if count is None else (count, width))


@kernel("f4[:, :, ::1], f8[:, ::1], f8[::1], f8[::1], f8[:, ::1], i8, i8, f8[:, ::1]", fastmath=True)
def _gauss_seidel_from_zero(rows, inverse_diagonal, rhs, solution, behind, first_row, last_row, scratch):
    _, _, padded_width = rows.shape
    width = padded_width - 2 * PAD
    above, ahead = scratch[0], scratch[1]
    for y in range(first_row, last_row):  # forward sweep: the pixels ahead of it are still zero
        # the rows above within the block (rows before it belong to another block: left out)
        above[:] = 0.0
        _add_lower(rows, solution, y, ROW_BELOW, UPPER_TAPS, first_row, width, above)
        base = (y + PAD) * padded_width + PAD
        given, values, inverse, sums = rhs[base:base + width], solution[base:base + width], inverse_diagonal[y], behind[y]
        # A[p, p − 1] and A[p, p − 2] are the upper taps (0, 1) and (0, 2) of the pixels to the left
        left, second_left = rows[y, 1, PAD - 1:PAD - 1 + width], rows[y, 2, PAD - 2:PAD - 2 + width]
        # the serial part: the two values just written stay in registers (no store-to-load round trip)
        earlier, latest = 0.0, 0.0
        for x in range(width):
            lower = above[x] + second_left[x] * earlier + left[x] * latest
            # the backward sweep meets the same values before each pixel: it reuses this sum
            sums[x] = lower
            value = (given[x] - lower) * inverse[x]
            values[x] = value
            earlier, latest = latest, value
    for index in range(last_row - first_row):  # backward sweep
        y = last_row - 1 - index
        ahead[:] = 0.0
        # the rows below within the block
        last_tap = UPPER_TAPS if y + 2 < last_row else (ROW_BELOW + 5 if y + 1 < last_row else ROW_BELOW)
        _add_upper(rows, solution, y, ROW_BELOW, last_tap, width, ahead)
        base = (y + PAD) * padded_width + PAD
        given, values, inverse, sums = rhs[base:base + width], solution[base:base + width], inverse_diagonal[y], behind[y]
        right, second_right = rows[y, 1, PAD:PAD + width], rows[y, 2, PAD:PAD + width]
        earlier, latest = 0.0, 0.0
        for column in range(width):
            x = width - 1 - column
            value = (given[x] - sums[x] - ahead[x] - second_right[x] * earlier - right[x] * latest) * inverse[x]
            values[x] = value
            earlier, latest = latest, value


SMOOTHING_BLOCKS = 2


def smoothing_blocks(height):
    """The row ranges the smoother treats as independent blocks: always two halves (one when too
    short), whatever the thread count, so that the result is the same on every machine."""
    parts = SMOOTHING_BLOCKS if height >= 2 * SMOOTHING_BLOCKS else 1
    return [(height * part // parts, height * (part + 1) // parts) for part in range(parts)]


def block_gauss_seidel(rows, inverse_diagonal, rhs, out, work=None, run_rows=None):
    """out = S·rhs: one forward then one backward Gauss–Seidel sweep from zero, in each of two halves of
    the rows on its own (block Jacobi between the halves, Gauss–Seidel inside), the halves in parallel.

    S is symmetric, so as the multigrid's pre- and post-smoother (applied to residuals) it keeps the
    preconditioner symmetric. Within a half, the backward sweep reuses the forward sweep's sums over
    the pixels before each pixel (they have not changed in between), so it reads only the taps after
    it: 1.5 sweeps' work instead of 2. Only pixels written in the same call are read: `out` needs no
    clearing, only zero padding.

    Args:
        rows: upper stencil rows H×13×(W + 4).
        inverse_diagonal: H×W float64, 1 / A[p, p].
        rhs, out: flat padded float64 vectors.
        work: H×W float64 scratch (allocated when None).
        run_rows: ``dmenet.propagation.rows.RowRunner`` (None: both halves in this thread).
    """
    height = rows.shape[0]
    behind = np.empty(inverse_diagonal.shape) if work is None else work
    blocks = smoothing_blocks(height)

    def sweep(first, last):
        for block_first, block_last in blocks[first:last]:
            _gauss_seidel_from_zero(rows, inverse_diagonal, rhs, out, behind, block_first, block_last, _row_scratch(rows, 2))

    (run_rows or _one_thread)(sweep, len(blocks))
    return out


@kernel("f8[:, :, ::1], f8, f8[:, :, ::1], f8[:, :, ::1]")
def add_window_affinities(guide, epsilon, rows, window):
    """Adds every interior 3×3 window's pair terms of non-negative offset into the upper stencil rows.

    One pass over the windows with the window's 9 colours, its inverse covariance (symmetric adjugate)
    and its 45 pair terms in registers: the vectorised NumPy version held 27 + 9 image-sized temporaries
    and took 4× longer. window: 2×3×9 scratch (a window's centred and projected colours).
    """
    height, width, _ = guide.shape
    centred, projected = window[0], window[1]
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
                    rows[cy + ay, upper_tap(by - ay, bx - ax), cx + ax + PAD] += affinity


@kernel(inline="always")
def _row_sum(rows, y, x, absolute):
    """Σ over all 25 taps of matrix row (y, x), of the entries or of their magnitudes (rows above and below the image skipped)."""
    height = rows.shape[0]
    total = 0.0
    for dy in range(-2, 3):
        if 0 <= y + dy < height:
            for dx in range(-2, 3):
                value = entry(rows, y, x, dy, dx)
                total += abs(value) if absolute else value
    return total


@kernel("f8[:, :, ::1], f8[:, ::1]")
def affinities_to_laplacian(rows, row_sums):
    """In place: the affinity's upper taps (``add_window_affinities``) → L = diag(Σ A) − A, upper taps
    (row_sums: H×W scratch)."""
    height, taps, padded_width = rows.shape
    width = padded_width - 2 * PAD
    for y in range(height):
        for x in range(width):
            row_sums[y, x] = _row_sum(rows, y, x, False)
    for y in range(height):
        for x in range(width):
            rows[y, 0, x + PAD] = row_sums[y, x] - rows[y, 0, x + PAD]
            for tap in range(1, taps):
                rows[y, tap, x + PAD] = -rows[y, tap, x + PAD]


@kernel("f8[:, :, ::1], i8, i8, f4[:, :, ::1], f8[:, ::1], f8[:, ::1]")
def smoothing_rows(rows, first_row, last_row, smoothing_rows_out, inverse_diagonal, absolute_sum):
    """For image rows first_row … last_row − 1: the rows in float32 (the smoother's), 1 / diagonal,
    and each matrix row's absolute sum over all 25 taps (the prolongator's Jacobi weights)."""
    _, taps, padded_width = rows.shape
    width = padded_width - 2 * PAD
    for y in range(first_row, last_row):
        for tap in range(taps):
            for j in range(padded_width):
                smoothing_rows_out[y, tap, j] = rows[y, tap, j]
        for x in range(width):
            inverse_diagonal[y, x] = 1.0 / rows[y, 0, x + PAD]
            absolute_sum[y, x] = _row_sum(rows, y, x, True)


@kernel()
def fill_csr(rows, extra, data, columns):
    """CSR data and column indices of the upper stencil rows (+ extra on the diagonal), row by row (``laplacian.stencil_to_csr``)."""
    height, _, padded_width = rows.shape
    width = padded_width - 2 * PAD
    item = 0
    for y in range(height):
        for x in range(width):
            for dy in range(-2, 3):
                if 0 <= y + dy < height:
                    for dx in range(-2, 3):
                        if 0 <= x + dx < width:
                            data[item] = entry(rows, y, x, dy, dx) + (extra[y * width + x] if dy == 0 and dx == 0 else 0.0)
                            columns[item] = (y + dy) * width + x + dx
                            item += 1
