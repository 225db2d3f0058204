"""Stage 1–2 of Zhuo & Sim: the grey image and its MATLAB-style Canny edge map (ZHUO11.md §1–2).

The official code calls ``edge(rgb2gray(I), 'canny', eth, 1)``: MATLAB's R2011a–R2016 Canny with one
threshold (low = 0.4 × high) and σ = 1. That is the Canny Park'17's port already reproduces bit for
bit (``dmenet.park17.edges.matlab_canny``), only with 8 Gaussian taps instead of 16.
"""
import numpy as np

from dmenet.park17.edges import matlab_canny
from dmenet.zhuo11.errors import Zhuo11Error
from dmenet.zhuo11.params import DEFAULT_PARAMS

# First row of the inverse of the NTSC matrix: MATLAB rgb2gray's weights at full precision.
GREY_WEIGHTS = (0.2989360212937755, 0.5870430744511213, 0.1140209042551033)


def grey_image(rgb):
    """MATLAB's ``rgb2gray`` of a float image: the NTSC luma, clipped to [0, 1].

    Args:
        rgb: H×W×3 float in [0, 1].

    Returns:
        H×W float64.

    Example:
        >>> float(grey_image(np.ones((1, 1, 3)))[0, 0])
        1.0
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise Zhuo11Error(f"grey_image: expected an H×W×3 RGB array, got shape {rgb.shape}")
    red, green, blue = GREY_WEIGHTS
    return np.clip(rgb[..., 0] * red + rgb[..., 1] * green + rgb[..., 2] * blue, 0.0, 1.0)


def edge_map(grey, params=DEFAULT_PARAMS):
    """``edge(grey, 'canny', eth, σ)``: bool H×W edges at the official thresholds.

    Args:
        grey: H×W grey image in [0, 1] (at least 3×3).
        params: Zhuo11Params (edge_threshold, canny_sigma).

    Returns:
        H×W bool.

    Example:
        >>> step = np.zeros((16, 16)); step[:, 8:] = 1.0
        >>> np.nonzero(edge_map(step)[8])[0]  # 8 taps shift by half a pixel, like MATLAB
        array([7])
    """
    if np.ndim(grey) != 2 or min(np.shape(grey)) < 3:
        raise Zhuo11Error(f"Zhuo & Sim needs a photo of at least 3×3 pixels, got shape {np.shape(grey)}")
    return matlab_canny(grey, params.canny_low, params.edge_threshold, sigma=params.canny_sigma)
