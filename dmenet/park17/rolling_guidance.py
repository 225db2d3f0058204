"""Rolling guidance filter of the official code (PARK17.md §8): iterated Paris–Durand bilateral grids.

RollingGuidanceFilter.m starts from a zero guide and, per iteration and per colour channel, filters
the input channel with a bilateral grid whose range axis is the previous result of that same
channel. The grid (bilateralFilter.m, Jiawen Chen's implementation) samples space and range at
their σ, so the derived σ is 1 and the blur kernel is the unnormalised 3×3×3 Gaussian. Everything
here is vectorised: scatter with bincount, separable zero-padded blur, gathered trilinear slicing.
"""
import numpy as np
from scipy import ndimage

from dmenet.park17.sparse_map import Park17InputError


def _round_half_away(x):
    """MATLAB round for x ≥ 0 (np.round is half-to-even; floor(x + 0.5) misrounds 0.49999999999999994)."""
    base = np.floor(x)
    return base + (x - base >= 0.5)


def _bilateral_grid(data, edge, sigma_spatial, sigma_range):
    """bilateralFilter(data, edge, min(edge), max(edge), σs, σr) with sampling = σ, float64."""
    height, width = data.shape
    edge_min = float(edge.min())
    edge_delta = float(edge.max()) - edge_min
    # sampling = σ makes the derived σ 1 in grid units whatever σs, σr are
    derived_spatial = derived_range = 1.0
    pad_xy = int(np.floor(2 * derived_spatial)) + 1
    pad_z = int(np.floor(2 * derived_range)) + 1
    grid_h = int(np.floor((height - 1) / sigma_spatial)) + 1 + 2 * pad_xy
    grid_w = int(np.floor((width - 1) / sigma_spatial)) + 1 + 2 * pad_xy
    grid_d = int(np.floor(edge_delta / sigma_range)) + 1 + 2 * pad_z

    rows = np.arange(height) / sigma_spatial
    cols = np.arange(width) / sigma_spatial
    depth = (edge - edge_min) / sigma_range

    cell_r = _round_half_away(rows).astype(np.int64) + pad_xy
    cell_c = _round_half_away(cols).astype(np.int64) + pad_xy
    cell_z = _round_half_away(depth).astype(np.int64) + pad_z
    flat = (cell_r[:, None] * grid_w + cell_c[None, :]) * grid_d + cell_z
    size = grid_h * grid_w * grid_d
    valid = ~np.isnan(data)
    grid_data = np.bincount(flat[valid], weights=data[valid], minlength=size).reshape(grid_h, grid_w, grid_d)
    grid_count = np.bincount(flat[valid], minlength=size).astype(np.float64).reshape(grid_h, grid_w, grid_d)

    # exp(-(dx²+dy²+dz²)/2) over {-1,0,1}³ is the product of three 1-D kernels; convn 'same' pads with 0
    taps = np.exp(-0.5 * np.array([1.0, 0.0, 1.0]))
    for axis in range(3):
        grid_data = ndimage.correlate1d(grid_data, taps, axis=axis, mode="constant", cval=0.0)
        grid_count = ndimage.correlate1d(grid_count, taps, axis=axis, mode="constant", cval=0.0)
    nonzero = grid_count != 0
    normalised = np.zeros_like(grid_data)
    np.divide(grid_data, grid_count, out=normalised, where=nonzero)

    # trilinear slicing (interpn 'linear') at unrounded grid coordinates
    fr = rows + pad_xy
    fc = cols + pad_xy
    fz = depth + pad_z
    r0 = np.minimum(np.floor(fr).astype(np.int64), grid_h - 2)
    c0 = np.minimum(np.floor(fc).astype(np.int64), grid_w - 2)
    z0 = np.clip(np.floor(fz).astype(np.int64), 0, grid_d - 2)
    wr = (fr - r0)[:, None]
    wc = (fc - c0)[None, :]
    wz = fz - z0
    flat_grid = normalised.ravel()
    base = (r0[:, None] * grid_w + c0[None, :]) * grid_d + z0
    step_r, step_c = grid_w * grid_d, grid_d
    out = np.zeros((height, width))
    for dr, weight_r in ((0, 1 - wr), (step_r, wr)):
        for dc, weight_c in ((0, 1 - wc), (step_c, wc)):
            corner = base + (dr + dc)
            along_z = flat_grid[corner] * (1 - wz) + flat_grid[corner + 1] * wz
            out += (weight_r * weight_c) * along_z
    # interpn returns NaN outside the grid and the official code keeps the input there; the grid's
    # padding makes that impossible for finite input, but NaN input still falls back to itself
    return np.where(np.isnan(out), data, out)


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
        raise Park17InputError(f"rolling_guidance_filter: expected an H×W×C image, got shape {np.shape(rgb)}")
    if not (sigma_spatial > 0 and sigma_range > 0):
        raise Park17InputError("rolling_guidance_filter: sigma_spatial and sigma_range must be > 0")
    result = np.zeros_like(image)
    for _ in range(int(iterations)):
        for channel in range(image.shape[2]):
            result[:, :, channel] = _bilateral_grid(
                image[:, :, channel], result[:, :, channel], sigma_spatial, sigma_range)
    result = result.astype(np.float32)
    return result[:, :, 0] if squeeze else result
