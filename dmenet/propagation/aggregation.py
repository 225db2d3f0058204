"""The multigrid's first coarsening, built on the pixel grid: 6×6 tiles, near-null space {1, R, G, B}.

It is smoothed aggregation as pyamg builds it with predefined aggregates (the previous set-up here):
  * T, the tentative prolongator: on every tile the four candidates (1, R, G, B of the guide) made
    orthonormal by modified Gram–Schmidt; a candidate that is (almost) a combination of the earlier
    ones on a tile, as on a flat patch of sky, is dropped there (pyamg's ``fit_candidates``, tol 1e-10);
  * P = (I − ω D⁻¹ A) T, with D the rows' absolute sums (pyamg's "local" Jacobi weighting), ω = 4/3;
  * A_c = Pᵀ A P, the coarse operator, and the tiles' Gram–Schmidt factors as its candidates.
Because a tile is 6×6 and the stencil reaches 2 pixels, every tile's P lives on the 10×10 pixels
around it and couples only with its 8 neighbour tiles (two tiles apart, their spans are 6 pixels
apart: more than the stencil's 2 reaches, so tiles of at least 6 keep this form), so P is stored per
tile as a dense 10×10×4 block (candidate-major) and A_c as a 3×3 stencil of 4×4 blocks: no sparse matrix
products, which took 0.4 s of the 0.5 s set-up of a 640×427 photo. Restriction (Pᵀ) and prolongation
(P) are compiled kernels on these blocks, and every kernel works on a range of rows so that two
threads can share the work. Tiles of 6 with groups of 2 below them need a third fewer CG iterations
than tiles of 8 with groups of 3 (docs/zhuo11.md).
"""
import numpy as np

from dmenet.native_kernels import kernel
from dmenet.propagation.stencil import PAD, upper_tap

TILE = 6
REACH = 2  # pixels the stencil (and so P) reaches beyond a tile on every side
SPAN = TILE + 2 * REACH  # side of the pixels a tile's prolongator covers
PRODUCT_SIDE = SPAN + 2 * REACH  # A·P of one tile reaches 2 more pixels
CANDIDATES = 4  # 1, R, G, B
OMEGA = 4.0 / 3.0
DROP_TOLERANCE = 1e-10


def stencil_reach(blocks):
    """r of an operator stored as R×C×(2r + 1)²×4×4 stencil blocks (1 for the tile level's 3×3).

    Example:
        >>> stencil_reach(np.zeros((2, 3, 25, 4, 4)))
        2
    """
    return int(round(np.sqrt(np.shape(blocks)[2]))) // 2


@kernel(inline="always")
def side_reach(count):
    """r of a (2r + 1)² stencil from the count of its neighbours (``stencil_reach`` inside a kernel)."""
    side = 1
    while side * side < count:
        side += 2
    return side // 2


def tile_grid(height, width):
    """(tile rows, tile columns) of an image: partial tiles at the bottom and right edges."""
    return -(-height // TILE), -(-width // TILE)


@kernel()
def gram_schmidt(vectors, count, factors):
    """Modified Gram–Schmidt, in place, on the rows of vectors[:, :count] (the candidates on one aggregate).

    Row j becomes orthonormal to the rows before it, and factors[i, j] receives its coefficients:
    the candidates are Σ_i factors[i, j]·row i. A row left with at most DROP_TOLERANCE of its norm is
    a combination of the earlier ones there (pyamg's ``fit_candidates`` rule): it becomes zero, and so
    does its diagonal factor (that coarse unknown is unused).
    """
    for j in range(vectors.shape[0]):
        before = 0.0
        for k in range(count):
            before += vectors[j, k] * vectors[j, k]
        for i in range(j):
            projection = 0.0
            for k in range(count):
                projection += vectors[i, k] * vectors[j, k]
            factors[i, j] = projection
            for k in range(count):
                vectors[j, k] -= projection * vectors[i, k]
        after = 0.0
        for k in range(count):
            after += vectors[j, k] * vectors[j, k]
        if after > 0.0 and after > DROP_TOLERANCE * DROP_TOLERANCE * before:
            norm = np.sqrt(after)
            factors[j, j] = norm
            for k in range(count):
                vectors[j, k] /= norm
        else:
            factors[j, j] = 0.0
            for k in range(count):
                vectors[j, k] = 0.0


@kernel("f8[:, :, ::1], i8, i8, f8[:, :, :, :, ::1], f8[:, :, :, ::1], f8[:, ::1]")
def _tentative(guide, first_row, last_row, basis, factors, columns):
    """T and the coarse candidates of tile rows first_row … last_row − 1 (modified Gram–Schmidt per tile;
    columns: 4×TILE² scratch)."""
    height, width, _ = guide.shape
    tile_columns = basis.shape[1]
    for by in range(first_row, last_row):
        for bx in range(tile_columns):
            rows, cols = min(TILE, height - by * TILE), min(TILE, width - bx * TILE)
            count = rows * cols
            for k in range(count):
                y, x = by * TILE + k // cols, bx * TILE + k % cols
                columns[0, k] = 1.0
                for channel in range(3):
                    columns[1 + channel, k] = guide[y, x, channel]
            gram_schmidt(columns, count, factors[by, bx])
            for k in range(count):
                for j in range(CANDIDATES):
                    basis[by, bx, j, k // cols, k % cols] = columns[j, k]


@kernel("f8[:, :, ::1], f8[:, ::1], f8[:, :, :, :, ::1], i8, i8, f8[:, :, :, :, ::1]")
def _smoothed_prolongator(rows, jacobi_weight, basis, first_row, last_row, prolongator):
    """P = T − diag(jacobi_weight)·A·T on the SPAN×SPAN pixels around each tile of rows first_row … last_row − 1.

    A·T runs along pixel rows, a tap at a time, over the pixels whose tap lands on the tile, through
    views indexed from 0 (vectorised, as ``_galerkin``); the four candidates at once."""
    height, width = rows.shape[0], rows.shape[2] - 2 * PAD
    tile_columns = basis.shape[1]
    for by in range(first_row, last_row):
        for bx in range(tile_columns):
            tile_height, tile_width = min(TILE, height - by * TILE), min(TILE, width - bx * TILE)
            top, left = by * TILE - REACH, bx * TILE - REACH  # the image pixel of the span's [0, 0]
            span, tile = prolongator[by, bx], basis[by, bx]
            span[:] = 0.0
            first_q, last_q = max(0, -left), min(SPAN, width - left)
            for qy in range(max(0, -top), min(SPAN, height - top)):
                y = top + qy
                for dy in range(max(-2, REACH - qy, -y), min(2, tile_height - 1 + REACH - qy, height - 1 - y) + 1):
                    ty = qy - REACH + dy
                    for dx in range(-2, 3):
                        first, last = max(first_q, REACH - dx), min(last_q, tile_width + REACH - dx)
                        if last <= first:
                            continue
                        if dy > 0 or (dy == 0 and dx >= 0):
                            weights = rows[y, upper_tap(dy, dx), left + first + PAD:left + last + PAD]
                        else:  # a tap of negative offset is the upper tap of the pixel it points to
                            weights = rows[y + dy, upper_tap(-dy, -dx), left + first + dx + PAD:left + last + dx + PAD]
                        source = first - REACH + dx
                        t0, t1 = tile[0, ty, source:source + last - first], tile[1, ty, source:source + last - first]
                        t2, t3 = tile[2, ty, source:source + last - first], tile[3, ty, source:source + last - first]
                        o0, o1 = span[0, qy, first:last], span[1, qy, first:last]
                        o2, o3 = span[2, qy, first:last], span[3, qy, first:last]
                        for t in range(weights.shape[0]):
                            weight = weights[t]
                            o0[t] += weight * t0[t]
                            o1[t] += weight * t1[t]
                            o2[t] += weight * t2[t]
                            o3[t] += weight * t3[t]
                scale = jacobi_weight[y, left + first_q:left + last_q]
                for k in range(CANDIDATES):
                    out = span[k, qy, first_q:last_q]
                    for t in range(scale.shape[0]):
                        out[t] *= -scale[t]
            # loops, not a slice addition: its shape check would link numba's string formatting into the kernel (slower to load)
            for k in range(CANDIDATES):
                for ty in range(tile_height):
                    for tx in range(tile_width):
                        span[k, REACH + ty, REACH + tx] += tile[k, ty, tx]


@kernel("f8[:, :, ::1], f8[:, :, :, :, ::1], i8, i8, f8[:, :, :, :, ::1], f8[:, :, ::1]", fastmath=True)
def _galerkin(rows, prolongator, first_row, last_row, coarse, product):
    """coarse[b, n, j, i] = (Pᵀ A P)[(b, j), (b + neighbour n, i)] for the tiles b of rows first_row … last_row − 1,
    neighbours n = 4 … 8 only (itself, right, and the row below); A_c is symmetric, ``mirror_neighbours`` fills the rest.
    product: 4×PRODUCT_SIDE×PRODUCT_SIDE scratch (A·P of one tile, candidate-major).

    Both products run along pixel rows, a tap or a candidate pair at a time, over views indexed from 0:
    the compiler vectorises them (a pixel at a time, with the taps' ranges and numba's negative-index
    checks, this was most of the set-up of the levels below the pixels). The tap loop is
    ``_smoothed_prolongator``'s, written out again on purpose: as one helper (numba's inline or a
    compiled call) both kernels ran 1.5–2× slower, measured in process against this form."""
    height, width = rows.shape[0], rows.shape[2] - 2 * PAD
    tile_rows, tile_columns = prolongator.shape[:2]
    for by in range(first_row, last_row):
        for bx in range(tile_columns):
            top, left = by * TILE - 2 * REACH, bx * TILE - 2 * REACH  # the image pixel of product[:, 0, 0]
            span = prolongator[by, bx]
            # A·P_b on the pixels it reaches: for each tap, the pixels whose tap lands on P_b's span
            product[:] = 0.0
            for ry in range(max(0, -top), min(PRODUCT_SIDE, height - top)):
                y = top + ry
                for dy in range(max(-2, REACH - ry, -y), min(2, SPAN - 1 + REACH - ry, height - 1 - y) + 1):
                    qy = ry - REACH + dy
                    for dx in range(-2, 3):
                        first, last = max(0, -left, REACH - dx), min(PRODUCT_SIDE, width - left, SPAN + REACH - dx)
                        if last <= first:
                            continue
                        if dy > 0 or (dy == 0 and dx >= 0):
                            weights = rows[y, upper_tap(dy, dx), left + first + PAD:left + last + PAD]
                        else:  # a tap of negative offset is the upper tap of the pixel it points to
                            weights = rows[y + dy, upper_tap(-dy, -dx), left + first + dx + PAD:left + last + dx + PAD]
                        source = first - REACH + dx
                        s0, s1 = span[0, qy, source:source + last - first], span[1, qy, source:source + last - first]
                        s2, s3 = span[2, qy, source:source + last - first], span[3, qy, source:source + last - first]
                        o0, o1 = product[0, ry, first:last], product[1, ry, first:last]
                        o2, o3 = product[2, ry, first:last], product[3, ry, first:last]
                        for t in range(weights.shape[0]):
                            weight = weights[t]
                            o0[t] += weight * s0[t]
                            o1[t] += weight * s1[t]
                            o2[t] += weight * s2[t]
                            o3[t] += weight * s3[t]
            coarse[by, bx] = 0.0
            for neighbour in range(4, 9):
                ny, nx = neighbour // 3 - 1, neighbour % 3 - 1
                ay, ax = by + ny, bx + nx
                if ay < 0 or ay >= tile_rows or ax < 0 or ax >= tile_columns:
                    continue
                # P_a's span meets A·P_b's pixels shifted by a tile
                first_x, last_x = max(0, -TILE * nx - REACH), min(SPAN, PRODUCT_SIDE - REACH - TILE * nx)
                shifted_x = first_x + REACH + TILE * nx
                for qy in range(max(0, -TILE * ny - REACH), min(SPAN, PRODUCT_SIDE - REACH - TILE * ny)):
                    ry = qy + REACH + TILE * ny
                    for j in range(CANDIDATES):
                        values = product[j, ry, shifted_x:shifted_x + last_x - first_x]
                        for i in range(CANDIDATES):
                            weights = prolongator[ay, ax, i, qy, first_x:last_x]
                            total = 0.0
                            for t in range(values.shape[0]):
                                total += weights[t] * values[t]
                            coarse[by, bx, neighbour, j, i] += total


def shifted_overlap(count, shift):
    """(here, there): the slices of 0 … count − 1 whose indices i and i + shift are both in range.

    Example:
        >>> shifted_overlap(5, 2)
        (slice(0, 3, None), slice(2, 5, None))
    """
    here = slice(max(0, -shift), max(0, min(count, count - shift)))
    return here, slice(here.start + shift, here.stop + shift) if here.stop > here.start else slice(0, 0)


def mirror_neighbours(coarse):
    """Fill the neighbours before the centre (rows above, left) from the nodes they point to: A_c[b, a] = A_c[a, b]ᵀ.

    Args:
        coarse: R×C×(2r + 1)²×4×4 stencil blocks whose centre and later neighbours are filled; in place.
    """
    count = coarse.shape[2]
    side = 2 * stencil_reach(coarse) + 1
    tile_rows, tile_columns = coarse.shape[:2]
    for neighbour in range(count // 2):
        ny, nx = neighbour // side - side // 2, neighbour % side - side // 2
        # node b at (by, bx) points to a = (by + ny, bx + nx), whose neighbour count − 1 − n is b
        rows_b, rows_a = shifted_overlap(tile_rows, ny)
        columns_b, columns_a = shifted_overlap(tile_columns, nx)
        coarse[:, :, neighbour] = 0.0
        coarse[rows_b, columns_b, neighbour] = np.swapaxes(coarse[rows_a, columns_a, count - 1 - neighbour], -1, -2)


@kernel("f4[:, :, :, :, ::1], i8, i8, f8[::1], i8, i8, f8[::1]", fastmath=True)
def restrict(prolongator, height, width, fine, first_row, last_row, coarse):
    """coarse = Pᵀ·fine for the tiles of rows first_row … last_row − 1 (fine: a flat padded vector)."""
    tile_columns = prolongator.shape[1]
    padded_width = width + 2 * PAD
    for by in range(first_row, last_row):
        for bx in range(tile_columns):
            t0 = t1 = t2 = t3 = 0.0
            first_x, last_x = max(0, REACH - bx * TILE), min(SPAN, width - bx * TILE + REACH)
            for qy in range(max(0, REACH - by * TILE), min(SPAN, height - by * TILE + REACH)):
                # views indexed from 0 (provably non-negative: no negative-index checks, twice as fast)
                start = (by * TILE - REACH + qy + PAD) * padded_width + bx * TILE - REACH + PAD + first_x
                values = fine[start:start + last_x - first_x]
                p0, p1 = prolongator[by, bx, 0, qy, first_x:last_x], prolongator[by, bx, 1, qy, first_x:last_x]
                p2, p3 = prolongator[by, bx, 2, qy, first_x:last_x], prolongator[by, bx, 3, qy, first_x:last_x]
                for qx in range(values.shape[0]):
                    value = values[qx]
                    t0 += p0[qx] * value
                    t1 += p1[qx] * value
                    t2 += p2[qx] * value
                    t3 += p3[qx] * value
            base = (by * tile_columns + bx) * CANDIDATES
            coarse[base], coarse[base + 1], coarse[base + 2], coarse[base + 3] = t0, t1, t2, t3


@kernel("f4[:, :, :, :, ::1], i8, i8, f8[::1], i8, i8, i8, f8[::1]", fastmath=True)
def prolong_add(prolongator, height, width, coarse, first_row, last_row, step, fine):
    """fine += P·coarse from the tile rows first_row, first_row + step, … < last_row (fine: a flat padded vector).

    Tiles' pixel spans overlap two rows of tiles apart at most, so tile rows of one parity can be
    shared between threads (``prolong``)."""
    tile_columns = prolongator.shape[1]
    padded_width = width + 2 * PAD
    for by in range(first_row, last_row, step):
        for bx in range(tile_columns):
            base = (by * tile_columns + bx) * CANDIDATES
            c0, c1, c2, c3 = coarse[base], coarse[base + 1], coarse[base + 2], coarse[base + 3]
            first_x, last_x = max(0, REACH - bx * TILE), min(SPAN, width - bx * TILE + REACH)
            for qy in range(max(0, REACH - by * TILE), min(SPAN, height - by * TILE + REACH)):
                start = (by * TILE - REACH + qy + PAD) * padded_width + bx * TILE - REACH + PAD + first_x
                values = fine[start:start + last_x - first_x]  # views from 0, as in restrict
                p0, p1 = prolongator[by, bx, 0, qy, first_x:last_x], prolongator[by, bx, 1, qy, first_x:last_x]
                p2, p3 = prolongator[by, bx, 2, qy, first_x:last_x], prolongator[by, bx, 3, qy, first_x:last_x]
                for qx in range(values.shape[0]):
                    values[qx] += p0[qx] * c0 + p1[qx] * c1 + p2[qx] * c2 + p3[qx] * c3


def prolong(prolongator, height, width, coarse, fine, run_rows):
    """fine += P·coarse (a flat padded vector), even tile rows then odd ones, each shared between threads."""
    tile_rows = prolongator.shape[0]
    for parity in (0, 1):
        rows = (tile_rows - parity + 1) // 2  # tile rows of this parity

        def part(first, last, parity=parity):
            prolong_add(prolongator, height, width, coarse, 2 * first + parity, min(tile_rows, 2 * last + parity), 2, fine)

        run_rows(part, rows)


def tentative_prolongator(guide, run_rows):
    """T per tile and the coarse candidates: (basis BH×BW×4×6×6, Gram–Schmidt factors BH×BW×4×4).

    basis[by, bx, k] is column k of T on tile (by, bx), orthonormal over the tile's pixels (or
    zero where candidate k was dropped); the candidates on the tile are basis · factors.
    """
    height, width = np.shape(guide)[:2]
    tile_rows, tile_columns = tile_grid(height, width)
    guide = np.ascontiguousarray(guide, np.float64)
    basis = np.zeros((tile_rows, tile_columns, CANDIDATES, TILE, TILE))
    factors = np.zeros((tile_rows, tile_columns, CANDIDATES, CANDIDATES))
    run_rows(lambda first, last: _tentative(guide, first, last, basis, factors, np.empty((CANDIDATES, TILE * TILE))), tile_rows)
    return basis, factors


def first_coarsening(rows, absolute_sum, guide, run_rows):
    """Smoothed-aggregation prolongator, coarse operator and coarse candidates of the fine system.

    Args:
        rows: the system A as upper stencil rows H×13×(W + 4) (float64, ``dmenet.propagation.stencil``).
        absolute_sum: H×W sums of |A| along each row (the Jacobi weights).
        guide: H×W×3 guide whose colours are the near-null space candidates.
        run_rows: ``run_rows(function, count)`` calls ``function(first, last)`` over row ranges
            covering 0 … count − 1 (``dmenet.propagation.rows.RowRunner``).

    Returns:
        (prolongator BH×BW×4×10×10, coarse operator as 3×3 stencil blocks BH×BW×9×4×4 (zero where
        a neighbour is off the grid), its candidates (4·BH·BW)×4): unknown k of tile (by, bx) is row (by·BW + bx)·4 + k.
        Coarse unknowns whose candidate was dropped have a unit diagonal (their P column is zero, so
        they stay zero).
    """
    height, width = rows.shape[0], rows.shape[2] - 2 * PAD
    tile_rows, tile_columns = tile_grid(height, width)
    basis, factors = tentative_prolongator(guide, run_rows)
    prolongator = np.empty((tile_rows, tile_columns, CANDIDATES, SPAN, SPAN))
    jacobi_weight = np.divide(OMEGA, absolute_sum, out=np.zeros_like(absolute_sum), where=absolute_sum != 0)
    run_rows(lambda first, last: _smoothed_prolongator(rows, jacobi_weight, basis, first, last, prolongator), tile_rows)
    blocks = np.empty((tile_rows, tile_columns, 9, CANDIDATES, CANDIDATES))
    run_rows(lambda first, last: _galerkin(rows, prolongator, first, last, blocks, np.empty((CANDIDATES, PRODUCT_SIDE, PRODUCT_SIDE))),
             tile_rows)
    mirror_neighbours(blocks)
    unit_diagonal_where_unused(blocks, factors)
    candidates = factors.reshape(-1, CANDIDATES)
    return prolongator, blocks, candidates


def unit_diagonal_where_unused(blocks, factors):
    """In place: a coarse unknown whose candidate Gram–Schmidt dropped (zero diagonal factor) has a zero P
    column, so an empty row and column in Pᵀ A P; it gets a unit diagonal and stays 0 (every level's rule).

    Args:
        blocks: the coarse operator as R×C×(2r + 1)²×4×4 stencil blocks.
        factors: the R×C×4×4 Gram–Schmidt factors of its nodes' candidates.
    """
    unused = np.diagonal(factors, axis1=2, axis2=3) == 0.0
    centre = blocks[:, :, blocks.shape[2] // 2]
    centre[unused] += np.eye(CANDIDATES)[np.nonzero(unused)[2]]


@kernel(inline="always")
def block_times(block, vector, base):
    """block · vector[base:base + 4] for a 4×4 block, as four scalars (unrolled: the compiler keeps them in registers)."""
    v0, v1, v2, v3 = vector[base], vector[base + 1], vector[base + 2], vector[base + 3]
    return (block[0, 0] * v0 + block[0, 1] * v1 + block[0, 2] * v2 + block[0, 3] * v3,
            block[1, 0] * v0 + block[1, 1] * v1 + block[1, 2] * v2 + block[1, 3] * v3,
            block[2, 0] * v0 + block[2, 1] * v1 + block[2, 2] * v2 + block[2, 3] * v3,
            block[3, 0] * v0 + block[3, 1] * v1 + block[3, 2] * v2 + block[3, 3] * v3)


@kernel("f4[:, :, :, :, ::1], f8[:, :, :, ::1], f8[::1], f8[::1], b1", fastmath=True)
def _tile_sweep(blocks, inverse_diagonal, rhs, solution, backward):
    """One block Gauss–Seidel sweep over the nodes (4×4 blocks, a (2r + 1)² stencil), in raster order or backwards."""
    tile_rows, tile_columns, neighbours = blocks.shape[:3]
    reach = side_reach(neighbours)
    side = 2 * reach + 1
    count = tile_rows * tile_columns
    for index in range(count):
        tile = count - 1 - index if backward else index
        by, bx = tile // tile_columns, tile % tile_columns
        base = tile * CANDIDATES
        r0, r1, r2, r3 = rhs[base], rhs[base + 1], rhs[base + 2], rhs[base + 3]
        for ay in range(max(0, by - reach), min(tile_rows, by + reach + 1)):
            for ax in range(max(0, bx - reach), min(tile_columns, bx + reach + 1)):
                if ay == by and ax == bx:
                    continue
                a0, a1, a2, a3 = block_times(blocks[by, bx, (ay - by + reach) * side + ax - bx + reach],
                                             solution, (ay * tile_columns + ax) * CANDIDATES)
                r0, r1, r2, r3 = r0 - a0, r1 - a1, r2 - a2, r3 - a3
        solution[base], solution[base + 1] = r0, r1
        solution[base + 2], solution[base + 3] = r2, r3
        x0, x1, x2, x3 = block_times(inverse_diagonal[by, bx], solution, base)
        solution[base], solution[base + 1], solution[base + 2], solution[base + 3] = x0, x1, x2, x3


def tile_gauss_seidel(blocks, inverse_diagonal, rhs, solution):
    """A symmetric block Gauss–Seidel sweep (forward, then backward) of a block-stencil operator, in place:
    the same as pyamg's ``block_gauss_seidel(sweep="symmetric")`` on the BSR form, which it replaced.

    Args:
        blocks: BH×BW×(2r + 1)²×4×4 stencil blocks (``first_coarsening`` or a level below).
        inverse_diagonal: BH×BW×4×4 inverses of the centre blocks.
        rhs, solution: 4·BH·BW vectors.
    """
    _tile_sweep(blocks, inverse_diagonal, rhs, solution, False)
    _tile_sweep(blocks, inverse_diagonal, rhs, solution, True)
    return solution
