"""Park'17 filtering and propagation stages: small exact checks, and the official Octave outputs."""
import numpy as np
import pytest
import scipy.sparse

from dmenet.park17 import rolling_guidance
from dmenet.park17.errors import Park17Error
from dmenet.park17.params import DEFAULT_PARAMS, SIGMA_CLASSES
from dmenet.park17.prob_jbf import probability_joint_bilateral
from dmenet.park17.rolling_guidance import rolling_guidance_filter
from dmenet.park17.sparse_map import sparse_maps
from dmenet.propagation.errors import PropagationError
from dmenet.propagation.laplacian import matting_laplacian
from dmenet.propagation.solver import propagate

REFERENCE_CASES = ["sample_0001", "sample_0002"]


def _brute_force_laplacian(image, epsilon):
    """GetLaplacian.m written as loops over windows: dense A, then diag(rowsum A) − A."""
    height, width, _ = image.shape
    affinity = np.zeros((height * width, height * width))
    for y in range(1, height - 1):
        for x in range(1, width - 1):
            index = [(y + dy) * width + x + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
            colours = np.array([image[y + dy, x + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
            centred = colours - colours.mean(axis=0)
            inverse = np.linalg.inv(centred.T @ centred / 9 + epsilon * np.eye(3))
            affinity[np.ix_(index, index)] += (1 + centred @ inverse @ centred.T) / 9
    return np.diag(affinity.sum(axis=1)) - affinity


def _brute_force_jbf(sps, prb, guide, radius, sigma_spatial, sigma_range, sigma_probability):
    """ProbJBF.m as loops over points and window offsets (in float64, as the reference run)."""
    prb = prb.astype(np.float64)
    out = np.zeros_like(sps)
    height, width = sps.shape
    for y, x in zip(*np.nonzero(sps)):
        numerator = denominator = 0.0
        for qy in range(y - radius, y + radius + 1):
            for qx in range(x - radius, x + radius + 1):
                if not (0 <= qy < height and 0 <= qx < width) or sps[qy, qx] == 0:
                    continue
                weight = (np.exp(-((qy - y) ** 2 + (qx - x) ** 2) / (2 * sigma_spatial ** 2))
                          * np.exp(-(guide[qy, qx] - guide[y, x]) ** 2 / (2 * sigma_range ** 2))
                          * np.exp(-(1 - prb[qy, qx]) ** 2 / (2 * sigma_probability ** 2)))
                numerator += weight * sps[qy, qx]
                denominator += weight
        out[y, x] = numerator / denominator
    return out


def _bilateral_grid_loops(data, edge, sigma):
    """bilateralFilter.m with sampling = σ, written with explicit loops and a dense 3-D blur."""
    height, width = data.shape
    edge_min, edge_delta = edge.min(), edge.max() - edge.min()
    grid_shape = (int((height - 1) // sigma) + 7, int((width - 1) // sigma) + 7, int(edge_delta // sigma) + 7)
    grid_data, grid_count = np.zeros(grid_shape), np.zeros(grid_shape)
    half_up = lambda v: int(np.floor(v + 0.5))  # noqa: E731 (inputs here never sit near .5)
    for i in range(height):
        for j in range(width):
            cell = (half_up(i / sigma) + 3, half_up(j / sigma) + 3, half_up((edge[i, j] - edge_min) / sigma) + 3)
            grid_data[cell] += data[i, j]
            grid_count[cell] += 1
    kernel = np.exp(-0.5 * np.add.outer(np.add.outer([1, 0, 1], [1, 0, 1]), [1, 0, 1]))
    from scipy.signal import convolve
    grid_data = convolve(grid_data, kernel, mode="same")
    grid_count = convolve(grid_count, kernel, mode="same")
    grid = np.where(grid_count != 0, grid_data / np.where(grid_count != 0, grid_count, 1), 0)
    from scipy.interpolate import RegularGridInterpolator
    interpolate = RegularGridInterpolator(tuple(np.arange(n, dtype=float) for n in grid_shape), grid)
    ii, jj = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    points = np.stack([ii / sigma + 3, jj / sigma + 3, (edge - edge_min) / sigma + 3], axis=-1)
    return interpolate(points)


def _bilateral_grid_numpy(data, edge, spatial, sigma_range):
    """The vectorised NumPy grid that the compiled one replaced (bincount, strided blurs, gathered slicing)."""
    pad = spatial.pad
    edge_min = float(edge.min())
    grid_d = int(np.floor((float(edge.max()) - edge_min) / sigma_range)) + 1 + 2 * pad
    depth = (edge - edge_min) / sigma_range + pad
    cell_z = rolling_guidance._round_half_away(depth - pad).astype(np.int64) + pad
    flat = spatial.scatter_cell * grid_d + cell_z
    size = spatial.grid_h * spatial.grid_w * grid_d
    valid = ~np.isnan(data)
    flat, values = flat[valid], data[valid]
    grids = np.stack([np.bincount(flat, weights=values, minlength=size), np.bincount(flat, minlength=size).astype(np.float64)])
    grids = grids.reshape(2, spatial.grid_h, spatial.grid_w, grid_d)
    side_tap = float(np.exp(-0.5))
    for axis in (1, 2, 3):
        out = grids.copy()
        lower, upper = [slice(None)] * 4, [slice(None)] * 4
        lower[axis], upper[axis] = slice(0, grids.shape[axis] - 1), slice(1, grids.shape[axis])
        out[tuple(upper)] += side_tap * grids[tuple(lower)]
        out[tuple(lower)] += side_tap * grids[tuple(upper)]
        grids = out
    grid_data, grid_count = grids
    normalised = np.zeros_like(grid_data)
    np.divide(grid_data, grid_count, out=normalised, where=grid_count != 0)
    z0 = np.clip(np.floor(depth).astype(np.int64), 0, grid_d - 2)
    weight_z = depth - z0
    flat_grid = normalised.ravel()
    base = spatial.slice_cell * grid_d + z0
    out = np.zeros(data.shape)
    for offset, weight in spatial.corners:
        corner = base + offset * grid_d
        below = flat_grid[corner]
        out += weight * (below + weight_z * (flat_grid[corner + 1] - below))
    return np.where(np.isnan(out), data, out)


# ---- small, self-contained checks ------------------------------------------------------------------

def test_sparse_maps_places_sigma_and_confidence():
    sps, prb = sparse_maps((4, 6), np.array([[0, 0], [3, 5], [2, 1]]), np.array([0, 10, 3]),
                           np.array([0.5, 0.25, 0.75]))
    assert sps.dtype == np.float64 and prb.dtype == np.float32
    assert sps[0, 0] == SIGMA_CLASSES[0] and sps[3, 5] == SIGMA_CLASSES[10] and sps[2, 1] == SIGMA_CLASSES[3]
    assert np.count_nonzero(sps) == 3 and np.count_nonzero(prb) == 3
    assert prb[2, 1] == np.float32(0.75)


def test_sparse_maps_rejects_bad_input():
    with pytest.raises(Park17Error, match="outside"):
        sparse_maps((4, 4), np.array([[4, 0]]), np.array([0]), np.array([1.0]))
    with pytest.raises(Park17Error, match="labels"):
        sparse_maps((4, 4), np.array([[1, 1]]), np.array([11]), np.array([1.0]))


def test_rgf_of_constant_image_is_constant():
    out = rolling_guidance_filter(np.full((13, 17, 3), 0.37))
    assert out.dtype == np.float32 and out.shape == (13, 17, 3)
    np.testing.assert_allclose(out, 0.37, rtol=0, atol=1e-7)


def test_rgf_matches_loop_implementation_of_the_grid():
    rng = np.random.default_rng(3)
    image = rng.random((11, 14, 3))
    expected = np.zeros_like(image)
    for _ in range(3):
        for channel in range(3):
            expected[..., channel] = _bilateral_grid_loops(image[..., channel], expected[..., channel], 1.5)
    out = rolling_guidance_filter(image)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


def test_rgf_range_axis_matters_for_strong_edges():
    # with σr small relative to a step, the second iteration must not blur across the step
    image = np.zeros((12, 12, 3))
    image[:, 6:] = 1.0
    plain = rolling_guidance_filter(image, sigma_range=10.0)
    edge_aware = rolling_guidance_filter(image, sigma_range=0.1)
    assert np.abs(edge_aware[:, 7:] - 1).max() < np.abs(plain[:, 7:] - 1).max()

def test_compiled_grid_is_bit_for_bit_the_numpy_grid():
    """Same float64 operations in the same order: equal bits, also with a NaN pixel and values on .5 cells."""
    rng = np.random.default_rng(11)
    data = rng.random((23, 31))
    data[4, 5] = np.nan
    edge = np.round(rng.random((23, 31)) * 8) / 8 * 1.5  # depths at .5 cell boundaries too
    for sigma_spatial, sigma_range in ((1.5, 1.5), (1.0, 0.2)):
        spatial = rolling_guidance._SpatialGrid(23, 31, sigma_spatial)
        for guide in (np.zeros_like(edge), edge):
            expected = _bilateral_grid_numpy(data, guide, spatial, sigma_range)
            np.testing.assert_array_equal(rolling_guidance._bilateral_grid(data, guide, spatial, sigma_range), expected)



def test_jbf_of_equal_values_returns_that_value_at_the_points():
    rng = np.random.default_rng(0)
    sps = np.where(rng.random((30, 40)) < 0.1, 1.25, 0.0)
    prb = np.where(sps != 0, rng.random((30, 40)), 0).astype(np.float32)
    out = probability_joint_bilateral(sps, prb, rng.random((30, 40)))
    np.testing.assert_allclose(out[sps != 0], 1.25, rtol=0, atol=1e-14)
    assert np.all(out[sps == 0] == 0)


@pytest.mark.parametrize("method,sigma_range", [("auto", 100.0), ("direct", 100.0), ("auto", 0.2)])
def test_jbf_matches_loops(method, sigma_range):
    rng = np.random.default_rng(1)
    sps = np.where(rng.random((20, 23)) < 0.2, rng.choice(SIGMA_CLASSES, (20, 23)), 0.0)
    prb = np.where(sps != 0, rng.random((20, 23)), 0).astype(np.float32)
    guide = rng.random((20, 23))
    expected = _brute_force_jbf(sps, prb, guide, 4, 3.0, sigma_range, 0.5)
    out = probability_joint_bilateral(sps, prb, guide, radius=4, sigma_spatial=3.0, sigma_range=sigma_range,
                                      sigma_probability=0.5, method=method)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-13)


def test_laplacian_matches_window_loops_and_is_a_laplacian():
    rng = np.random.default_rng(2)
    image = rng.random((7, 9, 3))
    laplacian = matting_laplacian(image, epsilon=1e-5)
    assert scipy.sparse.isspmatrix_csr(laplacian) or isinstance(laplacian, scipy.sparse.csr_array)
    dense = laplacian.toarray()
    np.testing.assert_allclose(dense, _brute_force_laplacian(image, 1e-5), rtol=0, atol=1e-9)
    np.testing.assert_allclose(dense, dense.T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dense.sum(axis=1), 0, rtol=0, atol=1e-9)
    for _ in range(20):
        vector = rng.standard_normal(dense.shape[0])
        assert vector @ dense @ vector >= -1e-9


def test_laplacian_annihilates_local_linear_functions_of_colour():
    # the matting Laplacian's purpose: x = a·I + b costs ~0 (exactly 0 without ε)
    rng = np.random.default_rng(4)
    image = rng.random((10, 12, 3))
    laplacian = matting_laplacian(image, epsilon=1e-12)
    x = image.reshape(-1, 3) @ np.array([0.3, -1.2, 0.7]) + 0.4
    assert abs(x @ (laplacian @ x)) < 1e-6 * (x @ x)


@pytest.mark.parametrize("method", ["amg", "direct"])
def test_constant_sparse_input_propagates_to_constant(method):
    rng = np.random.default_rng(5)
    guide = rng.random((24, 31, 3))
    known = rng.random((24, 31)) < 0.1
    dense = propagate(guide, np.where(known, 1.4, 0.0), known, method=method)
    assert dense.dtype == np.float32 and dense.shape == (24, 31)
    np.testing.assert_allclose(dense, 1.4, rtol=0, atol=1e-5)


def test_amg_solution_equals_direct_solution():
    rng = np.random.default_rng(6)
    guide = rng.random((40, 50, 3))
    known = rng.random((40, 50)) < 0.1
    values = np.where(known, rng.choice(SIGMA_CLASSES, (40, 50)), 0.0)
    amg = propagate(guide, values, known, method="amg")
    direct = propagate(guide, values, known, method="direct")
    np.testing.assert_allclose(amg, direct, rtol=0, atol=1e-5)


@pytest.mark.parametrize("guide_kind", ["flat", "two_flat_regions"])
def test_amg_handles_rank_deficient_colour_candidates(guide_kind):
    # flat tiles make {1, R, G, B} linearly dependent inside an aggregate
    columns = np.arange(50)[None, :, None]
    guide = np.full((40, 50, 3), 0.5) if guide_kind == "flat" else np.where(columns < 25, 0.2, 0.8) * np.ones((40, 50, 3))
    known = np.zeros((40, 50), bool)
    known[::7, ::5] = True
    values = np.where(known, np.where(np.arange(50)[None, :] < 25, 0.7, 1.6), 0.0)
    amg = propagate(guide, values, known, method="amg")
    direct = propagate(guide, values, known, method="direct")
    assert np.all(np.isfinite(amg))
    np.testing.assert_allclose(amg, direct, rtol=0, atol=1e-5)


def test_propagate_rejects_empty_mask_and_shape_mismatch():
    guide = np.zeros((5, 6, 3))
    with pytest.raises(PropagationError, match="no known pixel"):
        propagate(guide, np.zeros((5, 6)), np.zeros((5, 6), bool))
    with pytest.raises(PropagationError, match="5×6"):
        propagate(guide, np.zeros((5, 7)), np.ones((5, 7), bool))


# ---- the official pipeline's outputs (Octave run of the unmodified code) ---------------------------

@pytest.fixture(scope="module", params=REFERENCE_CASES)
def reference(request, shared_data):
    path = shared_data / "park17_reference" / f"{request.param}.npz"
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.files}


def test_reference_sparse_maps(reference):
    sps, prb = sparse_maps(reference["edgMap"].shape, reference["pos"], reference["label"],
                           reference["confidence"])
    np.testing.assert_allclose(sps, reference["spsImg"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(prb, reference["prbImg"])


def test_reference_rolling_guidance(reference):
    params = DEFAULT_PARAMS
    out = rolling_guidance_filter(reference["image_rgb_u8"] / 255.0, params.rgf_sigma_spatial,
                                  params.rgf_sigma_range, params.rgf_iterations)
    assert np.abs(out.astype(np.float64) - reference["rgfImg"]).max() <= 1e-5


def test_reference_prob_jbf(reference):
    params = DEFAULT_PARAMS
    out = probability_joint_bilateral(reference["spsImg"], reference["prbImg"], reference["rgfImg"][..., 0],
                                      params.jbf_radius, params.jbf_sigma_spatial, params.jbf_sigma_range,
                                      params.jbf_sigma_probability)
    assert np.abs(out - reference["jbfImg"]).max() <= 1e-6


def test_reference_propagation(reference):
    params = DEFAULT_PARAMS
    out = propagate(reference["rgfImg"], reference["jbfImg"], reference["edgMap"] != 0,
                    lam=params.matting_lambda, epsilon=params.matting_epsilon)
    error = np.abs(out.astype(np.float64) - reference["dnsImg"])
    assert error.max() <= 1e-5
