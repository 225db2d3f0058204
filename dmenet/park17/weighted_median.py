"""Joint weighted median of the official code's last stage (PARK17.md §11).

jointWMF.m + mexJointWMF (Zhang, Xu, Jia, CVPR 2014, "100+ times faster weighted median filter")
in NumPy, reproducing the mex's discrete decisions:

1. ``jointWMF.m`` turns the float guide into uint8 (joint min–max over the three channels, MATLAB
   rounding) and rescales σ the same way.
2. The float input is quantised adaptively: a float32 binary search for the smallest group width m
   for which greedy grouping of the sorted values needs at most ``value_levels`` groups; every group
   is represented by its lower-middle element.
3. The guide colours, reduced to 6 bits per channel, are clustered by OpenCV's ``kmeans`` (k-means++
   seeding from OpenCV's global RNG in its fresh state, then one label assignment and one centre
   update). Cluster a weighs cluster b by exp(−‖c_a − c_b‖² / 2(σ/4)²), all in float32.
4. The filter (three times on the index image) is the mex's per-column cut-point walk. The walk's
   result depends on the previous pixel of the column only through the sign of the balance at the
   previous cut, so every pixel's weighted median is computed at once and only a cheap row-by-row
   pass stays sequential. Medians are found from a histogram of the levels around the centre's own
   level, in one compiled pass over each window (`median_kernel`; almost every pixel); far medians
   and balances near 0 get float64 histograms of all levels.

The mex sums balances in float32 in the order of its linked lists. Exact ties (every weight class's
counts balanced) are detected with integer counts and follow the mex's rule. The first pixel of each
column climbs from cut −1 through every level below its median, so its float32 rounding can tip a
tie; those pixels are re-decided with the mex's own float32 additions in its linked-list order.
What is left can still differ from the mex by one level: a tie reached by a walk of several levels
further down a column, and balances within float32 rounding of 0 (including windows where weights
below 2⁻²⁴ of the total vanish in the mex's float32 sums). None occurred on the four reference runs,
which this reproduces bit for bit.

The k-means++ seeding draws from OpenCV's global RNG as a fresh process has it (the official code
runs one image per MATLAB session); every call here starts from that state.
"""
import typing

import numpy as np

from dmenet.park17.errors import Park17Error
from dmenet.park17.params import DEFAULT_PARAMS
from dmenet.propagation.rows import RowRunner

# OpenCV's multiply-with-carry generator (cv::RNG): coefficient and the default state of theRNG().
_CV_RNG_COEFF = 4164903690
_CV_RNG_DEFAULT_STATE = 0xFFFFFFFF
_KMEANS_PP_TRIALS = 3
_GUIDE_SHIFT = 2  # 8-bit → 6-bit colours
_GUIDE_LOW_LEVELS = 256 >> _GUIDE_SHIFT
_QUANTISATION_TOLERANCE = np.float32(1e-5)
# Unsettled pixels whose windows are gathered at once (bounds the temporary arrays to ~30 MB).
_BAND_PIXELS = 32 * 640
# Threads of the compiled first pass (it releases the GIL): the pipeline runs this stage alone.
_WORKERS = 2
# Levels on either side of the centre's that the compiled pass histograms: 8 leaves 0.3 % of the
# pixels of sample_0001 to the full histograms (1 level: 8 %), at the same cost per window.
_NEARBY_LEVELS = 8
# A balance this close to 0 (relative to the window's total weight) is re-decided by full histograms;
# float32 sums of 121 weights (the mex's) are off by well under 1e-5 of the total.
_FLOAT32_MARGIN = 1e-4
# The first pixel of a column climbs from cut −1 through ~100 levels in float32 (PARK17.md §11);
# balances this close to 0 are re-decided with the mex's own float32 additions.
_FIRST_ROW_MARGIN = 3e-5


class OpenCvRng:
    """cv::RNG: state ← (state mod 2³²)·4164903690 + ⌊state / 2³²⌋; a draw is the new low 32 bits."""

    def __init__(self, state=_CV_RNG_DEFAULT_STATE):
        self.state = int(state)

    def next_u32(self):
        self.state = (self.state & 0xFFFFFFFF) * _CV_RNG_COEFF + (self.state >> 32)
        return self.state & 0xFFFFFFFF

    def next_double(self):
        """(double)rng: two draws, high word first, as one 64-bit integer times 2⁻⁶⁴ (one rounding)."""
        high = self.next_u32()
        low = self.next_u32()
        return float((high << 32) | low) * 2.0**-64


def matlab_uint8_guide(guide_rgb, sigma):
    """jointWMF.m's preprocessing of a float guide: uint8 guide and rescaled σ.

    Args:
        guide_rgb: H×W×3 float guide (the rolling-guidance output).
        sigma: range σ in guide units.

    Returns:
        (H×W×3 uint8 guide, σ in uint8 units as float). A constant guide keeps σ and maps to 0.
    """
    guide = np.asarray(guide_rgb, dtype=np.float64)
    low, high = float(guide.min()), float(guide.max())
    shifted = guide - low
    span = high - low
    if span != 0:
        scale = 255.0 / span
        shifted = shifted * scale
        sigma = sigma * scale
    # MATLAB uint8(): round half away from zero (values are ≥ 0 here) and saturate
    guide_u8 = np.clip(np.floor(shifted + 0.5), 0, 255).astype(np.uint8)
    return guide_u8, float(sigma)


def _quantise_values(values, levels):
    """from32FTo32S: adaptive quantisation of a float32 image into at most ``levels`` groups.

    Returns:
        (int32 index image, float32 representative per group); group g is represented by the
        element at (first + last) >> 1 of its run in the sorted values.
    """
    flat = np.asarray(values, dtype=np.float32).ravel()
    order = np.argsort(flat, kind="stable")
    ordered = flat[order]
    min_value = float(ordered[0])
    base0 = np.float32(min_value)
    # maxRange is the double difference of the float extremes, rounded to float
    max_range = np.float32(float(ordered[-1]) - min_value)
    lower = np.float32(0.0)
    upper = np.float32(max_range * np.float32(2.0) / np.float32(levels))

    def group_starts(width, limit):
        """Start indices of the greedy groups (a new group when value > group start + width)."""
        starts = [0]
        base = base0
        count = len(ordered)
        while True:
            nxt = int(np.searchsorted(ordered, np.float32(base + width), side="right"))
            if nxt >= count:
                return starts
            starts.append(nxt)
            if limit is not None and len(starts) > limit:
                return starts
            base = ordered[nxt]

    while np.float32(upper - lower) > _QUANTISATION_TOLERANCE:
        middle = np.float32((upper + lower) * np.float32(0.5))
        if len(group_starts(middle, levels)) <= levels:
            upper = middle
        else:
            lower = middle
    starts = np.asarray(group_starts(upper, None), dtype=np.int64)
    ends = np.append(starts[1:], len(ordered)) - 1
    representatives = ordered[(starts + ends) >> 1].astype(np.float32)
    group_of_sorted = np.zeros(len(ordered), dtype=np.int32)
    group_of_sorted[starts[1:]] = 1
    group_of_sorted = np.cumsum(group_of_sorted, dtype=np.int32)
    index = np.empty(len(ordered), dtype=np.int32)
    index[order] = group_of_sorted
    return index.reshape(np.shape(values)), representatives


def _kmeans_pp_centres(samples, clusters, rng):
    """OpenCV generateCentersPP with 3 trials; returns the chosen sample indices.

    Squared distances between 6-bit colours are integers, so OpenCV's float distances and double
    sums are exact. The sampling walk p ← p − d_i (double) is exact too while p stays ≥ 0 (p's last
    bit is coarser than 1 only above 2⁵³), so the chosen index is the first i with Σ_{≤i} d ≥ p.
    """
    count = samples.shape[0]
    coords = samples.astype(np.float64)
    squared_norms = (coords * coords).sum(axis=1)

    def distances_to(index):
        return squared_norms + squared_norms[index] - 2.0 * (coords @ coords[index])

    centres = [rng.next_u32() % count]
    dist = distances_to(centres[0])
    total = float(dist.sum())
    for _ in range(1, clusters):
        best_sum, best_centre, best_dist = np.inf, -1, None
        cumulative = np.cumsum(dist[:-1])
        for _ in range(_KMEANS_PP_TRIALS):
            draw = rng.next_double() * total
            candidate = int(np.searchsorted(cumulative, draw, side="left"))  # N − 1 when never reached
            trial = np.minimum(distances_to(candidate), dist)
            trial_sum = float(trial.sum())
            if trial_sum < best_sum:
                best_sum, best_centre, best_dist = trial_sum, candidate, trial
        centres.append(best_centre)
        total = best_sum
        dist = best_dist
    return np.asarray(centres, dtype=np.int64)


def _kmeans_one_update(samples, clusters, rng):
    """cv::kmeans(K, TermCriteria(COUNT|EPS, 0, 10000), 1 attempt, KMEANS_PP_CENTERS).

    With those criteria OpenCV runs k-means++ seeding, one label assignment and one centre update,
    and does not reassign labels afterwards.

    Returns:
        (int labels per sample, float32 K×3 centres).
    """
    seeds = _kmeans_pp_centres(samples, clusters, rng)
    coords = samples.astype(np.float64)
    seed_coords = coords[seeds]
    # integer coordinates: |a|² + |b|² − 2a·b is exact in double
    squared = ((coords * coords).sum(axis=1)[:, None] + (seed_coords * seed_coords).sum(axis=1)[None, :]
               - 2.0 * (coords @ seed_coords.T))
    labels = np.argmin(squared, axis=1)  # first minimum, as OpenCV's strict '>' test
    counts = np.bincount(labels, minlength=clusters)
    if np.any(counts == 0):
        raise Park17Error(
            "joint_weighted_median: k-means produced an empty cluster (duplicate guide colours?); "
            "pass a guide with at least as many distinct colours as guide_levels")
    sums = np.stack([np.bincount(labels, weights=coords[:, j], minlength=clusters) for j in range(3)], axis=1)
    # integer sums below 2²⁴ are exact in float32; the mean is sum·(1/count), both float32
    scale = np.float32(1.0) / counts.astype(np.float32)
    centres = sums.astype(np.float32) * scale[:, None]
    return labels, centres.astype(np.float32)


def _cluster_guide(guide_u8, sigma_scaled, guide_levels, rng=None):
    """featureIndexing for a 3-channel guide: cluster image and K×K float32 weight table.

    Args:
        guide_u8: H×W×3 uint8 guide, channel order as passed to the mex.
        sigma_scaled: σ in uint8 units (after jointWMF.m's rescaling).
        guide_levels: maximum number of clusters (nF).
        rng: OpenCvRng; default is OpenCV's global RNG in a fresh process.

    Returns:
        (H×W int32 cluster image, K×K float32 weights).
    """
    rng = OpenCvRng() if rng is None else rng
    low = (np.asarray(guide_u8, dtype=np.uint8) >> _GUIDE_SHIFT).astype(np.intp)
    keys = (low[..., 0] * _GUIDE_LOW_LEVELS + low[..., 1]) * _GUIDE_LOW_LEVELS + low[..., 2]
    # the mex's 64³ presence table, enumerated in lexicographic (ch0, ch1, ch2) order
    present = np.bincount(keys.ravel(), minlength=_GUIDE_LOW_LEVELS**3) > 0
    distinct = np.flatnonzero(present)
    rank = np.cumsum(present) - 1
    samples = np.stack([distinct // _GUIDE_LOW_LEVELS**2, distinct // _GUIDE_LOW_LEVELS % _GUIDE_LOW_LEVELS,
                        distinct % _GUIDE_LOW_LEVELS], axis=1)
    clusters = min(int(guide_levels), len(distinct))
    labels, centres = _kmeans_one_update(samples, clusters, rng)
    cluster_image = labels[rank[keys]].astype(np.int32)
    return cluster_image, _cluster_weights(centres, sigma_scaled)


def _cluster_weights(centres, sigma_scaled):
    """exp(−‖a − b‖²·divider) in float32, divider = 1/(2·(σ/256·64)²) as the mex computes it."""
    sigma_low = np.float32(np.float32(sigma_scaled) / np.float32(256.0)) * np.float32(_GUIDE_LOW_LEVELS)
    divider = np.float32(1.0) / (np.float32(2.0) * sigma_low * sigma_low)
    diff = centres[:, None, :] - centres[None, :, :]
    squared = diff * diff
    distance = (squared[..., 0] + squared[..., 1]) + squared[..., 2]
    exponent = -distance * divider
    # expf of a float argument; exp in double rounded to float is its correctly rounded value
    return np.exp(exponent.astype(np.float64)).astype(np.float32)


class _WindowWeights:
    """Weights of window pixels for their centre: the cluster image padded with an "outside" cluster of
    weight 0 (which replaces the clipping of windows at the border) and the flat weight table."""

    def __init__(self, cluster_image, weights, radius):
        self.height, self.width = cluster_image.shape
        self.radius = radius
        clusters = weights.shape[0]
        table = np.zeros((clusters + 1, clusters + 1), dtype=np.float32)
        table[:clusters, :clusters] = weights
        self.stride = clusters + 1
        self.table = table.ravel()
        self.padded = np.pad(cluster_image.astype(np.intp), radius, mode="constant", constant_values=clusters)
        self.centre_rows = cluster_image.astype(np.intp).ravel() * self.stride

    def of_pixels(self, pixels):
        """(len(pixels), (2r+1)²) float32 weights of the windows of flat pixel indices `pixels`."""
        keys = _pixel_windows(self.padded, self.radius, self.width, pixels)
        keys += self.centre_rows[pixels, None]
        return np.take(self.table, keys)


def _pixel_windows(padded, radius, width, pixels):
    """Pixel-major windows ((len(pixels), (2r+1)²), a copy) of a padded image at flat pixel indices."""
    size = 2 * radius + 1
    padded_width = width + 2 * radius
    offsets = (np.arange(size)[:, None] * padded_width + np.arange(size)[None, :]).ravel()
    rows, cols = np.divmod(np.asarray(pixels, dtype=np.intp), width)
    return padded.ravel()[(rows * padded_width + cols)[:, None] + offsets]


def _exact_ties(levels, weights, cut):
    """Whether balance(cut) is exactly 0: for every weight value, as many pixels at or below the cut
    as above (float sums cannot tell a tie from a near-tie; integer counts can). Rows are pixels."""
    count = levels.shape[0]
    sign = np.where(levels <= cut[:, None], 1, -1)
    sign = np.where(weights > 0, sign, 0)
    owner = np.broadcast_to(np.arange(count, dtype=np.int64)[:, None], sign.shape)
    key = (owner << 32) | weights.view(np.uint32).astype(np.int64)
    _, group = np.unique(key.ravel(), return_inverse=True)
    net = np.bincount(group, weights=sign.ravel())
    unbalanced = np.zeros(count, dtype=bool)
    unbalanced[owner.ravel()[net[group] != 0]] = True
    return ~unbalanced


def _histogram_medians(levels, weights, base, span):
    """Weighted medians from level histograms over bins base … base+span−1 of each row (pixel).

    Levels outside the range are clipped into the end bins, so a result in an end bin is only a
    bound; ``resolved`` says which pixels got an exact answer.

    Returns:
        (median, tie, plateau_top, resolved), one entry per row of ``levels``.
    """
    count = levels.shape[0]
    first_bin = np.arange(count, dtype=np.intp) * span
    keys = levels + (first_bin - base)[:, None]
    np.clip(keys, first_bin[:, None], (first_bin + span - 1)[:, None], out=keys)
    hist = np.bincount(keys.ravel(), weights=weights.ravel(), minlength=count * span).reshape(count, span)
    cumulative = np.cumsum(hist, axis=1)
    total = cumulative[:, -1]
    balance = 2.0 * cumulative - total[:, None]
    rel = np.argmax(balance >= 0, axis=1)
    median = base + rel
    at_median = balance[np.arange(count), rel]
    tie = np.zeros(count, dtype=bool)
    # a float balance within rounding of 0 is only a candidate for an exact tie
    candidates = np.flatnonzero(np.abs(at_median) <= 1e-9 * total)
    if candidates.size:
        tie[candidates] = _exact_ties(levels[candidates], weights[candidates], median[candidates])
    occupied_above = (hist > 0) & (np.arange(span)[None, :] > rel[:, None])
    next_rel = np.where(occupied_above.any(axis=1), np.argmax(occupied_above, axis=1), span)
    plateau_top = base + next_rel - 1
    resolved = (rel > 0) & (rel < span - 1) & ~(tie & (next_rel >= span - 1))
    return median, tie, plateau_top, resolved


def _window_medians(index_image, window_weights, radius, value_levels):
    """Per pixel: lowest level m with balance(m) ≥ 0, whether balance(m) is an exact tie, and the
    last level b ≥ m before the next occupied level (the tie plateau is m…b).

    Weighted medians lie at or near the centre's own level, so a compiled histogram of the levels
    around it settles almost every pixel (`median_kernel`, both cores); the rest (far medians,
    near-ties, exact ties) get a float64 histogram over all levels.
    """
    from dmenet.park17 import median_kernel  # its kernels load on first use

    height, width = index_image.shape
    padded_levels = np.pad(np.asarray(index_image, dtype=np.intp), radius, mode="edge")
    median = np.empty((height, width), dtype=np.intp)
    settled = np.empty((height, width), dtype=np.bool_)
    tie = np.zeros(height * width, dtype=bool)

    def rows(y0, y1):
        median_kernel.nearby_medians(padded_levels, window_weights.padded, window_weights.table, window_weights.stride,
                                     radius, _NEARBY_LEVELS, y0, y1, _FLOAT32_MARGIN, median, settled)

    RowRunner(_WORKERS)(rows, height)
    median, settled = median.ravel(), settled.ravel()
    plateau_top = median.copy()
    unsettled = np.flatnonzero(~settled)
    for first in range(0, unsettled.size, _BAND_PIXELS):
        missing = unsettled[first:first + _BAND_PIXELS]
        far_levels = _pixel_windows(padded_levels, radius, width, missing)
        far_weights = window_weights.of_pixels(missing)
        low = far_levels.min(axis=1)
        spans = far_levels.max(axis=1) - low + 1
        # histogram cost grows with the span: group pixels by the power of 4 above theirs
        span_class = np.maximum(np.ceil(np.log2(spans) / 2), 1).astype(int)
        for value in np.unique(span_class):
            group = np.flatnonzero(span_class == value)
            span = int(spans[group].max())
            m2, t2, top2, _ = _histogram_medians(far_levels[group], far_weights[group], low[group], span)
            pixels = missing[group]
            median[pixels], tie[pixels], plateau_top[pixels] = m2, t2, top2
    shape = (height, width)
    return median.reshape(shape), tie.reshape(shape), plateau_top.reshape(shape)


def _column_walk(median, tie, plateau_top):
    """The mex's cut-point walk, columns top→bottom, each column starting at cut −1.

    From below (balance < 0 at the previous cut) the walk stops at the first level with balance ≥ 0;
    from above it stops at the first level with balance ≤ 0 — one level below the median unless the
    balance is exactly 0 there (then the top of the tie plateau); on the plateau it stays put.
    """
    height, width = median.shape
    from_above = np.where(tie, plateau_top, np.maximum(median - 1, 0))
    out = np.empty_like(median)
    previous = np.full(width, -1, dtype=np.int64)
    for y in range(height):
        m = median[y]
        stay = tie[y] & (previous >= m) & (previous <= plateau_top[y])
        row = np.where(previous < m, m, np.where(stay, previous, from_above[y]))
        out[y] = row
        previous = row
    return out


def _first_row_walk_float32(levels, clusters, weights, radius, x):
    """The mex's float32 arithmetic for the first pixel of column x, whose walk starts at cut −1.

    That walk climbs through every level up to the median, adding one float32 level weight per
    step, so its rounding can tip an exact tie (or a near-tie) to the next level. The order of the
    float32 additions is the mex's linked-list order: cluster 0 first, then the other clusters from
    the most recently inserted (last first seen in the row-major scan of the window) to the first.
    """
    height, width = levels.shape
    window_levels = levels[:min(height, radius + 1), max(0, x - radius):min(width, x + radius + 1)].ravel()
    window_clusters = clusters[:min(height, radius + 1), max(0, x - radius):min(width, x + radius + 1)].ravel()
    row = weights[clusters[0, x]]

    def linked_order(cluster_sequence):
        seen = list(dict.fromkeys(int(c) for c in cluster_sequence if c != 0))
        return [0] + seen[::-1]

    counts = np.bincount(window_clusters, minlength=len(row))
    balance = np.float32(0)
    for g in linked_order(window_clusters):
        balance = np.float32(balance + np.float32(np.float32(-counts[g]) * row[g]))
    cut = -1
    top = int(window_levels.max())
    while balance < 0 and cut < top:
        cut += 1
        at_level = window_clusters[window_levels == cut]
        if at_level.size == 0:
            continue
        level_counts = np.bincount(at_level, minlength=len(row))
        step = np.float32(0)
        for g in linked_order(at_level):
            step = np.float32(step + np.float32(np.float32(2 * level_counts[g]) * row[g]))
        balance = np.float32(balance + step)
    return cut


def _fragile_first_row(levels, window_weights, median, tie, radius):
    """Columns whose first pixel has a tie or a near-tie at its median (in float64)."""
    width = levels.shape[1]
    padded = np.pad(levels.astype(np.intp), radius, mode="edge")
    first_row = np.arange(width)
    window = _pixel_windows(padded, radius, width, first_row)
    weights = window_weights.of_pixels(first_row).astype(np.float64)
    total = weights.sum(axis=1)
    m = median[0][:, None]
    at = 2.0 * np.where(window <= m, weights, 0).sum(axis=1) - total
    below = 2.0 * np.where(window < m, weights, 0).sum(axis=1) - total
    near = np.minimum(np.abs(at), np.abs(below)) <= _FIRST_ROW_MARGIN * total
    return np.flatnonzero(near | tie[0])


def _filter_indices(index_image, cluster_image, weights, radius, iterations, value_levels):
    """filterCore ``iterations`` times on the index image with a fixed cluster image."""
    window_weights = _WindowWeights(cluster_image, weights, radius)
    current = np.asarray(index_image, dtype=np.intp)
    for _ in range(iterations):
        median, tie, plateau_top = _window_medians(current, window_weights, radius, value_levels)
        for x in _fragile_first_row(current, window_weights, median, tie, radius):
            median[0, x] = _first_row_walk_float32(current, cluster_image, weights, radius, x)
        current = _column_walk(median, tie, plateau_top)
    return current


def _check_inputs(values, guide_rgb, radius, iterations, value_levels, guide_levels):
    values = np.asarray(values)
    guide = np.asarray(guide_rgb)
    if values.ndim != 2:
        raise Park17Error(
            f"joint_weighted_median: values must be an H×W map, got shape {values.shape}")
    if guide.shape != values.shape + (3,):
        raise Park17Error(
            f"joint_weighted_median: guide must be H×W×3 matching values {values.shape}, got {guide.shape}")
    if not np.all(np.isfinite(values)) or not np.all(np.isfinite(guide)):
        raise Park17Error("joint_weighted_median: values and guide must be finite (no NaN/inf)")
    if values.size == 0:
        raise Park17Error("joint_weighted_median: values is empty; pass an H×W map with H, W ≥ 1")
    if int(radius) < 0 or int(iterations) < 0:
        raise Park17Error("joint_weighted_median: radius and iterations must be ≥ 0")
    if int(value_levels) < 1 or int(guide_levels) < 1:
        raise Park17Error("joint_weighted_median: value_levels and guide_levels must be ≥ 1")
    return values, guide


def joint_weighted_median_u8(values, guide_u8, sigma_scaled, radius=DEFAULT_PARAMS.wmf_radius,
                             value_levels=DEFAULT_PARAMS.wmf_value_levels,
                             guide_levels=DEFAULT_PARAMS.wmf_guide_levels,
                             iterations=DEFAULT_PARAMS.wmf_iterations, rng=None):
    """mexJointWMF on an already-uint8 guide (σ in uint8 units): the filter without jointWMF.m's rescaling.

    Args:
        values: H×W float map (filtered as float32).
        guide_u8: H×W×3 uint8 guide.
        sigma_scaled: σ in uint8 units.
        radius, value_levels, guide_levels, iterations: as :func:`joint_weighted_median`.
        rng: OpenCvRng for k-means++; default = OpenCV's global RNG in a fresh process.

    Returns:
        H×W float32 filtered map (every value is one of the input values).
    """
    values, guide_u8 = _check_inputs(values, guide_u8, radius, iterations, value_levels, guide_levels)
    if guide_u8.dtype != np.uint8:
        raise Park17Error(
            f"joint_weighted_median_u8: guide must be uint8, got {guide_u8.dtype}; "
            "use joint_weighted_median for a float guide")
    clusters = GuideClusters(*_cluster_guide(guide_u8, sigma_scaled, guide_levels, rng))
    return _filter_values(values, clusters, radius, value_levels, iterations)


class GuideClusters(typing.NamedTuple):
    """What the filter needs of the guide (`cluster_guide`): its colour clusters and their weights.

    Attributes:
        cluster_image: H×W int32 cluster of each pixel.
        weights: K×K float32 weight of cluster b's pixels in a window centred on cluster a.
    """

    cluster_image: np.ndarray
    weights: np.ndarray


def cluster_guide(guide_rgb, sigma=DEFAULT_PARAMS.wmf_sigma, guide_levels=DEFAULT_PARAMS.wmf_guide_levels):
    """The guide's part of `joint_weighted_median` (uint8 conversion, k-means clusters, weight table), alone.

    It depends on the guide only, so the pipeline prepares it before the map to filter exists.

    Args:
        guide_rgb: H×W×3 float guide.
        sigma, guide_levels: as :func:`joint_weighted_median`.

    Returns:
        GuideClusters, to pass as ``joint_weighted_median(..., guide_clusters=...)``.

    Example:
        >>> guide = np.random.default_rng(0).random((16, 16, 3))
        >>> clusters = cluster_guide(guide, guide_levels=8)
        >>> values = np.ones((16, 16), np.float32)
        >>> bool((joint_weighted_median(values, guide, guide_levels=8, guide_clusters=clusters) == 1).all())
        True
    """
    guide = np.asarray(guide_rgb)
    _check_inputs(np.zeros(guide.shape[:2]), guide, 0, 0, 1, guide_levels)
    guide_u8, sigma_scaled = matlab_uint8_guide(guide, sigma)
    return GuideClusters(*_cluster_guide(guide_u8, sigma_scaled, guide_levels))


def _filter_values(values, clusters, radius, value_levels, iterations):
    """Quantise the values, filter the level image `iterations` times, and map the levels back."""
    index_image, representatives = _quantise_values(values.astype(np.float32), int(value_levels))
    filtered = _filter_indices(index_image, clusters.cluster_image, clusters.weights, int(radius), int(iterations),
                               len(representatives))
    return representatives[filtered].astype(np.float32)


def joint_weighted_median(values, guide_rgb, radius=DEFAULT_PARAMS.wmf_radius, sigma=DEFAULT_PARAMS.wmf_sigma,
                          value_levels=DEFAULT_PARAMS.wmf_value_levels, guide_levels=DEFAULT_PARAMS.wmf_guide_levels,
                          iterations=DEFAULT_PARAMS.wmf_iterations, guide_clusters=None):
    """jointWMF(values, guide, r, σ, nI, nF, iter, 'exp') of the official code, in NumPy.

    Args:
        values: H×W float map to filter (Park's dense σ map).
        guide_rgb: H×W×3 float guide (Park's rolling-guidance output, R, G, B).
        radius: window radius r; windows are (2r+1)² clipped at the image border.
        sigma: range σ of the exp weight, in guide units (rescaled with the guide to uint8 units).
        value_levels: nI, maximum number of quantisation levels of ``values``.
        guide_levels: nF, maximum number of guide colour clusters.
        iterations: number of filtering passes with the same quantisation and clusters.
        guide_clusters: `cluster_guide(guide_rgb, sigma, guide_levels)` computed beforehand, if it was.

    Returns:
        H×W float32 filtered map.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> noisy = np.where(rng.random((16, 16)) < 0.1, 2.0, 1.0).astype(np.float32)
        >>> float(joint_weighted_median(noisy, rng.random((16, 16, 3)), radius=2)[8, 8])  # spikes removed
        1.0
    """
    values, guide = _check_inputs(values, guide_rgb, radius, iterations, value_levels, guide_levels)
    if guide_clusters is None:
        guide_clusters = cluster_guide(guide, sigma, guide_levels)
    elif np.shape(guide_clusters.cluster_image) != values.shape:
        raise Park17Error(f"joint_weighted_median: guide_clusters are for a {np.shape(guide_clusters.cluster_image)} "
                          f"guide, the values are {values.shape}")
    return _filter_values(values, guide_clusters, radius, value_levels, iterations)
