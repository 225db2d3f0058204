"""The official parameters of Park et al. (ParameterSetting.m), named once for every stage."""
import dataclasses

import numpy as np

NUM_CLASSES = 11
# σ of class k is 0.5 + 0.15·k px (MATLAB's 0.5:0.15:2.0).
SIGMA_MIN, SIGMA_STEP, SIGMA_MAX = 0.5, 0.15, 2.0
SIGMA_CLASSES = SIGMA_MIN + SIGMA_STEP * np.arange(NUM_CLASSES)


@dataclasses.dataclass(frozen=True)
class Park17Params:
    """Every tunable value of the official pipeline, with the official defaults.

    Scale 1 is the big patch (radius 13, 27×27), scale 2 the small one (radius 7, 15×15).
    """

    patch_radii: tuple = (13, 7)
    cnn_patch_radius: int = 13
    edge_low_test: tuple = (0.117, 0.234)
    edge_high_test: tuple = (0.176, 0.351)
    edge_low_train: tuple = (0.234, 0.468)
    edge_high_train: tuple = (0.351, 0.702)
    dct_bins: tuple = (25, 13)
    dct_sizes: tuple = (32, 16)
    dct_ring_overlap: float = 0.1
    gradient_bins: tuple = (25, 13)
    svd_bins: tuple = (25, 13)
    rgf_sigma_spatial: float = 1.5
    rgf_sigma_range: float = 1.5
    rgf_iterations: int = 3
    jbf_radius: int = 13
    jbf_sigma_spatial: float = 100.0
    jbf_sigma_range: float = 100.0
    jbf_sigma_probability: float = 1.0
    matting_lambda: float = 0.005
    matting_epsilon: float = 1e-5
    # not an official parameter: relative residual of the multigrid CG that replaces the direct solve;
    # 1e-5 leaves the dense map within 4e-6 of the official one on sample_0001 (docs/zhuo11.md)
    matting_tolerance: float = 1e-5
    wmf_radius: int = 5
    wmf_sigma: float = 0.25
    wmf_value_levels: int = 256
    wmf_guide_levels: int = 256
    wmf_iterations: int = 3
    batch_size: int = 128
    input_scale: float = 255.0
    training_kernel_radius: int = 13

    @property
    def patch_widths(self):
        return tuple(2 * r + 1 for r in self.patch_radii)

    @property
    def feature_length(self):
        """40 = 25 + 13 + 2: each scale's bins plus one scale-indicator slot per scale."""
        return sum(self.dct_bins) + len(self.dct_bins)


DEFAULT_PARAMS = Park17Params()
