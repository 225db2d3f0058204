"""The matting Laplacian (Levin et al.) as the official Park'17 and Zhuo & Sim codes build it.

For every 3×3 window centred on an interior pixel (border pixels centre no window), with μ the
window's mean colour and Σ its population covariance,
    A_ij += (1 + (I_i − μ)ᵀ (Σ + ε·E₃)⁻¹ (I_j − μ)) / 9   for all i, j in the window
(ε added as is, not ε/9), and L = diag(rowsum A) − A. Both methods then solve (L + λ·D) x = λ·D s with D = diag(known) (``dmenet.propagation.solver``).

A pixel only meets pixels at most 2 rows and 2 columns away, so L has 25 diagonals; being symmetric,
it is kept as the 13 taps of non-negative offset per pixel. One compiled pass over the windows sums
their pair terms into those taps (``stencil.add_window_affinities``), and another writes them as CSR
when a direct solver needs it (no 81-entries-per-window COO).
"""
import numpy as np

from dmenet.propagation.errors import PropagationError

OFFSETS = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
# the 13 offsets ≥ (0, 0) a symmetric stencil is stored by: the centre, two to the right, the two rows below
UPPER_OFFSETS = [(0, 0), (0, 1), (0, 2)] + [(dy, dx) for dy in (1, 2) for dx in range(-2, 3)]


def matting_laplacian(guide_rgb, epsilon=1e-5):
    """GetLaplacian.m: the matting Laplacian of the guide over 3×3 interior windows.

    Args:
        guide_rgb: H×W×3 float guide (Park'17: the rolling-guidance output; Zhuo & Sim: the photo).
        epsilon: regulariser added to each window covariance, as is (Park'17 1e-5, Zhuo & Sim 1e-7).

    Returns:
        scipy.sparse CSR matrix (H·W)×(H·W), float64, rows in row-major pixel order (y·W + x).

    Example:
        >>> L = matting_laplacian(np.random.default_rng(0).random((6, 7, 3)))
        >>> L.shape, bool(abs(L.sum(axis=1)).max() < 1e-9)
        ((42, 42), True)
    """
    guide = np.asarray(guide_rgb, dtype=np.float64)
    if guide.ndim != 3 or guide.shape[2] != 3:
        raise PropagationError(f"matting_laplacian: expected an H×W×3 guide, got shape {np.shape(guide_rgb)}")
    return stencil_to_csr(laplacian_stencil(guide, epsilon))


def laplacian_stencil(guide_rgb, epsilon):
    """L as its upper stencil taps: out[y, u, x + 2] = L[(y, x), (y, x) + offset u], offsets in ``UPPER_OFFSETS`` order.

    L is symmetric, so the 13 taps of non-negative offset hold all of it (``dmenet.propagation.stencil``);
    pixel-major, with 2 zero columns on either side, as the solver's kernels read them. Depends on
    the guide only, so it can be built before the known pixels are.

    Args:
        guide_rgb: H×W×3 guide.
        epsilon: covariance regulariser.

    Returns:
        H×13×(W + 4) float64 array (taps pointing off the image are 0).
    """
    guide = np.asarray(guide_rgb, dtype=np.float64)
    height, width, _ = guide.shape
    rows = np.zeros((height, len(UPPER_OFFSETS), width + 4))
    if height < 3 or width < 3:
        return rows
    from dmenet.propagation import stencil  # its kernels load on first use, not when the pipeline is imported

    # one compiled pass sums every window's pair terms of non-negative offset (A is symmetric) …
    stencil.add_window_affinities(np.ascontiguousarray(guide), float(epsilon), rows, np.empty((2, 3, 9)))
    # … and a second makes L = diag(row sums) − A
    stencil.affinities_to_laplacian(rows, np.empty((height, width)))
    return rows


def laplacian_csr(guide, epsilon, extra_diagonal=None):
    """L (+ diag(extra_diagonal)) as CSR.

    Args:
        guide: H×W×3 float64 guide.
        epsilon: covariance regulariser.
        extra_diagonal: H·W values added to the diagonal (λ·D of the propagation), or None.
    """
    return stencil_to_csr(laplacian_stencil(guide, epsilon), extra_diagonal)


def stencil_to_csr(rows, extra_diagonal=None):
    """CSR of the upper stencil rows (+ diag(extra_diagonal)), dropping entries whose column falls off the image.

    Args:
        rows: H×13×(W + 4) from ``laplacian_stencil`` (not modified).
        extra_diagonal: H·W values added to the diagonal, or None.
    """
    height, _, padded_width = rows.shape
    width = padded_width - 4
    count = height * width
    index_type = np.int32 if count * len(OFFSETS) < 2 ** 31 else np.int64
    extra = np.zeros(count) if extra_diagonal is None else np.asarray(extra_diagonal, np.float64).ravel()
    # rows of the image's border have fewer inside offsets; per pixel the offsets come in increasing column order
    inside_rows = np.minimum(np.arange(height), 2) + 1 + np.minimum(height - 1 - np.arange(height), 2)
    inside_columns = np.minimum(np.arange(width), 2) + 1 + np.minimum(width - 1 - np.arange(width), 2)
    indptr = np.zeros(count + 1, index_type)
    np.cumsum((inside_rows[:, None] * inside_columns[None, :]).ravel(), out=indptr[1:])
    data = np.empty(int(indptr[-1]))
    columns = np.empty(int(indptr[-1]), index_type)
    from dmenet.propagation import stencil

    stencil.fill_csr(np.ascontiguousarray(rows, np.float64), extra, data, columns)
    import scipy.sparse  # only the direct solver and the tests need a matrix; the iterative solve never loads scipy.sparse

    return scipy.sparse.csr_matrix((data, columns, indptr), shape=(count, count))
