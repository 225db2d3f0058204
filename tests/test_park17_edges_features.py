"""Park'17 stages 1–2: MATLAB-style Canny edge map, patch centres and hand-crafted features.

Synthetic images check the algorithmic properties; ../shared/data/park17_reference checks exact
agreement with the official pipeline (Octave run, PARK17.md §14).
"""
import concurrent.futures
from collections import deque

import numpy as np
import pytest
import scipy.fft
import scipy.ndimage

from dmenet.park17 import edges, features
from dmenet.park17.edges import balanced_training_edge_map, matlab_canny, multiscale_edge_map, value_channel
from dmenet.park17.errors import Park17Error
from dmenet.park17.features import (
    PatchFeatureExtractor,
    PatchFeatures,
    compute_features,
    gradient_histogram_bins,
    iter_feature_chunks,
    matlab_uint8,
    patch_centres,
)
from dmenet.park17.params import DEFAULT_PARAMS

# ---------------------------------------------------------------- synthetic: edges


def test_value_channel_is_max_of_rgb():
    rgb = np.random.default_rng(0).random((5, 6, 3))
    np.testing.assert_array_equal(value_channel(rgb), rgb.max(axis=2))
    with pytest.raises(Park17Error):
        value_channel(rgb[..., :2])


def test_step_edge_is_one_pixel_wide_half_a_pixel_left_of_the_step():
    image = np.zeros((24, 30))
    image[:, 15:] = 0.8
    edge = matlab_canny(image, 0.1, 0.2)
    # The 16-tap (even) kernels shift the gradient peak half a pixel towards the dark side.
    expected = np.zeros_like(edge)
    expected[1:-1, 14] = True
    np.testing.assert_array_equal(edge, expected)
    transposed = matlab_canny(image.T, 0.1, 0.2)
    np.testing.assert_array_equal(transposed, expected.T)


def test_square_gives_one_closed_thin_contour_away_from_the_border():
    image = np.zeros((40, 40))
    image[12:28, 12:28] = 1.0
    edge = matlab_canny(image, 0.1, 0.3)
    assert not edge[0].any() and not edge[-1].any() and not edge[:, 0].any() and not edge[:, -1].any()
    rows, cols = np.nonzero(edge)
    # Every edge pixel lies on the square's outline (±1 pixel).
    distance = np.minimum(np.minimum(abs(rows - 11.5), abs(rows - 27.5)),
                          np.minimum(abs(cols - 11.5), abs(cols - 27.5)))
    assert distance.max() <= 1.5
    labels, count = scipy.ndimage.label(edge, structure=np.ones((3, 3)))
    assert count == 1
    # Thin: every side is a single line (one edge pixel per row on the vertical sides).
    assert edge[16:24, :20].sum(axis=1).tolist() == [1] * 8
    # Closed: the inside is not 8-connected to the outside through gaps in the contour.
    outside, _ = scipy.ndimage.label(~edge)
    assert outside[20, 20] != outside[1, 1]


def _fading_and_isolated_steps():
    """A vertical bar whose contrast fades from 1.0 (top) to 0.2 (bottom), plus an isolated 0.25 step."""
    image = np.zeros((40, 60))
    image[:, 15:30] = np.linspace(1.0, 0.2, 40)[:, None]
    image[:, 45:] = 0.25
    return image


def test_hysteresis_keeps_weak_edges_only_when_connected_to_strong_ones():
    image = _fading_and_isolated_steps()
    _, _, magnitude = edges._canny_gradients(image)
    assert magnitude[25:39, 14].max() < 0.5 and magnitude[1:39, 44].max() < 0.5
    edge = matlab_canny(image, 0.1, 0.5)
    assert edge[1:39, 14].all() and edge[1:39, 29].all()   # weak lower part kept through the strong top
    assert not edge[:, 35:].any()                          # isolated weak step dropped
    assert matlab_canny(image, 0.1, 0.2)[1:39, 44].all()   # strong enough at a lower high threshold


def test_hysteresis_equals_flood_fill_of_weak_from_strong():
    rng = np.random.default_rng(3)
    image = scipy.ndimage.gaussian_filter(rng.random((48, 40)), 1.5)
    low, high = 0.15, 0.4
    gx, gy, magnitude = edges._canny_gradients(image)
    local_max = edges._local_maxima(gx, gy, magnitude)
    weak = local_max & (magnitude > low)
    reached = np.zeros_like(weak)
    queue = deque(zip(*np.nonzero(weak & (magnitude > high))))
    for r, c in queue:
        reached[r, c] = True
    while queue:
        r, c = queue.popleft()
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                rr, cc = r + dr, c + dc
                if 0 <= rr < weak.shape[0] and 0 <= cc < weak.shape[1] and weak[rr, cc] and not reached[rr, cc]:
                    reached[rr, cc] = True
                    queue.append((rr, cc))
    np.testing.assert_array_equal(matlab_canny(image, low, high), reached)
    assert reached.sum() > 20


def test_nms_keeps_exactly_the_interpolated_local_maxima():
    rng = np.random.default_rng(4)
    image = scipy.ndimage.gaussian_filter(rng.random((30, 34)), 1.0)
    gx, gy, m = edges._canny_gradients(image)
    keep = edges._local_maxima(gx, gy, m)
    expected = np.zeros_like(keep)
    for r in range(1, m.shape[0] - 1):   # per-pixel transcription of the four sectors (PARK17.md §2.4)
        for c in range(1, m.shape[1] - 1):
            x, y, v = gx[r, c], gy[r, c], m[r, c]
            tests = []
            if (y <= 0 and x > -y) or (y >= 0 and x < -y):
                d = abs(y / x)
                tests.append(((1 - d) * m[r, c + 1] + d * m[r - 1, c + 1], (1 - d) * m[r, c - 1] + d * m[r + 1, c - 1]))
            if (x > 0 and -y >= x) or (x < 0 and -y <= x):
                d = abs(x / y)
                tests.append(((1 - d) * m[r - 1, c] + d * m[r - 1, c + 1], (1 - d) * m[r + 1, c] + d * m[r + 1, c - 1]))
            if (x <= 0 and x > y) or (x >= 0 and x < y):
                d = abs(x / y)
                tests.append(((1 - d) * m[r - 1, c] + d * m[r - 1, c - 1], (1 - d) * m[r + 1, c] + d * m[r + 1, c + 1]))
            if (y < 0 and x <= y) or (y > 0 and x >= y):
                d = abs(y / x)
                tests.append(((1 - d) * m[r, c - 1] + d * m[r - 1, c - 1], (1 - d) * m[r, c + 1] + d * m[r + 1, c + 1]))
            expected[r, c] = any(v >= n1 and v >= n2 for n1, n2 in tests)
    np.testing.assert_array_equal(keep, expected)


def test_multiscale_map_is_max_of_scale_labels_and_constant_image_has_no_edges():
    image = scipy.ndimage.gaussian_filter(np.random.default_rng(5).random((50, 45)), 1.2)
    e1 = matlab_canny(image, 0.117, 0.176)
    e2 = matlab_canny(image, 0.234, 0.351)
    np.testing.assert_array_equal(multiscale_edge_map(image), np.maximum(1 * e1, 2 * e2).astype(np.uint8))
    assert (multiscale_edge_map(image) == 2).any() and (multiscale_edge_map(image) == 1).any()
    assert not multiscale_edge_map(np.full((20, 20), 0.4)).any()
    with pytest.raises(Park17Error):
        matlab_canny(image, 0.5, 0.2)
    with pytest.raises(Park17Error):
        multiscale_edge_map(np.zeros((2, 10)))


def test_balanced_training_map_keeps_equal_random_subsets():
    image = scipy.ndimage.gaussian_filter(np.random.default_rng(6).random((80, 90)), 1.0)
    unbalanced = multiscale_edge_map(image, DEFAULT_PARAMS.edge_low_train, DEFAULT_PARAMS.edge_high_train)
    counts = [(unbalanced == k).sum() for k in (1, 2)]
    assert counts[0] != counts[1] and min(counts) > 0
    balanced = balanced_training_edge_map(image, np.random.default_rng(0))
    assert [(balanced == k).sum() for k in (1, 2)] == [min(counts)] * 2
    assert np.all((balanced == 0) | (balanced == unbalanced))
    again = balanced_training_edge_map(image, np.random.default_rng(0))
    other = balanced_training_edge_map(image, np.random.default_rng(1))
    np.testing.assert_array_equal(balanced, again)
    assert not np.array_equal(balanced, other)


# ---------------------------------------------------------------- synthetic: patches and features


def test_patch_centres_scale_then_column_major_order():
    edge_map = np.array([[0, 2, 1],
                         [1, 0, 2],
                         [2, 1, 0]])
    positions, scales = patch_centres(edge_map)
    assert positions.dtype == np.int64 and scales.dtype == np.int8
    assert positions.tolist() == [[1, 0], [2, 1], [0, 2], [2, 0], [0, 1], [1, 2]]
    assert scales.tolist() == [1, 1, 1, 2, 2, 2]


def test_gradient_histogram_split_point_goes_to_lower_bin_and_ends_are_open():
    for n_bins in (25, 13):
        bounds = np.linspace(0, 1, n_bins + 1)
        centres = (bounds[:-1] + bounds[1:]) / 2
        split = (centres[:-1] + centres[1:]) / 2
        np.testing.assert_array_equal(gradient_histogram_bins(split, n_bins), np.arange(n_bins - 1))
        np.testing.assert_array_equal(gradient_histogram_bins(np.nextafter(split, 2), n_bins), np.arange(1, n_bins))
        assert gradient_histogram_bins(np.array([-5.0, 0.0, 1.0, 7.0]), n_bins).tolist() == [0, 0, n_bins - 1, n_bins - 1]
    # 51/255 = 0.2 is exactly the split point between bins 4 and 5 of 25: it counts in bin 4.
    assert gradient_histogram_bins(np.array([51 / 255]), 25).tolist() == [4]


def test_matlab_uint8_rounds_half_away_and_saturates():
    values = np.array([-1.0, 0.4999999999999999, 0.5, 1.5, 2.5, 254.49, 254.5, 1e9])
    assert matlab_uint8(values).tolist() == [0, 0, 1, 2, 3, 254, 255, 255]


def _random_scene(seed=0, shape=(48, 56)):
    rng = np.random.default_rng(seed)
    rgb = scipy.ndimage.gaussian_filter(rng.random(shape + (3,)), (1.0, 1.0, 0))
    rgb = np.round(rgb * 255) / 255
    positions = np.stack([rng.integers(0, shape[0], 60), rng.integers(0, shape[1], 60)], axis=1)
    scales = rng.integers(1, 3, 60).astype(np.int8)
    return rgb, value_channel(rgb), positions, scales


def _reference_features(rgb, gray, row, col, scale):
    """Plain per-patch transcription of FeatureExtractor.m (PARK17.md §3) for one patch."""
    radius = DEFAULT_PARAMS.patch_radii[scale - 1]
    width, n_bins, size = 2 * radius + 1, DEFAULT_PARAMS.dct_bins[scale - 1], DEFAULT_PARAMS.dct_sizes[scale - 1]
    padded = np.pad(gray, radius, mode="edge")
    patch = padded[row:row + width, col:col + width]
    spectrum = np.abs(scipy.fft.dctn(np.pad(patch, ((0, size - width), (0, size - width))), norm="ortho"))
    u, v = np.meshgrid(np.arange(size), np.arange(size))
    rho = np.hypot(u, v)
    bounds, step = np.linspace(0, size - 1, n_bins + 1), (size - 1) / n_bins
    f_dct = np.array([spectrum[(rho >= bounds[b] - 0.1 * step) & (rho <= bounds[b + 1] + 0.1 * step)].mean()
                      for b in range(n_bins)])
    gx = np.diff(padded, axis=1, append=padded[:, -1:] * 2 - padded[:, -2:-1])
    gy = np.diff(padded, axis=0, append=padded[-1:] * 2 - padded[-2:-1])
    gradient = (np.sqrt(gx ** 2 + gy ** 2) / np.sqrt(2))[row:row + width, col:col + width].ravel()
    split = (np.arange(1, n_bins)) / n_bins
    counts = np.array([np.sum((gradient > (split[b - 1] if b else -np.inf))
                              & (gradient <= (split[b] if b < n_bins - 1 else np.inf))) for b in range(n_bins)])
    f_svd = np.linalg.svd(patch, compute_uv=False)[:n_bins]
    return [np.log(1 + f) / np.log(1 + f).sum() for f in (f_dct, counts.astype(float), f_svd)]


def test_features_match_a_per_patch_transcription_and_slot_layout():
    rgb, gray, positions, scales = _random_scene()
    result = compute_features(rgb, gray, positions, scales)
    assert isinstance(result, PatchFeatures) and len(result) == len(positions)
    for array in (result.dct, result.grd, result.svd, result.patches):
        assert array.dtype == np.float32
    for k, ((row, col), scale) in enumerate(zip(positions, scales)):
        expected = _reference_features(rgb, gray, row, col, scale)
        start, stop = (0, 25) if scale == 1 else (26, 39)
        for got, want in zip((result.dct[k], result.grd[k], result.svd[k]), expected):
            np.testing.assert_allclose(got[start:stop], want, atol=2e-7, rtol=0)
            assert got[stop] == 1.0
            assert not np.delete(got, np.r_[start:stop + 1]).any()
        np.testing.assert_array_equal(result.dct_u8[k, start:stop], matlab_uint8(255 * expected[0]))


def test_cnn_patches_are_natural_orientation_crops_with_replicate_padding():
    rgb, gray, positions, scales = _random_scene(1)
    positions = np.array([[20, 30], [20, 30], [0, 0], [47, 55]])
    scales = np.array([1, 2, 2, 1])
    patches = compute_features(rgb, gray, positions, scales).patches
    rgb32 = rgb.astype(np.float32)
    np.testing.assert_array_equal(patches[0], rgb32[7:34, 17:44])
    crop = rgb32[13:28, 23:38]
    np.testing.assert_array_equal(patches[1][6:21, 6:21], crop)
    np.testing.assert_array_equal(patches[1], np.pad(crop, ((6, 6), (6, 6), (0, 0)), mode="edge"))
    corner = np.pad(rgb32, ((7, 7), (7, 7), (0, 0)), mode="edge")[0:15, 0:15]
    np.testing.assert_array_equal(patches[2], np.pad(corner, ((6, 6), (6, 6), (0, 0)), mode="edge"))
    np.testing.assert_array_equal(patches[3], np.pad(rgb32, ((13, 13), (13, 13), (0, 0)), mode="edge")[47:74, 55:82])


def test_chunked_iterator_equals_one_shot():
    rgb, gray, positions, scales = _random_scene(2)
    order = np.argsort(scales, kind="stable")
    for pos, sc in ((positions, scales), (positions[order], scales[order])):
        whole = compute_features(rgb, gray, pos, sc)
        chunks = list(iter_feature_chunks(rgb, gray, pos, sc, chunk_size=7))
        assert [len(c) for c in chunks] == [7] * 8 + [4]
        for field in ("dct", "grd", "svd", "patches", "dct_u8", "grd_u8", "svd_u8", "patches_u8"):
            np.testing.assert_array_equal(np.concatenate([getattr(c, field) for c in chunks]),
                                          getattr(whole, field))



def test_extractor_without_crops_or_rounding_or_in_threads_gives_the_same_features(monkeypatch):
    """The photo path asks for the hand-crafted features only (crops CNN patches for a few rows), in two threads."""
    rgb, gray, positions, scales = _random_scene(2)
    whole = compute_features(rgb, gray, positions, scales)
    extractor = PatchFeatureExtractor(rgb, gray, DEFAULT_PARAMS)
    checked = extractor.check_positions(positions, scales)
    bare = extractor.features(*checked, cnn_patches=False, rounded=False)
    for field in ("dct", "grd", "svd"):
        np.testing.assert_array_equal(getattr(bare, field), getattr(whole, field))
    assert bare.patches is None and bare.patches_u8 is None and bare.dct_u8 is None
    picked = np.array([5, 0, 17])
    np.testing.assert_array_equal(extractor.cnn_patches(checked[0][picked], checked[1][picked]), whole.patches[picked])
    monkeypatch.setattr(features, "_INNER_BATCH", 8)  # several batches per scale, spread over two threads
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        threaded = extractor.features(*checked, pool=pool)
    for field in ("dct", "grd", "svd", "patches", "dct_u8", "grd_u8", "svd_u8", "patches_u8"):
        np.testing.assert_array_equal(getattr(threaded, field), getattr(whole, field))

def test_bad_feature_inputs_raise_one_clear_error():
    rgb, gray, positions, scales = _random_scene(3)
    with pytest.raises(Park17Error, match="outside"):
        compute_features(rgb, gray, np.array([[48, 0]]), np.array([1]))
    with pytest.raises(Park17Error, match="scales"):
        compute_features(rgb, gray, positions, np.full(len(positions), 3))
    with pytest.raises(Park17Error, match="divide 8-bit"):
        compute_features((rgb * 255).astype(np.uint8), gray, positions, scales)
    with pytest.raises(Park17Error, match="differ"):
        compute_features(rgb, gray[1:], positions, scales)
    empty = compute_features(rgb, gray, np.zeros((0, 2), int), np.zeros(0, int))
    assert empty.dct.shape == (0, 40) and empty.patches.shape == (0, 27, 27, 3)


# ---------------------------------------------------------------- official reference run


@pytest.fixture(scope="module", params=["sample_0001", "sample_0002"])
def reference(request, shared_data):
    ref = dict(np.load(shared_data / "park17_reference" / f"{request.param}.npz"))
    rgb = ref["image_rgb_u8"] / 255.0
    positions, scales = patch_centres(ref["edgMap"])
    ref["computed"] = (positions, scales, compute_features(rgb, value_channel(rgb), positions, scales))
    return ref


def test_edge_map_equals_official(reference):
    np.testing.assert_array_equal(multiscale_edge_map(reference["gray_v_u8"] / 255.0), reference["edgMap"])
    np.testing.assert_array_equal(multiscale_edge_map(value_channel(reference["image_rgb_u8"] / 255.0)),
                                  reference["edgMap"])


def test_patch_centres_equal_official(reference):
    positions, scales, _ = reference["computed"]
    np.testing.assert_array_equal(positions, reference["pos"])
    assert np.bincount(scales, minlength=3)[1:].tolist() == reference["nEdges"].tolist()


def test_features_equal_official(reference):
    _, _, result = reference["computed"]
    for field, key in (("dct", "fDCT"), ("grd", "fGRD"), ("svd", "fSVD")):
        np.testing.assert_allclose(getattr(result, field), reference[key], atol=1e-6, rtol=0)
        # Rounded from float64 like MATLAB: the network inputs are exact.
        np.testing.assert_array_equal(getattr(result, f"{field}_u8"), reference[f"net_in_{field}_u8"])
        # Rounding the float32 copies may only differ where 255·f is a float32-level .5 tie.
        scaled = 255 * getattr(result, field).astype(np.float64)
        differ = matlab_uint8(scaled) != reference[f"net_in_{field}_u8"]
        assert differ.sum() <= 3
        assert np.all(np.abs(scaled[differ] - np.floor(scaled[differ]) - 0.5) < 1e-5)
    index = reference["fIMG_subset_idx"]
    np.testing.assert_array_equal(result.patches[index], (reference["fIMG_subset_u8"] / 255.0).astype(np.float32))
    np.testing.assert_array_equal(result.patches_u8[index], reference["fIMG_subset_u8"])


def test_gradient_bins_do_not_depend_on_the_row_block(monkeypatch):
    padded = np.pad(np.round(np.random.default_rng(7).random((23, 17)) * 255) / 255, 3, mode="edge")
    whole = features._gradient_bins(padded, 25)
    monkeypatch.setattr(features, "_ROW_BLOCK", 7)
    np.testing.assert_array_equal(features._gradient_bins(padded, 25), whole)
    grad_x = np.diff(padded, axis=1, append=2 * padded[:, -1:] - padded[:, -2:-1])
    grad_y = np.diff(padded, axis=0, append=2 * padded[-1:] - padded[-2:-1])
    np.testing.assert_array_equal(whole, gradient_histogram_bins(np.sqrt(grad_x ** 2 + grad_y ** 2) / np.sqrt(2), 25))
