"""Zhuo & Sim end to end: one photo in, the full defocus map (Gaussian σ in pixels) out, stage by stage."""
import concurrent.futures
import dataclasses
import time

import numpy as np

from dmenet.inference.staged import StageTimer
from dmenet.propagation.laplacian import laplacian_stencil
from dmenet.propagation.solver import Propagation, warm_up
from dmenet.zhuo11.bilateral import sparse_bilateral
from dmenet.zhuo11.blur_ratio import edge_blur
from dmenet.zhuo11.edges import edge_map, grey_image
from dmenet.zhuo11.errors import Zhuo11Error
from dmenet.zhuo11.params import DEFAULT_PARAMS

STAGES = ("edges", "blur_ratio", "bilateral", "propagation_setup", "propagation_solve")
# the compiled kernels' modules, in the order the stages first call them (``dmenet.native_kernels.preload``)
KERNEL_MODULES = ("dmenet.nearest_filter_kernel", "dmenet.propagation.stencil", "dmenet.park17.hysteresis_kernel",
                  "dmenet.zhuo11.bilateral_kernel", "dmenet.propagation.aggregation", "dmenet.propagation.coarse")


@dataclasses.dataclass
class Zhuo11Result:
    """The full map and, on request, the official code's intermediates.

    Attributes:
        sigma: H×W float32 full defocus map fDmap, Gaussian σ in pixels (not clipped).
        stage_seconds: wall time of each stage, in pipeline order ("laplacian" ran beside the first three,
            "propagation_setup" beside the bilateral clean-up).
        intermediates: edgeMap (bool), sDMap (the sparse map after the bilateral clean-up) and
            edge_sigma (before it), filled when ``keep_intermediates`` was set.
    """

    sigma: np.ndarray
    stage_seconds: dict
    intermediates: dict


def as_unit_rgb(image):
    """The official input: RGB as float64 in [0, 1] (``im2double``) from uint8, or float in [0, 1].

    Args:
        image: H×W×3 uint8, or float in [0, 1] (clipped).

    Returns:
        H×W×3 float64.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise Zhuo11Error(f"expected an H×W×3 RGB image, got shape {image.shape}")
    if min(image.shape[:2]) < 3:
        raise Zhuo11Error(f"Zhuo & Sim needs a photo of at least 3×3 pixels, got {image.shape[1]}×{image.shape[0]}")
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    return np.clip(image.astype(np.float64), 0.0, 1.0)


def estimate_zhuo11(image, params=DEFAULT_PARAMS, solver="auto", tolerance=None, keep_intermediates=False, on_stage=None):
    """Defocus map of one photo by Zhuo & Sim (2011), exact to the author's ``defocusEstimation.m``.

    Args:
        image: H×W×3 RGB, uint8 or float in [0, 1].
        params: ``Zhuo11Params`` (default: the official demo's).
        solver: "auto", "amg" or "direct" (``dmenet.propagation.solver.Propagation``).
        tolerance: relative residual of the iterative solve (None: ``Zhuo11Params.PROPAGATION_TOLERANCE``).
        keep_intermediates: also return edgeMap, sDMap and the unfiltered edge estimates.
        on_stage: called as ``on_stage(name)`` when a stage starts (progress display).

    Returns:
        Zhuo11Result with ``sigma`` in pixels.

    Raises:
        Zhuo11Error: the photo has no edge whose blur can be measured (e.g. a flat image).

    Example:
        >>> from dmenet.files.images import read_image
        >>> result = estimate_zhuo11(read_image("bird.png"))
        >>> float(result.sigma.max())
    """
    rgb = as_unit_rgb(image)
    return _estimate(rgb, params, solver, tolerance, StageTimer(on_stage, keep_intermediates))


def _estimate(rgb, params, solver, tolerance, timer):
    begin, end, seconds, kept = timer.begin, timer.end, timer.seconds, timer.kept
    tolerance = params.PROPAGATION_TOLERANCE if tolerance is None else tolerance

    # The Laplacian depends on the photo only, not on the estimates: a second thread builds it while
    # the edge stages run (NumPy and the compiled kernels release the GIL); a third loads the solver's
    # compiled kernels, a one-off cost of a fresh process otherwise paid at the first solve.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        stencil = pool.submit(_timed, laplacian_stencil, rgb, params.LAPLACIAN_EPSILON)
        if solver != "direct":
            pool.submit(warm_up)
        begin("edges")
        grey = grey_image(rgb)
        edges = edge_map(grey, params)
        end("edges", edgeMap=edges)
        begin("blur_ratio")
        edge_sigma = edge_blur(grey, edges, params)
        end("blur_ratio", edge_sigma=edge_sigma)
        # The propagation's set-up needs only which pixels are known, and the bilateral clean-up keeps
        # the estimates' support (a weighted mean of values above the floor stays above it), so the
        # set-up runs beside the clean-up.
        known = edge_sigma > params.SPARSE_FLOOR
        if not known.any():
            raise Zhuo11Error("Zhuo & Sim found no edge whose blur it can measure (a flat or blank image?): nothing to propagate")
        propagation = pool.submit(_set_up_on, stencil, rgb, known, params, solver, tolerance)
        begin("bilateral")
        sparse = sparse_bilateral(edge_sigma, rgb, params)
        end("bilateral", sDMap=sparse)
        begin("propagation_setup")
        propagation, seconds["laplacian"], setup_seconds = propagation.result()
    end("propagation_setup")
    seconds["propagation_setup"] = setup_seconds
    support = sparse > params.SPARSE_FLOOR
    if not np.array_equal(support, known):
        # only if rounding took a mean of estimates just above the floor to it: the map's own support
        propagation = _propagation(rgb, support, params, solver, tolerance)
    begin("propagation_solve")
    sigma = propagation.solve(sparse)
    end("propagation_solve", fDmap=sigma, solver_iterations=propagation.iterations)
    return Zhuo11Result(sigma=sigma, stage_seconds=seconds, intermediates=kept)


def _propagation(rgb, known, params, solver, tolerance, laplacian=None):
    return Propagation(rgb, known, lam=params.lam, epsilon=params.LAPLACIAN_EPSILON, tolerance=tolerance,
                       method=solver, stencil=laplacian, overwrite_stencil=laplacian is not None)


def _set_up_on(stencil, rgb, known, params, solver, tolerance):
    """(the propagation system on the Laplacian `stencil` will hold, its seconds, the set-up's seconds)."""
    laplacian, laplacian_seconds = stencil.result()
    system, setup_seconds = _timed(_propagation, rgb, known, params, solver, tolerance, laplacian)
    return system, laplacian_seconds, setup_seconds


def _timed(function, *args):
    started = time.perf_counter()
    return function(*args), time.perf_counter() - started
