"""The multigrid below the tiles: groups of nodes, level after level, down to a banded Cholesky solve.

Each level below the pixels is a grid of nodes with 4 unknowns each (the tiles' {1, R, G, B}
coefficients, then groups of tiles, …) whose operator couples a node with the nodes at most r rows
and columns away: a (2r + 1)² stencil of 4×4 blocks, R×C×(2r + 1)²×4×4 (neighbour n = (dy + r)·(2r + 1)
+ dx + r; the tile level has r = 1). The next level groups g×g nodes and is built as pyamg's smoothed
aggregation builds it (the set-up here before this module): the group's candidates made orthonormal
by modified Gram–Schmidt (T), P = (I − ω D⁻¹ A) T with D the rows' absolute sums, A' = Pᵀ A P.

Smoothing by one node keeps everything local, so no sparse matrix is needed: a node's row of P reaches
only the groups at most ⌈r / g⌉ away from its own (P is stored per node as blocks of 4×4, one per group
offset), and A' couples groups at most ⌊(3r + g − 1) / g⌋ apart (a node of one group, the r nodes its
P column reaches, the r more that A reaches, and the r of the other group's P column), so every level
keeps the block stencil form that the compiled block Gauss–Seidel (``aggregation.tile_gauss_seidel``)
sweeps. Groups of 2 need a third fewer CG iterations than groups of 3, but they widen the stencil
level by level (r = 1, 2, 3, 5, …), and a wide level costs more to build than it saves; groups of 3
keep r = 3 as it is. So the first two levels below the tiles group 2×2 nodes and the others 3×3
(``GROUPS``; docs/zhuo11.md has the measurements). The products are compiled kernels on these
blocks, and a level of at most ``DIRECT_SIZE`` unknowns is solved exactly by a banded Cholesky
factorisation (nodes in raster order along the shorter side, so the band is 4·r·(side + 1) + 3 wide).
SciPy's sparse products and LU did all this before; importing SciPy alone cost a third of a second, a
fifth of a small photo's whole run.
"""
import numpy as np

from dmenet.native_kernels import kernel
from dmenet.propagation import aggregation
from dmenet.propagation.aggregation import gram_schmidt, shifted_overlap, side_reach, stencil_reach
from dmenet.propagation.rows import RowRunner

GROUPS = (2, 2, 3)  # nodes per side of a group, level by level below the tiles (the last for all below)
DIRECT_SIZE = 1000
OMEGA = aggregation.OMEGA
CANDIDATES = aggregation.CANDIDATES


def prolongator_reach(reach, group):
    """How many groups away from its own a node's row of P reaches, for a level of stencil reach `reach`."""
    return -(-reach // group)


def coarse_reach(reach, group):
    """The stencil reach of the level below (Pᵀ A P), in groups."""
    return (3 * reach + group - 1) // group


@kernel("f8[:, :, :, ::1], i8, f8[:, :, :, :, ::1], f8[:, :, :, ::1], f8[:, ::1]")
def _group_tentative(candidates, group, basis, factors, vectors):
    """T on every group of group×group nodes: its nodes' candidate rows made orthonormal (modified
    Gram–Schmidt; a candidate dependent on the earlier ones there is dropped), and the Gram–Schmidt factors
    (vectors: 4×(4·group²) scratch)."""
    rows, columns = candidates.shape[:2]
    group_rows, group_columns = basis.shape[:2]
    size = group * group * CANDIDATES
    for gy in range(group_rows):
        for gx in range(group_columns):
            vectors[:] = 0.0
            for node in range(group * group):
                y, x = gy * group + node // group, gx * group + node % group
                if y < rows and x < columns:
                    for unknown in range(CANDIDATES):
                        for k in range(CANDIDATES):
                            vectors[k, node * CANDIDATES + unknown] = candidates[y, x, unknown, k]
            gram_schmidt(vectors, size, factors[gy, gx])
            for node in range(group * group):
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
def _add_block_product(out, left, right):
    """out += left·right for 4×4 blocks (the sum over i written out: the compiler vectorises it along k)."""
    for j in range(CANDIDATES):
        l0, l1, l2, l3 = left[j, 0], left[j, 1], left[j, 2], left[j, 3]
        for k in range(CANDIDATES):
            out[j, k] += l0 * right[0, k] + l1 * right[1, k] + l2 * right[2, k] + l3 * right[3, k]


@kernel(inline="always")
def _add_transposed_block_product(out, left, right):
    """out += leftᵀ·right for 4×4 blocks."""
    for j in range(CANDIDATES):
        l0, l1, l2, l3 = left[0, j], left[1, j], left[2, j], left[3, j]
        for k in range(CANDIDATES):
            out[j, k] += l0 * right[0, k] + l1 * right[1, k] + l2 * right[2, k] + l3 * right[3, k]


@kernel("f8[:, :, :, :, ::1], f8, f8[:, :, ::1], f8[:, :, :, ::1], f8[:, ::1]", returns="b1")
def _jacobi_weights_and_inverses(blocks, omega, jacobi_weight, inverse_diagonal, work):
    """jacobi_weight = ω / (the rows' sums of |A|) and inverse_diagonal = the inverses of the centre blocks rounded
    to float32, as the cycle stores the operator (Gauss–Jordan with partial pivoting; work: 4×8 scratch). False
    when a centre block is singular.

    The smoother must divide by the diagonal of the operator the residuals are formed with: Gauss–Seidel
    with another one is a different operator, and the V-cycle would no longer be symmetric (7e-8 apart)."""
    rows, columns, neighbours = blocks.shape[:3]
    centre = neighbours // 2
    for y in range(rows):
        for x in range(columns):
            for j in range(CANDIDATES):
                total = 0.0
                for neighbour in range(neighbours):
                    for i in range(CANDIDATES):
                        total += abs(blocks[y, x, neighbour, j, i])
                jacobi_weight[y, x, j] = omega / max(total, 2.2250738585072014e-308)  # np.finfo(float).tiny
                for i in range(CANDIDATES):
                    work[j, i] = np.float32(blocks[y, x, centre, j, i])
                    work[j, CANDIDATES + i] = 1.0 if i == j else 0.0
            for k in range(CANDIDATES):
                pivot_row = k
                for j in range(k + 1, CANDIDATES):
                    if abs(work[j, k]) > abs(work[pivot_row, k]):
                        pivot_row = j
                if work[pivot_row, k] == 0.0:
                    return False
                for i in range(2 * CANDIDATES):
                    work[k, i], work[pivot_row, i] = work[pivot_row, i], work[k, i]
                pivot = work[k, k]
                for i in range(2 * CANDIDATES):
                    work[k, i] /= pivot
                for j in range(CANDIDATES):
                    if j != k:
                        factor = work[j, k]
                        for i in range(2 * CANDIDATES):
                            work[j, i] -= factor * work[k, i]
            for j in range(CANDIDATES):
                for i in range(CANDIDATES):
                    inverse_diagonal[y, x, j, i] = work[j, CANDIDATES + i]
    return True


@kernel("f8[:, :, :, :, ::1], f8[:, :, ::1], f8[:, :, :, :, ::1], i8, i8, i8, f8[:, :, :, :, ::1], b1[:, :, ::1]")
def _smoothed_prolongator(blocks, jacobi_weight, basis, group, first_row, last_row, prolongator, present):
    """P = T − diag(jacobi_weight)·A·T on node rows first_row … last_row − 1, per node: prolongator[y, x, o]
    is the 4×4 block (node unknown × group unknown) of the group at offset o = (oy + p)·(2p + 1) + ox + p
    from the node's own group (p: P's reach in groups); present marks the blocks that are not all zero."""
    rows, columns, neighbours = blocks.shape[:3]
    reach, reach_p = side_reach(neighbours), side_reach(prolongator.shape[2])
    side, side_p = 2 * reach + 1, 2 * reach_p + 1
    for y in range(first_row, last_row):
        for x in range(columns):
            for offset in range(prolongator.shape[2]):
                for j in range(CANDIDATES):
                    for k in range(CANDIDATES):
                        prolongator[y, x, offset, j, k] = 0.0
            gy, gx = y // group, x // group
            for neighbour in range(neighbours):
                ny, nx = y + neighbour // side - reach, x + neighbour % side - reach
                if ny < 0 or ny >= rows or nx < 0 or nx >= columns:
                    continue
                offset = (ny // group - gy + reach_p) * side_p + nx // group - gx + reach_p
                node = (ny % group) * group + nx % group
                for j in range(CANDIDATES):
                    for k in range(CANDIDATES):
                        total = 0.0
                        for i in range(CANDIDATES):
                            total += blocks[y, x, neighbour, j, i] * basis[ny // group, nx // group, node, i, k]
                        prolongator[y, x, offset, j, k] -= jacobi_weight[y, x, j] * total
            node, own = (y % group) * group + x % group, reach_p * side_p + reach_p
            for j in range(CANDIDATES):  # loops, not a block addition: its shape check would link numba's string formatting
                for k in range(CANDIDATES):
                    prolongator[y, x, own, j, k] += basis[gy, gx, node, j, k]
            for offset in range(prolongator.shape[2]):
                present[y, x, offset] = _nonzero(prolongator[y, x, offset])


@kernel("f8[:, :, :, :, ::1], f8[:, :, :, :, ::1], b1[:, :, ::1], i8, i8, i8, f8[:, :, :, :, ::1], f8[:, :, ::1]", returns="i8", fastmath=True)
def _galerkin(blocks, prolongator, present, group, first_row, last_row, coarse, product):
    """coarse = the part of Pᵀ A P from node rows first_row … last_row − 1, as stencil blocks of the group
    grid (zeroed first), node by node: A·P at the node for the groups around its own, then Pᵀ of the node
    times it (product: (4p + 1)²×4×4 scratch, (A·P)[node, group at offset o], p: P's reach in groups).
    Only the centre and the neighbours after it are formed; Pᵀ A P is symmetric,
    ``aggregation.mirror_neighbours`` fills the others. Returns the number of couplings found beyond the
    coarse stencil's reach (none: module docstring)."""
    rows, columns, neighbours = blocks.shape[:3]
    reach, reach_p, reach_c = side_reach(neighbours), side_reach(prolongator.shape[2]), side_reach(coarse.shape[2])
    reach_product = side_reach(product.shape[0])
    side, side_p, side_c, side_product = 2 * reach + 1, 2 * reach_p + 1, 2 * reach_c + 1, 2 * reach_product + 1
    coarse[:] = 0.0
    strays = 0
    for y in range(first_row, last_row):
        for x in range(columns):
            gy, gx = y // group, x // group
            product[:] = 0.0
            for neighbour in range(neighbours):
                ny, nx = y + neighbour // side - reach, x + neighbour % side - reach
                if ny < 0 or ny >= rows or nx < 0 or nx >= columns:
                    continue
                for offset in range(prolongator.shape[2]):
                    if not present[ny, nx, offset]:
                        continue
                    oy = ny // group - gy + offset // side_p - reach_p
                    ox = nx // group - gx + offset % side_p - reach_p
                    if abs(oy) > reach_product or abs(ox) > reach_product:
                        strays += 1
                        continue
                    _add_block_product(product[(oy + reach_product) * side_product + ox + reach_product],
                                       blocks[y, x, neighbour], prolongator[ny, nx, offset])
            for offset in range(prolongator.shape[2]):
                if not present[y, x, offset]:
                    continue
                py, px = offset // side_p - reach_p, offset % side_p - reach_p
                for other in range(product.shape[0]):
                    if not _nonzero(product[other]):
                        continue
                    dy, dx = other // side_product - reach_product - py, other % side_product - reach_product - px
                    if abs(dy) > reach_c or abs(dx) > reach_c:
                        strays += 1
                        continue
                    neighbour = (dy + reach_c) * side_c + dx + reach_c
                    if neighbour >= coarse.shape[2] // 2:  # the centre and after: mirror_neighbours fills the rest
                        _add_transposed_block_product(coarse[gy + py, gx + px, neighbour], prolongator[y, x, offset], product[other])
    return strays


@kernel("f4[:, :, :, :, ::1], f8[::1], f8[::1], f8[::1]", fastmath=True)
def block_residual(blocks, rhs, solution, out):
    """out = rhs − A·solution for a block-stencil operator (flat vectors, 4 unknowns per node)."""
    rows, columns, neighbours = blocks.shape[:3]
    reach = side_reach(neighbours)
    side = 2 * reach + 1
    for y in range(rows):
        for x in range(columns):
            base = (y * columns + x) * CANDIDATES
            r0, r1, r2, r3 = rhs[base], rhs[base + 1], rhs[base + 2], rhs[base + 3]
            for ny in range(max(0, y - reach), min(rows, y + reach + 1)):
                for nx in range(max(0, x - reach), min(columns, x + reach + 1)):
                    a0, a1, a2, a3 = aggregation.block_times(blocks[y, x, (ny - y + reach) * side + nx - x + reach],
                                                             solution, (ny * columns + nx) * CANDIDATES)
                    r0, r1, r2, r3 = r0 - a0, r1 - a1, r2 - a2, r3 - a3
            out[base], out[base + 1], out[base + 2], out[base + 3] = r0, r1, r2, r3


@kernel("f4[:, :, :, :, ::1], b1[:, :, ::1], i8, i8, f8[::1], f8[::1], b1", fastmath=True)
def _transfer(prolongator, present, group, group_columns, fine, coarse, restricting):
    """coarse += Pᵀ·fine when restricting, else fine += P·coarse: one loop over P's blocks for both."""
    rows, columns, offsets = prolongator.shape[:3]
    reach_p = side_reach(offsets)
    side_p = 2 * reach_p + 1
    for y in range(rows):
        for x in range(columns):
            base = (y * columns + x) * CANDIDATES
            f0, f1, f2, f3 = fine[base], fine[base + 1], fine[base + 2], fine[base + 3]
            for offset in range(offsets):
                if not present[y, x, offset]:
                    continue
                group_y, group_x = y // group + offset // side_p - reach_p, x // group + offset % side_p - reach_p
                target = (group_y * group_columns + group_x) * CANDIDATES
                block = prolongator[y, x, offset]
                if restricting:
                    for k in range(CANDIDATES):
                        coarse[target + k] += block[0, k] * f0 + block[1, k] * f1 + block[2, k] * f2 + block[3, k] * f3
                else:
                    a0, a1, a2, a3 = aggregation.block_times(block, coarse, target)
                    f0, f1, f2, f3 = f0 + a0, f1 + a1, f2 + a2, f3 + a3
            if not restricting:
                fine[base], fine[base + 1], fine[base + 2], fine[base + 3] = f0, f1, f2, f3


@kernel("f8[:, :, :, :, ::1], f8[:, ::1]")
def _lower_band(blocks, band):
    """band[u, d] = A[u, u − bandwidth + d] for the block-stencil operator (raster order, 4 unknowns per node)."""
    rows, columns, neighbours = blocks.shape[:3]
    reach = side_reach(neighbours)
    side = 2 * reach + 1
    bandwidth = band.shape[1] - 1
    band[:] = 0.0
    for y in range(rows):
        for x in range(columns):
            for neighbour in range(neighbours):
                ny, nx = y + neighbour // side - reach, x + neighbour % side - reach
                if ny < 0 or ny >= rows or nx < 0 or nx >= columns:
                    continue
                for j in range(CANDIDATES):
                    row = (y * columns + x) * CANDIDATES + j
                    for i in range(CANDIDATES):
                        column = (ny * columns + nx) * CANDIDATES + i
                        if column <= row:
                            band[row, column - row + bandwidth] = blocks[y, x, neighbour, j, i]
@kernel("f8[:, ::1]", returns="b1", fastmath=True)
def _banded_cholesky(band):
    """In place: the lower band of A becomes that of its Cholesky factor L (A = L Lᵀ). False when A is
    not numerically positive definite.

    The inner products run over views from index 0 (provably non-negative indices), so the compiler
    vectorises them: indexed with k − i + bandwidth, each access kept numba's negative-index check
    and the factorisation ran at a quarter of the speed."""
    size, bandwidth = band.shape[0], band.shape[1] - 1
    for j in range(size):
        first = max(0, j - bandwidth)
        row_j = band[j, first - j + bandwidth:bandwidth]
        pivot = band[j, bandwidth]
        for k in range(row_j.shape[0]):
            pivot -= row_j[k] * row_j[k]
        if not pivot > 0.0:
            return False
        pivot = np.sqrt(pivot)
        band[j, bandwidth] = pivot
        for i in range(j + 1, min(size, j + bandwidth + 1)):
            start = max(0, i - bandwidth)  # ≥ first: the rows below reach no further back
            left = band[i, start - i + bandwidth:j - i + bandwidth]
            right = row_j[start - first:]
            value = band[i, j - i + bandwidth]
            for k in range(left.shape[0]):
                value -= left[k] * right[k]
            band[i, j - i + bandwidth] = value / pivot
    return True


@kernel("f8[:, ::1], f8[::1]", fastmath=True)
def _banded_solve(factor, solution):
    """In place: the right-hand side in `solution` becomes x with L Lᵀ x = rhs, for the banded Cholesky factor L
    (views from index 0, as in ``_banded_cholesky``)."""
    size, bandwidth = factor.shape[0], factor.shape[1] - 1
    for i in range(size):
        first = max(0, i - bandwidth)
        row, before = factor[i, first - i + bandwidth:bandwidth], solution[first:i]
        value = solution[i]
        for k in range(row.shape[0]):
            value -= row[k] * before[k]
        solution[i] = value / factor[i, bandwidth]
    for i in range(size - 1, -1, -1):  # Lᵀ x = y a column of Lᵀ at a time: along the band's rows, contiguous
        value = solution[i] / factor[i, bandwidth]
        solution[i] = value
        first = max(0, i - bandwidth)
        row, before = factor[i, first - i + bandwidth:bandwidth], solution[first:i]
        for k in range(row.shape[0]):
            before[k] -= row[k] * value


def group_grid(rows, columns, group):
    """(group rows, group columns) of a node grid: partial groups at the bottom and right edges."""
    return -(-rows // group), -(-columns // group)


def _neighbour_offsets(blocks):
    """(dy, dx) of each neighbour of a block stencil, in its order."""
    reach = stencil_reach(blocks)
    return [(n // (2 * reach + 1) - reach, n % (2 * reach + 1) - reach) for n in range(blocks.shape[2])]


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
    for neighbour, (dy, dx) in enumerate(_neighbour_offsets(blocks)):
        (here_rows, there_rows), (here_columns, there_columns) = shifted_overlap(rows, dy), shifted_overlap(columns, dx)
        here, there = nodes[here_rows, here_columns].ravel(), nodes[there_rows, there_columns].ravel()
        dense[here, :, there, :] = blocks[here_rows, here_columns, neighbour].reshape(-1, CANDIDATES, CANDIDATES)
    return dense.reshape(count * CANDIDATES, count * CANDIDATES)


def transposed_stencil(blocks):
    """The same operator with the node grid transposed (C×R×…: neighbour (dy, dx) becomes (dx, dy))."""
    side = 2 * stencil_reach(blocks) + 1
    swap = [(n % side) * side + n // side for n in range(blocks.shape[2])]
    return np.ascontiguousarray(blocks.transpose(1, 0, 2, 3, 4)[:, :, swap])


class CoarsestSolve:
    """The exact solve of the coarsest level: banded Cholesky, nodes ordered along the shorter side.

    A level that is not numerically positive definite (not seen: it is a Galerkin product of an SPD
    system) is solved with its dense inverse instead.

    Args:
        blocks: the level's operator as R×C×(2r + 1)²×4×4 stencil blocks.
    """

    def __init__(self, blocks):
        rows, columns = blocks.shape[:2]
        self.shape, self.transposed = (rows, columns), columns > rows
        ordered = transposed_stencil(blocks) if self.transposed else np.ascontiguousarray(blocks)
        size = rows * columns * CANDIDATES
        reach = stencil_reach(blocks)
        band = np.empty((size, min(size - 1, CANDIDATES * reach * (ordered.shape[1] + 1) + CANDIDATES - 1) + 1))
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
    """One grid level: its block-stencil operator, the block diagonal's inverses, P to the next level
    (groups of `group`×`group` nodes) and the next level's operator Pᵀ A P (``coarse``).

    The cycle reads the operator and P as float32 copies (``smoothing_blocks``, ``prolongator``): they
    only precondition, and every V-cycle streams them through memory several times, which took most of
    a coarse level's time in float64.
    """

    def __init__(self, blocks, candidates, group, run_rows):
        rows, columns = blocks.shape[:2]
        self.group, self.reach = group, stencil_reach(blocks)
        self.smoothing_blocks = blocks.astype(np.float32)
        group_rows, group_columns = self.group_shape = group_grid(rows, columns, group)
        basis = np.zeros((group_rows, group_columns, group * group, CANDIDATES, CANDIDATES))
        self.next_candidates = np.zeros((group_rows, group_columns, CANDIDATES, CANDIDATES))
        _group_tentative(np.ascontiguousarray(candidates), group, basis, self.next_candidates,
                         np.empty((CANDIDATES, group * group * CANDIDATES)))
        jacobi_weight = np.empty((rows, columns, CANDIDATES))
        self.inverse_diagonal = np.empty((rows, columns, CANDIDATES, CANDIDATES))
        if not _jacobi_weights_and_inverses(blocks, OMEGA, jacobi_weight, self.inverse_diagonal, np.empty((CANDIDATES, 2 * CANDIDATES))):
            raise np.linalg.LinAlgError("a coarse level has a singular diagonal block")
        reach_p = prolongator_reach(self.reach, group)
        prolongator = np.empty((rows, columns, (2 * reach_p + 1) ** 2, CANDIDATES, CANDIDATES))
        self.present = np.empty(prolongator.shape[:3], np.bool_)
        run_rows(lambda first, last: _smoothed_prolongator(blocks, jacobi_weight, basis, group, first, last, prolongator, self.present), rows)
        # the two halves of the group rows sum their nodes into zeroed operators of their own (groups
        # next to each other share coarse blocks), on two threads when there are, and are then added:
        # always two halves, so the sums' order and the result do not depend on the thread count
        shape = (*self.group_shape, (2 * coarse_reach(self.reach, group) + 1) ** 2, CANDIDATES, CANDIDATES)
        bounds = (0, group_rows // 2, group_rows)
        halves, strays = [np.empty(shape), np.empty(shape)], [0, 0]

        def galerkin(first, last):
            for half in range(first, last):
                strays[half] = _galerkin(blocks, prolongator, self.present, group, bounds[half] * group,
                                         min(rows, bounds[half + 1] * group), halves[half],
                                         np.empty(((4 * reach_p + 1) ** 2, CANDIDATES, CANDIDATES)))

        run_rows(galerkin, 2)
        if any(strays):
            raise AssertionError("a coarse level coupled groups beyond its stencil")
        self.coarse = halves[0]
        self.coarse += halves[1]
        aggregation.mirror_neighbours(self.coarse)
        aggregation.unit_diagonal_where_unused(self.coarse, self.next_candidates)
        self.prolongator = prolongator.astype(np.float32)

    def restrict(self, fine):
        """Pᵀ·fine."""
        coarse = np.zeros(np.prod(self.group_shape) * CANDIDATES)
        _transfer(self.prolongator, self.present, self.group, self.group_shape[1], fine, coarse, True)
        return coarse

    def prolong_add(self, coarse, fine):
        """fine += P·coarse."""
        _transfer(self.prolongator, self.present, self.group, self.group_shape[1], fine, coarse, False)
        return fine


class CoarseLevels:
    """The levels below the pixels, from the tile level down, and their part of the V-cycle.

    Args:
        blocks: the tile operator as R×C×9×4×4 stencil blocks (``aggregation.first_coarsening``).
        candidates: the tiles' coarse candidates, (4·R·C)×4.
        direct_size: a level of at most this many unknowns is solved exactly (``CoarsestSolve``).
        groups: nodes per side of a group, level by level (the last one for every level below).
        run_rows: ``dmenet.propagation.rows.RowRunner`` for the set-up (None: one thread; the result
            does not depend on it).

    Example:
        >>> levels = CoarseLevels(blocks, candidates)
        >>> correction = levels.cycle(coarse_residual)
    """

    def __init__(self, blocks, candidates, direct_size=DIRECT_SIZE, groups=GROUPS, run_rows=None):
        rows, columns = blocks.shape[:2]
        candidates = np.asarray(candidates).reshape(rows, columns, CANDIDATES, CANDIDATES)
        self.levels = []
        while blocks.shape[0] * blocks.shape[1] * CANDIDATES > direct_size:
            level = _Level(blocks, candidates, groups[min(len(self.levels), len(groups) - 1)], run_rows or RowRunner(1))
            self.levels.append(level)
            blocks, candidates = level.coarse, level.next_candidates
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
        aggregation.tile_gauss_seidel(level.smoothing_blocks, level.inverse_diagonal, rhs, solution)
        residual = np.empty_like(rhs)
        block_residual(level.smoothing_blocks, rhs, solution, residual)
        level.prolong_add(self.cycle(level.restrict(residual), index + 1), solution)
        aggregation.tile_gauss_seidel(level.smoothing_blocks, level.inverse_diagonal, rhs, solution)
        return solution
