"""The multigrid below the tiles: 3×3 groups of nodes, level after level, down to a sparse LU.

Each level below the pixels is a grid of nodes with 4 unknowns each (the tiles' {1, R, G, B}
coefficients, then groups of tiles, …) whose operator couples a node with its 8 neighbours only: a
3×3 stencil of 4×4 blocks. The next level groups 3×3 nodes and is built as pyamg's smoothed
aggregation builds it (the previous set-up here): the group's candidates made orthonormal by modified
Gram–Schmidt (T), P = (I − ω D⁻¹ A) T with D the rows' absolute sums, A' = Pᵀ A P. Smoothed by one
node it still couples a group with its 8 neighbour groups only, so every level keeps the block
stencil form that the compiled block Gauss–Seidel (``aggregation.tile_gauss_seidel``) sweeps. The
products run on SciPy's sparse matrices, which at these sizes (17 280 unknowns at 640×427) take
milliseconds. A level of at most ``DIRECT_SIZE`` unknowns is solved by a sparse LU.
"""
import numba
import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from dmenet.propagation import aggregation
from dmenet.propagation.aggregation import gram_schmidt

GROUP = 3
DIRECT_SIZE = 2500
OMEGA = aggregation.OMEGA
CANDIDATES = aggregation.CANDIDATES


@numba.njit(cache=True, nogil=True)
def _group_tentative(candidates, basis, factors):
    """T on every group of GROUP×GROUP nodes: its nodes' candidate rows made orthonormal (modified
    Gram–Schmidt; a candidate dependent on the earlier ones there is dropped), and the Gram–Schmidt factors."""
    rows, columns = candidates.shape[:2]
    group_rows, group_columns = basis.shape[:2]
    size = GROUP * GROUP * CANDIDATES
    vectors = np.zeros((CANDIDATES, size))
    for gy in range(group_rows):
        for gx in range(group_columns):
            vectors[:] = 0.0
            for node in range(GROUP * GROUP):
                y, x = gy * GROUP + node // GROUP, gx * GROUP + node % GROUP
                if y < rows and x < columns:
                    for unknown in range(CANDIDATES):
                        for k in range(CANDIDATES):
                            vectors[k, node * CANDIDATES + unknown] = candidates[y, x, unknown, k]
            gram_schmidt(vectors, size, factors[gy, gx])
            for node in range(GROUP * GROUP):
                for unknown in range(CANDIDATES):
                    for k in range(CANDIDATES):
                        basis[gy, gx, node, unknown, k] = vectors[k, node * CANDIDATES + unknown]


def _tentative_matrix(candidates):
    """(T as CSR, the next level's candidates R'×C'×4×4) for nodes' candidates R×C×4×4."""
    rows, columns = candidates.shape[:2]
    group_rows, group_columns = -(-rows // GROUP), -(-columns // GROUP)
    basis = np.zeros((group_rows, group_columns, GROUP * GROUP, CANDIDATES, CANDIDATES))
    factors = np.zeros((group_rows, group_columns, CANDIDATES, CANDIDATES))
    _group_tentative(np.ascontiguousarray(candidates), basis, factors)
    gy, gx, node, unknown, k = np.meshgrid(np.arange(group_rows), np.arange(group_columns), np.arange(GROUP * GROUP),
                                           np.arange(CANDIDATES), np.arange(CANDIDATES), indexing="ij")
    y, x = gy * GROUP + node // GROUP, gx * GROUP + node % GROUP
    present = (y < rows) & (x < columns) & (basis != 0.0)
    fine = ((y * columns + x) * CANDIDATES + unknown)[present]
    coarse = ((gy * group_columns + gx) * CANDIDATES + k)[present]
    shape = (rows * columns * CANDIDATES, group_rows * group_columns * CANDIDATES)
    return scipy.sparse.csr_matrix((basis[present], (fine, coarse)), shape=shape), factors


def _with_unit_diagonal_where_empty(matrix):
    """A coarse unknown whose P column is zero has an empty row and column: give it a unit diagonal (it stays 0)."""
    empty = matrix.diagonal() == 0.0
    if empty.any():
        matrix = (matrix + scipy.sparse.diags(empty.astype(np.float64))).tocsr()
    return matrix


def _block_stencil(matrix, rows, columns):
    """The 3×3 stencil of 4×4 blocks R×C×9×4×4 of a matrix that couples each node with its 8 neighbours only."""
    blocks = np.zeros((rows, columns, 9, CANDIDATES, CANDIDATES))
    coo = matrix.tocoo()
    node, unknown = np.divmod(coo.row, CANDIDATES)
    other, other_unknown = np.divmod(coo.col, CANDIDATES)
    y, x = np.divmod(node, columns)
    ny, nx = np.divmod(other, columns)
    neighbour = (ny - y + 1) * 3 + (nx - x + 1)
    if ((np.abs(ny - y) > 1) | (np.abs(nx - x) > 1)).any():
        raise AssertionError("a coarse level coupled nodes that are not neighbours")
    np.add.at(blocks, (y, x, neighbour, unknown, other_unknown), coo.data)
    return blocks


class _Level:
    """One grid level: its operator (CSR and block stencil), the block diagonal's inverses, and P to the next level."""

    def __init__(self, operator, blocks):
        self.operator, self.blocks = operator, blocks
        self.inverse_diagonal = np.linalg.inv(blocks[:, :, 4])
        self.prolongation = self.restriction = None


class CoarseLevels:
    """The levels below the pixels, from the tile level down, and their part of the V-cycle.

    Args:
        blocks: the tile operator as R×C×9×4×4 stencil blocks (``aggregation.first_coarsening``).
        operator: the same as a SciPy sparse matrix.
        candidates: the tiles' coarse candidates, (4·R·C)×4.
        direct_size: a level of at most this many unknowns is solved by a sparse LU.

    Example:
        >>> levels = CoarseLevels(blocks, operator, candidates)
        >>> correction = levels.cycle(coarse_residual)
    """

    def __init__(self, blocks, operator, candidates, direct_size=DIRECT_SIZE):
        rows, columns = blocks.shape[:2]
        operator = scipy.sparse.csr_matrix(operator)
        candidates = np.asarray(candidates).reshape(rows, columns, CANDIDATES, CANDIDATES)
        self.levels = []
        while operator.shape[0] > direct_size:
            level = _Level(operator, blocks)
            tentative, candidates = _tentative_matrix(candidates)
            weights = OMEGA / np.maximum(np.asarray(abs(operator).sum(axis=1)).ravel(), np.finfo(float).tiny)
            prolongation = (tentative - scipy.sparse.diags(weights) @ (operator @ tentative)).tocsr()
            level.prolongation, level.restriction = prolongation, prolongation.T.tocsr()
            self.levels.append(level)
            rows, columns = -(-rows // GROUP), -(-columns // GROUP)
            operator = _with_unit_diagonal_where_empty((level.restriction @ operator @ prolongation).tocsr())
            blocks = _block_stencil(operator, rows, columns) if operator.shape[0] > direct_size else None
        self.coarsest = scipy.sparse.linalg.splu(
            _with_unit_diagonal_where_empty(operator).tocsc(), permc_spec="MMD_AT_PLUS_A",
            diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        self.coarsest_size = operator.shape[0]

    def __len__(self):
        """Levels below the pixels, the coarsest (direct) one included."""
        return len(self.levels) + 1

    def cycle(self, rhs, index=0):
        """A V-cycle from level `index` down for operator·x = rhs, from zero: symmetric block Gauss–Seidel
        before and after the coarse correction, the sparse LU at the bottom."""
        if index == len(self.levels):
            return self.coarsest.solve(rhs)
        level = self.levels[index]
        solution = np.zeros_like(rhs)
        aggregation.tile_gauss_seidel(level.blocks, level.inverse_diagonal, rhs, solution)
        coarse = self.cycle(level.restriction @ (rhs - level.operator @ solution), index + 1)
        solution += level.prolongation @ coarse
        aggregation.tile_gauss_seidel(level.blocks, level.inverse_diagonal, rhs, solution)
        return solution
