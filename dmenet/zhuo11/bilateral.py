"""Stage 6 of Zhuo & Sim: the "sparse" joint bilateral clean-up of the edge estimates (ZHUO11.md §6).

Only pixels holding an estimate are filtered, and only neighbours holding one are averaged. The weight
of a neighbour q of p is spatial · range · exp(−S(q)): the range term sums, over the three channels,
exp(−(I_c(q) − I_red(p))² / 2σr²) — the official code compares every channel of the neighbour with
the centre's RED value (a 2-subscript index into the 3-channel window) — and exp(−S(q)) favours the
smaller blur. Border pixels are replicated (for both S and I), so a border pixel can count several
times.
"""
import numpy as np

from dmenet.zhuo11.errors import Zhuo11Error
from dmenet.zhuo11.params import DEFAULT_PARAMS


def sparse_bilateral(sparse, rgb, params=DEFAULT_PARAMS):
    """sparseBilateralFilter.m: B(p) = Σ w(q)·S(q) / Σ w(q) at every p with S(p) > 1e-4, else 0.

    Args:
        sparse: H×W clamped sparse σ map S.
        rgb: H×W×3 guide in [0, 1] (the photo).
        params: Zhuo11Params (max_blur sets the range σ = 0.1 × max_blur).

    Returns:
        H×W float64 B, with the same support as {S > 1e-4}.

    Example:
        >>> S = np.zeros((30, 30)); S[10, 5:25] = 1.5
        >>> B = sparse_bilateral(S, np.full((30, 30, 3), 0.5))
        >>> bool(np.allclose(B[10, 5:25], 1.5)) and int((B > 0).sum())
        20
    """
    sparse = np.ascontiguousarray(sparse, dtype=np.float64)  # the kernel's one compiled layout, for the result too
    rgb = np.ascontiguousarray(rgb, dtype=np.float64)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[:2] != sparse.shape:
        raise Zhuo11Error(f"sparse_bilateral: need an H×W sparse map and an H×W×3 guide, got {sparse.shape} and {rgb.shape}")
    from dmenet.zhuo11 import bilateral_kernel  # its kernels load on first use

    radius = params.BILATERAL_RADIUS
    offsets = np.arange(-radius, radius + 1)
    spatial = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2.0 * params.BILATERAL_SIGMA_SPATIAL ** 2))
    spatial /= spatial.sum()
    result = np.zeros_like(sparse)
    bilateral_kernel.sparse_window_means(sparse, rgb, spatial, params.SPARSE_FLOOR,
                                         1.0 / (2.0 * params.bilateral_sigma_range ** 2), result)
    return result
