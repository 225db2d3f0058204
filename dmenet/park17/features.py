"""Stage 2 of Park et al. (CVPR 2017): multi-scale patches and the DCT / gradient / SVD features.

Follows DHDE_defocus_estimation.m and FeatureExtractor.m (PARK17.md §2.5 and §3), vectorised over
patches: the DCT is two large matrix products per batch, the ring sums one more, the singular values one
batched LAPACK call, and the gradient histograms a bincount over per-pixel bin indices computed once per
image.
"""
import dataclasses
import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dmenet.park17.errors import Park17Error
from dmenet.park17.params import DEFAULT_PARAMS


@dataclasses.dataclass
class PatchFeatures:
    """Features of N patches in the scale-slot layout (PARK17.md §3) and the CNN patches.

    Attributes:
        dct, grd, svd: float32 N×40; scale 1 fills [0:25] and [25] = 1, scale 2 fills [26:39] and
            [39] = 1.
        patches: float32 N×27×27×3 RGB crops in natural orientation (row, col, channel), values of the
            input image; 15×15 crops are replicate-padded to 27×27 (None where not requested:
            `PatchFeatureExtractor.features`).
        dct_u8, grd_u8, svd_u8, patches_u8: MATLAB ``uint8(255·x)`` of the same values, rounded from
            the float64 results (what the official code feeds the net for full batches). Rounding the
            float32 arrays instead differs on a few values that lie within float32 precision of a .5
            tie (3 of 3.6 million on sample_0001).
    """

    dct: np.ndarray
    grd: np.ndarray
    svd: np.ndarray
    patches: np.ndarray
    dct_u8: np.ndarray = None
    grd_u8: np.ndarray = None
    svd_u8: np.ndarray = None
    patches_u8: np.ndarray = None

    def __len__(self):
        return len(self.dct)


def patch_centres(edge_map):
    """Patch centres in the official order: scale 1 then scale 2, each in MATLAB column-major find order.

    Args:
        edge_map: H×W integer map, 0 = no edge, 1 / 2 = patch scale.

    Returns:
        (positions, scales): int64 N×2 (row, col) and int8 N.

    Example:
        >>> positions, scales = patch_centres(np.array([[0, 2], [1, 1]]))
        >>> positions.tolist(), scales.tolist()
        ([[1, 0], [1, 1], [0, 1]], [1, 1, 2])
    """
    edge_map = np.asarray(edge_map)
    if edge_map.ndim != 2:
        raise Park17Error(f"patch_centres: expected an H×W edge map, got shape {edge_map.shape}")
    positions, scales = [], []
    for scale in (1, 2):
        cols, rows = np.nonzero(edge_map.T == scale)  # transposed nonzero = column-major order
        positions.append(np.stack([rows, cols], axis=1).astype(np.int64))
        scales.append(np.full(len(rows), scale, dtype=np.int8))
    return np.concatenate(positions), np.concatenate(scales)


@functools.cache
def _dct_matrix(size):
    """dctmtx(size): the orthonormal DCT-II matrix, row k = c_k·cos(π(2j+1)k / 2N)."""
    k = np.arange(1, size)[:, None]
    j = np.arange(1, 2 * size, 2)[None, :]
    rows = [np.full((1, size), np.sqrt(1 / size)), np.sqrt(2 / size) * np.cos((np.pi / 2 / size) * (k * j))]
    return np.concatenate(rows, axis=0)


@functools.cache
def _dct_ring_weights(size, n_bins, overlap):
    """(size², n_bins) matrix whose column b averages |DCT| over the b-th (overlapping) frequency ring."""
    u, v = np.meshgrid(np.arange(size), np.arange(size))
    rho = np.sqrt(u ** 2 + v ** 2)
    bounds = np.linspace(0, size - 1, n_bins + 1)
    step = (size - 1) / n_bins
    weights = np.empty((size * size, n_bins))
    for b in range(n_bins):
        mask = (rho >= bounds[b] - overlap * step) & (rho <= bounds[b + 1] + overlap * step)
        weights[:, b] = mask.ravel() / mask.sum()
    return weights


@functools.cache
def _gradient_split_points(n_bins):
    """Split points of Octave/MATLAB hist with centres (k + 0.5)/n_bins, computed as hist does."""
    bounds = np.linspace(0, 1, n_bins + 1)
    centres = (bounds[:-1] + bounds[1:]) / 2
    return (centres[:-1] + centres[1:]) / 2


def gradient_histogram_bins(values, n_bins):
    """MATLAB ``hist(values, centres)`` bin index of each value (centres (k + 0.5)/n_bins).

    A value equal to a split point goes to the lower bin; the first and last bins are open-ended.

    Example:
        >>> gradient_histogram_bins(np.array([-1.0, 0.0, 0.5, 0.51, 2.0]), 2).tolist()
        [0, 0, 0, 1, 1]
    """
    return np.searchsorted(_gradient_split_points(n_bins), values, side="left")


def _log_normalise(values):
    values = np.log(1 + values)
    return values / values.sum(axis=1, keepdims=True)


def _scale_slots(bins_per_scale):
    """(start, stop) of each scale's bins in the feature vector; the scale indicator sits at `stop`."""
    slots, start = [], 0
    for n_bins in bins_per_scale:
        slots.append((start, start + n_bins))
        start += n_bins + 1
    return slots


_FEATURES = ("dct", "grd", "svd")
# Rows per block when converting whole images, so temporaries stay small for 24-megapixel photos.
_ROW_BLOCK = 256


def _gradient_bins(padded, n_bins):
    """hist bin of every pixel's gradient on a replicate-padded gray image, as uint8.

    Gradient (official code): forward differences, the last column/row repeating the previous
    difference, then sqrt(gX² + gY²)/√2 with the same operations, so values that land exactly on a
    split point bin as in MATLAB. Computed in row blocks to bound memory.
    """
    height = padded.shape[0]
    bins = np.empty(padded.shape, np.uint8)
    for top in range(0, height, _ROW_BLOCK):
        bottom = min(top + _ROW_BLOCK, height)
        rows = padded[top:bottom]
        grad_x = np.empty(rows.shape)
        grad_x[:, :-1] = rows[:, 1:] - rows[:, :-1]
        grad_x[:, -1] = grad_x[:, -2]
        upper = np.minimum(np.arange(top, bottom), height - 2)  # the last row repeats the previous difference
        grad_y = padded[upper + 1] - padded[upper]
        gradient = np.sqrt(grad_x ** 2 + grad_y ** 2) / np.sqrt(2)
        bins[top:bottom] = gradient_histogram_bins(gradient, n_bins)
    return bins


# Patches per inner batch: keeps the DCT/SVD temporaries in cache (measured best around 1–2 k).
_INNER_BATCH = 1024


def matlab_uint8(values):
    """MATLAB ``uint8(values)``: round half away from zero, saturate to 0…255, NaN → 0.

    Example:
        >>> matlab_uint8(np.array([-3.0, 0.5, 1.49, 254.5, 300.0, np.nan])).tolist()
        [0, 1, 1, 255, 255, 0]
    """
    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    rounded = np.floor(values)
    rounded += (values - rounded) >= 0.5  # exact, unlike floor(x + 0.5) just below a tie
    return np.clip(rounded, 0, 255).astype(np.uint8)


def _pixel_view(image):
    """H×W×C array as an H×W array of opaque C-channel pixels, so windows of pixels gather in one copy."""
    image = np.ascontiguousarray(image)
    return image.view(np.dtype((np.void, image.shape[2] * image.itemsize)))[:, :, 0]


def _gather_windows(windows, positions, dtype, channels=None):
    """windows[row, col] for every position; un-views opaque pixels back to `channels` values."""
    picked = windows[positions[:, 0], positions[:, 1]]
    if channels is None:
        return picked
    return picked.view(dtype).reshape(picked.shape + (channels,))


def _as_slice(indices):
    """A run of consecutive indices as a slice (cheap views and writes), anything else unchanged."""
    if len(indices) and indices[-1] - indices[0] + 1 == len(indices):
        return slice(int(indices[0]), int(indices[-1]) + 1)
    return indices


class PatchFeatureExtractor:
    """Features of any patches of one photo: the padded and gradient-bin images per scale, built once.

    Args:
        rgb: H×W×3 float image in [0, 1].
        gray: H×W V channel of `rgb`.
        params: Park17Params.

    Example:
        >>> rgb = np.random.default_rng(0).random((40, 40, 3))
        >>> extractor = PatchFeatureExtractor(rgb, rgb.max(axis=2), DEFAULT_PARAMS)
        >>> positions, scales = extractor.check_positions(np.array([[5, 7], [20, 20]]), np.array([1, 2]))
        >>> extractor.features(positions, scales, cnn_patches=False).dct.shape
        (2, 40)
    """

    def __init__(self, rgb, gray, params):
        rgb = np.asarray(rgb)
        gray = np.asarray(gray, dtype=np.float64)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise Park17Error(f"features: expected an H×W×3 RGB image, got shape {rgb.shape}")
        if not np.issubdtype(rgb.dtype, np.floating):
            raise Park17Error(
                f"features: expected a float RGB image in [0, 1], got {rgb.dtype}; divide 8-bit images by 255")
        if gray.shape != rgb.shape[:2]:
            raise Park17Error(
                f"features: gray image {gray.shape} and RGB image {rgb.shape[:2]} differ in size")
        if not (len(params.patch_radii) == len(params.dct_bins) == len(params.gradient_bins)
                == len(params.svd_bins) == len(params.dct_sizes)):
            raise Park17Error("features: params give different numbers of scales per feature")
        if max(params.gradient_bins) > 255:
            raise Park17Error("features: at most 255 gradient bins are supported")
        self.shape = gray.shape
        self.n_features = params.feature_length
        self.slots = {name: _scale_slots(bins) for name, bins in
                      zip(_FEATURES, (params.dct_bins, params.gradient_bins, params.svd_bins))}
        radius_max = params.cnn_patch_radius
        self.cnn_width = 2 * radius_max + 1
        if max(params.patch_radii) > radius_max:
            raise Park17Error(f"features: patch radii {params.patch_radii} exceed the CNN radius {radius_max}")
        # One replicate padding by the largest radius serves every scale: replicate-padding by r is the
        # same image inset by (radius_max − r).
        pad2 = ((radius_max, radius_max), (radius_max, radius_max))
        gray_padded = np.pad(gray, pad2, mode="edge")
        rgb_float = _pixel_view(np.pad(rgb.astype(np.float32), pad2 + ((0, 0),), mode="edge"))
        rgb_uint8 = np.empty(rgb.shape, np.uint8)
        for top in range(0, rgb.shape[0], _ROW_BLOCK):
            rgb_uint8[top:top + _ROW_BLOCK] = matlab_uint8(255 * rgb[top:top + _ROW_BLOCK])
        rgb_uint8 = _pixel_view(np.pad(rgb_uint8, pad2 + ((0, 0),), mode="edge"))
        self.scales = []
        for s, radius in enumerate(params.patch_radii):
            width = 2 * radius + 1
            inset = radius_max - radius
            window = np.s_[inset:gray_padded.shape[0] - inset, inset:gray_padded.shape[1] - inset]
            n_grd = params.gradient_bins[s]
            self.scales.append(dict(
                width=width, cnn_pad=inset,
                gray=sliding_window_view(gray_padded[window], (width, width)),
                # The gradient image differs per scale at the padded border (last-column repeat).
                bins=sliding_window_view(_gradient_bins(gray_padded[window], n_grd), (width, width)),
                rgb_float=sliding_window_view(rgb_float[window], (width, width)),
                rgb_uint8=sliding_window_view(rgb_uint8[window], (width, width)),
                dct_matrix=_dct_matrix(params.dct_sizes[s])[:, :width],
                ring_weights=_dct_ring_weights(params.dct_sizes[s], params.dct_bins[s],
                                               params.dct_ring_overlap),
                n_grd=n_grd, n_svd=params.svd_bins[s],
            ))

    def check_positions(self, positions, scales):
        """(positions as int64 N×2, scales) after checking shapes, range and scale numbers (Park17Error)."""
        positions = np.asarray(positions)
        scales = np.asarray(scales)
        if positions.ndim != 2 or positions.shape[1] != 2 or scales.shape != (len(positions),):
            raise Park17Error(
                f"features: positions must be N×2 (row, col) and scales length N, got "
                f"{positions.shape} and {scales.shape}")
        positions = positions.astype(np.int64, copy=False)
        height, width = self.shape
        if len(positions) and ((positions < 0).any() or positions[:, 0].max() >= height
                               or positions[:, 1].max() >= width):
            raise Park17Error(f"features: patch centres lie outside the {height}×{width} image")
        if len(scales) and not np.isin(scales, np.arange(1, len(self.scales) + 1)).all():
            raise Park17Error(
                f"features: scales must be in 1…{len(self.scales)}, got {np.unique(scales).tolist()}")
        return positions, scales

    def _scale_features(self, positions, scale):
        """DCT, gradient and SVD features (n × bins, float64) of patches of one scale."""
        s = self.scales[scale - 1]
        n = len(positions)
        patches = _gather_windows(s["gray"], positions, None)
        # D·P·Dᵀ with P zero-padded to the DCT size equals D[:, :w]·P·D[:, :w]ᵀ.
        dct = s["dct_matrix"]
        spectrum = np.matmul(np.matmul(dct, patches), dct.T)
        f_dct = np.abs(spectrum).reshape(n, -1) @ s["ring_weights"]

        n_grd = s["n_grd"]
        bins = _gather_windows(s["bins"], positions, None).reshape(n, -1)
        bins = bins + (np.arange(n, dtype=np.int64) * n_grd)[:, None]
        counts = np.bincount(bins.ravel(), minlength=n * n_grd).reshape(n, n_grd)

        f_svd = np.linalg.svd(patches, compute_uv=False)[:, :s["n_svd"]]
        return _log_normalise(f_dct), _log_normalise(counts.astype(np.float64)), _log_normalise(f_svd)

    def _cnn_patches(self, positions, scale, key, dtype):
        s = self.scales[scale - 1]
        crops = _gather_windows(s[key], positions, dtype, channels=3)
        if s["cnn_pad"]:
            # Replicate padding of the crop = clamped crop coordinates.
            clamped = np.clip(np.arange(self.cnn_width) - s["cnn_pad"], 0, s["width"] - 1)
            crops = crops[:, clamped[:, None], clamped[None, :]]
        return crops

    def cnn_patches(self, positions, scales):
        """float32 N×27×27×3 CNN patches of already checked positions and scales (as `features`)."""
        patches = np.empty((len(positions), self.cnn_width, self.cnn_width, 3), np.float32)
        for scale in np.unique(scales):
            members = np.flatnonzero(scales == scale)
            patches[members] = self._cnn_patches(positions[members], scale, "rgb_float", np.float32)
        return patches

    def features(self, positions, scales, cnn_patches=True, rounded=True, pool=None):
        """PatchFeatures of already checked positions and scales.

        Args:
            positions, scales: from `check_positions`.
            cnn_patches: also crop the CNN patches (``patches``, ``patches_u8``); else they are None.
            rounded: also give the ``*_u8`` arrays; else they are None.
            pool: an executor to spread the batches of patches over (NumPy and LAPACK release the GIL);
                each batch is computed exactly as without it, so the values are the same.
        """
        n = len(positions)
        out = {name: np.zeros((n, self.n_features), np.float32) for name in _FEATURES}
        if rounded:
            out.update({f"{name}_u8": np.zeros((n, self.n_features), np.uint8) for name in _FEATURES})
        if cnn_patches:
            out["patches"] = np.empty((n, self.cnn_width, self.cnn_width, 3), np.float32)
        if cnn_patches and rounded:
            out["patches_u8"] = np.empty((n, self.cnn_width, self.cnn_width, 3), np.uint8)

        def batch(scale, select):
            where = positions[select]
            for name, values in zip(_FEATURES, self._scale_features(where, scale)):
                start, stop = self.slots[name][scale - 1]
                out[name][select, start:stop] = values
                out[name][select, stop] = 1.0
                if rounded:
                    out[f"{name}_u8"][select, start:stop] = matlab_uint8(255 * values)
                    out[f"{name}_u8"][select, stop] = 255
            if cnn_patches:
                out["patches"][select] = self._cnn_patches(where, scale, "rgb_float", np.float32)
            if cnn_patches and rounded:
                out["patches_u8"][select] = self._cnn_patches(where, scale, "rgb_uint8", np.uint8)

        batches = []
        for scale in np.unique(scales):
            members = np.flatnonzero(scales == scale)
            batches += [(scale, _as_slice(members[first:first + _INNER_BATCH])) for first in range(0, len(members), _INNER_BATCH)]
        if pool is None:
            for scale, select in batches:
                batch(scale, select)
        else:
            for future in [pool.submit(batch, scale, select) for scale, select in batches]:
                future.result()
        return PatchFeatures(patches=out.pop("patches", None), **out)


def compute_features(rgb, gray, positions, scales, params=DEFAULT_PARAMS):
    """Hand-crafted features and CNN patches of the given patch centres (one call, whole image).

    Args:
        rgb: H×W×3 float image in [0, 1] (at training time: the blurred image).
        gray: H×W V channel of `rgb`.
        positions: N×2 int (row, col) patch centres, 0-based (e.g. from `patch_centres`).
        scales: N ints in {1, 2}: 1 = 27×27 patch, 2 = 15×15 patch.
        params: Park17Params.

    Returns:
        PatchFeatures with float32 arrays, rows in the order of `positions`.

    Example:
        >>> rgb = np.random.default_rng(0).random((40, 40, 3))
        >>> f = compute_features(rgb, rgb.max(axis=2), np.array([[5, 7], [20, 20]]), np.array([1, 2]))
        >>> f.dct.shape, f.patches.shape, float(f.grd[1, 39])
        ((2, 40), (2, 27, 27, 3), 1.0)
    """
    extractor = PatchFeatureExtractor(rgb, gray, params)
    return extractor.features(*extractor.check_positions(positions, scales))


def iter_feature_chunks(rgb, gray, positions, scales, chunk_size=8192, params=DEFAULT_PARAMS):
    """`compute_features` for consecutive slices of `chunk_size` patches, so memory stays bounded.

    The padded and gradient images are built once; each yielded PatchFeatures covers
    positions[i : i + chunk_size].

    Example:
        >>> rgb = np.random.default_rng(0).random((40, 40, 3))
        >>> chunks = iter_feature_chunks(rgb, rgb.max(axis=2), np.array([[5, 7], [20, 20], [3, 3]]),
        ...                              np.array([1, 2, 2]), chunk_size=2)
        >>> [len(c) for c in chunks]
        [2, 1]
    """
    if chunk_size < 1:
        raise Park17Error(f"iter_feature_chunks: chunk_size must be ≥ 1, got {chunk_size}")
    extractor = PatchFeatureExtractor(rgb, gray, params)
    positions, scales = extractor.check_positions(positions, scales)
    for start in range(0, len(positions), chunk_size):
        yield extractor.features(positions[start:start + chunk_size], scales[start:start + chunk_size])
