"""Rolling guidance filter of the official code (PARK17.md §8): iterated Paris–Durand bilateral grids.

RollingGuidanceFilter.m starts from a zero guide and, per iteration and per colour channel, filters
the input channel with a bilateral grid whose range axis is the previous result of that same
channel. The grid (bilateralFilter.m, Jiawen Chen's implementation) samples space and range at
their σ, so the derived σ is 1 and the blur kernel is the unnormalised 3×3×3 Gaussian. Everything
here is vectorised: scatter with bincount, separable zero-padded blur, gathered trilinear slicing.
"""
import numpy as np

from dmenet.park17.errors import Park17Error


def _round_half_away(x):
    """MATLAB round for x ≥ 0 (np.round is half-to-even; floor(x + 0.5) misrounds 0.49999999999999994)."""
    base = np.floor(x)
    return base + (x - base >= 0.5)


class _SpatialGrid:
    """The spatial half of the grid (cells, slicing corners and weights), shared by all 9 filterings."""

    def __init__(self, height, width, sigma_spatial):
        # sampling = σ makes the derived σ 1 in grid units, hence padding floor(2·1) + 1 = 3
        self.pad = 3
        self.height, self.width = height, width
        self.grid_h = int(np.floor((height - 1) / sigma_spatial)) + 1 + 2 * self.pad
        self.grid_w = int(np.floor((width - 1) / sigma_spatial)) + 1 + 2 * self.pad
        rows = np.arange(height) / sigma_spatial + self.pad
        cols = np.arange(width) / sigma_spatial + self.pad
        cell_r = _round_half_away(rows - self.pad).astype(np.int64) + self.pad
        cell_c = _round_half_away(cols - self.pad).astype(np.int64) + self.pad
        self.scatter_cell = cell_r[:, None] * self.grid_w + cell_c[None, :]
        r0 = np.minimum(np.floor(rows).astype(np.int64), self.grid_h - 2)
        c0 = np.minimum(np.floor(cols).astype(np.int64), self.grid_w - 2)
        self.slice_cell = r0[:, None] * self.grid_w + c0[None, :]
        weight_r = (rows - r0)[:, None]
        weight_c = (cols - c0)[None, :]
        # (cell offset, weight) of the four spatial corners of each pixel
        self.corners = [(0, (1 - weight_r) * (1 - weight_c)), (1, (1 - weight_r) * weight_c),
                        (self.grid_w, weight_r * (1 - weight_c)), (self.grid_w + 1, weight_r * weight_c)]
        self.corner_offsets = np.array([offset for offset, _ in self.corners], dtype=np.int64)
        self.corner_weights = np.stack([np.broadcast_to(weight, (height, width)) for _, weight in self.corners])


def _bilateral_grid(data, edge, spatial, sigma_range):
    """bilateralFilter(data, edge, min(edge), max(edge), σs, σr) with sampling = σ, float64.

    Scatter (bincount), blur by exp(−(dx²+dy²+dz²)/2) over {−1, 0, 1}³ = the product of three 1-D
    kernels [e^−½, 1, e^−½], normalisation and trilinear slicing (interpn 'linear') at the unrounded
    grid coordinates run compiled (`grid_kernels`), with NumPy's operations in NumPy's order. interpn
    gives NaN outside the grid and the official code keeps the input there; the grid's padding makes
    that impossible for finite input, but NaN input still falls back to itself.
    """
    from dmenet.park17 import grid_kernels  # its kernels load on first use

    pad = spatial.pad
    edge_min = float(edge.min())
    grid_d = int(np.floor((float(edge.max()) - edge_min) / sigma_range)) + 1 + 2 * pad
    depth = (edge - edge_min) / sigma_range + pad
    size = spatial.grid_h * spatial.grid_w * grid_d
    data = np.ascontiguousarray(data, dtype=np.float64)
    grid_data, grid_count = grid_kernels.scatter(data, np.ascontiguousarray(depth), spatial.scatter_cell, grid_d, pad, size)
    shape = (spatial.grid_h, spatial.grid_w, grid_d)
    side_tap = float(np.exp(-0.5))
    grid_data = grid_kernels.blur(grid_data.reshape(shape), side_tap)
    grid_count = grid_kernels.blur(grid_count.reshape(shape), side_tap)
    return grid_kernels.normalise_and_slice(grid_data, grid_count, data, np.ascontiguousarray(depth), spatial.slice_cell,
                                            grid_d, spatial.corner_offsets, spatial.corner_weights)


def rolling_guidance_filter(rgb, sigma_spatial=1.5, sigma_range=1.5, iterations=3):
    """RollingGuidanceFilter.m of the official code: per-channel iterated bilateral grids.

    Args:
        rgb: H×W×3 (or H×W) float image in [0, 1] (the official code uses imread/255).
        sigma_spatial, sigma_range: σ of the grid in pixels and in intensity (also the sampling steps).
        iterations: number of rolling iterations; the first (zero guide) is a pure spatial blur.

    Returns:
        H×W×3 (or H×W) float32 filtered image.

    Example:
        >>> out = rolling_guidance_filter(np.full((8, 9, 3), 0.25))
        >>> bool(np.allclose(out, 0.25))
        True
    """
    image = np.asarray(rgb, dtype=np.float64)
    squeeze = image.ndim == 2
    if squeeze:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise Park17Error(f"rolling_guidance_filter: expected an H×W×C image, got shape {np.shape(rgb)}")
    if not (sigma_spatial > 0 and sigma_range > 0):
        raise Park17Error("rolling_guidance_filter: sigma_spatial and sigma_range must be > 0")
    spatial = _SpatialGrid(image.shape[0], image.shape[1], sigma_spatial)
    channels = [np.ascontiguousarray(image[:, :, c]) for c in range(image.shape[2])]
    results = [np.zeros(image.shape[:2]) for _ in channels]
    for _ in range(int(iterations)):
        results = [_bilateral_grid(data, guide, spatial, sigma_range) for data, guide in zip(channels, results)]
    result = np.stack(results, axis=2)
    result = result.astype(np.float32)
    return result[:, :, 0] if squeeze else result
