"""Matting-Laplacian propagation: solve (L + λ·D) x = λ·D s for the dense map (PARK17.md §10, ZHUO11.md §9).

Park'17 and Zhuo & Sim end the same way: sparse estimates s at the known pixels (D = diag(known)) are
spread over the photo by the matting Laplacian L of a guide image. The system is symmetric positive
definite whenever one pixel is known. Both official codes solve it directly; here CG preconditioned by
an algebraic multigrid reaches the direct solution to a set tolerance in a fraction of the time, and the
direct solver stays available as the reference.
"""
import functools
import warnings

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from dmenet.propagation.errors import PropagationError
from dmenet.propagation.laplacian import OFFSETS, laplacian_stencil, stencil_to_csr
from dmenet.syndof import blas_threads

_AGGREGATE_BLOCK = 8
_AMG_MAX_COARSE = 500
_AMG_MAX_ITERATIONS = 500
DEFAULT_TOLERANCE = 1e-6
METHODS = ("auto", "amg", "direct")


def _block_aggregates(height, width, block):
    """Pixel → aggregate map of square block×block tiles (the first coarsening of the AMG hierarchy)."""
    block_rows = np.arange(height) // block
    block_cols = np.arange(width) // block
    aggregate = (block_rows[:, None] * ((width + block - 1) // block) + block_cols[None, :]).ravel()
    count = height * width
    return scipy.sparse.csr_matrix((np.ones(count), (np.arange(count), aggregate)))


def _amg_hierarchy(system, guide):
    """Smoothed-aggregation AMG for the system, whose near-null space is {1, R, G, B}.

    Every window term of the matting Laplacian vanishes on a·I + b (that is what it is built for), so
    the constant and the three colour channels are the smooth error that aggregation with constants
    only misses. Measured on Park'17's sample_0001 at rtol 1e-6: 27 CG iterations (Zhuo & Sim's
    ε = 1e-7 systems: ~45 at 1e-4, docs/zhuo11.md, where the variants tried are listed), against 60 with pyamg's
    default SA and ~2400 for Jacobi-preconditioned CG. The first coarsening uses 8×8 pixel tiles: pyamg's own aggregation of this
    25-point stencil makes 5×5 aggregates whose 4-candidate coarse operator is 2/3 the size of the
    fine one, which costs more than it saves. The Jacobi prolongation smoother is weighted by a
    local bound instead of an estimated spectral radius (that estimate was half of the setup time).
    """
    import pyamg

    height, width = guide.shape[:2]
    candidates = np.column_stack([np.ones(system.shape[0]), guide.reshape(-1, 3)])
    return pyamg.smoothed_aggregation_solver(
        system, B=candidates, improve_candidates=None,
        strength=[None] + ["symmetric"] * 20,
        aggregate=[("predefined", {"AggOp": _block_aggregates(height, width, _AGGREGATE_BLOCK)})]
        + ["standard"] * 20,
        smooth=("jacobi", {"omega": 4.0 / 3.0, "degree": 1, "weighting": "local"}),
        max_coarse=_AMG_MAX_COARSE, coarse_solver="splu")


class _StencilSystem:
    """The fine level of the system as stencil rows, and the V-cycle whose fine level runs on them.

    The fine level is 91 % of the hierarchy's non-zeros and took most of each pyamg V-cycle. Here its
    two symmetric Gauss–Seidel sweeps and its residual run as compiled stencil kernels
    (``dmenet.propagation.stencil``) on float32 coefficients: half the bytes of float64 and a third of
    CSR's, and only a preconditioner (CG's own products use the float64 coefficients, so the solution
    is the float64 system's). The coarse levels stay pyamg's. Measured on a 640×427 Zhuo & Sim system:
    the same 45 iterations and the same error as pyamg's V-cycle, 2.2× less time (docs/zhuo11.md).
    """

    def __init__(self, stencil, data_weight, hierarchy):
        from dmenet.propagation import stencil as stencil_kernels

        _, height, width = stencil.shape
        self.height, self.width = height, width
        centre = OFFSETS.index((0, 0))
        self.coefficients = np.ascontiguousarray(np.moveaxis(np.asarray(stencil, np.float64), 0, 1))
        self.coefficients[:, centre] += data_weight.reshape(height, width)
        self.smoothing_coefficients = self.coefficients.astype(np.float32)
        self.inverse_diagonal = 1.0 / self.coefficients[:, centre]
        self.kernels = stencil_kernels
        self.steps = stencil_kernels.offset_steps(width)
        self.hierarchy = hierarchy
        if len(hierarchy.levels) > 1:
            # pyamg keeps P and R = Pᵀ as 4-column blocks (BSR); as CSR their products take half the time
            self.prolongation = scipy.sparse.csr_matrix(hierarchy.levels[0].P)
            self.restriction = scipy.sparse.csr_matrix(hierarchy.levels[0].R)
        self.work = np.zeros(self.padded_size)
        self.sweep_work = np.empty((height, width))

    @property
    def padded_size(self):
        return int(np.prod(self.kernels.padded_shape(self.height, self.width)))

    def product(self, vector, out):
        """out = A·vector (float64 coefficients) on padded vectors."""
        return self.kernels.stencil_product(self.coefficients, self.steps, vector, out)

    def precondition(self, residual, out):
        """out = one V-cycle from zero for A·out = residual (padded vectors); symmetric, as CG needs."""
        out[:] = 0.0
        levels = self.hierarchy.levels
        image = out.reshape(self.kernels.padded_shape(self.height, self.width))
        inside = image[self.kernels.PAD:-self.kernels.PAD, self.kernels.PAD:-self.kernels.PAD]
        if len(levels) == 1:  # a system small enough for the coarsest solver alone
            inside[:] = self.hierarchy.coarse_solver(levels[0].A, self.kernels.from_padded(residual, self.height, self.width)
                                                     ).reshape(self.height, self.width)
            return out
        self.kernels.symmetric_gauss_seidel(self.smoothing_coefficients, self.inverse_diagonal, self.steps, residual, out,
                                             from_zero=True, work=self.sweep_work)
        self.kernels.stencil_product(self.smoothing_coefficients, self.steps, out, self.work)
        np.subtract(residual, self.work, out=self.work)
        coarse_rhs = self.restriction @ self.kernels.from_padded(self.work, self.height, self.width)
        coarse_solution = np.zeros_like(coarse_rhs)
        _coarse_v_cycle(self.hierarchy, 1, coarse_solution, coarse_rhs)
        inside += (self.prolongation @ coarse_solution).reshape(self.height, self.width)
        self.kernels.symmetric_gauss_seidel(self.smoothing_coefficients, self.inverse_diagonal, self.steps, residual, out,
                                             work=self.sweep_work)
        return out


def _coarse_v_cycle(hierarchy, level_index, solution, rhs):
    """pyamg's V-cycle from level ``level_index`` down (its smoothers, its coarsest solver), in place."""
    levels = hierarchy.levels
    if level_index == len(levels) - 1:
        solution[:] = hierarchy.coarse_solver(levels[-1].A, rhs)
        return
    level = levels[level_index]
    level.presmoother(level.A, solution, rhs)
    coarse_rhs = level.R @ (rhs - level.A @ solution)
    coarse_solution = np.zeros_like(coarse_rhs)
    _coarse_v_cycle(hierarchy, level_index + 1, coarse_solution, coarse_rhs)
    solution += level.P @ coarse_solution
    level.postsmoother(level.A, solution, rhs)


def _stencil_cg(system, rhs, tolerance):
    """Preconditioned CG on padded vectors until ‖r‖ ≤ tolerance·‖b‖ → (padded solution, iterations)."""
    rhs = system.kernels.to_padded(rhs, system.height, system.width)
    solution = np.zeros_like(rhs)
    residual = rhs.copy()
    preconditioned = system.precondition(residual, np.zeros_like(rhs))
    direction = preconditioned.copy()
    product = np.zeros_like(rhs)
    inner = residual @ preconditioned
    goal = tolerance * np.linalg.norm(rhs)
    iterations = 0
    while np.linalg.norm(residual) > goal and iterations < _AMG_MAX_ITERATIONS and inner > 0:
        system.product(direction, product)
        step = inner / (direction @ product)
        solution += step * direction
        residual -= step * product
        system.precondition(residual, preconditioned)
        inner, previous = residual @ preconditioned, inner
        direction *= inner / previous
        direction += preconditioned
        iterations += 1
    return solution, iterations


def _solve_amg(system, stencil_system, rhs, tolerance):
    """CG preconditioned by the multigrid → (solution or None when it misses the tolerance, iterations)."""
    padded, iterations = _stencil_cg(stencil_system, rhs, tolerance)
    solution = stencil_system.kernels.from_padded(padded, stencil_system.height, stencil_system.width)
    residual = np.linalg.norm(rhs - system @ solution)
    if not np.isfinite(residual) or residual > 10 * tolerance * np.linalg.norm(rhs):
        # not seen on photos; a hierarchy broken by a degenerate guide must fall back, not pass silently
        return None, iterations
    return solution, iterations


def solve_direct(system, rhs):
    """The reference: a sparse LU solve of the SPD system (minimum-degree ordering of A + Aᵀ, no pivoting).

    Args:
        system: N×N sparse SPD matrix.
        rhs: N-vector.

    Returns:
        N-vector float64.
    """
    factor = scipy.sparse.linalg.splu(scipy.sparse.csc_matrix(system), permc_spec="MMD_AT_PLUS_A",
                                      diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    return factor.solve(np.asarray(rhs, np.float64))


class Propagation:
    """The system (L + λ·D) of one guide and known mask, set up once and solved for any sparse values.

    Setting up (Laplacian and multigrid) needs only the guide and the known pixels, not the estimates,
    so Park'17 prepares it while its patch classifier runs; the Laplacian alone needs only the guide
    (``stencil``), so Zhuo & Sim builds it while its edge stages run.

    Args:
        guide_rgb: H×W×3 guide (Park'17: the rolling-guidance output; Zhuo & Sim: the photo).
        known_mask: H×W bool, D = diag(known_mask).
        lam: data weight λ (Park'17 0.005, Zhuo & Sim 0.001).
        epsilon: covariance regulariser of the matting Laplacian (Park'17 1e-5, Zhuo & Sim 1e-7).
        tolerance: relative residual ‖b − Mx‖/‖b‖ at which the iterative solve stops (None: 1e-6).
        method: "amg" (CG preconditioned by pyamg smoothed-aggregation multigrid), "direct" (sparse LU,
            the reference: exact, but 15–60 s at 640×480) or "auto" (amg when pyamg is installed).
        stencil: ``laplacian_stencil(guide_rgb, epsilon)`` when already built.

    Example:
        >>> guide = np.random.default_rng(0).random((20, 30, 3))
        >>> known = np.zeros((20, 30), bool); known[::4, ::4] = True
        >>> dense = Propagation(guide, known).solve(np.where(known, 1.1, 0.0))
        >>> bool(np.allclose(dense, 1.1, atol=1e-5))
        True
    """

    def __init__(self, guide_rgb, known_mask, lam=0.005, epsilon=1e-5, tolerance=None, method="auto", stencil=None):
        guide = np.asarray(guide_rgb, dtype=np.float64)
        known = np.asarray(known_mask, dtype=bool)
        if guide.ndim != 3 or guide.shape[2] != 3:
            raise PropagationError(f"propagate: expected an H×W×3 guide, got shape {np.shape(guide_rgb)}")
        if known.shape != guide.shape[:2]:
            raise PropagationError(
                f"propagate: known_mask must be {guide.shape[0]}×{guide.shape[1]} like the guide, got {known.shape}")
        if min(guide.shape[:2]) < 3:
            # without a 3×3 window the Laplacian is zero and the unknown pixels are undetermined
            raise PropagationError(f"propagate: the guide must be at least 3×3 pixels, got {guide.shape[0]}×{guide.shape[1]}")
        if not np.isfinite(guide).all():
            raise PropagationError("propagate: the guide has NaN or infinite values")
        if not known.any():
            raise PropagationError("propagate: known_mask has no known pixel; there is nothing to propagate")
        if not lam > 0:
            raise PropagationError(f"propagate: lam must be > 0, got {lam}")
        tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
        if not 0 < tolerance < 1:
            raise PropagationError(f"propagate: tolerance must be in (0, 1), got {tolerance}")
        if method not in METHODS:
            raise PropagationError(f"propagate: method must be one of {', '.join(METHODS)}, not {method!r}")
        if method == "auto":
            try:
                import pyamg  # noqa: F401
                method = "amg"
            except ImportError:
                warnings.warn("pyamg is not installed: the propagation falls back to the direct solver, "
                              "~20× slower (pip install pyamg)", RuntimeWarning, stacklevel=2)
                method = "direct"
        self.shape, self.tolerance, self.method = guide.shape[:2], tolerance, method
        self.data_weight = lam * known.ravel()
        if stencil is None:
            stencil = laplacian_stencil(guide, epsilon)
        elif np.shape(stencil) != (25, *self.shape):
            raise PropagationError(f"propagate: stencil must be 25×{self.shape[0]}×{self.shape[1]}, got {np.shape(stencil)}")
        self.system = stencil_to_csr(stencil, extra_diagonal=self.data_weight)
        self.hierarchy = self.stencil_system = None
        if method == "amg":
            import pyamg  # noqa: F401  (loads SciPy's BLAS before the thread limit looks for it)

            with blas_threads.limited():
                self.hierarchy = _amg_hierarchy(self.system, guide)
            self.stencil_system = _StencilSystem(stencil, self.data_weight, self.hierarchy)
        self.iterations = None

    def solve(self, sparse_values):
        """H×W float32 dense map x for the sparse estimates s (only known pixels are read)."""
        values = np.asarray(sparse_values, dtype=np.float64)
        if values.shape != self.shape:
            raise PropagationError(
                f"propagate: sparse_values must be {self.shape[0]}×{self.shape[1]} like the guide, got {values.shape}")
        rhs = self.data_weight * values.ravel()
        solution = None
        if self.hierarchy is not None:
            # CG's vector products and the coarsest solve are tiny BLAS calls: on a busy machine a woken
            # BLAS thread pool made the solve 3.5× slower in CPU time (21.8 s against 6.1 s measured)
            with blas_threads.limited():
                solution, self.iterations = _solve_amg(self.system, self.stencil_system, rhs, self.tolerance)
            if solution is None:
                warnings.warn("propagate: AMG-preconditioned CG did not reach the tolerance; solving directly",
                              RuntimeWarning, stacklevel=2)
        if solution is None:
            solution = solve_direct(self.system, rhs)
        return solution.reshape(self.shape).astype(np.float32)


@functools.cache
def warm_up():
    """Pays the propagation's one-off costs (importing pyamg, loading the compiled kernels) on a tiny system.

    A fresh process spends ~0.5 s on these at its first solve; a pipeline calls this in a second thread
    while its other stages run (Zhuo & Sim beside its edge stages), so the first real solve does not wait.
    Only the first call in a process does anything.

    Example:
        >>> warm_up()
    """
    rows, columns = np.mgrid[0:40, 0:50] / 50.0
    guide = np.stack([rows, columns, np.sin(7 * rows * columns)], axis=-1)
    known = np.zeros((40, 50), bool)
    known[::5, ::5] = True
    # 40×50 is just large enough for a two-level hierarchy, so every kernel runs once
    Propagation(guide, known).solve(np.where(known, 1.0, 0.0))


def propagate(guide_rgb, sparse_values, known_mask, lam=0.005, epsilon=1e-5, tolerance=None, method="auto"):
    """Dense defocus map from sparse estimates: solve (L + λ·D) x = λ·D s (GetLaplacian.m and the solve).

    Args:
        guide_rgb, known_mask, lam, epsilon, tolerance, method: as for `Propagation`.
        sparse_values: H×W estimates s; only pixels in known_mask are read.

    Returns:
        H×W float32 dense map x.

    Example:
        >>> guide = np.random.default_rng(0).random((20, 30, 3))
        >>> known = np.zeros((20, 30), bool); known[::4, ::4] = True
        >>> dense = propagate(guide, np.where(known, 1.1, 0.0), known)
        >>> bool(np.allclose(dense, 1.1, atol=1e-5))
        True
    """
    return Propagation(guide_rgb, known_mask, lam, epsilon, tolerance, method).solve(sparse_values)
