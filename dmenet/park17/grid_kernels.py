"""Compiled (numba) passes of the rolling-guidance bilateral grid, operation for operation as the NumPy ones.

Each pass performs the same float64 operations in the same order as the NumPy expression it replaces
(`rolling_guidance`), so the results are bit for bit the same; only the temporaries and the strided
passes over the grid are gone. numba is not asked for fast-math, so nothing is reassociated or fused.
These make arrays, so they run through numba (``dmenet.native_kernels``), imported on their first call.
"""
import numpy as np

from dmenet.native_kernels import kernel


@kernel()
def scatter(data, depth, scatter_cell, grid_d, pad, size):
    """np.bincount of the values and of the pixels per grid cell (NaN values skipped), in pixel order.

    The cell's range index is MATLAB round(depth − pad) + pad, round half away from zero.
    """
    values = np.zeros(size)
    counts = np.zeros(size)
    height, width = data.shape
    for y in range(height):
        for x in range(width):
            value = data[y, x]
            if np.isnan(value):
                continue
            shifted = depth[y, x] - pad
            base = np.floor(shifted)
            cell_z = np.int64(base + (1.0 if shifted - base >= 0.5 else 0.0)) + pad
            cell = scatter_cell[y, x] * grid_d + cell_z
            values[cell] += value
            counts[cell] += 1.0
    return values, counts


@kernel()
def _blur_along(grid, side_tap, di, dj, dk):
    """One axis of ``blur``: the axis of step (di, dj, dk), one of which is 1."""
    h, w, d = grid.shape
    out = np.empty_like(grid)
    for i in range(h):
        for j in range(w):
            for k in range(d):
                value = grid[i, j, k]
                if i >= di and j >= dj and k >= dk:
                    value = value + side_tap * grid[i - di, j - dj, k - dk]
                if i + di < h and j + dj < w and k + dk < d:
                    value = value + side_tap * grid[i + di, j + dj, k + dk]
                out[i, j, k] = value
    return out


@kernel()
def blur(grid, side_tap):
    """The separable [side_tap, 1, side_tap] blur along the three axes of an h×w×d grid, zero outside.

    Per axis, out[i] = (g[i] + side_tap·g[i−1]) + side_tap·g[i+1], the neighbours that exist.
    """
    return _blur_along(_blur_along(_blur_along(grid, side_tap, 1, 0, 0), side_tap, 0, 1, 0), side_tap, 0, 0, 1)


@kernel()
def normalise_and_slice(grid_data, grid_count, data, depth, slice_cell, grid_d, offsets, weights):
    """data/count per cell (0 where empty), then trilinear slicing at each pixel's grid coordinates.

    Corners are added in the order of ``offsets`` (the spatial ones, each with its range pair), as
    out += weight·(below + wz·(above − below)); NaN results keep the input value.
    """
    flat_data = grid_data.ravel()
    flat_count = grid_count.ravel()
    normalised = np.zeros(flat_data.size)
    for cell in range(flat_data.size):
        if flat_count[cell] != 0:
            normalised[cell] = flat_data[cell] / flat_count[cell]
    height, width = data.shape
    out = np.empty((height, width))
    for y in range(height):
        for x in range(width):
            z0 = np.int64(np.floor(depth[y, x]))
            z0 = min(max(z0, 0), grid_d - 2)
            weight_z = depth[y, x] - z0
            base = slice_cell[y, x] * grid_d + z0
            value = 0.0
            for corner_index in range(offsets.shape[0]):
                corner = base + offsets[corner_index] * grid_d
                below = normalised[corner]
                value += weights[corner_index, y, x] * (below + weight_z * (normalised[corner + 1] - below))
            out[y, x] = data[y, x] if np.isnan(value) else value
    return out
