"""The multigrid below the tiles: 3×3 groups of nodes, level after level, down to a banded Cholesky solve.

Each level below the pixels is a grid of nodes with 4 unknowns each (the tiles' {1, R, G, B}
coefficients, then groups of tiles, …) whose operator couples a node with its 8 neighbours only: a
3×3 stencil of 4×4 blocks, R×C×9×4×4 (neighbour n = (dy + 1)·3 + dx + 1). The next level groups 3×3
nodes and is built as pyamg's smoothed aggregation builds it (the set-up here before this module):
the group's candidates made orthonormal by modified Gram–Schmidt (T), P = (I − ω D⁻¹ A) T with D
the rows' absolute sums, A' = Pᵀ A P.

Smoothing by one node keeps everything local, so no sparse matrix is needed: a node's row of P
reaches only the groups next to its own (P is stored per node as 3×3 blocks of 4×4, one per group
offset), and A' couples a group with its 8 neighbour groups only, so every level keeps the block
stencil form that the compiled block Gauss–Seidel (``aggregation.tile_gauss_seidel``) sweeps. The
products are compiled kernels on these blocks, and a level of at most ``DIRECT_SIZE`` unknowns is
solved exactly by a banded Cholesky factorisation (nodes in raster order along the shorter side, so
the band is 4·(side + 1) + 3 wide). SciPy's sparse products and LU did all this before; importing
SciPy alone cost a third of a second, a fifth of a small photo's whole run.
"""
import numpy as np

from dmenet.native_kernels import kernel
from dmenet.propagation import aggregation
from dmenet.propagation.aggregation import gram_schmidt

GROUP = 3
DIRECT_SIZE = 2500
OMEGA = aggregation.OMEGA
CANDIDATES = aggregation.CANDIDATES


@kernel("f8[:, :, :, ::1], f8[:, :, :, :, ::1], f8[:, :, :, ::1], f8[:, ::1]")
def _group_tentative(candidates, basis, factors, vectors):
    """T on every group of GROUP×GROUP nodes: its nodes' candidate rows made orthonormal (modified
    Gram–Schmidt; a candidate dependent on the earlier ones there is dropped), and the Gram–Schmidt factors
    (vectors: 4×36 scratch)."""
    rows, columns = candidates.shape[:2]
    group_rows, group_columns = basis.shape[:2]
    size = GROUP * GROUP * CANDIDATES
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


@kernel(inline="always")
def _nonzero(block):
    """Whether a 4×4 block has a non-zero entry (a loop: np.any would make a cached kernel import numba's
    array-math lowering, and through it SciPy, every time it is loaded)."""
    for j in range(CANDIDATES):
        for k in range(CANDIDATES):
            if block[j, k] != 0.0:
                return True
    return False


@kernel(inline="always")
def _add_block_product(out, left, right, left_transposed):
    """out += left·right (or leftᵀ·right) for 4×4 blocks, each entry's sum over i formed before it is added."""
    for j in range(CANDIDATES):
        for k in range(CANDIDATES):
            total = 0.0
            for i in range(CANDIDATES):
                total += (left[i, j] if left_transposed else left[j, i]) * right[i, k]
            out[j, k] += total


@kernel("f8[:, :, :, :, ::1], f8[:, :, ::1], f8[:, :, :, :, ::1], f8[:, :, :, :, ::1], b1[:, :, ::1]")
def _smoothed_prolongator(blocks, jacobi_weight, basis, prolongator, present):
    """P = T − diag(jacobi_weight)·A·T, per node: prolongator[y, x, o] is the 4×4 block (node unknown ×
    group unknown) of the group at offset o = (oy + 1)·3 + ox + 1 from the node's own group; present
    marks the blocks that are not all zero."""
    rows, columns = blocks.shape[:2]
    prolongator[:] = 0.0
    for y in range(rows):
        for x in range(columns):
            gy, gx = y // GROUP, x // GROUP
            for neighbour in range(9):
                ny, nx = y + neighbour // 3 - 1, x + neighbour % 3 - 1
                if ny < 0 or ny >= rows or nx < 0 or nx >= columns:
                    continue
                offset = (ny // GROUP - gy + 1) * 3 + nx // GROUP - gx + 1
                node = (ny % GROUP) * GROUP + nx % GROUP
                for j in range(CANDIDATES):
                    for k in range(CANDIDATES):
                        total = 0.0
                        for i in range(CANDIDATES):
                            total += blocks[y, x, neighbour, j, i] * basis[ny // GROUP, nx // GROUP, node, i, k]
                        prolongator[y, x, offset, j, k] -= jacobi_weight[y, x, j] * total
            node = (y % GROUP) * GROUP + x % GROUP
            for j in range(CANDIDATES):  # loops, not a block addition: its shape check would link numba's string formatting
                for k in range(CANDIDATES):
                    prolongator[y, x, 4, j, k] += basis[gy, gx, node, j, k]
            for offset in range(9):
                present[y, x, offset] = _nonzero(prolongator[y, x, offset])


@kernel("f8[:, :, :, :, ::1], f8[:, :, :, :, ::1], b1[:, :, ::1], f8[:, :, :, :, ::1], f8[:, :, ::1]", returns="i8")
def _galerkin(blocks, prolongator, present, coarse, product):
    """coarse = Pᵀ A P as 3×3 stencil blocks of the group grid (zeroed first), node by node: A·P at the
    node for the groups around its own, then Pᵀ of the node times it (product: 9×4×4 scratch, (A·P)[node,
    group at offset o]). Returns the number of couplings found between groups that are not neighbours
    (none: a node's P and A·P reach one group further at most)."""
    rows, columns = blocks.shape[:2]
    coarse[:] = 0.0
    strays = 0
    for y in range(rows):
        for x in range(columns):
            gy, gx = y // GROUP, x // GROUP
            product[:] = 0.0
            for neighbour in range(9):
                ny, nx = y + neighbour // 3 - 1, x + neighbour % 3 - 1
                if ny < 0 or ny >= rows or nx < 0 or nx >= columns:
                    continue
                for offset in range(9):
                    if not present[ny, nx, offset]:
                        continue
                    oy, ox = ny // GROUP - gy + offset // 3 - 1, nx // GROUP - gx + offset % 3 - 1
                    if abs(oy) > 1 or abs(ox) > 1:
                        strays += 1
                        continue
                    _add_block_product(product[(oy + 1) * 3 + ox + 1], blocks[y, x, neighbour], prolongator[ny, nx, offset], False)
            for offset in range(9):
                if not present[y, x, offset]:
                    continue
                cy, cx = gy + offset // 3 - 1, gx + offset % 3 - 1
                for other in range(9):
                    dy, dx = other // 3 - offset // 3, other % 3 - offset % 3
                    if abs(dy) > 1 or abs(dx) > 1:
                        if _nonzero(product[other]):
                            strays += 1
                        continue
                    _add_block_product(coarse[cy, cx, (dy + 1) * 3 + dx + 1], prolongator[y, x, offset], product[other], True)
    return strays


@kernel("f8[:, :, :, :, ::1], f8[::1], f8[::1], f8[::1]", fastmath=True)
def block_residual(blocks, rhs, solution, out):
    """out = rhs − A·solution for a block-stencil operator (flat vectors, 4 unknowns per node)."""
    rows, columns = blocks.shape[:2]
    for y in range(rows):
        for x in range(columns):
            base = (y * columns + x) * CANDIDATES
            for j in range(CANDIDATES):
                out[base + j] = rhs[base + j]
            for neighbour in range(9):
                ny, nx = y + neighbour // 3 - 1, x + neighbour % 3 - 1
                if ny < 0 or ny >= rows or nx < 0 or nx >= columns:
                    continue
                other = (ny * columns + nx) * CANDIDATES
                for j in range(CANDIDATES):
                    total = 0.0
                    for i in range(CANDIDATES):
                        total += blocks[y, x, neighbour, j, i] * solution[other + i]
                    out[base + j] -= total


@kernel("f8[:, :, :, :, ::1], b1[:, :, ::1], i8, f8[::1], f8[::1], b1", fastmath=True)
def _transfer(prolongator, present, group_columns, fine, coarse, restricting):
    """coarse += Pᵀ·fine when restricting, else fine += P·coarse: one loop over P's blocks for both."""
    rows, columns = prolongator.shape[:2]
    for y in range(rows):
        for x in range(columns):
            base = (y * columns + x) * CANDIDATES
            for offset in range(9):
                if not present[y, x, offset]:
                    continue
                group = ((y // GROUP + offset // 3 - 1) * group_columns + x // GROUP + offset % 3 - 1) * CANDIDATES
                for j in range(CANDIDATES):
                    for k in range(CANDIDATES):
                        if restricting:
                            coarse[group + k] += prolongator[y, x, offset, j, k] * fine[base + j]
                        else:
                            fine[base + j] += prolongator[y, x, offset, j, k] * coarse[group + k]


@kernel("f8[:, :, :, :, ::1], f8[:, ::1]")
def _lower_band(blocks, band):
    """band[u, d] = A[u, u − bandwidth + d] for the block-stencil operator (raster order, 4 unknowns per node)."""
    rows, columns = blocks.shape[:2]
    bandwidth = band.shape[1] - 1
    band[:] = 0.0
    for y in range(rows):
        for x in range(columns):
            for neighbour in range(9):
                ny, nx = y + neighbour // 3 - 1, x + neighbour % 3 - 1
                if ny < 0 or ny >= rows or nx < 0 or nx >= columns:
                    continue
                for j in range(CANDIDATES):
                    row = (y * columns + x) * CANDIDATES + j
                    for i in range(CANDIDATES):
                        column = (ny * columns + nx) * CANDIDATES + i
                        if column <= row:
                            band[row, column - row + bandwidth] = blocks[y, x, neighbour, j, i]


@kernel("f8[:, ::1]", returns="b1")
def _banded_cholesky(band):
    """In place: the lower band of A becomes that of its Cholesky factor L (A = L Lᵀ). False when A is
    not numerically positive definite."""
    size, bandwidth = band.shape[0], band.shape[1] - 1
    for j in range(size):
        pivot = band[j, bandwidth]
        for k in range(max(0, j - bandwidth), j):
            pivot -= band[j, k - j + bandwidth] ** 2
        if not pivot > 0.0:
            return False
        pivot = np.sqrt(pivot)
        band[j, bandwidth] = pivot
        for i in range(j + 1, min(size, j + bandwidth + 1)):
            value = band[i, j - i + bandwidth]
            for k in range(max(0, i - bandwidth), j):
                value -= band[i, k - i + bandwidth] * band[j, k - j + bandwidth]
            band[i, j - i + bandwidth] = value / pivot
    return True


@kernel("f8[:, ::1], f8[::1]")
def _banded_solve(factor, solution):
    """In place: the right-hand side in `solution` becomes x with L Lᵀ x = rhs, for the banded Cholesky factor L."""
    size, bandwidth = factor.shape[0], factor.shape[1] - 1
    for i in range(size):
        value = solution[i]
        for k in range(max(0, i - bandwidth), i):
            value -= factor[i, k - i + bandwidth] * solution[k]
        solution[i] = value / factor[i, bandwidth]
    for i in range(size - 1, -1, -1):
        value = solution[i]
        for k in range(i + 1, min(size, i + bandwidth + 1)):
            value -= factor[k, i - k + bandwidth] * solution[k]
        solution[i] = value / factor[i, bandwidth]


def group_grid(rows, columns):
    """(group rows, group columns) of a node grid: partial groups at the bottom and right edges."""
    return -(-rows // GROUP), -(-columns // GROUP)


def absolute_row_sums(blocks):
    """R×C×4 sums of |A| along each row of a block-stencil operator (its off-grid neighbours are zero)."""
    return np.abs(blocks).sum(axis=(2, 4))


def dense_matrix(blocks):
    """The block-stencil operator as a dense (4·R·C)² matrix (unknown k of node (y, x) is (y·C + x)·4 + k).

    Example:
        >>> dense_matrix(np.ones((1, 1, 9, 4, 4))).shape
        (4, 4)
    """
    rows, columns = blocks.shape[:2]
    count = rows * columns
    dense = np.zeros((count, CANDIDATES, count, CANDIDATES))
    nodes = np.arange(count).reshape(rows, columns)
    for neighbour in range(9):
        dy, dx = neighbour // 3 - 1, neighbour % 3 - 1
        here_rows, here_columns = slice(max(0, -dy), rows - max(0, dy)), slice(max(0, -dx), columns - max(0, dx))
        there_rows, there_columns = slice(max(0, dy), rows + min(0, dy)), slice(max(0, dx), columns + min(0, dx))
        here, there = nodes[here_rows, here_columns].ravel(), nodes[there_rows, there_columns].ravel()
        dense[here, :, there, :] = blocks[here_rows, here_columns, neighbour].reshape(-1, CANDIDATES, CANDIDATES)
    return dense.reshape(count * CANDIDATES, count * CANDIDATES)


def transposed_stencil(blocks):
    """The same operator with the node grid transposed (C×R×9×4×4: neighbour (dy, dx) becomes (dx, dy))."""
    swap = [(n % 3) * 3 + n // 3 for n in range(9)]
    return np.ascontiguousarray(blocks.transpose(1, 0, 2, 3, 4)[:, :, swap])


class CoarsestSolve:
    """The exact solve of the coarsest level: banded Cholesky, nodes ordered along the shorter side.

    A level that is not numerically positive definite (not seen: it is a Galerkin product of an SPD
    system) is solved with its dense inverse instead.

    Args:
        blocks: the level's operator as R×C×9×4×4 stencil blocks.
    """

    def __init__(self, blocks):
        rows, columns = blocks.shape[:2]
        self.shape, self.transposed = (rows, columns), columns > rows
        ordered = transposed_stencil(blocks) if self.transposed else np.ascontiguousarray(blocks)
        size = rows * columns * CANDIDATES
        band = np.empty((size, min(size - 1, CANDIDATES * (ordered.shape[1] + 1) + CANDIDATES - 1) + 1))
        _lower_band(ordered, band)
        self.factor = band if _banded_cholesky(band) else None
        self.inverse = None if self.factor is not None else np.linalg.inv(dense_matrix(blocks))

    def solve(self, rhs):
        if self.inverse is not None:
            return self.inverse @ rhs
        if not self.transposed:
            solution = np.array(rhs, np.float64)
            _banded_solve(self.factor, solution)
            return solution
        rows, columns = self.shape
        reordered = rhs.reshape(rows, columns, CANDIDATES).transpose(1, 0, 2).copy()  # a C-ordered copy
        _banded_solve(self.factor, reordered.reshape(-1))
        return reordered.transpose(1, 0, 2).ravel()


class _Level:
    """One grid level: its block-stencil operator, the block diagonal's inverses, and P to the next level."""

    def __init__(self, blocks, candidates):
        rows, columns = blocks.shape[:2]
        self.blocks = blocks
        self.inverse_diagonal = np.linalg.inv(blocks[:, :, 4])
        group_rows, group_columns = self.group_shape = group_grid(rows, columns)
        basis = np.zeros((group_rows, group_columns, GROUP * GROUP, CANDIDATES, CANDIDATES))
        self.next_candidates = np.zeros((group_rows, group_columns, CANDIDATES, CANDIDATES))
        _group_tentative(np.ascontiguousarray(candidates), basis, self.next_candidates,
                         np.empty((CANDIDATES, GROUP * GROUP * CANDIDATES)))
        jacobi_weight = OMEGA / np.maximum(absolute_row_sums(blocks), np.finfo(float).tiny)
        self.prolongator = np.empty((rows, columns, 9, CANDIDATES, CANDIDATES))
        self.present = np.empty((rows, columns, 9), np.bool_)
        _smoothed_prolongator(blocks, jacobi_weight, basis, self.prolongator, self.present)

    def coarse_operator(self):
        """Pᵀ A P as block-stencil blocks of the group grid, unit diagonal where a group's candidate was dropped."""
        coarse = np.empty((*self.group_shape, 9, CANDIDATES, CANDIDATES))
        if _galerkin(self.blocks, self.prolongator, self.present, coarse, np.empty((9, CANDIDATES, CANDIDATES))):
            raise AssertionError("a coarse level coupled groups that are not neighbours")
        aggregation.unit_diagonal_where_unused(coarse, self.next_candidates)
        return coarse

    def restrict(self, fine):
        """Pᵀ·fine."""
        coarse = np.zeros(np.prod(self.group_shape) * CANDIDATES)
        _transfer(self.prolongator, self.present, self.group_shape[1], fine, coarse, True)
        return coarse

    def prolong_add(self, coarse, fine):
        """fine += P·coarse."""
        _transfer(self.prolongator, self.present, self.group_shape[1], fine, coarse, False)
        return fine


class CoarseLevels:
    """The levels below the pixels, from the tile level down, and their part of the V-cycle.

    Args:
        blocks: the tile operator as R×C×9×4×4 stencil blocks (``aggregation.first_coarsening``).
        candidates: the tiles' coarse candidates, (4·R·C)×4.
        direct_size: a level of at most this many unknowns is solved exactly (``CoarsestSolve``).

    Example:
        >>> levels = CoarseLevels(blocks, candidates)
        >>> correction = levels.cycle(coarse_residual)
    """

    def __init__(self, blocks, candidates, direct_size=DIRECT_SIZE):
        rows, columns = blocks.shape[:2]
        candidates = np.asarray(candidates).reshape(rows, columns, CANDIDATES, CANDIDATES)
        self.levels = []
        while blocks.shape[0] * blocks.shape[1] * CANDIDATES > direct_size:
            level = _Level(blocks, candidates)
            self.levels.append(level)
            blocks, candidates = level.coarse_operator(), level.next_candidates
        self.coarsest = CoarsestSolve(blocks)

    def __len__(self):
        """Levels below the pixels, the coarsest (direct) one included."""
        return len(self.levels) + 1

    def cycle(self, rhs, index=0):
        """A V-cycle from level `index` down for operator·x = rhs, from zero: symmetric block Gauss–Seidel
        before and after the coarse correction, the exact solve at the bottom."""
        if index == len(self.levels):
            return self.coarsest.solve(rhs)
        level = self.levels[index]
        solution = np.zeros_like(rhs)
        aggregation.tile_gauss_seidel(level.blocks, level.inverse_diagonal, rhs, solution)
        residual = np.empty_like(rhs)
        block_residual(level.blocks, rhs, solution, residual)
        level.prolong_add(self.cycle(level.restrict(residual), index + 1), solution)
        aggregation.tile_gauss_seidel(level.blocks, level.inverse_diagonal, rhs, solution)
        return solution
