"""The compiled 25-point stencil kernels of the propagation (13 stored taps) against SciPy's CSR matrix of the same system."""
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg

from dmenet.propagation import stencil as kernels
from dmenet.propagation.errors import PropagationError
from dmenet.propagation.laplacian import UPPER_OFFSETS, laplacian_stencil, stencil_to_csr
from dmenet.propagation.rows import RowRunner
from dmenet.propagation.solver import Propagation

HEIGHT, WIDTH = 23, 31  # odd sizes, wider than tall: row steps and borders must not be confused


@pytest.fixture(scope="module")
def system():
    rng = np.random.default_rng(11)
    stencil = laplacian_stencil(rng.random((HEIGHT, WIDTH, 3)), 1e-5)
    data_weight = 0.005 * (rng.random(HEIGHT * WIDTH) < 0.2)
    csr = stencil_to_csr(stencil, data_weight)
    rows = stencil.copy()
    rows[:, UPPER_OFFSETS.index((0, 0)), 2:-2] += data_weight.reshape(HEIGHT, WIDTH)
    return csr, rows


def _brute_force_csr(stencil, extra):
    """The definition: A[p, p + o] = A[p + o, p] = stencil[y, u, x + 2] for upper offset o = UPPER_OFFSETS[u],
    wherever p + o is on the image."""
    height, _, padded_width = stencil.shape
    width = padded_width - 4
    dense = np.diag(extra)
    for tap, (dy, dx) in enumerate(UPPER_OFFSETS):
        for y in range(height):
            for x in range(width):
                if 0 <= y + dy < height and 0 <= x + dx < width:
                    dense[y * width + x, (y + dy) * width + x + dx] += stencil[y, tap, x + 2]
                    if (dy, dx) != (0, 0):
                        dense[(y + dy) * width + x + dx, y * width + x] += stencil[y, tap, x + 2]
    return dense


def test_stencil_to_csr_matches_its_definition():
    rng = np.random.default_rng(3)
    stencil = rng.standard_normal((6, 13, 12))
    extra = rng.random(48)
    csr = stencil_to_csr(stencil, extra)
    assert csr.has_sorted_indices
    np.testing.assert_array_equal(csr.toarray(), _brute_force_csr(stencil, extra))
    np.testing.assert_array_equal(stencil_to_csr(stencil).toarray(), _brute_force_csr(stencil, np.zeros(48)))


def test_laplacian_stencil_rows_sum_to_zero_and_pads_stay_zero():
    stencil = laplacian_stencil(np.random.default_rng(8).random((9, 11, 3)), 1e-5)
    assert stencil.shape == (9, 13, 15) and not stencil[:, :, [0, 1, -2, -1]].any()
    laplacian = stencil_to_csr(stencil)
    assert abs(laplacian.sum(axis=1)).max() < 1e-9 and abs(laplacian - laplacian.T).max() == 0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_stencil_product_matches_csr(system, dtype):
    csr, rows = system
    coefficients = rows.astype(dtype)
    vector = np.random.default_rng(5).standard_normal(HEIGHT * WIDTH)
    out = np.zeros(int(np.prod(kernels.padded_shape(HEIGHT, WIDTH))))
    kernels.stencil_product(coefficients, kernels.to_padded(vector, HEIGHT, WIDTH), out)
    expected = scipy.sparse.csr_matrix(csr.astype(dtype).astype(np.float64)) @ vector
    np.testing.assert_allclose(kernels.from_padded(out, HEIGHT, WIDTH), expected, rtol=1e-12, atol=1e-12)
    assert not out.reshape(kernels.padded_shape(HEIGHT, WIDTH))[[0, 1, -2, -1]].any()  # padding stays zero


@pytest.mark.parametrize("threads", [1, 2])
def test_block_gauss_seidel_matches_triangular_solves_in_each_half(system, threads):
    csr, rows = system
    rng = np.random.default_rng(7)
    rhs = rng.standard_normal(HEIGHT * WIDTH)
    # block Jacobi between the two halves of the rows, a symmetric Gauss–Seidel sweep from zero in each:
    # forward (D + L) x' = b, backward (D + U) x'' = b − L x'
    halves = kernels.smoothing_blocks(HEIGHT)
    assert [last - first for first, last in halves] == [HEIGHT // 2, HEIGHT - HEIGHT // 2]
    expected = np.empty(HEIGHT * WIDTH)
    for first, last in halves:
        block = slice(first * WIDTH, last * WIDTH)
        matrix = csr[block, block]
        lower, upper = scipy.sparse.tril(matrix, format="csr"), scipy.sparse.triu(matrix, format="csr")
        forward = scipy.sparse.linalg.spsolve_triangular(lower, rhs[block], lower=True)
        expected[block] = scipy.sparse.linalg.spsolve_triangular(upper, rhs[block] - scipy.sparse.tril(matrix, -1) @ forward, lower=False)
    out = kernels.to_padded(rng.standard_normal(HEIGHT * WIDTH), HEIGHT, WIDTH)  # any values inside: they are not read
    kernels.block_gauss_seidel(rows, 1.0 / rows[:, UPPER_OFFSETS.index((0, 0)), 2:-2], kernels.to_padded(rhs, HEIGHT, WIDTH), out,
                               run_rows=RowRunner(threads))
    np.testing.assert_allclose(kernels.from_padded(out, HEIGHT, WIDTH), expected, rtol=1e-9, atol=1e-9)


def test_multigrid_preconditioner_is_symmetric_and_cg_reaches_the_direct_solution():
    # 200×240 makes a three-level hierarchy (pixels, 8×8 tiles, 3×3 groups of tiles by sparse LU)
    rng = np.random.default_rng(9)
    guide = rng.random((200, 240, 3))
    known = rng.random((200, 240)) < 0.05
    values = np.where(known, rng.uniform(0.5, 3.0, known.shape), 0.0)
    propagation = Propagation(guide, known, lam=0.001, epsilon=1e-7, tolerance=1e-9, method="amg")
    assert propagation.levels >= 3
    fine = propagation.stencil_system
    first, second = (kernels.to_padded(rng.standard_normal(200 * 240), 200, 240) for _ in range(2))
    # CG needs a symmetric preconditioner: ⟨M⁻¹a, b⟩ = ⟨a, M⁻¹b⟩ (float32 smoothing coefficients: to 1e-6)
    left = fine.precondition(first, np.zeros_like(first)) @ second
    right = first @ fine.precondition(second, np.zeros_like(second))
    assert abs(left - right) <= 1e-6 * abs(left)
    dense = propagation.solve(values)
    direct = Propagation(guide, known, lam=0.001, epsilon=1e-7, method="direct").solve(values)
    np.testing.assert_allclose(dense, direct, rtol=0, atol=1e-6)
    assert 0 < propagation.iterations < 60


def test_tiny_system_is_solved_by_the_coarsest_solver_alone():
    rng = np.random.default_rng(1)
    guide = rng.random((12, 15, 3))
    known = rng.random((12, 15)) < 0.3
    values = np.where(known, 1.7, 0.0)
    propagation = Propagation(guide, known, method="amg")
    assert propagation.levels == 1
    np.testing.assert_allclose(propagation.solve(values), Propagation(guide, known, method="direct").solve(values),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 1000), (1, 50)])
def test_guide_without_a_window_or_with_nan_is_one_clear_error(shape):
    # no 3×3 window: L = 0 and the unknown pixels are undetermined (the direct fallback would fail)
    with pytest.raises(PropagationError, match="at least 3×3"):
        Propagation(np.full((*shape, 3), 0.5), np.ones(shape, bool))
    guide = np.full((8, 9, 3), 0.5)
    guide[2, 3, 1] = np.nan
    with pytest.raises(PropagationError, match="NaN"):
        Propagation(guide, np.ones((8, 9), bool))


WARM_UP_THEN_SOLVE = '''
import numpy as np

from dmenet import native_kernels
from dmenet.propagation import solver

solver.warm_up()
loaded = set(native_kernels._modules)
assert {"dmenet.propagation.stencil", "dmenet.propagation.aggregation", "dmenet.propagation.coarse"} <= loaded, loaded
rng = np.random.default_rng(0)
guide = rng.random((208, 240, 3))  # 35×40 tiles: more unknowns than the direct size
known = rng.random((208, 240)) < 0.05
propagation = solver.Propagation(guide, known, lam=0.001, epsilon=1e-7, tolerance=3e-4)
assert propagation.levels == 4, propagation.levels  # pixels, tiles, groups of 2 (a 5×5 stencil), their exact solve
propagation.solve(np.where(known, 1.5, 0.0))
missed = set(native_kernels._modules) - loaded
assert not missed, f"warm_up() left the kernels of {missed} to the first solve"
assert all(native_kernels._modules[name] is not None for name in loaded), "a module's kernels run through numba"
'''


def test_warm_up_loads_every_kernel_a_solve_needs():
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", WARM_UP_THEN_SOLVE], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
