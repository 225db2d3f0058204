"""The multigrid below the pixels (8×8 tiles, then 3×3 groups) against its sparse-matrix definition (smoothed aggregation)."""
import numpy as np
import pytest
import scipy.sparse

from dmenet.propagation import aggregation, coarse
from dmenet.propagation.laplacian import UPPER_OFFSETS, laplacian_stencil, stencil_to_csr
from dmenet.propagation.rows import RowRunner
from dmenet.propagation.stencil import PAD, from_padded, padded_shape, to_padded

HEIGHT, WIDTH = 21, 32  # partial tiles on both edges: 4×6 tiles of 6, the last ones 3×2 pixels
TILE_ROWS, TILE_COLUMNS = 4, 6


def _prolongator_csr(tiles, height, width):
    """The tile blocks as the (H·W)×(4·tiles) sparse matrix P they stand for."""
    rows, columns, values = [], [], []
    tile_rows, tile_columns = tiles.shape[:2]
    for by in range(tile_rows):
        for bx in range(tile_columns):
            for k in range(aggregation.CANDIDATES):
                for qy in range(aggregation.SPAN):
                    for qx in range(aggregation.SPAN):
                        y, x = by * aggregation.TILE - aggregation.REACH + qy, bx * aggregation.TILE - aggregation.REACH + qx
                        if 0 <= y < height and 0 <= x < width and tiles[by, bx, k, qy, qx] != 0:
                            rows.append(y * width + x)
                            columns.append((by * tile_columns + bx) * 4 + k)
                            values.append(tiles[by, bx, k, qy, qx])
    return scipy.sparse.csr_matrix((values, (rows, columns)), shape=(height * width, 4 * tile_rows * tile_columns))


def _block_matrix(blocks):
    """The block-stencil operator R×C×9×4×4 as the sparse matrix it stands for (off-grid neighbours dropped)."""
    return scipy.sparse.csr_matrix(coarse.dense_matrix(blocks))


@pytest.fixture(scope="module", params=[1, 2], ids=["one thread", "two threads"])
def coarsening(request):
    rng = np.random.default_rng(5)
    guide = rng.random((HEIGHT, WIDTH, 3))
    guide[:aggregation.TILE, :aggregation.TILE] = 0.5  # a flat tile: its colour candidates are dropped
    rows = laplacian_stencil(guide, 1e-5)
    rows[:, UPPER_OFFSETS.index((0, 0)), 2:-2] += 0.005 * (rng.random((HEIGHT, WIDTH)) < 0.2)
    absolute_sum = np.asarray(abs(stencil_to_csr(rows)).sum(axis=1)).reshape(HEIGHT, WIDTH)
    tiles, blocks, candidates = aggregation.first_coarsening(rows, absolute_sum, guide, RowRunner(request.param))
    operator = _block_matrix(blocks)
    return guide, rows, tiles, blocks, operator, candidates, RowRunner(request.param)


def _tentative_csr(basis, height, width):
    rows, columns, values = [], [], []
    tile_columns = basis.shape[1]
    for (by, bx, k, ty, tx), value in np.ndenumerate(basis):
        y, x = by * aggregation.TILE + ty, bx * aggregation.TILE + tx
        if y < height and x < width and value != 0:
            rows.append(y * width + x)
            columns.append((by * tile_columns + bx) * 4 + k)
            values.append(value)
    return scipy.sparse.csr_matrix((values, (rows, columns)), shape=(height * width, 4 * basis.shape[0] * tile_columns))


def test_prolongator_is_jacobi_smoothed_orthonormal_candidates(coarsening):
    guide, rows, tiles, _, _, candidates, run_rows = coarsening
    basis, factors = aggregation.tentative_prolongator(guide, run_rows)
    np.testing.assert_array_equal(factors.reshape(-1, 4), candidates)
    tentative = _tentative_csr(basis, HEIGHT, WIDTH)
    gram = (tentative.T @ tentative).toarray()
    used = np.diag(gram) > 0.5
    np.testing.assert_allclose(gram, np.diag(used.astype(float)), atol=1e-12)  # orthonormal columns, tile by tile
    assert (~used).sum() == 3  # the flat tile keeps only the constant
    wanted = np.column_stack([np.ones(HEIGHT * WIDTH), guide.reshape(-1, 3)])
    np.testing.assert_allclose(tentative @ candidates, wanted, atol=1e-12)  # T·B_c = [1, R, G, B]
    system = stencil_to_csr(rows)
    jacobi = scipy.sparse.diags(aggregation.OMEGA / np.asarray(abs(system).sum(axis=1)).ravel())
    expected = tentative - jacobi @ system @ tentative  # P = (I − ω D⁻¹ A) T
    np.testing.assert_allclose(_prolongator_csr(tiles, HEIGHT, WIDTH).toarray(), expected.toarray(), rtol=0, atol=1e-12)


def test_coarse_operator_is_the_galerkin_product(coarsening):
    _, rows, tiles, _, operator, _, _ = coarsening
    prolongator = _prolongator_csr(tiles, HEIGHT, WIDTH)
    galerkin = (prolongator.T @ stencil_to_csr(rows) @ prolongator).toarray()
    unused = np.abs(prolongator).sum(axis=0).A1 == 0
    galerkin[unused, unused] = 1.0  # unused coarse unknowns get a unit diagonal
    np.testing.assert_allclose(operator.toarray(), galerkin, rtol=1e-12, atol=1e-12 * np.abs(galerkin).max())


def test_restriction_and_prolongation_are_p_transposed_and_p(coarsening):
    _, _, tiles, _, operator, _, run_rows = coarsening
    prolongator = _prolongator_csr(tiles, HEIGHT, WIDTH)
    rng = np.random.default_rng(2)
    fine = to_padded(rng.standard_normal(HEIGHT * WIDTH), HEIGHT, WIDTH)
    coarse = np.empty(operator.shape[0])
    run_rows(lambda first, last: aggregation.restrict(tiles, HEIGHT, WIDTH, fine, first, last, coarse), tiles.shape[0])
    np.testing.assert_allclose(coarse, prolongator.T @ from_padded(fine, HEIGHT, WIDTH), rtol=1e-12, atol=1e-12)
    correction = rng.standard_normal(operator.shape[0])
    before = fine.copy()
    aggregation.prolong(tiles, HEIGHT, WIDTH, correction, fine, run_rows)
    np.testing.assert_allclose(from_padded(fine - before, HEIGHT, WIDTH), prolongator @ correction, rtol=1e-12, atol=1e-12)
    border = np.ones(padded_shape(HEIGHT, WIDTH), bool)
    border[PAD:-PAD, PAD:-PAD] = False
    assert not fine.reshape(padded_shape(HEIGHT, WIDTH))[border].any()  # padding stays zero


def _block_gauss_seidel_reference(dense, rhs, start, order):
    """x_b = D_b⁻¹ (r_b − Σ_{c ≠ b} A_bc x_c), 4×4 blocks b in the given order, x updated in place."""
    solution = start.copy()
    for block in order:
        rows = slice(4 * block, 4 * block + 4)
        others = rhs[rows] - dense[rows] @ solution + dense[rows, rows] @ solution[rows]
        solution[rows] = np.linalg.solve(dense[rows, rows], others)
    return solution


def test_tile_smoother_is_symmetric_block_gauss_seidel(coarsening):
    *_, blocks, _, _, _ = coarsening
    smoothing = blocks.astype(np.float32)  # what the cycle sweeps: float32 blocks, float64 inverses
    dense, count = coarse.dense_matrix(smoothing.astype(np.float64)), blocks.shape[0] * blocks.shape[1]
    rng = np.random.default_rng(4)
    rhs, start = rng.standard_normal(4 * count), rng.standard_normal(4 * count)
    expected = _block_gauss_seidel_reference(dense, rhs, start, range(count))
    expected = _block_gauss_seidel_reference(dense, rhs, expected, reversed(range(count)))
    solution = start.copy()
    aggregation.tile_gauss_seidel(smoothing, np.linalg.inv(smoothing[:, :, 4].astype(np.float64)), rhs, solution)
    np.testing.assert_allclose(solution, expected, rtol=1e-10, atol=1e-10)


def _group_tentative_dense(candidates, group):
    """T of the groups of group×group nodes as a dense matrix, and the groups' candidates."""
    rows, columns = candidates.shape[:2]
    group_rows, group_columns = coarse.group_grid(rows, columns, group)
    basis = np.zeros((group_rows, group_columns, group * group, 4, 4))
    factors = np.zeros((group_rows, group_columns, 4, 4))
    coarse._group_tentative(np.ascontiguousarray(candidates), group, basis, factors, np.empty((4, 4 * group * group)))
    dense = np.zeros((rows * columns * 4, group_rows * group_columns * 4))
    for gy, gx, node in np.ndindex(group_rows, group_columns, group * group):
        y, x = gy * group + node // group, gx * group + node % group
        if y < rows and x < columns:
            dense[(y * columns + x) * 4:(y * columns + x) * 4 + 4, (gy * group_columns + gx) * 4:(gy * group_columns + gx) * 4 + 4] = basis[gy, gx, node]
    return dense, factors


def _float64_prolongator(level, operator_blocks, candidates):
    """The level's P as its set-up forms it, in float64 (the level keeps only the cycle's float32 copy)."""
    group, (group_rows, group_columns) = level.group, level.group_shape
    basis = np.zeros((group_rows, group_columns, group * group, 4, 4))
    coarse._group_tentative(np.ascontiguousarray(candidates), group, basis, np.zeros((group_rows, group_columns, 4, 4)),
                            np.empty((4, 4 * group * group)))
    jacobi_weight = aggregation.OMEGA / np.abs(operator_blocks).sum(axis=(2, 4))
    prolongator = np.empty(level.prolongator.shape)
    coarse._smoothed_prolongator(np.ascontiguousarray(operator_blocks), jacobi_weight, basis, group, 0, operator_blocks.shape[0],
                                 prolongator, np.empty(level.present.shape, np.bool_))
    np.testing.assert_array_equal(level.prolongator, prolongator.astype(np.float32))  # the cycle's copy is this P
    return prolongator


def _group_prolongator_dense(level, prolongator):
    """A level's P (stored per node as blocks for the groups around the node's own) as a dense matrix."""
    rows, columns = prolongator.shape[:2]
    group_rows, group_columns = level.group_shape
    side = int(round(np.sqrt(prolongator.shape[2])))
    dense = np.zeros((rows * columns * 4, group_rows * group_columns * 4))
    for (y, x, offset), present in np.ndenumerate(level.present):
        gy, gx = y // level.group + offset // side - side // 2, x // level.group + offset % side - side // 2
        if not present:
            assert not prolongator[y, x, offset].any()
            continue
        assert 0 <= gy < group_rows and 0 <= gx < group_columns
        node, group = (y * columns + x) * 4, (gy * group_columns + gx) * 4
        dense[node:node + 4, group:group + 4] = prolongator[y, x, offset]
    return dense


def _assert_symmetric_cycle(levels, size, seed):
    """⟨M⁻¹a, b⟩ = ⟨a, M⁻¹b⟩ for the V-cycle M⁻¹, as CG needs."""
    rng = np.random.default_rng(seed)
    first, second = rng.standard_normal(size), rng.standard_normal(size)
    assert abs(levels.cycle(first) @ second - first @ levels.cycle(second)) <= 1e-9 * abs(levels.cycle(first) @ second)


def test_tile_blocks_are_zero_off_the_grid(coarsening):
    *_, blocks, _, _, _ = coarsening
    assert not blocks[0, :, :3].any() and not blocks[-1, :, 6:].any()
    assert not blocks[:, 0, ::3].any() and not blocks[:, -1, 2::3].any()


def _assert_smoothed_aggregation(level, operator_blocks, candidates):
    """The level's T, P and Pᵀ A P are smoothed aggregation's for its operator (block stencil) and candidates (R×C×4×4)."""
    operator = coarse.dense_matrix(operator_blocks)
    tentative, group_candidates = _group_tentative_dense(candidates, level.group)
    gram = tentative.T @ tentative
    used = np.diag(gram) > 0.5
    np.testing.assert_allclose(gram, np.diag(used.astype(float)), atol=1e-12)  # orthonormal columns, group by group
    np.testing.assert_allclose(tentative @ group_candidates.reshape(-1, 4), candidates.reshape(-1, 4), atol=1e-12)  # T·B' = B
    np.testing.assert_array_equal(level.next_candidates, group_candidates)
    jacobi = np.diag(aggregation.OMEGA / np.abs(operator).sum(axis=1))
    prolongation = _group_prolongator_dense(level, _float64_prolongator(level, operator_blocks, candidates))
    np.testing.assert_allclose(prolongation, tentative - jacobi @ operator @ tentative, atol=1e-12)
    # the next level's operator is the Galerkin product (unit diagonal where a candidate was dropped)
    galerkin = prolongation.T @ operator @ prolongation
    galerkin[~used, ~used] = 1.0
    np.testing.assert_allclose(coarse.dense_matrix(level.coarse), galerkin, rtol=1e-12, atol=1e-12 * np.abs(galerkin).max())
    # the smoother's inverses are those of the float32 diagonal blocks the cycle sweeps
    centre = level.smoothing_blocks[:, :, level.smoothing_blocks.shape[2] // 2].astype(np.float64)
    np.testing.assert_allclose(level.inverse_diagonal, np.linalg.inv(centre), rtol=1e-10, atol=1e-10 * np.abs(level.inverse_diagonal).max())
    return galerkin


def test_groups_of_tiles_are_smoothed_aggregation_and_their_cycle_is_symmetric(coarsening):
    *_, blocks, operator, candidates, _ = coarsening
    levels = coarse.CoarseLevels(blocks, candidates, direct_size=24)  # 4×6 tiles → 2×3 groups → exact solve
    assert len(levels) == 2 and levels.levels[0].group == 2 and levels.levels[0].coarse.shape[2] == 25  # a 5×5 stencil
    galerkin = _assert_smoothed_aggregation(levels.levels[0], blocks, candidates.reshape(TILE_ROWS, TILE_COLUMNS, 4, 4))
    coarse_rhs = np.random.default_rng(3).standard_normal(galerkin.shape[0])
    np.testing.assert_allclose(levels.coarsest.solve(coarse_rhs), np.linalg.solve(coarse.dense_matrix(levels.levels[0].coarse), coarse_rhs),
                               rtol=1e-8, atol=1e-10)
    _assert_symmetric_cycle(levels, operator.shape[0], 4)


def test_levels_below_keep_the_block_stencil_form_as_it_widens(coarsening):
    *_, blocks, operator, candidates, _ = coarsening
    # tiles (3×3 stencil) → 2×3 groups of 2 (5×5) → 1×2 groups of 2 (7×7) → 1×1 group of 3 (7×7) → exact solve
    levels = coarse.CoarseLevels(blocks, candidates, direct_size=4)
    assert len(levels) == 4 and [level.group for level in levels.levels] == [2, 2, 3]
    assert [level.coarse.shape[2] for level in levels.levels] == [25, 49, 49]
    level_operator, level_candidates = blocks, candidates.reshape(TILE_ROWS, TILE_COLUMNS, 4, 4)
    for level in levels.levels:
        _assert_smoothed_aggregation(level, level_operator, level_candidates)
        level_operator, level_candidates = level.coarse, level.next_candidates
    _assert_symmetric_cycle(levels, operator.shape[0], 5)


def test_levels_below_are_the_same_on_any_number_of_threads(coarsening):
    *_, blocks, _, candidates, _ = coarsening
    one, two = (coarse.CoarseLevels(blocks, candidates, direct_size=4, run_rows=RowRunner(threads)) for threads in (1, 2))
    for first, second in zip(one.levels, two.levels, strict=True):
        np.testing.assert_array_equal(first.coarse, second.coarse)  # the halves are added in one order
        np.testing.assert_array_equal(first.prolongator, second.prolongator)


def test_a_level_with_a_singular_diagonal_block_is_refused():
    blocks = np.zeros((3, 4, 9, 4, 4))
    blocks[:, :, 4] = np.eye(4)
    blocks[1, 2, 4, 3, 3] = 0.0  # one unknown with no coupling at all
    candidates = np.tile(np.eye(4), (12, 1))
    with pytest.raises(np.linalg.LinAlgError, match="singular diagonal block"):
        coarse.CoarseLevels(blocks, candidates, direct_size=4)


def _random_spd_stencil(rows, columns, seed):
    """A symmetric positive definite block-stencil operator (zero off the grid)."""
    rng = np.random.default_rng(seed)
    blocks = 0.1 * rng.standard_normal((rows, columns, 9, 4, 4))
    for y, x, neighbour in np.ndindex(rows, columns, 9):
        ny, nx = y + neighbour // 3 - 1, x + neighbour % 3 - 1
        if not (0 <= ny < rows and 0 <= nx < columns):
            blocks[y, x, neighbour] = 0.0
        elif neighbour < 4:
            blocks[y, x, neighbour] = blocks[ny, nx, 8 - neighbour].T
    blocks[:, :, 4] = (blocks[:, :, 4] + np.swapaxes(blocks[:, :, 4], -1, -2)) / 2 + 4 * np.eye(4)
    return blocks


@pytest.mark.parametrize("rows, columns", [(1, 1), (5, 2), (2, 5), (1, 9), (6, 6)])
def test_the_coarsest_solve_is_exact_in_either_node_order(rows, columns):
    blocks = _random_spd_stencil(rows, columns, rows * 10 + columns)
    dense = coarse.dense_matrix(blocks)
    np.testing.assert_array_equal(dense, dense.T)
    solve = coarse.CoarsestSolve(blocks)
    assert solve.factor is not None and solve.transposed == (columns > rows)  # banded along the shorter side
    rhs = np.random.default_rng(1).standard_normal(dense.shape[0])
    np.testing.assert_allclose(solve.solve(rhs), np.linalg.solve(dense, rhs), rtol=1e-10, atol=1e-12)


def test_a_coarsest_level_that_is_not_positive_definite_is_still_solved():
    blocks = _random_spd_stencil(2, 3, 7)
    blocks[1, 1, 4] -= 8 * np.eye(4)  # indefinite: Cholesky breaks down
    dense = coarse.dense_matrix(blocks)
    solve = coarse.CoarsestSolve(blocks)
    assert solve.factor is None
    rhs = np.random.default_rng(2).standard_normal(dense.shape[0])
    np.testing.assert_allclose(solve.solve(rhs), np.linalg.solve(dense, rhs), rtol=1e-8, atol=1e-10)
