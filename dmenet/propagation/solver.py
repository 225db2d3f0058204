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

from dmenet.propagation.errors import PropagationError
from dmenet.propagation.laplacian import UPPER_OFFSETS, laplacian_stencil, stencil_to_csr
from dmenet.propagation.rows import RowRunner
from dmenet.syndof import blas_threads

_AMG_MAX_COARSE = 500
_AMG_MAX_ITERATIONS = 500
DEFAULT_TOLERANCE = 1e-6
METHODS = ("auto", "amg", "direct")


class _StencilSystem:
    """The system as stencil rows, and the multigrid V-cycle that preconditions CG on it.

    The fine level is a 25-point stencil: its Gauss–Seidel smoothing and its residuals run
    as compiled stencil kernels (``dmenet.propagation.stencil``) on float32 coefficients, half the
    bytes of float64 and a third of CSR's, and only a preconditioner (CG's own products use the
    float64 coefficients, so the solution is the float64 system's). The first coarsening, its
    restriction and prolongation are tile kernels on 6×6 tiles (``dmenet.propagation.aggregation``);
    the levels below group 2×2 nodes twice, then 3×3 (``dmenet.propagation.coarse``). A system of at
    most 500 pixels is solved by a sparse LU instead.
    """

    def __init__(self, rows, guide, csr, run_rows):
        from dmenet.propagation import aggregation
        from dmenet.propagation import stencil as stencil_kernels
        from dmenet.propagation.coarse import CoarseLevels

        height, width = guide.shape[:2]
        self.height, self.width = height, width
        self.run_rows = run_rows
        self.rows = rows
        self.smoothing_rows = np.empty(rows.shape, np.float32)
        self.inverse_diagonal, absolute_sum = np.empty((height, width)), np.empty((height, width))
        run_rows(lambda first, last: stencil_kernels.smoothing_rows(rows, first, last, self.smoothing_rows,
                                                                    self.inverse_diagonal, absolute_sum), height)
        self.kernels, self.aggregation = stencil_kernels, aggregation
        self.direct_factor = self.coarse_levels = None
        if height * width <= _AMG_MAX_COARSE:
            self.direct_factor = _factorise(csr())
            self.levels = 1
        else:
            prolongator, tile_blocks, candidates = aggregation.first_coarsening(rows, absolute_sum, guide, run_rows)
            self.tile_prolongator = prolongator.astype(np.float32)  # a preconditioner's: half the bytes to read
            self.coarse_levels = CoarseLevels(tile_blocks, candidates, run_rows=run_rows)  # keeps its own float32 copy
            self.levels = 1 + len(self.coarse_levels)
            self.coarse_size = candidates.shape[0]
        self.work, self.correction = np.zeros(self.padded_size), np.zeros(self.padded_size)
        self.sweep_work = np.empty((height, width))

    @property
    def padded_size(self):
        return int(np.prod(self.kernels.padded_shape(self.height, self.width)))

    def product(self, vector, out):
        """out = A·vector (float64 coefficients) on padded vectors."""
        return self.kernels.stencil_product(self.rows, vector, out, self.run_rows)

    def precondition(self, residual, out):
        """out = one V-cycle from zero for A·out = residual (padded vectors); symmetric, as CG needs.

        Smoothing S is the same symmetric operator before and after the coarse correction (block
        Gauss–Seidel on the residual), so the cycle is symmetric: out = S r, then the coarse
        correction of r − A·out, then out += S (r − A·out).
        """
        kernels, height, width = self.kernels, self.height, self.width
        if self.direct_factor is not None:  # a system small enough for a direct solve
            out[:] = 0.0
            inside = out.reshape(kernels.padded_shape(height, width))[kernels.PAD:-kernels.PAD, kernels.PAD:-kernels.PAD]
            inside[:] = self.direct_factor.solve(kernels.from_padded(residual, height, width)).reshape(height, width)
            return out
        rows, run_rows = self.smoothing_rows, self.run_rows
        kernels.block_gauss_seidel(rows, self.inverse_diagonal, residual, out, self.sweep_work, run_rows)
        kernels.stencil_residual(rows, residual, out, self.work, run_rows)
        coarse_rhs = np.empty(self.coarse_size)
        tiles, restrict = self.tile_prolongator, self.aggregation.restrict
        run_rows(lambda first, last: restrict(tiles, height, width, self.work, first, last, coarse_rhs), tiles.shape[0])
        coarse_solution = self.coarse_levels.cycle(coarse_rhs)
        self.aggregation.prolong(tiles, height, width, coarse_solution, out, run_rows)
        kernels.stencil_residual(rows, residual, out, self.work, run_rows)
        kernels.block_gauss_seidel(rows, self.inverse_diagonal, self.work, self.correction, self.sweep_work, run_rows)
        out += self.correction
        return out


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


def _solve_amg(stencil_system, rhs, tolerance):
    """CG preconditioned by the multigrid → (solution or None when it misses the tolerance, iterations)."""
    padded, iterations = _stencil_cg(stencil_system, rhs, tolerance)
    height, width = stencil_system.height, stencil_system.width
    product = stencil_system.product(padded, np.zeros_like(padded))
    solution = stencil_system.kernels.from_padded(padded, height, width)
    residual = np.linalg.norm(rhs - stencil_system.kernels.from_padded(product, height, width))
    if not np.isfinite(residual) or residual > 10 * tolerance * np.linalg.norm(rhs):
        # not seen on photos; a hierarchy broken by a degenerate guide must fall back, not pass silently
        return None, iterations
    return solution, iterations


def _factorise(system):
    import scipy.sparse.linalg  # imported here: SciPy's import alone costs a small photo's iterative solve a fifth of its run

    return scipy.sparse.linalg.splu(scipy.sparse.csc_matrix(system), permc_spec="MMD_AT_PLUS_A",
                                    diag_pivot_thresh=0.0, options={"SymmetricMode": True})


def solve_direct(system, rhs):
    """The reference: a sparse LU solve of the SPD system (minimum-degree ordering of A + Aᵀ, no pivoting).

    Args:
        system: N×N sparse SPD matrix.
        rhs: N-vector.

    Returns:
        N-vector float64.
    """
    return _factorise(system).solve(np.asarray(rhs, np.float64))


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
        method: "amg" (CG preconditioned by a smoothed-aggregation multigrid), "direct" (sparse LU,
            the reference: exact, but 15–60 s at 640×480) or "auto" (amg).
        stencil: ``laplacian_stencil(guide_rgb, epsilon)`` when already built.
        overwrite_stencil: the given stencil may become the system's rows (saves a 28 MB copy at 640×427).
        threads: threads the multigrid's set-up and the solve's products may use (None: the
            available cores, at most 4; the result does not depend on it).

    Example:
        >>> guide = np.random.default_rng(0).random((20, 30, 3))
        >>> known = np.zeros((20, 30), bool); known[::4, ::4] = True
        >>> dense = Propagation(guide, known).solve(np.where(known, 1.1, 0.0))
        >>> bool(np.allclose(dense, 1.1, atol=1e-5))
        True
    """

    def __init__(self, guide_rgb, known_mask, lam=0.005, epsilon=1e-5, tolerance=None, method="auto", stencil=None,
                 overwrite_stencil=False, threads=None):
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
        method = "amg" if method == "auto" else method
        self.shape, self.tolerance, self.method = guide.shape[:2], tolerance, method
        self.data_weight = lam * known.ravel()
        if stencil is None:
            stencil, overwrite_stencil = laplacian_stencil(guide, epsilon), True
        elif np.shape(stencil) != (self.shape[0], len(UPPER_OFFSETS), self.shape[1] + 4):
            raise PropagationError(f"propagate: stencil must be {self.shape[0]}×{len(UPPER_OFFSETS)}×{self.shape[1] + 4} "
                                   f"(laplacian_stencil), got {np.shape(stencil)}")
        # the system's rows: L's plus λ·D on the centre tap (in the stencil's own memory when it may be
        # overwritten: fresh 55 MB arrays cost more in page faults than the addition)
        self.rows = stencil if overwrite_stencil and stencil.dtype == np.float64 and stencil.flags.c_contiguous \
            else np.array(stencil, np.float64)
        self.rows[:, UPPER_OFFSETS.index((0, 0)), 2:-2] += self.data_weight.reshape(self.shape)
        self.stencil_system = None
        if method == "amg":
            with blas_threads.limited():
                self.stencil_system = _StencilSystem(self.rows, guide, lambda: self.system, RowRunner(threads))
        self.iterations = None

    @functools.cached_property
    def system(self):
        """(L + λ·D) as a SciPy CSR matrix (the direct solver's input; the iterative one works on the stencil)."""
        return stencil_to_csr(self.rows)

    @property
    def levels(self):
        """Levels of the multigrid hierarchy (fine grid included), or 0 for the direct solver."""
        return 0 if self.stencil_system is None else self.stencil_system.levels

    def solve(self, sparse_values):
        """H×W float32 dense map x for the sparse estimates s (only known pixels are read)."""
        values = np.asarray(sparse_values, dtype=np.float64)
        if values.shape != self.shape:
            raise PropagationError(
                f"propagate: sparse_values must be {self.shape[0]}×{self.shape[1]} like the guide, got {values.shape}")
        rhs = self.data_weight * values.ravel()
        solution = None
        if self.stencil_system is not None:
            # CG's vector products and the coarsest solve are tiny BLAS calls: on a busy machine a woken
            # BLAS thread pool made the solve 3.5× slower in CPU time (21.8 s against 6.1 s measured)
            with blas_threads.limited():
                solution, self.iterations = _solve_amg(self.stencil_system, rhs, self.tolerance)
            if solution is None:
                warnings.warn("propagate: AMG-preconditioned CG did not reach the tolerance; solving directly",
                              RuntimeWarning, stacklevel=2)
        if solution is None:
            solution = solve_direct(self.system, rhs)
        return solution.reshape(self.shape).astype(np.float32)


KERNEL_MODULES = ("dmenet.propagation.stencil", "dmenet.propagation.aggregation", "dmenet.propagation.coarse")


@functools.cache
def warm_up():
    """Loads the propagation's compiled kernels (``dmenet.native_kernels``; built the first time after installing).

    A pipeline calls this in a second thread while its other stages run (Zhuo & Sim beside its edge
    stages), so that the set-up and the first solve find them loaded. Only the first call in a process
    does anything.

    Example:
        >>> warm_up()
    """
    from dmenet import native_kernels

    native_kernels.load(*KERNEL_MODULES)


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
