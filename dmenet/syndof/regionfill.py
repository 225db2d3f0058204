"""MATLAB regionfill: fill masked pixels by solving Laplace's equation, the pixels just outside the
mask (4-neighbours) giving Dirichlet values. Pixels on the image border average over the neighbours
they have (3 or 2), as MATLAB does. One sparse factorisation serves every channel."""
import numpy as np
from scipy import sparse
from scipy.sparse.linalg import splu


def regionfill(values, mask):
    """`values`: H×W or H×W×C float array; `mask`: H×W bool (pixels to fill). Returns a filled copy."""
    mask = np.asarray(mask, bool)
    values = np.asarray(values, np.float64)
    filled = values.copy()
    if not mask.any():
        return filled
    height, width = mask.shape
    if mask.all():
        raise ValueError("regionfill: the mask covers the whole image, so there is no boundary to fill from")
    channels = values.reshape(height, width, -1)
    rows, cols = np.nonzero(mask)
    count = len(rows)
    number = np.full(mask.shape, -1, np.int64)
    number[rows, cols] = np.arange(count)

    degree = np.zeros(count)
    rhs = np.zeros((count, channels.shape[2]))
    coupled_i, coupled_j = [], []
    for d_row, d_col in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        n_rows, n_cols = rows + d_row, cols + d_col
        inside = (n_rows >= 0) & (n_rows < height) & (n_cols >= 0) & (n_cols < width)
        degree += inside
        idx = np.flatnonzero(inside)
        neighbour = number[n_rows[idx], n_cols[idx]]
        unknown = neighbour >= 0
        coupled_i.append(idx[unknown])
        coupled_j.append(neighbour[unknown])
        known = idx[~unknown]
        rhs[known] += channels[n_rows[known], n_cols[known]]
    i = np.concatenate([np.arange(count)] + coupled_i)
    j = np.concatenate([np.arange(count)] + coupled_j)
    data = np.concatenate([degree, -np.ones(len(i) - count)])
    system = sparse.csc_matrix((data, (i, j)), shape=(count, count))
    solution = splu(system, permc_spec="MMD_AT_PLUS_A").solve(rhs)
    filled.reshape(height, width, -1)[rows, cols] = solution
    return filled
