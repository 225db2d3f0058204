"""MATLAB regionfill: fill masked pixels by solving Laplace's equation, the pixels just outside the
mask (4-neighbours) giving Dirichlet values. Pixels on the image border average over the neighbours
they have (3 or 2), as MATLAB does. One sparse factorisation serves every channel."""
import functools

import numpy as np
from scipy import sparse
from scipy.linalg import get_lapack_funcs
from scipy.sparse.csgraph import reverse_cuthill_mckee
from scipy.sparse.linalg import splu

from dmenet.syndof import blas_threads


def regionfill(values, mask):
    """`values`: H×W or H×W×C float array; `mask`: H×W bool (pixels to fill). Returns a filled copy."""
    mask = np.asarray(mask, bool)
    values = np.asarray(values, np.float64)
    filled = values.copy()
    if not mask.any():
        return filled
    if mask.all():
        raise ValueError("regionfill: the mask covers the whole image, so there is no boundary to fill from")
    rows, cols = np.nonzero(mask)
    filled.reshape(mask.shape + (-1,))[rows, cols] = solve_laplace(values, rows, cols)
    return filled


_STEP_ROW = np.array([[-1], [1], [0], [0]])
_STEP_COL = np.array([[0], [0], [-1], [1]])
_CSR_SLOT = [0, 4, 1, 3]


def solve_laplace(values, rows, cols, origin=(0, 0), image_shape=None):
    """The Laplace solution at the masked pixels (rows, cols) of `values` (H×W or H×W×C); every
    other pixel is a known value. Returns an n×C array (C = 1 for a 2-D input). Works in the mask's
    bounding box, so its cost follows the mask, not the image.

    `values` may be a window of a larger image placed at `origin` in an image of `image_shape`; it
    must then hold every in-image 4-neighbour of the mask (the image border decides the averaging).
    It may also be a function `values(rows, cols) -> k×C array` of the known values at those pixels
    (window coordinates), so a caller need not build the window; `image_shape` is then required."""
    if callable(values):
        known_values = values
    else:
        channels = values.reshape(values.shape[0], values.shape[1], -1)
        image_shape = image_shape if image_shape is not None else values.shape[:2]

        def known_values(known_rows, known_cols):
            return channels[known_rows, known_cols]

    height, width = image_shape
    row_offset, col_offset = origin
    top, left = int(rows.min()) - 1, int(cols.min()) - 1
    number = np.full((int(rows.max()) - top + 2, int(cols.max()) - left + 2), -1, np.int64)
    count = len(rows)
    number[rows - top, cols - left] = np.arange(count)

    # The system in CSR form, built directly: each row holds its pixel and its unknown 4-neighbours.
    # Listed up, left, self, right, down, the column numbers ascend when the pixels are numbered in
    # row-major order (as np.nonzero gives them), which is the canonical CSR a COO build would make.
    # Neighbours up, down, left, right (4 × count); they are CSR slots 0, 4, 1, 3 of each row.
    n_rows, n_cols = rows + _STEP_ROW, cols + _STEP_COL
    global_rows, global_cols = n_rows + row_offset, n_cols + col_offset
    inside = (global_rows >= 0) & (global_rows < height) & (global_cols >= 0) & (global_cols < width)
    degree = inside.sum(axis=0, dtype=np.float64)  # pixels on the image border average over fewer neighbours
    neighbour = np.full((4, count), -1, np.int64)
    neighbour[inside] = number[n_rows[inside] - top, n_cols[inside] - left]
    slots = np.empty((count, 5), np.int64)
    slots[:, 2] = np.arange(count)
    slots[:, _CSR_SLOT] = neighbour.T
    known = inside & (neighbour < 0)
    found = known_values(n_rows[known], n_cols[known])
    given = np.zeros((4, count, found.shape[1]))
    given[known] = found
    # Summed up, down, left, right into zeros, as one known neighbour at a time would be (x + 0 = x).
    rhs = np.zeros((count, found.shape[1]))
    for direction in given:
        rhs += direction
    data = np.full((count, 5), -1.0)
    data[:, 2] = degree
    present = slots >= 0
    if (np.diff(rows * number.shape[1] + cols) <= 0).any():  # not numbered in row-major order
        order = np.argsort(np.where(present, slots, count), axis=1)
        slots, data, present = (np.take_along_axis(a, order, axis=1) for a in (slots, data, present))
    indptr = np.zeros(count + 1, np.int64)
    np.cumsum(present.sum(axis=1), out=indptr[1:])
    return solve_spd_csr(data[present], slots[present], indptr, rhs)


BANDED_MAX_BYTES = 256 * 2**20
BANDED_MAX_FLOPS = 4e8  # beyond this the banded factorisation loses to SuperLU


def solve_spd_csr(data, indices, indptr, rhs):
    """Solve the symmetric positive definite system given in CSR form (sorted column indices). Fill
    regions are thin bands, so after reverse Cuthill–McKee the matrix has a narrow band and LAPACK's
    banded Cholesky is several times faster than a general sparse LU; wide systems fall back to SuperLU."""
    count = len(rhs)
    # 32-bit indices, as scipy would make them (it would otherwise check and copy them).
    small = count < 2**31 - 1
    indices, indptr = (np.asarray(a, np.int32 if small else np.int64) for a in (indices, indptr))
    system = sparse.csr_matrix((data, indices, indptr), shape=(count, count))
    order = reverse_cuthill_mckee(system, symmetric_mode=True)
    position = np.empty_like(order)
    position[order] = np.arange(count, dtype=order.dtype)
    row = np.repeat(position, np.diff(indptr))
    col = position[indices]
    bandwidth = int(np.abs(row - col).max()) if len(row) else 0
    banded_cost = count * (bandwidth + 1) ** 2
    with blas_threads.limited() as single_threaded:
        if not single_threaded or banded_cost > BANDED_MAX_FLOPS or (bandwidth + 1) * count * 8 > BANDED_MAX_BYTES:
            return splu(system.tocsc(), permc_spec="MMD_AT_PLUS_A").solve(rhs)
        upper = col >= row
        banded = np.zeros((bandwidth + 1, count))
        banded[bandwidth + row[upper] - col[upper], col[upper]] = data[upper]  # each (i, j) occurs once
        solution = _solveh_banded_upper(banded, rhs[order])
    result = np.empty_like(solution)
    result[order] = solution
    return result


def _solveh_banded_upper(banded, rhs):
    """scipy.linalg.solveh_banded(banded, rhs) (upper form, float64, finite), calling the same LAPACK
    routine directly on arrays it may overwrite: the per-call checks cost more than small solves."""
    if banded.shape[0] == 2:
        d, _, solution, info = _lapack("ptsv")(banded[1].copy(), banded[0, 1:].copy(), rhs, True, True, True)
    else:
        _, solution, info = _lapack("pbsv")(banded, rhs, lower=0, overwrite_ab=1, overwrite_b=1)
    if info > 0:
        raise np.linalg.LinAlgError(f"{info}th leading minor not positive definite")
    if info < 0:
        raise ValueError(f"illegal value in {-info}th argument of internal pbsv")
    return solution


@functools.lru_cache(maxsize=2)
def _lapack(name):
    return get_lapack_funcs((name,), (np.zeros((1, 1)),))[0]
