"""The parameters of the official demo (demo.m) and the constants of defocusEstimation.m (ZHUO11.md)."""
import dataclasses
import math

from dmenet.zhuo11.errors import Zhuo11Error


@dataclasses.dataclass(frozen=True)
class Zhuo11Params:
    """What the official demo passes to ``defocusEstimation``, and the code's fixed constants.

    Attributes:
        edge_threshold: Canny's high threshold (a fraction of the peak gradient); low = 0.4 × it.
        canny_sigma: σ of Canny's Gaussian (1 → 8 taps).
        reblur_std: σ of the first re-blur gradient; the second is 1.5 × it.
        lam: λ, weight of the sparse estimates in the propagation.
        max_blur: sparse estimates above this are clamped to it; also sets the bilateral range σ (0.1 × it).
    """

    edge_threshold: float = 0.1
    canny_sigma: float = 1.0
    reblur_std: float = 1.0
    lam: float = 0.001
    max_blur: float = 3.0

    # fixed in the official code
    RATIO_SCALE = 1.5  # s2 = 1.5 · s1
    RATIO_MIN = 1.01  # ratios at or below this give no estimate
    SPARSE_FLOOR = 1e-4  # sparse values at or below this count as "no estimate"
    CANNY_LOW_FRACTION = 0.4  # MATLAB edge() with one threshold: low = 0.4 · high
    BILATERAL_SIGMA_SPATIAL = 5.0
    BILATERAL_RADIUS = 10  # a 21×21 window (ceil(4 · 5) + 1)
    LAPLACIAN_EPSILON = 1e-7  # added to each window covariance as is (not Levin's ε/9)
    # Relative residual of the multigrid CG: on the bird and CUHK photos it leaves |Δσ| ≤ 8e-4 px against
    # the direct solution (mean ≤ 6e-6), 12× inside the 0.01 px asked of a port, 6 iterations fewer than
    # 1e-4 (docs/zhuo11.md; 1e-3 reached 1.9e-3 px, too little margin).
    PROPAGATION_TOLERANCE = 3e-4

    def __post_init__(self):
        for name in ("canny_sigma", "reblur_std", "lam", "max_blur"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise Zhuo11Error(f"Zhuo & Sim parameter {name} must be a positive number, got {value!r}")
        if not 0 < self.edge_threshold < 1:
            raise Zhuo11Error(f"Zhuo & Sim edge_threshold must be in (0, 1), got {self.edge_threshold!r}")

    @property
    def canny_low(self):
        return self.CANNY_LOW_FRACTION * self.edge_threshold

    @property
    def second_std(self):
        return self.RATIO_SCALE * self.reblur_std

    @property
    def bilateral_sigma_range(self):
        return 0.1 * self.max_blur


DEFAULT_PARAMS = Zhuo11Params()
